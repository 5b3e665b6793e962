//! OpenSSH `known_hosts` files: lookup of a host's recorded keys and recording of new ones.
//!
//! Written here rather than using `russh::keys::known_hosts` because lsbackup needs what that
//! helper does not give: exact `file:line` of a conflicting entry, `@revoked` and
//! `@cert-authority` markers, wildcard and negated host patterns, tab-separated fields, lines it
//! cannot parse skipped instead of failing the whole file, and new files created `0600`.
//!
//! Matching follows OpenSSH (`hostfile.c`, `match.c`): the name looked up is the lowercased host
//! (`host`, or `[host]:port` when the port is not 22); a line's host field is either one hashed
//! entry `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` or a comma-separated list of patterns
//! with `*`, `?` and `!` negation.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// Serialises recording by concurrent sessions of this process (the `flock` serialises processes).
static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// The outcome of looking a host key up in a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is recorded for this host.
    Known,
    /// Nothing is recorded for this host.
    Unknown,
    /// Another key is recorded for this host (same type, or only keys of other types); `line` is
    /// the first such entry (1-based).
    Changed { line: usize },
    /// The key is marked `@revoked` at `line`.
    Revoked { line: usize },
}

/// One parsed, matching line.
struct Entry {
    line: usize,
    revoked: bool,
    key: PublicKey,
}

/// `~/.ssh/known_hosts` of `$HOME`, else of the current user's home directory in the password
/// database, else `/root/.ssh/known_hosts`.
pub(crate) fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(passwd_home)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".ssh").join("known_hosts")
}

/// The current user's home directory from the password database.
fn passwd_home() -> Option<PathBuf> {
    // SAFETY: getpwuid_r writes only into the buffers given; the result pointer is checked.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_dir.is_null() {
            let dir = std::ffi::CStr::from_ptr(pwd.pw_dir).to_string_lossy();
            if !dir.is_empty() {
                return Some(PathBuf::from(dir.into_owned()));
            }
        }
    }
    None
}

/// Is `path` one that can never hold keys (`/dev/null`, or an existing file that is not a
/// regular file, e.g. a character device or pipe)? Checking against it would pass nothing and
/// recording into it would forget every key.
pub(crate) fn is_black_hole(path: &Path) -> bool {
    path == Path::new("/dev/null") || fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The name OpenSSH looks up: `host` on port 22, else `[host]:port`; lowercased.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Entries of `path` for `name` (missing file: none). Lines that do not parse are skipped.
fn matching_entries(path: &Path, name: &str) -> io::Result<Vec<Entry>> {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                // Host certificates are not requested by lsbackup; CA lines never match a key.
                _ => continue,
            }
            first = match fields.next() {
                Some(f) => f,
                None => continue,
            };
        }
        let (Some(_keytype), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_field_matches(first, name) {
            continue;
        }
        let Ok(blob) = B64.decode(b64) else {
            tracing::debug!(
                "{}:{}: bad base64 key, line skipped",
                path.display(),
                idx + 1
            );
            continue;
        };
        let Ok(key) = PublicKey::from_bytes(&blob) else {
            tracing::debug!(
                "{}:{}: unreadable key, line skipped",
                path.display(),
                idx + 1
            );
            continue;
        };
        out.push(Entry {
            line: idx + 1,
            revoked,
            key,
        });
    }
    Ok(out)
}

/// Same key type (all RSA signature variants are one type).
pub(crate) fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. })) || a == b
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// Look `key` up for `host`:`port` in `path`.
///
/// A host that has entries, none of them this key, is `Changed` even when the recorded keys are
/// of another type: the server's key cannot be vouched for, and recording it would let anyone
/// who can answer with a key of a new type past the check. (Sessions prefer the recorded key
/// types during key exchange, as OpenSSH does, so this only fires when the server really no
/// longer offers the recorded key.)
pub(crate) fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let entries = matching_entries(path, &lookup_name(host, port))?;
    if let Some(e) = entries.iter().find(|e| e.revoked && same_key(&e.key, key)) {
        return Ok(Verdict::Revoked { line: e.line });
    }
    let plain: Vec<&Entry> = entries.iter().filter(|e| !e.revoked).collect();
    if plain.iter().any(|e| same_key(&e.key, key)) {
        return Ok(Verdict::Known);
    }
    let algo = key.algorithm();
    if let Some(e) = plain
        .iter()
        .find(|e| same_type(&e.key.algorithm(), &algo))
        .or_else(|| plain.first())
    {
        return Ok(Verdict::Changed { line: e.line });
    }
    Ok(Verdict::Unknown)
}

