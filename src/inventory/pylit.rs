//! The two bits of Python the INI inventory plugin leans on: `shlex.split(line, comments=True)`
//! (posix mode) to cut a host line into words, and `ast.literal_eval` to turn each value into a
//! Python object (`ini.py` `_parse_value`; when `literal_eval` raises `ValueError` or
//! `SyntaxError` the text is kept as a string).

use super::value::{Data, py_float_repr};

/// Python's `shlex.split(s, comments=comments, posix=True)`.
pub(crate) fn shlex_split(s: &str, comments: bool) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Space,
        Word,
        Quote(char),
        Escape(Option<char>), // the quote we were in, or None when outside quotes
    }
    let mut out = Vec::new();
    let mut token = String::new();
    let mut quoted = false;
    let mut st = St::Space;
    let mut chars = s.chars();
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    loop {
        let next = chars.next();
        match st {
            St::Space | St::Word => {
                let Some(c) = next else { break };
                if is_ws(c) {
                    if st == St::Word || quoted {
                        out.push(std::mem::take(&mut token));
                        quoted = false;
                    }
                    st = St::Space;
                } else if comments && c == '#' {
                    // The rest of the line is a comment.
                    for c2 in chars.by_ref() {
                        if c2 == '\n' {
                            break;
                        }
                    }
                    if st == St::Word || quoted {
                        out.push(std::mem::take(&mut token));
                        quoted = false;
                    }
                    st = St::Space;
                } else if c == '\\' {
                    st = St::Escape(None);
                } else if c == '\'' || c == '"' {
                    st = St::Quote(c);
                } else {
                    token.push(c);
                    st = St::Word;
                }
            }
            St::Quote(q) => {
                quoted = true;
                let Some(c) = next else {
                    return Err("No closing quotation".into());
                };
                if c == q {
                    st = St::Word;
                } else if c == '\\' && q == '"' {
                    st = St::Escape(Some(q));
                } else {
                    token.push(c);
                }
            }
            St::Escape(inq) => {
                let Some(c) = next else {
                    return Err("No escaped character".into());
                };
                // Inside double quotes only the quote itself and the backslash are escapable.
                if let Some(q) = inq
                    && c != q
                    && c != '\\'
                {
                    token.push('\\');
                }
                token.push(c);
                st = match inq {
                    Some(q) => St::Quote(q),
                    None => St::Word,
                };
            }
        }
    }
    if st == St::Word || quoted {
        out.push(token);
    }
    Ok(out)
}

/// `ini.py` `_parse_value`: `ast.literal_eval(v)`, else the string itself. `Err` only where
/// Python raises something other than `ValueError`/`SyntaxError` (an unhashable dict key or set
/// member), which fails the whole inventory in Ansible too.
pub(crate) fn parse_ini_value(v: &str) -> Result<Data, String> {
    match literal_eval(v) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Ok(Data::Str(v.to_string())),
        Err(e) => Err(e),
    }
}

/// `ast.literal_eval`, then `ini.py`'s coercion (tuples and sets become lists, complex numbers and
/// `...` become strings, bytes become text). `Ok(None)`: not a literal (kept as a string).
pub(crate) fn literal_eval(src: &str) -> Result<Option<Data>, String> {
    let src = src.trim_start_matches([' ', '\t']);
    let Some(tokens) = tokenize(src) else {
        return Ok(None);
    };
    let mut p = Parser {
        toks: tokens,
        pos: 0,
    };
    let Some(node) = p.top() else { return Ok(None) };
    if p.pos != p.toks.len() {
        return Ok(None);
    }
    convert(&node)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Num),
    Str {
        text: String,
        bytes: bool,
        fstring: bool,
    },
    Name(String),
    Op(&'static str),
    Other,
}

#[derive(Debug, Clone, PartialEq)]
enum Num {
    Int(i128),
    BigInt(f64),
    Float(f64),
    Imag(f64),
}

const OPS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "->", ":=", "**", "//", "<<", ">>", "<=", ">=", "==", "!=",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", "(", ")", "[", "]", "{", "}", ",", ":",
    ";", ".", "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">", "=", "@",
];

