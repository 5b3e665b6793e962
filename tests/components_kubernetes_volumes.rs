//! The `kubernetes_volumes` component against the test bed (needs `tests/testbed/up.sh`, run as
//! root):
//!
//! - node2 is the control plane (kubeadm's admin.conf); the STAND-IN kube-apiserver's third
//!   instance ($LSB_KUBECONFIG_WORKERS, port 6445) serves the test bed cluster plus a worker Node
//!   `k8s-worker-4` (InternalIP 127.0.0.5), a Node `node9` that is no inventory host, and their
//!   PVs (tests/testbed/svc_worker.sh);
//! - node4 (127.0.0.5) is a kubeadm worker: its sshd runs in a mount namespace where
//!   /etc/kubernetes holds only kubelet.conf and pki/ca.crt (no admin.conf);
//! - the PV data directories are real directories with known content, one of them with a name
//!   full of shell syntax that would create $LSB_K8S_PV_MARKER if it were ever run.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lsbackup::archive::{ComponentReport, FailureKind, HostReport, Status};

fn host<'a>(c: &'a ComponentReport, name: &str) -> &'a HostReport {
    c.hosts
        .iter()
        .find(|h| h.host == name)
        .unwrap_or_else(|| panic!("no host {name} in {c:?}"))
}

/// Every file under `dir` (relative paths), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The PV data dir came back byte for byte under `kubernetes_volumes/<host>/<dir>`.
fn assert_copied(run: &support::Run, node: &str, dir: &str) {
    let files = files_under(Path::new(dir));
    assert!(!files.is_empty(), "{dir} is empty on the test bed");
    for f in files {
        let src = Path::new(dir).join(&f);
        let entry = format!(
            "kubernetes_volumes/{node}/{}",
            src.display().to_string().trim_start_matches('/')
        );
        assert_eq!(
            run.read(&entry),
            std::fs::read(&src).unwrap(),
            "{entry} differs from {}",
            src.display()
        );
    }
}

fn assert_absent(run: &support::Run, node: &str, dir: &str) {
    let p = run.file(&format!(
        "kubernetes_volumes/{node}/{}",
        dir.trim_start_matches('/')
    ));
    assert!(!p.exists(), "{} should not be in the archive", p.display());
}

/// A build dir: node2 master (its kubeconfig: `master_kubeconfig`), node1/node3 workers with
/// `kubernetes_node_name` as the test bed's k8s inventory has them, and node4, the worker without
/// admin.conf, with no node name (its Node, k8s-worker-4, is found by its address).
fn build_dir(master_kubeconfig: &str) -> tempfile::TempDir {
    build_dir_with(master_kubeconfig, "")
}

