//! The copy primitive: a remote GNU tar stream of paths, re-rooted under
//! `<component>/<host>/` in the archive, entry by entry, without buffering.
//!
//! What a host's tar stream holds is data: an entry whose path lies below a symlink that the
//! same stream delivered earlier is refused (a host could otherwise make a later extraction
//! write through the link), special files are noted and skipped, and paths with `..` or
//! absolute paths are refused by the archive writer.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::shell::{copy_script, missing_patterns};
use super::unit::{HostCtx, StepError, exit_text};
use crate::archive::{ArchiveError, EntryMeta, EntryRecord, FailureKind};

/// Received entries of one copy whose commit (compressing the last piece, queueing for the
/// writer) may run while the next entries are received.
const COMMITS_AHEAD: usize = 4;
/// The same, across all copies at once: many hosts at once get less each (memory stays
/// bounded), a lone copy gets [`COMMITS_AHEAD`].
const COMMITS_AHEAD_ALL: usize = 4;

static AHEAD: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(COMMITS_AHEAD_ALL)));

/// A place to commit the next entry on its own task, waiting for this copy's own earlier
/// commits when it has too many or none is free (never for another copy's); `None`: commit
/// inline, as none of this copy's commits is left to wait for.
async fn commit_ahead(
    commits: &mut Commits,
    entries: &mut crate::archive::Entries,
) -> Result<Option<OwnedSemaphorePermit>, StepError> {
    loop {
        if commits.0.len() < COMMITS_AHEAD
            && let Ok(p) = AHEAD.clone().try_acquire_owned()
        {
            return Ok(Some(p));
        }
        if commits.0.is_empty() {
            return Ok(None);
        }
        next_commit(&mut commits.0, entries).await?;
    }
}

type Commit = tokio::task::JoinHandle<Result<EntryRecord, ArchiveError>>;

/// The commits of one copy; those still running when the copy itself is dropped (cancelled)
/// are aborted rather than left to add entries nobody records.
#[derive(Default)]
struct Commits(VecDeque<Commit>);

impl Drop for Commits {
    fn drop(&mut self) {
        for job in &self.0 {
            job.abort();
        }
    }
}

