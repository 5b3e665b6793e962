//! Where archives go. A target is chosen by the `-t` value: a path (a local or NFS-mounted
//! directory), `s3://BUCKET/PREFIX` (S3 and S3-compatible stores), `az://CONTAINER/PREFIX`
//! (Azure Blob storage) or `azfile://SHARE/DIR` (Azure Files); see [`object`] for the object
//! stores, [`azfile`] for Azure Files and [`settings`] for where their endpoint and credentials
//! come from.
//!
//! OWNER: archive helper.
//!
//! A local archive is written as `NAME.partial` (created with `O_CREAT|O_EXCL`, mode 0600) and
//! only [`Upload::commit`] gives it its final name: fsync of the file, a rename that never
//! replaces an existing file, fsync of the directory. [`Upload::abort`], or dropping the upload
//! without committing, removes the partial file, so a failed run leaves nothing under a final
//! name and no `.partial` behind (a process killed with SIGKILL can still leave a `.partial`;
//! the name says what it is). An object-store archive keeps the same rules with a
//! `NAME.partial` marker object and a multipart upload ([`object`]).

pub mod azfile;
pub(crate) mod local;
pub mod lock;
pub mod object;
pub mod settings;
mod stream;

use std::path::PathBuf;

use tokio::io::AsyncWrite;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {path}: {cause}")]
    Local { path: PathBuf, cause: String },
    #[error(
        "target {0}: {kind} targets are not supported; give a directory, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or azfile://SHARE/DIR",
        kind = scheme_kind(.0)
    )]
    Unsupported(String),
    /// An object store: the target URL and one line of cause (never a secret).
    #[error("target {target}: {cause}")]
    Store { target: String, cause: String },
    /// A `--target-setting` that cannot be used.
    #[error("{0}")]
    Setting(String),
}

/// `S3`, `Azure`, or the URL scheme as written, for messages.
fn scheme_kind(target: &str) -> String {
    let scheme = target
        .split_once("://")
        .map(|(s, _)| s)
        .unwrap_or(target)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "s3" => "S3".into(),
        "azure" | "az" | "abfs" | "abfss" | "wasb" | "wasbs" => "Azure".into(),
        _ => format!("{scheme}://"),
    }
}

/// An archive being written: bytes go to `NAME.partial` until `commit`.
pub struct Upload {
    /// The final name (file name only) this upload will get.
    pub name: String,
    /// Full final path/URL, for messages.
    pub location: String,
    inner: UploadInner,
}

enum UploadInner {
    Local(local::LocalUpload),
    Object(object::ObjectUpload),
    AzFile(azfile::AzFileUpload),
}

impl Upload {
    /// The writer to stream archive bytes into. Call once (a second call gets a writer that
    /// fails every write). Shut it down (`AsyncWriteExt::shutdown`, which
    /// [`crate::archive::ArchiveWriter::finish`] does) before [`commit`](Upload::commit).
    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        match &mut self.inner {
            UploadInner::Local(u) => u.writer(),
            UploadInner::Object(u) => u.writer(),
            UploadInner::AzFile(u) => u.writer(),
        }
    }

    /// fsync, rename `NAME.partial` to `NAME` (never over an existing file), fsync the directory.
    /// Returns the final location. On error the partial file is removed.
    pub async fn commit(mut self) -> Result<String, TargetError> {
        match &mut self.inner {
            UploadInner::Local(u) => u.commit().await?,
            UploadInner::Object(u) => u.commit().await?,
            UploadInner::AzFile(u) => return u.commit().await,
        }
        Ok(self.location.clone())
    }

    /// Remove the partial file. Also done on drop if neither commit nor abort ran.
    pub async fn abort(mut self) {
        match &mut self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::Object(u) => u.abort().await,
            UploadInner::AzFile(u) => u.abort().await,
        }
    }

    /// Path of the partial file being written, for a local target (messages and tests).
    pub fn partial_path(&self) -> Option<&std::path::Path> {
        match &self.inner {
            UploadInner::Local(u) => Some(u.partial_path()),
            UploadInner::Object(_) | UploadInner::AzFile(_) => None,
        }
    }
}

pub enum Target {
    Local(PathBuf),
    Object(Box<object::ObjectTarget>),
    AzFile(Box<azfile::AzFileTarget>),
}

/// The most [`Target::get_small`] reads.
pub const SMALL_MAX: u64 = 64 << 20;

