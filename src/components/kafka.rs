//! Kafka: every broker's log dirs (topic-partition folders: .log/.index/.timeindex segments,
//! checkpoints, meta.properties) and its config dir; one broker at a time when brokers are
//! stopped for the copy.
//!
//! The broker is found as `kafka-server-stop.sh` finds it, by the main class argument
//! `kafka.Kafka` on a process's command line (`/proc`), but only a process of root or
//! `kafka_user` is believed: any local user can start a process whose arguments say
//! `kafka.Kafka /x$(cmd)`. Its config file (the argument after `kafka.Kafka`, plus any
//! `--override key=value`) is read with `cat` and parsed here (Java properties); `log.dirs`,
//! `log.dir` and `listeners` come from it. Nothing read from the host becomes shell text.
//!
//! With `kafka_stop_broker=true` each broker is stopped (systemd when it manages the broker,
//! else `bin/kafka-server-stop.sh`), lsbackup waits for the broker's process to exit (by its
//! pid, `kafka_stop_timeout`), copies, and the cleanup (which runs whatever happened: a failed
//! or timed-out stop, a failed copy, Ctrl-C) starts it again and waits until it accepts
//! connections on its listener (`kafka_start_timeout`). A failed start fails the cleanup, which
//! stops the one-at-a-time loop: no further broker is stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jvm;
use super::{Native, NativeRef};
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::shell::Script;

pub const SPEC: &str = r#"
name: kafka
description: Kafka broker log dirs (topic partitions) and config of every broker
groups: [kafka]
hosts: all
serial: "{{ kafka_stop_broker }}"
vars:
  kafka_home: /opt/kafka
  kafka_config_dir: /opt/kafka/config
  # empty: the running broker's config file (the argument after kafka.Kafka on its command line),
  # else <kafka_config_dir>/server.properties
  kafka_config_file: ""
  # empty: read log.dirs / log.dir from the config file; kafka_default_log_dirs when absent there
  kafka_log_dirs: ""
  kafka_default_log_dirs: /var/lib/kafka
  # empty: the port of the first `listeners` entry of the config file, else 9092
  kafka_port: ""
  kafka_stop_broker: "false"
  kafka_service: kafka
  # the broker process is only believed when it runs as root or this user; the broker is started
  # as this user when there is no systemd unit
  kafka_user: kafka
  kafka_stop_timeout: "300"
  kafka_start_timeout: "300"
not_covered:
  - consistency across brokers (each broker is copied at its own moment; replicas are restored by Kafka's replication)
  - the ZooKeeper metadata (topics, ACLs, broker registrations), which the zookeeper component takes
  - the systemd unit and JVM options (recreated by the deployment)
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(Kafka))
}

const MAIN: &str = "kafka.Kafka";

/// Manifest note of a copy taken while the broker ran.
pub const TAKEN_WHILE_RUNNING: &str = "taken while running: the broker was running during the copy (set kafka_stop_broker=true for a consistent copy)";
/// Manifest note of a broker stopped for the copy.
pub const STOPPED: &str = "broker stopped for the copy (kafka_stop_broker=true)";

// state kept for the cleanup (HostCtx::set_var)
/// The pid of the broker lsbackup asked to stop.
const STOP_PID: &str = "kafka__stop_pid";
/// `requested` (stop command started), `sent` (it succeeded), `failed` (it failed: the
/// broker was not asked), `stopped` (the process exited).
const STOP_STATE: &str = "kafka__stop_state";
const CONFIG_FILE: &str = "kafka__config_file";
const LISTENER: &str = "kafka__listener";

struct Kafka;

/// What the broker's config says, with lsbackup's variables applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub log_dirs: Vec<String>,
    /// Where to check that the broker listens: (address as the host sees it, port).
    pub listener: (String, u16),
}

