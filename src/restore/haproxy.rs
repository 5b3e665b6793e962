//! Restore HAProxy: the configuration and the certificates it references are put back (each
//! current file kept beside it as `FILE.lsbackup-<time>`), the result is checked with
//! `haproxy -c`, and HAProxy reloads it: `systemctl reload haproxy` when systemd runs it, else a
//! soft restart of the running process (`haproxy -f CFG -p PIDFILE -D -sf OLDPIDS`, what
//! Debian's init script does), trusted only when it runs the installed haproxy binary and a
//! root-owned pid file lists it (any user can start a process named haproxy with a `-p` and `-f`
//! of their choosing). A configuration `haproxy -c` refuses is rolled back.

use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct HaProxy;

/// The running haproxy processes: `pid NUL uid NUL exe NUL cmdline-args NUL ... NUL NUL` per
/// process, after the real path of the `haproxy` the shell finds (first line).
const PROCESSES: &str = r#"b=$(command -v haproxy 2>/dev/null) && readlink -f -- "$b"
echo
for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = haproxy ] || continue
  u=$(stat -c %u -- "$d" 2>/dev/null) || continue
  printf '%s\000%s\000' "${d#/proc/}" "$u"
  readlink -- "$d/exe" 2>/dev/null
  printf '\000'
  cat "$d/cmdline" 2>/dev/null
  printf '\000'
done
exit 0"#;

const CHECK: &str = r#"out=$(haproxy -c -f "$1" 2>&1) && exit 0
printf '%s\n' "$out" | tail -n 5 >&2
exit 1"#;

/// Owner uid and mode (octal) of pid file `$1`, then its content.
const PIDFILE: &str = r#"stat -c '%u %a' -- "$1" || exit 1
exec cat -- "$1""#;

/// The pids a pid file lists, when it is owned by root and writable by no one else (what
/// haproxy writes before it drops its privileges); else None.
pub fn root_pidfile_pids(out: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(out);
    let mut lines = text.lines();
    let (uid, mode) = lines.next()?.split_once(' ')?;
    let mode = u32::from_str_radix(mode.trim(), 8).ok()?;
    if uid != "0" || mode & 0o022 != 0 {
        return None;
    }
    Some(
        lines
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
            .collect(),
    )
}

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

/// Parse [`PROCESSES`]' output: the processes that run the installed haproxy binary. Any user
/// can start one with a command line of their choosing: its `-p` and `-f` are only used once a
/// root-owned pid file lists the process ([`root_pidfile_pids`]).
pub fn parse_processes(out: &[u8]) -> Vec<Process> {
    let (binary, rest) = match out.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&out[..i]).trim().to_string(),
            &out[i + 1..],
        ),
        None => return Vec::new(),
    };
    let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    let mut procs = Vec::new();
    let mut fields = rest.split(|b| *b == 0).peekable();
    while let Some(pid) = fields.next() {
        if pid.is_empty() {
            continue;
        }
        let pid = String::from_utf8_lossy(pid).to_string();
        // the owner's uid: not a test of trust (a root-owned pid file is, see `root_pidfile_pids`)
        let _uid = fields.next();
        // readlink ends its line with a newline
        let exe = fields.next().map(|e| {
            String::from_utf8_lossy(e)
                .trim_end_matches('\n')
                .to_string()
        });
        let trusted = !binary.is_empty() && exe.as_deref() == Some(binary.as_str());
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
        if trusted && pid.bytes().all(|b| b.is_ascii_digit()) {
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
        let running = parse_processes(&out.stdout);
        // Only processes a root-owned pid file lists, and that name that file with -p.
        let mut procs: Vec<Process> = Vec::new();
        let mut pidfile = None;
        for file in running.iter().filter_map(|p| p.pidfile.clone()) {
            if pidfile.is_some() {
                break;
            }
            let listed = r
                .query_status("reload", &Script::new(PIDFILE).arg(file.as_str()), None)
                .await?;
            let Some(pids) = listed
                .exit
                .success()
                .then(|| root_pidfile_pids(&listed.stdout))
                .flatten()
            else {
                continue;
            };
            procs = running
                .iter()
                .filter(|p| pids.contains(&p.pid) && p.pidfile.as_deref() == Some(file.as_str()))
                .cloned()
                .collect();
            if !procs.is_empty() {
                pidfile = Some(file);
            }
        }
        let Some(pidfile) = pidfile else {
            if running.is_empty() {
                r.note("HAProxy is not running: start it to use the restored configuration");
            } else {
                r.note(
                    "no running haproxy is listed in a root-owned pid file (-p) and systemd does not run it: reload it by hand",
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
        let out = b"/usr/sbin/haproxy\n\n\
                    123\x000\0/usr/sbin/haproxy\n\0/usr/sbin/haproxy\0-f\0/etc/haproxy/haproxy.cfg\0-p\0/run/h.pid\0-D\0\0\
                    456\x000\0/usr/sbin/haproxy\0haproxy\0-W\0\0\
                    790\x000\0/tmp/haproxy\0haproxy\0-p\0/etc/passwd\0\0\
                    x;y\x000\0/usr/sbin/haproxy\0evil\0\0";
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

    #[test]
    fn only_root_owned_pid_files_nobody_else_can_write() {
        assert_eq!(
            root_pidfile_pids(b"0 644\n123\n124\n"),
            Some(vec!["123".to_string(), "124".to_string()])
        );
        assert_eq!(root_pidfile_pids(b"1000 644\n123\n"), None);
        assert_eq!(root_pidfile_pids(b"0 666\n123\n"), None);
        assert_eq!(root_pidfile_pids(b"0 664\n123\n"), None);
        assert_eq!(root_pidfile_pids(b"garbage"), None);
    }
}
