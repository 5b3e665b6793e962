//! Entry points for the fuzz targets (`fuzz/fuzz_targets/*.rs`, see `docs/fuzzing.md`) and for
//! `tests/fuzz_corpus.rs`, which replays the committed corpus through the same functions.
//!
//! Each function takes any bytes and runs them through the code path that real hostile input
//! takes; errors are expected and ignored, a panic, a hang or unbounded memory is a bug:
//!
//! - [`ini_inventory`] / [`yaml_inventory`]: the bytes as an inventory file (`hosts.ini`,
//!   `hosts.yml`) read by [`Inventory::load`], printed as `inventory --list` does, then planned
//!   with the built-in components as `lsbackup plan` does (host variables resolved with
//!   `inventory::jinja`, commands rendered).
//! - [`component_spec`]: the bytes as a user's component spec (`--components-dir`), parsed and
//!   validated as [`Catalog::load`] does, then planned on an inventory whose one host is in every
//!   group the spec names, and its commands, outputs, users and copy paths rendered as a backup
//!   renders them.
//! - [`manifest`]: the bytes as `manifest.json` (inside an archive or its sidecar): the format
//!   version check and parse, the manifest's own consistency checks, and the sidecar check.
//! - [`archive`]: the bytes as an archive file: `verify`, `read_manifest`, `extract` (into a
//!   private temporary directory) and the streamed `verify` of an archive read from a target.
//!   The first byte chooses how the rest is used: as the stored file itself, or as a tar stream
//!   that is first compressed with zstd or gzip (so that the fuzzer can reach the tar reader
//!   and the manifest without having to forge compressed streams).

use std::path::Path;
use std::sync::LazyLock;

use crate::archive::crypt::Identities;
use crate::archive::extract::{Filter, extract_file};
use crate::archive::read::{manifest_problems, read_manifest_reader, verify_reader};
use crate::archive::{ArchiveDigest, Format, VerifyReport, read_manifest, verify_archive};
use crate::components::{Catalog, ComponentSpec, template};
use crate::engine::{Plan, Selection};
use crate::inventory::{Group, Host, Inventory};

/// The built-in components, loaded once (they are the same for every input).
static BUILTIN: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::load(None).expect("built-in components load"));

