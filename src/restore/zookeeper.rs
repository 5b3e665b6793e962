//! Restore ZooKeeper: the data the backup took from one serving node (dataDir, and dataLogDir
//! when set apart: snapshots, transaction logs, myid) replaces the node's data, with the server
//! stopped, then the server is started and lsbackup waits until it serves.
//!
//! 1. zoo.cfg is `zookeeper_config_file`, else the config argument of the server that systemd or
//!    the init script runs, else the first existing one of `zookeeper_config_candidates`; read
//!    with `cat` and parsed here. Its dataDir and dataLogDir (the directories they resolve to on
//!    the host, symlinks followed) are where the data goes back. The backup must hold each of
//!    them: at that path, at the configured path, or behind the symlink it recorded there.
//! 2. Only a standalone server (or an ensemble of one) is restored. With two servers or more
//!    (`server.N` in zoo.cfg or its dynamicConfigFile) the others would hand the restored node
//!    their newer tree as soon as it rejoins: refused before anything is changed (see
//!    docs/components/zookeeper.md for an ensemble).
//! 3. The server is stopped and started the way it runs: systemd's `zookeeper` unit when systemd
//!    has it, else Debian's `/etc/init.d/zookeeper` (start-stop-daemon with the pid file
//!    `/var/run/zookeeper/zookeeper.pid`). A server of this zoo.cfg running outside of them
//!    (started by hand) is refused before anything is changed: it would keep writing the data.
//! 4. Stop, then wait until every server process of this zoo.cfg is gone (at most
//!    [`STOP_TIMEOUT`] s).
//! 5. Each data dir is replaced by the backed-up one ([`HostRestore::put_tree`]): the current
//!    directory is kept beside it as `DIR.lsbackup-<time>`, the new one takes its owner (a data
//!    dir that did not exist is given to `zookeeper_user`).
//! 6. Start, and wait until the server answers the four-letter word `srvr` with a `Mode:` (at most
//!    [`START_TIMEOUT`] s; lsbackup asks it itself through the SSH connection). When putting the
//!    data back failed, the server is started again on the data it had, if its data dirs are all
//!    there.
//!
//! Before the start, the configuration files (zoo.cfg's directory, /etc/zookeeper) are put back
//! too ([`HostRestore::put_config_files`]: each checked, the current one kept beside it as
//! `FILE.lsbackup-<time>`), so the server starts on the configuration of the backup.
//!
//! The helpers at the end (finding a JVM's processes, resolving directories, finding a backed-up
//! directory) serve the Kafka restore too.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::components::jvm::{self, JvmProcess};
use crate::components::zookeeper::locate;
use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct ZooKeeper;

const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// systemd's unit of Debian's zookeeperd and of LambdaStack.
const UNIT: &str = "zookeeper";
/// Debian's init script (package zookeeperd) and the pid file it keeps.
const INIT_SCRIPT: &str = "/etc/init.d/zookeeper";
const PID_FILE: &str = "/var/run/zookeeper/zookeeper.pid";
/// Seconds to wait for the server's process to exit after the stop.
pub const STOP_TIMEOUT: u64 = 120;
/// Seconds to wait for the started server to answer `srvr`.
pub const START_TIMEOUT: u64 = 120;

/// How the server runs: `systemd` then the unit's MainPID (`$1`), `init` then the content of
/// the pid file `$3` of the init script `$2`, or `none`.
const MANAGER: &str = r#"if [ -d /run/systemd/system ] && systemctl cat -- "$1" >/dev/null 2>&1; then
  echo systemd
  exec systemctl show -p MainPID --value -- "$1"
fi
if [ -x "$2" ]; then
  echo init
  cat -- "$3" 2>/dev/null
  exit 0
fi
echo none"#;

/// `$1` stop|start through `$2` (systemd|init): unit `$3`, init script `$4`.
const SERVICE: &str = r#"cd / || exit 1
case $2 in
  systemd) exec systemctl "$1" -- "$3" ;;
  init) exec "$4" "$1" ;;
esac
echo "no way to $1 ZooKeeper" >&2
exit 2"#;

/// Wait until the processes `$2`... are gone, at most `$1` seconds in all.
const WAIT_GONE: &str = r#"t=$1
shift
i=0
for p in "$@"; do
  while s=$(cat "/proc/$p/stat" 2>/dev/null); do
    case $s in *") Z "*|*") X "*) break ;; esac
    if [ "$i" -ge "$t" ]; then
      echo "ZooKeeper (pid $p) still runs ${t}s after the stop" >&2
      exit 1
    fi
    sleep 1
    i=$((i + 1))
  done
