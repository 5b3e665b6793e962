//! A local (or NFS-mounted) directory target.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, BufWriter};

use super::TargetError;

/// Buffer in front of the archive file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Give up looking for a free name after this many candidates.
const MAX_SUFFIX: u32 = 10_000;

const WRITER_NOT_TAKEN: u8 = 0;
const WRITER_OPEN: u8 = 1;
const WRITER_SHUT: u8 = 2;

fn err(path: &Path, cause: impl Into<String>) -> TargetError {
    TargetError::Local {
        path: path.to_path_buf(),
        cause: cause.into(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

pub(super) async fn check(dir: &Path) -> Result<(), TargetError> {
    let d = dir.to_path_buf();
    blocking(move || check_sync(&d)).await
}

fn check_sync(dir: &Path) -> Result<(), TargetError> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(err(dir, "does not exist")),
        Err(e) => return Err(err(dir, format!("cannot be accessed: {e}"))),
    };
    if !meta.is_dir() {
        return Err(err(dir, "is not a directory"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let probe = dir.join(format!(".lsbackup-probe-{}-{nanos}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(f) => {
            drop(f);
            std::fs::remove_file(&probe).map_err(|e| {
                err(
                    dir,
                    format!("cannot remove probe file {}: {e}", probe.display()),
                )
            })?;
            Ok(())
        }
        Err(e) => Err(err(dir, format!("is not writable ({e})"))),
    }
}

pub(super) async fn create(dir: &Path, stem: &str, ext: &str) -> Result<LocalUpload, TargetError> {
    if stem.is_empty() || stem.contains('/') || stem.contains('\0') {
        return Err(err(dir, format!("invalid archive name {stem:?}")));
    }
    let ext = ext.trim_start_matches('.').to_string();
    let (d, stem) = (dir.to_path_buf(), stem.to_string());
    blocking(move || create_sync(&d, &stem, &ext)).await
}

pub(super) fn candidate(stem: &str, ext: &str, n: u32) -> String {
    let base = if n == 0 {
        stem.to_string()
    } else {
        format!("{stem}_{n}")
    };
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn create_sync(dir: &Path, stem: &str, ext: &str) -> Result<LocalUpload, TargetError> {
    for n in 0..MAX_SUFFIX {
        let name = candidate(stem, ext, n);
        let final_path = dir.join(&name);
        let partial = dir.join(format!("{name}.partial"));
        if exists(&final_path) || exists(&partial) {
            continue;
        }
        // O_CREAT|O_EXCL: of two runs racing for a name, one gets it, the other moves on.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
        {
            Ok(file) => {
                return Ok(LocalUpload {
                    name,
                    dir: dir.to_path_buf(),
                    partial,
                    final_path,
                    file: Some(file),
                    state: Arc::new(AtomicU8::new(WRITER_NOT_TAKEN)),
                    done: false,
                });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(err(
                    dir,
                    format!("cannot create {}: {e}", partial.display()),
                ));
            }
        }
    }
    Err(err(
        dir,
        format!(
            "no free name for {}: {MAX_SUFFIX} candidates taken",
            candidate(stem, ext, 0)
        ),
    ))
}

pub(super) struct LocalUpload {
    name: String,
    dir: PathBuf,
    partial: PathBuf,
    final_path: PathBuf,
    /// Kept for fsync after the writer has been shut down.
    file: Option<std::fs::File>,
    state: Arc<AtomicU8>,
    done: bool,
}

impl LocalUpload {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        let taken = self
            .state
            .compare_exchange(
                WRITER_NOT_TAKEN,
                WRITER_OPEN,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_err();
        let clone = self.file.as_ref().map(|f| f.try_clone());
        match clone {
            Some(Ok(f)) if !taken => Box::new(TrackedWriter {
                inner: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(f)),
                state: self.state.clone(),
            }),
            Some(Err(e)) => Box::new(FailingWriter(format!("{}: {e}", self.partial.display()))),
            _ => Box::new(FailingWriter(format!(
                "{}: the archive writer was already taken",
                self.partial.display()
            ))),
        }
    }

    pub async fn commit(&mut self) -> Result<(), TargetError> {
        if self.state.load(Ordering::SeqCst) == WRITER_OPEN {
            return Err(err(
                &self.dir,
                format!(
                    "{}: the archive stream was not closed before commit",
                    self.partial.display()
                ),
            ));
        }
        let file = self.file.take().expect("commit runs once");
        let (dir, partial, final_path) = (
            self.dir.clone(),
            self.partial.clone(),
            self.final_path.clone(),
        );
        blocking(move || -> Result<(), TargetError> {
            file.sync_all().map_err(|e| err(&dir, format!("fsync {}: {e}", partial.display())))?;
            drop(file);
            rename_noreplace(&partial, &final_path, true)
                .map_err(|e| err(&dir, format!("renaming {} to {}: {e}", partial.display(), final_path.display())))?;
            // The rename is done: from here on the archive exists under its final name.
            if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
                tracing::warn!(target: "lsbackup::target", "fsync of directory {} failed: {e}", dir.display());
            }
            Ok(())
        })
        .await
        .inspect(|_| self.done = true)
    }

    pub async fn abort(&mut self) {
        self.done = true;
        self.file = None;
        let p = self.partial.clone();
        let _ = tokio::fs::remove_file(&p).await;
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Rename `from` to `to`, failing with `AlreadyExists` rather than replacing `to`.
///
/// `renameat2(RENAME_NOREPLACE)` where the filesystem supports it; else `link` + `unlink`
/// (atomic no-replace on any POSIX filesystem with hard links, NFS included); else (no hard
/// links, e.g. some FUSE or SMB mounts) an existence check and a plain rename, which is only
/// racy against another process creating the very same name in between.
pub(crate) fn rename_noreplace(from: &Path, to: &Path, try_renameat2: bool) -> std::io::Result<()> {
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "path has a NUL byte"))
    };
    if try_renameat2 {
        let (f, t) = (cstr(from)?, cstr(to)?);
        // The system call itself, not libc's wrapper: the musl of static builds has none.
        // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call;
        // renameat2 takes (int, const char *, int, const char *, unsigned int).
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => {}
            _ => return Err(e),
        }
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EMLINK)
            ) =>
        {
            if exists(to) {
                return Err(std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "destination exists",
                ));
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// The archive file writer; records a completed shutdown so `commit` can refuse an unclosed one.
struct TrackedWriter {
    inner: BufWriter<tokio::fs::File>,
    state: Arc<AtomicU8>,
}

impl AsyncWrite for TrackedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = r {
            self.state.store(WRITER_SHUT, Ordering::SeqCst);
        }
        r
    }
}

