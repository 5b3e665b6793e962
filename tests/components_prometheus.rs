//! The `prometheus` component against the real Prometheus 2.42 of the test bed (Debian
//! `prometheus` on node3 with --web.enable-admin-api, tests/testbed/svc_monitoring.sh) and a second
//! real Prometheus without the admin API whose config lives outside /etc/prometheus and is given
//! with relative paths (tests/testbed/svc_prometheus_noadmin.sh). Needs `tests/testbed/up.sh`.
//!
//! The snapshot that comes back is opened by a third, temporary Prometheus (the real binary) on a
//! spare port, and queried for the series the test bed's Prometheus scraped.

mod common;
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lsbackup::archive::Status;

const NODE: &str = "node3";

/// Directories under `dir` (not recursive), sorted.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// Files matching `dir/*.ext` on this machine (the test bed hosts share its filesystem).
fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {}", dir.display());
    v
}

/// The archive entry of an absolute host path backed up from node3.
fn entry(path: &Path) -> String {
    format!(
        "prometheus/{NODE}/{}",
        path.display().to_string().trim_start_matches('/')
    )
}

fn assert_same_file(run: &support::Run, path: &Path) {
    let got = run.read(&entry(path));
    let want = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == want,
        "{} differs from the archived copy",
        path.display()
    );
}

