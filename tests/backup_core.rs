//! End-to-end backups of the real test bed (three sshd hosts, PostgreSQL, etcd with kubeadm TLS,
//! HAProxy) and the fault cases of the core engine. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use lsbackup::archive::{EntryKind, Status};
use sha2::{Digest, Sha256};

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

/// `lsbackup verify ARCHIVE`, run to its end.
fn verify(archive: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    Command::new(support::bin())
        .arg("verify")
        .arg(archive)
        .output()
        .unwrap()
}

fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A build dir holding `inventory` with the given text.
fn build_dir(inventory: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("inventory"), inventory).unwrap();
    d
}

/// [all:vars] of the test bed with a given key and known_hosts.
fn all_vars(key: &Path) -> String {
    let tb = common::testbed();
    format!(
        "[all:vars]\nansible_user={}\nansible_port={}\nansible_become=true\nansible_ssh_private_key_file={}\n",
        tb.ssh_user(),
        tb.ssh_port(),
        key.display()
    )
}

#[test]
fn full_backup_of_the_testbed_restores() {
    let tb = common::testbed();
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "postgresql,kubernetes,haproxy"],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let archive = run.archive.clone().unwrap();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let re = regex::Regex::new(r"^lsbackup-\d{8}T\d{6}Z\.tar\.zst$").unwrap();
    assert!(re.is_match(&name), "archive name {name}");
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "archive mode");
    // the archive and, beside it, its manifest (for `lsbackup list`), both 0600
    let sidecar = format!("{name}.manifest.json");
    assert_eq!(
        run.target_files(),
        vec![name.clone(), sidecar.clone()],
        "only the archive and its manifest sidecar in the target"
    );
    let sidecar = run.target.path().join(&sidecar);
    let mode = std::fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "sidecar mode");
    let inside: serde_json::Value = serde_json::from_slice(&run.read("manifest.json")).unwrap();
    let mut beside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    // The sidecar adds the archive file's own size and sha256.
    let digest = beside.as_object_mut().unwrap().remove("archive").unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(digest["size"], bytes.len() as u64);
    assert_eq!(
        digest["sha256"].as_str().unwrap(),
        format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    assert_eq!(inside, beside, "the sidecar is the archive's manifest");
    assert_eq!(run.stdout().trim(), archive.display().to_string());

    let m = run.manifest();
    assert_eq!(m.status, Status::Ok);
    assert_eq!(m.archive_name, name);
    assert_eq!(m.tool.version, env!("CARGO_PKG_VERSION"));
    let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["kubernetes", "postgresql", "haproxy"]);
    assert!(m.inventory.groups["postgresql"].contains(&"node1".to_string()));

    // Every file entry in the manifest is in the archive with that size and sha256, and every
    // file in the archive is in the manifest.
    let root = run.extracted.as_ref().unwrap().path();
    let mut listed = std::collections::BTreeSet::new();
    for c in &m.components {
        for h in &c.hosts {
            for e in &h.entries {
                listed.insert(e.path.clone());
                let p = root.join(&e.path);
                match e.kind {
                    EntryKind::File => {
                        let data =
                            std::fs::read(&p).unwrap_or_else(|err| panic!("{}: {err}", e.path));
                        assert_eq!(data.len() as u64, e.size, "{}", e.path);
                        let sum = hex::encode(Sha256::digest(&data));
                        assert_eq!(Some(sum), e.sha256.clone(), "{}", e.path);
                    }
                    EntryKind::Dir => assert!(p.is_dir(), "{}", e.path),
                    EntryKind::Symlink => assert!(p.symlink_metadata().is_ok(), "{}", e.path),
                }
            }
        }
    }
    for entry in walk(root) {
        let rel = entry
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "manifest.json" || entry.is_dir() {
            continue;
        }
        assert!(
            listed.contains(&rel),
            "{rel} in the archive but not in the manifest"
        );
    }

    // PostgreSQL: on the primary, versions recorded, every database restores with its rows.
    let pg = run.component("postgresql");
    assert_eq!(pg.status, Status::Ok);
    let node1 = pg.hosts.iter().find(|h| h.host == "node1").unwrap();
    assert_eq!(node1.role, "primary");
    assert!(
        node1.versions["postgresql"].starts_with("15"),
        "{:?}",
        node1.versions
    );
    assert!(node1.commands.iter().any(|c| c.command.contains("pg_dump")));
    let conf = run.read("postgresql/node1/etc/postgresql/15/main/postgresql.conf");
    assert_eq!(
        conf,
        std::fs::read("/etc/postgresql/15/main/postgresql.conf").unwrap()
    );
    restore_postgres_and_count(&run);

    // etcd: the snapshot is valid and holds the keys.
    let k8s = run.component("kubernetes");
    assert_eq!(k8s.status, Status::Ok, "{:?}", k8s.errors);
    let k = k8s.hosts.iter().find(|h| h.status == Status::Ok).unwrap();
    assert_eq!(k.host, "node2");
    assert!(k.versions.contains_key("etcd"), "{:?}", k.versions);
    check_etcd_snapshot(&run.file("kubernetes/node2/etcd/snapshot.db"));
    assert!(
        run.file("kubernetes/node2/etc/kubernetes/pki/etcd/ca.crt")
            .is_file()
    );
    assert!(
        run.file("kubernetes/node2/etc/kubeadm/kubeadm-config.yml")
            .is_file()
    );

    // HAProxy: byte-identical config and the certificate it references.
    let cfg = run.read("haproxy/node3/etc/haproxy/haproxy.cfg");
    assert_eq!(cfg, std::fs::read("/etc/haproxy/haproxy.cfg").unwrap());
    let cert = tb
        .var("LSB_HAPROXY_CERT")
        .trim_start_matches('/')
        .to_string();
    assert!(run.file(&format!("haproxy/node3/{cert}")).is_file());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Restore globals + every database dump into a fresh cluster and compare row counts.