pub(super) struct FailingWriter(pub(super) String);

impl AsyncWrite for FailingWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::Error::other(self.0.clone())))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(std::io::Error::other(self.0.clone())))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(std::io::Error::other(self.0.clone())))
    }
}

#[cfg(test)]
mod tests;

/// Write `name` in `dir` whole or not at all: `name.partial` (0600, `O_EXCL`), fsync, a rename
/// that never replaces an existing file, fsync of the directory.
pub(super) async fn put_small(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<(), TargetError> {
    if put_new(dir, name, bytes).await? {
        Ok(())
    } else {
        Err(err(dir, format!("{name} exists already")))
    }
}

/// Write `name` whole (a `.partial` fsynced, then renamed without replacing) unless it exists:
/// `Ok(false)` then, nothing written.
pub(super) async fn put_new(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<bool, TargetError> {
    let dir = dir.to_path_buf();
    let name = name.to_string();
    blocking(move || -> Result<bool, TargetError> {
        use std::io::Write as _;
        let final_path = dir.join(&name);
        let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| err(&dir, format!("cannot create {}: {e}", partial.display())))?;
        let written = f.write_all(&bytes).and_then(|_| f.sync_all());
        drop(f);
        let done = written.and_then(|_| rename_noreplace(&partial, &final_path, true));
        match done {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&partial);
                return Ok(false);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(err(&dir, format!("writing {}: {e}", final_path.display())));
            }
        }
        if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
            tracing::warn!(target: "lsbackup::target", "fsync of directory {} failed: {e}", dir.display());
        }
        Ok(true)
    })
    .await
}

/// Files of `dir` (name, size, modification time in seconds), `.partial` files left out.
pub(super) async fn list(dir: &Path) -> Result<Vec<(String, u64, i64)>, TargetError> {
    let d = dir.to_path_buf();
    blocking(move || {
        let rd = std::fs::read_dir(&d).map_err(|e| err(&d, format!("cannot list: {e}")))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| err(&d, format!("cannot list: {e}")))?;
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((name, meta.len(), meta.mtime()));
        }
        Ok(out)
    })
    .await
}
