//! Unpacking an archive into a directory: `lsbackup extract`, and restore's staging area.
//!
//! An archive may come from anywhere (a bucket others can write to, a file handed over in an
//! outage), so nothing in it is trusted:
//!
//! - every entry is unpacked into a private directory beside DIR (`.lsbackup-extract-*.partial`,
//!   0700) and moved into DIR only when the whole archive was read and every file matched the
//!   manifest's size and sha256; on any refusal the private directory is removed and DIR is
//!   left as it was;
//! - a path that is absolute or holds `..`, a path through a symlink extracted earlier, a
//!   duplicate path, an entry after the manifest, a hard link, a device file or FIFO, a name
//!   that is not UTF-8, and a manifest whose format version this build does not know are
//!   refused, each with one line naming the entry;
//! - files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`, never through a link, with their
//!   recorded permissions less setuid, setgid and sticky bits; owners are not set;
//! - a symlink whose target is absolute or climbs out of DIR is not created (it would point
//!   outside); it is listed, and accepted only when the manifest records that very link
//!   (a host's own link, e.g. kubelet's `kubelet-client-current.pem`); restore recreates such
//!   links on the host from the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::crypt::Identities;
use super::digest::Digesting;
use super::read::{MAX_MANIFEST, Plain, parse_manifest_file, plain_file, plain_reader};
use super::{ArchiveError, EntryKind, MANIFEST_PATH, Manifest};

/// What [`extract_file`] / [`extract_reader`] unpacked.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub manifest: Manifest,
    /// Files, directories and symlinks of the backup written into DIR (`manifest.json`, also
    /// written, not counted).
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries of components not selected, not written.
    pub skipped: u64,
    /// Symlinks recorded in the manifest whose target lies outside DIR, not created:
    /// `(path, target)`.
    pub links_outside: Vec<(String, String)>,
    /// Files written whose manifest record has no sha256 (the entry was recorded as failed
    /// during the backup): their content is what the archive holds, unchecked.
    pub unverified: Vec<String>,
    /// The top-level names moved into DIR.
    pub top: Vec<String>,
}

/// Which entries to unpack: those of these components (all when empty).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub components: Vec<String>,
}

impl Filter {
    fn wants(&self, path: &str) -> bool {
        path == MANIFEST_PATH
            || self.components.is_empty()
            || self
                .components
                .iter()
                .any(|c| path.split('/').next() == Some(c.as_str()))
    }
}

/// Unpack the archive at `path` (any format, age-encrypted when `ids` can decrypt it) into
/// `dir` (created when missing; names already there are never replaced).
pub async fn extract_file(
    path: &Path,
    dir: &Path,
    filter: &Filter,
    ids: &Identities,
) -> Result<Extracted, ArchiveError> {
    let label = path.display().to_string();
    let plain = plain_file(path, ids, &Digesting::off()).await?;
    extract_plain(&label, plain, dir, filter).await
}

/// [`extract_file`] for an archive streamed from a target; `label` names it in messages.
pub async fn extract_reader<R: AsyncRead + Send + Unpin + 'static>(
    label: &str,
    reader: R,
    dir: &Path,
    filter: &Filter,
    ids: &Identities,
) -> Result<Extracted, ArchiveError> {
    let plain = plain_reader(Path::new(label), reader, ids, &Digesting::off()).await?;
    extract_plain(label, plain, dir, filter).await
}

/// The refusal of one entry, or of the archive: one line.
fn refused(label: &str, cause: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Refused {
        archive: label.to_string(),
        cause: cause.to_string(),
    }
}

