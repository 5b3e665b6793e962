//! `lsbackup restore` on the real test bed: PostgreSQL 15, HAProxy 2.6 and Alertmanager. Each
//! test backs up, changes or destroys what was backed up, restores, and compares with what was
//! there before. Also: the dry run changes nothing, no terminal and no --yes changes nothing,
//! hosts missing from the current inventory and hostile archives are refused before any host is
//! contacted. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use support::{archive_of, kept_beside as kept_copies, transcript as text};

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tests that back up or change HAProxy's files take turns (the test threads of this file
/// run at once).
static HAPROXY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn haproxy_turn() -> std::sync::MutexGuard<'static, ()> {
    HAPROXY.lock().unwrap_or_else(|e| e.into_inner())
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("sudo")
        .args([
            "-u",
            "postgres",
            "psql",
            "-XqAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
        ])
        .arg("-c")
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Rows of every table of the test bed's databases, with a checksum of their content.
fn pg_state() -> Vec<String> {
    let mut out = Vec::new();
    for (db, table) in [
        ("shop", "customers"),
        ("shop", "orders"),
        ("inventory_db", "items"),
    ] {
        out.push(format!(
            "{db}.{table}: {}",
            psql(
                db,
                &format!("SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t")
            )
        ));
    }
    out
}

#[test]
fn postgresql_databases_dropped_and_changed_come_back() {
    let tb = common::testbed();
    let before = pg_state();
    let run = support::backup(&tb.build_dir(), &["--only", "postgresql"]);
    let archive = archive_of(&run);

    // Destroy one database, change another, and the server's configuration.
    let conf = PathBuf::from(format!("{}/postgresql.conf", tb.var("LSB_PG_CONF_DIR")));
    let conf_before = std::fs::read(&conf).unwrap();
    let mut conf_changed = conf_before.clone();
    conf_changed.extend_from_slice(b"\n# changed after the backup\nwork_mem = '7MB'\n");
    std::fs::write(&conf, &conf_changed).unwrap();
    psql("postgres", "DROP DATABASE inventory_db WITH (FORCE)");
    psql("shop", "DELETE FROM orders WHERE id % 2 = 0");
    psql("shop", "UPDATE customers SET name = 'changed'");
    let exists = || {
        psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'inventory_db'",
        ) == "1"
    };
    let shop = || {
        psql(
            "shop",
            "SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM orders t",
        )
    };
    let shop_changed = shop();
    assert!(!exists());

    // The dry run says what it would do and changes nothing.
    let dry = support::restore(&tb.build_dir(), &archive, &["--dry-run"]);
    let t = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{t}");
    assert!(t.contains("would create database \"inventory_db\""), "{t}");
    assert!(
        t.contains("left alone, they exist: \"postgres\", \"shop\" (--yes replaces them)"),
        "{t}"
    );
    assert!(t.contains("dry run: nothing was changed"), "{t}");
    assert!(!t.contains("left out: postgresql"), "{t}");
    assert!(!exists());
    assert_eq!(shop(), shop_changed);

    // No terminal and no --yes: refused, nothing changed.
    let no = support::restore(&tb.build_dir(), &archive, &["--only", "postgresql"]);
    assert_eq!(no.status.code(), Some(1), "{}", text(&no));
    assert!(text(&no).contains("no terminal to ask on"), "{}", text(&no));
    assert!(!exists());
    assert_eq!(shop(), shop_changed);

    // --yes: the missing database is created, the existing one replaced.
    let yes = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "postgresql", "--yes"],
    );
    let t = text(&yes);
    assert_eq!(yes.status.code(), Some(0), "{t}");
    assert!(t.contains("create database \"inventory_db\""), "{t}");
    assert!(t.contains("drop database \"shop\""), "{t}");
    assert!(t.contains("restore complete: 1 of 1 restored"), "{t}");
    assert_eq!(pg_state(), before);
    // The configuration is back, the changed one kept beside it, and the server reloaded it.
    let restored_conf = std::fs::read(&conf).unwrap();
    let kept = kept_copies(&conf);
    for k in &kept {
        std::fs::remove_file(k).unwrap();
    }
    if restored_conf != conf_before {
        std::fs::write(&conf, &conf_before).unwrap();
    }
    assert_eq!(restored_conf, conf_before, "{t}");
    assert_eq!(kept.len(), 1, "{t}");
    assert!(
        t.contains("reloaded the configuration (pg_reload_conf())"),
        "{t}"
    );
    assert_eq!(psql("postgres", "SHOW work_mem"), "4MB");
    // The roles of globals.sql that exist were left as they are (and said so).
    assert!(t.contains("statement(s) of globals.sql failed"), "{t}");
}

