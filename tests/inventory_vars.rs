//! Real inventories carry Jinja in group_vars: a component takes only the variables it declares,
//! resolves the common Jinja subset in them, ignores everything else, and an unresolvable
//! declared variable fails only that component on that host. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::process::Command;

use lsbackup::archive::Status;

/// A build dir holding the test bed's inventory and `group_vars/all.yml` with `all_yml`.
fn build_dir(all_yml: &str) -> tempfile::TempDir {
    let tb = common::testbed();
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(tb.inventory(), d.path().join("inventory")).unwrap();
    std::fs::create_dir(d.path().join("group_vars")).unwrap();
    std::fs::write(d.path().join("group_vars/all.yml"), all_yml).unwrap();
    d
}

/// What real Ansible repositories keep in group_vars/all.yml, none of it used by lsbackup.
const UNRELATED: &str = r#"
home: "{{ lookup('env','HOME') }}"
motd: "{% if inventory_hostname == 'node1' %}primary{% else %}other{% endif %}"
deploy:
  releases: ["{{ query('inventory_hostnames', 'all') }}", 3]
  options: {keep: "{{ hostvars['node1'].ansible_host }}"}
"#;

fn plan(dir: &std::path::Path, only: &str) -> std::process::Output {
    Command::new(support::bin())
        .args(["plan", "--only", only, "-b"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn jinja_elsewhere_is_ignored_and_declared_vars_resolve() {
    let tb = common::testbed();
    let all = format!(
        "{UNRELATED}\
         etc_root: \"{{{{ '/ETC' | lower }}}}\"\n\
         haproxy_config_dir: \"{{{{ etc_root }}}}/haproxy\"\n\
         haproxy_ssl_dir: \"{{{{ custom_ssl | default('/etc/ssl/lsb-none', true) }}}}\"\n\
         admin: {user}\n\
         ansible_user: \"{{{{ admin }}}}{{# group_vars beats [all:vars] #}}\"\n",
        user = tb.ssh_user()
    );
    let b = build_dir(&all);
    let out = plan(b.path(), "postgresql,haproxy");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(
        stdout.contains("config: copy /etc/haproxy /etc/ssl/lsb-none"),
        "{stdout}"
    );
    assert!(stdout.contains("postgresql — "), "{stdout}");

    // The backup uses the resolved values (and the resolved ansible_user to connect).
    let run = support::backup(b.path(), &["--only", "haproxy"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.component("haproxy").status, Status::Ok);
    assert!(run.file("haproxy/node3/etc/haproxy/haproxy.cfg").is_file());
}

#[test]
fn unsupported_jinja_in_a_declared_var_fails_only_that_component() {
    let all = format!("{UNRELATED}haproxy_ssl_dir: \"{{{{ home }}}}/ssl\"\n");
    let b = build_dir(&all);
    let cause = "variable haproxy_ssl_dir (from \
                group_vars/all.yml) uses home (from group_vars/all.yml), which \
                {{ lookup('env','HOME') }}: lookup() is not supported; lsbackup resolves only \
                {{ var }}, default(), string, int, lower, upper, trim, {% raw %} and \
                {# comments #} in inventory values: give it a literal value (or --set \
                haproxy.haproxy_ssl_dir=VALUE)";
    let want = format!("component haproxy, host node3: {cause}");

    // plan: the whole plan is printed, the one error line on stderr, exit 2 (partly usable).
    let out = plan(b.path(), "postgresql,haproxy");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lsbackup: error:"))
        .collect();
    assert_eq!(errors, [format!("lsbackup: error: {want}")], "{stderr}");
    assert!(stdout.contains("select primary"), "{stdout}");
    assert!(
        stdout.contains(&format!("error (nothing runs here): {cause}")),
        "{stdout}"
    );

    // backup: PostgreSQL is backed up, HAProxy fails with that line and ran nothing.
    let run = support::backup(b.path(), &["--only", "postgresql,haproxy"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_eq!(run.component("postgresql").status, Status::Ok);
    let h = run.component("haproxy");
    assert_eq!(h.status, Status::Failed);
    assert!(
        run.errors_of("haproxy")
            .contains(&format!("node3: haproxy: variables: {cause}")),
        "{}",
        run.errors_of("haproxy")
    );
    assert!(h.hosts.iter().all(|x| x.commands.is_empty()));
    assert!(!run.file("haproxy/node3").exists());

    // --set gives the variable a value: everything runs.
    let out = Command::new(support::bin())
        .args(["plan", "--only", "haproxy", "--set", "home=/root", "-b"])
        .arg(b.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/root/ssl"));
}

/// An inventory value is data wherever it lands: host vars holding shell syntax reach
/// PostgreSQL's programs as one argument each, and nothing they spell is run.
#[test]
fn hostile_inventory_values_run_nothing() {
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("MARK");
    // world-writable: the remote side runs as root or postgres
    std::fs::set_permissions(
        marks.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let m = mark.display();
    let all = format!(
        "postgresql_port: \"5432; touch {m}; $(touch {m}) `touch {m}`\"\n\
         postgresql_user: \"postgres\"\n\
         haproxy_config_dir: \"/etc/haproxy\n$(touch {m})\"\n"
    );
    let b = build_dir(&all);
    let run = support::backup(b.path(), &["--only", "postgresql,haproxy"]);
    assert!(!mark.exists(), "a value ran as code:\n{}", run.stderr());
    // The port is one (bad) argument: psql refuses it, one clear line, nothing else lost.
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let errors = run.errors_of("postgresql");
    assert!(errors.contains("node1: postgresql"), "{errors}");
    assert!(
        run.component("haproxy").status != Status::Failed || !run.errors_of("haproxy").is_empty(),
        "haproxy reports what happened"
    );
}
