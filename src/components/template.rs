//! The spec language's templates: `{{ var }}` is quoted by construction.
//!
//! A component spec's text meets values in four kinds of place, and each has its own renderer:
//!
//! - **shell** ([`shell`]): `run`, `exec`, `capture`, `foreach`, `when`, `select.command`,
//!   `versions.*.command`, `cleanup.*.run`/`when`, and `snippets`. `{{ var }}` becomes ONE quoted
//!   word ([`crate::shell::quote`]); `{{ var | words }}` one quoted word per whitespace-separated
//!   item; `{{ var | lines }}` one quoted word per non-empty line; `{{> name }}` inserts the spec's
//!   snippet `name` (shell text of the spec, never a variable) rendered by the same rules. A
//!   placeholder inside single or double quotes, backquotes, a comment or a here-document is
//!   refused when the spec is loaded ([`check_shell`]): `f="{{ x }}"` cannot be written,
//!   `f={{ x }}` is the assignment of one quoted word.
//! - **plain** ([`plain`], [`user`], [`entry_name`]): an `output` entry name, `become_user`,
//!   `serial`, variables that refer to other variables: the raw value, validated where it
//!   matters (a user name, a relative entry path without `..`).
//! - **copy** ([`copy_patterns`]): each `copy:` entry is a path pattern; its literal text keeps its
//!   glob characters, an inserted value is glob-escaped (matches only itself); an entry that is
//!   exactly `{{ var | lines }}` or `{{ var | words }}` is one literal pattern per item.
//! - **display** ([`shell_redacted`], [`plain_redacted`]): as above, secret variables shown as
//!   `********` (plan, manifest).

use std::collections::BTreeMap;

use super::SpecError;
use crate::shell::{Script, quote, quote_words};

/// Variable name -> value.
pub type Vars = BTreeMap<String, String>;
/// Snippet name -> shell text (the spec's `snippets:`).
pub type Snippets = BTreeMap<String, String>;

/// How a `{{ var }}` value is split into words in a shell context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `{{ var }}`: one word.
    One,
    /// `{{ var | words }}`: one word per whitespace-separated item.
    Words,
    /// `{{ var | lines }}`: one word per non-empty line.
    Lines,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var {
        name: &'a str,
        filter: Filter,
        raw: &'a str,
    },
    Snippet {
        name: &'a str,
        raw: &'a str,
    },
}

/// A template that does not parse: (offending text, reason).
type ParseError = (String, String);

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Split a template into text, variables and snippet references.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, ParseError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            let raw: String = rest[start..].chars().take(40).collect();
            return Err((raw, "has no closing }}".into()));
        };
        let raw = &rest[start..start + 2 + end + 2];
        let inner = after[..end].trim();
        if let Some(name) = inner.strip_prefix('>') {
            let name = name.trim();
            if !is_name(name) {
                return Err((raw.into(), "is not a snippet name".into()));
            }
            out.push(Piece::Snippet { name, raw });
        } else {
            let (name, filter) = match inner.split_once('|') {
                None => (inner, Filter::One),
                Some((n, f)) => {
                    let f = match f.trim() {
                        "words" => Filter::Words,
                        "lines" => Filter::Lines,
                        other => {
                            return Err((
                                raw.into(),
                                format!("uses unknown filter {other:?} (known: words, lines)"),
                            ));
                        }
                    };
                    (n.trim(), f)
                }
            };
            if !is_name(name) {
                return Err((raw.into(), "is not a variable name".into()));
            }
            out.push(Piece::Var { name, filter, raw });
        }
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

fn undefined(template: &str, var: &str) -> SpecError {
    SpecError::UndefinedVar {
        template: template.to_string(),
        var: var.to_string(),
    }
}

fn get<'v>(vars: &'v Vars, template: &str, name: &str) -> Result<&'v str, SpecError> {
    vars.get(name)
        .map(String::as_str)
        .ok_or_else(|| undefined(template, name))
}