/// [`build_dir`] with more inventory text (groups) before `[all:vars]`.
fn build_dir_with(master_kubeconfig: &str, more: &str) -> tempfile::TempDir {
    let tb = common::testbed();
    let base =
        std::fs::read_to_string(Path::new(tb.var("LSB_K8S_BUILD_DIR")).join("inventory")).unwrap();
    let all_vars = &base[base
        .find("[all:vars]")
        .expect("[all:vars] in the k8s inventory")..];
    let inv = format!(
        "[kubernetes_master]\nnode2 ansible_host={} kubeconfig={master_kubeconfig}\n\n\
         [kubernetes_node]\nnode1 ansible_host={}\nnode3 ansible_host={} kubernetes_node_name=node3\n\
         {} ansible_host={}\n\n{more}{all_vars}",
        tb.host_of("node2"),
        tb.host_of("node1"),
        tb.host_of("node3"),
        tb.var("LSB_WORKER_NODE"),
        tb.var("LSB_WORKER_HOST"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory"), inv).unwrap();
    dir
}

/// What `sh -c CMD` prints on the worker host, as root.
fn on_worker(cmd: &str) -> std::process::Output {
    let tb = common::testbed();
    tb.ssh("root", tb.var("LSB_WORKER_HOST"))
        .arg(cmd)
        .output()
        .unwrap()
}

#[test]
fn a_worker_without_admin_conf_backs_up_its_volumes_from_one_listing_on_the_master() {
    let tb = common::testbed();
    let worker = tb.var("LSB_WORKER_NODE");
    let marker = tb.var("LSB_K8S_PV_MARKER");
    // the precondition: the worker has kubeadm's worker files, no admin.conf
    let etc = on_worker("ls /etc/kubernetes");
    let etc = String::from_utf8_lossy(&etc.stdout).to_string();
    assert!(etc.contains("kubelet.conf"), "{etc}");
    assert!(!etc.contains("admin.conf"), "{etc}");
    let _ = std::fs::remove_file(marker);

    let build = build_dir(tb.var("LSB_KUBECONFIG_WORKERS"));
    let run = support::backup(build.path(), &["--only", "kubernetes_volumes"]);
    assert_eq!(
        run.code(),
        0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        run.stderr().contains("\nbackup complete: "),
        "{}",
        run.stderr()
    );
    let v = run.component("kubernetes_volumes");
    assert_eq!(
        v.status,
        Status::Ok,
        "{}",
        run.errors_of("kubernetes_volumes")
    );
    for h in ["node1", "node2", "node3", worker] {
        assert_eq!(host(v, h).status, Status::Ok, "{h}: {:?}", host(v, h));
    }

    // the worker's volumes: a local PV and a hostPath PV with a hostile path, byte for byte
    assert_copied(&run, worker, tb.var("LSB_K8S_PV_WORKER_DIR"));
    let hostile = tb.var("LSB_K8S_PV_HOSTILE_DIR");
    assert_copied(&run, worker, hostile);
    assert!(
        !Path::new(marker).exists(),
        "a command in the PV path ran: {marker} exists"
    );
    for home in ["/root", "/home/operations", "/"] {
        assert!(!Path::new(home).join("lsbackup-kvol-pwned").exists());
    }
    // everyone else's volumes on their own nodes only
    assert_copied(&run, "node3", tb.var("LSB_K8S_PV_LOCAL_DIR"));
    assert_copied(&run, "node1", tb.var("LSB_K8S_PV_HOSTPATH_DIR"));
    assert_absent(&run, "node2", tb.var("LSB_K8S_PV_LOCAL_DIR"));
    assert_absent(&run, "node1", tb.var("LSB_K8S_PV_LOCAL_DIR"));
    assert_absent(&run, "node3", tb.var("LSB_K8S_PV_HOSTPATH_DIR"));
    assert_absent(&run, worker, tb.var("LSB_K8S_PV_LOCAL_DIR"));
    assert_absent(&run, "node1", tb.var("LSB_K8S_PV_UNUSED_DIR"));
    let index =
        String::from_utf8(run.read(&format!("kubernetes_volumes/{worker}/volumes.txt"))).unwrap();
    assert!(
        index.starts_with(&format!(
            "# this host is Kubernetes node {} (the Node with address {})\n",
            tb.var("LSB_WORKER_K8S_NAME"),
            tb.var("LSB_WORKER_HOST")
        )),
        "{index}"
    );
    assert!(index.contains("\npv-worker-data\tlocal\t"), "{index}");
    assert!(index.contains("\npv-worker-hostile\thostPath\t"), "{index}");
    let none = String::from_utf8(run.read("kubernetes_volumes/node2/volumes.txt")).unwrap();
    assert!(
        none.contains("no local or hostPath persistent volume"),
        "{none}"
    );

    // the listing ran once, on the master; the worker ran no kubectl at all
    let listings: Vec<(&str, &str)> = v
        .hosts
        .iter()
        .flat_map(|h| {
            h.commands
                .iter()
                .map(move |c| (h.host.as_str(), c.command.as_str()))
        })
        .filter(|(_, c)| c.contains("kubectl"))
        .collect();
    assert_eq!(listings.len(), 1, "{listings:?}");
    assert_eq!(listings[0].0, "node2");
    assert!(
        listings[0]
            .1
            .contains("get persistentvolumes,nodes,pods --all-namespaces -o json"),
        "{listings:?}"
    );
    assert!(host(v, "node2").versions.contains_key("kubectl"));

    // coverage: on the listing host only, once
    let coverage =
        String::from_utf8(run.read("kubernetes_volumes/node2/volumes/coverage.txt")).unwrap();
    assert!(
        !run.file("kubernetes_volumes/node1/volumes/coverage.txt")
            .exists()
    );
    for (pv, on) in [
        (
            "pv-local-db\tlocal\t",
            "copied by kubernetes_volumes on node3",
        ),
        (
            "pv-hostpath-uploads\thostPath\t",
            "copied by kubernetes_volumes on node1",
        ),
        (
            "pv-worker-data\tlocal\t",
            "copied by kubernetes_volumes on node4 (node k8s-worker-4)",
        ),
        (
            "pv-worker-hostile\thostPath\t",
            "copied by kubernetes_volumes on node4 (node k8s-worker-4)",
        ),
    ] {
        let l = coverage.lines().find(|l| l.starts_with(pv)).unwrap();
        assert!(l.ends_with(on), "{l}");
    }
    assert!(coverage.contains("\tshop/data-db-0\tnode3\t"), "{coverage}");
    assert!(coverage.contains("\tshop/uploads\tnode1\t"), "{coverage}");
    let notes = run.flags_of("kubernetes_volumes");
    for n in [
        "not covered: pv pvc-3f1c2a9e-cache (csi driver ebs.csi.aws.com vol-0a1b2c3d4e5f67890, claim shop/cache)",
        "not covered: pv pv-nfs-reports (nfs 10.0.0.9:/exports/reports, claim shop/reports)",
        "not covered: pv pv-hostpath-unused (hostPath: no pod uses it and no node affinity, node unknown)",
        "not covered: pv pv-node9-logs (local on node node9: no host of kubernetes_master/kubernetes_node is that node, claim shop/node9-logs)",
    ] {
        assert_eq!(notes.matches(n).count(), 1, "{n} once in:\n{notes}");
        assert!(host(v, "node2").flags.iter().any(|f| f == n), "{n}");
    }
    assert!(!notes.contains("pv pv-local-db"), "{notes}");
    assert!(!notes.contains("pv pv-worker"), "{notes}");
    assert!(
        host(v, worker)
            .flags
            .iter()
            .any(|f| f.contains("copied while in use")),
        "{:?}",
        host(v, worker).flags
    );
}

#[test]
fn no_kubeconfig_on_the_master_is_one_error_and_the_nodes_report_skipped() {
    let tb = common::testbed();
    let worker = tb.var("LSB_WORKER_NODE");
    // haproxy on node3 succeeds, so that an archive (and its manifest) is written
    let build = build_dir_with("/etc/kubernetes/no-such.conf", "[haproxy]\nnode3\n\n");
    let run = support::backup(build.path(), &["--only", "kubernetes_volumes,haproxy"]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("haproxy").status, Status::Ok);
    let v = run.component("kubernetes_volumes");
    assert_eq!(v.status, Status::Failed);
    let errors: Vec<_> = v.hosts.iter().flat_map(|h| h.errors.iter()).collect();
    let real: Vec<_> = errors
        .iter()
        .filter(|f| f.kind != FailureKind::Skipped)
        .collect();
    assert_eq!(real.len(), 1, "{errors:?}");
    assert_eq!(real[0].kind, FailureKind::Config);
    assert_eq!(
        real[0].message,
        "node2: kubernetes_volumes: volume listing: no kubeconfig /etc/kubernetes/no-such.conf on this host: set kubernetes_volumes.kubeconfig to one that may list persistent volumes, nodes and pods"
    );
    for h in ["node1", "node3", worker] {
        let e = &host(v, h).errors;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].kind, FailureKind::Skipped);
        assert_eq!(
            e[0].message,
            format!("{h}: kubernetes_volumes: volumes: the volume listing on node2 failed")
        );
    }
    // the command that failed is in the master's manifest, and only there
    // (besides the search for what earlier runs left, src/components/leftovers.rs)
    let master = host(v, "node2");
    let listing = listing_commands(master);
    assert_eq!(listing.len(), 1, "{:?}", master.commands);
    assert_eq!(listing[0].exit_code, Some(3));
    assert!(listing_commands(host(v, worker)).is_empty());
}

