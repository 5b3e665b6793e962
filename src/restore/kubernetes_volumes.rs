//! Restore the data of local and hostPath persistent volumes, on the node the backup copied each
//! from: every volume directory listed in the host's `volumes.txt` is replaced by the backed-up
//! one (a new directory filled from a tar stream, its file count checked, owner taken from the
//! current one; the current directory renamed `PATH.lsbackup-<time>` and kept). Pods that use
//! the volume see the restored data once they restart (their mount still shows the old
//! directory): scale the workload down before, up after.

use super::{HostRestore, Restore, RestoreError};

pub struct KubernetesVolumes;

/// One row of `volumes.txt`: PV, type, path, claim, nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub pv: String,
    pub kind: String,
    pub path: String,
    pub claim: String,
}

/// Parse `volumes.txt` (tab-separated under a `PV TYPE PATH CLAIM NODES` header; `#` lines are
/// comments).
pub fn parse_index(text: &str) -> Vec<Volume> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("PV\t") && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4).then(|| Volume {
                pv: f[0].to_string(),
                kind: f[1].to_string(),
                path: f[2].to_string(),
                claim: f[3].to_string(),
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl Restore for KubernetesVolumes {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        if r.entry("volumes.txt").is_none() {
            r.say("no volumes.txt: no volume data of this host in the backup");
            return Ok(());
        }
        let index = String::from_utf8_lossy(&r.read_local("volumes.txt")?).to_string();
        let vols = parse_index(&index);
        if vols.is_empty() {
            r.say("no local or hostPath volume had its data on this node");
        }
        let mut done: Vec<String> = Vec::new();
        for v in vols {
            if done.contains(&v.path) {
                continue;
            }
            let path = v.path.trim_end_matches('/');
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.len() < 2 {
                r.say(format!(
                    "not restored: pv {}: path {:?} is not usable",
                    v.pv, v.path
                ));
                continue;
            }
            let rel = path.trim_start_matches('/').to_string();
            if r.files_under(&format!("{rel}/")).is_empty() {
                r.say(format!(
                    "pv {} ({}): the backup holds no file of {path}: left as it is",
                    v.pv, v.kind
                ));
                continue;
            }
            r.put_tree(&rel, path).await?;
            if !v.claim.is_empty() {
                r.note(format!(
                    "pv {} ({path}): pods of claim {} see the restored data once they restart",
                    v.pv, v.claim
                ));
            }
            done.push(v.path.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rows() {
        let text = "# this host is Kubernetes node n1 (by name)\nPV\tTYPE\tPATH\tCLAIM\tNODES\n\
                    pv-a\thostPath\t/srv/a b\tshop/a\tn1\npv-b\tlocal\t/srv/b\t\tn1 n2\n";
        assert_eq!(
            parse_index(text),
            vec![
                Volume {
                    pv: "pv-a".into(),
                    kind: "hostPath".into(),
                    path: "/srv/a b".into(),
                    claim: "shop/a".into(),
                },
                Volume {
                    pv: "pv-b".into(),
                    kind: "local".into(),
                    path: "/srv/b".into(),
                    claim: String::new(),
                },
            ]
        );
        assert!(parse_index("# no local or hostPath persistent volume\n").is_empty());
    }
}
