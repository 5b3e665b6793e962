//! Where archives go. A target is chosen by the `-t` value: a path (local or NFS-mounted
//! directory) today; `s3://` and `azure://` URLs are recognised and refused with a clear message
//! until those backends land.
//!
//! OWNER: archive helper.

use std::path::PathBuf;

use tokio::io::AsyncWrite;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {path}: {cause}")]
    Local { path: PathBuf, cause: String },
    #[error("target {0}: not supported yet")]
    Unsupported(String),
}

/// An archive being written: bytes go to `NAME.partial` until `commit`.
pub struct Upload {
    /// The final name (file name only) this upload will get.
    pub name: String,
    /// Full final path/URL, for messages.
    pub location: String,
    // private
}

impl Upload {
    /// The writer to stream archive bytes into. Call once.
    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        todo!("archive helper")
    }
    /// fsync, rename `NAME.partial` to `NAME` (never over an existing file), fsync the directory.
    pub async fn commit(self) -> Result<String, TargetError> {
        todo!("archive helper")
    }
    /// Remove the partial file. Also done on drop if neither commit nor abort ran.
    pub async fn abort(self) {}
}

pub enum Target {
    Local(PathBuf),
}

impl Target {
    /// Parse a `-t` value.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let _ = s;
        todo!("archive helper")
    }
    /// Check it exists and is writable (before any host is contacted).
    pub async fn check(&self) -> Result<(), TargetError> {
        todo!("archive helper")
    }
    /// Create `<stem>.<ext>` (or `<stem>_1.<ext>`, `_2`, ... when taken), mode 0600, as a partial.
    pub async fn create(&self, stem: &str, ext: &str) -> Result<Upload, TargetError> {
        let _ = (stem, ext);
        todo!("archive helper")
    }
    pub fn display(&self) -> String {
        match self {
            Target::Local(p) => p.display().to_string(),
        }
    }
}
