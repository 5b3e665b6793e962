//! Restore Kubernetes on the kubeadm layout, on the control-plane host the backup was taken on:
//!
//! 1. The files under /etc/kubernetes (PKI, kubeconfigs, static pod manifests) and the kubeadm
//!    config are put back; a replaced file is kept beside it, except in the static pod manifest
//!    directory, whose every file kubelet would run: those are kept in
//!    `/etc/kubernetes/manifests.lsbackup-<time>/`.
//! 2. etcd, the documented way for a single member: the snapshot is restored with `etcdutl
//!    snapshot restore` (or etcdctl 3.4's `snapshot restore`) into a NEW data directory
//!    (`<data dir>-lsbackup-<time>`) with the member name, peer URL and initial cluster of the
//!    etcd static pod manifest; then the manifest's `etcd-data` hostPath is switched to it, and
//!    kubelet restarts etcd on the restored data. The previous data directory is left as it was.
//!    A cluster whose manifest names several members is refused (each member must be restored
//!    from the same snapshot: see docs/components/kubernetes.md).
//!
//! The resources/ and volumes/ YAML exports are not applied: the etcd snapshot holds the same
//! objects; they are for looking at, or `kubectl apply` of single objects by hand.

use crate::shell::Script;

use super::{HostRestore, Restore, RestoreError};

pub struct Kubernetes;

/// Where kubeadm keeps kubeconfigs, manifests and PKI.
const KUBERNETES_DIR: &str = "/etc/kubernetes";

/// Restore the snapshot `$1` into the new data dir `$2` as member `$3` of cluster `$4` with peer
/// URLs `$5`; the uploaded snapshot is removed whatever happens.
const SNAPSHOT_RESTORE: &str = r#"snap=$1
trap 'rm -f -- "$snap"' EXIT
if [ -e "$2" ]; then echo "$2 exists already" >&2; exit 1; fi
if command -v etcdutl >/dev/null 2>&1; then
  etcdutl snapshot restore "$snap" --data-dir "$2" --name "$3" --initial-cluster "$4" --initial-advertise-peer-urls "$5" >&2 || exit 1
elif command -v etcdctl >/dev/null 2>&1; then
  ETCDCTL_API=3 etcdctl snapshot restore "$snap" --data-dir "$2" --name "$3" --initial-cluster "$4" --initial-advertise-peer-urls "$5" >&2 || exit 1
else
  echo "neither etcdutl nor etcdctl is installed on this host" >&2
  exit 127
fi
chmod 0700 -- "$2""#;

/// Which of the tools is installed (read-only).
const TOOL: &str = r#"command -v etcdutl 2>/dev/null || command -v etcdctl 2>/dev/null || true"#;

/// What restore needs of kubeadm's etcd static pod manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdPod {
    pub name: String,
    pub initial_cluster: String,
    pub peer_urls: String,
    /// `--data-dir`, as etcd sees it (inside the pod).
    pub data_dir: String,
    /// The host directory mounted there (the `etcd-data` hostPath).
    pub host_dir: String,
}

/// Read the etcd static pod manifest (YAML, parsed here).
pub fn parse_etcd_pod(text: &str) -> Result<EtcdPod, String> {
    let v: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let container = v["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "etcd").or_else(|| c.first()))
        .ok_or("no containers")?;
    let args: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| container[k].as_array())
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    let flag = |name: &str| -> Option<String> {
        let eq = format!("--{name}=");
        let mut found = None;
        for (i, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix(&eq) {
                found = Some(v.to_string());
            } else if *a == format!("--{name}") {
                found = args.get(i + 1).map(|v| v.to_string());
            }
        }
        found
    };
    let data_dir = flag("data-dir").unwrap_or_else(|| "/var/lib/etcd".to_string());
    let name = flag("name").ok_or("no --name")?;
    let initial_cluster = flag("initial-cluster").ok_or("no --initial-cluster")?;
    let peer_urls =
        flag("initial-advertise-peer-urls").ok_or("no --initial-advertise-peer-urls")?;
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| {
            m.iter().find(|m| {
                m["mountPath"].as_str().map(|p| p.trim_end_matches('/'))
                    == Some(data_dir.trim_end_matches('/'))
            })
        })
        .and_then(|m| m["name"].as_str())
        .ok_or_else(|| format!("no volume is mounted at the data dir {data_dir}"))?;
    let host_dir = v["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|vol| vol["name"] == mount))
        .and_then(|vol| vol["hostPath"]["path"].as_str())
        .ok_or_else(|| format!("volume {mount} is not a hostPath"))?
        .to_string();
    Ok(EtcdPod {
        name,
        initial_cluster,
        peer_urls,
        data_dir,
        host_dir,
    })
}

