//! The inventory parser against real Ansible.
//!
//! For every inventory in `fixtures/inventories/` (each top-level file is an inventory; each
//! sub-directory is a build directory whose inventory `Inventory::discover` finds, with its
//! `group_vars/`/`host_vars/`), runs `ansible-inventory -i SOURCE --list` and compares its JSON
//! with `Inventory::load(SOURCE).to_ansible_list()`: as JSON values (object key order does not
//! matter, list order does), and byte for byte against `to_ansible_list_json()`.
//!
//! `ansible-inventory` is taken from `$LSB_ANSIBLE_INVENTORY`, else `PATH`, else
//! `/opt/lsbackup-ansible/bin/ansible-inventory`. Without it the test fails: run
//! `tests/testbed/ansible.sh` (installs ansible-core from PyPI into /opt/lsbackup-ansible).
//!
//! `fixtures/inventories-malformed/` holds broken inventories; each starts with
//! `# expect: LINE: TEXT`, and loading must fail with `FILE:LINE: ...TEXT...` (and
//! `ansible-inventory` must refuse it as well).

use std::path::{Path, PathBuf};
use std::process::Command;

use lsbackup::inventory::{Inventory, InventoryError, StrictHostKeyChecking};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn ansible_inventory() -> PathBuf {
    if let Some(p) = std::env::var_os("LSB_ANSIBLE_INVENTORY") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("ansible-inventory");
            if p.is_file() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/opt/lsbackup-ansible/bin/ansible-inventory");
    if p.is_file() {
        return p;
    }
    panic!(
        "ansible-inventory not found (LSB_ANSIBLE_INVENTORY, PATH, /opt/lsbackup-ansible): run \
         tests/testbed/ansible.sh to install ansible-core, then rerun the tests"
    );
}

/// Run `ansible-inventory -i source --list` from an empty directory (Ansible also reads
/// `group_vars/` beside the "playbook", i.e. the current directory) with unparsable sources
/// made fatal.
fn ansible_list(bin: &Path, source: &Path) -> String {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin)
        .arg("-i")
        .arg(source)
        .arg("--list")
        .current_dir(cwd.path())
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
        .env("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
        .env("ANSIBLE_LOCAL_TEMP", cwd.path())
        .env("ANSIBLE_NOCOLOR", "1")
        .env_remove("ANSIBLE_CONFIG")
        .env_remove("ANSIBLE_INVENTORY")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "ansible-inventory failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The inventory sources of the corpus: top-level files, and the discovered inventory of each
/// sub-directory.
fn corpus() -> Vec<PathBuf> {
    let dir = fixtures().join("inventories");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/inventories")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|p| {
            if p.is_dir() {
                Inventory::discover(&p, None)
                    .unwrap_or_else(|e| panic!("discover in {}: {e}", p.display()))
                    .source
            } else {
                p
            }
        })
        .collect()
}