fn restore_postgres_and_count(run: &support::Run) {
    let tb = common::testbed();
    let work = tempfile::Builder::new()
        .prefix("lsb-pgrestore")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = work.path();
    sh_ok(&format!("chown postgres {}", dir.display()));
    let globals = run.file("postgresql/node1/globals.sql");
    let pgbin = "/usr/lib/postgresql/15/bin";
    let data = dir.join("data");
    let port = 55432;
    sh_ok(&format!(
        "cp {g} {d}/globals.sql && cp -r {dumps} {d}/dumps && chown -R postgres {d} && \
         su postgres -c '{pgbin}/initdb -D {data} -A trust >/dev/null && \
         {pgbin}/pg_ctl -D {data} -o \"-p {port} -k {d} -c listen_addresses=\" -l {d}/log -w start >/dev/null'",
        g = globals.display(),
        d = dir.display(),
        dumps = run.file("postgresql/node1/databases").display(),
        data = data.display(),
    ));
    let stop = format!(
        "su postgres -c '{pgbin}/pg_ctl -D {} -m immediate stop' >/dev/null",
        data.display()
    );
    let result = std::panic::catch_unwind(|| {
        sh_ok(&format!(
            "su postgres -c 'psql -h {d} -p {port} -X -q -f {d}/globals.sql postgres' >/dev/null 2>&1; true",
            d = dir.display()
        ));
        for db in tb.var("LSB_PG_DATABASES").split(',') {
            sh_ok(&format!(
                "su postgres -c 'pg_restore -h {d} -p {port} -C -d postgres {d}/dumps/{db}.dump'",
                d = dir.display()
            ));
        }
        for spec in tb.var("LSB_PG_ROWS").split(',') {
            let (table, rows) = spec.split_once('=').unwrap();
            let (db, table) = table.split_once('.').unwrap();
            let got = sh_ok(&format!(
                "su postgres -c \"psql -h {d} -p {port} -XtAc 'SELECT count(*) FROM {table}' {db}\"",
                d = dir.display()
            ));
            assert_eq!(got.trim(), rows, "{db}.{table} rows after restore");
        }
    });
    sh(&stop);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn check_etcd_snapshot(path: &Path) {
    let tb = common::testbed();
    let status = sh_ok(&format!(
        "ETCDCTL_API=3 etcdctl snapshot status {} -w json",
        path.display()
    ));
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert!(v["totalKey"].as_u64().unwrap() >= tb.var("LSB_ETCD_KEY_COUNT").parse().unwrap());
    // restore into a fresh data dir and read a key back through a temporary etcd
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("restored");
    sh_ok(&format!(
        "cd {w} && ETCDCTL_API=3 etcdctl snapshot restore {s} --data-dir {d} --name r \
         --initial-cluster r=http://127.0.0.1:52380 --initial-advertise-peer-urls http://127.0.0.1:52380 >/dev/null 2>&1",
        w = work.path().display(),
        s = path.display(),
        d = d.display()
    ));
    let mut etcd = Command::new("etcd")
        .args(["--name", "r", "--data-dir"])
        .arg(&d)
        .args([
            "--listen-client-urls",
            "http://127.0.0.1:52379",
            "--advertise-client-urls",
            "http://127.0.0.1:52379",
            "--listen-peer-urls",
            "http://127.0.0.1:52380",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = tb.var("LSB_ETCD_KEY_PREFIX");
    let mut keys = String::new();
    for _ in 0..50 {
        let out = sh(&format!(
            "ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:52379 get --prefix {prefix} --keys-only"
        ));
        if out.status.success() {
            keys = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    let n = keys.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        n.to_string(),
        tb.var("LSB_ETCD_KEY_COUNT"),
        "keys in the restored etcd"
    );
}

#[test]
fn formats_and_name_collisions() {
    let tb = common::testbed();
    for (fmt, ext) in [("tar.gz", ".tar.gz"), ("zip", ".zip")] {
        let run = support::backup(&tb.build_dir(), &["--only", "haproxy", "--format", fmt]);
        assert_eq!(run.code(), 0, "{fmt}: {}", run.stderr());
        let a = run.archive.as_ref().unwrap().to_string_lossy().into_owned();
        assert!(a.ends_with(ext), "{a}");
        assert_eq!(
            run.read("haproxy/node3/etc/haproxy/haproxy.cfg"),
            std::fs::read("/etc/haproxy/haproxy.cfg").unwrap()
        );
    }
    // Same second, same name: `_1`, `_2`.
    let target = tempfile::tempdir().unwrap();
    let backup_named = |prefix: &str| {
        Command::new(support::bin())
            .args([
                "backup",
                "--only",
                "haproxy",
                "--no-agent",
                "--name-prefix",
                prefix,
            ])
            .arg("-b")
            .arg(tb.build_dir())
            .arg("-t")
            .arg(target.path())
            .arg("--known-hosts")
            .arg(tb.known_hosts())
            .output()
            .unwrap()
    };
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = backup_named("fixed");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        names.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stems: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(stems.len(), 3, "three distinct archives: {names:?}");
    // Within one second the names collide and get suffixes; across seconds they differ anyway.
    let re = regex::Regex::new(r"fixed-\d{8}T\d{6}Z(_\d)?\.tar\.zst$").unwrap();
    assert!(names.iter().all(|n| re.is_match(n)), "{names:?}");
    // Force a collision deterministically: pre-create the names of the coming seconds.
    let now = jiff::Timestamp::now();
    for s in 0..5 {
        let t = now.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let n = format!("taken-{}.tar.zst", t.strftime("%Y%m%dT%H%M%SZ"));
        std::fs::write(target.path().join(n), b"x").unwrap();
    }
    let out = backup_named("taken");
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        name.ends_with("Z_1.tar.zst"),
        "{name} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unreachable_host_keeps_other_components() {
    let tb = common::testbed();
    let inv = format!(
        "[postgresql]\nnode1 ansible_host=127.0.0.2\n[haproxy]\ndead ansible_host=127.0.0.99\n{}",
        all_vars(&tb.client_key())
    );
    let b = build_dir(&inv);
    let run = support::backup(b.path(), &["--only", "postgresql,haproxy"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_eq!(run.component("postgresql").status, Status::Ok);
    let h = run.component("haproxy");
    assert_eq!(h.status, Status::Failed);
    let err = support::messages(&h.errors);
    assert!(err.contains("dead") && err.contains("127.0.0.99"), "{err}");
    assert!(
        run.stderr().contains("dead: cannot connect to 127.0.0.99"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("backup PARTIAL"), "{}", run.stderr());
}

#[test]
fn wrong_key_is_an_auth_error() {
    let tb = common::testbed();
    let inv = format!(
        "[haproxy]\nnode3 ansible_host=127.0.0.4\n{}",
        all_vars(&tb.other_key())
    );
    let b = build_dir(&inv);
    let run = support::backup(b.path(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("node3: authentication failed"),
        "{}",
        run.stderr()
    );
    assert!(run.target_files().is_empty(), "{:?}", run.target_files());
}

#[test]
fn host_keys_unknown_accepted_and_changed() {
    let tb = common::testbed();
    // The test bed inventory names its own UserKnownHostsFile; use one without it here.
    let inv = format!(
        "[haproxy]\nnode3 ansible_host=127.0.0.4\n{}",
        all_vars(&tb.client_key())
    );
    let b = build_dir(&inv);
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let run = |extra: &[&str]| {
        let target = tempfile::tempdir().unwrap();
        Command::new(support::bin())
            .args(["backup", "--only", "haproxy", "--no-agent"])
            .arg("-b")
            .arg(b.path())
            .arg("-t")
            .arg(target.path())
            .arg("--known-hosts")
            .arg(&kh)
            .args(extra)
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("node3: host key for") && err.contains("--accept-new-host-keys"),
        "{err}"
    );
    let out = run(&["--accept-new-host-keys"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(recorded.contains("[127.0.0.4]:"), "{recorded}");
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "known now: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Replace the key with another host's: a changed key is refused, even with accept-new.
    let other = std::fs::read_to_string(tb.dir().join("hosts/node1/ssh_host_ed25519_key.pub"))
        .or_else(|_| std::fs::read_to_string(tb.dir().join("hosts/1/ssh_host_ed25519_key.pub")))
        .ok();
    let other = other.unwrap_or_else(|| {
        sh_ok(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {0}/k && cat {0}/k.pub",
            dir.path().display()
        ))
    });
    let key = other
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&kh, format!("[127.0.0.4]:{} {key}\n", tb.ssh_port())).unwrap();
    let out = run(&["--accept-new-host-keys"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
}

#[test]
fn missing_binary_and_failing_command_are_per_component() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("needs-tool.yaml"),
        "name: needs-tool\ndescription: needs a tool no host has\ngroups: [haproxy]\n\
         requires: [lsbackup-no-such-tool]\nsteps:\n  - name: x\n    run: lsbackup-no-such-tool\n    output: x\n",
    )
    .unwrap();
    std::fs::write(
        comps.path().join("calls-missing.yaml"),
        "name: calls-missing\ndescription: calls a tool no host has\ngroups: [haproxy]\n\
         steps:\n  - name: dump\n    run: lsbackup-no-such-tool --dump\n    output: dump\n",
    )
    .unwrap();
    std::fs::write(
        comps.path().join("noted.yaml"),
        "name: noted\ndescription: reports a remark\ngroups: [haproxy]\n\
         steps:\n  - name: say\n    run: \"echo data; echo 'lsbackup-note: not covered: thing X' >&2\"\n    output: d\n",
    )
    .unwrap();
    let dir = comps.path().to_string_lossy().into_owned();
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--components-dir",
            &dir,
            "--only",
            "needs-tool,calls-missing,noted,postgresql,haproxy",
            "--set",
            "postgresql.postgresql_port=1",
        ],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let e = run.errors_of("needs-tool");
    assert!(
        e.contains("node3: needs-tool: requires: missing on host: lsbackup-no-such-tool"),
        "{e}"
    );
    let e = run.errors_of("calls-missing");
    assert!(
        e.contains("node3: calls-missing: dump: command not found on host (exit 127)"),
        "{e}"
    );
    // PostgreSQL on a port nothing listens on: the primary check fails with psql's own words.
    let pg = run.component("postgresql");
    assert_eq!(pg.status, Status::Failed);
    let e = run.errors_of("postgresql");
    assert!(e.contains("node1") && e.contains("postgresql"), "{e}");
    assert_eq!(run.component("haproxy").status, Status::Ok);
    assert!(run.file("haproxy/node3/etc/haproxy/haproxy.cfg").is_file());
    let noted = run.component("noted");
    assert_eq!(noted.status, Status::Ok);
    assert_eq!(
        noted.hosts[0].flags,
        vec!["not covered: thing X".to_string()]
    );
    assert!(
        run.stderr().contains(": not covered: thing X") && run.stderr().contains("notes:"),
        "{}",
        run.stderr()
    );
}

#[test]
fn bad_target_inventory_and_selection() {
    let tb = common::testbed();
    let bin = support::bin();
    // missing target
    let out = Command::new(bin)
        .args(["backup", "-t", "/nonexistent/lsbackup-target", "--no-agent"])
        .arg("-b")
        .arg(tb.build_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/lsbackup-target") && err.contains("does not exist"),
        "{err}"
    );
    // a target that is a file
    let f = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(bin)
        .args(["backup", "--no-agent", "-t"])
        .arg(f.path())
        .arg("-b")
        .arg(tb.build_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    // malformed inventory: file:line
    let b = build_dir("[postgresql]\nnode1 ansible_host=127.0.0.2\n[broken\n");
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["backup", "--no-agent", "-b"])
        .arg(b.path())
        .arg("-t")
        .arg(t.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("inventory:3:"), "{err}");
    // unknown component
    let out = Command::new(bin)
        .args(["backup", "--no-agent", "--only", "mongodb", "-b"])
        .arg(tb.build_dir())
        .arg("-t")
        .arg(t.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown component \"mongodb\""), "{err}");
    assert!(std::fs::read_dir(t.path()).unwrap().next().is_none());
}

#[test]
fn interrupt_leaves_nothing_behind() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    let marker = tempfile::Builder::new()
        .prefix("lsb-int")
        .tempdir_in("/tmp")
        .unwrap();
    let mark = marker.path().join("cleaned");
    std::fs::write(
        comps.path().join("slow.yaml"),
        format!(
            "name: slow\ndescription: a slow stream\ngroups: [haproxy]\n\
             steps:\n  - name: stream\n    run: for i in $(seq 1 600); do head -c 1048576 /dev/urandom; sleep 0.05; done\n    output: big\n\
             cleanup:\n  - name: mark\n    run: touch {}\n",
            mark.display()
        ),
    )
    .unwrap();
    let target = tempfile::tempdir().unwrap();
    // the exit code a shell or scheduler expects: 128 + the signal's number
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let _ = std::fs::remove_file(&mark);
        let child = Command::new(support::bin())
            .args([
                "backup",
                "--no-agent",
                "--only",
                "slow,haproxy",
                "--components-dir",
            ])
            .arg(comps.path())
            .arg("-b")
            .arg(tb.build_dir())
            .arg("-t")
            .arg(target.path())
            .arg("--known-hosts")
            .arg(tb.known_hosts())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        // the partial archive exists while running
        let during: Vec<String> = std::fs::read_dir(target.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            during.len(),
            2,
            "one .partial and the lock while running: {during:?}"
        );
        assert!(during.iter().any(|n| n.ends_with(".partial")), "{during:?}");
        assert!(during.iter().any(|n| n == "lsbackup.lock"), "{during:?}");
        sh_ok(&format!("kill -{signal} {}", child.id()));
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert!(
            err.contains(&format!(
                "interrupted (SIG{signal}): no archive was written"
            )),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
        assert!(left.is_empty(), "{signal}: left behind: {left:?}");
        // the host's cleanup ran before lsbackup exited
        assert!(mark.exists(), "{signal}: cleanup did not run: {err}");
    }
}

#[test]
fn plan_and_inventory_commands() {
    let tb = common::testbed();
    let out = Command::new(support::bin())
        .args(["plan", "--only", "postgresql,kubernetes,haproxy", "-b"])
        .arg(tb.build_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("postgresql — "), "{text}");
    assert!(text.contains("host node1 (127.0.0.2:"), "{text}");
    assert!(text.contains("select primary"), "{text}");
    assert!(text.contains("etcd snapshot: run"), "{text}");
    assert!(
        text.contains("config: copy /etc/haproxy /etc/ssl/haproxy"),
        "{text}"
    );
    let out = Command::new(support::bin())
        .args(["inventory", "--list", "-b"])
        .arg(tb.build_dir())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["postgresql"]["hosts"][0], "node1");
    assert_eq!(v["_meta"]["hostvars"]["node1"]["ansible_host"], "127.0.0.2");
}

/// Several components streaming from the same hosts at once (one SSH session per host) into one
/// archive: every byte arrives (the manifest's sha256 of each entry is the source file's, and
/// `verify` reads the archive against the manifest), nothing stalls. The archive (~340 MiB of
/// random data) is not extracted: a second copy on disk would only test the test machine's
/// free space.
#[test]
fn concurrent_streams_on_shared_sessions() {
    let tb = common::testbed();
    let data = tempfile::Builder::new()
        .prefix("lsb-conc")
        .tempdir_in("/tmp")
        .unwrap();
    let mut want = Vec::new();
    for i in 0..4u64 {
        sh_ok(&format!(
            "head -c {} /dev/urandom > {}/f{i}",
            (i + 1) * 4 * 1024 * 1024,
            data.path().display()
        ));
        let bytes = std::fs::read(data.path().join(format!("f{i}"))).unwrap();
        want.push((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))));
    }
    let comps = tempfile::tempdir().unwrap();
    for name in ["stream-a", "stream-b", "stream-c"] {
        std::fs::write(
            comps.path().join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndescription: test stream\ngroups: [postgresql, haproxy]\nhosts: all\n\
                 steps:\n  - name: files\n    copy: [\"{d}\"]\n  - name: cat\n    run: cat {d}/f3\n    output: f3.copy\n",
                d = data.path().display()
            ),
        )
        .unwrap();
    }
    let dir = comps.path().to_string_lossy().into_owned();
    let target = tempfile::tempdir().unwrap();
    let out = support::backup_command(&tb.build_dir(), target.path())
        .args([
            "--components-dir",
            &dir,
            "--only",
            "stream-a,stream-b,stream-c",
        ])
        .args(["--command-timeout", "300", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let archive = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let checked = verify(&archive);
    assert!(
        checked.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let sidecar = std::fs::read(format!("{archive}.manifest.json")).unwrap();
    let manifest: lsbackup::archive::Manifest = serde_json::from_slice(&sidecar).unwrap();
    let rel = data.path().strip_prefix("/").unwrap().display().to_string();
    for c in ["stream-a", "stream-b", "stream-c"] {
        let report = manifest.components.iter().find(|r| r.name == c).unwrap();
        for host in ["node1", "node3"] {
            let h = report.hosts.iter().find(|h| h.host == host).unwrap();
            let entry = |path: String| {
                let e = h
                    .entries
                    .iter()
                    .find(|e| e.path == path)
                    .unwrap_or_else(|| panic!("{path} not in the manifest"));
                (e.size, e.sha256.clone().unwrap_or_default())
            };
            for (i, w) in want.iter().enumerate() {
                assert_eq!(
                    &entry(format!("{c}/{host}/{rel}/f{i}")),
                    w,
                    "{c}/{host}/f{i}"
                );
            }
            assert_eq!(
                &entry(format!("{c}/{host}/f3.copy")),
                &want[3],
                "{c}/{host}/f3.copy"
            );
        }
    }
}

/// Scheduled jobs: no terminal, `--log-format json` gives one JSON object per stderr line and a
/// final record with the status, archive and exit code; stdout holds only the archive path.
#[test]
fn json_logs_for_schedulers() {
    let tb = common::testbed();
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "haproxy", "--log-format", "json"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let lines: Vec<serde_json::Value> = run
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["fields"]["exit_code"], 0);
    assert_eq!(last["fields"]["status"], "ok");
    let archive = run.archive.as_ref().unwrap().display().to_string();
    assert_eq!(last["fields"]["archive"], archive.as_str());
    assert_eq!(
        last["fields"]["bytes"].as_u64(),
        Some(std::fs::metadata(&archive).unwrap().len())
    );
    assert!(last["fields"]["duration_seconds"].is_number());
    assert_eq!(run.stdout().trim(), archive);
    // Each step done is a line with host, component, step, duration and bytes as fields; the
    // component's finished line carries the totals.
    let of_haproxy = |msg: &str| -> Vec<&serde_json::Map<String, serde_json::Value>> {
        lines
            .iter()
            .filter_map(|l| l["fields"].as_object())
            .filter(|f| f["message"] == msg && f["component"] == "haproxy" && f["host"] == "node3")
            .collect()
    };
    let steps = of_haproxy("step done");
    assert!(!steps.is_empty(), "{}", run.stderr());
    for f in &steps {
        assert!(f["step"].as_str().is_some_and(|s| !s.is_empty()), "{f:?}");
        assert!(
            f["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
            "{f:?}"
        );
        assert!(f["bytes"].is_u64(), "{f:?}");
    }
    let finished = of_haproxy("finished: ok");
    assert_eq!(finished.len(), 1, "{}", run.stderr());
    let total: u64 = steps.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(finished[0]["bytes"].as_u64(), Some(total));
    assert_eq!(finished[0]["status"], "ok");
    assert!(finished[0]["duration_seconds"].as_f64().is_some());
}

/// `lsbackup verify` checks every entry against the manifest, and refuses what is not an archive.
#[test]
fn verify_command() {
    let tb = common::testbed();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let archive = run.archive.clone().unwrap();
    let out = verify(&archive);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(": ok ("), "{text}");
    // manifest.json is read back through a temporary file; with none to be had, from memory
    let no_tmp = Command::new(support::bin())
        .arg("verify")
        .arg(&archive)
        .env("TMPDIR", run.target.path().join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&no_tmp.stdout),
        text,
        "{}",
        String::from_utf8_lossy(&no_tmp.stderr)
    );
    // The sidecar records the file's own size and sha256, and verify compares them.
    let data = std::fs::read(&archive).unwrap();
    let sidecar = format!("{}.manifest.json", archive.display());
    let beside: lsbackup::archive::Manifest =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let digest = beside
        .archive
        .expect("the sidecar records the archive's digest");
    assert_eq!(digest.size, data.len() as u64);
    assert!(
        text.contains(&format!("the file's sha256 {} matches", digest.sha256)),
        "{text}"
    );
    // Some flipped bits (in a zstd frame header's size fields) change no entry's content: every
    // frame still decodes. Find the first such one; only the file's digest catches it.
    let flipped = run.target.path().join("flipped.tar.zst");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let silent = (0..data.len()).find(|&i| {
        let mut bad = data.clone();
        bad[i] ^= 0x01;
        std::fs::write(&flipped, &bad).unwrap();
        rt.block_on(lsbackup::archive::verify_archive(&flipped))
            .is_ok_and(|r| r.is_ok())
    });
    let i = silent.expect("a flip that leaves every entry intact");
    let mut bad = data.clone();
    bad[i] ^= 0x01;
    std::fs::write(&flipped, &bad).unwrap();
    std::fs::copy(&sidecar, format!("{}.manifest.json", flipped.display())).unwrap();
    let out = verify(&flipped);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the archive differs from what"), "{text}");
    // a sidecar whose manifest is not the one inside (one entry's sha256 changed, the archive's
    // digest left right): refused as such
    let copy = run.target.path().join("copy.tar.zst");
    std::fs::copy(&archive, &copy).unwrap();
    let mut lying: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let entry = lying["components"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|c| c["hosts"].as_array_mut().unwrap().iter_mut())
        .flat_map(|h| h["entries"].as_array_mut().unwrap().iter_mut())
        .find(|e| e["sha256"].is_string())
        .expect("an entry with a sha256");
    entry["sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(
        format!("{}.manifest.json", copy.display()),
        serde_json::to_vec_pretty(&lying).unwrap(),
    )
    .unwrap();
    let out = verify(&copy);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("differs from the manifest.json inside the archive"),
        "{text}"
    );
    // a sidecar of more than 64 MiB (a backup of ~220,000 files makes one): read as it streams
    // in, by verify and by list (both refused it once, verify as "too large")
    let big = run.target.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let big_archive = big.join(archive.file_name().unwrap());
    std::fs::copy(&archive, &big_archive).unwrap();
    let mut padded = vec![b' '; 70 << 20];
    padded.extend(std::fs::read(&sidecar).unwrap());
    std::fs::write(format!("{}.manifest.json", big_archive.display()), padded).unwrap();
    let out = verify(&big_archive);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("matches"), "{text}");
    let out = Command::new(support::bin())
        .args(["list", "--json", "-t"])
        .arg(&big)
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["manifest"], "sidecar", "{listed}");
    std::fs::remove_dir_all(&big).unwrap();

    // cut the archive short: the stream no longer ends cleanly
    let data = std::fs::read(&archive).unwrap();
    let cut = run.target.path().join("cut.tar.zst");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let out = verify(&cut);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("lsbackup: error: "), "{err}");
    assert!(err.contains("cut.tar.zst"), "{err}");
}

