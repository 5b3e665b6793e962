//! The `kubernetes` and `kubernetes_volumes` components against the test bed (needs
//! `tests/testbed/up.sh`, run as root):
//!
//! - a real etcd 3.4 (Debian etcd-server, tests/testbed/svc_k8s.sh) with kubeadm's TLS layout;
//! - a STAND-IN kube-apiserver (tests/testbed/standins/kube_apiserver.py, Debian has no
//!   kube-apiserver) that real kubectl talks to through /etc/kubernetes/admin.conf;
//! - a STAND-IN crictl (tests/testbed/standins/crictl) whose etcd "container" runs the etcd image's
//!   etcdctl chrooted into an image root filesystem with kubeadm's hostPath mounts;
//! - $LSB_K8S_BUILD_DIR: node2 master, node1 and node3 workers.
//!
//! The etcd snapshot must hold a key the test writes just before the backup: the snapshot is
//! restored with `etcdctl snapshot restore`, served by a temporary etcd on spare ports, and read.
//! "No etcdctl on the host" is a real condition here: lsbackup runs in a private mount namespace
//! where /usr/bin/etcdctl (and for the failure case /usr/local/bin/crictl too) is masked by an empty,
//! non-executable file, against an inventory whose master is `ansible_connection=local`.

mod common;
mod support;

use support::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lsbackup::archive::{ComponentReport, Failure, FailureKind, HostReport, Manifest, Status};
use serde_json::Value;

/// The tests share the etcd and the API stand-in; one backup at a time keeps them quick on two
/// cores and their failures readable.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn k8s_build_dir() -> PathBuf {
    PathBuf::from(common::testbed().var("LSB_K8S_BUILD_DIR"))
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}", t.as_nanos(), std::process::id())
}

