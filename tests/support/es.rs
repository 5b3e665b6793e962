//! A private Elasticsearch stand-in of this tree (tests/testbed/standins/elasticsearch.py): plain
//! http on its own port, its own elasticsearch.yml in a temp dir, killed on drop. The shared one
//! of the test bed is left alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ES_STANDIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/testbed/standins/elasticsearch.py"
);

/// The stand-in run on `config` (elasticsearch.yml or opensearch.yml) with `args`.
pub fn spawn_standin(config: &Path, args: &[String]) -> Child {
    Command::new("/usr/bin/python3")
        .arg(ES_STANDIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the Elasticsearch stand-in")
}

/// Where the instance's `path.repo` points.
pub enum Repo<'a> {
    /// Not set.
    None,
    /// A directory of the test's.
    At(&'a str),
    /// `<its dir>/repos`, created; [`EsStandIn::sets`] points the repository location there.
    Own,
}

pub struct EsStandIn {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    own_repos: bool,
}

impl EsStandIn {
    /// Started with `args` for the stand-in, once it listens.
    pub fn start(repo: Repo<'_>, args: &[&str]) -> EsStandIn {
        let dir = tempfile::tempdir().unwrap();
        let own_repos = matches!(repo, Repo::Own);
        if own_repos {
            std::fs::create_dir(dir.path().join("repos")).unwrap();
        }
        let (child, port) = super::start_listening(
            "the Elasticsearch stand-in",
            Duration::from_secs(15),
            |port| {
                let mut yml = format!(
                    "cluster.name: lsbackup-test\nnode.name: node-a\npath.data: {}/data\nnetwork.host: 127.0.0.1\nhttp.port: {port}\n",
                    dir.path().display()
                );
                match &repo {
                    Repo::None => {}
                    Repo::At(r) => yml.push_str(&format!("path.repo: [\"{r}\"]\n")),
                    Repo::Own => yml.push_str(&format!(
                        "path.repo: [\"{}/repos\"]\n",
                        dir.path().display()
                    )),
                }
                std::fs::write(dir.path().join("elasticsearch.yml"), yml).unwrap();
                let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                args.extend(["--log".into(), dir.path().join("log").display().to_string()]);
                spawn_standin(&dir.path().join("elasticsearch.yml"), &args)
            },
        );
        EsStandIn {
            child,
            port,
            dir,
            own_repos,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its directory (elasticsearch.yml, data).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<its dir>/repos` ([`Repo::Own`]).
    pub fn repos(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// `METHOD path` with a JSON body: (HTTP status, the answer as JSON or Null), by curl.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "-X", method]).args([
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(b) = body {
            c.args(["--data-binary", b]);
        }
        let out = c
            .arg(format!("{}{path}", self.url()))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `--set` arguments pointing the component at this instance (and, with [`Repo::Own`], its
    /// repository location at `<repos>/lsbackup`).
    pub fn sets(&self) -> Vec<String> {
        let mut v = vec![
            "--set".into(),
            format!("elasticsearch.elasticsearch_url={}", self.url()),
            "--set".into(),
            format!(
                "elasticsearch.elasticsearch_config_dir={}",
                self.path().display()
            ),
        ];
        if self.own_repos {
            v.push("--set".into());
            v.push(format!(
                "elasticsearch.elasticsearch_repository_location={}/lsbackup",
                self.repos().display()
            ));
        }
        v
    }
}

impl Drop for EsStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
