//! INI inventories, as Ansible's `plugins/inventory/ini.py` reads them.
//!
//! - Lines are stripped; empty lines and lines starting with `#` or `;` are skipped.
//! - `[name]`, `[name:children]`, `[name:vars]` open a section (a `#` comment may follow). The
//!   group name is kept as written (Ansible only warns about characters such as `-`). Lines
//!   before the first header belong to `ungrouped`.
//! - Host lines are split like `shlex.split(line, comments=True)`: the first word is a host
//!   pattern (ranges, `:port`), the rest `key=value` words.
//! - `[g:vars]` lines are `key=value` split at the first `=` (no shell quoting; a trailing
//!   comment is part of the value unless the value is a Python literal).
//! - Every value, inline or in `[g:vars]`, goes through `ast.literal_eval`: `22` is a number,
//!   `True` a boolean, `[1, 2]` a list, `'x'` the string `x`; anything else stays text.
//! - `[g:children]` and `[g:vars]` may name a group declared later in the same file; a group
//!   never declared is an error reported at the line that named it.

use super::data::{InvData, UNGROUPED};
use super::hostpattern::expand_hostpattern;
use super::pylit::{parse_ini_value, shlex_split};
use std::sync::LazyLock;

use regex::Regex;

static SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$").expect("regex"));
static GROUPNAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([^:\]\s]+)\s*(?:#.*)?$").expect("regex"));

/// A parse error at a 1-based line.
#[derive(Debug)]
pub(crate) struct IniError {
    pub line: usize,
    pub msg: String,
}

/// Python's `str.isspace`, for `str.strip()`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.splitlines()`.
pub(crate) fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let brk = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if brk {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(j, '\n')) = it.peek()
            {
                it.next();
                end = j + 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Decode the file like ini.py: UTF-8, except that comment lines may hold anything.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<String>, IniError> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(py_splitlines(s).into_iter().map(str::to_string).collect());
    }
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            lines.push(&bytes[start..i]);
            if bytes[i] == b'\r' && i + 1 < bytes.len() && bytes[i + 1] == b'\n' {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    for (n, l) in lines.into_iter().enumerate() {
        if l.first().is_some_and(|b| *b == b';' || *b == b'#') {
            out.push(String::new());
        } else {
            match std::str::from_utf8(l) {
                Ok(s) => out.push(s.to_string()),
                Err(_) => {
                    return Err(IniError {
                        line: n + 1,
                        msg: "line is not valid UTF-8".into(),
                    });
                }
            }
        }
    }
    Ok(out)
}

enum State {
    Hosts,
    Children,
    Vars,
}

struct Pending {
    line: usize,
    children: bool, // else vars
    name: String,
    parents: Vec<String>,
}

/// Parse INI text into `inv`.
pub(crate) fn parse(inv: &mut InvData, lines: &[String]) -> Result<(), IniError> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    for (idx, raw) in lines.iter().enumerate() {
        let lineno = idx + 1;
        let err = |msg: String| IniError { line: lineno, msg };
        let line = raw.trim_matches(py_space);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(m) = SECTION.captures(line) {
            let name = m[1].to_string();
            let tag = m.get(2).map(|t| t.as_str()).unwrap_or("hosts");
            state = match tag {
                "hosts" => State::Hosts,
                "children" => State::Children,
                "vars" => State::Vars,
                other => {
                    return Err(err(format!(
                        "Section [{}:{other}] has unknown type: {other} (expected hosts, \
                         children or vars)",
                        &m[1]
                    )));
                }
            };
            let is_vars = matches!(state, State::Vars);
            if inv.group(&name).is_none() {
                if is_vars && !pending.iter().any(|p| p.name == name) {
                    pending.push(Pending {
                        line: lineno,
                        children: false,
                        name: name.clone(),
                        parents: vec![],
                    });
                }
                inv.add_group(&name);
            }
            if !is_vars && let Some(pos) = pending.iter().position(|p| p.name == name) {
                if pending[pos].children {
                    add_pending_children(inv, &name, &mut pending).map_err(err)?;
                } else {
                    pending.remove(pos);
                }
            }
            group = name;
            continue;
        } else if line.starts_with('[') && line.ends_with(']') {
            return Err(err(format!(
                "Invalid section entry: '{line}'. Please make sure that there are no spaces in \
                 the section entry, and that there are no other invalid characters"
            )));
        }
        match state {
            State::Hosts => {
                let tokens = shlex_split(line, true)
                    .map_err(|e| err(format!("Error parsing host definition '{line}': {e}")))?;
                let Some(first) = tokens.first() else {
                    continue;
                };
                let (hosts, port) = expand_hostpattern(first).map_err(&err)?;
                if first.trim().ends_with(':') && port.is_none() {
                    return Err(err(format!(
                        "Invalid host pattern '{first}' supplied, ending in ':' is not allowed, \
                         this character is reserved to provide a port."
                    )));
                }
                if hosts.iter().any(|h| h.trim() == "---") {
                    return Err(err(format!(
                        "Invalid host pattern '{first}' supplied, '---' is normally a sign this \
                         is a YAML file."
                    )));
                }
                let mut vars = Vec::new();
                for t in &tokens[1..] {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(err(format!(
                            "Expected key=value host variable assignment, got: {t}"
                        )));
                    };
                    let v = parse_ini_value(v).map_err(|e| err(format!("{k}: {e}")))?;
                    super::data::set_var(&mut vars, k, v);
                }
                let g = inv.group(&group).unwrap_or(UNGROUPED);
                for h in hosts {
                    let hi = inv.add_host(&h, Some(g), port).map_err(&err)?;
                    for (k, v) in &vars {
                        inv.set_host_var(hi, k, v.clone());
                    }
                }
            }
            State::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(format!("Expected key=value, got: {line}")));
                };
                let (k, v) = (k.trim_matches(py_space), v.trim_matches(py_space));
                let v = parse_ini_value(v).map_err(|e| err(format!("{k}: {e}")))?;
                let g = inv.add_group(&group);
                inv.set_group_var(g, k, v).map_err(&err)?;
            }
            State::Children => {
                let Some(m) = GROUPNAME.captures(line) else {
                    return Err(err(format!("Expected group name, got: {line}")));
                };
                let child = m[1].to_string();
                if inv.group(&child).is_none() {
                    if let Some(p) = pending.iter_mut().find(|p| p.name == child) {
                        p.parents.push(group.clone());
                    } else {
                        pending.push(Pending {
                            line: lineno,
                            children: true,
                            name: child,
                            parents: vec![group.clone()],
                        });
                    }
                } else {
                    let g = inv.add_group(&group);
                    inv.add_child(g, &child).map_err(&err)?;
                }
            }
        }
    }
    if let Some(p) = pending.first() {
        let msg = if p.children {
            format!(
                "Section [{}:children] includes undefined group '{}'.",
                p.parents.last().map(String::as_str).unwrap_or("?"),
                p.name
            )
        } else {
            format!(
                "Section [{}:vars] not valid for undefined group '{}'.",
                p.name, p.name
            )
        };
        return Err(IniError { line: p.line, msg });
    }
    Ok(())
}

