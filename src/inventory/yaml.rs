//! YAML as Ansible loads it: PyYAML with the YAML 1.1 implicit resolvers (`yes`/`on` are
//! booleans, `010` is octal, `1e5` is a string, `1:30` is sexagesimal, dates are timestamps),
//! merge keys, anchors, duplicate keys (the last wins), and Ansible's `!unsafe` and `!vault`
//! tags. Files are tried as JSON first, like Ansible's `DataLoader`.
//!
//! The events come from `granit-parser` (the YAML parser underneath serde-saphyr); the
//! resolution of plain scalars is done here so that it follows PyYAML, not YAML 1.2.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::value::{Data, key_eq};

/// An error at a 1-based line (0 when unknown).
#[derive(Debug)]
pub(crate) struct YamlError {
    pub line: usize,
    pub msg: String,
}

fn yerr(line: usize, msg: impl Into<String>) -> YamlError {
    YamlError {
        line,
        msg: msg.into(),
    }
}

/// A composed YAML node (aliases already replaced by copies of their anchors), with the line
/// it starts on. `Data` holds an already constructed value (from a JSON document).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Scalar {
        value: String,
        plain: bool,
        tag: Option<String>,
        line: usize,
    },
    Seq {
        items: Vec<Node>,
        tag: Option<String>,
        line: usize,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        tag: Option<String>,
        line: usize,
    },
    Data(Data, usize),
}

impl Node {
    pub(crate) fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
            Node::Data(_, line) => *line,
        }
    }
    fn tag(&self) -> Option<&str> {
        match self {
            Node::Scalar { tag, .. } | Node::Seq { tag, .. } | Node::Map { tag, .. } => {
                tag.as_deref()
            }
            Node::Data(..) => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "scalar",
            Node::Seq { .. } => "sequence",
            Node::Map { .. } => "mapping",
            Node::Data(Data::Map(_), _) => "mapping",
            Node::Data(Data::Seq(_), _) => "sequence",
            Node::Data(..) => "scalar",
        }
    }

    /// The constructed value.
    pub(crate) fn to_data(&self) -> Result<Data, YamlError> {
        construct(self, false)
    }

    /// The key/value pairs when this is a mapping (merge keys applied), else `None`.
    pub(crate) fn map_pairs(&self) -> Result<Option<Vec<(Node, Node)>>, YamlError> {
        match self {
            Node::Map { tag: None, .. } => Ok(Some(dedup_pairs(flatten(self)?)?)),
            Node::Map { tag: Some(t), .. } if t == "tag:yaml.org,2002:map" => {
                Ok(Some(dedup_pairs(flatten(self)?)?))
            }
            Node::Data(Data::Map(p), line) => Ok(Some(
                p.iter()
                    .map(|(k, v)| (Node::Data(k.clone(), *line), Node::Data(v.clone(), *line)))
                    .collect(),
            )),
            Node::Scalar { .. } | Node::Seq { .. } | Node::Data(..) => Ok(None),
            Node::Map { line, .. } => match self.to_data()? {
                Data::Map(p) => Ok(Some(
                    p.into_iter()
                        .map(|(k, v)| (Node::Data(k, *line), Node::Data(v, *line)))
                        .collect(),
                )),
                _ => Ok(None),
            },
        }
    }
}

/// Repeated keys: the last value wins, at the first key's position.
fn dedup_pairs(pairs: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
    let mut keys: Vec<Data> = Vec::new();
    let mut out: Vec<(Node, Node)> = Vec::new();
    for (k, v) in pairs {
        if matches!(k, Node::Seq { .. } | Node::Map { .. }) {
            return Err(yerr(
                k.line(),
                "found unhashable key (a list or mapping used as a key)",
            ));
        }
        let kd = k.to_data()?;
        if let Some(i) = keys.iter().position(|d| key_eq(d, &kd)) {
            out[i].1 = v;
        } else {
            keys.push(kd);
            out.push((k, v));
        }
    }
    Ok(out)
}

const CORE: &str = "tag:yaml.org,2002:";

fn tag_string(t: &serde_saphyr::granit_parser::Tag) -> String {
    format!("{}{}", t.handle(), t.suffix())
}