async fn extract_plain(
    label: &str,
    plain: Plain,
    dir: &Path,
    filter: &Filter,
) -> Result<Extracted, ArchiveError> {
    let io = |what: &str, e: std::io::Error| refused(label, format!("{what}: {e}"));
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(refused(
                label,
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(&format!("creating {}", dir.display()), e))?;
        }
        Err(e) => return Err(io(&dir.display().to_string(), e)),
    }
    let staging = tempfile::Builder::new()
        .prefix(".lsbackup-extract-")
        .suffix(".partial")
        .tempdir_in(dir)
        .map_err(|e| {
            io(
                &format!("creating a staging directory in {}", dir.display()),
                e,
            )
        })?;
    let mut stage = Stage::new(label, staging.path().to_path_buf(), filter.clone());
    let manifest_file = match plain {
        Plain::Tar(format, tar) => unpack_tar(&mut stage, format, tar).await?,
        Plain::Zip(file) => {
            let label = label.to_string();
            let (st, m) = tokio::task::spawn_blocking(move || {
                let r = unpack_zip(&mut stage, file);
                r.map(|m| (stage, m))
            })
            .await
            .map_err(|e| refused(&label, e))??;
            stage = st;
            m
        }
    };
    let Some(file) = manifest_file else {
        return Err(refused(
            label,
            format!("no {MANIFEST_PATH}: the archive is incomplete; nothing was extracted"),
        ));
    };
    // parsed from the copy written in the staging directory (never held as bytes)
    let manifest = parse_manifest_file(Path::new(label), &file)?;
    let mut out = stage.check(manifest)?;
    stage.apply_dir_modes();
    stage.sync()?;
    out.top = stage.move_into(dir)?;
    drop(staging);
    Ok(out)
}

/// A file, directory or symlink as unpacked, for the comparison with the manifest.
#[derive(Debug)]
enum Got {
    File {
        size: u64,
        sha256: String,
    },
    Dir,
    Link(String),
    /// A symlink not created: its target lies outside DIR.
    LinkOutside(String),
}

struct Stage {
    label: String,
    root: PathBuf,
    filter: Filter,
    /// Every entry path seen (selected or not), normalized.
    seen: BTreeSet<String>,
    /// Symlinks seen (created or not): nothing may be extracted through them.
    links: BTreeSet<String>,
    got: BTreeMap<String, Got>,
    /// Directory modes, applied once every entry is in (deepest first).
    dir_modes: Vec<(PathBuf, u32)>,
    manifest_seen: bool,
    skipped: u64,
}

impl Stage {
    fn new(label: &str, root: PathBuf, filter: Filter) -> Stage {
        Stage {
            label: label.to_string(),
            root,
            filter,
            seen: BTreeSet::new(),
            links: BTreeSet::new(),
            got: BTreeMap::new(),
            dir_modes: Vec::new(),
            manifest_seen: false,
            skipped: 0,
        }
    }

    fn refuse(&self, cause: impl std::fmt::Display) -> ArchiveError {
        refused(&self.label, cause)
    }

