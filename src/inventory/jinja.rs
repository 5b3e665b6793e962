//! The small subset of Jinja2 that inventories commonly use in plain values, evaluated without
//! any code execution, and the refusal of everything else.
//!
//! Supported, in [`Syntax::Ansible`] (inventory values):
//!
//! - `{{ name }}`: another variable, resolved recursively through the same [`Scope`] (cycles are
//!   errors); text around and between expressions (`"{{ base }}/data"`);
//! - literals: `'str'`, `"str"` (with `\\`, `\'`, `\"`, `\n`, `\t` escapes), integers, floats,
//!   `true`/`True`, `false`/`False`, `none`/`None`;
//! - filters: `default(v)` / `d(v)` (when the variable is undefined), `default(v, true)` (also
//!   when it is empty, zero or false), `string`, `int` (optionally `int(default)`), `lower`,
//!   `upper`, `trim`; chained, and `(expr)` grouping;
//! - `{% raw %}...{% endraw %}` (kept as text), `{# comment #}` (dropped), the `-` whitespace
//!   control marks, and Ansible's `trim_blocks` (the newline after `%}` / `#}` is dropped).
//!
//! Everything else (function calls such as `lookup()`, `hostvars[...]`, `x.y`, operators,
//! tests, `{% if %}` and other blocks, other filters) is refused with
//! [`ResolveError::Unsupported`], naming the expression. Nothing is ever run.
//!
//! [`Syntax::Component`] (component spec defaults and `--set` values) knows only `{{ expr }}`:
//! `{%` and `{#` are ordinary text there (shell code such as `${#x}`), and an unclosed `{{` is
//! text, as in the component renderer.
//!
//! A template that is exactly one `{{ expr }}` keeps the expression's type (Ansible's native
//! types: `"{{ port }}"` with `port: 5432` is the integer 5432); anything else is text, with
//! values written as Python writes them (`True`, `None`). Resolved values are plain text: no
//! shell quoting happens here.

use std::collections::HashMap;

use serde_json::Value;

/// What is supported, for messages.
pub const SUPPORTED: &str = "{{ var }}, default(), string, int, lower, upper, trim, \
                             {% raw %} and {# comments #}";

/// Which template syntax a text uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Inventory values: `{{ }}`, `{% raw %}`, `{# #}`; other `{% %}` blocks are refused.
    Ansible,
    /// Component defaults and `--set` values: only `{{ }}`.
    Component,
}

/// A variable's definition before resolution.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// Text that may hold expressions.
    Text(&'a str, Syntax),
    /// An inventory value as the inventory holds it: strings (also inside lists) are Ansible
    /// templates, `!unsafe` strings (`{"__ansible_unsafe": s}`) are literal text, vault values
    /// are refused, mappings are kept as they are.
    Value(&'a Value),
}

/// A variable definition and where it came from (for messages: `group_vars/all.yml`,
/// `component default`, `--set`).
#[derive(Debug, Clone)]
pub struct Def<'a> {
    pub raw: Raw<'a>,
    pub origin: String,
}

/// Where names are looked up.
pub trait Scope {
    fn lookup(&self, name: &str) -> Option<Def<'_>>;
}

/// A resolved value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    /// A mapping, kept as the inventory holds it (not templated).
    Map(Value),
}

impl Val {
    /// The value as a component variable: strings as they are, numbers in decimal, booleans
    /// `true`/`false`, null empty, a list's items joined with `,`, a mapping as JSON.
    pub fn to_plain(&self) -> String {
        match self {
            Val::None => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => float_text(*f),
            Val::Str(s) => s.clone(),
            Val::List(items) => items
                .iter()
                .map(Val::to_plain)
                .collect::<Vec<_>>()
                .join(","),
            Val::Map(m) => m.to_string(),
        }
    }

    /// Jinja's truth value (for `default(v, true)`).
    fn truthy(&self) -> bool {
        match self {
            Val::None => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m) => m.as_object().is_none_or(|o| !o.is_empty()),
        }
    }

    /// Python's `str()` of a scalar, as Jinja writes it into text.
    fn py_str(&self, expr: &str) -> Result<String, ResolveError> {
        Ok(match self {
            Val::None => "None".into(),
            Val::Bool(true) => "True".into(),
            Val::Bool(false) => "False".into(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => float_text(*f),
            Val::Str(s) => s.clone(),
            Val::List(_) | Val::Map(_) => {
                return Err(unsupported(
                    expr,
                    "a list or mapping written into text is not supported",
                ));
            }
        })
    }
}

