//! Restore RabbitMQ: the node's config files, then the cluster's definitions.
//!
//! 1. The files of the config directory (`rabbitmq_config_dir`, /etc/rabbitmq) are put back,
//!    each current file kept beside it as `FILE.lsbackup-<time>`. RabbitMQ reads them only when
//!    the node starts (there is no reload): when one changed, a note says to restart the node;
//!    the node is not restarted (a restart drops every client connection and, in a cluster, is
//!    done node by node by the operator).
//! 2. The node must run (`rabbitmq-diagnostics check_running`). `definitions.json` (users with
//!    their password hashes, vhosts, permissions, topic permissions, parameters, policies,
//!    queues, exchanges, bindings) is streamed to the host into a private temporary file,
//!    checked there against the manifest (size and sha256), and imported with `rabbitmqctl
//!    import_definitions --format json` (no file argument: read from stdin), as `rabbitmq_cli_user`, against
//!    `rabbitmq_node`. The import adds what is missing and updates what exists (users get their
//!    backed-up password hash back); what was created after the backup is left alone, and queues
//!    come back empty (messages are not in the backup).
//! 3. The definitions are exported again (`rabbitmqctl export_definitions`) and every backed-up
//!    vhost, user (with its password hash), permission, policy, queue, exchange and binding must
//!    be there; what is not is an error naming it.
//!
//! The CLI's long error texts are reduced to one line (`components::rabbitmq::why`).
//!
//! Its temporary files (the CLI's error output, the definitions on their way in; never a
//! credential: rabbitmqctl authenticates with the Erlang cookie it reads itself) are
//! `/tmp/lsbackup-rabbitmq.<holder>.XXXXXX`, made as `rabbitmq_cli_user`; what a killed restore
//! left of them is removed, as that user, before the definitions are imported.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::components::leftovers::{self, Kind};
use crate::components::rabbitmq::why;
use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct RabbitMq;

/// Runs `$2` (rabbitmqctl or rabbitmq-diagnostics) with `-n $1` when a node is named, then the
/// rest of the arguments. Prints `ok` and its stdout, or `failed`, its stderr and its stdout.
const CLI: &str = concat!(
    crate::components::leftovers::holder_sh!(),
    r#"n=$1; prog=$2; shift 2
if [ -n "$n" ]; then set -- -n "$n" "$@"; fi
e=$(mktemp "/tmp/lsbackup-rabbitmq.$lsb_holder.XXXXXX") || exit 1
trap 'rm -f -- "$e"' EXIT
if out=$(cd / && "$prog" "$@" 2>"$e"); then
  printf 'ok\n%s\n' "$out"
else
  printf 'failed\n'
  cat -- "$e"
  printf '%s\n' "$out"
fi"#
);

/// The definitions on fd 3 (`$2` bytes, sha256 `$3`) into a private temporary file, checked,
/// then imported into node `$1` (the CLI's default node when empty). Prints `ok` or `failed`
/// and the CLI's output.
const IMPORT: &str = concat!(
    crate::components::leftovers::holder_sh!(),
    r#"n=$1 size=$2 sha=$3
t=$(mktemp "/tmp/lsbackup-rabbitmq.$lsb_holder.XXXXXX") || exit 1
trap 'rm -f -- "$t"' EXIT
cat <&3 >"$t" || exit 1
got=$(wc -c <"$t")
if [ "$got" -ne "$size" ]; then echo "received $got bytes, the backup holds $size" >&2; exit 1; fi
s=$(sha256sum <"$t")
if [ "${s%% *}" != "$sha" ]; then echo "what arrived does not match the manifest's sha256" >&2; exit 1; fi
if [ -n "$n" ]; then set -- -n "$n"; else set --; fi
if out=$(cd / && rabbitmqctl "$@" -q import_definitions --format json <"$t" 2>&1); then
  printf 'ok\n%s\n' "$out"
else
  printf 'failed\n%s\n' "$out"
fi"#
);