done
exit 0"#;

/// The path, NUL, and the content of the first existing regular file of `$@`; exit 4 when none
/// exists.
pub(crate) const READ_FIRST: &str = r#"for f in "$@"; do
  if [ -f "$f" ]; then
    printf '%s\000' "$f"
    exec cat -- "$f"
  fi
done
exit 4"#;

/// The physical directory each of `$@` resolves to (the backup's script).
pub(crate) use crate::components::zookeeper::PHYSICAL as RESOLVE;

/// Exit 0 when every one of `$@` is a directory; else print the first that is not, exit 3.
pub(crate) const DIRS_PRESENT: &str = r#"for d in "$@"; do
  if [ ! -d "$d" ]; then printf '%s' "$d"; exit 3; fi
done
exit 0"#;

/// Give directory `$1` and what is in it to user `$2` (and that user's group).
pub(crate) const CHOWN_TREE: &str = r#"exec chown -R -- "$2:" "$1""#;

/// Candidate pids and one process's facts: the scripts the backup finds JVMs with.
use crate::components::jvm::{CANDIDATES, PROCESS_INFO};

/// How the server is run on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Init,
    None,
}

impl Manager {
    fn word(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd",
            Manager::Init => "init",
            Manager::None => "none",
        }
    }

    fn how(self, action: &str) -> String {
        match self {
            Manager::Systemd => format!("systemctl {action} {UNIT}"),
            Manager::Init => format!("{INIT_SCRIPT} {action}"),
            Manager::None => format!("no way to {action} it"),
        }
    }
}

/// Parse [`MANAGER`]'s output: the manager and the pid it names (the unit's MainPID, the pid
/// file's number; None for 0, nothing, or anything else).
pub fn parse_manager(out: &[u8]) -> (Manager, Option<u32>) {
    let text = String::from_utf8_lossy(out);
    let mut lines = text.splitn(2, '\n');
    let manager = match lines.next().map(str::trim) {
        Some("systemd") => Manager::Systemd,
        Some("init") => Manager::Init,
        _ => Manager::None,
    };
    let pid = lines
        .next()
        .and_then(|rest| rest.lines().next())
        .and_then(|l| l.trim().parse::<u32>().ok())
        .filter(|p| *p > 0);
    (manager, pid)
}