fn add_pending_children(
    inv: &mut InvData,
    group: &str,
    pending: &mut Vec<Pending>,
) -> Result<(), String> {
    let Some(pos) = pending.iter().position(|p| p.name == group) else {
        return Ok(());
    };
    let parents = pending[pos].parents.clone();
    for parent in parents {
        let pg = inv.add_group(&parent);
        inv.add_child(pg, group)?;
        if pending.iter().any(|p| p.name == parent && p.children) {
            add_pending_children(inv, &parent, pending)?;
        }
    }
    if let Some(pos) = pending.iter().position(|p| p.name == group) {
        pending.remove(pos);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::value::Data;

    fn parse_str(s: &str) -> Result<InvData, IniError> {
        let mut inv = InvData::new();
        let lines: Vec<String> = py_splitlines(s).into_iter().map(String::from).collect();
        parse(&mut inv, &lines)?;
        inv.reconcile().map_err(|msg| IniError { line: 0, msg })?;
        Ok(inv)
    }

    fn hvar<'a>(inv: &'a InvData, h: &str, k: &str) -> Option<&'a Data> {
        let h = inv.host(h)?;
        inv.hosts[h]
            .vars
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
    }
    fn gvar<'a>(inv: &'a InvData, g: &str, k: &str) -> Option<&'a Data> {
        let g = inv.group(g)?;
        inv.groups[g]
            .vars
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
    }

    #[test]
    fn groups_hosts_and_inline_vars() {
        let inv = parse_str(
            "top1\n[web]\nw1 ansible_host=10.0.0.1 ansible_port=2222 x='a b'\nw2:2200 # c\n\
             ; comment\n# comment\n[db]\nd[1:2]\n",
        )
        .unwrap();
        let web = inv.group("web").unwrap();
        assert_eq!(inv.groups[web].hosts.len(), 2);
        assert_eq!(hvar(&inv, "w1", "ansible_port"), Some(&Data::Int(2222)));
        assert_eq!(hvar(&inv, "w1", "x"), Some(&Data::Str("a b".into())));
        assert_eq!(hvar(&inv, "w2", "ansible_port"), Some(&Data::Int(2200)));
        assert!(inv.host("d1").is_some() && inv.host("d2").is_some());
        assert!(
            inv.groups[UNGROUPED]
                .hosts
                .contains(&inv.host("top1").unwrap())
        );
    }

    #[test]
    fn group_vars_are_literal_evaluated_not_shell_split() {
        let inv = parse_str(
            "[g]\nh\n[g:vars]\nn = 7\nq=\"quoted\"\nl=[1, 2]\nargs='-o A=b'\nraw=a b # c\n\
             t={{ x }}\n",
        )
        .unwrap();
        assert_eq!(gvar(&inv, "g", "n"), Some(&Data::Int(7)));
        assert_eq!(gvar(&inv, "g", "q"), Some(&Data::Str("quoted".into())));
        assert_eq!(
            gvar(&inv, "g", "l"),
            Some(&Data::Seq(vec![Data::Int(1), Data::Int(2)]))
        );
        assert_eq!(gvar(&inv, "g", "args"), Some(&Data::Str("-o A=b".into())));
        assert_eq!(gvar(&inv, "g", "raw"), Some(&Data::Str("a b # c".into())));
        assert_eq!(gvar(&inv, "g", "t"), Some(&Data::Str("{{ x }}".into())));
    }

    #[test]
    fn children_may_be_declared_later() {
        let inv = parse_str("[p:children]\nc\n[c]\nh\n[p:vars]\nx=1\n").unwrap();
        let (p, c) = (inv.group("p").unwrap(), inv.group("c").unwrap());
        assert_eq!(inv.groups[p].children, vec![c]);
        assert_eq!(inv.groups[c].depth, 2);
    }

    #[test]
    fn undefined_children_and_vars_are_errors_at_their_line() {
        let e = parse_str("[p:children]\nnope\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.msg
                .contains("[p:children] includes undefined group 'nope'"),
            "{}",
            e.msg
        );
        let e = parse_str("[h]\nx\n\n[ghost:vars]\na=1\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(
            e.msg.contains("[ghost:vars] not valid for undefined group"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn malformed_lines_report_their_line() {
        let e = parse_str("[g]\nh\n[g:vars]\njustaword\n").unwrap_err();
        assert_eq!(
            (e.line, e.msg.as_str()),
            (4, "Expected key=value, got: justaword")
        );
        let e = parse_str("[g]\nh novalue\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.msg
                .contains("Expected key=value host variable assignment")
        );
        let e = parse_str("[g]\nh x='unclosed\n").unwrap_err();
        assert!(e.msg.contains("No closing quotation"));
        let e = parse_str("[g:bogus]\n").unwrap_err();
        assert!(e.msg.contains("unknown type"));
        let e = parse_str("[bad group]\n").unwrap_err();
        assert!(e.msg.contains("Invalid section entry"));
        let e = parse_str("all:\n  hosts:\n").unwrap_err();
        assert!(e.msg.contains("ending in ':' is not allowed"), "{}", e.msg);
        let e = parse_str("[g]\nn[01:3]\n").unwrap_err();
        assert!(e.msg.contains("equal-length"));
        let e = parse_str("[a:children]\nb\n[b:children]\na\n").unwrap_err();
        assert!(e.msg.contains("recursive dependency loop"), "{}", e.msg);
    }

    #[test]
    fn header_group_names_are_kept_as_written() {
        // ini.py calls to_safe_group_name without force; the default
        // TRANSFORM_INVALID_GROUP_CHARS=never keeps the name.
        let inv = parse_str("[web-servers]\nh\n[1st]\ni\n").unwrap();
        assert!(inv.group("web-servers").is_some() && inv.group("1st").is_some());
    }

    #[test]
    fn splitlines_like_python() {
        assert_eq!(py_splitlines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(py_splitlines("a\n"), ["a"]);
        assert_eq!(py_splitlines(""), Vec::<&str>::new());
    }
}