#[test]
fn plan_shows_the_listing_once_and_the_copy_per_host() {
    let tb = common::testbed();
    let build = build_dir(tb.var("LSB_KUBECONFIG_WORKERS"));
    let out = Command::new(support::bin())
        .args(["plan", "-b"])
        .arg(build.path())
        .args(["--only", "kubernetes_volumes"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "once per run, on the first kubernetes_master host that can: kubectl --kubeconfig"
        ),
        "{text}"
    );
    assert!(text.contains("volumes.txt: the local/hostPath volumes whose data is on node node3 (kubernetes_node_name)"), "{text}");
    assert!(
        text.contains("the Node named like this host, else the Node with this host's address"),
        "{text}"
    );
}

#[test]
fn a_master_without_kubeconfig_is_passed_over_for_the_next_one() {
    let tb = common::testbed();
    let worker = tb.var("LSB_WORKER_NODE");
    // node2 (first master) has no such kubeconfig; node1, a second master, has one
    let inv = format!(
        "[kubernetes_master]\nnode2 ansible_host={} kubeconfig=/etc/kubernetes/no-such.conf\n\
         node1 ansible_host={} kubeconfig={}\n\n[kubernetes_node]\n{worker} ansible_host={}\n\n{}",
        tb.host_of("node2"),
        tb.host_of("node1"),
        tb.var("LSB_KUBECONFIG_WORKERS"),
        tb.var("LSB_WORKER_HOST"),
        {
            let base =
                std::fs::read_to_string(Path::new(tb.var("LSB_K8S_BUILD_DIR")).join("inventory"))
                    .unwrap();
            base[base.find("[all:vars]").unwrap()..].to_string()
        }
    );
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("inventory"), inv).unwrap();
    let run = support::backup(build.path(), &["--only", "kubernetes_volumes"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let v = run.component("kubernetes_volumes");
    assert_eq!(v.status, Status::Ok);
    // each master's try is in its own manifest; the coverage is on the one that listed
    let n2 = host(v, "node2");
    let listing = listing_commands(n2);
    assert_eq!(listing.len(), 1, "{:?}", n2.commands);
    assert_eq!(listing[0].exit_code, Some(3));
    assert!(
        n2.flags.iter().any(|f| f
            == "volume listing done on node1 (here: no kubeconfig /etc/kubernetes/no-such.conf on this host: set kubernetes_volumes.kubeconfig to one that may list persistent volumes, nodes and pods)"),
        "{:?}",
        n2.flags
    );
    let n1 = host(v, "node1");
    assert_eq!(
        n1.commands
            .iter()
            .filter(|c| c.command.contains("kubectl"))
            .count(),
        1
    );
    assert!(
        run.file("kubernetes_volumes/node1/volumes/coverage.txt")
            .exists()
    );
    assert!(
        !run.file("kubernetes_volumes/node2/volumes/coverage.txt")
            .exists()
    );
    // node1 is found by name (no kubernetes_node_name) and copies its hostPath volume
    assert_copied(&run, "node1", tb.var("LSB_K8S_PV_HOSTPATH_DIR"));
    assert_copied(&run, worker, tb.var("LSB_K8S_PV_WORKER_DIR"));
    // node3 is not in this inventory: its volume is named as not covered
    assert!(
        run.flags_of("kubernetes_volumes").contains(
            "not covered: pv pv-local-db (local on node node3: no host of kubernetes_master/kubernetes_node is that node, claim shop/data-db-0)"
        ),
        "{}",
        run.flags_of("kubernetes_volumes")
    );
}

/// A host's commands but the search for what earlier runs left (step `leftovers`).
fn listing_commands(h: &lsbackup::archive::HostReport) -> Vec<&lsbackup::archive::CommandRecord> {
    h.commands
        .iter()
        .filter(|c| c.step != "leftovers")
        .collect()
}