fn float_text(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// Why a variable could not be resolved. Messages quote the offending expression or tag, never
/// the rest of the value (which may be a secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// Jinja lsbackup does not evaluate (`expr` is the expression or tag, as written).
    #[error("{expr}: {what}")]
    Unsupported { expr: String, what: String },
    #[error("{name} is not defined")]
    Undefined { name: String },
    /// The names along the loop, the first repeated at the end.
    #[error("refers to itself ({})", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("is vault-encrypted; lsbackup cannot decrypt ansible-vault values")]
    Vault,
    /// A URL with a user name or password in it: never shown, never used.
    #[error(
        "holds credentials in a URL (user:password@host): never shown nor used; give them in the component's username and password variables"
    )]
    CredentialsInUrl,
    /// A variable it refers to could not be resolved.
    #[error("uses {name} (from {origin}), which {source}")]
    Via {
        name: String,
        origin: String,
        source: Box<ResolveError>,
    },
}

impl ResolveError {
    /// Undefined, directly or through the variables it uses: `default()` applies.
    fn is_undefined(&self) -> bool {
        match self {
            ResolveError::Undefined { .. } => true,
            ResolveError::Via { source, .. } => source.is_undefined(),
            _ => false,
        }
    }

    /// Where the innermost failing variable came from, and its name (`None`: this one).
    pub fn innermost(&self) -> Option<(&str, &str)> {
        match self {
            ResolveError::Via {
                name,
                origin,
                source,
            } => source
                .innermost()
                .or(Some((name.as_str(), origin.as_str()))),
            _ => None,
        }
    }
}

fn unsupported(expr: &str, what: impl Into<String>) -> ResolveError {
    ResolveError::Unsupported {
        expr: expr.to_string(),
        what: what.into(),
    }
}

/// Resolves variables of a [`Scope`], each once (results are cached).
pub struct Resolver<'s, S: Scope + ?Sized> {
    scope: &'s S,
    cache: HashMap<String, Result<Val, ResolveError>>,
    stack: Vec<String>,
}

impl<'s, S: Scope + ?Sized> Resolver<'s, S> {
    pub fn new(scope: &'s S) -> Self {
        Resolver {
            scope,
            cache: HashMap::new(),
            stack: Vec::new(),
        }
    }

    /// Whether the scope defines `name`.
    pub fn defines(&self, name: &str) -> bool {
        self.scope.lookup(name).is_some()
    }

    /// Where `name` came from (empty when undefined).
    pub fn origin(&self, name: &str) -> String {
        self.scope
            .lookup(name)
            .map(|d| d.origin)
            .unwrap_or_default()
    }

    /// The value of variable `name`.
    pub fn resolve(&mut self, name: &str) -> Result<Val, ResolveError> {
        if let Some(r) = self.cache.get(name) {
            return r.clone();
        }
        if let Some(i) = self.stack.iter().position(|n| n == name) {
            let mut path = self.stack[i..].to_vec();
            path.push(name.to_string());
            return Err(ResolveError::Cycle(path));
        }
        let Some(def) = self.scope.lookup(name) else {
            return Err(ResolveError::Undefined {
                name: name.to_string(),
            });
        };
        self.stack.push(name.to_string());
        let r = self.eval_raw(def.raw);
        self.stack.pop();
        // A cycle is cached only once its first member is done (the others' results depend on
        // where the walk started).
        if !matches!(&r, Err(e) if self.in_open_cycle(e)) {
            self.cache.insert(name.to_string(), r.clone());
        }
        r
    }

    fn in_open_cycle(&self, e: &ResolveError) -> bool {
        match e {
            ResolveError::Cycle(path) => path.iter().any(|n| self.stack.contains(n)),
            ResolveError::Via { source, .. } => self.in_open_cycle(source),
            _ => false,
        }
    }

    /// Evaluate a definition that is not (or not yet) a named variable.
    pub fn eval_raw(&mut self, raw: Raw<'_>) -> Result<Val, ResolveError> {
        match raw {
            Raw::Text(t, syntax) => self.eval_template(t, syntax),
            Raw::Value(v) => self.eval_value(v),
        }
    }