fn is_id_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}
fn is_id_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Python's tokenizer, for one logical line. `None`: a tokenize error (SyntaxError).
fn tokenize(src: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let mut depth = 0i32;
    while i < cs.len() {
        let c = cs[i];
        if c == ' ' || c == '\t' || c == '\x0c' {
            i += 1;
            continue;
        }
        if c == '\n' || c == '\r' {
            if depth > 0 {
                i += 1;
                continue;
            }
            // A newline ends the expression; only blank/comment lines may follow.
            let rest: String = cs[i..].iter().collect();
            if rest.lines().all(|l| {
                let t = l.trim_start_matches([' ', '\t', '\x0c']);
                t.is_empty() || t.starts_with('#')
            }) {
                break;
            }
            return None;
        }
        if c == '#' {
            while i < cs.len() && cs[i] != '\n' && cs[i] != '\r' {
                i += 1;
            }
            continue;
        }
        if c == '\\' {
            // Explicit line continuation.
            if i + 1 < cs.len() && (cs[i + 1] == '\n' || cs[i + 1] == '\r') {
                i += 2;
                continue;
            }
            return None;
        }
        // String literal, with an optional prefix.
        if let Some((tok, next)) = lex_string(&cs, i)? {
            out.push(tok);
            i = next;
            continue;
        }
        if is_id_start(c) {
            let start = i;
            while i < cs.len() && is_id_continue(cs[i]) {
                i += 1;
            }
            out.push(Tok::Name(cs[start..i].iter().collect()));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && i + 1 < cs.len() && cs[i + 1].is_ascii_digit()) {
            let (num, next) = lex_number(&cs, i)?;
            out.push(Tok::Num(num));
            i = next;
            continue;
        }
        let rest: String = cs[i..cs.len().min(i + 3)].iter().collect();
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            match *op {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return None;
            }
            out.push(Tok::Op(op));
            i += op.chars().count();
            continue;
        }
        if c == '!' || c == '$' || c == '?' || c == '`' {
            return None;
        }
        // Anything else Python would reject.
        let _ = Tok::Other;
        return None;
    }
    if depth != 0 {
        return None;
    }
    Some(out)
}

/// A string literal at `i` (prefix included). `Some(None)`: not a string here. `None`: an error.
#[allow(clippy::type_complexity)]
fn lex_string(cs: &[char], i: usize) -> Option<Option<(Tok, usize)>> {
    let mut j = i;
    while j < cs.len() && j - i < 2 && cs[j].is_ascii_alphabetic() {
        j += 1;
    }
    // Try each prefix length (0..=2) that is followed by a quote.
    let mut found = None;
    for plen in 0..=(j - i) {
        let q = i + plen;
        if q < cs.len() && (cs[q] == '\'' || cs[q] == '"') {
            found = Some(plen);
            break;
        }
    }
    let Some(plen) = found else { return Some(None) };
    let prefix: String = cs[i..i + plen]
        .iter()
        .collect::<String>()
        .to_ascii_lowercase();
    let valid = ["", "r", "u", "b", "br", "rb", "f", "fr", "rf"];
    if !valid.contains(&prefix.as_str()) {
        return Some(None); // e.g. `xy'...'`: a name followed by a string (a syntax error later)
    }
    let raw = prefix.contains('r');
    let bytes = prefix.contains('b');
    let fstring = prefix.contains('f');
    let q = cs[i + plen];
    let mut k = i + plen;
    let triple = k + 2 < cs.len() && cs[k + 1] == q && cs[k + 2] == q;
    k += if triple { 3 } else { 1 };
    let mut body = String::new();
    loop {
        if k >= cs.len() {
            return None; // unterminated
        }
        let c = cs[k];
        if triple {
            if c == q && k + 2 < cs.len() && cs[k + 1] == q && cs[k + 2] == q {
                k += 3;
                break;
            }
        } else if c == q {
            k += 1;
            break;
        } else if c == '\n' || c == '\r' {
            return None;
        }
        if c == '\\' {
            if k + 1 >= cs.len() {
                return None;
            }
            body.push('\\');
            body.push(cs[k + 1]);
            k += 2;
            continue;
        }
        body.push(c);
        k += 1;
    }
    let text = if raw { body } else { unescape(&body, bytes)? };
    if bytes && !text.is_ascii() && !raw {
        // Non-ASCII characters are not allowed in bytes literals (escapes made \x80.. ok below).
    }
    if bytes && cs[i + plen..k].iter().any(|c| !c.is_ascii()) {
        return None;
    }
    Some(Some((
        Tok::Str {
            text,
            bytes,
            fstring,
        },
        k,
    )))
}