fn not_a_template(template: &str, (raw, reason): ParseError) -> SpecError {
    SpecError::BadTemplate {
        template: template.to_string(),
        reason: format!("{raw} {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// shell contexts

/// Where a placeholder sits in shell text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Top,
    /// `$( ... )` with this many unclosed `(` inside.
    Subst(u32),
    Backtick,
    Double,
    Single,
    Comment,
    /// `${ ... }`; `true` when inside double quotes.
    Param(bool),
}

/// Check shell text of a spec: every placeholder parses, sits outside quotes, backquotes, comments
/// and here-documents, and `words`/`lines` placeholders stand as words of their own. Returns
/// (offending text, reason) for the first problem.
fn lex(text: &str) -> Result<(), ParseError> {
    let b = text.as_bytes();
    let mut stack = vec![Frame::Top];
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    let line_of = |at: usize| -> String {
        let s = text[..at].rfind('\n').map_or(0, |p| p + 1);
        let e = text[at..].find('\n').map_or(text.len(), |p| at + p);
        text[s..e].trim().to_string()
    };
    while i < b.len() {
        let top = *stack.last().unwrap_or(&Frame::Top);
        if b[i..].starts_with(b"{{") {
            let Some(end) = text[i + 2..].find("}}") else {
                return Err((line_of(i), "has a {{ with no closing }}".into()));
            };
            let end = i + 2 + end + 2;
            let raw = &text[i..end];
            let pieces = parse(raw)?;
            let where_ = stack.iter().rev().find_map(|f| match f {
                Frame::Double => Some("inside double quotes"),
                Frame::Single => Some("inside single quotes"),
                Frame::Backtick => Some("inside `...` (use $(...))"),
                Frame::Comment => Some("inside a comment"),
                Frame::Param(_) => Some("inside ${...}"),
                _ => None,
            });
            if let Some(w) = where_ {
                return Err((
                    line_of(i),
                    format!(
                        "{raw} {w}: a value is inserted as one quoted word, write it unquoted \
                         (f={{{{ x }}}}, not f=\"{{{{ x }}}}\")"
                    ),
                ));
            }
            if let Some(Piece::Var {
                filter: Filter::Words | Filter::Lines,
                ..
            }) = pieces.first()
            {
                let before_ok = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'(');
                let after_ok =
                    end == b.len() || matches!(b[end], b' ' | b'\t' | b'\n' | b';' | b')' | b'|');
                if !before_ok || !after_ok {
                    return Err((
                        line_of(i),
                        format!("{raw} must stand as words of their own (spaces around it)"),
                    ));
                }
            }
            i = end;
            continue;
        }
        let c = b[i];
        let next = b.get(i + 1).copied();
        match top {
            Frame::Single => {
                if c == b'\'' {
                    stack.pop();
                }
            }
            Frame::Comment => {
                if c == b'\n' {
                    stack.pop();
                    continue; // the newline ends a line of the enclosing frame too
                }
            }
            Frame::Param(in_double) => match c {
                b'\\' => i += 1,
                b'}' => {
                    stack.pop();
                }
                b'"' => stack.push(Frame::Double),
                b'\'' if !in_double => stack.push(Frame::Single),
                b'$' if next == Some(b'{') => {
                    stack.push(Frame::Param(in_double));
                    i += 1;
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Frame::Subst(0));
                    i += 1;
                }
                _ => {}
            },
            Frame::Double => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if next == Some(b'{') => {
                    stack.push(Frame::Param(true));
                    i += 1;
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Frame::Subst(0));
                    i += 1;
                }
                b'`' => stack.push(Frame::Backtick),
                _ => {}
            },
            Frame::Top | Frame::Subst(_) | Frame::Backtick => match c {
                b'\\' => i += 1,
                b'\'' => stack.push(Frame::Single),
                b'"' => stack.push(Frame::Double),
                b'$' if next == Some(b'\'') => {
                    return Err((
                        line_of(i),
                        "uses $'...' quoting, which is not supported".into(),
                    ));
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Frame::Subst(0));
                    i += 1;
                }
                b'$' if next == Some(b'{') => {
                    stack.push(Frame::Param(false));
                    i += 1;
                }
                b'`' => {
                    if top == Frame::Backtick {
                        stack.pop();
                    } else {
                        stack.push(Frame::Backtick);
                    }
                }
                b'(' => {
                    if let Some(Frame::Subst(n)) = stack.last_mut() {
                        *n += 1;
                    }
                }
                b')' => match stack.last_mut() {
                    Some(Frame::Subst(0)) => {
                        stack.pop();
                    }
                    Some(Frame::Subst(n)) => *n -= 1,
                    _ => {}
                },
                b'#' if i == 0
                    || matches!(
                        b[i - 1],
                        b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')'
                    ) =>
                {
                    stack.push(Frame::Comment)
                }
                b'<' if next == Some(b'<') => {
                    if b.get(i + 2) == Some(&b'<') {
                        i += 3; // here-string
                        continue;
                    }
                    let mut j = i + 2;
                    let strip = b.get(j) == Some(&b'-');
                    if strip {
                        j += 1;
                    }
                    while j < b.len() && matches!(b[j], b' ' | b'\t') {
                        j += 1;
                    }
                    let s = j;
                    while j < b.len() && !b" \t\n;&|<>()".contains(&b[j]) {
                        j += 1;
                    }
                    let delim: String = text[s..j]
                        .chars()
                        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
                        .collect();
                    if delim.is_empty() || delim.contains("{{") {
                        return Err((line_of(i), "has a here-document without a delimiter".into()));
                    }
                    heredocs.push((delim, strip));
                    i = j;
                    continue;
                }
                b'\n' if !heredocs.is_empty() => {
                    // the bodies of the here-documents started on this line
                    let mut at = i + 1;
                    for (delim, strip) in std::mem::take(&mut heredocs) {
                        loop {
                            if at >= b.len() {
                                return Err((
                                    delim.clone(),
                                    "here-document has no end line".to_string(),
                                ));
                            }
                            let e = text[at..].find('\n').map_or(b.len(), |p| at + p);
                            let line = &text[at..e];
                            let cmp = if strip {
                                line.trim_start_matches('\t')
                            } else {
                                line
                            };
                            if cmp == delim {
                                at = e;
                                break;
                            }
                            if line.contains("{{") {
                                return Err((
                                    line.trim().to_string(),
                                    "{{ }} inside a here-document: pass the value as an \
                                     argument or a variable set before it"
                                        .into(),
                                ));
                            }
                            at = e + 1;
                        }
                    }
                    i = at;
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    if stack.last() == Some(&Frame::Comment) {
        stack.pop();
    }
    if let Some(open) = stack.iter().rev().find(|f| **f != Frame::Top) {
        let what = match open {
            Frame::Double => "an unterminated double quote",
            Frame::Single => "an unterminated single quote",
            Frame::Backtick => "an unterminated `",
            Frame::Param(_) => "an unterminated ${",
            _ => "an unterminated $(",
        };
        let first: String = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .into();
        return Err((first.trim().to_string(), format!("has {what}")));
    }
    if !heredocs.is_empty() {
        return Err((text.trim().into(), "here-document has no body".into()));
    }
    Ok(())
}

/// Load-time check of shell text (see [`lex`]); `Err((text, reason))`.
pub fn check_shell(text: &str) -> Result<(), (String, String)> {
    lex(text)
}

/// Load-time check of plain text: variables without filters, no snippets.
pub fn check_plain(text: &str) -> Result<(), (String, String)> {
    for p in parse(text)? {
        match p {
            Piece::Text(_) => {}
            Piece::Var {
                filter: Filter::One,
                ..
            } => {}
            Piece::Var { raw, .. } => {
                return Err((raw.into(), "filters apply to commands and copy only".into()));
            }
            Piece::Snippet { raw, .. } => {
                return Err((raw.into(), "snippets go in commands only".into()));
            }
        }
    }
    Ok(())
}

/// Load-time check of one `copy:` entry: filters only on an entry that is just `{{ v | lines }}`
/// or `{{ v | words }}`; no snippets; literal entries absolute.
pub fn check_copy(entry: &str) -> Result<(), (String, String)> {
    let pieces = parse(entry.trim())?;
    if let [Piece::Var { .. }] = pieces.as_slice() {
        return Ok(());
    }
    for p in &pieces {
        match p {
            Piece::Var {
                raw,
                filter: Filter::Words | Filter::Lines,
                ..
            } => {
                return Err((
                    (*raw).into(),
                    "a words/lines list must be the whole copy entry".into(),
                ));
            }
            Piece::Snippet { raw, .. } => {
                return Err(((*raw).into(), "snippets go in commands only".into()));
            }
            _ => {}
        }
    }
    if let Some(Piece::Text(t)) = pieces.first()
        && !t.starts_with('/')
    {
        return Err((entry.into(), "is not an absolute path".into()));
    }
    Ok(())
}

/// The snippets a shell text refers to with `{{> name }}`.
pub fn snippet_refs(text: &str) -> Vec<String> {
    parse(text)
        .map(|ps| {
            ps.into_iter()
                .filter_map(|p| match p {
                    Piece::Snippet { name, .. } => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Most snippet inclusions in one rendered command, and its largest size: snippets that each
/// include the next several times would otherwise make a command of 40^7 copies.
const MAX_INCLUSIONS: u32 = 1000;
const MAX_RENDERED: usize = 16 << 20;

fn render_shell(
    template: &str,
    vars: &Vars,
    snippets: &Snippets,
    depth: u32,
    inclusions: &mut u32,
    out: &mut String,
) -> Result<(), SpecError> {
    if depth > 8 {
        return Err(SpecError::BadTemplate {
            template: template.into(),
            reason: "snippets nested more than 8 deep (a cycle?)".into(),
        });
    }
    lex(template).map_err(|e| not_a_template(template, e))?;
    for p in parse(template).map_err(|e| not_a_template(template, e))? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, filter, .. } => {
                let v = get(vars, template, name)?;
                match filter {
                    Filter::One => out.push_str(&quote(v)),
                    Filter::Words => out.push_str(&quote_words(v.split_whitespace())),
                    Filter::Lines => out.push_str(&quote_words(
                        v.lines()
                            .map(|l| l.strip_suffix('\r').unwrap_or(l))
                            .filter(|l| !l.trim().is_empty()),
                    )),
                }
            }
            Piece::Snippet { name, raw } => {
                let s = snippets.get(name).ok_or_else(|| SpecError::BadTemplate {
                    template: template.into(),
                    reason: format!("{raw} names no snippet of this component"),
                })?;
                *inclusions += 1;
                if *inclusions > MAX_INCLUSIONS {
                    return Err(SpecError::BadTemplate {
                        template: template.into(),
                        reason: format!(
                            "snippets included more than {MAX_INCLUSIONS} times in one command"
                        ),
                    });
                }
                render_shell(s, vars, snippets, depth + 1, inclusions, out)?;
            }
        }
        if out.len() > MAX_RENDERED {
            return Err(SpecError::BadTemplate {
                template: template.into(),
                reason: format!("renders to more than {} MiB", MAX_RENDERED >> 20),
            });
        }
    }
    Ok(())
}

/// Render shell text: every value one quoted word (or one per item with `words`/`lines`),
/// snippets inserted as shell text. The result runs as `sh -c`.
pub fn shell(template: &str, vars: &Vars, snippets: &Snippets) -> Result<Script, SpecError> {
    let mut out = String::with_capacity(template.len() + 64);
    render_shell(template, vars, snippets, 0, &mut 0, &mut out)?;
    Ok(Script::from_rendered(out))
}

/// Variables for display: secret ones (by name, [`super::is_secret_var`]) as `********`.
pub fn redact(vars: &Vars) -> Vars {
    vars.iter()
        .map(|(k, v)| {
            let v = if super::is_secret_var(k) {
                "********".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// [`shell`] for display (plan, manifest): secret variables' values show as `********`.
pub fn shell_redacted(
    template: &str,
    vars: &Vars,
    snippets: &Snippets,
) -> Result<String, SpecError> {
    Ok(shell(template, &redact(vars), snippets)?.to_shell())
}

// ---------------------------------------------------------------------------------------------
// plain contexts

/// Render plain text: each `{{ var }}` replaced by the raw value (an `output` name, a user, a
/// flag, a variable's default that refers to another variable).
pub fn plain(template: &str, vars: &Vars) -> Result<String, SpecError> {
    check_plain(template).map_err(|e| not_a_template(template, e))?;
    let mut out = String::with_capacity(template.len());
    for p in parse(template).map_err(|e| not_a_template(template, e))? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, .. } => out.push_str(get(vars, template, name)?),
            Piece::Snippet { .. } => unreachable!("refused by check_plain"),
        }
    }
    Ok(out)
}

/// [`plain`] for display: secret variables' values show as `********`.
pub fn plain_redacted(template: &str, vars: &Vars) -> Result<String, SpecError> {
    plain(template, &redact(vars))
}

fn bad_value(what: &str, value: &str, reason: &str) -> SpecError {
    SpecError::BadValue {
        what: what.into(),
        reason: format!("{value:?} {reason}"),
    }
}

/// A `become_user`: the rendered value must look like a user name (`^[a-z_][a-z0-9_.-]*$`).
pub fn user(template: &str, vars: &Vars) -> Result<String, SpecError> {
    let u = plain(template, vars)?;
    let mut c = u.chars();
    let ok = matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(bad_value(
            "become_user",
            &u,
            "is not a user name ([a-z_][a-z0-9_.-]*)",
        ));
    }
    Ok(u)
}

/// A `run` step's `output`: a relative entry path without `.`/`..`/empty parts or control
/// characters.
pub fn entry_name(template: &str, vars: &Vars) -> Result<String, SpecError> {
    let n = plain(template, vars)?;
    if n.starts_with('/')
        || n.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        || n.chars().any(char::is_control)
    {
        return Err(bad_value(
            "output",
            &n,
            "is not a relative entry path (no leading /, no empty, . or .. part)",
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// copy contexts

/// One remote path pattern of a `copy:` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPattern {
    /// The pattern for the shell's pathname expansion (inserted values glob-escaped).
    pub pattern: String,
    /// The same, as the user reads it (values as they are): for notes and errors.
    pub shown: String,
}

/// Escape the glob characters of a value so that the pattern matches only the value itself:
/// `*` `?` `[` in brackets, `\` as `[\\]` (works in dash and bash).
pub fn glob_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            '\\' => out.push_str(r"[\\]"),
            c => out.push(c),
        }
    }
    out
}

fn copy_pattern(
    pattern: String,
    shown: String,
    display: bool,
    out: &mut Vec<CopyPattern>,
) -> Result<(), SpecError> {
    if shown.is_empty() {
        return Ok(());
    }
    if !display && !pattern.starts_with('/') {
        return Err(bad_value("copy path", &shown, "is not an absolute path"));
    }
    out.push(CopyPattern { pattern, shown });
    Ok(())
}

/// The path patterns of a `copy:` step. An entry's literal text keeps its glob characters; an
/// inserted value is glob-escaped; an entry that is exactly `{{ v | lines }}`/`{{ v | words }}`
/// gives one literal pattern per item. Entries that render to nothing are dropped; relative ones
/// are errors.
pub fn copy_patterns(entries: &[String], vars: &Vars) -> Result<Vec<CopyPattern>, SpecError> {
    patterns(entries, vars, false)
}

fn patterns(entries: &[String], vars: &Vars, display: bool) -> Result<Vec<CopyPattern>, SpecError> {
    let mut out = Vec::new();
    for entry in entries {
        let e = entry.trim();
        check_copy(e).map_err(|err| not_a_template(e, err))?;
        let pieces = parse(e).map_err(|err| not_a_template(e, err))?;
        if let [Piece::Var { name, filter, .. }] = pieces.as_slice() {
            let v = get(vars, e, name)?;
            let items: Vec<&str> = match filter {
                Filter::One => vec![v],
                Filter::Words => v.split_whitespace().collect(),
                Filter::Lines => v
                    .lines()
                    .map(|l| l.strip_suffix('\r').unwrap_or(l))
                    .filter(|l| !l.trim().is_empty())
                    .collect(),
            };
            for item in items {
                copy_pattern(glob_escape(item), item.to_string(), display, &mut out)?;
            }
            continue;
        }
        let (mut pattern, mut shown) = (String::new(), String::new());
        for p in pieces {
            match p {
                Piece::Text(t) => {
                    pattern.push_str(t);
                    shown.push_str(t);
                }
                Piece::Var { name, .. } => {
                    let v = get(vars, e, name)?;
                    pattern.push_str(&glob_escape(v));
                    shown.push_str(v);
                }
                Piece::Snippet { .. } => unreachable!("refused by check_copy"),
            }
        }
        copy_pattern(pattern, shown, display, &mut out)?;
    }
    Ok(out)
}

/// The patterns of a `copy:` step for display (values may be placeholders such as
/// `<x from step 'y'>`), secret values masked.
pub fn copy_shown(entries: &[String], vars: &Vars) -> Result<Vec<String>, SpecError> {
    Ok(patterns(entries, &redact(vars), true)?
        .into_iter()
        .map(|p| p.shown)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sh(t: &str, v: &Vars) -> String {
        shell(t, v, &Snippets::new()).unwrap().to_shell()
    }

    /// Hostile input (docs/fuzzing.md, fuzz/regressions/component_spec): snippets that each
    /// include the next 40 times, 7 deep, rendered for ever (a hang); a large value repeated grew
    /// the command without a bound.
    #[test]
    fn rendering_is_bounded() {
        let text =
            include_str!("../../fuzz/regressions/component_spec/timeout-snippet-fanout.yaml");
        let spec = super::super::ComponentSpec::from_yaml("boom.yaml", text).unwrap();
        let run = spec.steps[0].run.as_deref().unwrap();
        let e = shell(run, &Vars::new(), &spec.snippets)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1000 times"), "{e}");
        let big = vars(&[("v", &"x".repeat(1 << 20))]);
        let e = shell(&"{{ v }} ".repeat(17), &big, &Snippets::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 16 MiB"), "{e}");
        assert_eq!(
            shell(&"{{ v }} ".repeat(15), &big, &Snippets::new())
                .unwrap()
                .to_shell()
                .len(),
            15 * ((1 << 20) + 1)
        );
    }

    #[test]
    fn shell_values_are_one_quoted_word() {
        let v = vars(&[
            ("dir", "/etc/my dir"),
            ("p", "5432"),
            ("list", "a b\n c"),
            ("files", "/x/a b\n\n/y/$(c)\n"),
            ("empty", ""),
        ]);
        assert_eq!(
            sh("ls {{dir}}/x -p {{ p }}", &v),
            "ls '/etc/my dir'/x -p 5432"
        );
        assert_eq!(sh("f={{ dir }}", &v), "f='/etc/my dir'");
        assert_eq!(
            sh("for w in {{ list | words }}; do", &v),
            "for w in a b c; do"
        );
        assert_eq!(sh("ls {{ files | lines }}", &v), "ls '/x/a b' '/y/$(c)'");
        assert_eq!(sh("test -n {{ empty }}", &v), "test -n ''");
        assert_eq!(sh("echo x {{ empty | words }}", &v), "echo x ");
    }

    #[test]
    fn placeholders_in_quotes_comments_heredocs_are_refused() {
        for (t, why) in [
            (r#"f="{{ x }}""#, "inside double quotes"),
            ("f='{{ x }}'", "inside single quotes"),
            (r#"echo "a $(echo b) {{ x }}""#, "inside double quotes"),
            (r#"echo "$(echo {{ x }})""#, "inside double quotes"),
            ("echo `ls {{ x }}`", "inside `...`"),
            ("# uses {{ x }}\necho", "inside a comment"),
            ("cat <<EOF\n{{ x }}\nEOF\n", "here-document"),
            ("cat <<-'E'\n\ta {{ x }}\n\tE\n", "here-document"),
            ("echo $'a' {{ x }}", "$'...'"),
            ("echo {{ x | upper }}", "unknown filter"),
            ("echo a{{ x | words }}", "words of their own"),
            ("echo {{ x", "no closing"),
            ("echo 'unterminated", "unterminated single quote"),
            ("echo {{ a b }}", "not a variable name"),
            ("d=${d:-{{ x }}}", "inside ${...}"),
            (r#"echo "${f:-"{{ x }}"/s}""#, "inside double quotes"),
        ] {
            let e = check_shell(t).unwrap_err();
            assert!(e.1.contains(why), "{t:?}: {e:?}");
        }
        for ok in [
            "f={{ x }}; echo \"$f\" 'it''s' # a comment's quote",
            "x=$(cat {{ f }} | grep -c \"a)b\") && echo ${x#/} $# {{ y | lines }}",
            "echo \"${a:-\"b}\"}\" ${c:-'}'} {{ x }}",
            "case $a in ''|/*) ;; *) b=\"$(printf '%s' \"$a\")\" ;; esac; echo {{ z }}",
            "cat <<EOF\nliteral 'quote\nEOF\necho {{ x }}",
            "echo $((1 + (2 * 3))) {{ x }}",
            "{{> snip }}\necho {{ x }}",
        ] {
            check_shell(ok).unwrap_or_else(|e| panic!("{ok:?}: {e:?}"));
        }
    }

    #[test]
    fn snippets_are_code_vars_are_not() {
        let mut snippets = Snippets::new();
        snippets.insert("cli".into(), "n={{ node }}; opt=\"-n $n\"".into());
        snippets.insert("outer".into(), "{{> cli }}\necho {{ x }}".into());
        // an inventory var named like a snippet is only ever a value
        let v = vars(&[("node", "rabbit@a b"), ("x", "1"), ("cli", "touch /tmp/x")]);
        let s = shell("{{> outer }}; echo {{ cli }}", &v, &snippets)
            .unwrap()
            .to_shell();
        assert_eq!(
            s,
            "n='rabbit@a b'; opt=\"-n $n\"\necho 1; echo 'touch /tmp/x'"
        );
        let e = shell("{{> nope }}", &v, &snippets).unwrap_err();
        assert!(e.to_string().contains("names no snippet"), "{e}");
        snippets.insert("loop".into(), "{{> loop }}".into());
        assert!(shell("{{> loop }}", &v, &snippets).is_err());
    }

    #[test]
    fn plain_user_and_entry_names() {
        let v = vars(&[
            ("u", "postgres"),
            ("bad", "root; id"),
            ("i", "db 1"),
            ("up", ".."),
        ]);
        assert_eq!(user("{{ u }}", &v).unwrap(), "postgres");
        assert!(user("{{ bad }}", &v).is_err());
        assert!(user("Root", &v).is_err());
        assert_eq!(entry_name("d/{{ i }}.dump", &v).unwrap(), "d/db 1.dump");
        assert!(entry_name("{{ up }}/x", &v).is_err());
        assert!(entry_name("/x", &v).is_err());
        assert!(plain("{{ i | words }}", &v).is_err());
        assert!(plain("{{> s }}", &v).is_err());
        assert_eq!(
            plain_redacted("{{ db_password }}", &vars(&[("db_password", "x")])).unwrap(),
            "********"
        );
    }

    #[test]
    fn copy_patterns_escape_values_keep_literal_globs() {
        let v = vars(&[
            ("d", "/etc/a*b"),
            ("certs", "/c/x.pem\n/c/[y]?.pem\n\n/c/z z.pem"),
            ("w", "/w1 /w2"),
            ("rel", "etc/x"),
            ("empty", ""),
            ("bs", r"/a\b"),
        ]);
        let ps =
            |e: &[&str]| copy_patterns(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &v);
        let got = ps(&[
            "{{ d }}/*.conf",
            "{{ certs | lines }}",
            "{{ w | words }}",
            "{{ empty }}",
            "{{ bs }}",
        ])
        .unwrap();
        let pats: Vec<_> = got.iter().map(|p| p.pattern.as_str()).collect();
        assert_eq!(
            pats,
            [
                "/etc/a[*]b/*.conf",
                "/c/x.pem",
                "/c/[[]y][?].pem",
                "/c/z z.pem",
                "/w1",
                "/w2",
                r"/a[\\]b"
            ]
        );
        assert_eq!(got[0].shown, "/etc/a*b/*.conf");
        assert!(ps(&["{{ rel }}"]).is_err());
        for bad in ["etc/x", "{{ w | words }}/x", "{{> s }}"] {
            assert!(check_copy(bad).is_err(), "{bad}");
        }
    }
}

/// Every built-in script rendered with default and hostile values: valid `sh`, and no value ever
/// runs as code.
#[cfg(test)]
mod hostile {
    use super::super::ComponentSpec;
    use super::*;
    use std::process::Command;

    const HOSTILE: &[&str] = &[
        "$(touch MARK)",
        "`touch MARK`",
        ";touch MARK",
        "'",
        "\"",
        "a\nb;touch MARK",
        "  two words  ",
        "*",
        "",
    ];

    /// (place, template) of every shell text of a spec.
    fn shell_texts(s: &ComponentSpec) -> Vec<(String, String)> {
        let mut v = Vec::new();
        let mut add = |p: String, t: &Option<String>| {
            if let Some(t) = t {
                v.push((p, t.clone()));
            }
        };
        if let Some(sel) = &s.select {
            add("select".into(), &Some(sel.command.clone()));
        }
        for (n, p) in &s.versions {
            add(format!("version {n}"), &Some(p.command.clone()));
        }
        for st in &s.steps {
            for (f, t) in [
                ("run", &st.run),
                ("exec", &st.exec),
                ("capture", &st.capture),
                ("foreach", &st.foreach),
                ("when", &st.when),
            ] {
                add(format!("step {} {f}", st.name), t);
            }
        }
        for c in &s.cleanup {
            add(format!("cleanup {} run", c.name), &Some(c.run.clone()));
            add(format!("cleanup {} when", c.name), &c.when);
        }
        for (n, t) in &s.snippets {
            add(format!("snippet {n}"), &Some(t.clone()));
        }
        v
    }

    /// Every variable a template of the spec may use: its vars, what its steps capture, `item`
    /// (a template using any other name fails to render: the test catches typos too).
    fn referenced(s: &ComponentSpec) -> Vec<String> {
        let mut names: Vec<String> = s.vars.keys().cloned().collect();
        names.push("item".into());
        names.extend(s.steps.iter().filter_map(|st| st.into.clone()));
        names.sort();
        names.dedup();
        names
    }

    fn specs() -> Vec<ComponentSpec> {
        super::super::Catalog::load(None).unwrap().components
    }

    #[test]
    fn every_builtin_script_is_valid_sh_with_any_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for s in specs() {
            let names = referenced(&s);
            let mut sets: Vec<(String, Vars)> = Vec::new();
            let mut defaults: Vars = names
                .iter()
                .map(|n| (n.clone(), format!("/placeholder/{n}")))
                .collect();
            for (k, v) in &s.vars {
                defaults.insert(k.clone(), v.clone());
            }
            let defaults: Vars = defaults
                .iter()
                .map(|(k, v)| (k.clone(), plain(v, &defaults).unwrap()))
                .collect();
            sets.push(("defaults".into(), defaults));
            for (i, h) in HOSTILE.iter().enumerate() {
                let v = names.iter().map(|n| (n.clone(), h.to_string())).collect();
                sets.push((format!("hostile{i}"), v));
            }
            for (place, t) in shell_texts(&s) {
                for (set, vars) in &sets {
                    let script = shell(&t, vars, &s.snippets)
                        .unwrap_or_else(|e| panic!("{} {place} ({set}): {e}", s.name));
                    let f = dir.path().join(format!(
                        "{}-{}-{set}.sh",
                        s.name,
                        place.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    ));
                    std::fs::write(&f, script.to_shell()).unwrap();
                    let out = Command::new("sh").arg("-n").arg(&f).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{} {place} ({set}): sh -n: {}\n{}",
                        s.name,
                        String::from_utf8_lossy(&out.stderr),
                        script.to_shell()
                    );
                    files.push((set == "defaults", f));
                }
            }
        }
        // the YAML built-ins (PostgreSQL) and the test specs; native components test their fixed
        // scripts in their own modules
        assert!(files.len() > 50, "{} scripts", files.len());
        let has_shellcheck = Command::new("shellcheck").arg("--version").output().is_ok();
        if !has_shellcheck {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "shellcheck is not installed (apt-get install shellcheck): required under CI=true"
            );
            eprintln!("shellcheck not installed: only sh -n was checked");
            return;
        }
        // hostile values make some value-dependent checks fire (a number test on `*`, a command
        // name with a newline): those are about the value, not the script's structure.
        for chunk in files.chunks(200) {
            let (def, host): (Vec<_>, Vec<_>) = chunk.iter().partition(|(d, _)| *d);
            let mut args: Vec<&std::path::Path> = Vec::new();
            args.extend(def.iter().map(|(_, f)| f.as_path()));
            let out = Command::new("shellcheck")
                .args(["-s", "sh", "-S", "error", "-f", "gcc"])
                .args(&args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            let out = Command::new("shellcheck")
                .args([
                    "-s",
                    "sh",
                    "-S",
                    "error",
                    "-e",
                    "SC2157,SC2170,SC2289",
                    "-f",
                    "gcc",
                ])
                .args(host.iter().map(|(_, f)| f.as_path()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    fn run_sh(script: &str, cwd: &std::path::Path) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .output()
            .unwrap()
    }

    /// Scripts of the built-in specs that only read (rabbitmq's and the *_detect snippets) run
    /// for real with hostile values: nothing runs as code.
    #[test]
    fn builtin_read_only_scripts_run_hostile_values_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("MARK");
        let specs = specs();
        for h in HOSTILE {
            for s in specs.iter().filter(|s| {
                matches!(
                    s.name.as_str(),
                    "rabbitmq" | "elasticsearch" | "kibana" | "grafana"
                )
            }) {
                let vars: Vars = referenced(s)
                    .into_iter()
                    .map(|n| (n, h.to_string()))
                    .collect();
                let texts: Vec<String> = s.snippets.values().cloned().collect();
                for t in texts {
                    let script = shell(&t, &vars, &s.snippets).unwrap().to_shell();
                    let _ = run_sh(&script, dir.path());
                    assert!(!mark.exists(), "{}: {h:?} ran:\n{script}", s.name);
                }
            }
        }
    }

    /// A capture that reads hostile paths from a host file, then a copy of `{{ paths | lines }}`
    /// and `{{ dir }}/*`: the copy script matches exactly those paths and runs nothing; a
    /// directory whose name has spaces and a `$` is copied.
    #[test]
    fn capture_then_copy_of_hostile_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mark = d.join("MARK");
        let weird = d.join("my dir $(touch MARK) `touch MARK` ;touch MARK 'q\" *");
        std::fs::create_dir(&weird).unwrap();
        std::fs::write(weird.join("a file"), "x").unwrap();
        let nl = d.join("new\nline");
        std::fs::write(&nl, "y").unwrap();
        let star = d.join("s*");
        std::fs::write(&star, "z").unwrap();
        std::fs::write(d.join("s-other"), "not me").unwrap();
        let list = d.join("list");
        std::fs::write(
            &list,
            format!(
                "{}\n{}\n{}/missing $(touch MARK)\n",
                weird.display(),
                star.display(),
                d.display()
            ),
        )
        .unwrap();
        // capture: the host prints the paths; its stdout is the variable's value
        let capture = shell(
            "cat {{ list }}",
            &[("list".to_string(), list.display().to_string())].into(),
            &Snippets::new(),
        )
        .unwrap();
        let out = run_sh(&capture.to_shell(), d);
        assert!(out.status.success());
        let mut vars: Vars = [(
            "paths".to_string(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )]
        .into();
        vars.insert("nl".into(), nl.display().to_string());
        vars.insert("dir".into(), weird.display().to_string());
        let pats = copy_patterns(
            &[
                "{{ paths | lines }}".to_string(),
                "{{ nl }}".to_string(),
                "{{ dir }}/*".to_string(),
            ],
            &vars,
        )
        .unwrap();
        assert_eq!(pats.len(), 5);
        let globs: Vec<String> = pats.iter().map(|p| p.pattern.clone()).collect();
        let shown: Vec<String> = pats.iter().map(|p| p.shown.clone()).collect();
        let script = crate::engine::shell::copy_script(&globs);
        for sh in ["sh", "bash"] {
            let out = Command::new(sh)
                .arg("-c")
                .arg(script.to_shell())
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{sh}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!mark.exists(), "{sh}: a value ran as code");
            let missing = crate::engine::shell::missing_patterns(
                &String::from_utf8_lossy(&out.stderr),
                &shown,
            );
            assert_eq!(
                missing,
                [format!("{}/missing $(touch MARK)", d.display())],
                "{sh}"
            );
            let mut tar = Command::new("tar")
                .args(["-t", "--quoting-style=literal"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                tar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
            }
            let names =
                String::from_utf8_lossy(&tar.wait_with_output().unwrap().stdout).to_string();
            let rel = |p: &std::path::Path| p.display().to_string()[1..].to_string();
            assert!(
                names.contains(&format!("{}/a file", rel(&weird))),
                "{sh}: {names}"
            );
            assert!(names.contains(&rel(&nl)), "{sh}: {names}");
            assert!(names.lines().any(|l| l == rel(&star)), "{sh}: {names}");
            assert!(!names.contains("s-other"), "{sh}: {names}");
        }
    }
}