/// Wait for the oldest commit; its record goes to `entries`.
async fn next_commit(
    commits: &mut VecDeque<Commit>,
    entries: &mut crate::archive::Entries,
) -> Result<(), StepError> {
    let Some(job) = commits.pop_front() else {
        return Ok(());
    };
    match job.await {
        Ok(Ok(rec)) => {
            entries.push(rec);
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(StepError::new(
            FailureKind::Local,
            format!("committing an entry: {e}"),
        )),
    }
}

/// True when `path` lies below one of `links` (a recorded symlink path).
fn below_symlink(links: &BTreeSet<String>, path: &str) -> Option<String> {
    let mut prefix = String::new();
    for part in path.split('/') {
        if !prefix.is_empty() && links.contains(&prefix) {
            return Some(prefix);
        }
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
    }
    None
}

pub(crate) async fn copy(
    u: &mut HostCtx<'_>,
    step: &str,
    patterns: &[String],
    shown_each: &[String],
    optional: bool,
    user: Option<&str>,
) -> Result<usize, StepError> {
    if let Some(p) = patterns.iter().find(|p| !p.starts_with('/')) {
        return Err(StepError::config(format!(
            "copy pattern {p:?} is not an absolute path"
        )));
    }
    let script = copy_script(patterns);
    // One slot for every entry of this stream, taken before the stream is opened.
    let slot = u.ctx.sink.slot().await?;
    let t = Instant::now();
    let shown = format!("tar -c {}", crate::shell::quote_words(shown_each));
    let mut proc = match u.session.exec(&script, user).await {
        Ok(p) => p,
        Err(e) => {
            u.record(step, &shown, user, None, t);
            return Err(e.into());
        }
    };
    let stdout = std::mem::replace(&mut proc.stdout, Box::new(tokio::io::empty()));
    let prefix = format!("{}/{}", u.pc.spec.name, u.h.name);
    let mut added = 0usize;
    let mut stream_err: Option<StepError> = None;
    let mut skipped_special = Vec::new();
    let mut refused_below_link = Vec::new();
    let mut links: BTreeSet<String> = BTreeSet::new();
    let mut commits = Commits::default();
    let reader = u.watched(stdout);
    let stalled = reader.fired();
    {
        let mut ar = tokio_tar::Archive::new(reader);
        match ar.entries() {
            Err(e) => {
                stream_err = Some(StepError::new(
                    FailureKind::ConnectionLost,
                    format!("reading tar stream: {e}"),
                ))
            }
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    let mut entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            stream_err = Some(StepError::new(
                                FailureKind::ConnectionLost,
                                format!("reading tar stream: {e}"),
                            ));
                            break;
                        }
                    };
                    let hdr = entry.header().clone();
                    let rel = match entry.path() {
                        Ok(p) => p.to_string_lossy().trim_end_matches('/').to_string(),
                        Err(e) => {
                            stream_err =
                                Some(StepError::bad_data(format!("bad path in tar stream: {e}")));
                            break;
                        }
                    };
                    if let Some(link) = below_symlink(&links, &rel) {
                        refused_below_link.push((rel, link));
                        continue;
                    }
                    let path = format!("{prefix}/{rel}");
                    // a path the stream repeats (overlapping patterns) is taken once
                    if u.ctx.sink.is_taken(&path) {
                        continue;
                    }
                    let mode = hdr.mode().unwrap_or(0o600);
                    let mtime = hdr.mtime().unwrap_or(0) as i64;
                    let et = hdr.entry_type();
                    let size = entry.effective_size();
                    let res = if et.is_file() {
                        let meta = EntryMeta {
                            path: path.clone(),
                            size,
                            mode,
                            mtime,
                        };
                        // An entry that does not arrive whole adds nothing. One that does is
                        // committed on its own task, so that the compression of its last piece
                        // overlaps with receiving the next entries.
                        match u.ctx.sink.receive_in(&slot, meta, &mut entry).await {
                            Ok(received) => {
                                match commit_ahead(&mut commits, &mut u.report.entries).await {
                                    Err(e) => {
                                        stream_err = Some(e);
                                        break;
                                    }
                                    Ok(Some(permit)) => {
                                        commits.0.push_back(tokio::spawn(async move {
                                            let r = received.commit(mode, mtime).await;
                                            drop(permit);
                                            r
                                        }));
                                        added += 1;
                                        continue;
                                    }
                                    Ok(None) => received.commit(mode, mtime).await,
                                }
                            }
                            Err(ArchiveError::Truncated { got, expected, .. }) => {
                                stream_err = Some(StepError::new(
                                    FailureKind::ConnectionLost,
                                    format!(
                                        "tar stream ended inside /{rel} after {got} of {expected} bytes"
                                    ),
                                ));
                                break;
                            }
                            Err(ArchiveError::Entry { cause, .. })
                                if cause.starts_with("reading source failed") =>
                            {
                                stream_err = Some(StepError::new(
                                    FailureKind::ConnectionLost,
                                    format!("copying /{rel}: {cause}"),
                                ));
                                break;
                            }
                            Err(e) => Err(e),
                        }
                    } else if et.is_dir() {
                        u.ctx.sink.add_dir(&path, mode, mtime).await
                    } else if et.is_symlink() {
                        let target = entry
                            .link_name()
                            .ok()
                            .flatten()
                            .map(|p| p.to_string_lossy().to_string())
                            .unwrap_or_default();
                        links.insert(rel.clone());
                        u.ctx.sink.add_symlink(&path, &target, mtime).await
                    } else {
                        skipped_special.push(rel);
                        continue;
                    };
                    match res {
                        Ok(rec) => {
                            added += 1;
                            u.report.entries.push(rec);
                        }
                        Err(e) => {
                            stream_err = Some(e.into());
                            break;
                        }
                    }
                }
            }
        }
    }
    // Every received entry's commit is awaited, whatever happened since: its record belongs in
    // the report, its error in the step's.
    while !commits.0.is_empty() {
        if let Err(e) = next_commit(&mut commits.0, &mut u.report.entries).await {
            stream_err.get_or_insert(e);
        }
    }
    if stalled.load(std::sync::atomic::Ordering::SeqCst) {
        // Stalled: stop it rather than wait for an exit that may never come.
        drop(proc);
        u.record(step, &shown, user, None, t);
        let cause = stream_err.map(|e| e.cause).unwrap_or_default();
        return Err(StepError::new(FailureKind::Timeout, cause));
    }
    let exit = match proc.wait().await {
        Ok(e) => e,
        Err(e) => {
            u.record(step, &shown, user, None, t);
            return Err(e.into());
        }
    };
    u.record(step, &shown, user, Some(&exit), t);
    for s in skipped_special {
        u.note(&format!("not copied (special file): /{s}"));
    }
    for (rel, link) in refused_below_link {
        u.note(&format!(
            "not copied: /{rel} lies below the symlink /{link} in the host's tar stream"
        ));
    }
    let missing = missing_patterns(&exit.stderr_tail, shown_each);
    // An optional copy names alternatives (wherever a package may put a file): absent ones
    // are expected and not worth a note.
    if !optional {
        for m in &missing {
            u.note(&format!("not found on host: {m}"));
        }
    }
    if let Some(e) = stream_err {
        return Err(e);
    }
    match exit.code {
        Some(0) => {}
        Some(1) => u.note(&format!(
            "step {step:?}: some files changed while being copied"
        )),
        _ => {
            return Err(StepError::new(
                FailureKind::CommandFailed,
                format!("tar: {}", exit_text(&exit)),
            ));
        }
    }
    if added == 0 && !optional {
        return Err(StepError::new(
            FailureKind::BadData,
            format!(
                "nothing to copy: no such file or directory on host: {}",
                missing.join(" ")
            ),
        ));
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_below_a_symlink_are_found() {
        let mut links = BTreeSet::new();
        links.insert("etc/app/certs".to_string());
        assert_eq!(
            below_symlink(&links, "etc/app/certs/x.pem").as_deref(),
            Some("etc/app/certs")
        );
        assert_eq!(below_symlink(&links, "etc/app/certs"), None);
        assert_eq!(below_symlink(&links, "etc/app/certs2/x"), None);
        assert_eq!(below_symlink(&links, "etc/app/x"), None);
    }
}