    /// Check an entry's path before anything is written for it; `Ok(None)`: not selected.
    fn admit(&mut self, raw: &[u8]) -> Result<Option<String>, ArchiveError> {
        let shown = String::from_utf8_lossy(raw).escape_debug().to_string();
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(self.refuse(format!(
                "entry {shown}: the name is not UTF-8 (lsbackup writes UTF-8 names only)"
            )));
        };
        let name = normalize(text).map_err(|why| self.refuse(format!("entry {shown}: {why}")))?;
        if self.manifest_seen {
            return Err(self.refuse(format!(
                "entry {name}: comes after {MANIFEST_PATH} (the manifest must be the last entry)"
            )));
        }
        if !self.seen.insert(name.clone()) {
            return Err(self.refuse(format!(
                "entry {name}: appears more than once (a later copy could replace what was checked)"
            )));
        }
        let mut prefix = String::new();
        for part in name.split('/') {
            if !prefix.is_empty() && self.links.contains(&prefix) {
                return Err(self.refuse(format!(
                    "entry {name}: goes through {prefix}, a symlink extracted earlier"
                )));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
        }
        if name == MANIFEST_PATH {
            return Ok(Some(name));
        }
        if !self.filter.wants(&name) {
            self.skipped += 1;
            return Ok(None);
        }
        Ok(Some(name))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn parent_dirs(&self, name: &str) -> Result<(), ArchiveError> {
        if let Some(parent) = self.path(name).parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| self.refuse(format!("entry {name}: creating its directory: {e}")))?;
        }
        Ok(())
    }

    fn dir(&mut self, name: &str, mode: u32) -> Result<(), ArchiveError> {
        let p = self.path(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)
            .map_err(|e| self.refuse(format!("entry {name}: creating the directory: {e}")))?;
        self.dir_modes.push((p, mode & 0o777));
        self.got.insert(name.to_string(), Got::Dir);
        Ok(())
    }

    /// A new file for the entry `name` (never an existing one, never through a link).
    fn create(&self, name: &str) -> Result<std::fs::File, ArchiveError> {
        self.parent_dirs(name)?;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(name))
            .map_err(|e| self.refuse(format!("entry {name}: creating the file: {e}")))
    }

    fn file_done(
        &mut self,
        name: &str,
        file: &std::fs::File,
        mode: u32,
        size: u64,
        sha256: String,
    ) -> Result<(), ArchiveError> {
        // (synced with the whole staging directory at the end, see Stage::sync)
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(|e| self.refuse(format!("entry {name}: writing: {e}")))?;
        self.got
            .insert(name.to_string(), Got::File { size, sha256 });
        Ok(())
    }

    fn symlink(&mut self, name: &str, target: &[u8]) -> Result<(), ArchiveError> {
        let Ok(target) = std::str::from_utf8(target) else {
            return Err(self.refuse(format!("entry {name}: the link target is not UTF-8")));
        };
        if target.is_empty() {
            return Err(self.refuse(format!("entry {name}: a symlink with an empty target")));
        }
        let outside = points_outside(name, target, &self.links);
        self.links.insert(name.to_string());
        if outside {
            self.got
                .insert(name.to_string(), Got::LinkOutside(target.to_string()));
            return Ok(());
        }
        self.parent_dirs(name)?;
        std::os::unix::fs::symlink(target, self.path(name))
            .map_err(|e| self.refuse(format!("entry {name}: creating the symlink: {e}")))?;
        self.got
            .insert(name.to_string(), Got::Link(target.to_string()));
        Ok(())
    }

    /// Compare what was unpacked with the manifest: every entry recorded, of the recorded kind,
    /// size, sha256 and link target; every selected record present. All problems, one line each.
    fn check(&self, m: Manifest) -> Result<Extracted, ArchiveError> {
        let mut problems = Vec::new();
        let records: BTreeMap<&str, &super::EntryRecord> = m
            .entries()
            .map(|r| (r.path.trim_end_matches('/'), r))
            .collect();
        let (mut files, mut dirs, mut links, mut bytes) = (0, 0, 0, 0);
        let mut links_outside = Vec::new();
        let mut unverified = Vec::new();
        for (name, got) in &self.got {
            let Some(r) = records.get(name.as_str()) else {
                problems.push(format!("entry {name}: not recorded in the manifest"));
                continue;
            };
            match (got, r.kind) {
                (Got::File { size, sha256 }, EntryKind::File) => {
                    if *size != r.size {
                        problems.push(format!(
                            "entry {name}: {size} bytes, the manifest records {} (truncated or altered)",
                            r.size
                        ));
                    } else {
                        match &r.sha256 {
                            Some(want) if !want.eq_ignore_ascii_case(sha256) => problems.push(
                                format!("entry {name}: sha256 differs from the manifest (corrupted)"),
                            ),
                            Some(_) => {}
                            None => unverified.push(name.clone()),
                        }
                    }
                    files += 1;
                    bytes += size;
                }
                (Got::Dir, EntryKind::Dir) => dirs += 1,
                (Got::Link(t), EntryKind::Symlink) | (Got::LinkOutside(t), EntryKind::Symlink)
                    if r.link_target.as_deref() != Some(t.as_str()) =>
                {
                    problems.push(format!(
                        "entry {name}: links to {t:?}, the manifest records {:?}",
                        r.link_target.as_deref().unwrap_or("")
                    ));
                }
                (Got::Link(_), EntryKind::Symlink) => links += 1,
                (Got::LinkOutside(t), EntryKind::Symlink) => {
                    links_outside.push((name.clone(), t.clone()))
                }
                (_, kind) => problems.push(format!(
                    "entry {name}: the manifest records a {kind:?}, the archive holds something else"
                )),
            }
        }
        for (path, _) in records {
            if self.filter.wants(path) && !self.got.contains_key(path) {
                problems.push(format!(
                    "entry {path}: recorded in the manifest, missing from the archive"
                ));
            }
        }
        if problems.is_empty() {
            Ok(Extracted {
                manifest: m,
                files,
                dirs,
                links,
                bytes,
                skipped: self.skipped,
                links_outside,
                unverified,
                top: Vec::new(),
            })
        } else {
            Err(ArchiveError::Refused {
                archive: self.label.clone(),
                cause: problems.join("\n"),
            })
        }
    }

    /// A new `manifest.json` in the staging directory for an entry of `size` bytes (refused
    /// over [`MAX_MANIFEST`]): the caller copies the entry into it, then [`Stage::manifest_done`].
    fn manifest_file(&self, size: u64) -> Result<std::fs::File, ArchiveError> {
        if size > MAX_MANIFEST {
            return Err(self.refuse(format!(
                "{MANIFEST_PATH} is implausibly large ({size} bytes)"
            )));
        }
        self.create(MANIFEST_PATH)
    }

    /// `manifest.json` copied: open at its start for reading it back.
    fn manifest_done(
        &mut self,
        copied: std::io::Result<std::fs::File>,
    ) -> Result<std::fs::File, ArchiveError> {
        use std::io::Seek as _;
        let mut f = copied.map_err(|e| self.refuse(format!("entry {MANIFEST_PATH}: {e}")))?;
        f.rewind()
            .map_err(|e| self.refuse(format!("entry {MANIFEST_PATH}: {e}")))?;
        self.manifest_seen = true;
        Ok(f)
    }

    fn apply_dir_modes(&mut self) {
        self.dir_modes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode) in &self.dir_modes {
            // Owner keeps rwx while the tree is moved; the rest as recorded.
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o700));
        }
    }

    /// Everything written in the staging directory on disk, before anything is moved into
    /// DIR: one `syncfs` of its filesystem (an fsync per file cost 200,000 of them for as many
    /// small files; syncfs reports a write error of any of them, Linux 5.8 and later).
    fn sync(&self) -> Result<(), ArchiveError> {
        use std::os::fd::AsRawFd as _;
        let dir = std::fs::File::open(&self.root)
            .map_err(|e| self.refuse(format!("syncing the staging directory: {e}")))?;
        // SAFETY: syncfs on a descriptor this function owns and keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(self.refuse(format!("syncing the staging directory: {e}")));
        }
        Ok(())
    }

    /// Move the unpacked top-level names into `dir`, refusing before moving anything when one
    /// of them is already there.
    fn move_into(&self, dir: &Path) -> Result<Vec<String>, ArchiveError> {
        let mut top = Vec::new();
        let read = std::fs::read_dir(&self.root)
            .map_err(|e| self.refuse(format!("reading the staging directory: {e}")))?;
        for e in read {
            let e = e.map_err(|e| self.refuse(format!("reading the staging directory: {e}")))?;
            top.push(e.file_name());
        }
        top.sort();
        for name in &top {
            let dest = dir.join(name);
            if std::fs::symlink_metadata(&dest).is_ok() {
                return Err(self.refuse(format!(
                    "{} already exists: extract into an empty directory (nothing was replaced)",
                    dest.display()
                )));
            }
        }
        for (i, name) in top.iter().enumerate() {
            if let Err(e) =
                crate::target::local::rename_noreplace(&self.root.join(name), &dir.join(name), true)
            {
                // Put back what was moved, so that DIR is as it was.
                for done in &top[..i] {
                    let _ = std::fs::rename(dir.join(done), self.root.join(done));
                }
                return Err(
                    self.refuse(format!("moving {} into place: {e}", name.to_string_lossy()))
                );
            }
        }
        Ok(top
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }
}