/// Python string escapes. Bytes literals: `\u`, `\U`, `\N` are not escapes, and `\xNN` is a
/// byte (decoded later as UTF-8 like `to_text`).
fn unescape(body: &str, bytes: bool) -> Option<String> {
    let cs: Vec<char> = body.chars().collect();
    let mut out = String::new();
    let mut raw_bytes: Vec<u8> = Vec::new(); // for bytes literals
    let mut i = 0;
    let push = |out: &mut String, raw: &mut Vec<u8>, c: Option<char>, b: Option<u8>| {
        if bytes {
            if let Some(b) = b {
                raw.push(b);
            } else if let Some(c) = c {
                let mut buf = [0u8; 4];
                raw.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        } else if let Some(c) = c {
            out.push(c);
        }
    };
    while i < cs.len() {
        let c = cs[i];
        if c != '\\' {
            push(&mut out, &mut raw_bytes, Some(c), None);
            i += 1;
            continue;
        }
        let e = *cs.get(i + 1)?;
        i += 2;
        let simple = match e {
            '\n' => Some(None),
            '\\' => Some(Some('\\')),
            '\'' => Some(Some('\'')),
            '"' => Some(Some('"')),
            'a' => Some(Some('\x07')),
            'b' => Some(Some('\x08')),
            'f' => Some(Some('\x0c')),
            'n' => Some(Some('\n')),
            'r' => Some(Some('\r')),
            't' => Some(Some('\t')),
            'v' => Some(Some('\x0b')),
            _ => None,
        };
        if let Some(s) = simple {
            if let Some(ch) = s {
                push(&mut out, &mut raw_bytes, Some(ch), None);
            }
            continue;
        }
        match e {
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                let mut n = 1;
                while n < 3 && i < cs.len() && cs[i].is_digit(8) {
                    v = v * 8 + cs[i].to_digit(8)?;
                    i += 1;
                    n += 1;
                }
                if bytes {
                    push(&mut out, &mut raw_bytes, None, Some((v & 0xff) as u8));
                } else {
                    push(&mut out, &mut raw_bytes, Some(char::from_u32(v)?), None);
                }
            }
            'x' => {
                let h: String = cs.get(i..i + 2)?.iter().collect();
                let v = u32::from_str_radix(&h, 16).ok()?;
                if !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                i += 2;
                if bytes {
                    push(&mut out, &mut raw_bytes, None, Some(v as u8));
                } else {
                    push(&mut out, &mut raw_bytes, Some(char::from_u32(v)?), None);
                }
            }
            'u' | 'U' if !bytes => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = cs.get(i..i + n)?.iter().collect();
                if !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                let v = u32::from_str_radix(&h, 16).ok()?;
                i += n;
                // Lone surrogates cannot live in a Rust string: treat as not-a-literal.
                push(&mut out, &mut raw_bytes, Some(char::from_u32(v)?), None);
            }
            // \N{NAME} needs the Unicode name table; not supported (the text stays a string).
            'N' if !bytes => return None,
            other => {
                // Unknown escapes keep the backslash.
                push(&mut out, &mut raw_bytes, Some('\\'), None);
                push(&mut out, &mut raw_bytes, Some(other), None);
            }
        }
    }
    if bytes {
        Some(String::from_utf8_lossy(&raw_bytes).into_owned())
    } else {
        Some(out)
    }
}

fn digits_ok(s: &str, radix: u32, allow_leading_underscore: bool) -> bool {
    // Underscores only between digits (or right after a base prefix).
    if s.is_empty() || s.ends_with('_') || s.contains("__") {
        return false;
    }
    if s.starts_with('_') && !allow_leading_underscore {
        return false;
    }
    s.chars().all(|c| c == '_' || c.is_digit(radix))
}