/// A private temporary directory, in memory when the machine has `/dev/shm`.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new()
        .prefix("lsbackup-fuzz-")
        .tempdir_in(shm);
    match b {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().expect("temporary directory"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

thread_local! {
    static RT: tokio::runtime::Runtime = runtime();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

/// An inventory file named `name` holding `data`, read and planned as `lsbackup plan` does.
fn inventory_file(name: &str, data: &[u8]) {
    let dir = scratch();
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("writing the inventory");
    let Ok(inv) = Inventory::load(&path) else {
        return;
    };
    let _ = inv.to_ansible_list_json();
    for h in &inv.hosts {
        let _ = inv.connection(&h.name);
    }
    for g in inv.groups.keys() {
        let _ = inv.group_hosts(g);
    }
    plan(inv, &BUILTIN);
}

/// [`Plan::build`], then what `lsbackup plan` and `plan --json` print.
fn plan(inv: Inventory, catalog: &Catalog) {
    if let Ok(p) = Plan::build(inv, catalog, &Selection::default()) {
        let _ = p.describe();
        let _ = p.to_json();
        for c in &p.components {
            for h in &c.hosts {
                let _ = c.describe_host(h, true);
            }
        }
    }
}

/// An INI inventory file.
pub fn ini_inventory(data: &[u8]) {
    inventory_file("hosts.ini", data);
}

/// A YAML inventory file (tried as YAML, then as INI, as Ansible does).
pub fn yaml_inventory(data: &[u8]) {
    inventory_file("hosts.yml", data);
}

/// A user's component spec file.
pub fn component_spec(data: &[u8]) {
    // Catalog::load reads the file with read_to_string: not UTF-8 is an error there.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = ComponentSpec::from_yaml("fuzz.yaml", text) else {
        return;
    };
    let host = Host {
        name: "h1".into(),
        vars: Default::default(),
        origins: Default::default(),
    };
    let mut groups = std::collections::BTreeMap::new();
    for g in spec
        .groups
        .iter()
        .chain(std::iter::once(&"all".to_string()))
    {
        groups.insert(
            g.clone(),
            Group {
                name: g.clone(),
                hosts: vec![host.name.clone()],
                children: Vec::new(),
                vars: Default::default(),
            },
        );
    }
    let inv = Inventory {
        source: "fuzz.ini".into(),
        groups,
        hosts: vec![host],
        warnings: Vec::new(),
    };
    let Ok(p) = Plan::build(
        inv,
        &Catalog {
            components: vec![spec.clone()],
        },
        &Selection::default(),
    ) else {
        return;
    };
    let _ = p.describe();
    let _ = p.to_json();
    // What a backup renders on the host: every command, output name, user and copy path, with
    // the host's resolved variables plus an item and the captured variables.
    for c in &p.components {
        for h in &c.hosts {
            let mut vars = h.vars.clone();
            vars.insert("item".into(), "it em".into());
            for s in &c.spec.steps {
                if let Some(into) = &s.into {
                    vars.insert(into.clone(), "captured value".into());
                }
            }
            let _ = c.spec.serial.eval(&vars);
            let sh = |t: &Option<String>| {
                if let Some(t) = t {
                    let _ = template::shell(t, &vars, &c.spec.snippets).map(|s| s.to_shell());
                }
            };
            let user = |t: &Option<String>| {
                if let Some(t) = t {
                    let _ = template::user(t, &vars);
                }
            };
            if let Some(sel) = &c.spec.select {
                sh(&Some(sel.command.clone()));
                user(&sel.become_user);
            }
            for v in c.spec.versions.values() {
                sh(&Some(v.command.clone()));
                user(&v.become_user);
            }
            for s in &c.spec.steps {
                for t in [&s.run, &s.exec, &s.capture, &s.foreach, &s.when] {
                    sh(t);
                }
                user(&s.become_user);
                user(&s.foreach_become_user);
                if let Some(o) = &s.output {
                    let _ = template::entry_name(o, &vars);
                }
                let _ = template::copy_patterns(&s.copy, &vars);
                let _ = template::copy_shown(&s.copy, &vars);
            }
            for cl in &c.spec.cleanup {
                sh(&Some(cl.run.clone()));
                sh(&cl.when);
                user(&cl.become_user);
            }
        }
    }
}

/// A `manifest.json`, as read from an archive or from its sidecar.
pub fn manifest(data: &[u8]) {
    let Ok(m) = crate::archive::read::parse_manifest_bytes(Path::new("fuzz.json"), data) else {
        return;
    };
    for f in [
        None,
        Some(Format::TarZst),
        Some(Format::TarGz),
        Some(Format::Zip),
    ] {
        let _ = manifest_problems(&m, f);
    }
    let _ = m.entries().count();
    for c in &m.components {
        let _ = c.derived_status();
    }
    let _ = crate::archive::overall_status(&m.components);
    // The sidecar check: the same bytes beside an archive whose manifest they are.
    let mut report = VerifyReport {
        format: m.archive_format,
        manifest: m.clone(),
        entries: 0,
        bytes: 0,
        missing: Vec::new(),
        extra: Vec::new(),
        mismatches: Vec::new(),
        unverified: Vec::new(),
        problems: Vec::new(),
        stored: m.archive.clone().unwrap_or(ArchiveDigest {
            size: 0,
            sha256: String::new(),
        }),
        sidecar: None,
        notes: Vec::new(),
    };
    report.check_sidecar(
        "fuzz.json",
        crate::archive::read::parse_sidecar_bytes("fuzz.json", data),
    );
}

/// The archive bytes `data` stands for (see the module docs): `0` + the stored file, `1` + a tar
/// stream compressed here with zstd, `2` + a tar stream compressed here with gzip.
pub fn archive_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    Some(match mode % 3 {
        0 => rest.to_vec(),
        1 => zstd::bulk::compress(rest, 1).expect("zstd in memory"),
        _ => {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(rest).expect("gzip in memory");
            e.finish().expect("gzip in memory")
        }
    })
}

/// An archive file (see [`archive_bytes`]): verified, its manifest read, extracted, and verified
/// again as a stream.
pub fn archive(data: &[u8]) {
    let Some(bytes) = archive_bytes(data) else {
        return;
    };
    let dir = scratch();
    let path = dir.path().join("backup.archive");
    std::fs::write(&path, &bytes).expect("writing the archive");
    let ids = Identities::default();
    block_on(async {
        let _ = verify_archive(&path).await;
        let _ = read_manifest(&path).await;
        let _ = extract_file(&path, &dir.path().join("out"), &Filter::default(), &ids).await;
        let filter = Filter {
            components: vec!["postgresql".into()],
        };
        let _ = extract_file(&path, &dir.path().join("out2"), &filter, &ids).await;
        let _ = verify_reader("stream", std::io::Cursor::new(bytes.clone()), &ids).await;
        let _ = read_manifest_reader("stream", std::io::Cursor::new(bytes), &ids).await;
    });
}