/// Log dirs and listener from the broker's properties (`log.dirs`, else `log.dir`; the first
/// `listeners` entry) and the variables `kafka_log_dirs`, `kafka_default_log_dirs`,
/// `kafka_port` (which win when set).
pub fn broker_config(
    props: &jvm::Properties,
    log_dirs_var: &str,
    default_log_dirs: &str,
    port_var: &str,
) -> Result<BrokerConfig, String> {
    let list = |s: &str, seps: &[char]| -> Vec<String> {
        s.split(seps)
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut log_dirs = list(log_dirs_var, &[',', ' ', '\t', '\n']);
    if log_dirs.is_empty() {
        let v = props
            .get_nonempty("log.dirs")
            .or_else(|| props.get_nonempty("log.dir"));
        log_dirs = v.map(|v| list(v, &[','])).unwrap_or_default();
    }
    if log_dirs.is_empty() {
        log_dirs = list(default_log_dirs, &[',', ' ', '\t', '\n']);
    }
    if let Some(d) = log_dirs.iter().find(|d| !d.starts_with('/')) {
        return Err(format!("log dir {d:?} is not an absolute path"));
    }
    // PLAINTEXT://host:9092,SSL://:9093 -> ("host", 9092)
    let (mut host, mut port) = (String::new(), 9092u16);
    if let Some(first) = props
        .get_nonempty("listeners")
        .and_then(|l| l.split(',').next())
    {
        let hostport = first.trim().rsplit("://").next().unwrap_or("");
        if let Some((h, p)) = hostport.rsplit_once(':') {
            host = h.trim_start_matches('[').trim_end_matches(']').to_string();
            port = p
                .trim()
                .parse()
                .map_err(|_| format!("listeners: {first:?} has no port number"))?;
        }
    }
    if !port_var.trim().is_empty() {
        port = port_var
            .trim()
            .parse()
            .map_err(|_| format!("kafka_port {port_var:?} is not a port number"))?;
    }
    if matches!(host.as_str(), "" | "0.0.0.0" | "::" | "0:0:0:0:0:0:0:0") {
        host = "127.0.0.1".into();
    }
    Ok(BrokerConfig {
        log_dirs,
        listener: (host, port),
    })
}

/// `2.8.1 (Scala 2.12)` from the core jar's name `kafka_2.12-2.8.1.jar`.
pub fn jar_version(name: &str) -> Option<String> {
    let rest = name.strip_prefix("kafka_")?.strip_suffix(".jar")?;
    let (scala, version) = rest.split_once('-')?;
    let ok = |s: &str, first_digit: bool| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_digit() || c == '.')
            && (!first_digit || s.starts_with(|c: char| c.is_ascii_digit()))
    };
    (ok(scala, false) && ok(version, true)).then(|| format!("{version} (Scala {scala})"))
}

/// The `--override key=value` arguments after the config file on Kafka's command line.
pub fn overrides(args_after_main: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = args_after_main.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--override"
            && let Some(kv) = it.next()
            && let Some((k, v)) = kv.split_once('=')
        {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

const LIBS: &str = r#"for f in "$1"/libs/kafka_*.jar; do
  [ -e "$f" ] && printf '%s\000' "${f##*/}"
done
exit 0"#;

/// Stop the broker: systemd when it runs the unit, else the distribution's stop script (which,
/// like the real one, returns at once).
pub(crate) const STOP: &str = r#"if [ -d /run/systemd/system ] && systemctl is-active --quiet -- "$1" 2>/dev/null; then
  exec systemctl stop -- "$1"
fi
s=$2/bin/kafka-server-stop.sh
if [ ! -x "$s" ]; then
  echo "no systemd unit $1 active and no $s" >&2
  exit 1
fi
exec "$s""#;

/// Exit 0 while process `$1` exists (and is not a zombie).
const ALIVE: &str = r#"s=$(cat "/proc/$1/stat" 2>/dev/null) || exit 1
case $s in *") Z "*|*") X "*) exit 1 ;; esac
exit 0"#;

/// Wait until process `$1` is gone, at most `$2` seconds.
pub(crate) const WAIT_EXIT: &str = r#"i=0
while s=$(cat "/proc/$1/stat" 2>/dev/null); do
  case $s in *") Z "*|*") X "*) break ;; esac
  if [ "$i" -ge "$2" ]; then
    echo "the broker (pid $1) is still running $2s after the stop request" >&2
    exit 1
  fi
  sleep 1
  i=$((i + 1))
done
exit 0"#;

