//! Running the real `lsbackup` binary in integration tests and opening what it wrote.
//!
//! Use with `mod common; mod support;`. Every run writes into a fresh temp target; the archive is
//! extracted with the system `tar` (GNU tar with zstd) so tests check the content through an
//! independent reader, not through lsbackup's own code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lsbackup::archive::Manifest;

pub mod es;
pub mod stores;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lsbackup")
}

/// The result of one `lsbackup backup` run.
pub struct Run {
    pub output: Output,
    pub target: tempfile::TempDir,
    /// The archive written, if any.
    pub archive: Option<PathBuf>,
    /// Its contents, extracted by GNU tar / unzip.
    pub extracted: Option<tempfile::TempDir>,
    pub manifest: Option<Manifest>,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn manifest(&self) -> &Manifest {
        self.manifest
            .as_ref()
            .unwrap_or_else(|| panic!("no manifest; stderr:\n{}", self.stderr()))
    }
    /// Path of an extracted entry (`component/host/path`).
    pub fn file(&self, entry: &str) -> PathBuf {
        let dir = self
            .extracted
            .as_ref()
            .unwrap_or_else(|| panic!("no archive; stderr:\n{}", self.stderr()));
        dir.path().join(entry)
    }
    pub fn read(&self, entry: &str) -> Vec<u8> {
        let p = self.file(entry);
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; stderr:\n{}", p.display(), self.stderr()))
    }
    /// The component report, panicking with the stderr when absent.
    pub fn component(&self, name: &str) -> &lsbackup::archive::ComponentReport {
        self.manifest()
            .components
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "component {name} not in manifest; stderr:\n{}",
                    self.stderr()
                )
            })
    }
    /// Every error of a component (its own and its hosts'), one per line.
    pub fn errors_of(&self, component: &str) -> String {
        let c = self.component(component);
        messages(
            c.errors
                .iter()
                .chain(c.hosts.iter().flat_map(|h| h.errors.iter())),
        )
    }
    /// Every note of a component's hosts, one per line.
    pub fn flags_of(&self, component: &str) -> String {
        self.component(component)
            .hosts
            .iter()
            .flat_map(|h| h.flags.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// Files left in the target directory (names).
    pub fn target_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.target.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Extract an archive (tar.zst, tar.gz or zip) into a new temp dir with system tools.
pub fn extract(archive: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let name = archive.to_string_lossy();
    let out = if name.ends_with(".zip") {
        Command::new("unzip")
            .arg("-q")
            .arg(archive)
            .arg("-d")
            .arg(dir.path())
            .output()
    } else {
        Command::new("tar")
            .arg("-xaf")
            .arg(archive)
            .arg("-C")
            .arg(dir.path())
            .output()
    }
    .expect("running tar/unzip");
    if !out.status.success() {
        // say why: the tool's own words, what lsbackup's verify finds, and the free space
        let verify = Command::new(bin()).arg("verify").arg(archive).output();
        let df = Command::new("df")
            .arg("-h")
            .arg(dir.path())
            .arg(archive)
            .output();
        let text = |o: std::io::Result<Output>| match o {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e.to_string(),
        };
        panic!(
            "extracting {name} failed ({}):\n{}\n{}\nverify:\n{}\ndf:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            text(verify),
            text(df)
        );
    }
    dir
}

/// Run `lsbackup backup -b BUILD -t <fresh temp dir> ARGS...` with the test bed's known_hosts.
pub fn backup(build_dir: &Path, args: &[&str]) -> Run {
    let target = tempfile::tempdir().unwrap();
    backup_into(build_dir, target, args)
}

/// `lsbackup backup -b BUILD -t TARGET` with the test bed's known_hosts, no agent, and HOME in
/// the target (never the real ~/.ssh): add arguments and run it.
pub fn backup_command(build_dir: &Path, target: &Path) -> Command {
    let tb = crate::common::testbed();
    let mut c = Command::new(bin());
    c.arg("backup")
        .arg("-b")
        .arg(build_dir)
        .arg("-t")
        .arg(target)
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .arg("--no-agent")
        .env("HOME", target);
    c
}

pub fn backup_into(build_dir: &Path, target: tempfile::TempDir, args: &[&str]) -> Run {
    let output = backup_command(build_dir, target.path())
        .args(args)
        .output()
        .expect("running lsbackup");
    let archive = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.to_string_lossy();
            !n.ends_with(".partial") && !n.ends_with(".manifest.json") && p.is_file()
        });
    let extracted = archive.as_deref().map(extract);
    let manifest = extracted.as_ref().map(|d| {
        let text = std::fs::read(d.path().join("manifest.json")).expect("manifest.json in archive");
        serde_json::from_slice(&text).expect("manifest parses")
    });
    Run {
        output,
        target,
        archive,
        extracted,
        manifest,
    }
}

/// A name no other test run uses: `<prefix>-<pid>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a server on a free port: `start(port)` writes its configuration with `port` and spawns
/// it. Returns once that child itself listens there (its own socket in /proc/net/tcp): a port
/// from [`free_port`] may be taken by another test's server before ours binds it, and a connect
/// to a port of the ephemeral range can reach another server, or even itself. A child that
/// exits before listening (its port was taken) is started again on another port.
pub fn start_listening(
    what: &str,
    limit: std::time::Duration,
    mut start: impl FnMut(u16) -> std::process::Child,
) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = start(port);
        let end = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("{what} exited ({status}) before listening on {port}; another port");
                break;
            }
            if listens(child.id(), port) {
                return (child, port);
            }
            if std::time::Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not listen on {port} within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    panic!("{what} exited before listening, five times on five ports");
}