/// Nodes that aliases may add to a document, beyond those written in it: aliases are replaced
/// by copies, so nested ones ("billion laughs") would otherwise grow without bound.
const MAX_ALIAS_NODES: usize = 1_000_000;

struct Builder<'a> {
    parser: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    /// Each anchored node with its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes composed so far, alias copies included, and the most allowed (every node written
    /// takes at least a byte, so the text's length plus [`MAX_ALIAS_NODES`]).
    nodes: usize,
    max_nodes: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<(Event<'a>, usize)>, YamlError> {
        loop {
            match self.parser.next_event() {
                None => return Ok(None),
                Some(Err(e)) => {
                    let m = e.marker();
                    return Err(yerr(m.line(), format!("YAML syntax error: {}", e.info())));
                }
                Some(Ok((ev, span))) =>
                {
                    #[allow(unreachable_patterns)]
                    match ev {
                        Event::Comment(..) | Event::Anchor(..) => continue,
                        ev => return Ok(Some((ev, span.start.line()))),
                    }
                }
            }
        }
    }

    /// Count `n` more nodes against the document's bound.
    fn count(&mut self, n: usize, line: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.max_nodes {
            return Err(yerr(
                line,
                format!(
                    "aliases expand the document to more than {MAX_ALIAS_NODES} nodes beyond \
                     those written (lsbackup's limit)"
                ),
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, line: usize) -> Result<Node, YamlError> {
        let first = self.nodes;
        if !matches!(ev, Event::Alias(_)) {
            self.count(1, line)?;
        }
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let n = Node::Scalar {
                    value: value.into_owned(),
                    plain: matches!(style, ScalarStyle::Plain),
                    tag: tag.map(|t| tag_string(&t)),
                    line,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (n.clone(), 1));
                }
                Ok(n)
            }
            Event::Alias(id) => {
                let (n, size) = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| yerr(line, "found undefined alias"))?;
                let (n, size) = (n.clone(), *size);
                self.count(size, line)?;
                Ok(n)
            }
            Event::SequenceStart(_, anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let Some((ev, l)) = self.next()? else {
                        return Err(yerr(line, "unterminated sequence"));
                    };
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, l)?);
                }
                let n = Node::Seq {
                    items,
                    tag: tag.map(|t| tag_string(&t)),
                    line,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (n.clone(), self.nodes - first));
                }
                Ok(n)
            }
            Event::MappingStart(_, anchor, tag) => {
                let mut pairs = Vec::new();
                loop {
                    let Some((ev, l)) = self.next()? else {
                        return Err(yerr(line, "unterminated mapping"));
                    };
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let k = self.node(ev, l)?;
                    let Some((ev, l)) = self.next()? else {
                        return Err(yerr(line, "mapping key without a value"));
                    };
                    let v = self.node(ev, l)?;
                    pairs.push((k, v));
                }
                let n = Node::Map {
                    pairs,
                    tag: tag.map(|t| tag_string(&t)),
                    line,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (n.clone(), self.nodes - first));
                }
                Ok(n)
            }
            other => Err(yerr(line, format!("unexpected YAML event {other:?}"))),
        }
    }
}

/// Parse a YAML stream of at most one document. `Ok(None)`: empty.
fn compose(text: &str) -> Result<Option<Node>, YamlError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        max_nodes: text.len().saturating_add(MAX_ALIAS_NODES),
    };
    let mut doc: Option<Node> = None;
    let mut docs = 0;
    while let Some((ev, line)) = b.next()? {
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                docs += 1;
                if docs > 1 {
                    return Err(yerr(
                        line,
                        "expected a single document in the stream, but found another document",
                    ));
                }
                b.anchors.clear();
            }
            ev => {
                let n = b.node(ev, line)?;
                doc = Some(n);
            }
        }
    }
    Ok(doc)
}

static BOOL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
        .expect("regex")
});
static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
        r"|[-+]?\.(?:inf|Inf|INF)",
        r"|\.(?:nan|NaN|NAN))$"
    ))
    .expect("regex")
});
static INT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[-+]?0b[0-1_]+",
        r"|[-+]?0[0-7_]+",
        r"|[-+]?(?:0|[1-9][0-9_]*)",
        r"|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
    ))
    .expect("regex")
});
static NULL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("regex"));
static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?",
        r"(?:[Tt]|[ \t]+)[0-9][0-9]?",
        r":[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?",
        r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"
    ))
    .expect("regex")
});
static TIMESTAMP_PARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?P<year>[0-9][0-9][0-9][0-9])-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
        r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])",
        r"(?:\.(?P<fraction>[0-9]*))?",
        r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9][0-9]))?))?)?$"
    ))
    .expect("regex")
});