/// Start the broker: systemd when it has the unit, else `kafka-server-start.sh -daemon CONFIG`
/// (as `$4` when running as root and that user exists).
pub(crate) const START: &str = r#"cd / || exit 1
if [ -d /run/systemd/system ] && systemctl cat -- "$1" >/dev/null 2>&1; then
  exec systemctl start -- "$1"
fi
s=$2/bin/kafka-server-start.sh
if [ ! -x "$s" ]; then
  echo "no systemd unit $1 and no $s" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && [ "$4" != root ] && id -u -- "$4" >/dev/null 2>&1; then
  exec runuser -u "$4" -- "$s" -daemon "$3"
fi
exec "$s" -daemon "$3""#;

fn seconds(h: &HostCtx<'_>, var: &str) -> Result<u64, StepError> {
    h.var(var).trim().parse().map_err(|_| {
        StepError::config(format!("{var} {:?} is not a number of seconds", h.var(var)))
    })
}

async fn alive(h: &mut HostCtx<'_>, step: &str, pid: &str) -> Result<bool, StepError> {
    let out = h
        .run(
            step,
            &Script::new(ALIVE).arg(pid),
            None,
            Some(&format!("test -e /proc/{pid}")),
        )
        .await?;
    Ok(out.exit.success())
}

#[async_trait::async_trait]
impl Native for Kafka {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let cfg = if v("kafka_config_file").is_empty() {
            format!(
                "config file: the running broker's ({MAIN} argument, processes of root or {}), else {}/server.properties",
                v("kafka_user"),
                v("kafka_config_dir")
            )
        } else {
            format!("config file: {}", v("kafka_config_file"))
        };
        let dirs = if v("kafka_log_dirs").is_empty() {
            format!(
                "copy: log.dirs (else log.dir) of the config file, else {}",
                v("kafka_default_log_dirs")
            )
        } else {
            format!("copy: {}", v("kafka_log_dirs"))
        };
        let mut lines = vec![
            cfg,
            dirs,
            format!(
                "copy: {} (and the config file when elsewhere)",
                v("kafka_config_dir")
            ),
        ];
        if matches!(
            v("kafka_stop_broker").trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1"
        ) {
            lines.insert(
                1,
                format!(
                    "stop the broker (systemctl stop {}, else {}/bin/kafka-server-stop.sh), wait for its process to exit (at most {}s)",
                    v("kafka_service"),
                    v("kafka_home"),
                    v("kafka_stop_timeout")
                ),
            );
            lines.push(format!(
                "cleanup: start the broker again (systemctl start {}, else kafka-server-start.sh -daemon as {}) and wait until it listens (at most {}s)",
                v("kafka_service"),
                v("kafka_user"),
                v("kafka_start_timeout")
            ));
        } else {
            lines.push("the copy of a running broker is flagged \"taken while running\"".into());
        }
        lines
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let user = h.var("kafka_user").to_string();
        let home = h.var("kafka_home").trim_end_matches('/').to_string();
        let config_dir = h.var("kafka_config_dir").trim_end_matches('/').to_string();

        // the broker process and its config file
        let step = "config file";
        h.step(step);
        let found = jvm::find(h, Some(step), MAIN, &user).await.at(step)?;
        for p in &found.ignored {
            h.note(&jvm::ignored_note(MAIN, &user, p));
        }
        let broker = found.trusted.first().cloned();
        let from_process = broker.as_ref().and_then(|b| b.config_arg(MAIN));
        let set = h.var("kafka_config_file").trim().to_string();
        let config_file = if !set.is_empty() {
            set
        } else {
            from_process
                .clone()
                .unwrap_or_else(|| format!("{config_dir}/server.properties"))
        };
        let mut props = match h.read_file(step, &config_file, None).await {
            Ok(Some(b)) => jvm::parse_properties(&jvm::decode(&b)),
            Ok(None) => {
                h.note(&format!(
                    "config file {config_file} not found on host: Kafka's defaults assumed"
                ));
                jvm::Properties::default()
            }
            Err(e) => {
                h.fail(step, e);
                jvm::Properties::default()
            }
        };
        if let Some(b) = &broker
            && from_process.as_deref() == Some(config_file.as_str())
        {
            for (k, v) in overrides(b.args_after(MAIN).unwrap_or_default()) {
                props.set(&k, &v);
            }
        }
        let cfg = broker_config(
            &props,
            h.var("kafka_log_dirs"),
            h.var("kafka_default_log_dirs"),
            h.var("kafka_port"),
        )
        .map_err(|e| StepError::config(format!("{config_file}: {e}")))
        .at(step)?;
        h.set_var(CONFIG_FILE, config_file.clone());
        h.set_var(LISTENER, format!("{}|{}", cfg.listener.0, cfg.listener.1));

