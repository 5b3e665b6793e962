//! The `haproxy` component against the test bed's real HAProxy 2.6 (`/etc/haproxy/haproxy.cfg`,
//! its certificate in `/etc/ssl/haproxy`), and against a configuration of this test's own whose
//! certificate paths hold spaces, quotes and `$(...)`: checked by the real `haproxy -c` (which
//! loads every certificate it names), then backed up through node3. Needs `tests/testbed/up.sh`.
//!
//! More HAProxy behaviour (byte-identical config, formats, unreachable hosts, the next host
//! tried) is in tests/backup_core.rs and tests/inventory_vars.rs.

mod common;
mod support;

use std::path::Path;
use std::process::Command;

use lsbackup::archive::Status;

const NODE: &str = "node3";

#[test]
fn testbed_config_certificate_and_version() {
    let tb = common::testbed();
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let h = &run.component("haproxy").hosts[0];
    assert_eq!(h.status, Status::Ok);
    assert_eq!(
        run.read(&format!("haproxy/{NODE}/etc/haproxy/haproxy.cfg")),
        std::fs::read(tb.var("LSB_HAPROXY_CFG")).unwrap()
    );
    let cert = tb.var("LSB_HAPROXY_CERT").trim_start_matches('/');
    assert_eq!(
        run.read(&format!("haproxy/{NODE}/{cert}")),
        std::fs::read(tb.var("LSB_HAPROXY_CERT")).unwrap()
    );
    let v = h.versions.get("haproxy").cloned().unwrap_or_default();
    assert!(v.starts_with("2.6."), "{:?}", h.versions);
    // the configuration was read and parsed by lsbackup: no grep/awk on the host
    assert!(
        !h.commands
            .iter()
            .any(|c| c.command.contains("grep") || c.command.contains("awk")),
        "{:#?}",
        h.commands
    );
    assert!(
        h.commands
            .iter()
            .any(|c| c.command == format!("cat {}", tb.var("LSB_HAPROXY_CFG"))),
        "{:#?}",
        h.commands
    );
    // the base dirs of the test bed's global section hold nothing it names: no notes about them
    assert!(h.flags.is_empty(), "{:?}", h.flags);
}

fn openssl_pem(dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=lsbackup-haproxy-test"])
        .args(["-addext", "subjectAltName=DNS:a.example.com"])
        .arg("-keyout")
        .arg(dir.join("k"))
        .arg("-out")
        .arg(dir.join("c"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pem = std::fs::read(dir.join("c")).unwrap();
    pem.extend(std::fs::read(dir.join("k")).unwrap());
    pem
}

#[test]
fn certificate_paths_with_spaces_and_shell_syntax_are_backed_up() {
    let tb = common::testbed();
    let dir = tempfile::Builder::new()
        .prefix("lsb-haproxy")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let mark = support::unique("lsb-haproxy-pwned");
    let certs = d.join("my certs");
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::fs::create_dir_all(&certs).unwrap();
    let pem = openssl_pem(d);
    let site = certs.join("site one.pem");
    let listed = certs.join("listed$(id).pem");
    let ca = d.join(format!("ca $(touch {mark}).pem"));
    let list = certs.join("list one.txt");
    std::fs::write(&site, &pem).unwrap();
    std::fs::write(&listed, &pem).unwrap();
    std::fs::write(&ca, std::fs::read(d.join("c")).unwrap()).unwrap();
    // crt-list lines are split at blanks by HAProxy: the crt-list's own path has a space, the
    // certificate it names has shell syntax
    std::fs::write(
        &list,
        "# test\nlisted$(id).pem [ssl-min-ver TLSv1.2] a.example.com\n",
    )
    .unwrap();
    let cfg = d.join("etc/haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    crt-base \"{certs}\"\n    ca-base {base}\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
             frontend f\n    bind 127.0.0.1:1 ssl crt \"site one.pem\" ca-file 'ca $(touch {mark}).pem' verify optional\n\
             \x20   bind 127.0.0.1:2 ssl crt-list {list_escaped}\n    default_backend b\n\
             backend b\n    server s 127.0.0.1:9 ssl ca-file '{ca_abs}' verify required # crt /not/this.pem\n",
            certs = certs.display(),
            base = d.display(),
            list_escaped = list.display().to_string().replace(' ', "\\ "),
            ca_abs = ca.display(),
        ),
    )
    .unwrap();
    // the real HAProxy accepts this configuration and loads every certificate it names
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("haproxy");
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let conf = format!("haproxy.haproxy_config_dir={}", d.join("etc").display());
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy", "--set", &conf]);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("haproxy")
    );
    for f in [&site, &listed, &ca, &list, &cfg] {
        let entry = format!(
            "haproxy/{NODE}/{}",
            f.display().to_string().trim_start_matches('/')
        );
        assert_eq!(run.read(&entry), std::fs::read(f).unwrap(), "{entry}");
    }
    // nothing named in a comment was looked for; the paths stayed data on the host
    let h = &run.component("haproxy").hosts[0];
    assert!(
        !h.flags.iter().any(|f| f.contains("/not/this.pem")),
        "{:?}",
        h.flags
    );
    for home in ["/", "/root", "/home/operations", "/tmp"] {
        assert!(
            !Path::new(home).join(&mark).exists(),
            "$(touch) ran in {home}"
        );
    }
}

#[test]
fn a_missing_referenced_certificate_is_noted() {
    let tb = common::testbed();
    let dir = tempfile::Builder::new()
        .prefix("lsb-haproxy")
        .tempdir_in("/tmp")
        .unwrap();
    let gone = dir.path().join("gone dir/x.pem");
    std::fs::write(
        dir.path().join("haproxy.cfg"),
        format!("frontend f\n    bind :1 ssl crt \"{}\"\n", gone.display()),
    )
    .unwrap();
    let conf = format!("haproxy.haproxy_config_dir={}", dir.path().display());
    let run = support::backup(&tb.build_dir(), &["--only", "haproxy", "--set", &conf]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let flags = run.flags_of("haproxy");
    assert!(
        flags.contains(&format!("not found on host: {}", gone.display())),
        "{flags}"
    );
    assert!(
        run.file(&format!(
            "haproxy/{NODE}/{}/haproxy.cfg",
            dir.path().display().to_string().trim_start_matches('/')
        ))
        .is_file()
    );
}