#[test]
fn haproxy_config_and_certificate_come_back_and_haproxy_reloads() {
    let _turn = haproxy_turn();
    let tb = common::testbed();
    let cfg = PathBuf::from(tb.var("LSB_HAPROXY_CFG"));
    let cert = PathBuf::from(tb.var("LSB_HAPROXY_CERT"));
    let cfg_before = std::fs::read(&cfg).unwrap();
    let cert_before = std::fs::read(&cert).unwrap();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    let archive = archive_of(&run);
    let pid_before = std::fs::read_to_string("/run/haproxy-lsbackup-testbed.pid").unwrap();

    // A local user's own haproxy (the real binary, their config and pid file): its -p and -f must
    // not reach the root command that reloads HAProxy.
    let evil = tempfile::tempdir().unwrap();
    let evil_cfg = evil.path().join("evil.cfg");
    let evil_pid = evil.path().join("evil.pid");
    std::fs::write(
        &evil_cfg,
        "global\n    daemon\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend f\n    bind 127.0.0.1:18481\n    http-request return status 200\n",
    )
    .unwrap();
    Command::new("chown")
        .arg("-R")
        .arg("nobody")
        .arg(evil.path())
        .status()
        .unwrap();
    let started = Command::new("runuser")
        .args(["-u", "nobody", "--", "haproxy", "-D", "-f"])
        .arg(&evil_cfg)
        .arg("-p")
        .arg(&evil_pid)
        .status()
        .unwrap();
    assert!(started.success());
    struct Kill(PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Ok(p) = std::fs::read_to_string(&self.0) {
                for pid in p.lines() {
                    let _ = Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
    }
    let _kill = Kill(evil_pid.clone());

    // A changed config (still valid) and a lost certificate.
    let mut changed = cfg_before.clone();
    changed.extend_from_slice(b"\n# changed after the backup\n");
    std::fs::write(&cfg, &changed).unwrap();
    std::fs::remove_file(&cert).unwrap();

    let out = support::restore(&tb.build_dir(), &archive, &["--only", "haproxy", "--yes"]);
    let t = text(&out);
    // put the certificate back whatever happened, for the other tests
    if !cert.exists() {
        std::fs::write(&cert, &cert_before).unwrap();
    }
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(std::fs::read(&cfg).unwrap(), cfg_before);
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
    let kept = kept_copies(&cfg);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), changed);
    for k in kept {
        std::fs::remove_file(k).unwrap();
    }
    assert!(t.contains(&format!("create {}", cert.display())), "{t}");
    assert!(t.contains("checked the configuration (haproxy -c"), "{t}");
    assert!(
        t.contains("-p /run/haproxy-lsbackup-testbed.pid -D -sf "),
        "{t}"
    );
    assert!(!t.contains("evil"), "the user's haproxy was left out: {t}");
    // a new process took over (soft restart) and answers
    let pid_after = std::fs::read_to_string("/run/haproxy-lsbackup-testbed.pid").unwrap();
    assert_ne!(pid_before.trim(), pid_after.trim());
    let url = tb.var("LSB_HAPROXY_URL");
    let mut ok = false;
    for _ in 0..50 {
        let c = Command::new("curl")
            .args(["-ksf", "--max-time", "2"])
            .arg(format!("{url}/healthz"))
            .output()
            .unwrap();
        if c.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "HAProxy answers after the reload");

    // Restoring again: everything unchanged, nothing reloaded.
    let again = support::restore(&tb.build_dir(), &archive, &["--only", "haproxy", "--yes"]);
    let t = text(&again);
    assert_eq!(again.status.code(), Some(0), "{t}");
    assert!(t.contains("nothing to reload"), "{t}");
    assert!(kept_copies(&cfg).is_empty());

    haproxy_config_refused_by_haproxy_is_rolled_back();
}