        // version, from the core jar's name
        if let Ok(out) = h
            .run(
                "version",
                &Script::new(LIBS).arg(home.clone()),
                None,
                Some(&format!("ls {}/libs", crate::shell::quote(&home))),
            )
            .await
            && let Some(v) = out
                .stdout
                .split(|b| *b == 0)
                .find_map(|n| jar_version(&String::from_utf8_lossy(n)))
        {
            h.version("kafka", &v);
        }

        // stop the broker for the copy
        let mut running = broker.is_some();
        if h.var_is_true("kafka_stop_broker")
            && let Some(b) = &broker
        {
            let step = "stop broker";
            h.step(step);
            let pid = b.pid.to_string();
            let timeout = seconds(h, "kafka_stop_timeout").at(step)?;
            h.set_var(STOP_PID, pid.clone());
            h.set_var(STOP_STATE, "requested");
            let stop = Script::new(STOP)
                .arg(h.var("kafka_service").to_string())
                .arg(home.clone());
            let shown = format!(
                "systemctl stop {0} (when systemd runs it), else {1}/bin/kafka-server-stop.sh",
                crate::shell::quote(h.var("kafka_service")),
                crate::shell::quote(&home)
            );
            match h.run_ok(step, &stop, None, Some(&shown)).await {
                Err(e) => {
                    h.set_var(STOP_STATE, "failed");
                    h.fail(step, e);
                }
                Ok(_) => {
                    h.set_var(STOP_STATE, "sent");
                    let wait = Script::new(WAIT_EXIT)
                        .arg(pid.clone())
                        .arg(timeout.to_string());
                    let shown = format!("wait until pid {pid} exits (at most {timeout}s)");
                    match h.run_ok(step, &wait, None, Some(&shown)).await {
                        Ok(_) => {
                            h.set_var(STOP_STATE, "stopped");
                            h.note(STOPPED);
                            running = false;
                        }
                        Err(e) => h.fail(step, e),
                    }
                }
            }
            if running {
                running = alive(h, step, &pid).await.unwrap_or(true);
            }
        }
        if running {
            h.note(TAKEN_WHILE_RUNNING);
        }

        let step = "log dirs copy";
        h.step(step);
        if let Err(e) = h.copy(step, &cfg.log_dirs, false).await {
            h.fail(step, e);
        }
        let step = "config";
        h.step(step);
        let mut paths = vec![config_dir.clone()];
        if !config_file.starts_with(&format!("{config_dir}/")) {
            paths.push(config_file);
        }
        if let Err(e) = h.copy(step, &paths, false).await {
            h.fail(step, e);
        }
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let state = h.var(STOP_STATE).to_string();
        if state.is_empty() {
            return Ok(());
        }
        let pid = h.var(STOP_PID).to_string();
        let step = "broker check";
        if alive(h, step, &pid).await.at(step)? {
            if state == "failed" {
                // the stop command failed: the broker was not asked to stop and still runs
                return Ok(());
            }
            // asked to stop, and still shutting down (or ignoring it): wait once more
            let timeout = seconds(h, "kafka_stop_timeout").at(step)?;
            let wait = Script::new(WAIT_EXIT)
                .arg(pid.clone())
                .arg(timeout.to_string());
            let shown = format!("wait until pid {pid} exits (at most {timeout}s)");
            let out = h.run(step, &wait, None, Some(&shown)).await.at(step)?;
            if !out.exit.success() {
                let msg = format!(
                    "the broker (pid {pid}) was asked to stop and still runs after twice kafka_stop_timeout ({timeout}s); it was not started again, and will stay stopped if it stops later: check it"
                );
                h.note(&format!("BROKER STATE UNKNOWN: {msg}"));
                return Err(StepError::new(crate::archive::FailureKind::Timeout, msg).at(step));
            }
        }
        // the broker lsbackup stopped is gone; did something else start one meanwhile?
        let user = h.var("kafka_user").to_string();
        let found = jvm::find(h, Some(step), MAIN, &user).await.at(step)?;
        if let Some(b) = found.trusted.first() {
            h.note(&format!(
                "broker already running again before lsbackup started it (pid {})",
                b.pid
            ));
            return Ok(());
        }
        let step = "start broker";
        h.step(step);
        let r = self.start(h, step, &user).await;
        match &r {
            Ok(addr) => h.note(&format!(
                "broker started again after the copy (listening on {addr})"
            )),
            Err(e) => h.note(&format!(
                "BROKER MAY NOT BE RUNNING: lsbackup stopped it, and starting it again failed: {}",
                e.cause
            )),
        }
        r.map(|_| ()).at(step)
    }
}