#[test]
fn to_ansible_list_matches_ansible_inventory() {
    let bin = ansible_inventory();
    let sources = corpus();
    assert!(
        sources.len() >= 15,
        "the corpus should hold many inventories, found {}",
        sources.len()
    );
    let mut failures = Vec::new();
    for source in &sources {
        let text = ansible_list(&bin, source);
        let theirs: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ansible output for {} is not JSON: {e}", source.display()));
        let inv = Inventory::load(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let ours = inv.to_ansible_list();
        if ours != theirs {
            failures.push(format!(
                "{}: JSON differs\n--- ansible-inventory\n{}\n--- lsbackup\n{}",
                source.display(),
                serde_json::to_string_pretty(&theirs).unwrap(),
                serde_json::to_string_pretty(&ours).unwrap()
            ));
            continue;
        }
        let ours_text = inv.to_ansible_list_json();
        if ours_text.trim_end() != text.trim_end() {
            let (a, b): (Vec<&str>, Vec<&str>) =
                (text.lines().collect(), ours_text.lines().collect());
            let i = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            failures.push(format!(
                "{}: same JSON but not the same bytes, first difference at line {}:\n\
                 ansible-inventory: {:?}\nlsbackup:          {:?}",
                source.display(),
                i + 1,
                a.get(i),
                b.get(i)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n\n{}",
        failures.len(),
        sources.len(),
        failures.join("\n\n")
    );
}

/// `Inventory::group_hosts` against the `groups` variable of a real `ansible` run (the `ansible`
/// next to `ansible-inventory`). Python walks grandchildren through a set, so beyond a group's
/// own hosts and its direct children's, only membership is compared.
#[test]
fn group_hosts_match_ansible_groups_variable() {
    let inv_bin = ansible_inventory();
    let bin = inv_bin.with_file_name("ansible");
    assert!(
        bin.is_file(),
        "{} not found next to ansible-inventory",
        bin.display()
    );
    for source in corpus() {
        let cwd = tempfile::tempdir().unwrap();
        let out = Command::new(&bin)
            .args(["localhost", "-o", "-m", "debug", "-a", "var=groups", "-i"])
            .arg(&source)
            .current_dir(cwd.path())
            .env("ANSIBLE_LOCAL_TEMP", cwd.path())
            .env("ANSIBLE_NOCOLOR", "1")
            .env_remove("ANSIBLE_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = stdout
            .split_once("=> ")
            .map(|(_, j)| j)
            .unwrap_or_else(|| panic!("{}: unexpected ansible output: {stdout}", source.display()));
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        let groups = v["groups"].as_object().expect("groups");
        let inv = Inventory::load(&source).unwrap();
        let mut names: Vec<&String> = inv.groups.keys().collect();
        names.sort();
        let mut theirs_names: Vec<&String> = groups.keys().collect();
        theirs_names.sort();
        assert_eq!(names, theirs_names, "{}: group names", source.display());
        for (g, hosts) in groups {
            let theirs: Vec<&str> = hosts
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            let ours: Vec<&str> = inv.group_hosts(g).iter().map(|h| h.name.as_str()).collect();
            let (mut a, mut b) = (theirs.clone(), ours.clone());
            a.sort();
            b.sort();
            assert_eq!(a, b, "{}: members of {g}", source.display());
            // The deterministic prefix: own hosts, then direct children's.
            let grp = &inv.groups[g];
            let mut prefix: Vec<&str> = Vec::new();
            for h in grp
                .hosts
                .iter()
                .chain(grp.children.iter().flat_map(|c| inv.groups[c].hosts.iter()))
            {
                if !prefix.contains(&h.as_str()) {
                    prefix.push(h);
                }
            }
            assert_eq!(
                &theirs[..prefix.len()],
                &prefix[..],
                "{}: order in {g}",
                source.display()
            );
            assert_eq!(
                &ours[..prefix.len()],
                &prefix[..],
                "{}: our order in {g}",
                source.display()
            );
        }
    }
}

#[test]
fn malformed_inventories_name_file_and_line() {
    let bin = ansible_inventory();
    let dir = fixtures().join("inventories-malformed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/inventories-malformed")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected a set of malformed inventories, found {}",
        files.len()
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let spec = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!("{}: first line must be '# expect: LINE: TEXT'", f.display())
            });
        let (line, want) = spec.split_once(": ").expect("LINE: TEXT");
        let line: usize = line.parse().expect("line number");
        let err = match Inventory::load(&f) {
            Ok(_) => panic!("{} loaded but is malformed", f.display()),
            Err(e) => e,
        };
        match &err {
            InventoryError::Syntax { file, line: l, msg } => {
                assert_eq!(file, &f, "{err}");
                assert_eq!(*l, line, "{}: wrong line in: {err}", f.display());
                assert!(
                    msg.contains(want),
                    "{}: message {msg:?} lacks {want:?}",
                    f.display()
                );
            }
            other => panic!(
                "{}: expected a syntax error with a line, got {other}",
                f.display()
            ),
        }
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}:{line}: ", f.display())),
            "{shown}"
        );
        // Ansible refuses it too.
        let cwd = tempfile::tempdir().unwrap();
        let out = Command::new(&bin)
            .arg("-i")
            .arg(&f)
            .arg("--list")
            .current_dir(cwd.path())
            .env("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
            .env("ANSIBLE_LOCAL_TEMP", cwd.path())
            .env_remove("ANSIBLE_CONFIG")
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}: ansible-inventory accepts it",
            f.display()
        );
    }
}

#[test]
fn lambdastack_build_dir_is_discovered_and_connects() {
    let dir = fixtures().join("inventories/lambdastack");
    let inv = Inventory::discover(&dir, None).unwrap();
    assert_eq!(inv.source, dir.join("inventory"));
    let pg: Vec<&str> = inv
        .group_hosts("postgresql")
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        pg,
        ["lscluster-postgresql-vm-0", "lscluster-postgresql-vm-1"]
    );
    let c = inv.connection("lscluster-postgresql-vm-1").unwrap();
    assert_eq!(c.address, "10.1.3.11");
    assert_eq!(c.port, 22);
    assert_eq!(c.user.as_deref(), Some("operations"));
    assert_eq!(
        c.key_file.as_deref(),
        Some(Path::new(
            "/shared/build/lscluster/keys/ssh/lambdastack-operations"
        ))
    );
    assert!(c.become_);
    assert_eq!(
        c.ssh.strict_host_key_checking,
        Some(StrictHostKeyChecking::No)
    );
    assert_eq!(
        c.ssh.server_alive_interval,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(c.ssh.server_alive_count_max, Some(1));
    assert!(c.ssh.ignored.is_empty());
    assert!(inv.has_group("image_registry") && inv.group_hosts("image_registry").is_empty());
    // A relative key file is relative to the working directory, as with Ansible.
    let inv = Inventory::discover(&fixtures().join("inventories/epiphany-keyfile"), None).unwrap();
    let c = inv.connection("test-1").unwrap();
    assert_eq!(
        c.key_file,
        Some(std::env::current_dir().unwrap().join("id_rsa"))
    );
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.starts_with("hosts test-1, test-2: key file ")
                && w.contains("current directory")),
        "{:?}",
        inv.warnings
    );
}

