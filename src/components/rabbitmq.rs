//! RabbitMQ: the cluster's definitions (users with their password hashes, vhosts, permissions,
//! topic permissions, parameters, policies, queues, exchanges, bindings) exported by the node
//! itself with `rabbitmqctl export_definitions` (JSON, the format `rabbitmqctl
//! import_definitions` and the management UI take back), the cluster status, and the node's
//! config directory.
//!
//! Definitions are cluster-wide, so this runs once: on the first host of the group whose node
//! is running (`rabbitmq-diagnostics check_running`); a host whose node is down is passed over
//! for the next one. No management plugin or rabbitmqadmin is needed. The CLI needs the node's
//! Erlang cookie: it runs as root (Debian's wrapper switches to the rabbitmq user) unless
//! `rabbitmq_cli_user` says otherwise. The CLI's long error texts are reduced to one line here,
//! in Rust ([`why`]).

use std::collections::BTreeMap;

use super::{Native, NativeRef};
use crate::archive::FailureKind;
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::shell::Script;

pub const SPEC: &str = r#"
name: rabbitmq
description: RabbitMQ definitions (users, vhosts, permissions, queues, exchanges, bindings, policies) and config
groups: [rabbitmq]
hosts: first
requires: [rabbitmqctl, rabbitmq-diagnostics]
vars:
  # empty: the CLI's default node (NODENAME from rabbitmq-env.conf, else rabbit@<short hostname>)
  rabbitmq_node: ""
  # who runs the CLI (it needs the node's Erlang cookie)
  rabbitmq_cli_user: root
  rabbitmq_config_dir: /etc/rabbitmq
not_covered:
  - messages in queues (definitions only, so queues come back empty)
  - the Erlang cookie (/var/lib/rabbitmq/.erlang.cookie) and the node's Mnesia/message store directories
  - the other nodes' config directories (only the node used is copied)
"#;

pub fn make() -> NativeRef {
    NativeRef(std::sync::Arc::new(RabbitMq))
}

struct RabbitMq;

/// Runs `$2` (rabbitmqctl or rabbitmq-diagnostics) with `-n $1` when a node is named, then the
/// rest of the arguments.
const CLI: &str = r#"n=$1; prog=$2; shift 2
if [ -n "$n" ]; then exec "$prog" -n "$n" "$@"; else exec "$prog" "$@"; fi"#;

fn cli(h: &HostCtx<'_>, prog: &str, args: &[&str]) -> (Script, String) {
    let node = h.var("rabbitmq_node");
    let script = Script::new(CLI)
        .arg(node)
        .arg(prog)
        .args(args.iter().copied());
    let mut shown = vec![prog.to_string()];
    if !node.is_empty() {
        shown.extend(["-n".to_string(), node.to_string()]);
    }
    shown.extend(args.iter().map(|a| a.to_string()));
    (script, crate::shell::quote_words(&shown))
}

fn user<'a>(h: &'a HostCtx<'_>) -> Option<&'a str> {
    Some(h.var("rabbitmq_cli_user")).filter(|u| !u.is_empty())
}

/// One line out of the CLI's long error output: the first `Error...` line (with the next line
/// when it is only `Error:`), then the first `  * ` detail in parentheses; else the last line.
pub fn why(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let mut error = String::new();
    let mut detail = String::new();
    let mut last = "";
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if error.is_empty() && l.starts_with("Error") {
            error = l.to_string();
            let bare = l.trim_end().trim_end_matches(':') == "Error";
            if bare && i + 1 < lines.len() {
                error = format!("{} {}", error.trim_end(), lines[i + 1].trim());
                i += 1;
            }
        } else if detail.is_empty()
            && let Some(d) = l.strip_prefix("  * ")
        {
            detail = d.trim_start_matches(['*', ' ']).to_string();
        }
        if !l.trim().is_empty() {
            last = l;
        }
        i += 1;
    }
    if error.is_empty() {
        error = last.to_string();
    }
    if let Some(at) = error.find(" Please see diagnostics") {
        error.truncate(at);
    }
    if !detail.is_empty() {
        error = format!("{error} ({detail})");
    }
    error.trim().to_string()
}

