//! Shared helpers for integration tests that run against the real test bed started by
//! `tests/testbed/up.sh` (three sshd hosts on 127.0.0.2..4 plus PostgreSQL, etcd, HAProxy, ...).
//!
//! Use from a test file with `mod common;` then `let tb = common::testbed();`.
//! The state dir is `$LSB_TESTBED` (default `/tmp/lsbackup-testbed`); its `env` file holds
//! `KEY=value` lines written by up.sh. When the test bed is not up, every accessor panics with a
//! message saying to run `tests/testbed/up.sh` first.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Default state dir of the test bed, as in tests/testbed/lib.sh.
pub const DEFAULT_TESTBED_DIR: &str = "/tmp/lsbackup-testbed";

/// The running test bed, as described by `$LSB_TESTBED/env`.
#[derive(Debug, Clone)]
pub struct TestBed {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
}

fn not_up(why: &str) -> ! {
    panic!(
        "the lsbackup test bed is not up ({why}): run `sudo tests/testbed/up.sh` first \
         (state dir: $LSB_TESTBED, default {DEFAULT_TESTBED_DIR})"
    )
}

/// The test bed, loaded once per test binary. Panics with "run tests/testbed/up.sh first" when the
/// env file is missing or the first sshd host does not accept TCP connections.
pub fn testbed() -> &'static TestBed {
    static TB: OnceLock<TestBed> = OnceLock::new();
    TB.get_or_init(|| {
        let tb = TestBed::load().unwrap_or_else(|e| not_up(&e));
        tb.check_reachable();
        tb
    })
}

/// Parse `KEY=value` lines (blank lines and `#` comments skipped; no quoting is used by up.sh).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

impl TestBed {
    /// Read `$LSB_TESTBED/env` without checking that anything runs.
    pub fn load() -> Result<TestBed, String> {
        let dir = std::env::var_os("LSB_TESTBED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TESTBED_DIR));
        let env_file = dir.join("env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
        Ok(TestBed {
            dir,
            vars: parse_env(&text),
        })
    }

    fn check_reachable(&self) {
        let host = &self.hosts()[0];
        let addr: SocketAddr = format!("{host}:{}", self.ssh_port())
            .parse()
            .unwrap_or_else(|e| not_up(&format!("bad address {host}: {e}")));
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            not_up(&format!("sshd at {addr} refuses connections: {e}"));
        }
    }

    /// The state dir (`$LSB_TESTBED`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value from the env file; panics naming the key when up.sh did not write it.
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| {
            not_up(&format!(
                "{key} missing from {}",
                self.dir.join("env").display()
            ))
        })
    }

    /// A value from the env file, if present.
    pub fn var_opt(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// All env file entries.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// ed25519 private key authorized for `root` and `operations` on all three hosts.
    pub fn client_key(&self) -> PathBuf {
        self.existing(self.var("LSB_CLIENT_KEY"))
    }

    /// A second private key that is authorized nowhere (wrong-key tests).
    pub fn other_key(&self) -> PathBuf {
        self.existing(self.var("LSB_OTHER_KEY"))
    }

    /// known_hosts with the three hosts in `[ip]:port` form (node3's entry is hashed).
    pub fn known_hosts(&self) -> PathBuf {
        self.existing(self.var("LSB_KNOWN_HOSTS"))
    }

    /// The LambdaStack-style build dir holding `inventory`.
    pub fn build_dir(&self) -> PathBuf {
        self.existing(self.var("LSB_BUILD_DIR"))
    }

    /// The INI inventory file inside the build dir.
    pub fn inventory(&self) -> PathBuf {
        self.existing(self.var("LSB_INVENTORY"))
    }

    /// Port every sshd host listens on.
    pub fn ssh_port(&self) -> u16 {
        let p = self.var("LSB_SSH_PORT");
        p.parse()
            .unwrap_or_else(|_| not_up(&format!("LSB_SSH_PORT={p} is not a port")))
    }

    /// The unprivileged login user (`operations`, passwordless sudo).
    pub fn ssh_user(&self) -> &str {
        self.var("LSB_SSH_USER")
    }

    /// Host addresses, in node order: 127.0.0.2, 127.0.0.3, 127.0.0.4.
    pub fn hosts(&self) -> Vec<String> {
        split_list(self.var("LSB_HOSTS"))
    }

    /// Inventory host names, in the same order as [`TestBed::hosts`]: node1, node2, node3.
    pub fn nodes(&self) -> Vec<String> {
        split_list(self.var("LSB_NODES"))
    }

    /// Address of an inventory host name (`node2` -> `127.0.0.3`).
    pub fn host_of(&self, node: &str) -> String {
        let nodes = self.nodes();
        let i = nodes
            .iter()
            .position(|n| n == node)
            .unwrap_or_else(|| panic!("no test bed node named {node:?} (have {nodes:?})"));
        self.hosts()[i].clone()
    }

    /// An OpenSSH `ssh` command to `user@host` with the test client key and known_hosts, ready
    /// for `.arg(remote_command)`.
    pub fn ssh(&self, user: &str, host: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-n")
            .arg("-i")
            .arg(self.client_key())
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-p")
            .arg(self.ssh_port().to_string())
            .arg(format!("{user}@{host}"));
        c
    }

    fn existing(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if !p.exists() {
            not_up(&format!("{} does not exist", p.display()));
        }
        p
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The `lsbackup` binary built by cargo for this test run.
pub fn lsbackup() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lsbackup"))
}
