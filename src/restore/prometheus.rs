//! Restore Prometheus: the configuration files, then the TSDB from the backup's snapshot.
//!
//! 1. The running server is found, not guessed: the `prometheus` processes of the host (read
//!    from `/proc`: pid, user, working directory, executable, output file, open-files limit and
//!    command line), each one's data dir and config file taken from its `--storage.tsdb.path` and
//!    `--config.file` (resolved against its working directory; when a flag is absent, the
//!    default its own executable prints with `--help`, run as the process's own user: a local
//!    user's program named `prometheus` never runs as root). The server restored is the one whose
//!    data dir is the backup's (`<data dir>/snapshots/<name>/...` in the archive).
//! 2. The config files (those under the config file's directory and `/etc/prometheus`) are put
//!    back, each current file kept beside it as `FILE.lsbackup-<time>`; when one changed, the
//!    result is checked with `promtool check config` (when installed) and a configuration it
//!    refuses is rolled back before anything is stopped.
//! 3. With a snapshot in the backup: Prometheus is stopped (`systemctl stop prometheus` when
//!    systemd runs it; else SIGTERM to the process found, waited for up to two minutes, never
//!    killed), the data dir is replaced by the snapshot's blocks (the current one kept beside it
//!    as `DIR.lsbackup-<time>`, its owner given to the new one), and Prometheus is started again
//!    the way it ran: `systemctl start prometheus`, or its recorded command line executed again
//!    as its user and group, in its working directory, in a new session, with its open-files
//!    limit, its output appended to the file it wrote to when that user may write there (else
//!    discarded), and a minimal environment (PATH, HOME, USER, LOGNAME; the names of other
//!    variables it had are said, never their values). The command line read from `/proc` only
//!    ever travels as positional parameters. A pid file of Debian's init script
//!    (`/run/prometheus/prometheus.pid`) that named the old process is given the new pid. Then
//!    `GET /-/ready` is awaited (up to five minutes). A failed replace starts Prometheus again
//!    on what is there.
//! 4. Without a snapshot (the admin API was off at backup time), changed config files are
//!    reloaded: `systemctl reload prometheus` or SIGHUP, then `GET /api/v1/status/runtimeinfo`
//!    must report the reload successful, else the previous files are put back and reloaded.
//!
//! A Prometheus that does not run has its files and data dir replaced, and a note says to start
//! it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Method;
use serde::Deserialize;

use crate::components::prometheus::{parse_flags, valid_snapshot_name};
use crate::http::HttpClient;
use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct Prometheus;

const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping Prometheus is waited for (it writes its head block out).
const STOP_SECS: u32 = 120;
/// How long a started Prometheus may take to answer `/-/ready` (it loads its blocks).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a reload may take to show in `runtimeinfo`.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The systemd unit of Debian's package (and LambdaStack's).
const UNIT: &str = "prometheus";
/// Environment variables every process has; others are named when they are not carried over.
const USUAL_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "PWD",
    "SHELL",
    "TERM",
    "LANG",
    "SHLVL",
    "OLDPWD",
    "_",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
];

/// The `prometheus` processes: per process the NUL-terminated fields pid, `uid:gid`, cwd, exe,
/// stdout target, `/proc/PID/limits`, the byte lengths of its command line and of its
/// environment, then the command line and the environment themselves (NUL-separated). Only the
/// environment's variable names are kept, in lsbackup ([`parse_processes`]).
const PROCESSES: &str = r#"for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = prometheus ] || continue
  c=$(wc -c <"$d/cmdline" 2>/dev/null) || continue
  [ "$c" -gt 0 ] || continue
  e=$(wc -c <"$d/environ" 2>/dev/null) || e=0
  printf '%s\000' "${d#/proc/}" "$(stat -c %u:%g "$d" 2>/dev/null)" "$(readlink "$d/cwd" 2>/dev/null)" \
    "$(readlink "$d/exe" 2>/dev/null)" "$(readlink "$d/fd/1" 2>/dev/null)" "$(cat "$d/limits" 2>/dev/null)" \
    "$c" "$e"
  head -c "$c" "$d/cmdline"
  head -c "$e" "$d/environ" 2>/dev/null
done
exit 0"#;

/// The help of the executable `$3` (defaults of its flags), run as the process's own user `$1`
/// and group `$2` (no other groups): an executable found in `/proc` is whatever a local user
/// started under the name `prometheus`, and never runs as root unless root started it.
const HELP: &str = r#"uid=$1 gid=$2 exe=$3
[ "$uid" = 0 ] && exec "$exe" --help 2>&1
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$exe" --help 2>&1"#;