/// Key algorithms recorded for `host`:`port`, in file order, without duplicates (RSA as one).
/// Missing or unreadable file: empty.
pub(crate) fn recorded_algorithms(path: &Path, host: &str, port: u16) -> Vec<Algorithm> {
    let mut out: Vec<Algorithm> = Vec::new();
    for e in matching_entries(path, &lookup_name(host, port)).unwrap_or_default() {
        if e.revoked {
            continue;
        }
        let a = e.key.algorithm();
        if !out.iter().any(|o| same_type(o, &a)) {
            out.push(a);
        }
    }
    out
}

/// Record `host`:`port` `key` in `path` unless something is recorded for that host by now.
///
/// Returns what the file said just before: [`Verdict::Unknown`] means the key was appended now;
/// `Known` means another connection recorded the same key first (nothing appended);
/// `Changed`/`Revoked` mean another key was recorded (or this one revoked) in the meantime, which
/// the caller must treat exactly like a changed key found by [`check`].
///
/// Two connections may record keys for one host at once (two inventory names for one address,
/// a jump host that is also a target, concurrent runs): recording is serialised by an
/// in-process mutex plus an advisory `flock` on the file, and the file is read again under the
/// lock, so a key is recorded once and a different key recorded concurrently is seen.
///
/// The file (created `0600`, its directory `0700`) must be a regular file: recording into
/// `/dev/null` or a pipe would make every run trust whatever key it meets.
pub(crate) fn record(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(
            "not a regular file; host keys cannot be recorded there",
        ));
    }
    let _flock = Flock::exclusive(&file)?;
    let verdict = check(path, host, port, key)?;
    if verdict == Verdict::Unknown {
        append_line(&file, host, port, key)?;
    }
    Ok(verdict)
}

/// An advisory `flock(LOCK_EX)` on an open file, released on drop.
struct Flock<'a>(&'a fs::File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a fs::File) -> io::Result<Flock<'a>> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a valid, open descriptor borrowed for the guard's lifetime.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above; unlocking cannot invalidate anything.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Append the `host`:`port` `key` line to `file` (opened for append), starting a new line if the
/// file does not end with one, then fsync.
fn append_line(mut file: &fs::File, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    let mut needs_newline = false;
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        if file.read_exact(&mut last).is_ok() {
            needs_newline = last[0] != b'\n';
        }
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut line = String::new();
    if needs_newline {
        line.push('\n');
    }
    line.push_str(&lookup_name(host, port));
    line.push(' ');
    // Server keys carry no comment; keep only "type base64".
    line.push_str(
        openssh
            .split_ascii_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
            .as_str(),
    );
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// `ssh-ed25519 SHA256:...`, as OpenSSH shows a key.
pub(crate) fn describe(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

fn hosts_field_matches(field: &str, name: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        return hashed_matches(rest, name);
    }
    let mut found = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if wildcard_match(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return false;
            }
            found = true;
        }
    }
    found
}