/// The `server.N` entries of a zoo.cfg (or of its dynamic configuration file), sorted.
pub fn ensemble_servers(cfg: &jvm::Properties) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .entries
        .iter()
        .filter_map(|(k, _)| {
            let id = k.strip_prefix("server.")?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| k.clone())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A field of a `srvr` answer (`Mode`, `Zxid`, ...).
pub fn srvr_field(answer: &str, name: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(|v| v.trim().to_string())
}

/// Split [`READ_FIRST`]'s output: the path and the content.
pub(crate) fn split_read_first(out: &[u8]) -> Option<(String, &[u8])> {
    let nul = out.iter().position(|b| *b == 0)?;
    let path = String::from_utf8_lossy(&out[..nul]).to_string();
    path.starts_with('/').then_some((path, &out[nul + 1..]))
}

/// The path a symlink at `link` (relative to the archive's host root) with target `target`
/// points to, relative to the same root; None when it leaves it.
pub(crate) fn link_dest(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = link.split('/').filter(|s| !s.is_empty()).collect();
        p.pop();
        p
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Where the backup holds a directory the host has now: the first of `candidates` (absolute
/// paths: the physical one first, then the configured one) under which `files` (the host's
/// backed-up regular files, relative) has files, following the symlinks the backup recorded
/// (`links`: relative path, target) at most 8 deep. Relative, without a trailing `/`.
pub(crate) fn archived_dir(
    files: &[String],
    links: &[(String, String)],
    candidates: &[&str],
) -> Option<String> {
    for c in candidates {
        let mut rel = c.trim_matches('/').to_string();
        for _ in 0..8 {
            if rel.is_empty() {
                break;
            }
            let prefix = format!("{rel}/");
            if files.iter().any(|f| f.starts_with(&prefix)) {
                return Some(rel);
            }
            match links.iter().find(|(l, _)| *l == rel) {
                Some((l, t)) => match link_dest(l, t) {
                    Some(next) => rel = next,
                    None => break,
                },
                None => break,
            }
        }
    }
    None
}

/// Drop the directories that lie inside another one of the list (replacing the outer one
/// replaces them too); the order is kept.
pub(crate) fn outermost(dirs: &[String]) -> Vec<String> {
    let inside =
        |d: &str, o: &str| d != o && d.starts_with(&format!("{}/", o.trim_end_matches('/')));
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        if out.contains(d) || dirs.iter().any(|o| inside(d, o)) {
            continue;
        }
        out.push(d.clone());
    }
    out
}

/// The processes of root or `user` that have `main` as an argument (best first: `java` ones,
/// then by pid), and the others (never trusted), as the components find them.
pub(crate) async fn find_jvm(
    r: &mut HostRestore<'_>,
    step: &str,
    main: &str,
    user: &str,
) -> Result<(Vec<JvmProcess>, Vec<JvmProcess>), RestoreError> {
    let out = r
        .query(step, &Script::new(CANDIDATES).arg(main).arg(user), None)
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let uid: Option<u32> = lines.next().and_then(|l| l.trim().parse().ok());
    let pids: Vec<u32> = lines
        .filter_map(|l| l.trim().parse().ok())
        .take(32)
        .collect();
    let (mut trusted, mut ignored) = (Vec::new(), Vec::new());
    for pid in pids {
        let out = r
            .query_status(step, &Script::new(PROCESS_INFO).arg(pid.to_string()), None)
            .await?;
        if !out.exit.success() {
            continue; // gone meanwhile
        }
        let Some(p) = jvm::parse_process_info(pid, &out.stdout) else {
            continue;
        };
        if p.args_after(main).is_none() {
            continue;
        }
        if p.owned_by_root_or(uid) {
            trusted.push(p);
        } else {
            ignored.push(p);
        }
    }
    trusted.sort_by_key(|p| (!p.is_java(), p.pid));
    Ok((trusted, ignored))
}

/// The physical directories `paths` resolve to on the host (None: not a directory).
pub(crate) async fn resolve(
    r: &mut HostRestore<'_>,
    step: &str,
    paths: &[String],
) -> Result<Vec<Option<String>>, RestoreError> {
    let out = r
        .query(
            step,
            &Script::new(RESOLVE).args(paths.iter().cloned()),
            None,
        )
        .await?;
    let mut v: Vec<Option<String>> = out
        .stdout
        .split(|b| *b == 0)
        .map(|p| Some(String::from_utf8_lossy(p).to_string()).filter(|p| p.starts_with('/')))
        .collect();
    v.truncate(paths.len());
    v.resize(paths.len(), None);
    Ok(v)
}

/// Read the first existing file of `paths` on the host: its path and bytes, None when none
/// exists.
pub(crate) async fn read_first(
    r: &mut HostRestore<'_>,
    step: &str,
    paths: &[String],
) -> Result<Option<(String, Vec<u8>)>, RestoreError> {
    let out = r
        .query_status(
            step,
            &Script::new(READ_FIRST).args(paths.iter().cloned()),
            None,
        )
        .await?;
    match out.exit.code {
        Some(0) => split_read_first(&out.stdout)
            .map(|(p, b)| Some((p, b.to_vec())))
            .ok_or_else(|| r.failed(step, "unreadable answer")),
        Some(4) => Ok(None),
        _ => Err(r.failed(step, crate::engine::exit_text(&out.exit))),
    }
}

/// One directory to put back: the backup's relative path, the host's directory, whether it
/// exists there now.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub rel: String,
    pub dest: String,
    pub exists: bool,
}

/// Map the host's directories `configured` to the backup's: each must be held by it.
/// `what` names them in errors ("dataDir", "log dir").
pub(crate) async fn plan_trees(
    r: &mut HostRestore<'_>,
    step: &str,
    what: &str,
    configured: &[String],
) -> Result<Vec<Tree>, RestoreError> {
    let physical = resolve(r, step, configured).await?;
    let files: Vec<String> = r.files_under("").into_iter().map(|(_, rel)| rel).collect();
    let links = r.links();
    let mut trees: Vec<Tree> = Vec::new();
    for (dir, phys) in configured.iter().zip(physical) {
        let dest = phys.clone().unwrap_or_else(|| dir.clone());
        let mut candidates = vec![dest.as_str()];
        if dir != &dest {
            candidates.push(dir.as_str());
        }
        let Some(rel) = archived_dir(&files, &links, &candidates) else {
            return Err(r.failed(
                step,
                format!(
                    "{what} {dir}{}: the backup holds nothing of it (moved? restore it by hand from `lsbackup extract --only {}`)",
                    if dir != &dest {
                        format!(" (on the host: {dest})")
                    } else {
                        String::new()
                    },
                    r.component()
                ),
            ));
        };
        if trees.iter().any(|t| t.dest == dest) {
            continue;
        }
        trees.push(Tree {
            rel,
            dest,
            exists: phys.is_some(),
        });
    }
    let keep = outermost(&trees.iter().map(|t| t.dest.clone()).collect::<Vec<_>>());
    trees.retain(|t| keep.contains(&t.dest));
    Ok(trees)
}

/// Put the trees back (each new directory given to `owner`). Stops at the first failure.
pub(crate) async fn put_trees(
    r: &mut HostRestore<'_>,
    trees: &[Tree],
    owner: &str,
) -> Result<(), RestoreError> {
    for t in trees {
        r.put_tree(&t.rel, &t.dest).await?;
        if !t.exists {
            r.change(
                "put directory",
                &format!("give {} to {owner} (it did not exist)", t.dest),
                &Script::new(CHOWN_TREE).arg(t.dest.as_str()).arg(owner),
                None,
            )
            .await?;
        }
    }
    Ok(())
}

/// After a failed [`put_trees`]: whether every data directory is still there (None), else the
/// first one missing.
pub(crate) async fn missing_dir(
    r: &mut HostRestore<'_>,
    trees: &[Tree],
) -> Result<Option<String>, RestoreError> {
    let out = r
        .query_status(
            "check",
            &Script::new(DIRS_PRESENT).args(trees.iter().map(|t| t.dest.clone())),
            None,
        )
        .await?;
    Ok(match out.exit.code {
        Some(0) => None,
        _ => Some(out.stdout_text()),
    })
}

/// Ask `srvr` on `addr:port` as the host sees it (10 s at most).
async fn srvr(r: &HostRestore<'_>, addr: &str, port: u16) -> Result<String, String> {
    let ask = async {
        let mut conn = r
            .session
            .connect_tcp(addr, port)
            .await
            .map_err(|e| e.to_string())?;
        conn.write_all(b"srvr")
            .await
            .map_err(|e| format!("sending srvr: {e}"))?;
        let mut answer = Vec::new();
        (&mut conn)
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("reading the srvr answer: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&answer).to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), ask).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 10s".into()),
    }
}

struct Server {
    manager: Manager,
    /// The server processes of this zoo.cfg running now.
    running: Vec<JvmProcess>,
    addr: String,
    port: u16,
}

impl ZooKeeper {
    async fn start(&self, r: &mut HostRestore<'_>, s: &Server) -> Result<(), RestoreError> {
        let step = "start";
        r.change(
            step,
            &format!("start ZooKeeper ({})", s.manager.how("start")),
            &Script::new(SERVICE)
                .arg("start")
                .arg(s.manager.word())
                .arg(UNIT)
                .arg(INIT_SCRIPT),
            None,
        )
        .await?;
        let target = format!("{}:{}", s.addr, s.port);
        if r.is_dry_run() {
            r.say(format!(
                "would wait until it answers srvr on {target} (at most {START_TIMEOUT}s)"
            ));
            return Ok(());
        }
        let t = Instant::now();
        let mut last: String;
        loop {
            match srvr(r, &s.addr, s.port).await {
                Ok(a) if a.contains("Mode: ") => {
                    let mode = srvr_field(&a, "Mode").unwrap_or_default();
                    let zxid = srvr_field(&a, "Zxid").unwrap_or_default();
                    let nodes = srvr_field(&a, "Node count").unwrap_or_default();
                    r.say(format!(
                        "ZooKeeper serves on {target} again after {}s (Mode: {mode}, Zxid: {zxid}, Node count: {nodes})",
                        t.elapsed().as_secs()
                    ));
                    return Ok(());
                }
                Ok(a) => last = a.lines().next().unwrap_or("no answer").trim().to_string(),
                Err(e) => last = e,
            }
            if t.elapsed() >= Duration::from_secs(START_TIMEOUT) {
                return Err(r.failed(
                    step,
                    format!(
                        "ZooKeeper does not serve on {target} {START_TIMEOUT}s after the start (srvr: {last}; see its log, e.g. /var/log/zookeeper)"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[async_trait::async_trait]
impl Restore for ZooKeeper {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let user = r.var("zookeeper_user").to_string();

        // how the server runs, and its processes
        let step = "service";
        let out = r
            .query(
                step,
                &Script::new(MANAGER)
                    .arg(UNIT)
                    .arg(INIT_SCRIPT)
                    .arg(PID_FILE),
                None,
            )
            .await?;
        let (manager, managed_pid) = parse_manager(&out.stdout);
        let (procs, ignored) = find_jvm(r, step, MAIN, &user).await?;
        for p in &ignored {
            r.say(jvm::ignored_note(MAIN, &user, p));
        }
        let managed = managed_pid.and_then(|pid| procs.iter().find(|p| p.pid == pid).cloned());

        // zoo.cfg
        let step = "config";
        let set = r.var("zookeeper_config_file").trim().to_string();
        let candidates: Vec<String> = if !set.is_empty() {
            vec![set]
        } else {
            managed
                .as_ref()
                .and_then(|p| p.config_arg(MAIN))
                .into_iter()
                .chain(
                    r.var("zookeeper_config_candidates")
                        .split_whitespace()
                        .map(str::to_string),
                )
                .collect()
        };
        let Some((cfg_path, bytes)) = read_first(r, step, &candidates).await? else {
            return Err(r.failed(
                step,
                format!("no zoo.cfg on the host (none of {})", candidates.join(" ")),
            ));
        };
        let cfg = jvm::parse_properties(&jvm::decode(&bytes));
        let loc = locate(
            &cfg,
            r.var("zookeeper_client_port"),
            r.var("zookeeper_default_data_dir"),
        )
        .map_err(|e| r.failed(step, format!("{cfg_path}: {e}")))?;
        let mut servers = ensemble_servers(&cfg);
        if let Some(dynamic) = cfg.get_nonempty("dynamicConfigFile") {
            let dynamic = dynamic.to_string();
            if let Some((_, b)) = read_first(r, step, std::slice::from_ref(&dynamic)).await? {
                servers.extend(ensemble_servers(&jvm::parse_properties(&jvm::decode(&b))));
                servers.sort();
                servers.dedup();
            }
        }
        if servers.len() > 1 {
            return Err(r.failed(
                "ensemble",
                format!(
                    "{cfg_path} makes this server one of an ensemble of {} ({}): the others would hand it their newer tree as soon as it rejoins; an ensemble is restored by hand (all servers stopped, see docs/components/zookeeper.md); nothing was changed",
                    servers.len(),
                    servers.join(", ")
                ),
            ));
        }

        // the server processes of this zoo.cfg, and who can stop them
        let running: Vec<JvmProcess> = procs
            .iter()
            .filter(|p| {
                Some(p.pid) == managed_pid || p.config_arg(MAIN).as_deref() == Some(&cfg_path)
            })
            .cloned()
            .collect();
        let pids = |v: &[JvmProcess]| {
            v.iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let step = "service";
        match manager {
            Manager::None => {
                return Err(r.failed(
                    step,
                    format!(
                        "neither systemd's {UNIT} unit nor {INIT_SCRIPT} is on the host: lsbackup cannot stop and start ZooKeeper{}; nothing was changed",
                        if running.is_empty() {
                            String::new()
                        } else {
                            format!(" (it runs: pid {})", pids(&running))
                        }
                    ),
                ));
            }
            _ if !running.is_empty() && managed.is_none() => {
                return Err(r.failed(
                    step,
                    format!(
                        "ZooKeeper runs (pid {}) but not as {} (started by hand?): it would keep writing its data; stop it, then restore again; nothing was changed",
                        pids(&running),
                        match manager {
                            Manager::Systemd => format!("systemd's {UNIT} unit"),
                            _ => format!("{INIT_SCRIPT}'s server (pid file {PID_FILE})"),
                        }
                    ),
                ));
            }
            _ => {}
        }

        // the data dirs, as the backup holds them
        let mut dirs = vec![loc.data_dir.clone()];
        dirs.extend(loc.data_log_dir.clone());
        let trees = plan_trees(r, "data", "data dir", &dirs).await?;
        r.say(format!(
            "zoo.cfg: {cfg_path} (dataDir {}{}); its directory's files are put back before the start",
            loc.data_dir,
            loc.data_log_dir
                .as_deref()
                .map(|d| format!(", dataLogDir {d}"))
                .unwrap_or_default()
        ));
        let server = Server {
            manager,
            running,
            addr: loc.addr.clone(),
            port: loc.port,
        };

        // stop
        let step = "stop";
        if server.running.is_empty() {
            r.say("ZooKeeper is not running");
        } else {
            r.change(
                step,
                &format!(
                    "stop ZooKeeper (pid {}, {})",
                    pids(&server.running),
                    manager.how("stop")
                ),
                &Script::new(SERVICE)
                    .arg("stop")
                    .arg(manager.word())
                    .arg(UNIT)
                    .arg(INIT_SCRIPT),
                None,
            )
            .await?;
            r.change(
                step,
                &format!(
                    "wait until pid {} exits (at most {STOP_TIMEOUT}s)",
                    pids(&server.running)
                ),
                &Script::new(WAIT_GONE)
                    .arg(STOP_TIMEOUT.to_string())
                    .args(server.running.iter().map(|p| p.pid.to_string())),
                None,
            )
            .await?;
        }

        // the data, then start
        if let Err(e) = put_trees(r, &trees, &user).await {
            match missing_dir(r, &trees).await {
                Ok(None) => match self.start(r, &server).await {
                    Ok(()) => r.note("ZooKeeper was started again on the data it had"),
                    Err(s) => r.note(format!("ZOOKEEPER IS NOT RUNNING: {s}")),
                },
                Ok(Some(d)) => r.note(format!(
                    "ZOOKEEPER NOT STARTED: its data dir {d} is missing (the previous one is kept as {d}.{})",
                    r.keep_suffix()
                )),
                Err(c) => r.note(format!("ZOOKEEPER NOT STARTED: {c}")),
            }
            return Err(e);
        }
        // the configuration, read at the start that follows
        let conf_dir = cfg_path
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let config = r
            .put_config_files(&[conf_dir, "/etc/zookeeper".to_string()])
            .await;
        let started = self.start(r, &server).await;
        match config {
            Ok(done) if done.iter().any(|(_, p)| *p != Put::Unchanged) => r.note(
                "the configuration was put back too: if its dataDir differs from the one restored, move the data there",
            ),
            Ok(_) => {}
            Err(e) => {
                started?;
                return Err(e);
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(s: &Script) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(s.to_shell())
            .output()
            .unwrap()
    }

    #[test]
    fn manager_and_pid_parsed() {
        assert_eq!(
            parse_manager(b"systemd\n1234\n"),
            (Manager::Systemd, Some(1234))
        );
        assert_eq!(parse_manager(b"systemd\n0\n"), (Manager::Systemd, None));
        assert_eq!(parse_manager(b"init\n777\n"), (Manager::Init, Some(777)));
        // an empty, missing or garbled pid file names no process
        assert_eq!(parse_manager(b"init\n"), (Manager::Init, None));
        assert_eq!(parse_manager(b"init\n12x\n34\n"), (Manager::Init, None));
        assert_eq!(parse_manager(b"none\n"), (Manager::None, None));
        assert_eq!(parse_manager(b""), (Manager::None, None));
    }

    #[test]
    fn ensemble_servers_of_zoo_cfg() {
        let cfg = jvm::parse_properties(
            "dataDir=/d\nserver.1=zk1:2888:3888\nserver.2 = zk2:2888:3888\nserver.x=no\nserver.=no\nserver.1=again\n",
        );
        assert_eq!(ensemble_servers(&cfg), ["server.1", "server.2"]);
        let standalone = jvm::parse_properties("dataDir=/d\nclientPort=2181\n");
        assert!(ensemble_servers(&standalone).is_empty());
    }

    #[test]
    fn srvr_fields() {
        let a = "Zookeeper version: 3.8.0-5a02a05, built on 2022-02-25\nLatency min/avg/max: 0/0.0/0\nZxid: 0x2000000a5\nMode: standalone\nNode count: 131\n";
        assert_eq!(srvr_field(a, "Mode").as_deref(), Some("standalone"));
        assert_eq!(srvr_field(a, "Zxid").as_deref(), Some("0x2000000a5"));
        assert_eq!(srvr_field(a, "Node count").as_deref(), Some("131"));
        assert_eq!(srvr_field(a, "Nope"), None);
    }

    #[test]
    fn backed_up_dirs_found_through_recorded_symlinks() {
        let files: Vec<String> = [
            "var/lib/zookeeper/version-2/snapshot.0",
            "data/zk/version-2/log.1",
            "etc/zookeeper/conf_example/zoo.cfg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let links = vec![
            ("srv/zk".to_string(), "../data/zk".to_string()),
            ("opt/zk".to_string(), "/srv/zk".to_string()),
            ("bad".to_string(), "../../../x".to_string()),
        ];
        let found = |c: &[&str]| archived_dir(&files, &links, c);
        assert_eq!(
            found(&["/var/lib/zookeeper/"]).as_deref(),
            Some("var/lib/zookeeper")
        );
        // the physical path first, then the configured one through its recorded link (chains too)
        assert_eq!(found(&["/data/zk", "/srv/zk"]).as_deref(), Some("data/zk"));
        assert_eq!(
            found(&["/new/place", "/opt/zk"]).as_deref(),
            Some("data/zk")
        );
        // a prefix of a name is not a directory; a link out of the root; nothing held
        assert_eq!(found(&["/var/lib/zoo"]), None);
        assert_eq!(found(&["/bad"]), None);
        assert_eq!(found(&["/"]), None);
        assert_eq!(found(&["/etc/zookeeper/conf_example/zoo.cfg"]), None);
        assert_eq!(link_dest("a/b/c", "../d/./e").as_deref(), Some("a/d/e"));
        assert_eq!(link_dest("a/b", "/x/y").as_deref(), Some("x/y"));
        assert_eq!(link_dest("a", "../../x"), None);
    }

    #[test]
    fn nested_dirs_put_back_once() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            outermost(&v(&[
                "/var/lib/zk/log",
                "/var/lib/zk",
                "/var/lib/zk2",
                "/var/lib/zk"
            ])),
            v(&["/var/lib/zk", "/var/lib/zk2"])
        );
    }

    #[test]
    fn host_scripts_run_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data $(touch x)");
        std::fs::create_dir(&d).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let f = d.join("zoo.cfg");
        std::fs::write(&f, "dataDir=/d\n").unwrap();
        let s = |p: &std::path::Path| p.display().to_string();

        let out = sh(&Script::new(RESOLVE).arg(s(&link)).arg("/nonexistent"));
        let parts: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(
            parts[0],
            std::fs::canonicalize(&d)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
        );
        assert_eq!(parts[1], b"");

        let out = sh(&Script::new(READ_FIRST).arg("/nonexistent").arg(s(&f)));
        assert!(out.status.success());
        let (path, content) = split_read_first(&out.stdout).unwrap();
        assert_eq!(
            (path.as_str(), content),
            (s(&f).as_str(), &b"dataDir=/d\n"[..])
        );
        let out = sh(&Script::new(READ_FIRST).arg("/nonexistent").arg(s(&d)));
        assert_eq!(out.status.code(), Some(4));

        let out = sh(&Script::new(DIRS_PRESENT).arg(s(&d)).arg(s(&link)));
        assert!(out.status.success());
        let out = sh(&Script::new(DIRS_PRESENT).arg(s(&d)).arg("/nonexistent/x"));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"/nonexistent/x");

        // no systemd unit and no init script here: "none"; the stop/start refuses "none"
        let out = sh(&Script::new(MANAGER)
            .arg("lsbackup-no-such-unit")
            .arg("/nonexistent/init")
            .arg("/nonexistent/pid"));
        assert_eq!(parse_manager(&out.stdout), (Manager::None, None));
        let out = sh(&Script::new(SERVICE)
            .arg("stop")
            .arg("none")
            .arg(UNIT)
            .arg(INIT_SCRIPT));
        assert_eq!(out.status.code(), Some(2));

        // waiting for processes: one that exits, one that does not
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let out = sh(&Script::new(WAIT_GONE).arg("1").arg(pid.clone()));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("still runs 1s"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            sh(&Script::new(WAIT_GONE).arg("5").arg(pid))
                .status
                .success()
        );

        // process candidates and their info: this test process itself
        let me = std::process::id().to_string();
        let out = sh(&Script::new(PROCESS_INFO).arg(me.clone()));
        let p = jvm::parse_process_info(std::process::id(), &out.stdout).unwrap();
        assert!(!p.args.is_empty());
        let out = sh(&Script::new(CANDIDATES)
            .arg(p.args[0].clone())
            .arg("lsbackup-no-such-user"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(text.lines().next(), Some("-"));
        assert!(text.lines().any(|l| l == me), "{text}");
        assert!(!dir.path().join("x").exists());
    }
}