/// `name:...:home:...` of uid `$1`, if any.
const PASSWD: &str = r#"getent passwd "$1" || exit 0"#;

const SYSTEMD_ACTIVE: &str = r#"[ -d /run/systemd/system ] && systemctl is-active --quiet -- "$1""#;

const PROMTOOL: &str = r#"command -v promtool >/dev/null 2>&1 || { echo absent; exit 0; }
out=$(promtool check config "$1" 2>&1) && exit 0
printf '%s\n' "$out" | tail -n 5 >&2
exit 1"#;

/// SIGTERM process `$1` (still the executable `$2`), wait up to `$3` seconds for it to end.
const STOP: &str = r#"pid=$1 exe=$2 secs=$3
if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$exe" ]; then
  echo "process $pid is no longer the Prometheus found" >&2
  exit 1
fi
kill -TERM "$pid" || exit 1
i=0
while [ -d "/proc/$pid" ]; do
  st=
  while read -r k v _; do
    if [ "$k" = State: ]; then st=$v; break; fi
  done 2>/dev/null <"/proc/$pid/status"
  [ "$st" = Z ] && break
  i=$((i + 1))
  if [ "$i" -gt $((secs * 5)) ]; then
    echo "Prometheus (pid $pid) did not stop within ${secs}s; it was not killed" >&2
    exit 1
  fi
  sleep 0.2
done"#;

/// SIGHUP process `$1` (still the executable `$2`): reload its configuration.
const HUP: &str = r#"if [ "$(readlink "/proc/$1/exe" 2>/dev/null)" != "$2" ]; then
  echo "process $1 is no longer the Prometheus found" >&2
  exit 1
fi
exec kill -HUP "$1""#;

/// Start Prometheus again as it ran: `$1` uid, `$2` gid, `$3` user name (empty: no passwd
/// entry), `$4` home, `$5` working directory, `$6` output file (empty: none), `$7`/`$8` soft/hard
/// open-files limit (empty: unchanged), `$9` the old pid (for the pid file); then the
/// executable and its arguments. Prints the new pid and where its output goes.
const START: &str = r#"uid=$1 gid=$2 name=$3 home=$4 cwd=$5 log=$6 soft=$7 hard=$8 old=$9
shift 9
if [ -n "$hard" ]; then ulimit -H -n "$hard" || echo "open-files hard limit $hard not set" >&2; fi
if [ -n "$soft" ]; then ulimit -S -n "$soft" || echo "open-files soft limit $soft not set" >&2; fi
cd -- "$cwd" || exit 1
if [ -n "$name" ]; then groups=--init-groups; else groups=--clear-groups; fi
out=/dev/null
if [ -n "$log" ] && setpriv --reuid="$uid" --regid="$gid" "$groups" -- \
    sh -c '[ -f "$1" ] && : >>"$1"' sh "$log" 2>/dev/null; then
  out=$log
fi
setsid setpriv --reuid="$uid" --regid="$gid" "$groups" -- \
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" USER="$name" LOGNAME="$name" \
  sh -c 'out=$1; shift; exec "$@" >>"$out" 2>&1' sh "$out" "$@" </dev/null >/dev/null 2>&1 3>&- &
pid=$!
i=0
while [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$1" ]; do
  if [ ! -d "/proc/$pid" ]; then echo "it exited at once (output: $out)" >&2; exit 1; fi
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then echo "pid $pid did not become $1 within 10s" >&2; exit 1; fi
  sleep 0.1
done
pf=/run/prometheus/prometheus.pid
if [ -f "$pf" ] && [ "$(cat "$pf" 2>/dev/null)" = "$old" ]; then
  printf '%s\n' "$pid" >"$pf" || echo "$pf not updated" >&2
fi
printf '%s\n%s\n' "$pid" "$out""#;

/// Exit 0 while process `$1` runs (not a zombie).
const ALIVE: &str = r#"[ -d "/proc/$1" ] || exit 3
while read -r k v _; do
  if [ "$k" = State: ]; then [ "$v" = Z ] && exit 3; exit 0; fi
done 2>/dev/null <"/proc/$1/status"
exit 3"#;

/// One running Prometheus, from [`PROCESSES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    /// `/proc/PID/exe` as read (may end in ` (deleted)` after a package upgrade).
    pub exe: String,
    /// Where its stdout goes (a path, `pipe:[...]`, `/dev/null`, ...).
    pub stdout: String,
    /// Soft and hard open-files limits (`unlimited` or a number).
    pub nofile: Option<(String, String)>,
    /// Names of its environment variables.
    pub env_names: Vec<String>,
    /// Its command line, `argv[0]` first.
    pub args: Vec<String>,
}