/// Appended to an archive's name for its manifest sidecar (unencrypted archives only).
pub const SIDECAR_SUFFIX: &str = ".manifest.json";

/// An archive found on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// When it was taken (seconds since the epoch, UTC): from the name's timestamp, else the
    /// file's modification time.
    pub time: i64,
    /// `tar.zst`, `tar.gz` or `zip`.
    pub format: String,
    pub encrypted: bool,
    /// The name of its manifest sidecar, when there is one.
    pub sidecar: Option<String>,
}

/// The UTC time in an archive name `PREFIX-yyyymmddThhmmssZ[_N].EXT`.
pub fn name_time(name: &str) -> Option<i64> {
    let i = name.rfind('-')?;
    let stamp = name.get(i + 1..i + 17)?;
    if !stamp.ends_with('Z') {
        return None;
    }
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", &stamp[..15]).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// Whether `name` is a partial file of a run with archive prefix `prefix`:
/// `PREFIX-yyyymmddThhmmssZ…​.partial` (an archive being written or its upload's marker, a
/// sidecar being written). Another prefix that merely starts with `PREFIX-` does not match:
/// the timestamp must follow.
pub fn is_partial_of(prefix: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_suffix(".partial")
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|n| n.strip_prefix('-'))
    else {
        return false;
    };
    let (Some(stamp), Some(next)) = (rest.get(..16), rest.get(16..17)) else {
        return false;
    };
    stamp.ends_with('Z')
        && matches!(next, "." | "_")
        && jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", &stamp[..15]).is_ok()
}