/// An entry name as a relative path of plain components joined by `/`; refused when it is
/// absolute, climbs with `..`, or is empty.
pub(crate) fn normalize(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("climbs out of the destination with `..`".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("an empty path".into());
    }
    Ok(parts.join("/"))
}

/// Whether a symlink at `name` (relative to DIR) with this target may resolve outside DIR:
/// an absolute target, one that climbs above DIR, or one that goes through another symlink
/// (whose own target would make `..` mean something else than it reads).
fn points_outside(name: &str, target: &str, links: &BTreeSet<String>) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut at: Vec<&str> = name.split('/').collect();
    at.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return true;
                }
            }
            p => {
                at.push(p);
                if links.contains(&at.join("/")) {
                    return true;
                }
            }
        }
    }
    false
}

async fn unpack_tar(
    stage: &mut Stage,
    format: super::Format,
    tar: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<Option<std::fs::File>, ArchiveError> {
    use futures::StreamExt;
    let label = stage.label.clone();
    let mut last: Option<String> = None;
    let broken = |last: &Option<String>, e: std::io::Error| match last {
        Some(n) => refused(
            &label,
            format!("corrupt or incomplete {format} stream after entry {n}: {e}"),
        ),
        None => refused(
            &label,
            format!("corrupt or incomplete {format} stream: {e}"),
        ),
    };
    let mut manifest = None;
    // one buffer for every entry (not one per file: 200,000 small files made as many of them)
    let mut buf = vec![0u8; 256 * 1024];
    let mut archive = tokio_tar::Archive::new(tar);
    {
        let mut entries = archive.entries().map_err(|e| broken(&None, e))?;
        while let Some(entry) = entries.next().await {
            let mut entry = entry.map_err(|e| broken(&last, e))?;
            let raw = entry
                .path_bytes()
                .map_err(|e| broken(&last, e))?
                .into_owned();
            let Some(name) = stage.admit(&raw)? else {
                continue;
            };
            last = Some(name.clone());
            let inside = |e: std::io::Error| {
                refused(
                    &label,
                    format!("entry {name}: corrupt or incomplete {format} stream: {e}"),
                )
            };
            use tokio_tar::EntryType as T;
            let ty = entry.header().entry_type();
            let mode = entry.header().mode().unwrap_or(0o600);
            match ty {
                T::Regular | T::Continuous if name == MANIFEST_PATH => {
                    let size = entry.effective_size();
                    let mut f = tokio::fs::File::from_std(stage.manifest_file(size)?);
                    let copied = match tokio::io::copy(&mut (&mut entry).take(size), &mut f).await {
                        Ok(_) => Ok(f.into_std().await),
                        Err(e) => Err(e),
                    };
                    manifest = Some(stage.manifest_done(copied)?);
                }
                T::Regular | T::Continuous if entry.effective_size() <= buf.len() as u64 => {
                    // a small file: read whole, written at once (a handoff to tokio's blocking
                    // pool per write cost more than the write itself, for thousands of them)
                    let mut file = stage.create(&name)?;
                    let mut size = 0;
                    while size < buf.len() {
                        let n = entry.read(&mut buf[size..]).await.map_err(inside)?;
                        if n == 0 {
                            break;
                        }
                        size += n;
                    }
                    file.write_all(&buf[..size])
                        .map_err(|e| stage.refuse(format!("entry {name}: writing: {e}")))?;
                    let sha = hex::encode(Sha256::digest(&buf[..size]));
                    stage.file_done(&name, &file, mode, size as u64, sha)?;
                }
                T::Regular | T::Continuous => {
                    let file = stage.create(&name)?;
                    let mut out = tokio::fs::File::from_std(file);
                    let mut hasher = Sha256::new();
                    let mut size = 0u64;
                    loop {
                        let n = entry.read(&mut buf).await.map_err(inside)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        out.write_all(&buf[..n])
                            .await
                            .map_err(|e| stage.refuse(format!("entry {name}: writing: {e}")))?;
                        size += n as u64;
                    }
                    out.flush()
                        .await
                        .map_err(|e| stage.refuse(format!("entry {name}: writing: {e}")))?;
                    let file = out.into_std().await;
                    stage.file_done(&name, &file, mode, size, hex::encode(hasher.finalize()))?;
                }
                T::Directory => stage.dir(&name, mode)?,
                T::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map_err(inside)?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    stage.symlink(&name, &target)?;
                }
                T::Link => {
                    return Err(stage.refuse(format!(
                        "entry {name}: a hard link (lsbackup never writes them; it could point anywhere)"
                    )));
                }
                T::Char | T::Block => {
                    return Err(stage.refuse(format!("entry {name}: a device file")));
                }
                T::Fifo => return Err(stage.refuse(format!("entry {name}: a FIFO"))),
                other => {
                    return Err(
                        stage.refuse(format!("entry {name}: unsupported entry type {other:?}"))
                    );
                }
            }
        }
    }
    // The end-of-archive blocks were seen; the compressed stream must also end cleanly.
    let mut rest = archive
        .into_inner()
        .map_err(|_| stage.refuse("tar reader still in use"))?;
    let mut sink = vec![0u8; 64 * 1024];
    while rest.read(&mut sink).await.map_err(|e| broken(&last, e))? != 0 {}
    Ok(manifest)
}

