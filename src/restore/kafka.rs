//! Restore Kafka, one broker at a time: each broker's log dirs (topic-partition folders with
//! their segments, checkpoints, meta.properties) are replaced by the backed-up ones with the
//! broker stopped, then the broker is started and lsbackup waits until it accepts connections
//! before the next broker is touched (the driver restores hosts one after another).
//!
//! 1. The broker and its config file are found as the backup finds them: the process with the
//!    argument `kafka.Kafka` (of root or `kafka_user` only), its config file argument (or
//!    `kafka_config_file`, else `<kafka_config_dir>/server.properties`) read with `cat` and
//!    parsed here, with its `--override`s; `log.dirs`/`log.dir` (or `kafka_log_dirs`) and the
//!    first listener (or `kafka_port`) come from it.
//! 2. Each log dir (the directory it resolves to on the host) must be held by the backup; a log
//!    dir whose backed-up `meta.properties` names another `broker.id` than the config file is
//!    refused (the inventory maps this host to another broker's data). A `cluster.id` that
//!    differs from the current one is said as a note: the broker starts only if ZooKeeper's
//!    `/cluster/id` is the backup's (restore ZooKeeper from the same backup first).
//!    All of this is checked before anything is changed.
//! 3. Stop the broker (systemd when it runs the unit `kafka_service`, else
//!    `bin/kafka-server-stop.sh`) and wait until its process exits (`kafka_stop_timeout`).
//! 4. Each log dir is replaced ([`HostRestore::put_tree`]): the current one is kept beside it as
//!    `DIR.lsbackup-<time>`; the new one takes its owner (a log dir that did not exist is given
//!    to `kafka_user`).
//! 5. Start the broker (systemd when it has the unit, else `kafka-server-start.sh -daemon CONFIG`
//!    as `kafka_user`) and wait until its listener accepts connections (`kafka_start_timeout`;
//!    lsbackup connects through the SSH connection). When putting the data back failed, the
//!    broker is started again on the data it had, if its log dirs are all there.
//!
//! A broker that did not come back, or did not exit within `kafka_stop_timeout` after the stop
//! (its data is then left alone), stops the restore of the brokers after it in this run: they
//! are not stopped (one broker down at a time at most). The broker's config files
//! (`kafka_config_dir` and the config file's directory) are put back before the start, each
//! checked and the current one kept beside it. The scripts that stop, wait for and
//! start the broker are the backup's (`components::kafka`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::components::jvm::{self, JvmProcess};
use crate::components::kafka::{START, STOP, WAIT_EXIT, broker_config, overrides};
use crate::shell::{Script, quote};

use super::zookeeper::{Tree, find_jvm, missing_dir, plan_trees, put_trees, read_first};
use super::{HostRestore, Restore, RestoreError};

pub struct Kafka;

const MAIN: &str = "kafka.Kafka";

/// Set when a broker stopped by this run did not come back: no further broker is stopped.
static BROKER_DOWN: Mutex<Option<String>> = Mutex::new(None);

/// What the backed-up `meta.properties` of a log dir says against the broker now. `Err`: the
/// data is another broker's (refused); `Ok(Some(note))`: a cluster id that differs.
pub fn check_meta(
    dir: &str,
    backup: &jvm::Properties,
    config_broker_id: Option<&str>,
    current: Option<&jvm::Properties>,
) -> Result<Option<String>, String> {
    let backed_id = backup.get_nonempty("broker.id");
    // broker.id=-1 (the default) has Kafka generate the id, kept in meta.properties
    let config_broker_id = config_broker_id.filter(|id| !id.trim().starts_with('-'));
    let current_id = config_broker_id.or_else(|| current.and_then(|c| c.get_nonempty("broker.id")));
    if let (Some(b), Some(c)) = (backed_id, current_id)
        && b != c
    {
        return Err(format!(
            "{dir}: the backup's meta.properties is of broker.id {b}, this broker is {c}: the inventory maps this host to another broker's data; nothing was changed"
        ));
    }
    let backed_cluster = backup.get_nonempty("cluster.id");
    let current_cluster = current.and_then(|c| c.get_nonempty("cluster.id"));
    Ok(match (backed_cluster, current_cluster) {
        (Some(b), Some(c)) if b != c => Some(format!(
            "{dir}: the backup's cluster.id is {b}, the current one {c}: the broker starts only if ZooKeeper's /cluster/id is {b} (restore ZooKeeper from the same backup)"
        )),
        _ => None,
    })
}

fn seconds(r: &HostRestore<'_>, var: &str) -> Result<u64, RestoreError> {
    r.var(var).trim().parse().map_err(|_| {
        r.failed(
            "config",
            format!("{var} {:?} is not a number of seconds", r.var(var)),
        )
    })
}

/// How to start the broker again.
struct Start {
    service: String,
    home: String,
    config_file: String,
    user: String,
    addr: String,
    port: u16,
    timeout: u64,
}

