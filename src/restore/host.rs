//! One component's restore on one host: the primitives a component's restore is written with.
//!
//! Every change to a host goes through [`HostRestore::change`], [`HostRestore::change_with_file`],
//! [`HostRestore::put_file`] or [`HostRestore::put_tree`]; in a dry run they only say what they
//! would do. Queries ([`HostRestore::query`]) run in both modes: they read, never write.
//!
//! What a restore makes beside what it replaces carries the pid of the process holding its
//! connection (see `components::leftovers`): `.lsbackup-restore.<holder>.XXXXXX` (a file on its
//! way in) and `DIR.lsbackup-new.<holder>.lsbackup-<time>` (a directory on its way in). Before
//! it first puts something into a directory, a restore removes what a killed restore left
//! there (its holder gone); one note per component and host says what.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::archive::{EntryKind, EntryRecord};
use crate::components::leftovers::{self, Kind, Removals};
use crate::http::{Endpoint, HttpClient, HttpClientBuilder};
use crate::shell::{Script, quote};
use crate::transport::{Output, Session};

use super::RestoreError;

/// Output cap of a query.
const QUERY_LIMIT: usize = 4 * 1024 * 1024;

/// What happened to one file put back ([`HostRestore::put_file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The host's file already had the backed-up content.
    Unchanged,
    /// Replaced; the previous content was kept beside it.
    Replaced,
    /// It did not exist.
    Created,
}

/// One component's restore on one host.
pub struct HostRestore<'a> {
    pub(crate) host: &'a str,
    pub(crate) component: &'a str,
    pub(crate) session: Arc<Session>,
    pub(crate) vars: &'a BTreeMap<String, String>,
    /// The host's entries as extracted: `staging/COMPONENT/HOST`.
    pub(crate) root: PathBuf,
    pub(crate) entries: Vec<&'a EntryRecord>,
    pub(crate) dry_run: bool,
    pub(crate) yes: bool,
    /// `lsbackup-<UTC time of this restore>`: the suffix of what is kept beside a replaced file.
    pub(crate) keep_suffix: &'a str,
    /// The lines said so far (printed as they come by `say`).
    pub(crate) lines: Vec<String>,
    pub(crate) say: &'a (dyn Fn(&str) + Sync),
    /// Set when a component put back something that stays unused until done by hand (a note).
    pub(crate) notes: Vec<String>,
    /// Directories whose replaced files are kept elsewhere (dir, where), e.g. a static pod
    /// manifest dir whose every file kubelet would run.
    pub(crate) keep_dirs: Vec<(String, String)>,
    /// Directories already looked at for leftovers of killed restores (per host).
    pub(crate) swept: Vec<String>,
    /// What was removed of those leftovers (said in one note at the end).
    pub(crate) removed: Vec<String>,
}

impl<'a> HostRestore<'a> {
    pub fn host(&self) -> &str {
        self.host
    }

    pub fn component(&self) -> &str {
        self.component
    }

    /// A variable of the host for this component (spec default, inventory, `--set`); "" when
    /// unset.
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// `--yes` was given: replace what exists (databases, ...).
    pub fn yes(&self) -> bool {
        self.yes
    }

    pub fn keep_suffix(&self) -> &str {
        self.keep_suffix
    }