/// More entry records than a unit keeps in memory: they go to the run's spool a chunk at a time
/// (src/archive/entries.rs), and the manifest inside and beside the archive, the summary and
/// the report still hold every one, in the order taken, with the right sizes and checksums.
#[test]
fn thousands_of_entries_go_through_the_spool() {
    use sha2::Digest;
    let tb = common::testbed();
    let tree = tempfile::Builder::new()
        .prefix("lsb-many")
        .tempdir_in("/var/tmp")
        .unwrap();
    let n = 2 * lsbackup::archive::entries::CHUNK_RECORDS + 300;
    for i in 0..n {
        let d = tree.path().join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i:05}")),
            format!("content {i}\n").repeat(i % 7),
        )
        .unwrap();
    }
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("many.yaml"),
        format!(
            "name: many\ndescription: many small files\ngroups: [haproxy]\nhosts: first\n\
             steps:\n  - name: files\n    copy: [\"{}\"]\n",
            tree.path().display()
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.json");
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--components-dir",
            comps.path().to_str().unwrap(),
            "--only",
            "many",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let h = &run.component("many").hosts[0];
    let files: Vec<&lsbackup::archive::EntryRecord> = h
        .entries
        .iter()
        .filter(|e| e.kind == lsbackup::archive::EntryKind::File)
        .collect();
    assert_eq!(files.len(), n);
    let prefix = format!("many/{}/", h.host);
    for e in &files {
        let source = std::path::Path::new("/").join(e.path.strip_prefix(&prefix).unwrap());
        let data = std::fs::read(&source).unwrap();
        assert_eq!(e.size, data.len() as u64, "{}", e.path);
        assert_eq!(
            e.sha256.as_deref(),
            Some(hex::encode(sha2::Sha256::digest(&data)).as_str()),
            "{}",
            e.path
        );
        assert_eq!(run.read(&e.path), data, "{}", e.path);
    }
    // no record twice, none lost between chunks
    let paths: std::collections::BTreeSet<&str> =
        h.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths.len(), h.entries.len());
    // the sidecar is the same manifest; the report counts every entry and byte
    let archive = run.archive.clone().unwrap();
    let beside: lsbackup::archive::Manifest = serde_json::from_slice(
        &std::fs::read(format!("{}.manifest.json", archive.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(beside.components, run.manifest().components);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let bytes: u64 = h.entries.iter().map(|e| e.size).sum();
    assert_eq!(r["components"][0]["hosts"][0]["entries"], h.entries.len());
    assert_eq!(r["components"][0]["hosts"][0]["bytes"], bytes);
    let out = verify(&archive);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A component that runs on the first host of its group moves on to the next host when nothing
/// at all came from the first; the first host's errors stay in the manifest.
#[test]
fn first_host_failing_falls_back_to_the_next() {
    let tb = common::testbed();
    let inv = format!(
        "[haproxy]\nbroken ansible_host=127.0.0.2 haproxy_config_dir=/nonexistent/haproxy haproxy_ssl_dir=/nonexistent/ssl\n\
         node3 ansible_host=127.0.0.4\n{}",
        all_vars(&tb.client_key())
    );
    let b = build_dir(&inv);
    let run = support::backup(b.path(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let c = run.component("haproxy");
    assert_eq!(c.status, Status::Ok);
    let broken = c.hosts.iter().find(|h| h.host == "broken").unwrap();
    assert_eq!(broken.status, Status::Skipped);
    assert_eq!(broken.role, "failed; next host tried");
    assert!(
        broken
            .errors
            .iter()
            .any(|e| e.message.contains("nothing to copy")),
        "{:?}",
        broken.errors
    );
    assert!(broken.entries.is_empty());
    let node3 = c.hosts.iter().find(|h| h.host == "node3").unwrap();
    assert_eq!(node3.status, Status::Ok);
    assert!(run.file("haproxy/node3/etc/haproxy/haproxy.cfg").is_file());
}

#[test]
fn manifest_records_whether_host_keys_were_checked() {
    let tb = common::testbed();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.manifest().host_key_checking, "known_hosts");
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "haproxy", "--insecure-skip-host-key-check"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.manifest().host_key_checking.starts_with("OFF"),
        "{:?}",
        run.manifest().host_key_checking
    );
    assert!(
        run.stderr().contains("host keys are NOT checked"),
        "{}",
        run.stderr()
    );
}

/// A database name holding `=` (or `host=`) is a name, not a connection string.
#[test]
fn postgresql_database_named_like_a_connection_string() {
    let tb = common::testbed();
    let db = format!("lsb port=1 dbname={}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("sudo")
            .args(["-u", "postgres", "psql", "-XqAt", "-v", "ON_ERROR_STOP=1"])
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("sudo")
                .args(["-u", "postgres", "psql", "-Xq", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{}\"", self.0))
                .status();
        }
    }
    psql(&format!("CREATE DATABASE \"{db}\""));
    let _drop = Drop_(db.clone());
    let run = support::backup(&tb.build_dir(), &["--only", "postgresql"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let dump = run.file(&format!("postgresql/node1/databases/{db}.dump"));
    let out = Command::new("pg_restore")
        .arg("-l")
        .arg(&dump)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}");
    assert!(
        listing.contains(&format!("dbname: {db}")),
        "the dump is of the database named {db:?}:\n{listing}"
    );
}

/// A stream that stalls (a command that sends part of its output, then nothing) fails after
/// `--idle-timeout` as `timeout`; it does not hold the other components back (they stream in
/// parallel and are kept), and the spool directory is left empty.
#[test]
fn stalled_stream_times_out_and_others_are_kept() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("stalls.yaml"),
        "name: stalls\ndescription: sends a little, then hangs\ngroups: [haproxy]\n\
         steps:\n  - name: dump\n    run: \"head -c 100000 /dev/zero; sleep 60; echo never\"\n    output: dump\n",
    )
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let dir = comps.path().to_string_lossy().into_owned();
    let spool_arg = spool.path().to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--components-dir",
            &dir,
            "--only",
            "stalls,postgresql,haproxy",
            "--idle-timeout",
            "3",
            "--spool-dir",
            &spool_arg,
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "the stalled command was waited for: {:?}",
        started.elapsed()
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let s = run.component("stalls");
    assert_eq!(s.status, Status::Failed);
    let f = &s.hosts[0].errors[0];
    assert_eq!(f.kind, lsbackup::archive::FailureKind::Timeout, "{f:?}");
    assert!(f.message.contains("no data for 3 s"), "{}", f.message);
    // nothing of the stalled stream is in the archive
    assert!(!run.file("stalls/node3/dump").exists());
    assert_eq!(run.component("postgresql").status, Status::Ok);
    assert_eq!(run.component("haproxy").status, Status::Ok);
    assert!(run.file("haproxy/node3/etc/haproxy/haproxy.cfg").is_file());
    // the spool never shows a file (anonymous, unlinked from the start)
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

/// At a terminal (util-linux `script` gives one, 80 columns): one line for the whole run above
/// the bars (components done of all), no timestamps, the summary once at the end, and nothing
/// drawn after the archive's path.
#[test]
fn a_terminal_shows_one_line_for_the_run_above_the_bars() {
    let tb = common::testbed();
    let target = tempfile::tempdir().unwrap();
    let words = [
        support::bin().to_string(),
        "backup".into(),
        "-b".into(),
        tb.build_dir().display().to_string(),
        "-t".into(),
        target.path().display().to_string(),
        "--known-hosts".into(),
        tb.known_hosts().display().to_string(),
        "--no-agent".into(),
        "--only".into(),
        "haproxy,postgresql".into(),
    ];
    let line = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("stty cols 80 rows 40; {line}"),
            "/dev/null",
        ])
        .env("HOME", target.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    // what the screen shows, escape sequences and carriage returns left out
    let screen = String::from_utf8(strip_ansi(raw.as_bytes())).unwrap();
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let overall: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(" all ") && l.contains("/2 components"))
        .collect();
    assert!(!overall.is_empty(), "no line for the whole run:\n{screen}");
    assert!(
        screen.contains("2 of 2 components ok"),
        "no summary line:\n{screen}"
    );
    assert!(
        !screen.contains(" INFO ") && !screen.contains("Z  INFO"),
        "log lines on a terminal:\n{screen}"
    );
    // after "next:" (and its folded continuation) only the archive's path: no bar drawn again
    // below the summary
    let tail: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("next: "))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && (!l.starts_with("  ") || l.contains(" @ ")))
        .collect();
    assert_eq!(tail.len(), 1, "after the summary:\n{screen}");
    assert!(tail[0].ends_with(".tar.zst"), "{screen}");
}