fn lex_number(cs: &[char], i: usize) -> Option<(Num, usize)> {
    let mut j = i;
    let lower = |k: usize| cs.get(k).map(|c| c.to_ascii_lowercase());
    // Based integers.
    if cs[i] == '0' && matches!(lower(i + 1), Some('x' | 'o' | 'b')) {
        let radix = match lower(i + 1) {
            Some('x') => 16,
            Some('o') => 8,
            _ => 2,
        };
        j = i + 2;
        while j < cs.len() && (cs[j].is_ascii_alphanumeric() || cs[j] == '_') {
            j += 1;
        }
        let body: String = cs[i + 2..j].iter().collect();
        if !digits_ok(&body, radix, true) {
            return None;
        }
        let clean: String = body.chars().filter(|c| *c != '_').collect();
        let v = i128::from_str_radix(&clean, radix).ok();
        let num = match v {
            Some(v) => Num::Int(v),
            None => Num::BigInt(f64::INFINITY),
        };
        return Some((num, j));
    }
    // Decimal integer / float / imaginary.
    let start = i;
    while j < cs.len() && (cs[j].is_ascii_digit() || cs[j] == '_') {
        j += 1;
    }
    let int_part: String = cs[start..j].iter().collect();
    let mut is_float = false;
    let mut had_dot = false;
    let mut frac = String::new();
    if j < cs.len() && cs[j] == '.' {
        is_float = true;
        had_dot = true;
        j += 1;
        let fs = j;
        while j < cs.len() && (cs[j].is_ascii_digit() || cs[j] == '_') {
            j += 1;
        }
        frac = cs[fs..j].iter().collect();
    }
    let mut exp = String::new();
    if j < cs.len() && (cs[j] == 'e' || cs[j] == 'E') {
        let mut k = j + 1;
        if k < cs.len() && (cs[k] == '+' || cs[k] == '-') {
            k += 1;
        }
        let es = k;
        while k < cs.len() && (cs[k].is_ascii_digit() || cs[k] == '_') {
            k += 1;
        }
        if k > es {
            exp = cs[j + 1..k].iter().collect();
            is_float = true;
            j = k;
        } else {
            return None;
        }
    }
    let imag = j < cs.len() && (cs[j] == 'j' || cs[j] == 'J');
    if imag {
        j += 1;
    }
    // A number running straight into a name is an error ("invalid decimal literal").
    if j < cs.len() && is_id_continue(cs[j]) {
        return None;
    }
    if !int_part.is_empty() && !digits_ok(&int_part, 10, false) {
        return None;
    }
    if !frac.is_empty() && !digits_ok(&frac, 10, false) {
        return None;
    }
    let exp_digits = exp.trim_start_matches(['+', '-']);
    if !exp.is_empty() && !digits_ok(exp_digits, 10, false) {
        return None;
    }
    let clean = |s: &str| s.chars().filter(|c| *c != '_').collect::<String>();
    if !is_float && !imag {
        let d = clean(&int_part);
        // Leading zeros are only allowed for zero itself.
        if d.len() > 1 && d.starts_with('0') && d.chars().any(|c| c != '0') {
            return None;
        }
        return Some((
            match d.parse::<i128>() {
                Ok(v) => Num::Int(v),
                Err(_) => Num::BigInt(d.parse::<f64>().unwrap_or(f64::INFINITY)),
            },
            j,
        ));
    }
    let mut text = clean(&int_part);
    if text.is_empty() {
        text.push('0');
    }
    if had_dot {
        text.push('.');
        text.push_str(&clean(&frac));
        if frac.is_empty() {
            text.push('0');
        }
    }
    if !exp.is_empty() {
        text.push('e');
        text.push_str(&clean(&exp));
    }
    let v: f64 = text.parse().ok()?;
    Some((if imag { Num::Imag(v) } else { Num::Float(v) }, j))
}

#[derive(Debug, Clone)]
enum Node {
    Const(Const),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Set(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    Unary(char, Box<Node>),
    Bin(char, Box<Node>, Box<Node>),
    EmptySetCall,
    /// A valid Python expression that is not a literal (literal_eval raises ValueError).
    NotLiteral,
}

#[derive(Debug, Clone)]
enum Const {
    None,
    Bool(bool),
    Int(i128),
    BigInt(f64),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(String),
    Ellipsis,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if let Some(Tok::Op(o)) = self.peek()
            && *o == op
        {
            self.pos += 1;
            return true;
        }
        false
    }
    fn at_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    /// `eval` input: an expression or a bare tuple (`1, 2`).
    fn top(&mut self) -> Option<Node> {
        if self.toks.is_empty() {
            return None; // empty input is a SyntaxError
        }
        self.tuple_or_expr(&[])
    }