/// Parse [`PROCESSES`]' output.
pub fn parse_processes(out: &[u8]) -> Result<Vec<Process>, String> {
    let mut procs = Vec::new();
    let mut rest = out;
    let field = |rest: &mut &[u8]| -> Result<String, String> {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or("the process list is cut short")?;
        let f = String::from_utf8_lossy(&rest[..end]).into_owned();
        *rest = &rest[end + 1..];
        Ok(f)
    };
    while !rest.is_empty() {
        let pid = field(&mut rest)?;
        let ids = field(&mut rest)?;
        let cwd = field(&mut rest)?;
        let exe = field(&mut rest)?;
        let stdout = field(&mut rest)?;
        let limits = field(&mut rest)?;
        let len = field(&mut rest)?;
        let env_len = field(&mut rest)?;
        let pid: u32 = pid.parse().map_err(|_| format!("bad pid {pid:?}"))?;
        let (uid, gid) = ids
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
            .ok_or_else(|| format!("process {pid}: bad owner {ids:?}"))?;
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("process {pid}: bad command line length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("process {pid}: the command line is cut short"));
        }
        let env_len: usize = env_len
            .trim()
            .parse()
            .map_err(|_| format!("process {pid}: bad environment length {env_len:?}"))?;
        let cmdline = &rest[..len];
        rest = &rest[len..];
        if rest.len() < env_len {
            return Err(format!("process {pid}: the environment is cut short"));
        }
        // names only: the values are dropped here
        let env_names = rest[..env_len]
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let name = kv.split(|b| *b == b'=').next()?;
                (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
            })
            .collect();
        rest = &rest[env_len..];
        let args = cmdline
            .strip_suffix(b"\0")
            .unwrap_or(cmdline)
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        procs.push(Process {
            pid,
            uid,
            gid,
            cwd,
            exe,
            stdout,
            nofile: parse_nofile(&limits),
            env_names,
            args,
        });
    }
    Ok(procs)
}

/// Soft and hard "Max open files" of a `/proc/PID/limits` text.
pub fn parse_nofile(limits: &str) -> Option<(String, String)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..].split_whitespace();
    let ok = |s: &str| s == "unlimited" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let soft = v.next().filter(|s| ok(s))?.to_string();
    let hard = v.next().filter(|s| ok(s))?.to_string();
    Some((soft, hard))
}

/// The value of the long flag `name` (`--name=v` or `--name v`) in a command line; the last
/// one wins, as with kingpin.
pub fn flag_value(args: &[String], name: &str) -> Option<String> {
    let mut found = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix(name) {
            if let Some(v) = v.strip_prefix('=') {
                found = Some(v.to_string());
            } else if v.is_empty() {
                found = it.next().cloned();
            }
        }
    }
    found
}

/// The default of the flag `name` in a kingpin `--help` text: `--name="value"`.
pub fn help_default(help: &str, name: &str) -> Option<String> {
    let start = format!("{name}=\"");
    help.lines().find_map(|l| {
        let l = l.trim_start();
        let v = l.strip_prefix(&start)?;
        Some(v[..v.rfind('"')?].to_string())
    })
}

/// `p` made absolute against `base` and normalized (no `.`, `..`, empty parts or trailing `/`).
pub fn absolute(base: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{base}/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn dirname(p: &str) -> String {
    match p.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((d, _)) => d.to_string(),
    }
}

/// The snapshot the backup holds, from its files' relative paths: `(data dir, snapshot dir)`,
/// e.g. `("/var/lib/prometheus/metrics2", "var/lib/prometheus/metrics2/snapshots/2026...-ab")`.
/// None when it holds none; an error when it holds more than one.
pub fn snapshot_in(rels: &[String]) -> Result<Option<(String, String)>, String> {
    let mut found: Option<String> = None;
    for rel in rels {
        let parts: Vec<&str> = rel.split('/').collect();
        let Some(i) = (0..parts.len().saturating_sub(2))
            .find(|&i| parts[i] == "snapshots" && valid_snapshot_name(parts[i + 1]))
        else {
            continue;
        };
        let dir = parts[..i + 2].join("/");
        match &found {
            Some(f) if *f != dir => {
                return Err(format!("the backup holds two snapshots: {f} and {dir}"));
            }
            _ => found = Some(dir),
        }
    }
    Ok(found.map(|dir| {
        let data = dir
            .rsplitn(3, '/')
            .nth(2)
            .map(|d| absolute("/", d))
            .unwrap_or_else(|| "/".to_string());
        (data, dir)
    }))
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Debug, Deserialize)]
struct RuntimeInfo {
    #[serde(rename = "reloadConfigSuccess", default)]
    reload_config_success: bool,
    #[serde(rename = "lastConfigTime", default)]
    last_config_time: String,
}