/// etcdctl against the test bed etcd with its client certificate.
fn etcdctl_tb(args: &[&str]) -> String {
    let tb = common::testbed();
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", tb.var("LSB_ETCD_ENDPOINT")))
        .arg(format!("--cacert={}", tb.var("LSB_ETCD_CACERT")))
        .arg(format!("--cert={}", tb.var("LSB_ETCD_CERT")))
        .arg(format!("--key={}", tb.var("LSB_ETCD_KEY")))
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

/// Write a key the snapshot must hold; returns (key, value).
fn write_marker() -> (String, String) {
    let u = unique();
    let key = format!("/registry/lsbackup-test/k8s-{u}");
    let value = format!("written-before-backup-{u}");
    etcdctl_tb(&["put", &key, &value]);
    (key, value)
}

/// A temporary etcd serving a restored snapshot; killed on drop.
struct RestoredEtcd {
    child: Child,
    client: String,
    _dir: tempfile::TempDir,
}

impl Drop for RestoredEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RestoredEtcd {
    /// `etcdctl snapshot restore` the snapshot into a temp dir and start etcd on spare ports.
    fn start(snapshot: &Path) -> RestoredEtcd {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data.display()))
            .args(["--name", "restored"])
            .arg(format!("--initial-cluster=restored={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .output()
            .expect("running etcdctl snapshot restore");
        assert!(
            out.status.success(),
            "etcdctl snapshot restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "restored"])
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=restored={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting a temporary etcd");
        let e = RestoredEtcd {
            child,
            client,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while e.ctl(&["endpoint", "health"]).is_none() {
            assert!(
                Instant::now() < deadline,
                "the restored etcd did not become healthy: {}",
                std::fs::read_to_string(e._dir.path().join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        e
    }

    fn ctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn get(&self, key: &str) -> String {
        self.ctl(&["get", "--print-value-only", key])
            .unwrap_or_else(|| panic!("etcdctl get {key} on the restored etcd failed"))
            .trim_end()
            .to_string()
    }
}

/// Check the snapshot: `etcdctl snapshot status` sees keys, and the restored etcd holds the marker
/// written before the backup, the test bed's keys and the kubeadm-config ConfigMap key.
fn check_snapshot(run: &support::Run, marker: &(String, String)) {
    let snap = run.file("kubernetes/node2/etcd/snapshot.db");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl snapshot status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = status["totalKey"].as_u64().unwrap();
    assert!(total >= 23, "snapshot holds only {total} keys: {status}");

    let etcd = RestoredEtcd::start(&snap);
    assert_eq!(
        etcd.get(&marker.0),
        marker.1,
        "marker key missing from the snapshot"
    );
    let tb = common::testbed();
    let prefix = tb.var("LSB_ETCD_KEY_PREFIX");
    let n: usize = tb.var("LSB_ETCD_KEY_COUNT").parse().unwrap();
    let keys = etcd
        .ctl(&["get", "--prefix", "--keys-only", prefix])
        .unwrap();
    assert_eq!(
        keys.lines().filter(|l| !l.is_empty()).count(),
        n,
        "test bed keys under {prefix}: {keys}"
    );
    assert_eq!(etcd.get(&format!("{prefix}key-7")), "value-7");
    assert!(
        etcd.get("/registry/configmaps/kube-system/kubeadm-config")
            .contains("kind: ClusterConfiguration")
    );
}

fn host<'a>(c: &'a ComponentReport, name: &str) -> &'a HostReport {
    c.hosts
        .iter()
        .find(|h| h.host == name)
        .unwrap_or_else(|| panic!("no host {name} in {}: {:?}", c.name, c.hosts))
}

fn yaml(run: &support::Run, entry: &str) -> Value {
    let text = String::from_utf8(run.read(entry)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{entry} is not YAML: {e}"))
}

/// (kind, name) of every item of a List.
fn kinds_names(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a List: {list}"))
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or_default().to_string(),
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn has(items: &[(String, String)], kind: &str, name: &str) -> bool {
    items.iter().any(|(k, n)| k == kind && n == name)
}

fn host_file(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file under `dir` (relative paths), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
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

/// The PV data dir came back byte for byte under `component/node/<dir>`.
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

#[test]
fn backup_holds_snapshot_config_resources_and_volume_data() {
    let _s = serial();
    let tb = common::testbed();
    let marker = write_marker();
    let run = support::backup(
        &k8s_build_dir(),
        &["--only", "kubernetes,kubernetes_volumes"],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let k = run.component("kubernetes");
    assert_eq!(k.status, Status::Ok, "{:?}", k);
    let master = host(k, "node2");

    // etcd: with the host's etcdctl (installed there), snapshot restorable and complete
    check_snapshot(&run, &marker);
    assert!(
        master.versions["etcdctl"].contains("(host: /usr/bin/etcdctl)"),
        "{:?}",
        master.versions
    );
    assert!(
        master.versions["etcd"].starts_with("3."),
        "{:?}",
        master.versions
    );
    assert_eq!(master.versions["kubernetes"], "v1.24.7");
    assert_eq!(
        master.versions["etcd_images"],
        "node2=registry.k8s.io/etcd:3.5.4-0"
    );
    let status = String::from_utf8(run.read("kubernetes/node2/etcd/snapshot-status.txt")).unwrap();
    assert!(
        status.contains("member: https://127.0.0.1:2379") && status.contains("TOTAL KEYS"),
        "{status}"
    );
    let snap_entry = master
        .entries
        .iter()
        .find(|e| e.path == "kubernetes/node2/etcd/snapshot.db")
        .unwrap();
    assert_eq!(
        snap_entry.mode & 0o077,
        0,
        "snapshot entry readable by others"
    );
    // nothing left in the etcd data dir
    let leftovers: Vec<_> = std::fs::read_dir(tb.var("LSB_ETCD_DATA_DIR"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lsbackup-etcd-snapshot"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the etcd data dir: {leftovers:?}"
    );

    // kubeadm configuration and PKI, byte for byte
    for f in [
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/manifests/etcd.yaml",
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/sa.key",
        "/etc/kubeadm/kubeadm-config.yml",
    ] {
        assert_eq!(
            run.read(&format!("kubernetes/node2{f}")),
            host_file(f),
            "{f} differs"
        );
    }
    let cm = yaml(
        &run,
        "kubernetes/node2/kubeadm/kubeadm-config-configmap.yaml",
    );
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "kubeadm-config");
    assert!(
        cm["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap()
            .contains("clusterName: lsbackup-testbed")
    );

    // applications: every namespace and the cluster-scoped resources, as the API serves them
    let shop = kinds_names(&yaml(&run, "kubernetes/node2/resources/shop.yaml"));
    for (kind, name) in [
        ("Deployment", "web"),
        ("StatefulSet", "db"),
        ("ReplicaSet", "web-6d4cf56db6"),
        ("Service", "web"),
        ("Service", "db"),
        ("ConfigMap", "shop-settings"),
        ("Secret", "shop-db-credentials"),
        ("PersistentVolumeClaim", "data-db-0"),
        ("PersistentVolumeClaim", "cache"),
        ("Pod", "db-0"),
        ("ServiceAccount", "default"),
        ("Role", "shop-reader"),
        ("RoleBinding", "shop-reader"),
        ("Widget", "blue-widget"),
    ] {
        assert!(
            has(&shop, kind, name),
            "{kind} {name} missing from shop: {shop:?}"
        );
    }
    assert!(
        !shop.iter().any(|(k, _)| k == "Event"),
        "events are skipped: {shop:?}"
    );
    let shop_text = String::from_utf8(run.read("kubernetes/node2/resources/shop.yaml")).unwrap();
    // secrets are in the backup (the archive is private): the password's base64 is there
    assert!(
        shop_text.contains("czNjcjN0LXNob3AtcGFzc3dvcmQ="),
        "secret data missing"
    );
    let system = kinds_names(&yaml(&run, "kubernetes/node2/resources/kube-system.yaml"));
    for (kind, name) in [
        ("ConfigMap", "kubeadm-config"),
        ("Secret", "bootstrap-token-abcdef"),
        ("Pod", "etcd-node2"),
        ("DaemonSet", "kube-proxy"),
    ] {
        assert!(
            has(&system, kind, name),
            "{kind} {name} missing from kube-system: {system:?}"
        );
    }
    let monitoring = kinds_names(&yaml(&run, "kubernetes/node2/resources/monitoring.yaml"));
    assert!(
        has(&monitoring, "Deployment", "prometheus"),
        "{monitoring:?}"
    );
    let default = kinds_names(&yaml(&run, "kubernetes/node2/resources/default.yaml"));
    assert!(has(&default, "Service", "kubernetes"), "{default:?}");
    let cluster = kinds_names(&yaml(&run, "kubernetes/node2/resources/_cluster.yaml"));
    for (kind, name) in [
        ("Namespace", "shop"),
        ("Namespace", "kube-system"),
        ("Node", "node3"),
        ("PersistentVolume", "pv-local-db"),
        ("PersistentVolume", "pvc-3f1c2a9e-cache"),
        ("ClusterRole", "shop-admin"),
        ("ClusterRoleBinding", "kubeadm:cluster-admins"),
        ("StorageClass", "local-storage"),
    ] {
        assert!(
            has(&cluster, kind, name),
            "{kind} {name} missing from _cluster: {cluster:?}"
        );
    }
    assert!(
        !cluster.iter().any(|(k, _)| k == "Pod" || k == "Secret"),
        "namespaced kinds in _cluster: {cluster:?}"
    );
    for ns in ["kube-public", "kube-node-lease"] {
        assert!(
            run.file(&format!("kubernetes/node2/resources/{ns}.yaml"))
                .exists()
        );
    }

    // persistent volumes: their definitions (where their data is covered is the
    // kubernetes_volumes component's part: no coverage.txt and no "not covered" note here)
    let pvs = kinds_names(&yaml(
        &run,
        "kubernetes/node2/volumes/persistentvolumes.yaml",
    ));
    assert_eq!(pvs.len(), 5, "{pvs:?}");
    let pvcs = kinds_names(&yaml(
        &run,
        "kubernetes/node2/volumes/persistentvolumeclaims.yaml",
    ));
    assert!(has(&pvcs, "PersistentVolumeClaim", "uploads"), "{pvcs:?}");
    assert!(
        !run.file("kubernetes/node2/volumes/coverage.txt").exists(),
        "volume coverage is kubernetes_volumes' part"
    );
    assert!(
        !run.flags_of("kubernetes").contains("not covered"),
        "{}",
        run.flags_of("kubernetes")
    );
    // the kubectl discovery cache made for the run was used, and removed by the cleanup
    let removed = master
        .commands
        .iter()
        .find(|c| c.step == "remove kubectl cache")
        .unwrap_or_else(|| panic!("no cache cleanup: {:?}", master.commands));
    let cache = removed.command.strip_prefix("rm -rf ").unwrap();
    assert!(cache.starts_with("/tmp/lsbackup-kubectl."), "{cache}");
    assert!(
        master
            .commands
            .iter()
            .any(|c| c.step == "api resources" && c.command.contains(cache)),
        "{:?}",
        master.commands
    );
    assert!(!Path::new(cache).exists(), "{cache} left on the host");

    // kubernetes_volumes: each PV's data from its node only, byte for byte
    let v = run.component("kubernetes_volumes");
    assert_eq!(v.status, Status::Ok, "{v:?}");
    let local = tb.var("LSB_K8S_PV_LOCAL_DIR");
    let uploads = tb.var("LSB_K8S_PV_HOSTPATH_DIR");
    assert_copied(&run, "node3", local);
    assert_copied(&run, "node1", uploads);
    assert_absent(&run, "node1", local);
    assert_absent(&run, "node3", uploads);
    assert_absent(&run, "node2", local);
    assert_absent(&run, "node2", uploads);
    assert_absent(&run, "node1", tb.var("LSB_K8S_PV_UNUSED_DIR"));
    let index = String::from_utf8(run.read("kubernetes_volumes/node3/volumes.txt")).unwrap();
    assert!(index.contains("pv-local-db\tlocal\t"), "{index}");
    let none = String::from_utf8(run.read("kubernetes_volumes/node2/volumes.txt")).unwrap();
    assert!(
        none.contains("no local or hostPath persistent volume"),
        "{none}"
    );
}

#[test]
fn etcd_snapshot_through_crictl_when_asked() {
    let _s = serial();
    let marker = write_marker();
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            "kubernetes.etcd_snapshot_via=crictl",
        ],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let master = host(run.component("kubernetes"), "node2");
    assert!(
        master.versions["etcdctl"].contains("crictl exec in etcd container"),
        "{:?}",
        master.versions
    );
    check_snapshot(&run, &marker);
}

// --- runs with tools masked on the master ---------------------------------------------------

/// A build dir whose master (node2) is this machine through `ansible_connection=local`, so that
/// lsbackup and the master's commands share a mount namespace; node1 and node3 stay SSH hosts.
fn local_master_build_dir() -> tempfile::TempDir {
    let src = std::fs::read_to_string(k8s_build_dir().join("inventory")).unwrap();
    let inv: String = src
        .lines()
        .map(|l| {
            if l.starts_with("node2 ") {
                "node2 ansible_connection=local kubernetes_node_name=node2".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(inv.contains("ansible_connection=local"), "{src}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory"), inv + "\n").unwrap();
    dir
}

/// `lsbackup backup` in a private mount namespace where each of `masked` is covered by an empty,
/// non-executable file (the tool is not installed, as far as every command of the run can see).
fn backup_without(masked: &[&str], args: &[&str]) -> support::Run {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests mask binaries with mount namespaces: run them as root (like tests/testbed/up.sh)"
    );
    let build = local_master_build_dir();
    let tb = common::testbed();
    let target = tempfile::tempdir().unwrap();
    let empty = target.path().join(".masked-binary");
    std::fs::write(&empty, b"").unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            r#"empty="$1"; n="$2"; shift 2
            while [ "$n" -gt 0 ]; do mount --bind "$empty" "$1" || exit 90; shift; n=$((n - 1)); done
            exec "$@""#,
        )
        .arg("lsbackup-test")
        .arg(&empty)
        .arg(masked.len().to_string())
        .args(masked)
        .arg(support::bin())
        .arg("backup")
        .arg("-b")
        .arg(build.path())
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .arg("--no-agent")
        .args(args)
        .env("HOME", target.path())
        .output()
        .expect("running unshare");
    assert_ne!(
        out.status.code(),
        Some(90),
        "cannot mask {masked:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&empty).unwrap();
    let archive = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.to_string_lossy();
            p.is_file() && !n.ends_with(".partial") && !n.ends_with(".manifest.json")
        });
    let extracted = archive.as_deref().map(support::extract);
    let manifest: Option<Manifest> = extracted.as_ref().map(|d| {
        serde_json::from_slice(&std::fs::read(d.path().join("manifest.json")).unwrap()).unwrap()
    });
    support::Run {
        output: out,
        target,
        archive,
        extracted,
        manifest,
    }
}

#[test]
fn etcd_snapshot_from_the_etcd_container_when_the_host_has_no_etcdctl() {
    let _s = serial();
    // the precondition the component detects: no etcdctl on the master
    let check = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind /dev/null /usr/bin/etcdctl && command -v etcdctl")
        .output()
        .unwrap();
    assert!(!check.status.success(), "etcdctl still found when masked");

    let marker = write_marker();
    let run = backup_without(&["/usr/bin/etcdctl"], &["--only", "kubernetes"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let master = host(run.component("kubernetes"), "node2");
    assert_eq!(master.address, "local");
    assert!(
        master.versions["etcdctl"].contains("crictl exec in etcd container"),
        "{:?}",
        master.versions
    );
    assert!(
        master.versions["etcd"].starts_with("3."),
        "{:?}",
        master.versions
    );
    let status = String::from_utf8(run.read("kubernetes/node2/etcd/snapshot-status.txt")).unwrap();
    assert!(
        status.contains("etcdctl: crictl exec in etcd container"),
        "{status}"
    );
    check_snapshot(&run, &marker);
}

#[test]
fn no_etcdctl_and_no_crictl_fails_the_snapshot_and_keeps_the_rest() {
    let _s = serial();
    let run = backup_without(
        &["/usr/bin/etcdctl", "/usr/local/bin/crictl"],
        &["--only", "kubernetes,kubernetes_volumes"],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let k = run.component("kubernetes");
    assert_eq!(k.status, Status::Partial);
    let e = run.errors_of("kubernetes");
    assert!(
        e.contains("node2: kubernetes: etcd snapshot: no etcdctl on the host and no crictl"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!run.file("kubernetes/node2/etcd/snapshot.db").exists());
    // the rest of the master's backup and the other component are kept
    assert_eq!(
        run.read("kubernetes/node2/etc/kubernetes/pki/ca.crt"),
        host_file("/etc/kubernetes/pki/ca.crt")
    );
    assert!(run.file("kubernetes/node2/resources/shop.yaml").exists());
    assert_eq!(run.component("kubernetes_volumes").status, Status::Ok);
    assert!(
        run.stderr()
            .contains("no etcdctl on the host and no crictl"),
        "{}",
        run.stderr()
    );
}

#[test]
fn etcd_down_fails_the_snapshot_clearly() {
    let _s = serial();
    // the only member the master knows of is down: nothing listens at its endpoint, and no
    // static-pod manifest names other members
    let dead = format!("https://127.0.0.1:{}", free_port());
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes,kubernetes_volumes",
            "--set",
            &format!("kubernetes.etcd_endpoints={dead}"),
            "--set",
            "kubernetes.etcd_manifest=/etc/kubernetes/manifests/no-etcd.yaml",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let k = run.component("kubernetes");
    assert_eq!(k.status, Status::Partial);
    let e = run.errors_of("kubernetes");
    assert!(
        e.contains(&format!(
            "node2: kubernetes: etcd snapshot: no healthy etcd member (tried {dead}): {dead} is unhealthy"
        )),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!run.file("kubernetes/node2/etcd/snapshot.db").exists());
    assert!(
        run.file("kubernetes/node2/kubeadm/kubeadm-config-configmap.yaml")
            .exists()
    );
    assert_eq!(run.component("kubernetes_volumes").status, Status::Ok);
}

#[test]
fn a_member_that_is_down_is_passed_over_for_a_healthy_one() {
    let _s = serial();
    // the configured endpoint is down; the etcd static pod's --initial-cluster names the healthy
    // member (its peer URL, client port 2379)
    let dead = format!("https://127.0.0.1:{}", free_port());
    let marker = write_marker();
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            &format!("kubernetes.etcd_endpoints={dead}"),
        ],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let status = String::from_utf8(run.read("kubernetes/node2/etcd/snapshot-status.txt")).unwrap();
    assert!(
        status.contains("member: https://127.0.0.1:2379\n"),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "endpoints considered: {dead} https://127.0.0.1:2379\n"
        )),
        "{status}"
    );
    check_snapshot(&run, &marker);
}

/// The kubectl commands a run recorded for step `step` of the master.
fn commands_of<'a>(run: &'a support::Run, step: &str) -> Vec<&'a str> {
    host(run.component("kubernetes"), "node2")
        .commands
        .iter()
        .filter(|c| c.step == step)
        .map(|c| c.command.as_str())
        .collect()
}

/// Every object of every namespace file of a run, as (namespace file, kind, name).
fn namespaced_objects(run: &support::Run) -> Vec<(String, String, String)> {
    let dir = run.file("kubernetes/node2/resources");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(ns) = name.strip_suffix(".yaml") else {
            continue;
        };
        if ns == "_cluster" {
            continue;
        }
        let list = yaml(run, &format!("kubernetes/node2/resources/{name}"));
        for item in list["items"].as_array().unwrap() {
            assert_eq!(item["metadata"]["namespace"], ns, "{item} in {name}");
            out.push((
                ns.to_string(),
                item["kind"].as_str().unwrap().to_string(),
                item["metadata"]["name"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn each_type_is_listed_once_across_namespaces_in_pages() {
    let _s = serial();
    let tb = common::testbed();
    let requests = tb.dir().join("logs/kubeapi-requests.log");
    let before = std::fs::metadata(&requests).map(|m| m.len()).unwrap_or(0);
    // pages of 2 objects: every type with more than 2 objects takes several requests, each
    // continuing where the last one ended
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            "kubernetes.kubectl_chunk_size=2",
        ],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let log = std::fs::read(&requests).unwrap();
    let log = String::from_utf8_lossy(&log[before as usize..]);
    assert!(
        log.lines()
            .any(|l| l.contains("GET /api/v1/pods?") && l.contains("continue=")),
        "no paged pod list in the stand-in's log:\n{log}"
    );
    // one kubectl for every namespaced type across all namespaces (not one per namespace), one
    // for the namespaces, one for the cluster-scoped types
    let cmds = commands_of(&run, "resources");
    assert_eq!(cmds.len(), 3, "{cmds:#?}");
    let all: Vec<&&str> = cmds
        .iter()
        .filter(|c| c.contains(" --all-namespaces -o json --chunk-size=2"))
        .collect();
    assert_eq!(all.len(), 1, "{cmds:#?}");
    assert!(
        all[0].contains("pods") && all[0].contains("secrets"),
        "{all:?}"
    );
    assert!(!cmds.iter().any(|c| c.contains(" -n ")), "{cmds:#?}");

    // what the pages add up to is what the API holds, each object once, in its namespace's file
    let objects = namespaced_objects(&run);
    let mut dedup = objects.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), objects.len(), "an object twice: {objects:?}");
    for (kind, plural) in [
        ("Pod", "pods"),
        ("Secret", "secrets"),
        ("ConfigMap", "configmaps"),
    ] {
        let out = Command::new("kubectl")
            .args([
                "--kubeconfig",
                tb.var("LSB_KUBECONFIG"),
                "get",
                plural,
                "-A",
            ])
            .args([
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut want: Vec<(String, String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (ns, name) = l.split_once(' ').unwrap();
                (ns.to_string(), kind.to_string(), name.to_string())
            })
            .collect();
        want.sort();
        let got: Vec<_> = objects.iter().filter(|o| o.1 == kind).cloned().collect();
        assert_eq!(got, want, "{kind}");
    }
    let shop = kinds_names(&yaml(&run, "kubernetes/node2/resources/shop.yaml"));
    for name in [
        "db-0",
        "web-6d4cf56db6-x7k2p",
        "cache-7f9b8c6d5-q2w3e",
        "reports-5c6d7e8f9-a1s2d",
    ] {
        assert!(has(&shop, "Pod", name), "{name}: {shop:?}");
    }
    // namespaces without objects of the listed types still have their (empty) file
    let public = yaml(&run, "kubernetes/node2/resources/kube-node-lease.yaml");
    assert_eq!(public["kind"], "List");
}

#[test]
fn a_chunk_size_that_is_not_a_number_is_a_configuration_error() {
    let _s = serial();
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            "kubernetes.kubectl_chunk_size=$(touch /tmp/lsbackup-chunk-pwned)",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let e = run.errors_of("kubernetes");
    assert!(
        e.contains("node2: kubernetes: resources: kubectl_chunk_size \"$(touch /tmp/lsbackup-chunk-pwned)\" is not a positive number of objects"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!Path::new("/tmp/lsbackup-chunk-pwned").exists());
    assert!(
        run.file("kubernetes/node2/volumes/persistentvolumes.yaml")
            .exists()
    );
    assert!(run.file("kubernetes/node2/etcd/snapshot.db").exists());
}

#[test]
fn api_partly_down_names_what_is_missing_and_keeps_the_rest() {
    let _s = serial();
    // the stand-in's degraded instance: metrics.k8s.io discovery answers 503 and listing
    // widgets.lsbackup.example.com fails with 500
    let degraded = common::testbed().var("LSB_KUBECONFIG_DEGRADED");
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            &format!("kubernetes.kubeconfig={degraded}"),
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("kubernetes").status, Status::Partial);
    let e = run.errors_of("kubernetes");
    assert!(
        e.contains(
            "node2: kubernetes: api resources: exit status 1: error: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "node2: kubernetes: resources listable: cannot list: widgets.lsbackup.example.com (Error from server (InternalError): conversion webhook"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 2, "{e}");
    // every other type of the namespace is kept, once
    let shop = kinds_names(&yaml(&run, "kubernetes/node2/resources/shop.yaml"));
    assert!(has(&shop, "Deployment", "web"), "{shop:?}");
    assert!(has(&shop, "Secret", "shop-db-credentials"), "{shop:?}");
    assert!(!shop.iter().any(|(k, _)| k == "Widget"), "{shop:?}");
    let mut sorted = shop.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        shop.len(),
        "duplicates in shop.yaml: {shop:?}"
    );
    assert!(run.file("kubernetes/node2/etcd/snapshot.db").exists());
}

/// The kubernetes steps that need the API (skipped together when it cannot be reached).
const API_STEPS: [&str; 6] = [
    "kubeadm-config ConfigMap",
    "api resources",
    "resources listable",
    "resources",
    "persistent volumes",
    "persistent volume claims",
];

/// The one failure of the API check, and that each step needing the API is recorded once as
/// skipped, naming `cause`.
fn one_api_failure_rest_skipped(run: &support::Run, cause: &str) -> Failure {
    let master = host(run.component("kubernetes"), "node2");
    let (skipped, failed): (Vec<&Failure>, Vec<&Failure>) = master
        .errors
        .iter()
        .partition(|f| f.kind == FailureKind::Skipped);
    assert_eq!(
        failed.len(),
        1,
        "exactly one error that is not a skip:\n{}",
        support::messages(failed.iter().copied())
    );
    assert_eq!(failed[0].step.as_deref(), Some("kubernetes api"));
    let mut steps: Vec<&str> = skipped.iter().filter_map(|f| f.step.as_deref()).collect();
    steps.sort();
    let mut want = API_STEPS.to_vec();
    want.sort();
    assert_eq!(
        steps,
        want,
        "{}",
        support::messages(skipped.iter().copied())
    );
    for f in &skipped {
        assert!(
            f.message.contains(&format!("not run: {cause}")),
            "{}",
            f.message
        );
    }
    failed[0].clone()
}

/// What needs no API is still taken: the etcd snapshot, the PKI, the kubeadm and kubeconfig files.
fn etcd_and_files_kept(run: &support::Run) {
    assert!(run.file("kubernetes/node2/etcd/snapshot.db").is_file());
    let status = String::from_utf8(run.read("kubernetes/node2/etcd/snapshot-status.txt")).unwrap();
    assert!(status.contains("TOTAL KEYS"), "{status}");
    for f in [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/admin.conf",
        "/etc/kubeadm/kubeadm-config.yml",
    ] {
        assert_eq!(
            run.read(&format!("kubernetes/node2{f}")),
            host_file(f),
            "{f} differs"
        );
    }
    assert!(!run.file("kubernetes/node2/resources").exists());
    assert!(!run.file("kubernetes/node2/volumes").exists());
}

#[test]
fn a_missing_kubeconfig_is_one_error_and_the_steps_needing_it_are_skipped() {
    let _s = serial();
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            "kubernetes.kubeconfig=/nonexistent",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("kubernetes").status, Status::Partial);
    let f = one_api_failure_rest_skipped(&run, "no kubeconfig /nonexistent");
    assert_eq!(f.kind, FailureKind::Config);
    assert_eq!(
        f.message,
        "node2: kubernetes: kubernetes api: no kubeconfig /nonexistent on this host (set kubernetes.kubeconfig)"
    );
    etcd_and_files_kept(&run);
}

/// The test bed's admin.conf with its server at 127.0.0.3:`port`, written in `dir`.
fn kubeconfig_at(dir: &Path, port: u16) -> PathBuf {
    let conf: String = std::fs::read_to_string("/etc/kubernetes/admin.conf")
        .unwrap()
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server: ") {
            Some(_) => format!("    server: https://127.0.0.3:{port}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(conf.contains(&format!(":{port}")), "{conf}");
    let path = dir.join("admin-elsewhere.conf");
    std::fs::write(&path, conf + "\n").unwrap();
    path
}

#[test]
fn an_api_that_does_not_answer_is_one_error_and_the_rest_is_kept() {
    let _s = serial();
    // admin.conf pointing at a port nothing listens on
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = kubeconfig_at(dir.path(), port);
    let set = format!("kubernetes.kubeconfig={}", path.display());
    let run = support::backup(&k8s_build_dir(), &["--only", "kubernetes", "--set", &set]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let f = one_api_failure_rest_skipped(&run, "the kubernetes API does not answer");
    assert_eq!(f.kind, FailureKind::Api);
    assert!(
        f.message
            .starts_with("node2: kubernetes: kubernetes api: the API does not answer: ")
            && f.message.contains(&format!("127.0.0.3:{port}")),
        "{}",
        f.message
    );
    etcd_and_files_kept(&run);
}

#[test]
fn a_data_dir_with_shell_syntax_in_its_name_is_only_a_name() {
    let _s = serial();
    let marker = write_marker();
    // the snapshot is written in a directory whose path is a command substitution (its
    // components: `$(touch `, the base dir's, `MARK)`); run by a shell it would make MARK
    let base = tempfile::Builder::new()
        .prefix("lsb-k8s-datadir")
        .tempdir_in("/tmp")
        .unwrap();
    let mark = base.path().join("MARK");
    let dir = base.path().join(format!("$(touch {})", mark.display()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = format!("kubernetes.etcd_data_dir={}", dir.display());
    let run = support::backup(&k8s_build_dir(), &["--only", "kubernetes", "--set", &set]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    check_snapshot(&run, &marker);
    assert!(!mark.exists(), "a value ran as a command");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "left in the data dir: {left:?}");
    // a data dir with `..` is refused, as a configuration error, before anything is written
    let run = support::backup(
        &k8s_build_dir(),
        &[
            "--only",
            "kubernetes",
            "--set",
            "kubernetes.etcd_data_dir=/var/lib/etcd/../../tmp",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let master = host(run.component("kubernetes"), "node2");
    assert_eq!(master.errors.len(), 1, "{:?}", master.errors);
    assert_eq!(master.errors[0].kind, FailureKind::Config);
    assert_eq!(
        master.errors[0].message,
        "node2: kubernetes: etcd snapshot: etcd_data_dir \"/var/lib/etcd/../../tmp\" holds `..`"
    );
    assert!(!run.file("kubernetes/node2/etcd/snapshot.db").exists());
    assert!(run.file("kubernetes/node2/resources/shop.yaml").exists());
}

#[test]
fn an_interrupt_while_the_api_hangs_still_removes_the_snapshot() {
    let _s = serial();
    let tb = common::testbed();
    // an API that accepts connections and never answers: the API part waits (kubectl's 10s
    // timeout) while the etcd part, at the same time, has saved its snapshot in the data dir
    let hang = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let port = hang.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig_at(dir.path(), port);
    let target = tempfile::tempdir().unwrap();
    // this run's snapshot file: one that was not there before (its name ends with the pid of
    // the sshd holding the run's connection, src/components/leftovers.rs)
    let data_dir = tb.var("LSB_ETCD_DATA_DIR");
    let snapshots = || -> Vec<String> {
        std::fs::read_dir(data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("lsbackup-etcd-snapshot") && n.ends_with(".db"))
            .collect()
    };
    let before = snapshots();
    let child = Command::new(support::bin())
        .args(["backup", "--no-agent", "--only", "kubernetes", "--set"])
        .arg(format!("kubernetes.kubeconfig={}", path.display()))
        .arg("-b")
        .arg(k8s_build_dir())
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .env("HOME", target.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ours = || -> Vec<String> {
        snapshots()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect()
    };
    let start = Instant::now();
    while ours().is_empty() && start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!ours().is_empty(), "no snapshot was written within 8s");
    // the snapshot part is done well before the API's 10s timeout
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        ours().is_empty(),
        "snapshot left in {data_dir}: {:?}\n{err}",
        ours()
    );
    drop(hang);
}