/// The manifest with the hostPath `old` switched to `new`: the one line `path: OLD` (plain or
/// quoted) is replaced, the rest kept byte for byte.
pub fn switch_host_path(text: &str, old: &str, new: &str) -> Result<String, String> {
    let wanted = [
        format!("path: {old}"),
        format!("path: \"{old}\""),
        format!("path: '{old}'"),
    ];
    let mut hits = 0;
    let mut out = String::with_capacity(text.len() + new.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if wanted.iter().any(|w| w == trimmed) {
            hits += 1;
            let indent = &body[..body.len() - body.trim_start().len()];
            let dash = if body.trim_start().starts_with("- ") {
                "- "
            } else {
                ""
            };
            out.push_str(&format!("{indent}{dash}path: {new}"));
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    match hits {
        1 => Ok(out),
        0 => Err(format!("no `path: {old}` line")),
        n => Err(format!("{n} `path: {old}` lines")),
    }
}

#[async_trait::async_trait]
impl Restore for Kubernetes {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let manifest_path = r.var("etcd_manifest").to_string();
        let manifests_dir = manifest_path
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let kept_manifests = format!("{manifests_dir}.{}", r.keep_suffix());
        r.keep_elsewhere(&manifests_dir, &kept_manifests);
        let kubeadm_dir = r
            .var("kubeadm_config_file")
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let roots = vec![
            KUBERNETES_DIR.to_string(),
            r.var("kubernetes_pki_dir").to_string(),
            kubeadm_dir,
        ];
        r.put_files(&roots, &["etcd", "resources", "volumes", "kubeadm"])
            .await?;
        if r.entry("etcd/snapshot.db").is_none() {
            r.say("the backup holds no etcd snapshot: etcd left as it is");
            return Ok(());
        }
        let text = r
            .query(
                "etcd",
                &Script::new(r#"exec cat -- "$1""#).arg(manifest_path.as_str()),
                None,
            )
            .await?;
        let text = String::from_utf8(text.stdout)
            .map_err(|_| r.failed("etcd", format!("{manifest_path}: not UTF-8")))?;
        let pod =
            parse_etcd_pod(&text).map_err(|e| r.failed("etcd", format!("{manifest_path}: {e}")))?;
        let members = pod
            .initial_cluster
            .split(',')
            .filter(|m| !m.is_empty())
            .count();
        if members > 1 {
            return Err(r.failed(
                "etcd",
                format!(
                    "{manifest_path} names {members} etcd members (--initial-cluster): every member must be restored from the same snapshot, by hand (docs/components/kubernetes.md)"
                ),
            ));
        }
        let tool = r.query("etcd", &Script::new(TOOL), None).await?;
        if tool.stdout_text().is_empty() {
            return Err(r.failed(
                "etcd",
                "neither etcdutl nor etcdctl is installed on this host (etcd's packages, or the etcd release tarball, have them)",
            ));
        }
        let old = pod.host_dir.trim_end_matches('/').to_string();
        let new = format!("{old}-{}", r.keep_suffix());
        let snap = format!("{new}.snapshot.db");
        let new_manifest = switch_host_path(&text, &old, &new)
            .map_err(|e| r.failed("etcd", format!("{manifest_path}: {e}")))?;
        r.put_file("etcd/snapshot.db", &snap).await?;
        r.change(
            "etcd",
            &format!(
                "restore the etcd snapshot into {new} as member {} ({})",
                pod.name, pod.initial_cluster
            ),
            &Script::new(SNAPSHOT_RESTORE)
                .arg(snap.as_str())
                .arg(new.as_str())
                .arg(pod.name.as_str())
                .arg(pod.initial_cluster.as_str())
                .arg(pod.peer_urls.as_str()),
            None,
        )
        .await?;
        r.say(format!(
            "{}switch the etcd-data hostPath of {manifest_path} from {old} to {new} (kubelet restarts etcd on it; {old} is left as it was)",
            r.would()
        ));
        r.put_bytes(new_manifest.into_bytes(), 0o600, &manifest_path)
            .await?;
        r.note(format!(
            "etcd runs from {new} once kubelet restarts it; the API server, controller manager and scheduler may need a restart too (move their manifests out of {manifests_dir} and back); the previous data is in {old}"
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1
kind: Pod
spec:
  containers:
  - command:
    - etcd
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.2:2380
    - --initial-cluster=m1=https://10.0.0.2:2380
    - --name=m1
    image: registry.k8s.io/etcd:3.5.4-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
";

    #[test]
    fn etcd_pod_facts_from_the_kubeadm_manifest() {
        let p = parse_etcd_pod(MANIFEST).unwrap();
        assert_eq!(
            p,
            EtcdPod {
                name: "m1".into(),
                initial_cluster: "m1=https://10.0.0.2:2380".into(),
                peer_urls: "https://10.0.0.2:2380".into(),
                data_dir: "/var/lib/etcd".into(),
                host_dir: "/var/lib/etcd".into(),
            }
        );
        assert!(parse_etcd_pod("spec: {containers: []}").is_err());
    }

    #[test]
    fn only_the_host_path_line_changes() {
        let out = switch_host_path(MANIFEST, "/var/lib/etcd", "/var/lib/etcd-lsbackup-X").unwrap();
        assert_eq!(
            out,
            MANIFEST.replace(
                "      path: /var/lib/etcd\n",
                "      path: /var/lib/etcd-lsbackup-X\n"
            )
        );
        // --data-dir and the mountPath (inside the pod) stay
        assert!(out.contains("- --data-dir=/var/lib/etcd\n"));
        assert!(out.contains("- mountPath: /var/lib/etcd\n"));
        assert!(switch_host_path(MANIFEST, "/nope", "/x").is_err());
        let twice = format!("{MANIFEST}      path: /var/lib/etcd\n");
        assert!(switch_host_path(&twice, "/var/lib/etcd", "/x").is_err());
    }
}