impl Kafka {
    /// Start the broker and wait until it listens. Returns `addr:port`.
    async fn start(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        user: &str,
    ) -> Result<String, StepError> {
        let home = h.var("kafka_home").trim_end_matches('/').to_string();
        let service = h.var("kafka_service").to_string();
        let config_file = h.var(CONFIG_FILE).to_string();
        let timeout = seconds(h, "kafka_start_timeout")?;
        let (addr, port) = match h.var(LISTENER).rsplit_once('|') {
            Some((a, p)) => (a.to_string(), p.parse::<u16>().unwrap_or(9092)),
            None => ("127.0.0.1".to_string(), 9092),
        };
        let script = Script::new(START)
            .arg(service.clone())
            .arg(home.clone())
            .arg(config_file.clone())
            .arg(user.to_string());
        let shown = format!(
            "systemctl start {} (when systemd has the unit), else runuser -u {} -- {}/bin/kafka-server-start.sh -daemon {}",
            crate::shell::quote(&service),
            crate::shell::quote(user),
            crate::shell::quote(&home),
            crate::shell::quote(&config_file)
        );
        h.run_ok(step, &script, None, Some(&shown)).await?;
        // wait until it accepts connections on its listener (lsbackup connects, through the
        // SSH connection, as a client on the host would)
        let target = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        };
        let t = Instant::now();
        let deadline = t + Duration::from_secs(timeout);
        let mut n = 0u32;
        loop {
            let conn =
                tokio::time::timeout(Duration::from_secs(5), h.session().connect_tcp(&addr, port))
                    .await;
            if let Ok(Ok(c)) = conn {
                drop(c);
                h.record_call(
                    step,
                    &format!("wait until {target} accepts connections"),
                    None,
                    t,
                );
                return Ok(target);
            }
            n += 1;
            if n.is_multiple_of(5) {
                let found = jvm::find(h, None, MAIN, user).await?;
                if found.trusted.is_empty() {
                    h.record_call(
                        step,
                        &format!("wait until {target} accepts connections"),
                        None,
                        t,
                    );
                    return Err(StepError::new(
                        crate::archive::FailureKind::CommandFailed,
                        format!(
                            "the broker exited while starting (see its logs, e.g. {home}/logs/server.log)"
                        ),
                    ));
                }
            }
            if Instant::now() >= deadline {
                h.record_call(
                    step,
                    &format!("wait until {target} accepts connections"),
                    None,
                    t,
                );
                return Err(StepError::new(
                    crate::archive::FailureKind::Timeout,
                    format!(
                        "the broker does not accept connections on {target} {timeout}s after the start"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dirs_and_listener_from_properties() {
        let p = jvm::parse_properties(
            "log.dirs=/data/k1, /data/k2 ,\nlisteners=PLAINTEXT://127.0.0.3:9092,SSL://:9093\n",
        );
        let c = broker_config(&p, "", "/var/lib/kafka", "").unwrap();
        assert_eq!(c.log_dirs, ["/data/k1", "/data/k2"]);
        assert_eq!(c.listener, ("127.0.0.3".to_string(), 9092));
        // log.dir when log.dirs is absent; the default when neither; variables win
        let p = jvm::parse_properties("log.dir=/one\nlisteners=PLAINTEXT://:19092\n");
        let c = broker_config(&p, "", "/d", "").unwrap();
        assert_eq!(c.log_dirs, ["/one"]);
        assert_eq!(c.listener, ("127.0.0.1".to_string(), 19092));
        let c = broker_config(&jvm::Properties::default(), "", "/d", "").unwrap();
        assert_eq!(c.log_dirs, ["/d"]);
        assert_eq!(c.listener, ("127.0.0.1".to_string(), 9092));
        let c = broker_config(&p, "/a,/b /c", "/d", "1234").unwrap();
        assert_eq!(c.log_dirs, ["/a", "/b", "/c"]);
        assert_eq!(c.listener.1, 1234);
        let p = jvm::parse_properties("listeners=SASL_SSL://[::1]:9094\n");
        let c = broker_config(&p, "", "/d", "").unwrap();
        assert_eq!(c.listener, ("::1".to_string(), 9094));
        // a path with a space stays one path when read from the config
        let p = jvm::parse_properties("log.dirs=/data/my dir\n");
        assert_eq!(
            broker_config(&p, "", "/d", "").unwrap().log_dirs,
            ["/data/my dir"]
        );
    }

    #[test]
    fn hostile_and_bad_config_values() {
        let p = jvm::parse_properties("log.dirs=/x$(touch /tmp/MARK),relative\n");
        let e = broker_config(&p, "", "/d", "").unwrap_err();
        assert!(e.contains("\"relative\""), "{e}");
        let p = jvm::parse_properties("log.dirs=/x$(touch /tmp/MARK);`id`\n");
        assert_eq!(
            broker_config(&p, "", "/d", "").unwrap().log_dirs,
            ["/x$(touch /tmp/MARK);`id`"]
        );
        let p = jvm::parse_properties("listeners=PLAINTEXT://h:notaport\n");
        assert!(broker_config(&p, "", "/d", "").is_err());
        assert!(broker_config(&jvm::Properties::default(), "", "/d", "99999").is_err());
    }

    #[test]
    fn versions_and_overrides() {
        assert_eq!(
            jar_version("kafka_2.12-2.8.1.jar").as_deref(),
            Some("2.8.1 (Scala 2.12)")
        );
        assert_eq!(
            jar_version("kafka_2.13-3.6.0.jar").as_deref(),
            Some("3.6.0 (Scala 2.13)")
        );
        assert_eq!(jar_version("kafka_2.12-2.8.1-sources.jar"), None);
        assert_eq!(jar_version("kafka-clients-2.8.1.jar"), None);
        assert_eq!(jar_version("kafka_2.12-$(id).jar"), None);
        let args: Vec<String> = [
            "/c/server.properties",
            "--override",
            "log.dirs=/o",
            "--override",
            "bad",
            "--override",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            overrides(&args),
            [("log.dirs".to_string(), "/o".to_string())]
        );
    }

    #[test]
    fn process_scripts_run_in_sh() {
        let sh = |s: &Script| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(s.to_shell())
                .output()
                .unwrap()
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        assert!(sh(&Script::new(ALIVE).arg(pid.clone())).status.success());
        let out = sh(&Script::new(WAIT_EXIT).arg(pid.clone()).arg("1"));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("still running 1s"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!sh(&Script::new(ALIVE).arg(pid.clone())).status.success());
        assert!(
            sh(&Script::new(WAIT_EXIT).arg(pid).arg("5"))
                .status
                .success()
        );
        // hostile pid values are data
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("MARK");
        let hostile = format!("1; touch {}", mark.display());
        let _ = sh(&Script::new(ALIVE).arg(hostile.clone()));
        let _ = sh(&Script::new(WAIT_EXIT).arg(hostile).arg("0"));
        assert!(!mark.exists());
        // the stop script without systemd unit or script fails clearly
        let out = sh(&Script::new(STOP)
            .arg("no-such-unit-x")
            .arg("/nonexistent/kafka"));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("/nonexistent/kafka/bin/kafka-server-stop.sh"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // the libs listing
        let libs = dir.path().join("libs");
        std::fs::create_dir(&libs).unwrap();
        std::fs::write(libs.join("kafka_2.12-2.8.1.jar"), "").unwrap();
        let out = sh(&Script::new(LIBS).arg(dir.path().display().to_string()));
        assert_eq!(out.stdout, b"kafka_2.12-2.8.1.jar\0");
    }
}