fn unpack_zip(
    stage: &mut Stage,
    file: std::fs::File,
) -> Result<Option<std::fs::File>, ArchiveError> {
    use std::io::Seek as _;
    let mut file = file;
    file.rewind().map_err(|e| stage.refuse(e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::with_capacity(256 * 1024, file))
        .map_err(|e| stage.refuse(format!("corrupt or incomplete zip: {e}")))?;
    let mut manifest = None;
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| stage.refuse(format!("corrupt or incomplete zip: {e}")))?;
        let raw = f.name_raw().to_vec();
        let is_dir = f.is_dir();
        let Some(name) = stage.admit(&raw)? else {
            continue;
        };
        let mode = f.unix_mode().unwrap_or(0o600);
        let fmt = mode & libc::S_IFMT;
        let corrupt = |e: std::io::Error| format!("entry {name}: corrupt zip entry: {e}");
        if is_dir {
            stage.dir(&name, mode)?;
        } else if fmt == libc::S_IFLNK {
            let mut target = Vec::new();
            (&mut f)
                .take(64 * 1024)
                .read_to_end(&mut target)
                .map_err(|e| stage.refuse(corrupt(e)))?;
            stage.symlink(&name, &target)?;
        } else if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
            return Err(stage.refuse(format!("entry {name}: a device file")));
        } else if fmt == libc::S_IFIFO || fmt == libc::S_IFSOCK {
            return Err(stage.refuse(format!("entry {name}: a FIFO or socket")));
        } else if name == MANIFEST_PATH {
            let size = f.size();
            let mut out = stage.manifest_file(size)?;
            let copied = std::io::copy(&mut (&mut f).take(size), &mut out).map(|_| out);
            manifest = Some(stage.manifest_done(copied)?);
        } else {
            let mut out = stage.create(&name)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(|e| stage.refuse(corrupt(e)))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| stage.refuse(format!("entry {name}: writing: {e}")))?;
                size += n as u64;
            }
            stage.file_done(&name, &out, mode, size, hex::encode(hasher.finalize()))?;
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_or_refused() {
        assert_eq!(normalize("a/b/c").unwrap(), "a/b/c");
        assert_eq!(normalize("./a//b/").unwrap(), "a/b");
        assert!(normalize("/etc/passwd").is_err());
        assert!(normalize("a/../../b").is_err());
        assert!(normalize("..").is_err());
        assert!(normalize("./").is_err());
    }

    #[test]
    fn links_pointing_outside_are_told() {
        let none = BTreeSet::new();
        assert!(points_outside("a/l", "/etc/shadow", &none));
        assert!(points_outside("a/l", "../../x", &none));
        assert!(points_outside("l", "..", &none));
        assert!(!points_outside("a/l", "../x", &none));
        assert!(!points_outside("a/b/l", "c/../../d", &none));
        assert!(points_outside("a/l", "b/../../../x", &none));
        // a/x -> .. is DIR itself; a/y -> x/../.. reads as inside but climbs out through it.
        let links = BTreeSet::from(["a/x".to_string()]);
        assert!(points_outside("a/y", "x/../..", &links));
        assert!(!points_outside("a/y", "z/..", &links));
    }
}