/// The temporary files of [`CLI`] and [`IMPORT`] a killed restore left.
const LEFTOVERS: &[Kind<'static>] = &[Kind {
    dir: "/tmp",
    glob: "lsbackup-rabbitmq.*",
    file_type: 'f',
    parse: |name| {
        leftovers::mktemp_name(name, "lsbackup-rabbitmq.", 6).map(|holder| leftovers::Found {
            holder,
            marks: None,
        })
    },
}];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Definitions {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub vhosts: Vec<Vhost>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub queues: Vec<Queue>,
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub password_hash: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Vhost {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    #[serde(default)]
    pub configure: String,
    #[serde(default)]
    pub write: String,
    #[serde(default)]
    pub read: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Queue {
    pub vhost: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Exchange {
    pub vhost: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Binding {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
}

impl Definitions {
    pub fn parse(text: &[u8]) -> Result<Definitions, String> {
        serde_json::from_slice(text).map_err(|e| format!("definitions do not parse: {e}"))
    }

    /// `3 vhosts, 2 users, ...`.
    pub fn summary(&self) -> String {
        let n =
            |c: usize, one: &str, many: &str| format!("{c} {}", if c == 1 { one } else { many });
        [
            n(self.vhosts.len(), "vhost", "vhosts"),
            n(self.users.len(), "user", "users"),
            n(self.permissions.len(), "permission", "permissions"),
            n(self.policies.len(), "policy", "policies"),
            n(self.queues.len(), "queue", "queues"),
            n(self.exchanges.len(), "exchange", "exchanges"),
            n(self.bindings.len(), "binding", "bindings"),
        ]
        .join(", ")
    }

    /// One key per object: what identifies it (and what the import sets that is checked).
    fn keys(&self) -> BTreeSet<String> {
        let mut k = BTreeSet::new();
        k.extend(self.vhosts.iter().map(|v| format!("vhost {:?}", v.name)));
        k.extend(self.users.iter().map(|u| {
            format!(
                "user {:?} (password hash {})",
                u.name,
                if u.password_hash.is_empty() {
                    "none"
                } else {
                    "as backed up"
                }
            )
        }));
        k.extend(self.permissions.iter().map(|p| {
            format!(
                "permission of {:?} in vhost {:?} (configure {:?} write {:?} read {:?})",
                p.user, p.vhost, p.configure, p.write, p.read
            )
        }));
        k.extend(
            self.policies
                .iter()
                .map(|p| format!("policy {:?} in vhost {:?}", p.name, p.vhost)),
        );
        k.extend(
            self.queues
                .iter()
                .map(|q| format!("queue {:?} in vhost {:?}", q.name, q.vhost)),
        );
        k.extend(
            self.exchanges
                .iter()
                .map(|e| format!("exchange {:?} in vhost {:?}", e.name, e.vhost)),
        );
        k.extend(self.bindings.iter().map(|b| {
            format!(
                "binding {:?} -> {} {:?} ({:?}) in vhost {:?}",
                b.source, b.destination_type, b.destination, b.routing_key, b.vhost
            )
        }));
        k
    }

    /// The objects of `self` that `now` lacks (a user whose password hash differs counts as
    /// lacking).
    pub fn missing_from(&self, now: &Definitions) -> Vec<String> {
        let have = now.keys();
        let mut missing: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| !have.contains(k))
            .collect();
        for u in &self.users {
            if let Some(n) = now.users.iter().find(|n| n.name == u.name)
                && n.password_hash != u.password_hash
            {
                missing.retain(|m| !m.starts_with(&format!("user {:?} ", u.name)));
                missing.push(format!(
                    "user {:?} has another password hash than the backup's",
                    u.name
                ));
            }
        }
        missing
    }
}

/// `(ok, text)` of the output of [`CLI`] or [`IMPORT`].
fn outcome(stdout: &[u8]) -> (bool, String) {
    let text = String::from_utf8_lossy(stdout);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    (first.trim() == "ok", rest.to_string())
}

fn cli_user<'a>(r: &'a HostRestore<'_>) -> Option<&'a str> {
    Some(r.var("rabbitmq_cli_user")).filter(|u| !u.is_empty())
}

#[async_trait::async_trait]
impl Restore for RabbitMq {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let dir = r
            .var("rabbitmq_config_dir")
            .trim_end_matches('/')
            .to_string();
        let done = r
            .put_files(
                std::slice::from_ref(&dir),
                &["definitions.json", "cluster_status.json"],
            )
            .await?;
        let changed: Vec<&str> = done
            .iter()
            .filter(|(_, p)| *p != Put::Unchanged)
            .map(|(d, _)| d.as_str())
            .collect();
        if !changed.is_empty() {
            let files = changed.join(", ");
            r.note(format!(
                "RabbitMQ reads its configuration only when the node starts: restart the node to use {files} (e.g. systemctl restart rabbitmq-server; in a cluster one node at a time)"
            ));
        }

        if r.entry("definitions.json").is_none() {
            r.say("the backup holds no definitions.json: no definitions to import");
            return Ok(());
        }
        let backed = Definitions::parse(&r.read_local("definitions.json")?)
            .map_err(|e| r.failed("definitions", format!("definitions.json: {e}")))?;
        let node = r.var("rabbitmq_node").to_string();
        let user = cli_user(r).map(str::to_string);
        let user = user.as_deref();
        if let Err(e) = r.sweep_leftovers(LEFTOVERS, user).await {
            r.say(format!(
                "could not look for what an earlier restore left in /tmp: {e}"
            ));
        }
        let running = r
            .query(
                "definitions",
                &Script::new(CLI)
                    .arg(node.as_str())
                    .arg("rabbitmq-diagnostics")
                    .args(["-q", "check_running"]),
                user,
            )
            .await?;
        let (ok, text) = outcome(&running.stdout);
        if !ok {
            return Err(r.failed(
                "definitions",
                format!("the RabbitMQ node is not running: {}", why(&text)),
            ));
        }
        let e = r
            .entry("definitions.json")
            .ok_or_else(|| r.failed("definitions", "definitions.json: not in the backup"))?;
        let sha = e.sha256.clone().ok_or_else(|| {
            r.failed("definitions", "definitions.json: recorded without a sha256")
        })?;
        let size = e.size;
        let out = r
            .change_with_file(
                "definitions",
                &format!(
                    "import the definitions ({}) with rabbitmqctl import_definitions",
                    backed.summary()
                ),
                &Script::new(IMPORT)
                    .arg(node.as_str())
                    .arg(size.to_string())
                    .arg(sha),
                user,
                "definitions.json",
            )
            .await?;
        let Some(out) = out else {
            return Ok(());
        };
        let (ok, text) = outcome(&out.stdout);
        if !ok {
            return Err(r.failed(
                "definitions",
                format!("rabbitmqctl import_definitions: {}", why(&text)),
            ));
        }
        let export = r
            .query(
                "check",
                &Script::new(CLI)
                    .arg(node.as_str())
                    .arg("rabbitmqctl")
                    .args(["-q", "export_definitions", "-", "--format", "json"]),
                user,
            )
            .await?;
        let (ok, text) = outcome(&export.stdout);
        if !ok {
            return Err(r.failed(
                "check",
                format!("rabbitmqctl export_definitions: {}", why(&text)),
            ));
        }
        let now = Definitions::parse(text.as_bytes()).map_err(|e| r.failed("check", e))?;
        let missing = backed.missing_from(&now);
        if !missing.is_empty() {
            return Err(r.failed(
                "check",
                format!(
                    "after the import the node lacks {} object(s) of the backup: {}",
                    missing.len(),
                    crate::engine::clean_text(&missing.join("; "))
                ),
            ));
        }
        r.say(format!(
            "the node has every definition of the backup ({})",
            backed.summary()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: &str = r#"{
      "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
      "users": [{"name": "app", "password_hash": "abc=", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}}],
      "vhosts": [{"name": "v", "limits": [], "metadata": {"description": "", "tags": []}}],
      "permissions": [{"user": "app", "vhost": "v", "configure": ".*", "write": ".*", "read": ".*"}],
      "topic_permissions": [], "parameters": [], "global_parameters": [],
      "policies": [{"vhost": "v", "name": "ttl", "pattern": "^ttl\\.", "apply-to": "queues", "definition": {"message-ttl": 60000}, "priority": 0}],
      "queues": [{"name": "orders", "vhost": "v", "durable": true, "auto_delete": false, "arguments": {}},
                 {"name": "ttl.events", "vhost": "v", "durable": true, "auto_delete": false, "arguments": {}}],
      "exchanges": [{"name": "shop", "vhost": "v", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
      "bindings": [{"source": "shop", "vhost": "v", "destination": "orders", "destination_type": "queue", "routing_key": "order.*", "arguments": {}}]
    }"#;

    #[test]
    fn definitions_parsed_and_summed_up() {
        let d = Definitions::parse(DEFS.as_bytes()).unwrap();
        assert_eq!(
            d.summary(),
            "1 vhost, 1 user, 1 permission, 1 policy, 2 queues, 1 exchange, 1 binding"
        );
        assert!(d.missing_from(&d).is_empty());
        let empty = Definitions::parse(b"{}").unwrap();
        assert_eq!(d.missing_from(&empty).len(), 8);
        assert!(empty.missing_from(&d).is_empty());
        assert!(Definitions::parse(b"[1]").is_err());
        assert!(Definitions::parse(br#"{"queues": [{"vhost": "v"}]}"#).is_err());
    }

    #[test]
    fn what_the_node_lacks_is_named() {
        let d = Definitions::parse(DEFS.as_bytes()).unwrap();
        let mut now = d.clone();
        now.queues.retain(|q| q.name != "orders");
        now.bindings.clear();
        now.users[0].password_hash = "other=".into();
        now.permissions[0].read = "^x".into();
        let mut m = d.missing_from(&now);
        m.sort();
        assert_eq!(
            m,
            [
                r#"binding "shop" -> queue "orders" ("order.*") in vhost "v""#,
                r#"permission of "app" in vhost "v" (configure ".*" write ".*" read ".*")"#,
                r#"queue "orders" in vhost "v""#,
                r#"user "app" has another password hash than the backup's"#,
            ]
        );
    }

    #[test]
    fn cli_outcome() {
        assert_eq!(outcome(b"ok\n\n"), (true, "\n".to_string()));
        assert_eq!(
            outcome(b"failed\nError:\nboom\n"),
            (false, "Error:\nboom\n".to_string())
        );
        assert_eq!(outcome(b""), (false, String::new()));
    }
}