impl Target {
    /// [`Target::parse_with`] with settings from the environment only.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        Target::parse_with(s, &settings::Settings::default())
    }

    /// Parse a `-t` value: a path (relative or absolute) or a `file://` URL is a local
    /// directory; `s3://` and `az://` (or `azure://`) are object stores, set up from
    /// `settings` and the environment (no request yet: [`Target::check`] makes the first);
    /// any other `scheme://` is refused with [`TargetError::Unsupported`].
    pub fn parse_with(s: &str, settings: &settings::Settings) -> Result<Target, TargetError> {
        if s.is_empty() {
            return Err(TargetError::Local {
                path: PathBuf::new(),
                cause: "empty target path".into(),
            });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            let path = if rest.starts_with('/') {
                rest
            } else if let Some(p) = rest.strip_prefix("localhost/") {
                &s[s.len() - p.len() - 1..]
            } else {
                return Err(TargetError::Local {
                    path: PathBuf::from(s),
                    cause: "a file:// URL must name an absolute local path (file:///dir)".into(),
                });
            };
            return Ok(Target::Local(PathBuf::from(path)));
        }
        if azfile::parse_url(s).is_some() {
            return Ok(Target::AzFile(Box::new(azfile::AzFileTarget::open(
                s, settings,
            )?)));
        }
        if object::parse_url(s).is_some() {
            return Ok(Target::Object(Box::new(object::ObjectTarget::open(
                s, settings,
            )?)));
        }
        if let Some((scheme, _)) = s.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(TargetError::Unsupported(s.to_string()));
        }
        Ok(Target::Local(PathBuf::from(s)))
    }

    /// The directory archives go to, when the target is a local (or mounted) one.
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self {
            Target::Local(dir) => Some(dir.clone()),
            Target::Object(_) | Target::AzFile(_) => None,
        }
    }

    /// Check it exists and is writable (before any host is contacted).
    pub async fn check(&self) -> Result<(), TargetError> {
        match self {
            Target::Local(dir) => local::check(dir).await,
            Target::Object(o) => o.check().await,
            Target::AzFile(a) => a.check().await,
        }
    }

    /// Create `<stem>.<ext>` (or `<stem>_1.<ext>`, `_2`, ... when taken), mode 0600, as a partial.
    pub async fn create(&self, stem: &str, ext: &str) -> Result<Upload, TargetError> {
        match self {
            Target::Local(dir) => {
                let inner = local::create(dir, stem, ext).await?;
                Ok(Upload {
                    name: inner.name().to_string(),
                    location: inner.final_path().display().to_string(),
                    inner: UploadInner::Local(inner),
                })
            }
            Target::Object(o) => {
                let inner = o.create(stem, ext).await?;
                Ok(Upload {
                    name: inner.name.clone(),
                    location: inner.location.clone(),
                    inner: UploadInner::Object(inner),
                })
            }
            Target::AzFile(a) => {
                let inner = a.create(stem, ext).await?;
                Ok(Upload {
                    name: inner.name.clone(),
                    location: inner.location.clone(),
                    inner: UploadInner::AzFile(inner),
                })
            }
        }
    }

    /// Write a small file (a manifest sidecar) under `name`, whole or not at all.
    pub async fn put_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), TargetError> {
        match self {
            Target::Local(dir) => local::put_small(dir, name, bytes).await,
            Target::Object(o) => o.put_small(name, bytes).await,
            Target::AzFile(a) => a.put_small(name, bytes).await,
        }
    }

    /// Create a small file `name` unless it exists, atomically where the store allows (a local
    /// rename without replace, a conditional put, an Azure Files rename without replace):
    /// `Ok(false)` when it exists, nothing written.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool, TargetError> {
        match self {
            Target::Local(dir) => local::put_new(dir, name, bytes).await,
            Target::Object(o) => o.put_new(name, bytes).await,
            Target::AzFile(a) => a.put_new(name, bytes).await,
        }
    }

    /// The archives found on the target, newest first: every file whose name ends in an
    /// archive extension (`.tar.zst`, `.tar.gz`, `.zip`, each optionally `.age`), `.partial`
    /// files left out, and so is a name with a `NAME.partial` beside it (still being written,
    /// or an object-store upload being aborted).
    pub async fn list(&self) -> Result<Vec<Listed>, TargetError> {
        let files = match self {
            Target::Local(dir) => local::list(dir).await?,
            Target::Object(o) => o.list().await?,
            Target::AzFile(a) => a.list().await?,
        };
        let names: std::collections::BTreeSet<String> =
            files.iter().map(|(n, _, _)| n.clone()).collect();
        let mut out: Vec<Listed> = files
            .into_iter()
            .filter(|(name, _, _)| !names.contains(&format!("{name}.partial")))
            .filter_map(|(name, size, mtime)| {
                let (plain, encrypted) = match name.strip_suffix(".age") {
                    Some(p) => (p, true),
                    None => (name.as_str(), false),
                };
                let format = ["tar.zst", "tar.gz", "zip"]
                    .into_iter()
                    .find(|e| plain.ends_with(&format!(".{e}")))?;
                let sidecar = format!("{name}{SIDECAR_SUFFIX}");
                Some(Listed {
                    time: name_time(plain).unwrap_or(mtime),
                    sidecar: names.contains(&sidecar).then_some(sidecar),
                    format: format.to_string(),
                    name,
                    size,
                    encrypted,
                })
            })
            .collect();
        out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
        Ok(out)
    }

    /// Remove the partial files of `prefix` ([`is_partial_of`]) that runs which never finished
    /// (killed with SIGKILL, a machine that went down) left behind; returns their names. Call it
    /// only while holding the target's lock for `prefix` ([`lock::acquire`]): no other run of
    /// the prefix writes then, so every such file is stale. An object store's marker goes with
    /// what its upload left that can be named (Azure's uncommitted blocks; S3's parts are left
    /// to the bucket's lifecycle rule); nothing else on the target is touched.
    pub async fn remove_stale_partials(&self, prefix: &str) -> Result<Vec<String>, TargetError> {
        let files = match self {
            Target::Local(dir) => local::list(dir).await?,
            Target::Object(o) => o.list().await?,
            Target::AzFile(a) => a.list().await?,
        };
        let mut removed = Vec::new();
        for (name, _, _) in files {
            if !is_partial_of(prefix, &name) {
                continue;
            }
            match self {
                Target::Object(o) => o.discard_stale(&name).await?,
                _ => self.delete(&name).await?,
            }
            removed.push(name);
        }
        removed.sort();
        Ok(removed)
    }

    /// Read a small file (a lock file) whole.
    /// At most [`SMALL_MAX`] bytes: a larger file (put there by someone else) is refused rather
    /// than read into memory. Manifest sidecars, which grow with the number of entries, are
    /// read with [`Target::read_sidecar`].
    pub async fn get_small(&self, name: &str) -> Result<Vec<u8>, TargetError> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let read = self
            .open_read(name)
            .await?
            .take(SMALL_MAX + 1)
            .read_to_end(&mut out)
            .await;
        let fail = |cause: String| match self {
            Target::Local(dir) => TargetError::Local {
                path: dir.clone(),
                cause,
            },
            _ => TargetError::Store {
                target: self.display(),
                cause,
            },
        };
        read.map_err(|e| fail(format!("reading {name}: {e}")))?;
        if out.len() as u64 > SMALL_MAX {
            return Err(fail(format!(
                "{name} is larger than {} MiB: not a manifest sidecar",
                SMALL_MAX >> 20
            )));
        }
        Ok(out)
    }

    /// Delete `name` (an archive or a sidecar); one that is already gone is no error.
    pub async fn delete(&self, name: &str) -> Result<(), TargetError> {
        match self {
            Target::Local(dir) => match tokio::fs::remove_file(dir.join(name)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TargetError::Local {
                    path: dir.clone(),
                    cause: format!("deleting {name}: {e}"),
                }),
                _ => Ok(()),
            },
            Target::Object(o) => o.delete(name).await,
            Target::AzFile(a) => a.delete(name).await,
        }
    }

    /// Stream the archive `name` from the target.
    /// The manifest sidecar `name`, parsed as it streams in (see
    /// [`crate::archive::read::read_sidecar`]); the error is one line naming it.
    pub async fn read_sidecar(&self, name: &str) -> Result<crate::archive::Manifest, String> {
        let reader = self.open_read(name).await.map_err(|e| e.to_string())?;
        crate::archive::read::read_sidecar(name, reader).await
    }

    pub async fn open_read(
        &self,
        name: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, TargetError> {
        match self {
            Target::Local(dir) => {
                let p = dir.join(name);
                let f = tokio::fs::File::open(&p)
                    .await
                    .map_err(|e| TargetError::Local {
                        path: dir.clone(),
                        cause: format!("opening {}: {e}", p.display()),
                    })?;
                Ok(Box::new(f))
            }
            Target::Object(o) => o.open_read(name).await,
            Target::AzFile(a) => a.open_read(name).await,
        }
    }

    /// Split an archive location into its target and name: `s3://b/p/NAME` into `s3://b/p`
    /// and `NAME`; `None` for a plain path (read as a file).
    pub fn split_archive_url(
        s: &str,
        settings: &settings::Settings,
    ) -> Option<Result<(Target, String), TargetError>> {
        let known = match azfile::parse_url(s) {
            Some(r) => Some(r.map(|_| ())),
            None => object::parse_url(s).map(|r| r.map(|_| ())),
        };
        if let Err(e) = known? {
            return Some(Err(e));
        }
        let Some((dir, name)) = s.rsplit_once('/').filter(|(d, n)| {
            !n.is_empty() && d.contains("://") && !d.ends_with(':') && !d.ends_with("//")
        }) else {
            return Some(Err(TargetError::Store {
                target: s.to_string(),
                cause: "expected URL/NAME naming one archive".into(),
            }));
        };
        Some(Target::parse_with(dir, settings).map(|t| (t, name.to_string())))
    }

    pub fn display(&self) -> String {
        match self {
            Target::Local(p) => p.display().to_string(),
            Target::Object(o) => o.url.clone(),
            Target::AzFile(a) => a.url.clone(),
        }
    }
}

#[cfg(test)]
mod partial_tests {
    use super::is_partial_of;

    #[test]
    fn partial_files_of_a_prefix() {
        for own in [
            "lsbackup-20261206T120000Z.tar.zst.partial",
            "lsbackup-20261206T120000Z_2.zip.age.partial",
            "lsbackup-20261206T120000Z.tar.zst.manifest.json.4242.partial",
            "lsbackup-20261206T120000Z.tar.gz.4242-17.partial",
        ] {
            assert!(is_partial_of("lsbackup", own), "{own}");
        }
        for other in [
            "lsbackup-20261206T120000Z.tar.zst",
            "lsbackup-foo-20261206T120000Z.tar.zst.partial",
            "lsbackup.lock.4242.partial",
            "other-20261206T120000Z.tar.zst.partial",
            "lsbackup-2026120XT120000Z.tar.zst.partial",
            "lsbackup-20261206T120000Zx.partial",
            "notes.partial",
        ] {
            assert!(!is_partial_of("lsbackup", other), "{other}");
        }
        assert!(is_partial_of(
            "lsbackup-foo",
            "lsbackup-foo-20261206T120000Z.tar.zst.partial"
        ));
    }
}