fn curl_json(url: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", "-g", url])
        .output()
        .expect("running curl");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A temporary Prometheus (the real binary) on a spare port, killed on drop.
struct TempPrometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

impl TempPrometheus {
    /// Serving the TSDB directory `tsdb` (e.g. a snapshot that came back), scraping nothing.
    fn serve(tsdb: &Path) -> TempPrometheus {
        let scratch = tempfile::tempdir().unwrap();
        let cfg = scratch.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
        let args = [
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", tsdb.display()),
            "--storage.tsdb.retention.time=100y".to_string(),
        ];
        let cwd = scratch.path().to_path_buf();
        TempPrometheus::start(&cwd, &args, scratch)
    }

    /// Started in `cwd` with `args` (plus the listen address), `scratch` kept alive with it.
    fn start(cwd: &Path, args: &[String], scratch: tempfile::TempDir) -> TempPrometheus {
        TempPrometheus::start_with(cwd, args, scratch, "http", &[])
    }

    /// [`TempPrometheus::start`] on `scheme`, its readiness checked with curl and `curl_args`
    /// (TLS and auth options).
    fn start_with(
        cwd: &Path,
        args: &[String],
        scratch: tempfile::TempDir,
        scheme: &str,
        curl_args: &[String],
    ) -> TempPrometheus {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = scratch.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .current_dir(cwd)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`)");
        let mut p = TempPrometheus {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            log,
            _scratch: scratch,
        };
        p.wait_for("ready", |p| {
            Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "2"])
                .args(curl_args)
                .arg(format!("{}/-/ready", p.url))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        p
    }

    fn wait_for(&mut self, what: &str, ok: impl Fn(&TempPrometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("temporary prometheus exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "temporary prometheus: not {what} within 60s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /api/v1/series?match[]=SELECTOR` over the whole time range: the label sets found.
    fn series(&self, selector: &str) -> Vec<serde_json::Value> {
        let url = format!(
            "{}/api/v1/series?match[]={}&start=0&end={}",
            self.url,
            urlencode(selector),
            jiff::Timestamp::now().as_second() + 3600
        );
        let v = curl_json(&url).unwrap_or_else(|| panic!("GET {url} failed"));
        assert_eq!(v["status"], "success", "{v}");
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// Samples of `query` over [start, end] (seconds), summed over all series.
    fn sample_count(&self, query: &str, start: i64, end: i64) -> usize {
        // Prometheus refuses more than 11,000 points per series: a longer-lived test bed needs
        // a coarser step (rounded up: at most 10,001 points).
        let step = ((end - start + 9_999) / 10_000).max(5);
        let url = format!(
            "{}/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            self.url,
            urlencode(query)
        );
        let v = curl_json(&url).unwrap_or_else(|| panic!("GET {url} failed"));
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| r["values"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for TempPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The block time range of a TSDB dir, from the blocks' meta.json (milliseconds).
fn block_range(tsdb: &Path) -> (i64, i64) {
    let mut min = i64::MAX;
    let mut max = i64::MIN;
    for block in subdirs(tsdb) {
        let meta = block.join("meta.json");
        if !meta.is_file() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        min = min.min(v["minTime"].as_i64().unwrap());
        max = max.max(v["maxTime"].as_i64().unwrap());
        for f in ["index", "chunks/000001"] {
            assert!(block.join(f).is_file(), "{} has no {f}", block.display());
        }
    }
    assert!(min < max, "no block with meta.json in {}", tsdb.display());
    (min, max)
}

#[test]
fn spec_is_native_and_declares_what_it_needs() {
    let catalog = lsbackup::components::Catalog::load(None).unwrap();
    let spec = catalog.get("prometheus").unwrap();
    assert!(spec.native.is_some(), "written in Rust");
    assert!(spec.steps.is_empty() && spec.cleanup.is_empty());
    assert_eq!(spec.groups, ["prometheus"]);
    assert!(spec.requires.is_empty(), "no curl: {:?}", spec.requires);
    assert_eq!(spec.vars["prometheus_url"], "http://localhost:9090");
    assert_eq!(spec.vars["prometheus_tls_verify"], "true");
    for v in [
        "prometheus_ca_cert",
        "prometheus_client_cert",
        "prometheus_client_key",
        "prometheus_user",
        "prometheus_password",
    ] {
        assert_eq!(spec.vars[v], "", "{v}");
    }
    assert!(lsbackup::components::is_secret_var("prometheus_password"));
    assert!(
        !spec.vars.keys().any(|k| k.contains("curl")),
        "{:?}",
        spec.vars
    );
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("components/prometheus.yaml")
            .exists()
    );
}

#[test]
fn plan_shows_the_api_calls_copies_and_cleanup_and_masks_the_password() {
    let tb = common::testbed();
    let plan = |json: bool, extra: &[&str]| {
        let mut cmd = common::lsbackup();
        cmd.arg("plan");
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .arg("-b")
            .arg(tb.build_dir())
            .args(["--only", "prometheus"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = plan(false, &[]);
    for want in [
        "prometheus",
        "host node3",
        "version prometheus: GET http://localhost:9090/api/v1/status/buildinfo",
        "snapshot: GET http://localhost:9090/api/v1/status/flags",
        "POST http://localhost:9090/api/v1/admin/tsdb/snapshot within 600s",
        "--web.enable-admin-api",
        "snapshot data: copy ",
        "config files: ",
        "GET http://localhost:9090/api/v1/status/config",
        "config: copy ",
        "cleanup remove snapshot: rm -rf -- <storage.tsdb.path>/snapshots/<name>",
    ] {
        assert!(text.contains(want), "plan lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("curl") && !text.contains("requires"),
        "{text}"
    );
    // TLS and basic auth: the files named, the password never shown
    let v: serde_json::Value = serde_json::from_str(&plan(
        true,
        &[
            "--set",
            "prometheus.prometheus_url=https://node3.example:9090",
            "--set",
            "prometheus.prometheus_ca_cert=/etc/prometheus/ca.pem",
            "--set",
            "prometheus.prometheus_user=backup",
            "--set",
            "prometheus.prometheus_password=hunter2-secret",
        ],
    ))
    .unwrap();
    let c = &v["components"][0];
    assert_eq!(c["name"], "prometheus");
    let steps: Vec<&str> = c["hosts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let all = steps.join("\n");
    for want in [
        "TLS: certificate verified; CA /etc/prometheus/ca.pem (read from the host)",
        "basic auth as backup (password ********",
        "https://node3.example:9090/api/v1/admin/tsdb/snapshot",
    ] {
        assert!(all.contains(want), "plan --json lacks {want:?}:\n{all}");
    }
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn snapshot_opens_and_holds_the_series_config_and_rules_are_identical() {
    let tb = common::testbed();
    let data_dir = PathBuf::from(tb.var("LSB_PROMETHEUS_DATA_DIR"));
    let config = PathBuf::from(tb.var("LSB_PROMETHEUS_CONFIG"));
    let conf_dir = config.parent().unwrap().to_path_buf();

    let run = support::backup(&tb.build_dir(), &["--only", "prometheus"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("prometheus");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let h = c
        .hosts
        .iter()
        .find(|h| h.host == NODE)
        .expect("node3 in report");
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    assert!(
        h.versions["prometheus"].starts_with("2."),
        "{:?}",
        h.versions
    );
    // The API is called by lsbackup through the SSH connection: no curl (or sed, awk, python)
    // on the host; the calls are in the manifest.
    let commands: Vec<&str> = h.commands.iter().map(|c| c.command.as_str()).collect();
    for tool in ["curl", "sed ", "awk", "python", "wget"] {
        assert!(
            commands.iter().all(|c| !c.contains(tool)),
            "{tool} ran: {commands:#?}"
        );
    }
    for call in [
        "GET http://localhost:9090/api/v1/status/buildinfo",
        "GET http://localhost:9090/api/v1/status/flags",
        "POST http://localhost:9090/api/v1/admin/tsdb/snapshot",
        "GET http://localhost:9090/api/v1/status/config",
    ] {
        assert!(
            commands.contains(&call),
            "{call} not recorded: {commands:#?}"
        );
    }

    // Exactly one snapshot came back, from the data dir the server reported.
    let snaps = subdirs(&run.file(&entry(&data_dir.join("snapshots"))));
    assert_eq!(snaps.len(), 1, "snapshots in the archive: {snaps:?}");
    let snap = &snaps[0];
    let name = snap.file_name().unwrap().to_string_lossy().into_owned();
    let re = regex::Regex::new(r"^\d{8}T\d{6}Z-[0-9a-f]+$").unwrap();
    assert!(re.is_match(&name), "snapshot name {name}");

    // ... and was removed from the server afterwards.
    let on_server = data_dir.join("snapshots").join(&name);
    assert!(
        !on_server.exists(),
        "{} left on the server",
        on_server.display()
    );
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "remove snapshot" && c.exit_code == Some(0))
    );

    // The blocks open in a real Prometheus and hold the series the test bed scraped: its own
    // (static config), the file_sd job, and the recording rule's output.
    let (min_ms, max_ms) = block_range(snap);
    let prom = TempPrometheus::serve(snap);
    let up = prom.series("up");
    let jobs: Vec<&str> = up.iter().filter_map(|s| s["job"].as_str()).collect();
    assert!(jobs.contains(&"prometheus"), "jobs in up: {jobs:?}");
    // every job the test bed's file_sd files name (targets discovered through file_sd)
    let job_re = regex::Regex::new(r"(?m)^\s+job:\s*(\S+)\s*$").unwrap();
    let mut sd_jobs = Vec::new();
    for f in files_with_ext(&conf_dir.join("file_sd"), "yml") {
        let text = std::fs::read_to_string(&f).unwrap();
        sd_jobs.extend(job_re.captures_iter(&text).map(|c| c[1].to_string()));
    }
    assert!(!sd_jobs.is_empty(), "no job labels in the file_sd files");
    for j in &sd_jobs {
        assert!(
            jobs.contains(&j.as_str()),
            "file_sd job {j} missing in up: {jobs:?}"
        );
    }
    assert!(
        !prom.series("job:up:sum").is_empty(),
        "recording rule series missing"
    );
    assert!(!prom.series("prometheus_build_info").is_empty());
    let samples = prom.sample_count(r#"up{job="prometheus"}"#, min_ms / 1000, max_ms / 1000);
    assert!(samples >= 2, "only {samples} samples of up in the snapshot");
    drop(prom);

    // Config, rule files and file_sd target files: byte-identical.
    assert_same_file(&run, &config);
    for f in files_with_ext(&conf_dir.join("rules"), "yml") {
        assert_same_file(&run, &f);
    }
    for f in files_with_ext(&conf_dir.join("file_sd"), "yml") {
        assert_same_file(&run, &f);
    }
    // Only what the config references: Alertmanager's file belongs to the alertmanager component.
    assert!(
        !run.file(&entry(&conf_dir.join("alertmanager.yml")))
            .exists()
    );
}

#[test]
fn admin_api_off_is_one_clear_error_and_the_rest_is_kept() {
    let tb = common::testbed();
    let url = tb.var("LSB_PROMETHEUS_NOADMIN_URL");
    let dir = PathBuf::from(tb.var("LSB_PROMETHEUS_NOADMIN_DIR"));
    let set = format!("prometheus.prometheus_url={url}");
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "prometheus,postgresql", "--set", &set],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());

    // The other component is complete.
    let pg = run.component("postgresql");
    assert_eq!(pg.status, Status::Ok, "{:?}", pg.errors);
    assert!(run.file("postgresql/node1/globals.sql").is_file());

    // Prometheus: one line naming host, component and cause, in the manifest and on stderr.
    let c = run.component("prometheus");
    assert_eq!(c.status, Status::Partial, "{:?}", c.errors);
    let h = c.hosts.iter().find(|h| h.host == NODE).unwrap();
    let errs: Vec<&String> = h
        .errors
        .iter()
        .map(|f| &f.message)
        .filter(|e| e.contains("admin API"))
        .collect();
    assert_eq!(errs.len(), 1, "errors: {:?}", h.errors);
    let e = errs[0];
    assert!(!e.contains('\n'), "{e:?}");
    assert!(e.starts_with("node3: prometheus: snapshot: "), "{e}");
    assert!(e.contains("--web.enable-admin-api"), "{e}");
    assert_eq!(
        h.errors.len(),
        1,
        "only the snapshot failed: {:?}",
        h.errors
    );
    assert!(
        run.stderr().contains("--web.enable-admin-api"),
        "stderr:\n{}",
        run.stderr()
    );

    // No snapshot in the archive, none left on that server.
    assert!(
        h.entries.iter().all(|e| !e.path.contains("/snapshots/")),
        "{:?}",
        h.entries
    );
    assert!(subdirs(&dir.join("data/snapshots")).is_empty());

    // Its config was still taken, learnt from the server: config.file and the rule_files glob are
    // relative to its working directory, the file_sd file lives outside /etc/prometheus.
    assert_same_file(&run, &dir.join("conf/prometheus.yml"));
    assert_same_file(&run, &dir.join("conf/rules/noadmin.yml"));
    assert_same_file(&run, &dir.join("targets/noadmin.json"));
}

/// Any local user can start a program named `prometheus` in a directory of their choosing: its
/// working directory must never decide which files lsbackup reads as root for a Prometheus whose
/// config path is relative. Such a process (user nobody, with a `conf/prometheus.yml` that
/// references a file of its own) is noted and ignored; the real server's config is taken.
#[test]
fn a_lookalike_prometheus_of_another_user_is_ignored() {
    let tb = common::testbed();
    let url = tb.var("LSB_PROMETHEUS_NOADMIN_URL");
    let dir = PathBuf::from(tb.var("LSB_PROMETHEUS_NOADMIN_DIR"));
    let evil = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(evil.path().join("conf")).unwrap();
    std::fs::write(
        evil.path().join("conf/prometheus.yml"),
        "rule_files: [/etc/lsb-lookalike-secret.yml, rules.yml]\n",
    )
    .unwrap();
    std::fs::write(evil.path().join("conf/rules.yml"), "groups: []\n").unwrap();
    let lookalike = support::UnprivilegedProcess::spawn_exe("prometheus", evil.path(), &[]);

    let set = format!("prometheus.prometheus_url={url}");
    let run = support::backup(&tb.build_dir(), &["--only", "prometheus", "--set", &set]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = &run.component("prometheus").hosts[0];
    lookalike.assert_noted_as_ignored(&h.flags, "prometheus");
    // the real server's config, nothing of the lookalike's directory
    assert_same_file(&run, &dir.join("conf/prometheus.yml"));
    let taken: Vec<&str> = h.entries.iter().map(|e| e.path.as_str()).collect();
    let evil_entry = entry(evil.path());
    assert!(
        taken.iter().all(|p| !p.starts_with(&evil_entry)),
        "{taken:?}"
    );
    drop(lookalike);
}

#[test]
fn prometheus_down_is_a_clear_failure() {
    let tb = common::testbed();
    // a port where nothing listens
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let set = format!("prometheus.prometheus_url=http://127.0.0.1:{port}");
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "prometheus,postgresql", "--set", &set],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("postgresql").status, Status::Ok);
    let c = run.component("prometheus");
    let h = c.hosts.iter().find(|h| h.host == NODE).unwrap();
    assert_eq!(h.errors.len(), 1, "{:?}", h.errors);
    let e = &h.errors[0].message;
    assert!(
        e.starts_with("node3: prometheus: snapshot: ") && e.contains("did not answer"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e:?}");
    // the config on disk (the default path) is still backed up, with what it references
    assert_eq!(c.status, Status::Partial);
    let config = PathBuf::from(tb.var("LSB_PROMETHEUS_CONFIG"));
    assert_same_file(&run, &config);
    for f in files_with_ext(&config.parent().unwrap().join("rules"), "yml") {
        assert_same_file(&run, &f);
    }
}

/// A Prometheus started with relative paths (config, rule files, data dir relative to its working
/// directory): the snapshot is found through the process's working directory, copied and removed;
/// then a snapshot timeout is one clear error.
#[test]
fn relative_data_dir_and_snapshot_timeout() {
    let tb = common::testbed();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules/*.yml]\n\
         scrape_configs:\n  - job_name: temp-self\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/temp.yml"),
        "groups:\n  - name: temp\n    rules:\n      - record: temp:up:count\n        expr: count(up)\n",
    )
    .unwrap();
    let args = [
        "--config.file=prometheus.yml".to_string(),
        "--storage.tsdb.path=data".to_string(),
        "--web.enable-admin-api".to_string(),
    ];
    let mut prom = TempPrometheus::start(&dir, &args, scratch);
    // one scrape (of a target that is down: up == 0) and one rule evaluation stored
    prom.wait_for("scraped", |p| !p.series("temp:up:count").is_empty());

    let set = format!("prometheus.prometheus_url={}", prom.url);
    let run = support::backup(&tb.build_dir(), &["--only", "prometheus", "--set", &set]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let snaps = subdirs(&run.file(&entry(&dir.join("data/snapshots"))));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    block_range(&snaps[0]);
    assert!(
        subdirs(&dir.join("data/snapshots")).is_empty(),
        "snapshot left on the server"
    );
    assert_same_file(&run, &dir.join("prometheus.yml"));
    assert_same_file(&run, &dir.join("rules/temp.yml"));

    let timeout = "prometheus.prometheus_snapshot_timeout=0.001";
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "prometheus", "--set", &set, "--set", timeout],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = &run.component("prometheus").hosts[0];
    assert_eq!(h.errors.len(), 1, "{:?}", h.errors);
    assert!(
        h.errors[0]
            .message
            .starts_with("node3: prometheus: snapshot: ")
            && h.errors[0]
                .message
                .contains("did not complete within 0.001s"),
        "{}",
        h.errors[0]
    );
    drop(prom);
}

/// A TCP proxy in front of `target` (`127.0.0.1:PORT`) that passes every HTTP request on except
/// those whose request line contains `hold`: those are never answered, and their request line is
/// sent on `held`.
struct HoldingProxy {
    port: u16,
    held: std::sync::mpsc::Receiver<String>,
}

impl HoldingProxy {
    fn start(target: String, hold: &'static str) -> HoldingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, held) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let (tx, target) = (tx.clone(), target.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match client.read(&mut b) {
                            Ok(1) => head.push(b[0]),
                            _ => return,
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if line.contains(hold) {
                        let _ = tx.send(line);
                        std::thread::sleep(Duration::from_secs(300));
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&target) else {
                        return;
                    };
                    if server.write_all(&head).is_err() {
                        return;
                    }
                    let (mut s2, mut c2) =
                        (server.try_clone().unwrap(), client.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut s2);
                        let _ = s2.shutdown(Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(Shutdown::Both);
                });
            }
        });
        HoldingProxy { port, held }
    }
}

/// Ctrl-C after the snapshot was taken and copied (lsbackup is then waiting for the loaded
/// configuration, which a proxy holds back): the run stops, leaves no archive, and the cleanup
/// still removes the snapshot directory from the server.
#[test]
fn interrupted_after_the_snapshot_the_cleanup_still_removes_it() {
    let tb = common::testbed();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: temp\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    let data = dir.join("data");
    let args = [
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", data.display()),
        "--web.enable-admin-api".to_string(),
    ];
    let mut prom = TempPrometheus::start(&dir, &args, scratch);
    prom.wait_for("scraped", |p| !p.series("up").is_empty());
    let proxy = HoldingProxy::start(
        prom.url.trim_start_matches("http://").to_string(),
        "/api/v1/status/config",
    );

    let target = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::bin())
        .arg("backup")
        .arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .arg("--no-agent")
        .args(["--only", "prometheus", "--set"])
        .arg(format!(
            "prometheus.prometheus_url=http://127.0.0.1:{}",
            proxy.port
        ))
        .env("HOME", target.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = proxy.held.recv_timeout(Duration::from_secs(120));
    if held.is_err() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "lsbackup never asked for the loaded config; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the snapshot is there now, taken and copied, with the run's marker beside it
    // (`.lsbackup-<holder>-<name>`, src/components/prometheus.rs)
    let taken = subdirs(&data.join("snapshots"));
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert_eq!(
        taken
            .iter()
            .filter(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".lsbackup-"))
            .count(),
        1,
        "{taken:?}"
    );

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "lsbackup did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr:\n{stderr}");
    assert!(
        subdirs(&data.join("snapshots")).is_empty(),
        "{} left on the server; stderr:\n{stderr}",
        taken[0].display()
    );
    let left: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("lsbackup-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(prom);
}

/// A Prometheus that wants https, a client certificate and basic auth (its web config file, as
/// Prometheus' exporter-toolkit reads it): lsbackup reads the CA and the client certificate and
/// key from the host, speaks TLS and sends the password itself. The backup is complete, the web
/// config and the files it references are taken, and the password is nowhere in the manifest,
/// the output or a command; a wrong password is one clear line.
#[test]
fn https_client_certificate_and_basic_auth_are_handled_by_lsbackup() {
    const PASSWORD: &str = "lsbackup-prom-test-pw";
    // bcrypt of PASSWORD (what web.config.file's basic_auth_users holds)
    const HASH: &str = "$2b$05$abcdefghijklmnopqrstuu5mU/JLm9Te.h2TSvQQfPDq0Tc60VmvW";
    let tb = common::testbed();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    // the test bed's etcd PKI: a server certificate for 127.0.0.1 and a client certificate
    let pki = Path::new(tb.var("LSB_ETCD_CACERT")).parent().unwrap();
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    for (from, to) in [
        ("ca.crt", "ca.crt"),
        ("server.crt", "server.crt"),
        ("server.key", "server.key"),
        ("healthcheck-client.crt", "client.crt"),
        ("healthcheck-client.key", "client.key"),
    ] {
        std::fs::copy(pki.join(from), tls.join(to)).unwrap();
    }
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: tls/ca.crt\nbasic_auth_users:\n  backup: '{HASH}'\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: temp\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    let data = dir.join("data");
    let args = [
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.config.file={}", dir.join("web.yml").display()),
        "--web.enable-admin-api".to_string(),
    ];
    let path = |f: &str| tls.join(f).display().to_string();
    let curl_args = [
        "--cacert".to_string(),
        path("ca.crt"),
        "--cert".to_string(),
        path("client.crt"),
        "--key".to_string(),
        path("client.key"),
        "-u".to_string(),
        format!("backup:{PASSWORD}"),
    ];
    let prom = TempPrometheus::start_with(&dir, &args, scratch, "https", &curl_args);

    let sets = |password: &str| {
        vec![
            format!("prometheus.prometheus_url={}", prom.url),
            format!("prometheus.prometheus_ca_cert={}", path("ca.crt")),
            format!("prometheus.prometheus_client_cert={}", path("client.crt")),
            format!("prometheus.prometheus_client_key={}", path("client.key")),
            "prometheus.prometheus_user=backup".to_string(),
            format!("prometheus.prometheus_password={password}"),
        ]
    };
    let backup = |password: &str| {
        let sets = sets(password);
        let mut args = vec!["--only", "prometheus"];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        support::backup(&tb.build_dir(), &args)
    };

    let run = backup(PASSWORD);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = &run.component("prometheus").hosts[0];
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    assert!(
        h.versions["prometheus"].starts_with("2."),
        "{:?}",
        h.versions
    );
    let snaps = subdirs(&run.file(&entry(&data.join("snapshots"))));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(subdirs(&data.join("snapshots")).is_empty(), "snapshot left");
    // the web config and what it references (relative to its directory)
    for f in ["web.yml", "prometheus.yml"] {
        assert_same_file(&run, &dir.join(f));
    }
    for f in ["server.crt", "server.key", "ca.crt"] {
        assert_same_file(&run, &tls.join(f));
    }
    // the password: nowhere in what lsbackup wrote or ran
    let manifest = std::fs::read_to_string(run.file("manifest.json")).unwrap();
    for (what, text) in [
        ("manifest", manifest.as_str()),
        ("stderr", &run.stderr()),
        ("stdout", &run.stdout()),
    ] {
        assert!(!text.contains(PASSWORD), "password in the {what}");
    }

    let run = backup("wrong-password");
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = &run.component("prometheus").hosts[0];
    let errors = support::messages(&h.errors);
    assert!(
        errors.starts_with("node3: prometheus: snapshot: ")
            && errors.contains("HTTP 401")
            && errors.contains("check prometheus_user and prometheus_password"),
        "{errors}"
    );
    assert_eq!(h.errors.len(), 1, "{errors}");
    assert!(!errors.contains('\n'));
    assert!(!run.stderr().contains("wrong-password"), "{}", run.stderr());
    drop(prom);
}