fn node_name(h: &HostCtx<'_>) -> String {
    match h.var("rabbitmq_node") {
        "" => "(default)".to_string(),
        n => n.to_string(),
    }
}

#[async_trait::async_trait]
impl Native for RabbitMq {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let node = match vars.get("rabbitmq_node").map(String::as_str) {
            None | Some("") => "the CLI's default node".to_string(),
            Some(n) => format!("node {n}"),
        };
        let who = vars
            .get("rabbitmq_cli_user")
            .map(String::as_str)
            .unwrap_or("root");
        let config = vars
            .get("rabbitmq_config_dir")
            .map(String::as_str)
            .unwrap_or("/etc/rabbitmq");
        vec![
            format!("select: `rabbitmq-diagnostics check_running` on {node} (as {who})"),
            "versions: rabbitmq-diagnostics server_version, erlang_version; rabbitmqctl version"
                .to_string(),
            "definitions: run `rabbitmqctl export_definitions - --format json` -> definitions.json"
                .to_string(),
            "cluster status: run `rabbitmqctl cluster_status --formatter json` -> cluster_status.json"
                .to_string(),
            format!("config: copy {}", crate::shell::quote(config)),
        ]
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        let (script, shown) = cli(h, "rabbitmq-diagnostics", &["-q", "check_running"]);
        let user = user(h).map(str::to_string);
        let out = h
            .run("select running", &script, user.as_deref(), Some(&shown))
            .await?;
        if out.exit.success() {
            return Ok(None);
        }
        let text = format!("{}\n{}", out.stdout_text(), out.exit.stderr_tail);
        Err(StepError::new(
            FailureKind::CommandFailed,
            format!(
                "RabbitMQ node {} is not running: {}",
                node_name(h),
                why(&text)
            ),
        ))
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let user = user(h).map(str::to_string);
        let user = user.as_deref();
        for (name, prog, args) in [
            (
                "rabbitmq",
                "rabbitmq-diagnostics",
                &["-q", "server_version"][..],
            ),
            ("erlang", "rabbitmq-diagnostics", &["-q", "erlang_version"]),
            ("rabbitmqctl", "rabbitmqctl", &["-q", "version"]),
        ] {
            let (script, shown) = cli(h, prog, args);
            if let Ok(out) = h.run("versions", &script, user, Some(&shown)).await
                && out.exit.success()
            {
                h.version(name, &out.stdout_text());
            }
        }
        for (step, args, entry) in [
            (
                "definitions",
                &["-q", "export_definitions", "-", "--format", "json"][..],
                "definitions.json",
            ),
            (
                "cluster status",
                &["-q", "cluster_status", "--formatter", "json"],
                "cluster_status.json",
            ),
        ] {
            h.step(step);
            let (script, shown) = cli(h, "rabbitmqctl", args);
            if let Err(e) = h.stream(step, &script, user, entry, Some(&shown)).await {
                // The CLI's error is many lines: say it in one.
                let e = match e.kind {
                    FailureKind::CommandFailed => {
                        StepError::new(e.kind, format!("{}: {}", args[1], why(h.last_stderr())))
                    }
                    _ => e,
                };
                h.fail(step, e);
            }
        }
        h.step("config");
        let dir = h.var("rabbitmq_config_dir").to_string();
        h.copy("config", &[dir], false).await.at("config")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::why;

    #[test]
    fn why_makes_one_line_of_the_cli_errors() {
        let out = "Error: unable to perform an operation on node 'rabbit@nope'. Please see diagnostics information and suggestions below.\n\nMost common reasons for this are:\n\n * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)\n\nDIAGNOSTICS\n===========\n\nattempted to contact: [rabbit@nope]\n\n  * unable to connect to epmd (port 4369) on nope: nxdomain (non-existing domain)\n\n";
        assert_eq!(
            why(out),
            "Error: unable to perform an operation on node 'rabbit@nope'. (unable to connect to epmd (port 4369) on nope: nxdomain (non-existing domain))"
        );
        assert_eq!(why("Error:\nsomething broke\n"), "Error: something broke");
        assert_eq!(why("just a line\n\n"), "just a line");
        assert_eq!(why(""), "");
    }
}
