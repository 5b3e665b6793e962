//! Restore HAProxy: the configuration and the certificates it references are put back (each
//! current file kept beside it as `FILE.lsbackup-<time>`), the result is checked with
//! `haproxy -c`, and HAProxy reloads it: `systemctl reload haproxy` when systemd runs it, else a
//! soft restart of the running process (`haproxy -f CFG -p PIDFILE -D -sf OLDPIDS`, what
//! Debian's init script does). A configuration `haproxy -c` refuses is rolled back.

use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct HaProxy;

/// The running haproxy processes: `pid NUL cmdline-args NUL ... NUL NUL` per process.
const PROCESSES: &str = r#"for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = haproxy ] || continue
  printf '%s\000' "${d#/proc/}"
  cat "$d/cmdline" 2>/dev/null
  printf '\000'
done
exit 0"#;

const CHECK: &str = r#"out=$(haproxy -c -f "$1" 2>&1) && exit 0
printf '%s\n' "$out" | tail -n 5 >&2
exit 1"#;

const SYSTEMD_ACTIVE: &str = r#"[ -d /run/systemd/system ] && systemctl is-active --quiet -- "$1""#;

/// Soft restart: a new process reads the configuration, then tells the old ones (`$3`...) to
/// finish their connections and exit.
const SOFT_RESTART: &str = r#"cfg=$1 pidfile=$2
shift 2
exec haproxy -f "$cfg" -p "$pidfile" -D -sf "$@""#;

/// One running haproxy: its pid and the `-p` pid file and `-f` config of its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: String,
    pub pidfile: Option<String>,
    pub config: Option<String>,
}

/// Parse [`PROCESSES`]' output.
pub fn parse_processes(out: &[u8]) -> Vec<Process> {
    let mut procs = Vec::new();
    let mut fields = out.split(|b| *b == 0).peekable();
    while let Some(pid) = fields.next() {
        if pid.is_empty() {
            continue;
        }
        let pid = String::from_utf8_lossy(pid).to_string();
        let mut args = Vec::new();
        for f in fields.by_ref() {
            if f.is_empty() {
                break;
            }
            args.push(String::from_utf8_lossy(f).to_string());
        }
        let after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
        };
        if pid.bytes().all(|b| b.is_ascii_digit()) {
            procs.push(Process {
                pidfile: after("-p"),
                config: after("-f"),
                pid,
            });
        }
    }
    procs
}

#[async_trait::async_trait]
impl Restore for HaProxy {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let dir = r
            .var("haproxy_config_dir")
            .trim_end_matches('/')
            .to_string();
        let cfg = format!("{dir}/haproxy.cfg");
        let roots = vec![
            dir.clone(),
            r.var("haproxy_ssl_dir").to_string(),
            "/etc/ssl".to_string(),
            "/etc/pki".to_string(),
            "/etc/letsencrypt".to_string(),
        ];
        let done = r.put_files(&roots, &[]).await?;
        if done.iter().all(|(_, p)| *p == Put::Unchanged) {
            r.say("HAProxy's files are as backed up: nothing to reload");
            return Ok(());
        }
        // Checked with the files in place (the certificates it loads included).
        if r.is_dry_run() {
            r.say(format!(
                "would check the configuration (haproxy -c -f {cfg})"
            ));
        } else {
            let check = r
                .query_status("check", &Script::new(CHECK).arg(cfg.as_str()), None)
                .await?;
            if !check.exit.success() {
                let why = crate::engine::exit_text(&check.exit);
                r.undo(&done).await;
                return Err(r.failed(
                    "check",
                    format!("haproxy -c refused the restored configuration, which was rolled back: {why}"),
                ));
            }
            r.say(format!("checked the configuration (haproxy -c -f {cfg})"));
        }
        let unit = "haproxy";
        let systemd = r
            .query_status("reload", &Script::new(SYSTEMD_ACTIVE).arg(unit), None)
            .await?;
        if systemd.exit.success() {
            r.change(
                "reload",
                "reload HAProxy (systemctl reload haproxy)",
                &Script::new(r#"exec systemctl reload -- "$1""#).arg(unit),
                None,
            )
            .await?;
            return Ok(());
        }
        let out = r.query("reload", &Script::new(PROCESSES), None).await?;
        let procs = parse_processes(&out.stdout);
        let Some(pidfile) = procs.iter().find_map(|p| p.pidfile.clone()) else {
            if procs.is_empty() {
                r.note("HAProxy is not running: start it to use the restored configuration");
            } else {
                r.note(
                    "HAProxy runs without a pid file (-p) and not under systemd: reload it by hand",
                );
            }
            return Ok(());
        };
        let config = procs
            .iter()
            .find_map(|p| p.config.clone())
            .unwrap_or_else(|| cfg.clone());
        let pids: Vec<String> = procs.iter().map(|p| p.pid.clone()).collect();
        r.change(
            "reload",
            &format!(
                "reload HAProxy (haproxy -f {config} -p {pidfile} -D -sf {})",
                pids.join(" ")
            ),
            &Script::new(SOFT_RESTART)
                .arg(config.as_str())
                .arg(pidfile.as_str())
                .args(pids),
            None,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_parsed_from_nul_separated_lists() {
        let out = b"123\0/usr/sbin/haproxy\0-f\0/etc/haproxy/haproxy.cfg\0-p\0/run/h.pid\0-D\0\0\
                    456\0haproxy\0-W\0\0x;y\0evil\0\0";
        let p = parse_processes(out);
        assert_eq!(
            p,
            vec![
                Process {
                    pid: "123".into(),
                    pidfile: Some("/run/h.pid".into()),
                    config: Some("/etc/haproxy/haproxy.cfg".into()),
                },
                Process {
                    pid: "456".into(),
                    pidfile: None,
                    config: None,
                },
            ]
        );
    }
}