    /// expr (',' expr)* [','] until one of `end` (or the end of input).
    fn tuple_or_expr(&mut self, end: &[&str]) -> Option<Node> {
        let first = self.expr()?;
        if !self.at_op(",") {
            return Some(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.peek().is_none() || end.iter().any(|e| self.at_op(e)) {
                break;
            }
            items.push(self.expr()?);
        }
        Some(Node::Tuple(items))
    }

    fn expr(&mut self) -> Option<Node> {
        // Anything at a lower precedence than + and - (comparisons, boolean ops, lambda,
        // conditional expressions) makes the whole thing a non-literal; we parse the arithmetic
        // level and let the caller fail on leftover tokens, which is equivalent for our purposes
        // (both outcomes keep the text as a string).
        let mut left = self.term()?;
        loop {
            let op = if self.at_op("+") {
                '+'
            } else if self.at_op("-") {
                '-'
            } else {
                break;
            };
            self.pos += 1;
            let right = self.term()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
        // Anything else that follows (other operators, `if`, `for`, ...) is left for the caller,
        // which refuses leftover tokens: not a literal, so the text stays a string.
        Some(left)
    }

    fn term(&mut self) -> Option<Node> {
        if self.eat_op("-") {
            return Some(Node::Unary('-', Box::new(self.term()?)));
        }
        if self.eat_op("+") {
            return Some(Node::Unary('+', Box::new(self.term()?)));
        }
        if self.eat_op("~") {
            return Some(Node::Unary('~', Box::new(self.term()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Option<Node> {
        let atom = self.atom()?;
        // Trailers: calls, subscripts, attributes.
        if self.at_op("(") {
            if matches!(atom, Node::Const(_)) || matches!(atom, Node::NotLiteral) {
                // `set()` is handled in atom(); any other call is not a literal.
                return None;
            }
            return None;
        }
        if self.at_op("[") || self.at_op(".") {
            return None;
        }
        Some(atom)
    }

    fn atom(&mut self) -> Option<Node> {
        let tok = self.peek()?.clone();
        match tok {
            Tok::Num(n) => {
                self.pos += 1;
                Some(Node::Const(match n {
                    Num::Int(i) => Const::Int(i),
                    Num::BigInt(f) => Const::BigInt(f),
                    Num::Float(f) => Const::Float(f),
                    Num::Imag(f) => Const::Complex(0.0, f),
                }))
            }
            Tok::Str { .. } => {
                // Adjacent string literals concatenate; str and bytes cannot mix.
                let mut text = String::new();
                let mut kind: Option<bool> = None;
                let mut fstring = false;
                while let Some(Tok::Str {
                    text: t,
                    bytes,
                    fstring: f,
                }) = self.peek().cloned()
                {
                    if kind.is_some_and(|k| k != bytes) {
                        return None;
                    }
                    kind = Some(bytes);
                    fstring |= f;
                    text.push_str(&t);
                    self.pos += 1;
                }
                if fstring {
                    // An f-string is a JoinedStr node: not a literal.
                    return Some(Node::NotLiteral);
                }
                Some(Node::Const(if kind == Some(true) {
                    Const::Bytes(text)
                } else {
                    Const::Str(text)
                }))
            }
            Tok::Name(n) => {
                self.pos += 1;
                match n.as_str() {
                    "True" => Some(Node::Const(Const::Bool(true))),
                    "False" => Some(Node::Const(Const::Bool(false))),
                    "None" => Some(Node::Const(Const::None)),
                    "set" if self.at_op("(") => {
                        self.pos += 1;
                        if self.eat_op(")") {
                            Some(Node::EmptySetCall)
                        } else {
                            None
                        }
                    }
                    // Keywords that cannot start an expression are syntax errors; names are
                    // valid but not literals. Either way the text stays a string.
                    _ => Some(Node::NotLiteral),
                }
            }
            Tok::Op("...") => {
                self.pos += 1;
                Some(Node::Const(Const::Ellipsis))
            }
            Tok::Op("(") => {
                self.pos += 1;
                if self.eat_op(")") {
                    return Some(Node::Tuple(vec![]));
                }
                let inner = self.tuple_or_expr(&[")"])?;
                if !self.eat_op(")") {
                    return None;
                }
                Some(inner)
            }
            Tok::Op("[") => {
                self.pos += 1;
                let items = self.seq_items("]")?;
                Some(Node::List(items))
            }
            Tok::Op("{") => {
                self.pos += 1;
                if self.eat_op("}") {
                    return Some(Node::Dict(vec![]));
                }
                let first = self.expr()?;
                if self.eat_op(":") {
                    let v = self.expr()?;
                    let mut pairs = vec![(first, v)];
                    while self.eat_op(",") {
                        if self.at_op("}") {
                            break;
                        }
                        let k = self.expr()?;
                        if !self.eat_op(":") {
                            return None;
                        }
                        let v = self.expr()?;
                        pairs.push((k, v));
                    }
                    if !self.eat_op("}") {
                        return None;
                    }
                    Some(Node::Dict(pairs))
                } else {
                    let mut items = vec![first];
                    while self.eat_op(",") {
                        if self.at_op("}") {
                            break;
                        }
                        items.push(self.expr()?);
                    }
                    if !self.eat_op("}") {
                        return None;
                    }
                    Some(Node::Set(items))
                }
            }
            _ => None,
        }
    }

    fn seq_items(&mut self, close: &str) -> Option<Vec<Node>> {
        let mut items = Vec::new();
        if self.eat_op(close) {
            return Some(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_op(close) {
                return Some(items);
            }
            if !self.eat_op(",") {
                return None;
            }
            if self.eat_op(close) {
                return Some(items);
            }
        }
    }
}

/// A Python number during evaluation.
#[derive(Clone, Copy)]
enum PyNum {
    Int(i128),
    Float(f64),
    Complex(f64, f64),
}

fn const_num(n: &Node) -> Option<PyNum> {
    match n {
        Node::Const(Const::Int(i)) => Some(PyNum::Int(*i)),
        Node::Const(Const::BigInt(f)) => Some(PyNum::Float(*f)),
        Node::Const(Const::Float(f)) => Some(PyNum::Float(*f)),
        Node::Const(Const::Complex(r, i)) => Some(PyNum::Complex(*r, *i)),
        _ => None,
    }
}

fn signed_num(n: &Node) -> Option<PyNum> {
    if let Node::Unary(op @ ('+' | '-'), inner) = n {
        let v = const_num(inner)?;
        return Some(if *op == '+' {
            v
        } else {
            match v {
                PyNum::Int(i) => PyNum::Int(-i),
                PyNum::Float(f) => PyNum::Float(-f),
                PyNum::Complex(r, i) => PyNum::Complex(-r, -i),
            }
        });
    }
    const_num(n)
}

fn num_data(n: PyNum) -> Data {
    match n {
        PyNum::Int(i) => Data::Int(i),
        PyNum::Float(f) => Data::Float(f),
        PyNum::Complex(r, i) => Data::Str(py_complex_repr(r, i)),
    }
}

fn py_complex_repr(r: f64, i: f64) -> String {
    let im = py_float_repr(i, false);
    if r == 0.0 && r.is_sign_positive() {
        return format!("{im}j");
    }
    let re = py_float_repr(r, false);
    let sign = if i.is_sign_negative() || i.is_nan() && im.starts_with('-') {
        ""
    } else {
        "+"
    };
    format!("({re}{sign}{im}j)")
}

/// literal_eval's `_convert`, plus ini.py's coercion. `Ok(None)`: malformed (ValueError).
fn convert(n: &Node) -> Result<Option<Data>, String> {
    Ok(Some(match n {
        Node::Const(c) => match c {
            Const::None => Data::Null,
            Const::Bool(b) => Data::Bool(*b),
            Const::Int(i) => Data::Int(*i),
            Const::BigInt(f) => Data::Float(*f),
            Const::Float(f) => Data::Float(*f),
            Const::Complex(r, i) => Data::Str(py_complex_repr(*r, *i)),
            Const::Str(s) | Const::Bytes(s) => Data::Str(s.clone()),
            Const::Ellipsis => Data::Str("...".into()),
        },
        Node::Tuple(items) | Node::List(items) => {
            let mut out = Vec::new();
            for it in items {
                match convert(it)? {
                    Some(d) => out.push(d),
                    None => return Ok(None),
                }
            }
            Data::Seq(out)
        }
        Node::Set(items) => {
            let mut out: Vec<Data> = Vec::new();
            for it in items {
                let Some(d) = convert(it)? else {
                    return Ok(None);
                };
                check_hashable(it, &d)?;
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            Data::Seq(out)
        }
        Node::EmptySetCall => Data::Seq(vec![]),
        Node::Dict(pairs) => {
            let mut out = Vec::new();
            let mut conv = Vec::new();
            for (k, v) in pairs {
                let Some(kd) = convert(k)? else {
                    return Ok(None);
                };
                let Some(vd) = convert(v)? else {
                    return Ok(None);
                };
                conv.push((k, kd, vd));
            }
            for (k, kd, vd) in conv {
                check_hashable(k, &kd)?;
                // Keys stay as Python objects (ints stay ints); tuples were coerced to lists.
                Data::map_insert(&mut out, kd, vd);
            }
            Data::Map(out)
        }
        Node::Bin(op, l, r) => {
            let (Some(left), Some(right)) = (signed_num(l), const_num(r)) else {
                return Ok(None);
            };
            match (left, right) {
                (PyNum::Int(_) | PyNum::Float(_), PyNum::Complex(ri, ii)) => {
                    let lf = match left {
                        PyNum::Int(i) => i as f64,
                        PyNum::Float(f) => f,
                        PyNum::Complex(..) => unreachable!(),
                    };
                    if *op == '+' {
                        Data::Str(py_complex_repr(lf + ri, ii))
                    } else {
                        Data::Str(py_complex_repr(lf - ri, -ii))
                    }
                }
                _ => return Ok(None),
            }
        }
        Node::Unary(..) => match signed_num(n) {
            Some(v) => num_data(v),
            None => return Ok(None),
        },
        Node::NotLiteral => return Ok(None),
    }))
}

/// Python refuses lists, dicts and sets as dict keys or set members (TypeError, which ini.py does
/// not catch). Tuples are fine (they were coerced to lists only afterwards).
fn check_hashable(node: &Node, _d: &Data) -> Result<(), String> {
    fn hashable(n: &Node) -> bool {
        match n {
            Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::EmptySetCall => false,
            Node::Tuple(items) => items.iter().all(hashable),
            _ => true,
        }
    }
    if hashable(node) {
        Ok(())
    } else {
        let t = match node {
            Node::List(_) => "list",
            Node::Dict(_) => "dict",
            Node::Set(_) | Node::EmptySetCall => "set",
            _ => "tuple",
        };
        Err(format!(
            "unhashable type: '{t}' (a {t} cannot be a dictionary key or set member)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Data {
        parse_ini_value(s).unwrap()
    }
    fn st(s: &str) -> Data {
        Data::Str(s.into())
    }

    #[test]
    fn shlex_splits_like_python_posix() {
        let t = |s: &str| shlex_split(s, true).unwrap();
        assert_eq!(
            t("host a=1 b='x y' c=\"q\\\"z\""),
            ["host", "a=1", "b=x y", "c=q\"z"]
        );
        assert_eq!(t("h x=1 # comment"), ["h", "x=1"]);
        assert_eq!(t("h x=1#c"), ["h", "x=1"]);
        assert_eq!(t("h x='a#b'"), ["h", "x=a#b"]);
        assert_eq!(t("h x=\"a\\nb\""), ["h", "x=a\\nb"]);
        assert_eq!(t("h x=a\\ b"), ["h", "x=a b"]);
        assert_eq!(t("h x=''"), ["h", "x="]);
        assert_eq!(t("h ''"), ["h", ""]);
        assert_eq!(t("h x='it'\"'\"'s'"), ["h", "x=it's"]);
        assert!(
            shlex_split("h x='open", true)
                .unwrap_err()
                .contains("No closing quotation")
        );
        assert!(
            shlex_split("h x=\\", true)
                .unwrap_err()
                .contains("No escaped character")
        );
        assert_eq!(shlex_split("-o A=#b", false).unwrap(), ["-o", "A=#b"]);
    }

    #[test]
    fn literal_eval_numbers() {
        assert_eq!(lit("22"), Data::Int(22));
        assert_eq!(lit("-5"), Data::Int(-5));
        assert_eq!(lit("+5"), Data::Int(5));
        assert_eq!(lit("1_000"), Data::Int(1000));
        assert_eq!(lit("0x1F"), Data::Int(31));
        assert_eq!(lit("0o17"), Data::Int(15));
        assert_eq!(lit("0b101"), Data::Int(5));
        assert_eq!(lit("00"), Data::Int(0));
        assert_eq!(lit("1.5"), Data::Float(1.5));
        assert_eq!(lit("1e3"), Data::Float(1000.0));
        assert_eq!(lit(".5"), Data::Float(0.5));
        assert_eq!(lit("1."), Data::Float(1.0));
        // Not literals: kept as text.
        assert_eq!(lit("022"), st("022"));
        assert_eq!(lit("1__0"), st("1__0"));
        assert_eq!(lit("--5"), st("--5"));
        assert_eq!(lit("1+2"), st("1+2"));
        assert_eq!(lit("5abc"), st("5abc"));
        assert_eq!(lit("10.0.0.1"), st("10.0.0.1"));
        assert_eq!(lit("1:2"), st("1:2"));
    }

    #[test]
    fn literal_eval_complex_becomes_text() {
        assert_eq!(lit("1j"), st("1j"));
        assert_eq!(lit("1+2j"), st("(1+2j)"));
        assert_eq!(lit("1-2j"), st("(1-2j)"));
        assert_eq!(lit("-1j"), st("(-0-1j)"));
        assert_eq!(lit("1.5J"), st("1.5j"));
    }

    #[test]
    fn literal_eval_constants_and_strings() {
        assert_eq!(lit("True"), Data::Bool(true));
        assert_eq!(lit("False"), Data::Bool(false));
        assert_eq!(lit("None"), Data::Null);
        assert_eq!(lit("true"), st("true"));
        assert_eq!(lit("yes"), st("yes"));
        assert_eq!(lit("'a b'"), st("a b"));
        assert_eq!(lit("\"quoted\""), st("quoted"));
        assert_eq!(lit("'a' \"b\""), st("ab"));
        assert_eq!(lit("'a\\nb'"), st("a\nb"));
        assert_eq!(lit("'\\x41\\101\\u00e9'"), st("AAé"));
        assert_eq!(lit("r'a\\nb'"), st("a\\nb"));
        assert_eq!(lit("b'abc'"), st("abc"));
        assert_eq!(lit("u'abc'"), st("abc"));
        assert_eq!(lit("'''tri'''"), st("tri"));
        assert_eq!(lit("f'abc'"), st("f'abc'"));
        assert_eq!(lit("'a' b'b'"), st("'a' b'b'"));
        assert_eq!(lit("..."), st("..."));
        assert_eq!(lit("'unterminated"), st("'unterminated"));
        assert_eq!(lit("{{ foo }}"), st("{{ foo }}"));
        assert_eq!(lit("\"{{ foo }}\""), st("{{ foo }}"));
        assert_eq!(
            lit("-o StrictHostKeyChecking=no"),
            st("-o StrictHostKeyChecking=no")
        );
        assert_eq!(lit("/path/to/key"), st("/path/to/key"));
        assert_eq!(lit("5 # comment"), Data::Int(5));
        assert_eq!(lit("hello world"), st("hello world"));
        assert_eq!(lit("  7"), Data::Int(7));
    }

    #[test]
    fn literal_eval_containers() {
        assert_eq!(lit("[1, 2]"), Data::Seq(vec![Data::Int(1), Data::Int(2)]));
        assert_eq!(lit("[1, 2,]"), Data::Seq(vec![Data::Int(1), Data::Int(2)]));
        assert_eq!(lit("(1, 'a')"), Data::Seq(vec![Data::Int(1), st("a")]));
        assert_eq!(lit("1, 2"), Data::Seq(vec![Data::Int(1), Data::Int(2)]));
        assert_eq!(lit("1,"), Data::Seq(vec![Data::Int(1)]));
        assert_eq!(lit("()"), Data::Seq(vec![]));
        assert_eq!(lit("(5)"), Data::Int(5));
        assert_eq!(lit("set()"), Data::Seq(vec![]));
        assert_eq!(
            lit("{1, 2, 1}"),
            Data::Seq(vec![Data::Int(1), Data::Int(2)])
        );
        assert_eq!(lit("{}"), Data::Map(vec![]));
        assert_eq!(
            lit("{'a': 1, 2: [3], 'a': 4}"),
            Data::Map(vec![
                (st("a"), Data::Int(4)),
                (Data::Int(2), Data::Seq(vec![Data::Int(3)]))
            ])
        );
        assert_eq!(lit("[a, b]"), st("[a, b]"));
        assert_eq!(lit("a,b"), st("a,b"));
        assert_eq!(lit("[x for x in y]"), st("[x for x in y]"));
        assert_eq!(lit("{**a}"), st("{**a}"));
        assert_eq!(lit("[1][0]"), st("[1][0]"));
        assert!(parse_ini_value("{[1]: 2}").is_err());
        assert!(parse_ini_value("{[1]}").is_err());
        assert!(lit("{(1, 2): 3}").to_json().is_err());
    }
}