/// `(reloadConfigSuccess, lastConfigTime)` of a runtimeinfo answer.
pub fn parse_runtimeinfo(body: &[u8]) -> Option<(bool, String)> {
    let e: Envelope<RuntimeInfo> = serde_json::from_slice(body).ok()?;
    let d = e.data?;
    Some((d.reload_config_success, d.last_config_time))
}

/// A running Prometheus with what it uses.
#[derive(Debug, Clone)]
struct Server {
    p: Process,
    data: String,
    config: String,
}

impl Server {
    fn exe_path(&self) -> String {
        self.p
            .exe
            .strip_suffix(" (deleted)")
            .unwrap_or(&self.p.exe)
            .to_string()
    }
}

/// How Prometheus runs: what stop and start use.
enum Runner {
    Systemd,
    Process(Box<Server>),
    NotRunning,
}

/// A flag of a process's command line, else the default its executable prints.
async fn flag_or_default(
    r: &mut HostRestore<'_>,
    helps: &mut BTreeMap<String, String>,
    p: &Process,
    flag: &str,
) -> Result<String, RestoreError> {
    if let Some(v) = flag_value(&p.args, flag) {
        return Ok(v);
    }
    let key = format!("{}:{}:{}", p.uid, p.gid, p.exe);
    if !helps.contains_key(&key) {
        let exe = p.exe.strip_suffix(" (deleted)").unwrap_or(&p.exe);
        let script = Script::new(HELP)
            .arg(p.uid.to_string())
            .arg(p.gid.to_string())
            .arg(exe);
        let h = r.query_status("find Prometheus", &script, None).await?;
        helps.insert(key.clone(), String::from_utf8_lossy(&h.stdout).into());
    }
    Ok(help_default(&helps[&key], flag).unwrap_or_default())
}

/// The running Prometheus servers of the host with their data dir and config file.
async fn servers(r: &mut HostRestore<'_>) -> Result<Vec<Server>, RestoreError> {
    let out = r
        .query("find Prometheus", &Script::new(PROCESSES), None)
        .await?;
    let procs = parse_processes(&out.stdout).map_err(|e| r.failed("find Prometheus", e))?;
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut v = Vec::new();
    for p in procs {
        let data = flag_or_default(r, &mut helps, &p, "--storage.tsdb.path").await?;
        let config = flag_or_default(r, &mut helps, &p, "--config.file").await?;
        if data.is_empty() || !p.cwd.starts_with('/') {
            continue;
        }
        let config = if config.is_empty() {
            String::new()
        } else {
            absolute(&p.cwd, &config)
        };
        v.push(Server {
            data: absolute(&p.cwd, &data),
            config,
            p,
        });
    }
    Ok(v)
}

#[async_trait::async_trait]
impl Restore for Prometheus {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let rels: Vec<String> = r.files_under("").into_iter().map(|(_, rel)| rel).collect();
        let snapshot = snapshot_in(&rels).map_err(|e| r.failed("backup", e))?;
        let client = r.api_client("prometheus", API_TIMEOUT).await?;
        let flags = match client.send(Method::GET, "/api/v1/status/flags", None).await {
            Ok(resp) if resp.status.is_success() => parse_flags(&resp.body).ok(),
            _ => None,
        };
        let servers = servers(r).await?;

