//! Reading inventory sources: a file (tried as a YAML inventory, then as INI, like Ansible's
//! default `yaml` then `ini` plugins) or a directory (every entry, sorted, recursively).
//!
//! In a directory, Ansible skips hidden names, `group_vars`, `host_vars`, `vars_plugins`, and
//! names ending in `.pyc .pyo .swp .bak ~ .rpm .md .txt .rst .orig .cfg .retry`. So do we.

use std::path::Path;

use super::InventoryError;
use super::data::InvData;
use super::hostpattern::expand_hostpattern;
use super::ini;
use super::value::Data;
use super::vars::splitext_ext;
use super::yaml::{self, Node, YamlError};

const IGNORED_EXTS: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];

pub(crate) fn ignored_in_dir(name: &str) -> bool {
    name.starts_with('.')
        || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
        || IGNORED_EXTS.iter().any(|e| name.ends_with(e))
}

/// Parse `path` (file or directory) into `inv`.
pub(crate) fn parse_source(
    inv: &mut InvData,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), InventoryError> {
    let meta = std::fs::metadata(path).map_err(|source| InventoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|source| InventoryError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let mut names: Vec<std::ffi::OsString> =
            rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            if ignored_in_dir(&n.to_string_lossy()) {
                continue;
            }
            parse_source(inv, &path.join(&n), warnings)?;
        }
        return Ok(());
    }
    parse_file(inv, path, warnings)
}

fn parse_file(
    inv: &mut InvData,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), InventoryError> {
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    inv.current_file = path.to_path_buf();
    let syntax = |line: usize, msg: String| InventoryError::Syntax {
        file: path.to_path_buf(),
        line: line.max(1),
        msg,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = splitext_ext(&name).to_string();
    if ext == ".toml" {
        return Err(syntax(
            1,
            "TOML inventories are not supported; use an INI or YAML inventory".into(),
        ));
    }
    let yaml_wanted = ext.is_empty() || matches!(ext.as_str(), ".yaml" | ".yml" | ".json");
    let mut yaml_failure: Option<(YamlError, bool)> = None; // (error, looked like a YAML mapping)
    if yaml_wanted && let Ok(text) = std::str::from_utf8(&bytes) {
        let snapshot = inv.clone();
        let mut w = Vec::new();
        match parse_yaml_inventory(inv, text, &mut w) {
            Ok(()) => {
                warnings.extend(w.into_iter().map(|m| format!("{}: {m}", path.display())));
                return Ok(());
            }
            Err((e, mapping)) => {
                *inv = snapshot;
                yaml_failure = Some((e, mapping));
            }
        }
    }
    let snapshot = inv.clone();
    let ini_result = ini::decode(&bytes).and_then(|lines| ini::parse(inv, &lines));
    match ini_result {
        Ok(()) => Ok(()),
        Err(ie) => {
            *inv = snapshot;
            // Report the error of the format the file was meant to be in.
            if let Some((ye, mapping)) = yaml_failure {
                let yaml_ext = !ext.is_empty();
                if mapping || yaml_ext || looks_like_yaml(&bytes) {
                    return Err(syntax(ye.line, ye.msg));
                }
            }
            Err(syntax(ie.line, ie.msg))
        }
    }
}

/// The first meaningful line reads like YAML (`---`, `key:`, `{`) rather than INI.
fn looks_like_yaml(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    for l in text.lines() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        return t == "---" || t.starts_with('{') || t.ends_with(':') || t.contains(": ");
    }
    false
}

type YErr = (YamlError, bool);

fn ye(line: usize, msg: impl Into<String>) -> YErr {
    (
        YamlError {
            line,
            msg: msg.into(),
        },
        true,
    )
}

fn is_null_node(n: &Node) -> Result<bool, YErr> {
    Ok(matches!(n.to_data().map_err(|e| (e, true))?, Data::Null))
}