/// The text of a terminal transcript without its escape sequences (CSI, OSC) and carriage
/// returns: a redrawn line appears as each of its drawings.
fn strip_ansi(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0x1b if raw.get(i + 1) == Some(&b'[') => {
                i += 2;
                while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                    i += 1;
                }
                // the cursor moved: what follows is another line
                if raw
                    .get(i)
                    .is_some_and(|c| matches!(c, b'A' | b'B' | b'J' | b'K'))
                {
                    out.push(b'\n');
                }
                i += 1;
            }
            0x1b if raw.get(i + 1) == Some(&b']') => {
                while i < raw.len() && raw[i] != 0x07 {
                    i += 1;
                }
                i += 1;
            }
            b'\r' => {
                out.push(b'\n');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `-q` (before or after the command's name): a run that went well prints nothing on stderr,
/// only the archive's path on stdout; a partial run still shows its summary with the failure.
#[test]
fn quiet_runs_say_only_what_went_wrong() {
    let tb = common::testbed();
    let target = tempfile::tempdir().unwrap();
    let mut c = support::backup_command(&tb.build_dir(), target.path());
    c.args(["--only", "haproxy", "-q"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with(".tar.zst")
    );
    let out = Command::new(support::bin())
        .args(["-q", "backup", "--no-agent", "--only", "haproxy,postgresql"])
        .args(["--set", "postgresql.postgresql_port=1"])
        .arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .env("HOME", target.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("postgresql"), "{err}");
    assert!(err.contains("1 of 2 components ok"), "{err}");
}