    fn eval_value(&mut self, v: &Value) -> Result<Val, ResolveError> {
        Ok(match v {
            Value::Null => Val::None,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => self.eval_template(s, Syntax::Ansible)?,
            Value::Array(items) => Val::List(
                items
                    .iter()
                    .map(|i| self.eval_value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => {
                if o.len() == 1
                    && let Some(Value::String(s)) = o.get("__ansible_unsafe")
                {
                    Val::Str(s.clone())
                } else if o.contains_key("__ansible_vault") {
                    return Err(ResolveError::Vault);
                } else {
                    Val::Map(v.clone())
                }
            }
        })
    }

    fn eval_template(&mut self, text: &str, syntax: Syntax) -> Result<Val, ResolveError> {
        let parts = split_template(text, syntax)?;
        if let [Part::Expr(e)] = parts.as_slice() {
            return self.eval_expr_text(e);
        }
        let mut out = String::new();
        for p in &parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    let v = self.eval_expr_text(e)?;
                    out.push_str(&v.py_str(&format!("{{{{ {} }}}}", e.trim()))?);
                }
            }
        }
        Ok(Val::Str(out))
    }

    fn eval_expr_text(&mut self, e: &str) -> Result<Val, ResolveError> {
        let shown = format!("{{{{ {} }}}}", e.trim());
        let expr = parse_expr(e).map_err(|what| unsupported(&shown, what))?;
        self.eval(&expr, &shown)
    }

    fn eval(&mut self, e: &Expr, shown: &str) -> Result<Val, ResolveError> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Var(name) => self.resolve(name).map_err(|err| match err {
                ResolveError::Undefined { name: n } if &n == name => {
                    ResolveError::Undefined { name: n }
                }
                other => ResolveError::Via {
                    name: name.clone(),
                    origin: self
                        .scope
                        .lookup(name)
                        .map(|d| d.origin)
                        .unwrap_or_default(),
                    source: Box::new(other),
                },
            }),
            Expr::Filter(inner, f, args) => {
                if matches!(f.as_str(), "default" | "d") {
                    let boolean = match args.get(1) {
                        None => false,
                        Some(a) => self.eval(a, shown)?.truthy(),
                    };
                    return match self.eval(inner, shown) {
                        Ok(v) if !boolean || v.truthy() => Ok(v),
                        Ok(_) => self.eval(&args[0], shown),
                        Err(err) if err.is_undefined() => match args.first() {
                            Some(a) => self.eval(a, shown),
                            None => Ok(Val::Str(String::new())),
                        },
                        Err(err) => Err(err),
                    };
                }
                let v = self.eval(inner, shown)?;
                Ok(match f.as_str() {
                    "string" => Val::Str(v.py_str(shown)?),
                    "lower" => Val::Str(v.py_str(shown)?.to_lowercase()),
                    "upper" => Val::Str(v.py_str(shown)?.to_uppercase()),
                    "trim" => Val::Str(v.py_str(shown)?.trim().to_string()),
                    "int" => {
                        let fallback = match args.first() {
                            Some(a) => match self.eval(a, shown)? {
                                Val::Int(i) => i,
                                _ => return Err(unsupported(shown, "int() needs an integer")),
                            },
                            None => 0,
                        };
                        Val::Int(to_int(&v).unwrap_or(fallback))
                    }
                    _ => unreachable!("checked by the parser"),
                })
            }
        }
    }
}

/// Jinja's `int` filter: `int(x)`, else `int(float(x))`, else `None`.
fn to_int(v: &Val) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        Val::Bool(b) => Some(*b as i64),
        Val::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        Val::Str(s) => {
            let t = s.trim().replace('_', "");
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            })
        }
        _ => None,
    }
}

/// A piece of a template.
#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// The text between `{{` and `}}` (whitespace-control marks removed).
    Expr(String),
}