    /// Say one line about this host (indented under the component and host).
    pub fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        (self.say)(&format!("  {line}"));
        self.lines.push(line);
    }

    /// A note for the summary (something the operator must know or do).
    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        (self.say)(&format!("  note: {line}"));
        self.notes.push(line);
    }

    /// Keep the replaced files of directory `dir` in `elsewhere` instead of beside them.
    pub fn keep_elsewhere(&mut self, dir: &str, elsewhere: &str) {
        self.keep_dirs
            .push((dir.trim_end_matches('/').to_string(), elsewhere.to_string()));
    }

    /// Where the current `dest` is kept when it is replaced.
    pub fn kept_path(&self, dest: &str) -> String {
        if let Some((dir, name)) = dest.rsplit_once('/')
            && let Some((_, to)) = self.keep_dirs.iter().find(|(d, _)| d == dir)
        {
            return format!("{}/{name}", to.trim_end_matches('/'));
        }
        format!("{dest}.{}", self.keep_suffix)
    }

    /// "would " in a dry run, "" otherwise: `format!("{}replace ...", r.would())`.
    pub fn would(&self) -> &'static str {
        if self.dry_run { "would " } else { "" }
    }

    /// The entry `rel` (relative to `COMPONENT/HOST/`), if the backup holds it.
    pub fn entry(&self, rel: &str) -> Option<&'a EntryRecord> {
        let full = format!("{}/{}/{rel}", self.component, self.host);
        self.entries.iter().copied().find(|e| e.path == full)
    }

    /// Regular files of this host whose relative path starts with `prefix` (all with ""),
    /// relative paths in archive order.
    pub fn files_under(&self, prefix: &str) -> Vec<(&'a EntryRecord, String)> {
        let base = format!("{}/{}/", self.component, self.host);
        self.entries
            .iter()
            .copied()
            .filter(|e| e.kind == EntryKind::File)
            .filter_map(|e| {
                let rel = e.path.strip_prefix(&base)?.to_string();
                rel.starts_with(prefix).then_some((e, rel))
            })
            .collect()
    }

    /// Entries of this host that are symlinks, relative paths with their targets.
    pub fn links(&self) -> Vec<(String, String)> {
        let base = format!("{}/{}/", self.component, self.host);
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink)
            .filter_map(|e| {
                Some((
                    e.path.strip_prefix(&base)?.to_string(),
                    e.link_target.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Where the extracted entry `rel` is on this machine.
    pub fn local(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Read a small extracted entry (JSON, a list).
    pub fn read_local(&self, rel: &str) -> Result<Vec<u8>, RestoreError> {
        std::fs::read(self.local(rel)).map_err(|e| self.failed("reading the backup", e))
    }

    /// An error of this host and component.
    pub fn failed(&self, step: &str, cause: impl std::fmt::Display) -> RestoreError {
        RestoreError::Step {
            component: self.component.to_string(),
            host: self.host.to_string(),
            step: step.to_string(),
            cause: cause.to_string(),
        }
    }

    /// Run a read-only script (in a dry run too); a non-zero exit is an error.
    pub async fn query(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
    ) -> Result<Output, RestoreError> {
        let out = self.query_status(step, script, user).await?;
        if out.exit.success() {
            Ok(out)
        } else {
            Err(self.failed(step, crate::engine::exit_text(&out.exit)))
        }
    }

    /// [`HostRestore::query`] whose exit status is the caller's to judge.
    pub async fn query_status(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
    ) -> Result<Output, RestoreError> {
        self.session
            .run(script, user, QUERY_LIMIT)
            .await
            .map_err(|e| self.failed(step, e))
    }

    /// Change the host: `what` is said ("would ..." in a dry run, where nothing runs). A
    /// non-zero exit is an error. Returns the output (None in a dry run).
    pub async fn change(
        &mut self,
        step: &str,
        what: &str,
        script: &Script,
        user: Option<&str>,
    ) -> Result<Option<Output>, RestoreError> {
        self.say(format!("{}{what}", self.would()));
        if self.dry_run {
            return Ok(None);
        }
        Ok(Some(self.query(step, script, user).await?))
    }

    /// [`HostRestore::change`] with the extracted entry `rel` streamed to the script on fd 3.
    /// The script must check what it received when it installs it (see
    /// [`Session::exec_with_input`]); tools that parse their input to its end (psql, pg_restore,
    /// tar) notice a cut.
    pub async fn change_with_file(
        &mut self,
        step: &str,
        what: &str,
        script: &Script,
        user: Option<&str>,
        rel: &str,
    ) -> Result<Option<Output>, RestoreError> {
        self.say(format!("{}{what}", self.would()));
        if self.dry_run {
            return Ok(None);
        }
        let file = tokio::fs::File::open(self.local(rel))
            .await
            .map_err(|e| self.failed(step, format!("{rel}: {e}")))?;
        let out = self
            .run_with_input(step, script, user, Box::new(file))
            .await?;
        if out.exit.success() {
            Ok(Some(out))
        } else {
            Err(self.failed(step, crate::engine::exit_text(&out.exit)))
        }
    }

    async fn run_with_input(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        input: crate::transport::Input,
    ) -> Result<Output, RestoreError> {
        use tokio::io::AsyncReadExt;
        let mut proc = self
            .session
            .exec_with_input(script, user, input)
            .await
            .map_err(|e| self.failed(step, e))?;
        let mut stdout = Vec::new();
        let read = (&mut proc.stdout)
            .take(QUERY_LIMIT as u64)
            .read_to_end(&mut stdout)
            .await;
        let exit = proc.wait().await.map_err(|e| self.failed(step, e))?;
        read.map_err(|e| self.failed(step, e))?;
        Ok(Output { exit, stdout })
    }

    /// Put the backed-up file `rel` back at `dest` on the host: the data is checked there (size
    /// and sha256 against the manifest) before anything is replaced; a file with the same
    /// content is left alone; an existing file is kept beside it as `DEST.lsbackup-<time>` and
    /// the new one takes its owner and mode; a new file gets the recorded mode, owned by the
    /// user running the restore.
    pub async fn put_file(&mut self, rel: &str, dest: &str) -> Result<Put, RestoreError> {
        self.put_file_said(Source::Entry(rel), dest, true).await
    }

    /// [`HostRestore::put_file`] of content made here (e.g. an edited manifest), mode `mode`
    /// when the file is new.
    pub async fn put_bytes(
        &mut self,
        bytes: Vec<u8>,
        mode: u32,
        dest: &str,
    ) -> Result<Put, RestoreError> {
        self.put_file_said(Source::Bytes(bytes, mode), dest, true)
            .await
    }

    async fn put_file_said(
        &mut self,
        src: Source<'_>,
        dest: &str,
        say_unchanged: bool,
    ) -> Result<Put, RestoreError> {
        use sha2::Digest;
        let step = "put file";
        let (size, sha, mode) = match &src {
            Source::Entry(rel) => {
                let Some(e) = self.entry(rel) else {
                    return Err(self.failed(step, format!("{rel}: not in the backup")));
                };
                let sha = e.sha256.clone().ok_or_else(|| {
                    self.failed(step, format!("{rel}: recorded without a sha256"))
                })?;
                (e.size, sha, e.mode)
            }
            Source::Bytes(b, mode) => (b.len() as u64, hex::encode(sha2::Sha256::digest(b)), *mode),
        };
        let mode = format!("{:o}", mode & 0o7777);
        let state = self
            .query_status(
                step,
                &Script::new(FILE_STATE).arg(dest).arg(sha.as_str()),
                None,
            )
            .await?;
        let state = match state.exit.code {
            Some(0) => State::Same,
            Some(3) => State::Differs,
            Some(4) => State::Missing,
            _ => {
                return Err(self.failed(
                    step,
                    format!("{dest}: {}", crate::engine::exit_text(&state.exit)),
                ));
            }
        };
        let kept = self.kept_path(dest);
        match state {
            State::Same => {
                if say_unchanged {
                    self.say(format!("unchanged {dest}"));
                }
                return Ok(Put::Unchanged);
            }
            State::Differs => self.say(format!(
                "{}replace {dest} (current kept as {})",
                self.would(),
                quote(&kept)
            )),
            State::Missing => self.say(format!("{}create {dest}", self.would())),
        }
        if self.dry_run {
            return Ok(if state == State::Differs {
                Put::Replaced
            } else {
                Put::Created
            });
        }
        if let Some((dir, _)) = dest.rsplit_once('/') {
            self.sweep_dir(if dir.is_empty() { "/" } else { dir }).await;
        }
        let input: crate::transport::Input = match src {
            Source::Entry(rel) => Box::new(
                tokio::fs::File::open(self.local(rel))
                    .await
                    .map_err(|err| self.failed(step, format!("{rel}: {err}")))?,
            ),
            Source::Bytes(b, _) => Box::new(std::io::Cursor::new(b)),
        };
        let script = Script::new(PUT_FILE)
            .arg(dest)
            .arg(size.to_string())
            .arg(sha)
            .arg(mode)
            .arg(kept);
        let out = self.run_with_input(step, &script, None, input).await?;
        if !out.exit.success() {
            return Err(self.failed(
                step,
                format!("{dest}: {}", crate::engine::exit_text(&out.exit)),
            ));
        }
        Ok(match out.stdout_text().as_str() {
            "unchanged" => Put::Unchanged,
            "created" => Put::Created,
            _ => Put::Replaced,
        })
    }

    /// Replace the directory `dest` on the host with the backed-up directory `rel`: the files
    /// go into `DEST.lsbackup-new.<holder>.<suffix>` (a tar stream; file count checked), take the owner of
    /// the current directory, then the current one is renamed `DEST.lsbackup-<time>` (kept) and
    /// the new one takes its place. Stop the service first.
    pub async fn put_tree(&mut self, rel: &str, dest: &str) -> Result<(), RestoreError> {
        let step = "put directory";
        let files = self.files_under(&format!("{}/", rel.trim_end_matches('/')));
        let bytes: u64 = files.iter().map(|(e, _)| e.size).sum();
        let kept = format!("{dest}.{}", self.keep_suffix);
        self.say(format!(
            "{}replace directory {dest} with {} files ({}) from the backup (current kept as {})",
            self.would(),
            files.len(),
            super::human_bytes(bytes),
            quote(&kept)
        ));
        if self.dry_run {
            return Ok(());
        }
        if let Some((dir, _)) = dest.trim_end_matches('/').rsplit_once('/') {
            self.sweep_dir(if dir.is_empty() { "/" } else { dir }).await;
        }
        let local = self.local(rel);
        let (reader, writer) = tokio::io::duplex(256 * 1024);
        let builder_task = tokio::spawn(async move {
            let mut b = tokio_tar::Builder::new(writer);
            b.follow_symlinks(false);
            b.append_dir_all(".", &local).await?;
            let mut w = b.into_inner().await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w).await
        });
        let script = Script::new(PUT_TREE)
            .arg(dest)
            .arg(self.keep_suffix)
            .arg(files.len().to_string());
        let out = self
            .run_with_input(step, &script, None, Box::new(reader))
            .await;
        let built = builder_task.await;
        let out = out?;
        match built {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.failed(step, format!("reading the backup: {e}"))),
            Err(e) => return Err(self.failed(step, e)),
        }
        if !out.exit.success() {
            return Err(self.failed(
                step,
                format!("{dest}: {}", crate::engine::exit_text(&out.exit)),
            ));
        }
        Ok(())
    }

    /// Put back every backed-up file of this host whose path lies under one of `roots` (other
    /// files are listed as not restored: restore them by hand from `lsbackup extract`). Files
    /// below `skip` prefixes (relative, e.g. API exports) are not host files and are passed over.
    /// Stops at the first failure, putting back what it had replaced.
    pub async fn put_files(
        &mut self,
        roots: &[String],
        skip: &[&str],
    ) -> Result<Vec<(String, Put)>, RestoreError> {
        self.put_files_inner(roots, skip, true).await
    }

    /// [`HostRestore::put_files`] of the files under `roots` only, saying nothing of the others
    /// (restored another way, e.g. data directories) nor of symlinks.
    pub async fn put_config_files(
        &mut self,
        roots: &[String],
    ) -> Result<Vec<(String, Put)>, RestoreError> {
        self.put_files_inner(roots, &[], false).await
    }

    async fn put_files_inner(
        &mut self,
        roots: &[String],
        skip: &[&str],
        say_outside: bool,
    ) -> Result<Vec<(String, Put)>, RestoreError> {
        let files = self.files_under("");
        let mut done: Vec<(String, Put)> = Vec::new();
        for (_, rel) in files {
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let dest = format!("/{rel}");
            let inside = roots.iter().any(|root| {
                let root = root.trim_end_matches('/');
                !root.is_empty() && dest.starts_with(&format!("{root}/"))
            });
            if !inside {
                if say_outside {
                    self.say(format!(
                        "not restored: {dest} (outside {}; `lsbackup extract` has it)",
                        roots.join(", ")
                    ));
                }
                continue;
            }
            match self.put_file_said(Source::Entry(&rel), &dest, false).await {
                Ok(p) => done.push((dest, p)),
                Err(e) => {
                    self.undo(&done).await;
                    return Err(e);
                }
            }
        }
        let same: Vec<&str> = done
            .iter()
            .filter(|(_, p)| *p == Put::Unchanged)
            .map(|(d, _)| d.as_str())
            .collect();
        match same.len() {
            0 => {}
            1 => self.say(format!("unchanged {}", same[0])),
            n => self.say(format!(
                "unchanged: {n} files ({}{})",
                same.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                if n > 3 { ", ..." } else { "" }
            )),
        }
        for (link, target) in self.links() {
            if !say_outside {
                break;
            }
            self.say(format!(
                "not restored: symlink /{link} -> {target} (recreate it by hand if it is gone)"
            ));
        }
        Ok(done)
    }

    /// Put back what [`HostRestore::put_files`] replaced (the kept copies) and remove what it
    /// created: after a check of the new configuration failed. Says what it did.
    pub async fn undo(&mut self, done: &[(String, Put)]) {
        if self.dry_run {
            return;
        }
        for (dest, put) in done.iter().rev() {
            let script = match put {
                Put::Unchanged => continue,
                Put::Replaced => Script::new(r#"mv -f -- "$2" "$1""#)
                    .arg(dest.as_str())
                    .arg(self.kept_path(dest)),
                Put::Created => Script::new(r#"rm -f -- "$1""#).arg(dest.as_str()),
            };
            match self.query_status("undo", &script, None).await {
                Ok(o) if o.exit.success() => self.say(format!("put back the previous {dest}")),
                Ok(o) => self.say(format!(
                    "could not put back the previous {dest}: {}",
                    crate::engine::exit_text(&o.exit)
                )),
                Err(e) => self.say(format!("could not put back the previous {dest}: {e}")),
            }
        }
    }

    /// Remove what killed restores left in `dir` (once per directory and host; never in a dry
    /// run). A failure to look is said, not fatal.
    async fn sweep_dir(&mut self, dir: &str) {
        if self.dry_run || !dir.starts_with('/') || self.swept.iter().any(|d| d == dir) {
            return;
        }
        self.swept.push(dir.to_string());
        let kinds = [
            Kind {
                dir,
                glob: ".lsbackup-restore.*",
                file_type: 'f',
                parse: restore_temp,
            },
            Kind {
                dir,
                glob: "*.lsbackup-new.*",
                file_type: 'd',
                parse: restore_new_dir,
            },
        ];
        if let Err(e) = self.sweep_leftovers(&kinds, None).await {
            self.say(format!(
                "could not look for what an earlier restore left in {}: {e}",
                quote(dir)
            ));
        }
    }

    /// Remove what killed runs left of these kinds (as `user`, who made them); never in a dry
    /// run. What was removed is said in one note by [`HostRestore::note_leftovers`].
    pub async fn sweep_leftovers(
        &mut self,
        kinds: &[Kind<'_>],
        user: Option<&str>,
    ) -> Result<(), RestoreError> {
        if self.dry_run {
            return Ok(());
        }
        let out = self
            .query("leftovers", &leftovers::list_script(kinds), user)
            .await?;
        let Some(rm) = Removals::of(&out.stdout, kinds) else {
            return Ok(());
        };
        let out = self.query("leftovers", &rm.script, user).await?;
        let (_, shown) = rm.removed(&out.stdout);
        self.removed.extend(shown);
        Ok(())
    }

    /// The one note on what [`HostRestore::sweep_leftovers`] removed, if anything.
    pub(crate) fn note_leftovers(&mut self) {
        if !self.removed.is_empty() {
            let removed = std::mem::take(&mut self.removed);
            self.note(leftovers::removed_note(&removed));
        }
    }

    /// A client for the API of component variables `<prefix>_url`, `<prefix>_ca_cert`,
    /// `<prefix>_client_cert`, `<prefix>_client_key` (PEM files on the host, read into
    /// lsbackup), `<prefix>_tls_verify`, `<prefix>_user`, `<prefix>_password` (as for backup).
    pub async fn api_client(
        &mut self,
        prefix: &str,
        timeout: std::time::Duration,
    ) -> Result<HttpClient, RestoreError> {
        let var = |r: &Self, n: &str| r.var(&format!("{prefix}_{n}")).trim().to_string();
        let url = var(self, "url");
        let endpoint = Endpoint::parse(&url).map_err(|e| self.failed("api", e))?;
        let mut b = HttpClient::builder((*self.session).clone(), endpoint.clone()).timeout(timeout);
        if endpoint.scheme == crate::http::Scheme::Https {
            let mut tls = crate::http::TlsSettings {
                verify: !matches!(
                    var(self, "tls_verify").to_ascii_lowercase().as_str(),
                    "false" | "no" | "off" | "0"
                ),
                ..Default::default()
            };
            for (n, slot) in [
                ("ca_cert", &mut tls.ca_pem),
                ("client_cert", &mut tls.client_cert_pem),
                ("client_key", &mut tls.client_key_pem),
            ] {
                let path = var(self, n);
                if !path.is_empty() {
                    let out = self
                        .query("api", &Script::new(r#"exec cat -- "$1""#).arg(path), None)
                        .await?;
                    *slot = Some(out.stdout);
                }
            }
            b = b.tls(tls);
        }
        let user = var(self, "user");
        if !user.is_empty() {
            b = b.basic_auth(
                user,
                crate::secret::Secret::new(self.var(&format!("{prefix}_password"))),
            );
        }
        b.build().map_err(|e| self.failed("api", e))
    }

    /// A client for an HTTP API at `url` as this host sees it (through its SSH connection).
    pub fn http(&self, url: &str) -> Result<HttpClientBuilder, RestoreError> {
        let endpoint = Endpoint::parse(url).map_err(|e| self.failed("api", e))?;
        Ok(HttpClient::builder((*self.session).clone(), endpoint))
    }
}

/// What [`HostRestore::put_file_said`] puts: an extracted entry, or bytes with a mode.
enum Source<'b> {
    Entry(&'b str),
    Bytes(Vec<u8>, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Same,
    Differs,
    Missing,
}

/// `.lsbackup-restore.<holder>.XXXXXX`: a file [`PUT_FILE`] was receiving.
fn restore_temp(name: &str) -> Option<leftovers::Found> {
    leftovers::mktemp_name(name, ".lsbackup-restore.", 6).map(|holder| leftovers::Found {
        holder,
        marks: None,
    })
}

/// `NAME.lsbackup-new.<holder>.lsbackup-YYYYMMDDTHHMMSSZ`: a directory [`PUT_TREE`] was filling.
fn restore_new_dir(name: &str) -> Option<leftovers::Found> {
    let (base, rest) = name.rsplit_once(".lsbackup-new.")?;
    let (pid, suffix) = rest.split_once('.')?;
    let time = suffix.strip_prefix("lsbackup-")?.as_bytes();
    let time_ok = time.len() == 16
        && time.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let pid_ok = !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit());
    (!base.is_empty() && time_ok && pid_ok).then(|| {
        Some(leftovers::Found {
            holder: pid.parse().ok()?,
            marks: None,
        })
    })?
}

/// Exit 0: `$1` is a regular file with sha256 `$2`; 3: it differs; 4: no such file; else
/// an error (not a regular file, unreadable).
const FILE_STATE: &str = r#"if [ -L "$1" ] || { [ -e "$1" ] && [ ! -f "$1" ]; }; then
  echo "exists and is not a regular file" >&2
  exit 1
fi
[ -e "$1" ] || exit 4
s=$(sha256sum -- "$1") || exit 1
[ "${s%% *}" = "$2" ] && exit 0
exit 3"#;

/// Put the data on fd 3 at `$1` (size `$2`, sha256 `$3`, mode `$4` for a new file, `$5` where
/// the current file is kept). Checked before anything is replaced; `mv` within the directory is
/// atomic.
const PUT_FILE: &str = concat!(
    crate::components::leftovers::holder_sh!(),
    r#"d=$1
case $d in /*) ;; *) echo "not an absolute path: $d" >&2; exit 2 ;; esac
dir=${d%/*}
[ -n "$dir" ] || dir=/
if [ ! -d "$dir" ]; then mkdir -p -m 0755 -- "$dir" || exit 1; fi
t=$(mktemp "$dir/.lsbackup-restore.$lsb_holder.XXXXXX") || exit 1
trap 'rm -f -- "$t"' EXIT
cat <&3 >"$t" || exit 1
n=$(wc -c <"$t")
if [ "$n" -ne "$2" ]; then echo "received $n bytes, the backup holds $2" >&2; exit 1; fi
s=$(sha256sum <"$t")
if [ "${s%% *}" != "$3" ]; then echo "what arrived does not match the manifest's sha256" >&2; exit 1; fi
if [ -L "$d" ] || { [ -e "$d" ] && [ ! -f "$d" ]; }; then
  echo "$d exists and is not a regular file" >&2
  exit 1
fi
if [ -f "$d" ]; then
  if cmp -s -- "$t" "$d"; then echo unchanged; exit 0; fi
  chown --reference="$d" -- "$t" || exit 1
  chmod --reference="$d" -- "$t" || exit 1
  if [ ! -d "${5%/*}" ]; then mkdir -p -m 0700 -- "${5%/*}" || exit 1; fi
  cp -p -- "$d" "$5" || exit 1
  mv -f -- "$t" "$d" || exit 1
  trap - EXIT
  echo replaced
else
  chmod "$4" -- "$t" || exit 1
  mv -f -- "$t" "$d" || exit 1
  trap - EXIT
  echo created
fi"#
);

/// Replace directory `$1` with the tar stream on fd 3 (`$2` the suffix, `$3` the number of
/// regular files expected).
const PUT_TREE: &str = concat!(
    crate::components::leftovers::holder_sh!(),
    r#"d=${1%/}
case $d in /?*) ;; *) echo "not an absolute path: $1" >&2; exit 2 ;; esac
new=$d.lsbackup-new.$lsb_holder.$2
old=$d.$2
if [ -e "$new" ] || [ -L "$new" ]; then rm -rf -- "$new" || exit 1; fi
if [ -e "$old" ] || [ -L "$old" ]; then echo "$old exists already" >&2; exit 1; fi
mkdir -m 0700 -- "$new" || exit 1
if ! tar -x -f - -C "$new" --no-same-owner <&3; then rm -rf -- "$new"; exit 1; fi
n=$(find "$new" -type f | wc -l)
if [ "$n" -ne "$3" ]; then
  echo "received $n files, the backup holds $3" >&2
  rm -rf -- "$new"
  exit 1
fi
if [ -d "$d" ]; then
  chown -R --reference="$d" -- "$new" || exit 1
  chmod --reference="$d" -- "$new" || exit 1
  mv -- "$d" "$old" || exit 1
else
  chmod 0755 -- "$new"
fi
mv -- "$new" "$d" || exit 1"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names() {
        assert_eq!(
            restore_temp(".lsbackup-restore.77.aB3dE9").map(|f| f.holder),
            Some(77)
        );
        assert_eq!(
            restore_new_dir("data.lsbackup-new.77.lsbackup-20240101T000000Z").map(|f| f.holder),
            Some(77)
        );
        assert_eq!(
            restore_new_dir("a.b.lsbackup-new.8.lsbackup-20240101T000000Z").map(|f| f.holder),
            Some(8)
        );
        for bad in [
            ".lsbackup-new.77.lsbackup-20240101T000000Z",
            "data.lsbackup-new..lsbackup-20240101T000000Z",
            "data.lsbackup-new.7x.lsbackup-20240101T000000Z",
            "data.lsbackup-new.77.lsbackup-20240101T000000",
            "data.lsbackup-new.77.lsbackup-20240101T000000Z.x",
            "data.lsbackup-new-lsbackup-20240101T000000Z",
            "data.lsbackup-20240101T000000Z",
        ] {
            assert_eq!(restore_new_dir(bad), None, "{bad:?}");
        }
        assert_eq!(restore_temp(".lsbackup-restore.aB3dE9"), None);
    }
}