#[test]
fn discovery_order_and_explicit_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Nothing there.
    let e = Inventory::discover(d, None).unwrap_err();
    assert!(matches!(e, InventoryError::NotFound { .. }), "{e}");
    // A single YAML inventory among other YAML files.
    std::fs::write(
        d.join("manifest.yml"),
        "kind: cluster\nname: x\n---\nkind: other\n",
    )
    .unwrap();
    std::fs::write(d.join("config.yaml"), "title: not an inventory\n").unwrap();
    std::fs::write(d.join("cluster.yml"), "all:\n  hosts:\n    n1:\n").unwrap();
    assert_eq!(
        Inventory::discover(d, None).unwrap().source,
        d.join("cluster.yml")
    );
    // Two candidates: ambiguous.
    std::fs::write(d.join("second.ini"), "[g]\nn2\n").unwrap();
    let e = Inventory::discover(d, None).unwrap_err().to_string();
    assert!(e.contains("choose one with -i"), "{e}");
    // hosts.yml beats the guesswork, inventory beats hosts.yml.
    std::fs::write(d.join("hosts.yml"), "g:\n  hosts:\n    h:\n").unwrap();
    assert_eq!(
        Inventory::discover(d, None).unwrap().source,
        d.join("hosts.yml")
    );
    std::fs::write(d.join("inventory"), "[g]\ni1\n").unwrap();
    assert_eq!(
        Inventory::discover(d, None).unwrap().source,
        d.join("inventory")
    );
    // -i wins over everything.
    let inv = Inventory::discover(d, Some(&d.join("second.ini"))).unwrap();
    assert!(inv.host("n2").is_some());
    // A malformed `inventory` is an error, not skipped.
    std::fs::write(d.join("inventory"), "[g]\ni1 broken\n").unwrap();
    let e = Inventory::discover(d, None).unwrap_err().to_string();
    assert!(e.contains("inventory:2:"), "{e}");
}

#[test]
fn connection_refuses_templates_and_warns_about_ignored_options() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("inventory");
    std::fs::write(
        &f,
        "[g]\nh1 ansible_host=\"{{ lookup('env', 'IP') }}\"\nh2 ansible_host=10.0.0.2\nh3\n\
         [all:vars]\nansible_ssh_common_args='-o ControlMaster=auto -o StrictHostKeyChecking=accept-new'\n",
    )
    .unwrap();
    let inv = Inventory::load(&f).unwrap();
    let e = inv.connection("h1").unwrap_err().to_string();
    assert!(
        e.contains("h1") && e.contains("ansible_host") && e.contains("lookup() is not supported"),
        "{e}"
    );
    let c = inv.connection("h2").unwrap();
    assert_eq!(
        c.ssh.strict_host_key_checking,
        Some(StrictHostKeyChecking::AcceptNew)
    );
    assert_eq!(
        c.ssh.ignored,
        ["-o ControlMaster=auto (from ansible_ssh_common_args)"]
    );
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.starts_with("hosts h2, h3: ") && w.contains("-o ControlMaster=auto")),
        "{:?}",
        inv.warnings
    );
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.starts_with("host h1: ansible_host (from inventory): {{ lookup(")),
        "{:?}",
        inv.warnings
    );
    assert!(inv.connection("nope").is_err());
    // The template is kept as text, as ansible-inventory shows it.
    assert_eq!(
        inv.host("h1").unwrap().vars["ansible_host"],
        "{{ lookup('env', 'IP') }}"
    );
}

#[test]
fn relative_key_beside_the_inventory_gets_a_hint() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("inventory"),
        "[g]\nh1\n[all:vars]\nansible_ssh_private_key_file=lsb_test_key_xyz\n",
    )
    .unwrap();
    std::fs::write(t.path().join("lsb_test_key_xyz"), "not a real key").unwrap();
    let inv = Inventory::discover(t.path(), None).unwrap();
    let w = inv
        .warnings
        .iter()
        .find(|w| w.contains("lsb_test_key_xyz"))
        .expect("a key file warning");
    assert!(w.starts_with("host h1: key file "), "{w}");
    assert!(w.contains("exists: run lsbackup from"), "{w}");
}