/// `rest` is `base64(salt)|base64(hash)`.
fn hashed_matches(rest: &str, name: &str) -> bool {
    let Some((salt, hash)) = rest.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH `match_pattern`: `*` any run, `?` one character.
fn wildcard_match(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A hashed host field for `host`:`port` with the given salt (tests and tooling).
#[cfg(test)]
pub(crate) fn hashed_field(host: &str, port: u16, salt: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("any key length");
    mac.update(lookup_name(host, port).as_bytes());
    format!(
        "|1|{}|{}",
        B64.encode(salt),
        B64.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(b64: &str) -> PublicKey {
        PublicKey::from_bytes(&B64.decode(b64).unwrap()).unwrap()
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn plain_port_and_patterns() {
        let (_d, p) = file(&format!(
            "# comment\n\n[10.0.0.1]:2222 ssh-ed25519 {K1}\nweb*.example.com,!web9.example.com\tssh-ed25519 {K2} c\n"
        ));
        assert_eq!(
            check(&p, "10.0.0.1", 2222, &key(K1)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            check(&p, "10.0.0.1", 22, &key(K1)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&p, "10.0.0.1", 2222, &key(K2)).unwrap(),
            Verdict::Changed { line: 3 }
        );
        assert_eq!(
            check(&p, "WEB1.example.com", 22, &key(K2)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            check(&p, "web9.example.com", 22, &key(K2)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entries() {
        let field = hashed_field("10.0.0.7", 2222, b"0123456789abcdefghij");
        let (_d, p) = file(&format!("{field} ssh-ed25519 {K1}\n"));
        assert_eq!(
            check(&p, "10.0.0.7", 2222, &key(K1)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            check(&p, "10.0.0.7", 2222, &key(K2)).unwrap(),
            Verdict::Changed { line: 1 }
        );
        assert_eq!(
            check(&p, "10.0.0.8", 2222, &key(K1)).unwrap(),
            Verdict::Unknown
        );
        // The russh test vector (example.com, port 22).
        let (_d, p) = file(&format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= ssh-ed25519 {K2}\n"
        ));
        assert_eq!(
            check(&p, "example.com", 22, &key(K2)).unwrap(),
            Verdict::Known
        );
    }

    #[test]
    fn revoked_and_markers() {
        let (_d, p) = file(&format!(
            "@cert-authority * ssh-ed25519 {K2}\n@revoked h1 ssh-ed25519 {K1}\nh1 ssh-ed25519 {K1}\n"
        ));
        assert_eq!(
            check(&p, "h1", 22, &key(K1)).unwrap(),
            Verdict::Revoked { line: 2 }
        );
        assert_eq!(check(&p, "h2", 22, &key(K2)).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let (_d, p) = file(&format!(
            "h1 ssh-ed25519 !!!notbase64\nh1\nh1 ssh-ed25519 {K1}\n"
        ));
        assert_eq!(check(&p, "h1", 22, &key(K1)).unwrap(), Verdict::Known);
    }

    #[test]
    fn record_creates_0600_and_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/known_hosts");
        assert_eq!(
            record(&p, "127.0.0.2", 2222, &key(K1)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            check(&p, "127.0.0.2", 2222, &key(K1)).unwrap(),
            Verdict::Known
        );
        // A file without a final newline gets one before the new entry.
        let q = dir.path().join("kh2");
        fs::write(&q, format!("h1 ssh-ed25519 {K2}")).unwrap();
        record(&q, "h2", 22, &key(K1)).unwrap();
        assert_eq!(
            fs::read_to_string(&q).unwrap(),
            format!("h1 ssh-ed25519 {K2}\nh2 ssh-ed25519 {K1}\n")
        );
        assert_eq!(recorded_algorithms(&q, "h2", 22), vec![Algorithm::Ed25519]);
        // Recorded by now: the same key again appends nothing, another key is a changed key.
        assert_eq!(record(&q, "h2", 22, &key(K1)).unwrap(), Verdict::Known);
        assert_eq!(
            record(&q, "h2", 22, &key(K2)).unwrap(),
            Verdict::Changed { line: 2 }
        );
        assert_eq!(fs::read_to_string(&q).unwrap().lines().count(), 2);
    }

    #[test]
    fn record_waits_for_another_process_holding_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("known_hosts");
        fs::write(&p, "").unwrap();
        let locked = dir.path().join("locked");
        // util-linux flock(1): take the lock, say so, and append K2 for the host a bit later.
        let script = format!(
            "touch {locked}; sleep 0.5; echo '[h1]:2222 ssh-ed25519 {K2}' >> {kh}",
            locked = crate::shell::quote(locked.to_str().unwrap()),
            kh = crate::shell::quote(p.to_str().unwrap()),
        );
        let mut child = std::process::Command::new("flock")
            .arg(&p)
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !locked.exists() {
            assert!(
                start.elapsed().as_secs() < 10,
                "flock(1) never took the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Looked up before the lock: unknown. Recording waits, re-reads, and sees K2.
        assert_eq!(check(&p, "h1", 2222, &key(K1)).unwrap(), Verdict::Unknown);
        assert_eq!(
            record(&p, "h1", 2222, &key(K1)).unwrap(),
            Verdict::Changed { line: 1 }
        );
        assert!(child.wait().unwrap().success());
        assert_eq!(fs::read_to_string(&p).unwrap().lines().count(), 1);
    }

    #[test]
    fn record_refuses_what_is_not_a_regular_file() {
        let e = record(Path::new("/dev/null"), "h1", 22, &key(K1)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn concurrent_records_of_one_host_append_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("known_hosts");
        // Threads of this process, half of them with another key for the host.
        let verdicts: Vec<Verdict> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let p = p.clone();
                    s.spawn(move || {
                        let k = if i % 2 == 0 { K1 } else { K2 };
                        record(&p, "h1", 2222, &key(k)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(fs::read_to_string(&p).unwrap().lines().count(), 1);
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Unknown).count(),
            1,
            "{verdicts:?}"
        );
        // Every other recorder saw the first one's key: the same key Known, the other Changed.
        assert!(
            verdicts.iter().all(|v| matches!(
                v,
                Verdict::Unknown | Verdict::Known | Verdict::Changed { line: 1 }
            )),
            "{verdicts:?}"
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"abc", b"a*c"));
        assert!(wildcard_match(b"abc", b"*"));
        assert!(wildcard_match(b"abc", b"a?c"));
        assert!(!wildcard_match(b"abc", b"a?"));
        assert!(wildcard_match(b"[h]:22", b"[h]:2?"));
    }
}