/// PyYAML's `Resolver.resolve` for a plain scalar.
fn resolve_plain(v: &str) -> &'static str {
    let first = v.chars().next();
    let in_first = |set: &str| first.is_some_and(|c| set.contains(c));
    if v.is_empty() {
        return "null";
    }
    if in_first("yYnNtTfFoO") && BOOL_RE.is_match(v) {
        return "bool";
    }
    if in_first("-+0123456789.") && FLOAT_RE.is_match(v) {
        return "float";
    }
    if in_first("-+0123456789") && INT_RE.is_match(v) {
        return "int";
    }
    if v == "<<" {
        return "merge";
    }
    if in_first("~nN") && NULL_RE.is_match(v) {
        return "null";
    }
    if in_first("0123456789") && TIMESTAMP_RE.is_match(v) {
        return "timestamp";
    }
    if v == "=" {
        return "value";
    }
    "str"
}

fn construct_int(v: &str) -> Option<i128> {
    let mut s = v.replace('_', "");
    let mut sign = 1i128;
    if s.starts_with('-') {
        sign = -1;
    }
    if s.starts_with(['+', '-']) {
        s.remove(0);
    }
    if s == "0" {
        return Some(0);
    }
    if let Some(b) = s.strip_prefix("0b") {
        return i128::from_str_radix(b, 2).ok().map(|x| sign * x);
    }
    if let Some(h) = s.strip_prefix("0x") {
        return i128::from_str_radix(h, 16).ok().map(|x| sign * x);
    }
    if s.starts_with('0') {
        return i128::from_str_radix(&s, 8).ok().map(|x| sign * x);
    }
    if s.contains(':') {
        let mut value = 0i128;
        for part in s.split(':') {
            value = value * 60 + part.parse::<i128>().ok()?;
        }
        return Some(sign * value);
    }
    s.parse::<i128>().ok().map(|x| sign * x)
}

fn construct_float(v: &str) -> Option<f64> {
    let mut s = v.replace('_', "").to_lowercase();
    let mut sign = 1.0;
    if s.starts_with('-') {
        sign = -1.0;
    }
    if s.starts_with(['+', '-']) {
        s.remove(0);
    }
    if s == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if s == ".nan" {
        return Some(f64::NAN);
    }
    if s.contains(':') {
        let mut value = 0.0;
        for part in s.split(':') {
            value = value * 60.0 + py_float(part)?;
        }
        return Some(sign * value);
    }
    Some(sign * py_float(&s)?)
}

/// Python's `float(str)` for the shapes the resolver lets through (`1.`, `.5`, `1.5e+3`).
fn py_float(s: &str) -> Option<f64> {
    let t = if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    };
    let t = t.replace(".e", ".0e");
    t.parse().ok()
}

/// `datetime.date/datetime.isoformat()` of a YAML timestamp, as the inventory JSON shows it.
fn construct_timestamp(v: &str, line: usize) -> Result<String, YamlError> {
    let c = TIMESTAMP_PARTS
        .captures(v)
        .ok_or_else(|| yerr(line, format!("bad timestamp {v}")))?;
    let num = |n: &str| c.name(n).map(|m| m.as_str().parse::<u32>().unwrap_or(0));
    let (y, mo, d) = (
        num("year").unwrap_or(0),
        num("month").unwrap_or(0),
        num("day").unwrap_or(0),
    );
    let bad = || yerr(line, format!("invalid date in timestamp '{v}'"));
    if !(1..=12).contains(&mo) || d == 0 || d > 31 {
        return Err(bad());
    }
    let date = format!("{y:04}-{mo:02}-{d:02}");
    let Some(h) = num("hour") else {
        return Ok(date);
    };
    let (mi, s) = (num("minute").unwrap_or(0), num("second").unwrap_or(0));
    if h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    let mut out = format!("{date}T{h:02}:{mi:02}:{s:02}");
    if let Some(f) = c
        .name("fraction")
        .map(|m| m.as_str())
        .filter(|f| !f.is_empty())
    {
        let mut f: String = f.chars().take(6).collect();
        while f.len() < 6 {
            f.push('0');
        }
        if f != "000000" {
            out.push('.');
            out.push_str(&f);
        }
    }
    if let Some(sign) = c.name("tz_sign") {
        let th = num("tz_hour").unwrap_or(0);
        let tm = num("tz_minute").unwrap_or(0);
        if th == 0 && tm == 0 {
            out.push_str("+00:00");
        } else {
            out.push_str(&format!("{}{th:02}:{tm:02}", sign.as_str()));
        }
    } else if c.name("tz").is_some() {
        out.push_str("+00:00");
    }
    Ok(out)
}