        // The server restored: the one using the backup's data dir, else (no snapshot) the one
        // whose config file the backup holds.
        let server = match &snapshot {
            Some((data, _)) => {
                let mut same: Vec<&Server> = servers.iter().filter(|s| s.data == *data).collect();
                if same.len() > 1 {
                    return Err(r.failed(
                        "find Prometheus",
                        format!(
                            "{} processes use the data dir {data}: pids {}",
                            same.len(),
                            same.iter()
                                .map(|s| s.p.pid.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                same.pop().cloned()
            }
            None => servers
                .iter()
                .find(|s| {
                    !s.config.is_empty() && r.entry(s.config.trim_start_matches('/')).is_some()
                })
                .cloned(),
        };
        let systemd = r
            .query_status(
                "find Prometheus",
                &Script::new(SYSTEMD_ACTIVE).arg(UNIT),
                None,
            )
            .await?
            .exit
            .success();
        let others: Vec<String> = servers
            .iter()
            .map(|s| format!("pid {} uses {}", s.p.pid, s.data))
            .collect();
        let runner = match (&server, systemd) {
            (None, true) if !servers.is_empty() && snapshot.is_some() => {
                return Err(r.failed(
                    "find Prometheus",
                    format!(
                        "systemd runs Prometheus (unit {UNIT}) but no process uses this backup's data dir ({}): {}",
                        snapshot.as_ref().map_or("-", |(d, _)| d.as_str()),
                        others.join("; ")
                    ),
                ));
            }
            (_, true) => Runner::Systemd,
            (Some(s), false) => Runner::Process(Box::new(s.clone())),
            (None, false) => Runner::NotRunning,
        };
        match &runner {
            Runner::Systemd => r.say(format!("Prometheus runs under systemd (unit {UNIT})")),
            Runner::Process(s) => r.say(format!(
                "Prometheus runs as pid {} (uid {}, data dir {}, config {})",
                s.p.pid, s.p.uid, s.data, s.config
            )),
            Runner::NotRunning => r.say(format!(
                "no Prometheus of this backup runs on this host{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (others: {})", others.join("; "))
                }
            )),
        }

        // config files
        let config = server
            .as_ref()
            .map(|s| s.config.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| {
                flags
                    .as_ref()
                    .map(|f| f.config.clone())
                    .filter(|c| c.starts_with('/'))
            })
            .unwrap_or_else(|| r.var("prometheus_config_file").trim().to_string());
        let mut roots = vec![dirname(&config)];
        if !roots.contains(&"/etc/prometheus".to_string()) {
            roots.push("/etc/prometheus".to_string());
        }
        let skip: Vec<&str> = snapshot.iter().map(|(_, d)| d.as_str()).collect();
        let done = r.put_files(&roots, &skip).await?;
        let changed = done.iter().any(|(_, p)| *p != Put::Unchanged);
        if changed {
            if r.is_dry_run() {
                r.say(format!(
                    "would check the configuration (promtool check config {config})"
                ));
            } else {
                let check = r
                    .query_status("check", &Script::new(PROMTOOL).arg(config.as_str()), None)
                    .await?;
                if !check.exit.success() {
                    let why = crate::engine::exit_text(&check.exit);
                    r.undo(&done).await;
                    return Err(r.failed(
                        "check",
                        format!(
                            "promtool refused the restored configuration, which was rolled back: {why}"
                        ),
                    ));
                }
                if check.stdout_text() == "absent" {
                    r.say("promtool is not installed: the configuration is checked by Prometheus itself");
                } else {
                    r.say(format!(
                        "checked the configuration (promtool check config {config})"
                    ));
                }
            }
        }

        let Some((data, snap)) = snapshot else {
            r.say("the backup holds no TSDB snapshot (the admin API was off): the data dir is left alone");
            if changed {
                self.reload(r, &client, &runner, &done).await?;
            }
            return Ok(());
        };

        if let Runner::Process(s) = &runner {
            let extra: Vec<&str> =
                s.p.env_names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| !USUAL_ENV.contains(n) && !n.starts_with("LC_"))
                    .collect();
            if !extra.is_empty() {
                r.note(format!(
                    "Prometheus had environment variables that its restart does not carry over: {}",
                    extra.join(", ")
                ));
            }
        }
        self.stop(r, &runner).await?;
        let put = r.put_tree(&snap, &data).await;
        let started = self.start(r, &client, &runner).await;
        put?;
        started?;
        if r.is_dry_run() {
            return Ok(());
        }
        r.note(format!(
            "the previous data dir is kept as {data}.{}: remove it once the restored metrics are checked",
            r.keep_suffix()
        ));
        Ok(())
    }
}

impl Prometheus {
    async fn stop(&self, r: &mut HostRestore<'_>, runner: &Runner) -> Result<(), RestoreError> {
        match runner {
            Runner::Systemd => {
                r.change(
                    "stop",
                    &format!("stop Prometheus (systemctl stop {UNIT})"),
                    &Script::new(r#"exec systemctl stop -- "$1""#).arg(UNIT),
                    None,
                )
                .await?;
            }
            Runner::Process(s) => {
                r.change(
                    "stop",
                    &format!(
                        "stop Prometheus (SIGTERM to pid {}, waited for up to {STOP_SECS}s)",
                        s.p.pid
                    ),
                    &Script::new(STOP)
                        .arg(s.p.pid.to_string())
                        .arg(s.p.exe.as_str())
                        .arg(STOP_SECS.to_string()),
                    None,
                )
                .await?;
            }
            Runner::NotRunning => {}
        }
        Ok(())
    }

    async fn start(
        &self,
        r: &mut HostRestore<'_>,
        client: &HttpClient,
        runner: &Runner,
    ) -> Result<(), RestoreError> {
        let mut pid = None;
        match runner {
            Runner::NotRunning => {
                r.note("Prometheus was not running: start it to serve the restored data");
                return Ok(());
            }
            Runner::Systemd => {
                r.change(
                    "start",
                    &format!("start Prometheus (systemctl start {UNIT})"),
                    &Script::new(r#"exec systemctl start -- "$1""#).arg(UNIT),
                    None,
                )
                .await?;
            }
            Runner::Process(s) => {
                let pw = r
                    .query("start", &Script::new(PASSWD).arg(s.p.uid.to_string()), None)
                    .await?
                    .stdout_text();
                let f: Vec<&str> = pw.split(':').collect();
                let (name, home) = if f.len() >= 7 {
                    (f[0].to_string(), f[5].to_string())
                } else {
                    (String::new(), "/".to_string())
                };
                let (soft, hard) = s.p.nofile.clone().unwrap_or_default();
                let log = if s.p.stdout.starts_with('/') && !s.p.stdout.ends_with(" (deleted)") {
                    s.p.stdout.clone()
                } else {
                    String::new()
                };
                let exe = s.exe_path();
                let log_shown = log.clone();
                let shown = crate::shell::quote_words(
                    std::iter::once(exe.clone()).chain(s.p.args.iter().skip(1).cloned()),
                );
                let out = r
                    .change(
                        "start",
                        &format!(
                            "start Prometheus as {} in {}: {}",
                            if name.is_empty() {
                                format!("uid {}", s.p.uid)
                            } else {
                                name.clone()
                            },
                            s.p.cwd,
                            crate::engine::clean_text(&shown)
                        ),
                        &Script::new(START)
                            .arg(s.p.uid.to_string())
                            .arg(s.p.gid.to_string())
                            .arg(name)
                            .arg(home)
                            .arg(s.p.cwd.as_str())
                            .arg(log_shown)
                            .arg(soft)
                            .arg(hard)
                            .arg(s.p.pid.to_string())
                            .arg(exe)
                            .args(s.p.args.iter().skip(1).cloned()),
                        None,
                    )
                    .await?;
                if let Some(out) = out {
                    let text = out.stdout_text();
                    let mut lines = text.lines();
                    pid = lines.next().map(str::to_string);
                    let output = lines.next().unwrap_or("/dev/null").to_string();
                    r.say(format!(
                        "Prometheus runs as pid {}, its output goes to {output}",
                        pid.as_deref().unwrap_or("?")
                    ));
                    if output == "/dev/null" && !log.is_empty() {
                        r.note(format!(
                            "Prometheus wrote its output to {log}, which its user may not append to: the restarted one's output is discarded"
                        ));
                    }
                }
            }
        }
        if r.is_dry_run() {
            r.say("would wait for Prometheus to be ready (GET /-/ready)");
            return Ok(());
        }
        let started = Instant::now();
        loop {
            if let Ok(resp) = client.send(Method::GET, "/-/ready", None).await
                && resp.status.is_success()
            {
                r.say(format!(
                    "Prometheus is ready after {}s",
                    started.elapsed().as_secs()
                ));
                return Ok(());
            }
            if let Some(pid) = &pid {
                let alive = r
                    .query_status("start", &Script::new(ALIVE).arg(pid.as_str()), None)
                    .await?;
                if !alive.exit.success() {
                    return Err(r.failed(
                        "start",
                        format!("Prometheus (pid {pid}) exited after its start: see its output"),
                    ));
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(r.failed(
                    "start",
                    format!(
                        "Prometheus did not answer /-/ready within {}s",
                        READY_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Reload the configuration (no restart) and check that Prometheus took it; else put the
    /// previous files back and reload again.
    async fn reload(
        &self,
        r: &mut HostRestore<'_>,
        client: &HttpClient,
        runner: &Runner,
        done: &[(String, Put)],
    ) -> Result<(), RestoreError> {
        let before = runtimeinfo(client).await;
        let script = match runner {
            Runner::NotRunning => {
                r.note("Prometheus is not running: start it to use the restored configuration");
                return Ok(());
            }
            Runner::Systemd => {
                r.change(
                    "reload",
                    &format!("reload Prometheus (systemctl reload {UNIT})"),
                    &Script::new(r#"exec systemctl reload -- "$1""#).arg(UNIT),
                    None,
                )
                .await?;
                Script::new(r#"exec systemctl reload -- "$1""#).arg(UNIT)
            }
            Runner::Process(s) => {
                let hup = Script::new(HUP)
                    .arg(s.p.pid.to_string())
                    .arg(s.p.exe.as_str());
                r.change(
                    "reload",
                    &format!("reload Prometheus (SIGHUP to pid {})", s.p.pid),
                    &hup,
                    None,
                )
                .await?;
                hup
            }
        };
        if r.is_dry_run() {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match runtimeinfo(client).await {
                Some((true, t)) if before.as_ref().is_none_or(|(_, b)| *b != t) => {
                    r.say("Prometheus loaded the restored configuration");
                    return Ok(());
                }
                Some((false, _)) => {
                    r.undo(done).await;
                    let _ = r.query_status("reload", &script, None).await;
                    return Err(r.failed(
                        "reload",
                        "Prometheus refused the restored configuration; the previous files were put back and reloaded",
                    ));
                }
                _ => {}
            }
            if started.elapsed() > RELOAD_TIMEOUT {
                return Err(r.failed(
                    "reload",
                    format!(
                        "Prometheus did not report a reload within {}s (GET /api/v1/status/runtimeinfo)",
                        RELOAD_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn runtimeinfo(client: &HttpClient) -> Option<(bool, String)> {
    let resp = client
        .send(Method::GET, "/api/v1/status/runtimeinfo", None)
        .await
        .ok()?;
    parse_runtimeinfo(&resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str], cmdline: &[u8], environ: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in fields {
            v.extend(f.as_bytes());
            v.push(0);
        }
        for n in [cmdline.len(), environ.len()] {
            v.extend(n.to_string().as_bytes());
            v.push(0);
        }
        v.extend(cmdline);
        v.extend(environ);
        v
    }

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            32768                524288               files     \n";

    #[test]
    fn processes_parsed_with_their_command_lines() {
        let mut out = record(
            &[
                "123",
                "998:997",
                "/",
                "/usr/bin/prometheus",
                "/var/log/prometheus/prometheus.log",
                LIMITS,
            ],
            b"/usr/bin/prometheus\0--config.file=/etc/p.yml\0\0--x\0$(touch y)\0",
            b"PATH=/bin\0HOME=/x\0HTTP_PROXY=http://u:secret@p\nFAKE=1\0",
        );
        out.extend(record(
            &[
                "7",
                "0:0",
                "/opt/p dir",
                "/usr/bin/prometheus (deleted)",
                "pipe:[5]",
                "",
            ],
            b"prometheus\0",
            b"",
        ));
        let p = parse_processes(&out).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].pid, 123);
        assert_eq!((p[0].uid, p[0].gid), (998, 997));
        assert_eq!(
            p[0].args,
            [
                "/usr/bin/prometheus",
                "--config.file=/etc/p.yml",
                "",
                "--x",
                "$(touch y)"
            ]
        );
        assert_eq!(p[0].nofile, Some(("32768".into(), "524288".into())));
        assert_eq!(p[0].env_names, ["PATH", "HOME", "HTTP_PROXY"]);
        assert_eq!(p[1].cwd, "/opt/p dir");
        assert_eq!(p[1].args, ["prometheus"]);
        assert_eq!(p[1].nofile, None);
        assert!(p[1].env_names.is_empty());
        assert!(parse_processes(&out[..out.len() - 3]).is_err());
        assert!(parse_processes(b"x\0").is_err());
        assert_eq!(parse_processes(b"").unwrap(), vec![]);
    }

    #[test]
    fn flags_and_defaults() {
        let args: Vec<String> = [
            "prometheus",
            "--storage.tsdb.path",
            "data",
            "--config.file=a.yml",
            "--storage.tsdb.path.x=no",
            "--config.file=b.yml",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            flag_value(&args, "--storage.tsdb.path").as_deref(),
            Some("data")
        );
        assert_eq!(flag_value(&args, "--config.file").as_deref(), Some("b.yml"));
        assert_eq!(flag_value(&args, "--web.config.file"), None);
        let help = "usage: prometheus [<flags>]\n\nFlags:\n      --config.file=\"/etc/prometheus/prometheus.yml\"  \n                                 Prometheus configuration file path.\n      --storage.tsdb.path=\"/var/lib/prometheus/metrics2/\"  \n                                 Base path for metrics storage.\n";
        assert_eq!(
            help_default(help, "--storage.tsdb.path").as_deref(),
            Some("/var/lib/prometheus/metrics2/")
        );
        assert_eq!(
            help_default(help, "--config.file").as_deref(),
            Some("/etc/prometheus/prometheus.yml")
        );
        assert_eq!(help_default(help, "--web.config.file"), None);
        assert_eq!(absolute("/opt/x", "data/"), "/opt/x/data");
        assert_eq!(absolute("/opt/x", "../y/./z"), "/opt/y/z");
        assert_eq!(
            absolute("/", "/var/lib/prometheus/metrics2/"),
            "/var/lib/prometheus/metrics2"
        );
        assert_eq!(
            parse_nofile(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(("unlimited".into(), "unlimited".into()))
        );
        assert_eq!(parse_nofile("Max open files  1;rm  2  files"), None);
    }

    #[test]
    fn the_snapshot_and_its_data_dir_from_the_entries() {
        let n = "20261205T130102Z-1a2b3c4d5e6f7a8b";
        let rels: Vec<String> = vec![
            "etc/prometheus/prometheus.yml".into(),
            format!("var/lib/prometheus/metrics2/snapshots/{n}/01HX/index"),
            format!("var/lib/prometheus/metrics2/snapshots/{n}/01HX/chunks/000001"),
        ];
        assert_eq!(
            snapshot_in(&rels).unwrap(),
            Some((
                "/var/lib/prometheus/metrics2".to_string(),
                format!("var/lib/prometheus/metrics2/snapshots/{n}")
            ))
        );
        assert_eq!(snapshot_in(&rels[..1]).unwrap(), None);
        let other = "20261205T130103Z-00";
        let mut two = rels.clone();
        two.push(format!("data/snapshots/{other}/x/index"));
        assert!(snapshot_in(&two).is_err());
        // not snapshot names, and a name as the last part (a file) is not a snapshot dir
        let none: Vec<String> = vec![
            "x/snapshots/../y/index".into(),
            format!("x/snapshots/{n}"),
            "x/snapshots/latest/index".into(),
        ];
        assert_eq!(snapshot_in(&none).unwrap(), None);
    }

    fn sh(script: &Script) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script.to_shell())
            .output()
            .unwrap()
    }

    /// The host scripts run by a real `sh` against a process named `prometheus`: found with its
    /// command line (hostile text kept as data) and only its environment's names, alive,
    /// stopped by SIGTERM.
    #[test]
    fn host_scripts_find_and_stop_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("prometheus");
        std::fs::write(&exe, "#!/bin/sh\nwhile :; do sleep 0.1; done\n").unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&exe)
            .status()
            .unwrap();
        let hostile = format!(
            "--storage.tsdb.path={}/$(touch x) data",
            dir.path().display()
        );
        /// Killed on drop, also when an assertion fails.
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Child(
            std::process::Command::new(&exe)
                .arg(&hostile)
                .arg("")
                .env("LSB_TEST_SECRET", "value-never-read")
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let mut found = None;
        for _ in 0..50 {
            let out = sh(&Script::new(PROCESSES));
            assert!(out.status.success());
            let procs = parse_processes(&out.stdout).unwrap();
            found = procs.into_iter().find(|p| p.pid == pid);
            if found.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let p = found.expect("the process is found");
        // a script: `/bin/sh SCRIPT ARGS...`
        assert_eq!(
            p.args[1..],
            [exe.display().to_string(), hostile.clone(), String::new()]
        );
        assert_eq!(p.cwd, dir.path().display().to_string());
        assert!(p.env_names.iter().any(|n| n == "LSB_TEST_SECRET"));
        assert!(!format!("{p:?}").contains("value-never-read"));
        assert_eq!(
            flag_value(&p.args, "--storage.tsdb.path").unwrap(),
            format!("{}/$(touch x) data", dir.path().display())
        );
        let alive = |pid: u32| {
            sh(&Script::new(ALIVE).arg(pid.to_string()))
                .status
                .success()
        };
        assert!(alive(pid));
        // a wrong executable: refused, nothing signalled
        let st = sh(&Script::new(STOP)
            .arg(pid.to_string())
            .arg("/bin/false")
            .arg("5"));
        assert!(!st.status.success());
        assert!(alive(pid));
        let st = sh(&Script::new(STOP)
            .arg(pid.to_string())
            .arg(p.exe.as_str())
            .arg("5"));
        assert!(st.status.success(), "{st:?}");
        assert!(!alive(pid));
        drop(child);
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn runtimeinfo_parsed() {
        let b = br#"{"status":"success","data":{"startTime":"2026-12-06T20:00:00Z","reloadConfigSuccess":true,"lastConfigTime":"2026-12-06T20:00:01Z"}}"#;
        assert_eq!(
            parse_runtimeinfo(b),
            Some((true, "2026-12-06T20:00:01Z".to_string()))
        );
        let b =
            br#"{"status":"success","data":{"reloadConfigSuccess":false,"lastConfigTime":"x"}}"#;
        assert_eq!(parse_runtimeinfo(b), Some((false, "x".to_string())));
        assert_eq!(parse_runtimeinfo(b"<html>"), None);
    }
}