/// Find `close` in `s`, skipping quoted strings. Returns its byte offset.
fn find_close(s: &str, close: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'\'' || b[i] == b'"' {
                    quote = Some(b[i]);
                } else if s[i..].starts_with(close) {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

fn split_template(text: &str, syntax: Syntax) -> Result<Vec<Part>, ResolveError> {
    let mut parts: Vec<Part> = Vec::new();
    let mut text_buf = String::new();
    let mut rest = text;
    let mut strip_next = false; // a `-}}` / `-%}` / `-#}` asked to strip following whitespace
    let mut trim_newline = false; // trim_blocks after `%}` / `#}`
    let flush = |buf: &mut String, parts: &mut Vec<Part>| {
        if !buf.is_empty() {
            parts.push(Part::Text(std::mem::take(buf)));
        }
    };
    loop {
        if strip_next {
            rest = rest.trim_start();
            strip_next = false;
        }
        if trim_newline {
            rest = rest.strip_prefix('\n').unwrap_or(rest);
            trim_newline = false;
        }
        let next = match syntax {
            Syntax::Ansible => ["{{", "{%", "{#"]
                .iter()
                .filter_map(|o| rest.find(o).map(|i| (i, *o)))
                .min(),
            Syntax::Component => rest.find("{{").map(|i| (i, "{{")),
        };
        let Some((start, open)) = next else {
            text_buf.push_str(rest);
            break;
        };
        text_buf.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let (after, strip_before) = match after.strip_prefix('-') {
            Some(a) => (a, true),
            None => (after, false),
        };
        if strip_before {
            let t = text_buf.trim_end().len();
            text_buf.truncate(t);
        }
        match open {
            "{{" => {
                let Some(end) = find_close(after, "}}") else {
                    if syntax == Syntax::Component {
                        text_buf.push_str(&rest[start..]);
                        break;
                    }
                    return Err(unsupported("{{", "unclosed {{ (Jinja would refuse it too)"));
                };
                let mut inner = &after[..end];
                if let Some(i) = inner.strip_suffix('-') {
                    inner = i;
                    strip_next = true;
                }
                flush(&mut text_buf, &mut parts);
                parts.push(Part::Expr(inner.to_string()));
                rest = &after[end + 2..];
            }
            "{#" => {
                let Some(end) = after.find("#}") else {
                    return Err(unsupported(
                        "{#",
                        "unclosed {# comment (Jinja would refuse it too)",
                    ));
                };
                strip_next = after[..end].ends_with('-');
                trim_newline = !strip_next;
                rest = &after[end + 2..];
            }
            _ => {
                let Some(end) = find_close(after, "%}") else {
                    return Err(unsupported(
                        "{%",
                        "unclosed {% tag (Jinja would refuse it too)",
                    ));
                };
                let mut tag = &after[..end];
                let strip_after = tag.ends_with('-');
                if strip_after {
                    tag = &tag[..tag.len() - 1];
                }
                let shown = format!("{{% {} %}}", tag.trim());
                let word = tag.split_whitespace().next().unwrap_or("");
                if word != "raw" || tag.split_whitespace().count() != 1 {
                    return Err(unsupported(
                        &shown,
                        format!("{{% {word} %}} blocks are not supported (only {{% raw %}} is)"),
                    ));
                }
                // Everything up to `{% endraw %}` is text.
                let body = &after[end + 2..];
                let body = if strip_after { body.trim_start() } else { body };
                let body = body.strip_prefix('\n').unwrap_or(body);
                let Some((close_start, close_len, strip_raw_before, strip_raw_after)) =
                    find_endraw(body)
                else {
                    return Err(unsupported(&shown, "{% raw %} without {% endraw %}"));
                };
                let content = &body[..close_start];
                let content = if strip_raw_before {
                    content.trim_end()
                } else {
                    content
                };
                text_buf.push_str(content);
                rest = &body[close_start + close_len..];
                strip_next = strip_raw_after;
                trim_newline = !strip_raw_after;
            }
        }
    }
    flush(&mut text_buf, &mut parts);
    Ok(parts)
}

/// The `{% endraw %}` closing a raw block: (start, length, `{%-` given, `-%}` given).
fn find_endraw(body: &str) -> Option<(usize, usize, bool, bool)> {
    let mut from = 0;
    while let Some(i) = body[from..].find("{%") {
        let start = from + i;
        let after = &body[start + 2..];
        let (after, strip_before) = match after.strip_prefix('-') {
            Some(a) => (a, true),
            None => (after, false),
        };
        if let Some(end) = after.find("%}") {
            let tag = &after[..end];
            let (tag, strip_after) = match tag.strip_suffix('-') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            if tag.trim() == "endraw" {
                let len = 2 + usize::from(strip_before) + end + 2;
                return Some((start, len, strip_before, strip_after));
            }
        }
        from = start + 2;
    }
    None
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Val),
    Var(String),
    /// `inner | name(args)`.
    Filter(Box<Expr>, String, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    Float(f64),
    Pipe,
    LParen,
    RParen,
    Comma,
    /// Anything else, as written (`.`, `[`, `+`, `==`, `~`...).
    Other(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_alphabetic() || ch == '_' {
            let st = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(c[st..i].iter().collect()));
        } else if ch.is_ascii_digit()
            || (ch == '-'
                && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                && !matches!(
                    out.last(),
                    Some(Tok::Name(_) | Tok::Str(_) | Tok::Int(_) | Tok::Float(_) | Tok::RParen)
                ))
        {
            let st = i;
            i += 1;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            let t: String = c[st..i].iter().filter(|c| **c != '_').collect();
            if t.contains('.') {
                let f = t.parse::<f64>().map_err(|_| format!("bad number {t}"))?;
                out.push(Tok::Float(f));
            } else {
                let n = t.parse::<i64>().map_err(|_| format!("bad number {t}"))?;
                out.push(Tok::Int(n));
            }
        } else if ch == '\'' || ch == '"' {
            let mut v = String::new();
            i += 1;
            loop {
                let Some(&d) = c.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                if d == ch {
                    break;
                }
                if d == '\\' {
                    let Some(&e) = c.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    match e {
                        'n' => v.push('\n'),
                        't' => v.push('\t'),
                        '\\' | '\'' | '"' => v.push(e),
                        other => {
                            v.push('\\');
                            v.push(other);
                        }
                    }
                } else {
                    v.push(d);
                }
            }
            out.push(Tok::Str(v));
        } else {
            i += 1;
            out.push(match ch {
                '|' => Tok::Pipe,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                _ => {
                    let mut op = ch.to_string();
                    if let Some(&n) = c.get(i)
                        && matches!(n, '=' | '*' | '/')
                        && matches!(ch, '=' | '!' | '<' | '>' | '*' | '/')
                    {
                        op.push(n);
                        i += 1;
                    }
                    Tok::Other(op)
                }
            });
        }
    }
    Ok(out)
}

const FILTERS: &[&str] = &["default", "d", "string", "int", "lower", "upper", "trim"];
const KEYWORDS: &[&str] = &["if", "else", "and", "or", "not", "is", "in"];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parse one expression (the inside of `{{ }}`). The error says what is not supported.
fn parse_expr(s: &str) -> Result<Expr, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("empty expression".into());
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(p.not_supported(t)),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn not_supported(&self, t: &Tok) -> String {
        match t {
            Tok::Other(o) if o == "." || o == "[" => {
                "attribute and index access (x.y, x['y']) are not supported".into()
            }
            Tok::Other(o) => format!("the operator {o} is not supported"),
            Tok::Name(n) if KEYWORDS.contains(&n.as_str()) => {
                format!("`{n}` expressions are not supported")
            }
            Tok::LParen => "function calls are not supported".into(),
            _ => "this expression is not supported".into(),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            let Some(Tok::Name(f)) = self.next() else {
                return Err("a filter name must follow |".into());
            };
            if !FILTERS.contains(&f.as_str()) {
                return Err(format!("the filter {f} is not supported"));
            }
            let mut args = Vec::new();
            if self.peek() == Some(&Tok::LParen) {
                self.pos += 1;
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        if let (Some(Tok::Name(_)), Some(Tok::Other(eq))) =
                            (self.peek(), self.toks.get(self.pos + 1))
                            && eq == "="
                        {
                            return Err(format!("keyword arguments to {f} are not supported"));
                        }
                        args.push(self.expr()?);
                        match self.next() {
                            Some(Tok::Comma) => continue,
                            Some(Tok::RParen) => break,
                            Some(t) => return Err(self.not_supported(&t)),
                            None => return Err("unclosed (".into()),
                        }
                    }
                } else {
                    self.pos += 1;
                }
            }
            let max = match f.as_str() {
                "default" | "d" => 2,
                "int" => 1,
                _ => 0,
            };
            if args.len() > max || (matches!(f.as_str(), "default" | "d") && args.is_empty()) {
                return Err(format!(
                    "{f} with {} arguments is not supported",
                    args.len()
                ));
            }
            e = Expr::Filter(Box::new(e), f, args);
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let e = match self.next() {
            Some(Tok::Str(s)) => Expr::Lit(Val::Str(s)),
            Some(Tok::Int(i)) => Expr::Lit(Val::Int(i)),
            Some(Tok::Float(f)) => Expr::Lit(Val::Float(f)),
            Some(Tok::LParen) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::RParen) => e,
                    Some(t) => return Err(self.not_supported(&t)),
                    None => return Err("unclosed (".into()),
                }
            }
            Some(Tok::Name(n)) => match n.as_str() {
                "true" | "True" => Expr::Lit(Val::Bool(true)),
                "false" | "False" => Expr::Lit(Val::Bool(false)),
                "none" | "None" => Expr::Lit(Val::None),
                k if KEYWORDS.contains(&k) => {
                    return Err(format!("`{k}` expressions are not supported"));
                }
                _ if self.peek() == Some(&Tok::LParen) => {
                    return Err(format!("{n}() is not supported"));
                }
                "hostvars" | "groups" | "vars" => {
                    return Err(format!("{n} is not supported"));
                }
                _ => Expr::Var(n),
            },
            Some(t) => return Err(self.not_supported(&t)),
            None => return Err("incomplete expression".into()),
        };
        match self.peek() {
            Some(t @ Tok::Other(o)) if o == "." || o == "[" => Err(self.not_supported(t)),
            _ => Ok(e),
        }
    }
}