fn scalar_by_tag(tag: &str, value: &str, line: usize) -> Result<Data, YamlError> {
    let bad = |what: &str| yerr(line, format!("invalid {what} value '{value}'"));
    Ok(match tag {
        "str" => Data::Str(value.to_string()),
        "null" => Data::Null,
        "bool" => match value.to_lowercase().as_str() {
            "yes" | "true" | "on" => Data::Bool(true),
            "no" | "false" | "off" => Data::Bool(false),
            _ => return Err(bad("boolean")),
        },
        "int" => match construct_int(value) {
            Some(i) => Data::Int(i),
            None => {
                // Too large for i128: Python would keep it exact; we keep its magnitude.
                let f = value
                    .replace('_', "")
                    .parse::<f64>()
                    .map_err(|_| bad("integer"))?;
                Data::Float(f)
            }
        },
        "float" => Data::Float(construct_float(value).ok_or_else(|| bad("float"))?),
        "timestamp" => Data::Str(construct_timestamp(value, line)?),
        other => {
            return Err(yerr(
                line,
                format!("could not determine a constructor for the tag '{CORE}{other}'"),
            ));
        }
    })
}

fn construct(node: &Node, unsafe_: bool) -> Result<Data, YamlError> {
    if let Node::Data(d, _) = node {
        return Ok(d.clone());
    }
    let line = node.line();
    let tag = node.tag();
    // Ansible's own tags.
    match tag {
        Some("!unsafe") => return construct_implicit(node, true),
        Some("!vault") | Some("!vault-encrypted") => {
            let d = construct_implicit(node, unsafe_)?;
            return match d.as_str() {
                Some(s) => Ok(Data::Vault(s.to_string())),
                None => Err(yerr(line, "the '!vault' tag requires a string value")),
            };
        }
        _ => {}
    }
    let core = match tag {
        None | Some("!") => None,
        Some(t) => match t.strip_prefix(CORE) {
            Some(s) => Some(s),
            None => {
                return Err(yerr(
                    line,
                    format!("could not determine a constructor for the tag '{t}'"),
                ));
            }
        },
    };
    match node {
        Node::Scalar { value, plain, .. } => {
            let t = match core {
                Some(t) => t,
                None if *plain && tag.is_none() => resolve_plain(value),
                None => "str",
            };
            let d = match t {
                "merge" | "value" | "binary" | "seq" | "map" | "set" | "omap" | "pairs" => {
                    return Err(yerr(
                        line,
                        format!("could not determine a constructor for the tag '{CORE}{t}' here"),
                    ));
                }
                t => scalar_by_tag(t, value, line)?,
            };
            Ok(match d {
                Data::Str(s) if unsafe_ => Data::Unsafe(s),
                d => d,
            })
        }
        Node::Seq { items, .. } => {
            match core {
                None | Some("seq") => {}
                Some("omap") | Some("pairs") => {
                    let mut out = Vec::new();
                    for it in items {
                        let Node::Map { pairs, .. } = it else {
                            return Err(yerr(it.line(), "expected a mapping of length 1"));
                        };
                        for (k, v) in pairs {
                            out.push(Data::Seq(vec![
                                construct(k, unsafe_)?,
                                construct(v, unsafe_)?,
                            ]));
                        }
                    }
                    return Ok(Data::Seq(out));
                }
                Some(t) => {
                    return Err(yerr(
                        line,
                        format!("the tag '{CORE}{t}' cannot apply to a sequence"),
                    ));
                }
            }
            Ok(Data::Seq(
                items
                    .iter()
                    .map(|n| construct(n, unsafe_))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Node::Data(d, _) => Ok(d.clone()),
        Node::Map { .. } => {
            let pairs = construct_mapping(node, unsafe_)?;
            match core {
                None | Some("map") => Ok(Data::Map(pairs)),
                Some("set") => Ok(Data::Seq(pairs.into_iter().map(|(k, _)| k).collect())),
                Some(t) => Err(yerr(
                    line,
                    format!("the tag '{CORE}{t}' cannot apply to a mapping"),
                )),
            }
        }
    }
}

/// `_resolve_and_construct_object`: re-resolve the node as if it were untagged and plain.
fn construct_implicit(node: &Node, unsafe_: bool) -> Result<Data, YamlError> {
    match node {
        Node::Scalar { value, line, .. } => {
            let d = match resolve_plain(value) {
                "merge" | "value" => Data::Str(value.clone()),
                t => scalar_by_tag(t, value, *line)?,
            };
            Ok(match d {
                Data::Str(s) if unsafe_ => Data::Unsafe(s),
                d => d,
            })
        }
        Node::Seq { items, line, .. } => construct(
            &Node::Seq {
                items: items.clone(),
                tag: None,
                line: *line,
            },
            unsafe_,
        ),
        Node::Map { pairs, line, .. } => construct(
            &Node::Map {
                pairs: pairs.clone(),
                tag: None,
                line: *line,
            },
            unsafe_,
        ),
        Node::Data(d, _) => Ok(d.clone()),
    }
}

fn is_merge_key(k: &Node) -> bool {
    match k {
        Node::Scalar {
            value, plain, tag, ..
        } => {
            (tag.is_none() && *plain && value == "<<")
                || tag.as_deref() == Some("tag:yaml.org,2002:merge")
        }
        _ => false,
    }
}

/// SafeConstructor.flatten_mapping + construct_mapping.
fn flatten(node: &Node) -> Result<Vec<(Node, Node)>, YamlError> {
    let Node::Map { pairs, line, .. } = node else {
        return Ok(vec![]);
    };
    let mut merged: Vec<(Node, Node)> = Vec::new();
    let mut rest: Vec<(Node, Node)> = Vec::new();
    // Merged mappings are inserted in order before the explicit keys, so a later mapping of a
    // merge list overrides an earlier one, and explicit keys override both (what PyYAML 6 does).
    let add = |merged: &mut Vec<(Node, Node)>, extra: Vec<(Node, Node)>| merged.extend(extra);
    for (k, v) in pairs {
        if is_merge_key(k) {
            match v {
                Node::Map { .. } => add(&mut merged, flatten(v)?),
                Node::Seq { items, .. } => {
                    for sub in items {
                        if !matches!(sub, Node::Map { .. }) {
                            return Err(yerr(
                                sub.line(),
                                format!("expected a mapping for merging, but found {}", sub.kind()),
                            ));
                        }
                        add(&mut merged, flatten(sub)?);
                    }
                }
                other => {
                    return Err(yerr(
                        *line,
                        format!(
                            "expected a mapping or list of mappings for merging, but found {}",
                            other.kind()
                        ),
                    ));
                }
            }
        } else {
            rest.push((k.clone(), v.clone()));
        }
    }
    merged.extend(rest);
    Ok(merged)
}

fn construct_mapping(node: &Node, unsafe_: bool) -> Result<Vec<(Data, Data)>, YamlError> {
    let mut out: Vec<(Data, Data)> = Vec::new();
    for (k, v) in flatten(node)? {
        if matches!(k, Node::Seq { .. } | Node::Map { .. }) {
            return Err(yerr(
                k.line(),
                "found unhashable key (a list or mapping used as a key)",
            ));
        }
        let kd = construct(&k, unsafe_)?;
        let vd = construct(&v, unsafe_)?;
        Data::map_insert(&mut out, kd, vd);
    }
    Ok(out)
}

/// Load a vars or inventory file's text like Ansible's `DataLoader.load`: JSON first, then YAML.
/// `Ok(None)`: empty document.
pub(crate) fn load(text: &str) -> Result<Option<Data>, YamlError> {
    match load_node(text)? {
        None => Ok(None),
        Some(n) => Ok(Some(n.to_data()?)),
    }
}

/// Like [`load`], but keeps the composed nodes (and their lines) for structural checks.
pub(crate) fn load_node(text: &str) -> Result<Option<Node>, YamlError> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(Some(Node::Data(Data::from_json(&v), 1)));
    }
    compose(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Data {
        load(s).unwrap().unwrap()
    }
    fn m(s: &str) -> serde_json::Value {
        y(s).to_json().unwrap()
    }

    /// Hostile input (docs/fuzzing.md): nested aliases ("billion laughs") were copied without
    /// bound, 10^9 nodes from a few lines, until memory ran out.
    #[test]
    fn alias_expansion_is_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = load(&text).unwrap_err();
        assert!(e.msg.contains("more than 1000000 nodes"), "{}", e.msg);
        assert_eq!(e.line, 6);
        // Aliases within the bound are copies, as before.
        let ok = text.lines().take(4).collect::<Vec<_>>().join("\n");
        let v = m(&ok);
        assert_eq!(v["a3"][9][9][9][9], "x");
    }

    #[test]
    fn yaml_1_1_scalars() {
        let v = m(
            "a: yes\nb: off\nc: 010\nd: 0x1f\ne: 1e5\nf: 1.5e+3\ng: 1:30\nh: ~\ni:\n\
                   j: '123'\nk: 0o17\nl: 1_000\nm: True\nn: y\no: 2001-12-14\np: .5\nq: -.inf\n",
        );
        assert_eq!(v["a"], true);
        assert_eq!(v["b"], false);
        assert_eq!(v["c"], 8);
        assert_eq!(v["d"], 31);
        assert_eq!(v["e"], "1e5");
        assert_eq!(v["f"], 1500.0);
        assert_eq!(v["g"], 90);
        assert!(v["h"].is_null() && v["i"].is_null());
        assert_eq!(v["j"], "123");
        assert_eq!(v["k"], "0o17");
        assert_eq!(v["l"], 1000);
        assert_eq!(v["m"], true);
        assert_eq!(v["n"], "y");
        assert_eq!(v["o"], "2001-12-14");
        assert_eq!(v["p"], 0.5);
    }

    #[test]
    fn timestamps_render_isoformat() {
        let v =
            m("a: 2001-12-14 21:59:43.10 -5\nb: 2001-12-14t21:59:43Z\nc: 2001-12-14T21:59:43\n");
        assert_eq!(v["a"], "2001-12-14T21:59:43.100000-05:00");
        assert_eq!(v["b"], "2001-12-14T21:59:43+00:00");
        assert_eq!(v["c"], "2001-12-14T21:59:43");
    }

    #[test]
    fn tags_anchors_and_merge_keys() {
        let v = m(
            "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\ns: !!str 12\nu: !unsafe '{{ x }}'\n\
                   ui: !unsafe '12'\nl: !unsafe [a, 1]\nv: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n",
        );
        assert_eq!(v["d"], serde_json::json!({"x": 1, "y": 3}));
        assert_eq!(v["s"], "12");
        assert_eq!(v["u"], serde_json::json!({"__ansible_unsafe": "{{ x }}"}));
        assert_eq!(v["ui"], 12);
        assert_eq!(v["l"], serde_json::json!([{"__ansible_unsafe": "a"}, 1]));
        assert_eq!(
            v["v"],
            serde_json::json!({"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n6162\n"})
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(m("a: 1\nb: 2\na: 3\n"), serde_json::json!({"a": 3, "b": 2}));
    }

    #[test]
    fn json_first() {
        assert_eq!(
            m("{\"a\": 1e5, \"b\": \"yes\"}"),
            serde_json::json!({"a": 100000.0, "b": "yes"})
        );
    }

    #[test]
    fn errors_carry_lines() {
        let e = load("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.msg.contains("single document"), "{e:?}");
        let e = load("a: !custom 1\n").unwrap_err();
        assert!(e.msg.contains("constructor"), "{e:?}");
        assert!(load("").unwrap().is_none());
        assert!(load("# only a comment\n").unwrap().is_none());
    }
}
