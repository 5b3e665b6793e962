//! `group_vars/` and `host_vars/` beside the inventory, as Ansible's `host_group_vars` vars
//! plugin and `DataLoader.find_vars_files` find them.
//!
//! For an entity `NAME` (a group or a host) in `DIR/group_vars` (or `DIR/host_vars`), the first
//! that exists of `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` is used. When that is a
//! directory, every file below it (recursively, sorted by name) is read, skipping hidden files,
//! names ending in `~`, sub-directories with an extension and files whose extension is not
//! empty, `.yml`, `.yaml` or `.json`. Each file is JSON or YAML holding a mapping (an empty file
//! is fine); later files override earlier ones key by key.
//!
//! `DIR` is the inventory's directory (or the inventory directory itself), symlinks resolved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::InventoryError;
use super::value::Data;
use super::yaml;

/// Python's `os.path.splitext(name)[1]`.
pub(crate) fn splitext_ext(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if !name[..i].chars().all(|c| c == '.') => &name[i..],
        _ => "",
    }
}

const EXTS: [&str; 3] = [".yml", ".yaml", ".json"];

fn dir_vars_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        if n.starts_with('.') || n.ends_with('~') {
            continue;
        }
        let ext = splitext_ext(&n);
        let full = dir.join(&n);
        if full.is_dir() {
            if ext.is_empty() {
                dir_vars_files(&full, out);
            }
        } else if full.is_file() && (ext.is_empty() || EXTS.contains(&ext)) {
            out.push(full);
        }
    }
}

/// `DataLoader.find_vars_files(dir, name)`.
pub(crate) fn find_vars_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if name.starts_with('/') || !dir.is_dir() {
        return out;
    }
    for ext in ["", ".yml", ".yaml", ".json"] {
        let p = dir.join(format!("{name}{ext}"));
        if p.exists() {
            if p.is_dir() {
                dir_vars_files(&p, &mut out);
            } else {
                out.push(p);
            }
            break;
        }
    }
    out
}

/// Read one vars file: a mapping of variables (or nothing).
pub(crate) fn load_vars_file(path: &Path) -> Result<Vec<(String, Data)>, InventoryError> {
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let syntax = |line: usize, msg: String| InventoryError::Syntax {
        file: path.to_path_buf(),
        line: line.max(1),
        msg,
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        syntax(line, "file is not valid UTF-8".into())
    })?;
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        return Err(syntax(
            1,
            "file is encrypted with ansible-vault; lsbackup cannot decrypt vault files (decrypt \
             it or move secrets out of the inventory)"
                .into(),
        ));
    }
    let data = yaml::load(&text).map_err(|e| syntax(e.line, e.msg))?;
    match data {
        None => Ok(Vec::new()),
        Some(Data::Map(pairs)) => {
            let mut out = Vec::new();
            for (k, v) in pairs {
                let key = k.json_key().map_err(|e| syntax(1, e))?;
                super::data::set_var(&mut out, &key, v);
            }
            Ok(out)
        }
        // Falsy values are ignored by the vars plugin.
        Some(Data::Seq(v)) if v.is_empty() => Ok(Vec::new()),
        Some(Data::Str(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Data::Bool(false)) | Some(Data::Null) => Ok(Vec::new()),
        Some(Data::Int(0)) => Ok(Vec::new()),
        Some(other) => Err(syntax(
            1,
            format!(
                "expected a mapping of variables, got a {}",
                other.type_name()
            ),
        )),
    }
}

/// The variables for `name` from `dir` (`.../group_vars` or `.../host_vars`), files combined in
/// order.
#[cfg(test)]
pub(crate) fn entity_vars(dir: &Path, name: &str) -> Result<Vec<(String, Data)>, InventoryError> {
    entity_vars_with_origins(dir, name).map(|(v, _)| v)
}

/// Variables in order, with the file each was last set from.
pub(crate) type VarsWithOrigins = (Vec<(String, Data)>, HashMap<String, PathBuf>);

/// [`entity_vars`], with the file each variable was last set from.
pub(crate) fn entity_vars_with_origins(
    dir: &Path,
    name: &str,
) -> Result<VarsWithOrigins, InventoryError> {
    let mut out = Vec::new();
    let mut origins = HashMap::new();
    for f in find_vars_files(dir, name) {
        for (k, v) in load_vars_file(&f)? {
            origins.insert(k.clone(), f.clone());
            super::data::set_var(&mut out, &k, v);
        }
    }
    Ok((out, origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitext_like_python() {
        assert_eq!(splitext_ext("a.yml"), ".yml");
        assert_eq!(splitext_ext("a.b.yaml"), ".yaml");
        assert_eq!(splitext_ext(".hidden"), "");
        assert_eq!(splitext_ext("noext"), "");
        assert_eq!(splitext_ext("..x"), "");
    }

    #[test]
    fn first_match_wins_and_directories_are_walked_in_order() {
        let t = tempfile::tempdir().unwrap();
        let gv = t.path().join("group_vars");
        std::fs::create_dir_all(gv.join("web/sub")).unwrap();
        std::fs::write(gv.join("db"), "a: 1\n").unwrap();
        std::fs::write(gv.join("db.yml"), "a: 2\n").unwrap();
        std::fs::write(gv.join("web/10.yml"), "a: 1\nb: 1\n").unwrap();
        std::fs::write(gv.join("web/20.json"), "{\"a\": 2}").unwrap();
        std::fs::write(gv.join("web/sub/x"), "c: 3\n").unwrap();
        std::fs::write(gv.join("web/skip.txt"), "a: 9\n").unwrap();
        std::fs::write(gv.join("web/.hidden.yml"), "a: 9\n").unwrap();
        std::fs::write(gv.join("web/old.yml~"), "a: 9\n").unwrap();
        let db = entity_vars(&gv, "db").unwrap();
        assert_eq!(db, vec![("a".to_string(), Data::Int(1))]);
        let web = entity_vars(&gv, "web").unwrap();
        assert_eq!(
            web,
            vec![
                ("a".to_string(), Data::Int(2)),
                ("b".to_string(), Data::Int(1)),
                ("c".to_string(), Data::Int(3)),
            ]
        );
        assert!(entity_vars(&gv, "none").unwrap().is_empty());
    }

    #[test]
    fn non_mapping_files_are_errors_with_the_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("all.yml");
        std::fs::write(&f, "- a\n- b\n").unwrap();
        let e = load_vars_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("all.yml:1: expected a mapping of variables, got a list"),
            "{e}"
        );
        std::fs::write(&f, "a: 1\nb: [\n").unwrap();
        let e = load_vars_file(&f).unwrap_err().to_string();
        assert!(e.contains("all.yml:"), "{e}");
        std::fs::write(&f, "").unwrap();
        assert!(load_vars_file(&f).unwrap().is_empty());
    }
}