/// Part of the test above (both change HAProxy's files: not at the same time).
fn haproxy_config_refused_by_haproxy_is_rolled_back() {
    let tb = common::testbed();
    let cfg = PathBuf::from(tb.var("LSB_HAPROXY_CFG"));
    let good = std::fs::read(&cfg).unwrap();
    // A backup of a broken configuration (built by hand from a real backup: the archive's
    // config replaced, manifest updated), restored over the good one: haproxy -c refuses it.
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    let _ = archive_of(&run);
    let x = run.extracted.as_ref().unwrap().path();
    let bad = b"global\n    this-is-not-a-keyword\n".to_vec();
    let entry = "haproxy/node3/etc/haproxy/haproxy.cfg";
    std::fs::write(x.join(entry), &bad).unwrap();
    let mpath = x.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    use sha2::Digest;
    for h in m["components"][0]["hosts"].as_array_mut().unwrap() {
        for e in h["entries"].as_array_mut().unwrap() {
            if e["path"] == entry {
                e["size"] = bad.len().into();
                e["sha256"] = hex::encode(sha2::Sha256::digest(&bad)).into();
            }
        }
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let recorded: Vec<String> = m["components"][0]["hosts"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let work = tempfile::tempdir().unwrap();
    let crafted = work.path().join("lsbackup-20260101T000000Z.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&crafted)
        .arg("-C")
        .arg(x)
        .arg("--no-recursion")
        .args(&recorded)
        .arg("manifest.json")
        .status()
        .unwrap();
    assert!(st.success());
    let out = support::restore(&tb.build_dir(), &crafted, &["--only", "haproxy", "--yes"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("haproxy -c refused the restored configuration"),
        "{t}"
    );
    assert!(t.contains("put back the previous"), "{t}");
    assert_eq!(std::fs::read(&cfg).unwrap(), good);
    assert!(kept_copies(&cfg).is_empty(), "the kept copy went back");
}

#[test]
fn alertmanager_config_template_and_silence_come_back() {
    let tb = common::testbed();
    let url = tb.var("LSB_ALERTMANAGER_URL");
    let config = PathBuf::from(tb.var("LSB_ALERTMANAGER_CONFIG"));
    let tmpl_dir = PathBuf::from(tb.var("LSB_ALERTMANAGER_TEMPLATES"));
    let tmpl = std::fs::read_dir(&tmpl_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tmpl"))
        .unwrap();
    let config_before = std::fs::read(&config).unwrap();
    let tmpl_before = std::fs::read(&tmpl).unwrap();
    // A silence active at backup time.
    let comment = format!("lsbackup restore test {}", std::process::id());
    let now = jiff::Timestamp::now();
    let body = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "LsbackupRestore", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_string(),
        "endsAt": (now + jiff::SignedDuration::from_secs(3600)).to_string(),
        "createdBy": "lsbackup tests",
        "comment": comment,
    });
    let created = Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
        ])
        .arg(body.to_string())
        .arg(format!("{url}/api/v2/silences"))
        .output()
        .unwrap();
    assert!(created.status.success());
    let id: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = id["silenceID"].as_str().unwrap().to_string();

    let run = support::backup(&tb.build_dir(), &["--only", "alertmanager"]);
    let archive = archive_of(&run);

    // The silence expired, the template lost, the config changed (still valid).
    let del = Command::new("curl")
        .args(["-fsS", "-X", "DELETE"])
        .arg(format!("{url}/api/v2/silence/{id}"))
        .status()
        .unwrap();
    assert!(del.success());
    std::fs::remove_file(&tmpl).unwrap();
    let mut changed = config_before.clone();
    changed.extend_from_slice(b"\n# changed after the backup\n");
    std::fs::write(&config, &changed).unwrap();

    let out = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "alertmanager", "--yes"],
    );
    let t = text(&out);
    if !tmpl.exists() {
        std::fs::write(&tmpl, &tmpl_before).unwrap();
    }
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(std::fs::read(&config).unwrap(), config_before);
    assert_eq!(std::fs::read(&tmpl).unwrap(), tmpl_before);
    assert!(t.contains("reloaded Alertmanager"), "{t}");
    assert!(
        t.contains("create silence {alertname=\"LsbackupRestore\"}"),
        "{t}"
    );
    for k in kept_copies(&config) {
        assert_eq!(std::fs::read(&k).unwrap(), changed);
        std::fs::remove_file(k).unwrap();
    }
    // The silence is active again (a new one with the same matchers, end and comment).
    let list = Command::new("curl")
        .args(["-fsS"])
        .arg(format!("{url}/api/v2/silences"))
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let again: Vec<&serde_json::Value> = list
        .iter()
        .filter(|s| s["comment"] == comment.as_str() && s["status"]["state"] == "active")
        .collect();
    assert_eq!(again.len(), 1, "{list:#?}");
    let new_id = again[0]["id"].as_str().unwrap().to_string();
    let _ = Command::new("curl")
        .args(["-fsS", "-X", "DELETE"])
        .arg(format!("{url}/api/v2/silence/{new_id}"))
        .status();
}