/// A [`Scope`] over one host's inventory variables (plus `inventory_hostname` and
/// `inventory_hostname_short`), with each variable's origin.
pub struct HostScope<'a> {
    pub host: &'a str,
    pub vars: &'a super::Vars,
    pub origin: &'a dyn Fn(&str) -> String,
}

impl HostScope<'_> {
    /// The host's name variables Ansible sets itself.
    pub fn magic(&self, name: &str) -> Option<&str> {
        match name {
            "inventory_hostname" => Some(self.host),
            "inventory_hostname_short" => Some(self.host.split('.').next().unwrap_or(self.host)),
            _ => None,
        }
    }
}

impl Scope for HostScope<'_> {
    fn lookup(&self, name: &str) -> Option<Def<'_>> {
        if let Some(v) = self.vars.get(name) {
            return Some(Def {
                raw: Raw::Value(v),
                origin: (self.origin)(name),
            });
        }
        self.magic(name).map(|h| Def {
            raw: Raw::Text(h, Syntax::Component),
            origin: "Ansible's inventory_hostname".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Map(Vec<(&'static str, Value)>);

    impl Scope for Map {
        fn lookup(&self, name: &str) -> Option<Def<'_>> {
            self.0.iter().find(|(k, _)| *k == name).map(|(k, v)| Def {
                raw: Raw::Value(v),
                origin: format!("file-of-{k}"),
            })
        }
    }

    fn scope(v: Value) -> Map {
        let Value::Object(o) = v else { panic!() };
        Map(o
            .into_iter()
            .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
            .collect())
    }

    fn get(v: Value, name: &str) -> Result<Val, ResolveError> {
        let s = scope(v);
        Resolver::new(&s).resolve(name)
    }

    fn plain(v: Value, name: &str) -> String {
        get(v, name).unwrap().to_plain()
    }

    fn err(v: Value, name: &str) -> String {
        get(v, name).unwrap_err().to_string()
    }

    #[test]
    fn variables_and_text() {
        let v = json!({"base": "/srv", "dir": "{{ base }}/data", "x": "{{dir}}-{{ base }}",
                       "plain": "no templates", "port": 5432, "p": "{{ port }}",
                       "pt": "port {{ port }}", "t": true, "tt": "{{ t }}", "tx": "{{ t }}!"});
        assert_eq!(plain(v.clone(), "dir"), "/srv/data");
        assert_eq!(plain(v.clone(), "x"), "/srv/data-/srv");
        assert_eq!(plain(v.clone(), "plain"), "no templates");
        assert_eq!(get(v.clone(), "p").unwrap(), Val::Int(5432));
        assert_eq!(plain(v.clone(), "pt"), "port 5432");
        assert_eq!(plain(v.clone(), "tt"), "true");
        assert_eq!(plain(v, "tx"), "True!");
    }

    #[test]
    fn defaults_and_filters() {
        let v = json!({
            "a": "{{ missing | default('fallback') }}",
            "b": "{{ missing | d(\"dq\") }}",
            "c": "{{ empty | default('x') }}",
            "d": "{{ empty | default('x', true) }}",
            "e": "{{ missing | default(base) }}/sub",
            "f": "{{ missing | default(8080) }}",
            "g": "{{ missing | default(other | default(false)) }}",
            "h": "{{ ' MiXed ' | trim | lower }}{{ 'up' | upper }}",
            "i": "{{ '42' | int + 0 }}",
            "j": "{{ '42' | int }}",
            "k": "{{ 'x' | int(7) }}",
            "l": "{{ port | string }}",
            "m": "{{ t | string }}",
            "n": "{{ (missing | default('A')) | lower }}",
            "o": "{{ chain | default('undefined below') }}",
            "chain": "{{ nowhere }}",
            "p": "{{ zero | default(1, true) }}",
            "empty": "", "base": "/srv", "port": 5432, "t": true, "zero": 0
        });
        assert_eq!(plain(v.clone(), "a"), "fallback");
        assert_eq!(plain(v.clone(), "b"), "dq");
        assert_eq!(plain(v.clone(), "c"), "");
        assert_eq!(plain(v.clone(), "d"), "x");
        assert_eq!(plain(v.clone(), "e"), "/srv/sub");
        assert_eq!(get(v.clone(), "f").unwrap(), Val::Int(8080));
        assert_eq!(get(v.clone(), "g").unwrap(), Val::Bool(false));
        assert_eq!(plain(v.clone(), "h"), "mixedUP");
        assert!(err(v.clone(), "i").contains("the operator + is not supported"));
        assert_eq!(get(v.clone(), "j").unwrap(), Val::Int(42));
        assert_eq!(get(v.clone(), "k").unwrap(), Val::Int(7));
        assert_eq!(plain(v.clone(), "l"), "5432");
        assert_eq!(plain(v.clone(), "m"), "True");
        assert_eq!(plain(v.clone(), "n"), "a");
        assert_eq!(plain(v.clone(), "o"), "undefined below");
        assert_eq!(get(v, "p").unwrap(), Val::Int(1));
    }

    #[test]
    fn raw_comments_and_whitespace_control() {
        let v = json!({
            "raw": "{% raw %}{{ not_a_var }}{% endraw %}/x",
            "raw2": "a {%- raw -%}  {{ y }}  {%- endraw -%} b",
            "com": "a{# a comment #}b",
            "nl": "line1\n{# c #}\nline2",
            "ws": "a   {{- base -}}   b",
            "base": "/srv",
        });
        assert_eq!(plain(v.clone(), "raw"), "{{ not_a_var }}/x");
        assert_eq!(plain(v.clone(), "raw2"), "a{{ y }}b");
        assert_eq!(plain(v.clone(), "com"), "ab");
        assert_eq!(plain(v.clone(), "nl"), "line1\nline2");
        assert_eq!(plain(v, "ws"), "a/srvb");
    }

    #[test]
    fn unsafe_is_literal_and_vault_is_refused() {
        let v = json!({
            "u": {"__ansible_unsafe": "{{ lookup('pipe', 'id') }}{% if %}"},
            "ref": "{{ u }}/x",
            "v": {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n..."},
            "rv": "{{ v }}",
        });
        assert_eq!(plain(v.clone(), "u"), "{{ lookup('pipe', 'id') }}{% if %}");
        assert_eq!(
            plain(v.clone(), "ref"),
            "{{ lookup('pipe', 'id') }}{% if %}/x"
        );
        assert_eq!(
            err(v.clone(), "v"),
            "is vault-encrypted; lsbackup cannot decrypt ansible-vault values"
        );
        assert!(err(v, "rv").starts_with("uses v (from file-of-v), which is vault-encrypted"));
    }

    #[test]
    fn non_strings_and_lists() {
        let v = json!({"n": 3, "f": 1.5, "b": false, "z": null,
                       "l": ["/a", "{{ base }}/b", 3], "m": {"k": "{{ v }}"}, "base": "/srv",
                       "lt": "x {{ l }}"});
        assert_eq!(plain(v.clone(), "n"), "3");
        assert_eq!(plain(v.clone(), "f"), "1.5");
        assert_eq!(plain(v.clone(), "b"), "false");
        assert_eq!(plain(v.clone(), "z"), "");
        assert_eq!(plain(v.clone(), "l"), "/a,/srv/b,3");
        assert_eq!(plain(v.clone(), "m"), r#"{"k":"{{ v }}"}"#);
        assert!(err(v, "lt").contains("a list or mapping written into text is not supported"));
    }

    #[test]
    fn refusals_name_the_expression() {
        let cases = [
            (
                "{{ lookup('env','HOME') }}",
                "{{ lookup('env','HOME') }}: lookup() is not supported",
            ),
            ("{{ query('x') }}", "query() is not supported"),
            (
                "{{ hostvars['db1'].ip }}",
                "{{ hostvars['db1'].ip }}: hostvars is not supported",
            ),
            ("{{ groups['db'][0] }}", "groups is not supported"),
            ("{{ a.b }}", "attribute and index access"),
            ("{{ a['b'] }}", "attribute and index access"),
            (
                "{{ x | regex_replace('a', 'b') }}",
                "the filter regex_replace is not supported",
            ),
            ("{{ x if y else z }}", "`if` expressions are not supported"),
            ("{{ x ~ 'y' }}", "the operator ~ is not supported"),
            ("{{ x == 1 }}", "the operator == is not supported"),
            ("{{ x | default(y, boolean=true) }}", "keyword arguments"),
            ("{{ x | default }}", "default with 0 arguments"),
            ("{{ }}", "empty expression"),
            ("{{ 'open }}", "unclosed {{"),
            ("{{ x", "unclosed {{"),
            (
                "{% if x %}a{% endif %}",
                "{% if x %}: {% if %} blocks are not supported",
            ),
            ("{% set y = 1 %}", "{% set %} blocks are not supported"),
            ("{% raw %}never closed", "{% raw %} without {% endraw %}"),
            ("a {# open", "unclosed {# comment"),
            ("s3cr{{t", "{{: unclosed {{"),
        ];
        for (t, want) in cases {
            let e = err(json!({ "v": t }), "v");
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn errors_in_referenced_variables_name_them() {
        let v = json!({"a": "{{ b }}/x", "b": "{{ c }}", "c": "{{ lookup('env','HOME') }}"});
        let e = get(v, "a").unwrap_err();
        assert_eq!(e.innermost(), Some(("c", "file-of-c")));
        assert_eq!(
            e.to_string(),
            "uses b (from file-of-b), which uses c (from file-of-c), which \
             {{ lookup('env','HOME') }}: lookup() is not supported"
        );
        assert_eq!(err(json!({"a": "{{ b }}"}), "a"), "b is not defined");
    }

    #[test]
    fn cycles_are_detected() {
        let v = json!({"a": "{{ b }}", "b": "x{{ a }}", "s": "{{ s }}", "ok": "{{ c }}", "c": "1"});
        let e = get(v.clone(), "a").unwrap_err().to_string();
        assert!(e.contains("refers to itself (a -> b -> a)"), "{e}");
        assert!(err(v.clone(), "s").contains("refers to itself (s -> s)"));
        // Both members fail, whichever is resolved first.
        let s = scope(v);
        let mut r = Resolver::new(&s);
        assert!(r.resolve("b").is_err());
        assert!(r.resolve("a").is_err());
        assert_eq!(r.resolve("ok").unwrap(), Val::Str("1".into()));
    }

    #[test]
    fn component_syntax_keeps_shell_text() {
        let s = scope(json!({"dir": "/etc/x"}));
        let mut r = Resolver::new(&s);
        let t = "n=${#arr[@]} {% not jinja %} {{ dir }} {{ unclosed";
        assert_eq!(
            r.eval_raw(Raw::Text(t, Syntax::Component)).unwrap(),
            Val::Str("n=${#arr[@]} {% not jinja %} /etc/x {{ unclosed".into())
        );
    }

    #[test]
    fn host_scope_knows_inventory_hostname() {
        let Value::Object(vars) =
            json!({"n": "{{ inventory_hostname_short }}-{{ inventory_hostname }}"})
        else {
            panic!()
        };
        let origin = |_: &str| "inventory.ini".to_string();
        let s = HostScope {
            host: "db1.example.com",
            vars: &vars,
            origin: &origin,
        };
        assert_eq!(
            Resolver::new(&s).resolve("n").unwrap().to_plain(),
            "db1-db1.example.com"
        );
    }
}