/// Whether process `pid` holds a listening TCP socket on `port` (any address).
pub fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local = f[1].rsplit_once(':').map(|(_, p)| p);
            if local.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
    })
}

/// A copy of the test bed's build dir whose `[group]` section is replaced by `hosts` lines.
pub fn build_dir_with_group(group: &str, hosts: &[&str]) -> tempfile::TempDir {
    let text = std::fs::read_to_string(crate::common::testbed().inventory()).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == format!("[{group}]");
            if skipping {
                out.push_str(&format!("[{group}]\n{}\n\n", hosts.join("\n")));
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains(hosts[0]),
        "no [{group}] in the test bed inventory"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory"), out).unwrap();
    dir
}

/// The messages of failures, one per line.
pub fn messages<'a>(failures: impl IntoIterator<Item = &'a lsbackup::archive::Failure>) -> String {
    failures
        .into_iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A process of user `nobody` (an unprivileged local user) with the given arguments, as any local
/// user could start one: `python3 -c 'sleep' ARGS...` so that its command line holds `ARGS`
/// verbatim. Killed (by its pid) on drop.
pub struct UnprivilegedProcess {
    pub child: std::process::Child,
    _exe_dir: Option<tempfile::TempDir>,
}

impl UnprivilegedProcess {
    pub fn spawn(args: &[&str]) -> UnprivilegedProcess {
        let child = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "/usr/bin/python3",
                "-c",
                "import time; time.sleep(300)",
            ])
            .args(args)
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting a process as nobody (setpriv)");
        // wait until its command line is the python one (setpriv has exec'd)
        for _ in 0..100 {
            let cmdline =
                std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|a| a == args[0].as_bytes()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        UnprivilegedProcess {
            child,
            _exe_dir: None,
        }
    }

    /// A process of user `nobody` running an executable named `name` of its own (a program
    /// that only waits, compiled here with `cc`) in `cwd`, with `args`: what a local user could
    /// start to look like a service (`/proc/PID/exe` ends in `/NAME`). The executable's
    /// directory is removed on drop.
    pub fn spawn_exe(name: &str, cwd: &Path, args: &[&str]) -> UnprivilegedProcess {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("lsb-lookalike")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = compile_c(
            dir.path(),
            name,
            "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
            &[],
        );
        let child = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&exe)
            .args(args)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting a process as nobody (setpriv)");
        // wait until setpriv has exec'd the lookalike
        let want = exe.display().to_string();
        for _ in 0..250 {
            let now = std::fs::read_link(format!("/proc/{}/exe", child.id()))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if now == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        UnprivilegedProcess {
            child,
            _exe_dir: Some(dir),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asserts `flags` (a host's notes in the manifest) say this process was ignored for not
    /// being run by root or `user`.
    pub fn assert_noted_as_ignored(&self, flags: &[String], user: &str) {
        let note = format!("ignored process {} (", self.pid());
        let why = format!("neither root nor {user}");
        assert!(
            flags
                .iter()
                .any(|f| f.starts_with(&note) && f.contains(&why)),
            "no note for the lookalike {}: {flags:?}",
            self.pid()
        );
    }
}

/// Compile the C program `source` with `cc` (the C compiler Rust links with) into `dir/name`,
/// with `defines` (`-DNAME=VALUE` arguments).
pub fn compile_c(dir: &Path, name: &str, source: &str, defines: &[String]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let exe = dir.join(name);
    let cc = Command::new("cc")
        .args(defines)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc (the C compiler Rust links with)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    exe
}

impl Drop for UnprivilegedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `age-keygen -o DIR/key.txt`: the identity file and its public key (`age1...`).
pub fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen (apt install age)");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_string();
    (key, public)
}

/// `len` deterministic, incompressible bytes (xorshift from `seed`).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A multi-threaded tokio runtime for a test that drives the library directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `lsbackup restore ARCHIVE -b BUILD` with the test bed's known_hosts, no agent, HOME in a temp
/// dir, stdin not a terminal: add arguments (`--yes`, `--dry-run`, `--only ...`) and run it.
pub fn restore(build_dir: &Path, archive: &Path, args: &[&str]) -> Output {
    let tb = crate::common::testbed();
    let home = tempfile::tempdir().unwrap();
    Command::new(bin())
        .arg("restore")
        .arg(archive)
        .arg("-b")
        .arg(build_dir)
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .arg("--no-agent")
        .args(args)
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running lsbackup restore")
}

/// A finished command's exit code, stdout and stderr, for assertion messages and `contains`.
pub fn transcript(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The archive a backup that must have succeeded wrote.
pub fn archive_of(run: &Run) -> PathBuf {
    assert_eq!(run.code(), 0, "{}", run.stderr());
    run.archive.clone().expect("an archive")
}

/// What restores kept beside `path` (`NAME.lsbackup-<time>`, files or directories), sorted.
pub fn kept_beside(path: &Path) -> Vec<PathBuf> {
    let name = format!("{}.lsbackup-", path.file_name().unwrap().to_string_lossy());
    let mut v: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .collect();
    v.sort();
    v
}