#[test]
fn a_host_gone_from_the_inventory_is_named_and_nothing_is_contacted() {
    let _turn = haproxy_turn();
    let tb = common::testbed();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    let archive = archive_of(&run);
    // The current inventory where node3 (HAProxy's host) was replaced by node9.
    let inv = std::fs::read_to_string(tb.inventory()).unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("inventory"), inv.replace("node3", "node9")).unwrap();
    let out = support::restore(d.path(), &archive, &["--yes"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("haproxy: host node3 (recorded by the backup, address"),
        "{t}"
    );
    assert!(t.contains("no host was contacted"), "{t}");
}

#[test]
fn hostile_archive_is_refused_before_any_host() {
    let _turn = haproxy_turn();
    let tb = common::testbed();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    let _ = archive_of(&run);
    let x = run.extracted.as_ref().unwrap().path();
    // An entry the manifest does not record, aimed at /etc/cron.d through a `..` path.
    let work = tempfile::tempdir().unwrap();
    let crafted = work.path().join("lsbackup-20260101T000000Z.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&crafted)
        .arg("-C")
        .arg(x)
        .arg("haproxy")
        .arg("manifest.json")
        .status()
        .unwrap();
    assert!(st.success());
    // append an unrecorded entry after the manifest
    let evil = work.path().join("evil");
    std::fs::write(&evil, "* * * * * root touch /tmp/pwned\n").unwrap();
    let st = Command::new("tar")
        .arg("-rf")
        .arg(&crafted)
        .arg("-C")
        .arg(work.path())
        .arg("--transform=s,^evil,haproxy/node3/../../etc/cron.d/evil,")
        .arg("evil")
        .status()
        .unwrap();
    assert!(st.success());
    let gz = work.path().join("lsbackup-20260101T000000Z.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg("gzip -c \"$1\" > \"$2\"")
        .arg("sh")
        .arg(&crafted)
        .arg(&gz)
        .status()
        .unwrap();
    assert!(st.success());
    let out = support::restore(&tb.build_dir(), &gz, &["--yes"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("restore refused; no host was contacted"), "{t}");
    assert!(!Path::new("/etc/cron.d/evil").exists());
}

fn etcdctl(endpoint_args: &[String], args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(endpoint_args)
        .args(args)
        .output()
        .expect("running etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Keys and values under `prefix`, as etcdctl prints them (key line, value line).
fn etcd_pairs(endpoint_args: &[String], prefix: &str) -> Vec<String> {
    etcdctl(endpoint_args, &["get", "--prefix", prefix])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn etcd_snapshot_restored_into_a_new_data_dir_and_the_static_pod_switched_to_it() {
    let tb = common::testbed();
    let live: Vec<String> = vec![
        format!("--endpoints={}", tb.var("LSB_ETCD_ENDPOINT")),
        format!("--cacert={}", tb.var("LSB_ETCD_CACERT")),
        format!("--cert={}", tb.var("LSB_ETCD_CERT")),
        format!("--key={}", tb.var("LSB_ETCD_KEY")),
    ];
    let prefix = tb.var("LSB_ETCD_KEY_PREFIX");
    let before = etcd_pairs(&live, prefix);
    assert!(before.len() >= 4, "{before:?}");
    let manifest = PathBuf::from("/etc/kubernetes/manifests/etcd.yaml");
    let manifest_before = std::fs::read(&manifest).unwrap();
    let old_dir = tb
        .var("LSB_ETCD_DATA_DIR")
        .trim_end_matches('/')
        .to_string();

    let run = support::backup(&tb.build_dir(), &["--only", "kubernetes"]);
    let archive = archive_of(&run);
    // Keys lost after the backup (put back at the end: the live etcd is shared by other tests).
    let lost_key = before[0].clone();
    let lost_value = before[1].clone();
    etcdctl(&live, &["del", &lost_key]);

    let out = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "kubernetes", "--yes"],
    );
    let t = text(&out);
    // whatever happened: the live etcd gets its key back
    etcdctl(&live, &["put", &lost_key, &lost_value]);
    // Where the restore put the data: the manifest's etcd-data hostPath now.
    let switched = std::fs::read_to_string(&manifest).unwrap();
    let new_dir = switched
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("path: ")
                .filter(|p| p.starts_with(&format!("{old_dir}-lsbackup-")))
        })
        .map(str::to_string);
    let kept_dir = std::fs::read_dir("/etc/kubernetes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .starts_with("/etc/kubernetes/manifests.lsbackup-")
        });
    // Put the test bed back before asserting.
    std::fs::write(&manifest, &manifest_before).unwrap();
    let cleanup = |new_dir: &Option<String>| {
        if let Some(d) = new_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if let Some(k) = &kept_dir {
            let _ = std::fs::remove_dir_all(k);
        }
    };
    if out.status.code() != Some(0) || new_dir.is_none() {
        cleanup(&new_dir);
        panic!("restore failed or the manifest was not switched:\n{t}\n{switched}");
    }
    let new_dir_s = new_dir.clone().unwrap();
    assert!(t.contains("restore the etcd snapshot into"), "{t}");
    assert!(t.contains("switch the etcd-data hostPath"), "{t}");
    // Only the hostPath line changed; the previous manifest kept outside the manifest dir.
    assert_eq!(
        switched,
        String::from_utf8_lossy(&manifest_before).replace(
            &format!("path: {old_dir}\n"),
            &format!("path: {new_dir_s}\n")
        )
    );
    let kept = kept_dir.clone().expect("the previous manifest kept");
    let kept_files: Vec<_> = std::fs::read_dir(&kept).unwrap().collect();
    assert_eq!(kept_files.len(), 1);
    assert!(
        std::fs::read_dir("/etc/kubernetes/manifests")
            .unwrap()
            .all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("lsbackup")),
        "nothing kubelet would run was left in the manifest dir"
    );
    // What kubelet would do: etcd on the new data dir (own ports here, the live one runs on).
    let mut etcd = Command::new("etcd")
        .arg("--name=node2")
        .arg(format!("--data-dir={new_dir_s}"))
        .args([
            "--listen-client-urls=http://127.0.0.1:23791",
            "--advertise-client-urls=http://127.0.0.1:23791",
            "--listen-peer-urls=http://127.0.0.1:23801",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let restored_ep = vec!["--endpoints=http://127.0.0.1:23791".to_string()];
    let mut restored = Vec::new();
    for _ in 0..100 {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(&restored_ep)
            .args(["get", "--prefix", prefix])
            .output()
            .unwrap();
        if o.status.success() {
            restored = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    cleanup(&new_dir);
    assert_eq!(
        restored, before,
        "the restored etcd holds the keys of the backup"
    );
    // The live etcd (old data dir) was not touched by the restore.
    assert_eq!(etcd_pairs(&live, prefix), before);
}

/// Files (relative path, content) under `dir`, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Directories `DIR.lsbackup-*` beside `dir` (kept by a restore), removed.
fn remove_kept_dirs(dir: &Path) -> usize {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let mut n = 0;
    for e in std::fs::read_dir(dir.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{name}.lsbackup-"))
        {
            std::fs::remove_dir_all(&p).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn persistent_volume_data_comes_back_on_its_node_hostile_path_included() {
    let tb = common::testbed();
    // The test bed's k8s inventory with node4 (the worker) and node names, as in
    // tests/components_kubernetes_volumes.rs.
    let base =
        std::fs::read_to_string(Path::new(tb.var("LSB_K8S_BUILD_DIR")).join("inventory")).unwrap();
    let all_vars = &base[base.find("[all:vars]").unwrap()..];
    let inv = format!(
        "[kubernetes_master]\nnode2 ansible_host={} kubeconfig={}\n\n\
         [kubernetes_node]\nnode1 ansible_host={}\nnode3 ansible_host={} kubernetes_node_name=node3\n\
         {} ansible_host={}\n\n{all_vars}",
        tb.host_of("node2"),
        tb.var("LSB_KUBECONFIG_WORKERS"),
        tb.host_of("node1"),
        tb.host_of("node3"),
        tb.var("LSB_WORKER_NODE"),
        tb.var("LSB_WORKER_HOST"),
    );
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("inventory"), inv).unwrap();
    let dirs: Vec<PathBuf> = [
        "LSB_K8S_PV_LOCAL_DIR",
        "LSB_K8S_PV_HOSTPATH_DIR",
        "LSB_K8S_PV_HOSTILE_DIR",
        "LSB_K8S_PV_WORKER_DIR",
    ]
    .iter()
    .map(|v| PathBuf::from(tb.var(v)))
    .collect();
    let before: Vec<_> = dirs.iter().map(|d| tree(d)).collect();
    assert!(before.iter().all(|t| !t.is_empty()), "{before:?}");
    let run = support::backup(build.path(), &["--only", "kubernetes_volumes"]);
    let archive = archive_of(&run);

    // Data lost and changed after the backup.
    let first = dirs[0].join(&before[0][0].0);
    std::fs::remove_file(&first).unwrap();
    std::fs::write(dirs[1].join("added-after-the-backup"), b"x").unwrap();
    let out = support::restore(
        build.path(),
        &archive,
        &["--only", "kubernetes_volumes", "--yes"],
    );
    let t = text(&out);
    let after: Vec<_> = dirs.iter().map(|d| tree(d)).collect();
    let kept: Vec<usize> = dirs.iter().map(|d| remove_kept_dirs(d)).collect();
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(after, before, "{t}");
    assert_eq!(kept, vec![1, 1, 1, 1], "{t}");
    assert!(t.contains("replace directory"), "{t}");
    assert!(t.contains("see the restored data once they restart"), "{t}");
    assert!(!Path::new(tb.var("LSB_K8S_PV_MARKER")).exists());
}

/// `lsbackup restore ...` on a terminal (util-linux `script` gives it one), `answer` typed.
fn restore_on_a_terminal(build: &Path, archive: &Path, args: &[&str], answer: &str) -> String {
    use std::io::Write;
    let tb = common::testbed();
    let home = tempfile::tempdir().unwrap();
    let mut words: Vec<String> = vec![
        support::bin().to_string(),
        "restore".into(),
        archive.display().to_string(),
        "-b".into(),
        build.display().to_string(),
        "--known-hosts".into(),
        tb.known_hosts().display().to_string(),
        "--no-agent".into(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    let line = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // typed once the question is on the screen (script forwards it to the terminal)
    std::thread::sleep(std::time::Duration::from_secs(3));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    text(&out)
}

#[test]
fn on_a_terminal_the_restore_is_shown_then_confirmed() {
    let _turn = haproxy_turn();
    let tb = common::testbed();
    let cfg = PathBuf::from(tb.var("LSB_HAPROXY_CFG"));
    let good = std::fs::read(&cfg).unwrap();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    let archive = archive_of(&run);
    let mut changed = good.clone();
    changed.extend_from_slice(b"\n# changed after the backup (terminal test)\n");
    std::fs::write(&cfg, &changed).unwrap();

    let no = restore_on_a_terminal(&tb.build_dir(), &archive, &["--only", "haproxy"], "n\n");
    assert!(
        no.contains("What this restore would do (nothing is changed yet):"),
        "{no}"
    );
    assert!(
        no.contains("would replace /etc/haproxy/haproxy.cfg"),
        "{no}"
    );
    assert!(no.contains("Restore now?"), "{no}");
    assert!(no.contains("nothing was changed"), "{no}");
    assert_eq!(std::fs::read(&cfg).unwrap(), changed);

    let yes = restore_on_a_terminal(&tb.build_dir(), &archive, &["--only", "haproxy"], "y\n");
    let restored = std::fs::read(&cfg).unwrap();
    for k in kept_copies(&cfg) {
        std::fs::remove_file(k).unwrap();
    }
    if restored != good {
        std::fs::write(&cfg, &good).unwrap();
    }
    assert!(yes.contains("restore complete: 1 of 1 restored"), "{yes}");
    assert_eq!(restored, good);
}