/// Ansible's `yaml` inventory plugin.
fn parse_yaml_inventory(
    inv: &mut InvData,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<(), YErr> {
    let root = yaml::load_node(text).map_err(|e| (e, false))?;
    let Some(root) = root else {
        return Err((
            YamlError {
                line: 1,
                msg: "Parsed empty YAML file".into(),
            },
            false,
        ));
    };
    let Some(top) = root.map_pairs().map_err(|e| (e, false))? else {
        return Err((
            YamlError {
                line: root.line(),
                msg: "YAML inventory has invalid structure, it should be a dictionary".into(),
            },
            false,
        ));
    };
    if top.is_empty() {
        return Err((
            YamlError {
                line: 1,
                msg: "Parsed empty YAML file".into(),
            },
            false,
        ));
    }
    for (k, v) in &top {
        if k.to_data().map_err(|e| (e, true))?.as_str() == Some("plugin") {
            let truthy = !matches!(
                v.to_data().map_err(|e| (e, true))?,
                Data::Null | Data::Bool(false)
            );
            if truthy {
                return Err(ye(
                    k.line(),
                    "this is an inventory plugin configuration (plugin: ...), not a YAML \
                     inventory; lsbackup reads static INI and YAML inventories only",
                ));
            }
        }
    }
    for (k, v) in &top {
        parse_group(inv, k, v, warnings)?;
    }
    Ok(())
}

fn group_name(k: &Node) -> Result<String, YErr> {
    let d = k.to_data().map_err(|e| (e, true))?;
    match d.as_str() {
        Some("") => Err(ye(k.line(), "Invalid empty group name")),
        Some(s) => Ok(s.to_string()),
        None => Err(ye(
            k.line(),
            format!(
                "Invalid group name {}: expected a string but got a {}",
                d.json_key().unwrap_or_default(),
                d.type_name()
            ),
        )),
    }
}

/// A group's key: its name, value node, the value's pairs when a mapping, and its line.
type Section = (String, Node, Option<Vec<(Node, Node)>>, usize);

/// `_parse_group`: returns the group's name.
fn parse_group(
    inv: &mut InvData,
    k: &Node,
    v: &Node,
    warnings: &mut Vec<String>,
) -> Result<String, YErr> {
    let line = k.line();
    let pairs = v.map_pairs().map_err(|e| (e, true))?;
    if pairs.is_none() && !is_null_node(v)? {
        let name = k
            .to_data()
            .ok()
            .and_then(|d| d.json_key().ok())
            .unwrap_or_default();
        warnings.push(format!(
            "line {line}: skipping '{name}' as this is not a valid group definition"
        ));
        return Ok(name);
    }
    let name = group_name(k)?;
    let g = inv.add_group(&name);
    let Some(pairs) = pairs else { return Ok(name) };
    // Sections must be mappings (a plain string is shorthand for a one-entry mapping).
    let mut sections: Vec<Section> = Vec::new();
    for (sk, sv) in &pairs {
        let key = sk.to_data().map_err(|e| (e, true))?;
        let key_s = key.json_key().unwrap_or_default();
        let is_section = matches!(key.as_str(), Some("vars" | "children" | "hosts"));
        let mut inner = sv.map_pairs().map_err(|e| (e, true))?;
        if is_section && inner.is_none() {
            let d = sv.to_data().map_err(|e| (e, true))?;
            if let Some(s) = d.as_str() {
                inner = Some(vec![(
                    Node::Data(Data::Str(s.to_string()), sv.line()),
                    Node::Data(Data::Null, sv.line()),
                )]);
            } else if !matches!(d, Data::Null) {
                return Err(ye(
                    sk.line(),
                    format!(
                        "Invalid \"{key_s}\" entry for \"{name}\" group, requires a dictionary, \
                         found a {} instead.",
                        d.type_name()
                    ),
                ));
            }
        }
        sections.push((key_s, sv.clone(), inner, sk.line()));
    }
    for (key, sv, inner, kline) in sections {
        let Some(inner) = inner else {
            if !is_null_node(&sv)? {
                warnings.push(format!(
                    "line {kline}: skipping key ({key}) in group ({name}) as it is not a mapping"
                ));
            }
            continue;
        };
        match key.as_str() {
            "vars" => {
                for (vk, vv) in inner {
                    let kd = vk.to_data().map_err(|e| (e, true))?;
                    let kname = kd.json_key().map_err(|e| ye(vk.line(), e))?;
                    let val = vv.to_data().map_err(|e| (e, true))?;
                    inv.set_group_var(g, &kname, val)
                        .map_err(|e| ye(vk.line(), e))?;
                }
            }
            "children" => {
                for (ck, cv) in inner {
                    let child = parse_group(inv, &ck, &cv, warnings)?;
                    inv.add_child(g, &child).map_err(|e| ye(ck.line(), e))?;
                }
            }
            "hosts" => {
                for (hk, hv) in inner {
                    let hd = hk.to_data().map_err(|e| (e, true))?;
                    let Some(pattern) = hd.as_str() else {
                        return Err(ye(
                            hk.line(),
                            format!(
                                "Host pattern {} must be a string. Enclose integers/floats in \
                                 quotation marks.",
                                hd.json_key().unwrap_or_default()
                            ),
                        ));
                    };
                    let (hosts, port) =
                        expand_hostpattern(pattern).map_err(|e| ye(hk.line(), e))?;
                    let hvd = hv.to_data().map_err(|e| (e, true))?;
                    let hvars: Vec<(Data, Data)> = match hvd {
                        Data::Map(p) => p,
                        d if is_falsy(&d) => Vec::new(),
                        d => {
                            return Err(ye(
                                hv.line(),
                                format!(
                                    "host '{pattern}': expected a dictionary of host variables, \
                                     got a {}",
                                    d.type_name()
                                ),
                            ));
                        }
                    };
                    for h in hosts {
                        let hi = inv
                            .add_host(&h, Some(g), port)
                            .map_err(|e| ye(hk.line(), e))?;
                        for (vk, vv) in &hvars {
                            let kname = vk.json_key().map_err(|e| ye(hk.line(), e))?;
                            inv.set_host_var(hi, &kname, vv.clone());
                        }
                    }
                }
            }
            other => warnings.push(format!(
                "line {kline}: skipping unexpected key ({other}) in group ({name}), only \"vars\", \
                 \"children\" and \"hosts\" are valid"
            )),
        }
    }
    Ok(name)
}

fn is_falsy(d: &Data) -> bool {
    match d {
        Data::Null | Data::Bool(false) => true,
        Data::Int(0) => true,
        Data::Float(f) => *f == 0.0,
        Data::Str(s) | Data::Unsafe(s) => s.is_empty(),
        Data::Seq(v) => v.is_empty(),
        Data::Map(m) => m.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yinv(s: &str) -> Result<InvData, YErr> {
        let mut inv = InvData::new();
        let mut w = Vec::new();
        parse_yaml_inventory(&mut inv, s, &mut w)?;
        inv.reconcile().map_err(|e| ye(0, e))?;
        Ok(inv)
    }

    #[test]
    fn yaml_groups_hosts_children_vars() {
        let inv = yinv(
            "all:\n  vars:\n    a: 1\n  hosts:\n    h0:\n  children:\n    web:\n      hosts:\n        \
             w[1:2]:\n          x: y\n        w3:2222:\n      vars:\n        ansible_group_priority: 5\n    \
             db: \n",
        )
        .unwrap();
        let web = inv.group("web").unwrap();
        assert_eq!(inv.groups[web].hosts.len(), 3);
        assert_eq!(inv.groups[web].priority, 5);
        assert!(inv.group("db").is_some());
        let w3 = inv.host("w3").unwrap();
        assert_eq!(
            inv.hosts[w3].vars[0],
            ("ansible_port".to_string(), Data::Int(2222))
        );
        // h0 sits directly in all, so it also lands in ungrouped.
        let h0 = inv.host("h0").unwrap();
        assert!(
            inv.groups[super::super::data::UNGROUPED]
                .hosts
                .contains(&h0)
        );
    }

    #[test]
    fn yaml_structure_errors() {
        let e = yinv("all:\n  hosts:\n    - a\n    - b\n").unwrap_err().0;
        assert!(e.msg.contains("requires a dictionary"), "{e:?}");
        assert_eq!(e.line, 2);
        let e = yinv("all:\n  hosts:\n    1:\n").unwrap_err().0;
        assert!(e.msg.contains("must be a string"), "{e:?}");
        assert_eq!(e.line, 3);
        let e = yinv("all:\n  hosts:\n    h: [1]\n").unwrap_err().0;
        assert!(
            e.msg.contains("expected a dictionary of host variables"),
            "{e:?}"
        );
        let e = yinv("plugin: aws_ec2\n").unwrap_err().0;
        assert!(e.msg.contains("plugin"), "{e:?}");
        assert!(yinv("- a\n").is_err());
    }

    #[test]
    fn string_sections_are_shorthand() {
        let inv = yinv("g:\n  hosts: h1\n").unwrap();
        assert!(inv.host("h1").is_some());
    }

    #[test]
    fn directory_ignores() {
        assert!(ignored_in_dir("group_vars"));
        assert!(ignored_in_dir(".git"));
        assert!(ignored_in_dir("README.md"));
        assert!(ignored_in_dir("old.bak"));
        assert!(ignored_in_dir("ansible.cfg"));
        assert!(!ignored_in_dir("hosts.yml"));
        assert!(!ignored_in_dir("01-inventory"));
    }
}