impl Kafka {
    /// Start the broker and wait until it listens.
    async fn start(&self, r: &mut HostRestore<'_>, s: &Start) -> Result<(), RestoreError> {
        let step = "start broker";
        r.change(
            step,
            &format!(
                "start the broker (systemctl start {} when systemd has the unit, else runuser -u {} -- {}/bin/kafka-server-start.sh -daemon {})",
                quote(&s.service),
                quote(&s.user),
                quote(&s.home),
                quote(&s.config_file)
            ),
            &Script::new(START)
                .arg(s.service.as_str())
                .arg(s.home.as_str())
                .arg(s.config_file.as_str())
                .arg(s.user.as_str()),
            None,
        )
        .await?;
        let target = if s.addr.contains(':') {
            format!("[{}]:{}", s.addr, s.port)
        } else {
            format!("{}:{}", s.addr, s.port)
        };
        if r.is_dry_run() {
            r.say(format!(
                "would wait until {target} accepts connections (at most {}s)",
                s.timeout
            ));
            return Ok(());
        }
        let t = Instant::now();
        let mut n = 0u32;
        loop {
            let conn = tokio::time::timeout(
                Duration::from_secs(5),
                r.session.connect_tcp(&s.addr, s.port),
            )
            .await;
            if let Ok(Ok(c)) = conn {
                drop(c);
                r.say(format!(
                    "the broker accepts connections on {target} again after {}s",
                    t.elapsed().as_secs()
                ));
                return Ok(());
            }
            n += 1;
            if n.is_multiple_of(5) {
                let (running, _) = find_jvm(r, step, MAIN, &s.user).await?;
                if running.is_empty() {
                    return Err(r.failed(
                        step,
                        format!(
                            "the broker exited while starting (see its logs, e.g. {}/logs/server.log)",
                            s.home
                        ),
                    ));
                }
            }
            if t.elapsed() >= Duration::from_secs(s.timeout) {
                return Err(r.failed(
                    step,
                    format!(
                        "the broker does not accept connections on {target} {}s after the start",
                        s.timeout
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Put the log dirs back and start the broker; on failure, start it on what it had.
    async fn replace_and_start(
        &self,
        r: &mut HostRestore<'_>,
        trees: &[Tree],
        s: &Start,
    ) -> Result<(), RestoreError> {
        if let Err(e) = put_trees(r, trees, &s.user).await {
            match missing_dir(r, trees).await {
                Ok(None) => match self.start(r, s).await {
                    Ok(()) => r.note("the broker was started again on the data it had"),
                    Err(c) => r.note(format!("BROKER NOT RUNNING: {c}")),
                },
                Ok(Some(d)) => r.note(format!(
                    "BROKER NOT STARTED: its log dir {d} is missing (the previous one is kept as {d}.{})",
                    r.keep_suffix()
                )),
                Err(c) => r.note(format!("BROKER NOT STARTED: {c}")),
            }
            return Err(e);
        }
        // the configuration, read at the start that follows
        let mut roots = vec![r.var("kafka_config_dir").to_string()];
        if let Some((dir, _)) = s.config_file.rsplit_once('/') {
            roots.push(dir.to_string());
        }
        let config = r.put_config_files(&roots).await;
        let started = self.start(r, s).await;
        if let Err(e) = config {
            started?;
            return Err(e);
        }
        started
    }
}

#[async_trait::async_trait]
impl Restore for Kafka {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        if let Some(why) = BROKER_DOWN.lock().unwrap().clone() {
            return Err(r.failed(
                "one broker at a time",
                format!("not stopped: {why}; restore this broker once that one runs again"),
            ));
        }
        let user = r.var("kafka_user").to_string();
        let home = r.var("kafka_home").trim_end_matches('/').to_string();
        let config_dir = r.var("kafka_config_dir").trim_end_matches('/').to_string();
        let stop_timeout = seconds(r, "kafka_stop_timeout")?;
        let start_timeout = seconds(r, "kafka_start_timeout")?;

        // the broker and its config file
        let step = "config";
        let (procs, ignored) = find_jvm(r, step, MAIN, &user).await?;
        for p in &ignored {
            r.say(jvm::ignored_note(MAIN, &user, p));
        }
        let broker: Option<JvmProcess> = procs.first().cloned();
        let from_process = broker.as_ref().and_then(|b| b.config_arg(MAIN));
        let set = r.var("kafka_config_file").trim().to_string();
        let config_file = if !set.is_empty() {
            set
        } else {
            from_process
                .clone()
                .unwrap_or_else(|| format!("{config_dir}/server.properties"))
        };
        let mut props = match read_first(r, step, std::slice::from_ref(&config_file)).await? {
            Some((_, b)) => jvm::parse_properties(&jvm::decode(&b)),
            None => {
                r.say(format!(
                    "config file {config_file} not found on the host: Kafka's defaults assumed"
                ));
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
            r.var("kafka_log_dirs"),
            r.var("kafka_default_log_dirs"),
            r.var("kafka_port"),
        )
        .map_err(|e| r.failed(step, format!("{config_file}: {e}")))?;

        // the log dirs, as the backup holds them, and whose they are
        let step = "log dirs";
        let trees = plan_trees(r, step, "log dir", &cfg.log_dirs).await?;
        let config_id = props.get_nonempty("broker.id").map(str::to_string);
        for t in &trees {
            let meta = format!("{}/meta.properties", t.rel);
            if r.entry(&meta).is_none() {
                continue;
            }
            let backup = jvm::parse_properties(&jvm::decode(&r.read_local(&meta)?));
            let current = read_first(r, step, &[format!("{}/meta.properties", t.dest)])
                .await?
                .map(|(_, b)| jvm::parse_properties(&jvm::decode(&b)));
            match check_meta(&t.dest, &backup, config_id.as_deref(), current.as_ref()) {
                Err(e) => return Err(r.failed(step, e)),
                Ok(Some(note)) => r.note(note),
                Ok(None) => {}
            }
        }
        let restored: Vec<String> = trees.iter().map(|t| format!("{}/", t.rel)).collect();
        let mut others: Vec<String> = r
            .files_under("")
            .into_iter()
            .filter(|(_, rel)| rel.ends_with("/meta.properties"))
            .filter_map(|(_, rel)| rel.strip_suffix("/meta.properties").map(str::to_string))
            .filter(|d| {
                !restored
                    .iter()
                    .any(|p| format!("{d}/").starts_with(p.as_str()))
            })
            .collect();
        others.sort();
        others.dedup();
        for d in others {
            r.say(format!(
                "not restored: /{d} (not a log dir of the broker now; `lsbackup extract --only kafka` has it)"
            ));
        }
        r.say(format!(
            "config file: {config_file}; the broker's configuration files are put back before the start"
        ));

        // stop
        let step = "stop broker";
        if let Some(b) = &broker {
            let pid = b.pid.to_string();
            let service = r.var("kafka_service").to_string();
            r.change(
                step,
                &format!(
                    "stop the broker (pid {pid}; systemctl stop {} when systemd runs it, else {}/bin/kafka-server-stop.sh)",
                    quote(&service),
                    quote(&home)
                ),
                &Script::new(STOP).arg(service).arg(home.as_str()),
                None,
            )
            .await?;
            let waited = r
                .change(
                    step,
                    &format!("wait until pid {pid} exits (at most {stop_timeout}s)"),
                    &Script::new(WAIT_EXIT)
                        .arg(pid.as_str())
                        .arg(stop_timeout.to_string()),
                    None,
                )
                .await;
            if let Err(e) = waited {
                // asked to stop and still running: it may stop later, and stay stopped
                *BROKER_DOWN.lock().unwrap() = Some(format!(
                    "the broker on {} (pid {pid}) was asked to stop and still ran after {stop_timeout}s",
                    r.host()
                ));
                r.note(format!(
                    "BROKER STATE UNKNOWN: pid {pid} was asked to stop and still runs; its data was not touched; check it"
                ));
                return Err(e);
            }
        } else {
            r.say("the broker is not running");
        }

        // the data, then start
        let start = Start {
            service: r.var("kafka_service").to_string(),
            home,
            config_file,
            user,
            addr: cfg.listener.0.clone(),
            port: cfg.listener.1,
            timeout: start_timeout,
        };
        let done = self.replace_and_start(r, &trees, &start).await;
        if let Err(e) = &done
            && !r.is_dry_run()
        {
            *BROKER_DOWN.lock().unwrap() = Some(format!(
                "the broker on {} did not come back after its restore ({e})",
                r.host()
            ));
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_against_the_broker() {
        let backup =
            jvm::parse_properties("#\nversion=0\nbroker.id=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\n");
        let same =
            jvm::parse_properties("version=0\nbroker.id=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\n");
        assert_eq!(check_meta("/k", &backup, Some("1"), Some(&same)), Ok(None));
        assert_eq!(check_meta("/k", &backup, None, None), Ok(None));
        // another broker's data: by the config's broker.id, else the current meta.properties'
        let e = check_meta("/k", &backup, Some("2"), Some(&same)).unwrap_err();
        assert!(e.contains("broker.id 1") && e.contains("is 2"), "{e}");
        let other = jvm::parse_properties("broker.id=3\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\n");
        assert!(check_meta("/k", &backup, None, Some(&other)).is_err());
        // the config's id wins over a current meta.properties
        assert!(check_meta("/k", &backup, Some("1"), Some(&other)).is_ok());
        // a new cluster id: a note
        let new_cluster = jvm::parse_properties("broker.id=1\ncluster.id=Zz\n");
        let note = check_meta("/k", &backup, Some("1"), Some(&new_cluster))
            .unwrap()
            .unwrap();
        assert!(
            note.contains("AbCdEfGhIjKlMnOpQrStUv") && note.contains("Zz"),
            "{note}"
        );
        // a generated id (broker.id=-1 in the config): the current meta.properties' id counts
        assert!(check_meta("/k", &backup, Some("-1"), Some(&same)).is_ok());
        assert!(check_meta("/k", &backup, Some("-1"), Some(&other)).is_err());
        // a backup without ids says nothing against
        let bare = jvm::parse_properties("version=0\n");
        assert_eq!(check_meta("/k", &bare, Some("7"), Some(&other)), Ok(None));
    }
}
