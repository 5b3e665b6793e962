//! Executing a plan: the archive and target around it, the components run at once (each by
//! `policy.rs` on its hosts), the manifest assembled from their reports, and the exit policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use super::policy::run_component;
use super::progress::Progress;
use super::sessions::Sessions;
use super::slots::HostSlots;
use super::unit::Ctx;
use crate::archive::{
    ArchiveError, ArchiveWriter, ComponentReport, Failure, FailureKind, Format, InventoryInfo,
    MANIFEST_FORMAT, Manifest, Status, ToolInfo, WriterOptions, WriterStats,
};
use crate::target::{Target, TargetError};
use crate::transport::TransportConfig;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Crypt(#[from] crate::archive::crypt::CryptError),
    #[error("interrupted: no archive was written")]
    Interrupted,
}

/// How a run is stopped early: `stop` lets hosts run their cleanups; `abort` does not wait.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
}

/// How long an interrupted run waits for hosts' cleanups before giving up on them.
const CLEANUP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub format: Format,
    pub level: Option<i32>,
    pub zstd_workers: u32,
    /// Where command output is spooled before it enters the archive (None: system temp dir).
    pub spool_dir: Option<PathBuf>,
    /// At most this many host jobs at once.
    pub concurrency: usize,
    pub transport: TransportConfig,
    pub build_dir: PathBuf,
    /// Archive names are `<prefix>-<UTC timestamp>.<ext>`.
    pub name_prefix: String,
    /// Encrypt the archive stream to these age recipients (the name gets `.age`).
    pub encrypt: Option<Arc<crate::archive::crypt::Recipients>>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: Manifest,
    /// Where the archive was written; None when nothing usable was backed up (no archive kept).
    pub location: Option<String>,
    /// The writer's figures: archive bytes, peak of the compressed spool.
    pub stats: WriterStats,
    /// Where entries were spooled.
    pub spool_dir: PathBuf,
}

impl Outcome {
    /// 0: everything succeeded; 2: partial (archive kept); 1: nothing usable.
    pub fn exit_code(&self) -> i32 {
        match (self.manifest.status, &self.location) {
            (_, None) => 1,
            (Status::Ok, _) => 0,
            _ => 2,
        }
    }
}

/// Run a backup of `plan` into `target`. Ctrl-C / SIGTERM handling belongs to the caller, which
/// cancels `interrupt.stop`: no new step starts, running streams stop, every started host's
/// cleanups still run (so no snapshot is left behind on a host), then the partial archive is
/// removed and `Interrupted` returned. `interrupt.abort` (a second Ctrl-C) skips the cleanups.
pub async fn run_backup(
    plan: &Plan,
    target: &Target,
    opts: &RunOptions,
    progress: Arc<dyn Progress>,
    interrupt: Interrupt,
) -> Result<Outcome, EngineError> {
    // Stopped by an interrupt, or by a fault of the target (fault.rs).
    let cancel = interrupt.stop.child_token();
    let started = jiff::Timestamp::now();
    target.check().await?;
    let stem = format!(
        "{}-{}",
        opts.name_prefix,
        started.strftime("%Y%m%dT%H%M%SZ")
    );
    let ext = match &opts.encrypt {
        Some(_) => format!(
            "{}.{}",
            opts.format.extension(),
            crate::archive::crypt::AGE_EXT
        ),
        None => opts.format.extension().to_string(),
    };
    let mut upload = target.create(&stem, &ext).await?;
    let archive_name = upload.name.clone();
    // The archive's own digest, over the bytes as stored, for the sidecar.
    // (Not for an encrypted archive: it gets no sidecar, and age authenticates its bytes.)
    let stored = if opts.encrypt.is_none() {
        crate::archive::digest::Digesting::new()
    } else {
        crate::archive::digest::Digesting::off()
    };
    let target_failed = Arc::default();
    let raw: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(stored.writer(
        super::fault::watch(&target_failed, &archive_name, upload.writer()),
    ));
    // Encrypted on the way out: no plaintext byte reaches the target.
    let out = match &opts.encrypt {
        Some(r) => match r.encrypting_writer(raw).await {
            Ok(w) => w,
            Err(e) => {
                upload.abort().await;
                return Err(e.into());
            }
        },
        None => raw,
    };
    let writer = match ArchiveWriter::new(
        out,
        WriterOptions {
            format: opts.format,
            level: opts.level,
            zstd_workers: opts.zstd_workers,
            spool_dir: opts.spool_dir.clone(),
        },
    )
    .await
    {
        Ok(w) => w,
        Err(e) => {
            upload.abort().await;
            return Err(e.into());
        }
    };
    let fault = super::fault::Fault::new(
        target_failed,
        writer.sink(),
        opts.spool_dir.is_some() && opts.spool_dir == target.local_dir(),
    );
    // Entry records go to a spool file beside the archive's spool files as the run goes (memory
    // does not grow with the number of files); should it fail they stay in memory.
    let spool_sink = writer.sink();
    let entry_spool = match crate::archive::EntrySpool::new(spool_sink.spool_dir()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "entry records kept in memory: no spool file in {}: {e}",
                spool_sink.spool_dir().display()
            );
            None
        }
    };
    let sessions = Sessions::new(opts.concurrency);
    let slots = HostSlots::new(opts.concurrency, sessions.slot_hooks());
    let ctx = Arc::new(Ctx {
        sink: writer.sink(),
        sessions,
        transport: opts.transport.clone(),
        slots,
        progress: fault.progress(progress),
        cancel: cancel.clone(),
        shared: Default::default(),
        entry_spool,
    });

    let work = async {
        ctx.progress.planned(plan.components.len());
        let tasks: Vec<_> = plan
            .components
            .iter()
            .map(|pc| {
                let ctx = ctx.clone();
                let pc = pc.clone();
                tokio::spawn(async move {
                    let report = run_component(&ctx, &pc).await;
                    ctx.progress.component_done(&report.name, report.status);
                    report
                })
            })
            .collect();
        let mut reports = Vec::new();
        for (t, pc) in tasks.into_iter().zip(&plan.components) {
            reports.push(t.await.unwrap_or_else(|e| ComponentReport {
                name: pc.spec.name.clone(),
                description: pc.spec.description.clone(),
                groups: pc.groups.clone(),
                status: Status::Failed,
                hosts: vec![],
                errors: vec![Failure::new(
                    FailureKind::Local,
                    None,
                    format!("{}: internal error: {e}", pc.spec.name),
                )],
            }));
        }
        reports
    };
    tokio::pin!(work);
    let reports = tokio::select! {
        r = &mut work => r,
        _ = fault.occurred() => {
            // Components stop as for an interrupt (their cleanups run); the fault is the error.
            cancel.cancel();
            tokio::select! {
                _ = &mut work => {}
                _ = tokio::time::sleep(CLEANUP_GRACE) => {}
                _ = interrupt.abort.cancelled() => {}
            }
            drop(writer);
            upload.abort().await;
            return Err(fault.error(target).expect("a fault occurred").into());
        }
        _ = interrupt.stop.cancelled() => {
            tracing::warn!("interrupted: stopping; hosts run their cleanups (Ctrl-C again to skip them)");
            tokio::select! {
                _ = &mut work => {}
                _ = tokio::time::sleep(CLEANUP_GRACE) => {
                    tracing::warn!("cleanups still running after {}s: giving up on them", CLEANUP_GRACE.as_secs());
                }
                _ = interrupt.abort.cancelled() => {}
            }
            drop(writer);
            upload.abort().await;
            return Err(EngineError::Interrupted);
        }
    };
    ctx.sessions.close_all().await;

    if let Some(e) = fault.error(target) {
        drop(writer);
        upload.abort().await;
        return Err(e.into());
    }
    let status = crate::archive::overall_status(&reports);
    let mut manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: crate::VERSION.into(),
        },
        started_at: started.to_string(),
        finished_at: jiff::Timestamp::now().to_string(),
        build_dir: opts.build_dir.display().to_string(),
        archive_name,
        archive_format: opts.format,
        status,
        inventory: inventory_info(plan),
        selection: plan
            .components
            .iter()
            .map(|c| c.spec.name.clone())
            .collect(),
        host_key_checking: if opts.transport.insecure_skip_host_key_check {
            "OFF (--insecure-skip-host-key-check)".into()
        } else {
            "known_hosts".into()
        },
        components: reports,
        archive: None,
    };
    let spool_dir = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    if status == Status::Failed {
        let stats = writer.stats();
        drop(writer);
        upload.abort().await;
        return Ok(Outcome {
            manifest,
            location: None,
            stats,
            spool_dir,
        });
    }
    let sink = writer.sink();
    let finished = tokio::select! {
        r = writer.finish(&manifest) => r,
        _ = cancel.cancelled() => {
            upload.abort().await;
            return Err(EngineError::Interrupted);
        }
    };
    if let Err(e) = finished {
        upload.abort().await;
        return Err(fault
            .error(target)
            .map_or_else(|| e.into(), EngineError::from));
    }
    let location = upload.commit().await?;
    // The manifest beside an unencrypted archive, for `lsbackup list` (an encrypted archive's
    // manifest stays inside it: hosts, paths and checksums are not written in clear). The
    // archive is complete without it: a failure is a warning.
    if opts.encrypt.is_none() {
        let sidecar = format!("{}{}", manifest.archive_name, crate::target::SIDECAR_SUFFIX);
        // The same manifest plus the archive file's digest: set for the sidecar only (not a
        // copy: every entry's record would be held twice).
        manifest.archive = Some(stored.digest());
        let written = put_sidecar(target, &manifest, &spool_dir).await;
        manifest.archive = None;
        if let Err(e) = written {
            tracing::warn!(
                "manifest sidecar {sidecar} not written (the archive holds the manifest): {e}"
            );
        }
    }
    Ok(Outcome {
        manifest,
        location: Some(location),
        stats: sink.stats(),
        spool_dir,
    })
}

/// The manifest sidecar `<archive name>.manifest.json`, streamed like the archive: serialized to
/// a spool file in `spool_dir` (its size grows with the number of entries: never a buffer in
/// memory), then written to the target as a partial committed when complete. A name already
/// taken is an error, never a `_1`.
async fn put_sidecar(target: &Target, manifest: &Manifest, spool_dir: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let name = format!("{}{}", manifest.archive_name, crate::target::SIDECAR_SUFFIX);
    let file = (|| -> Result<std::fs::File, String> {
        use std::io::{Seek, Write};
        let file = tempfile::tempfile_in(spool_dir)
            .map_err(|e| format!("spool file in {}: {e}", spool_dir.display()))?;
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
        serde_json::to_writer_pretty(&mut w, manifest).map_err(|e| format!("serializing: {e}"))?;
        w.flush().map_err(|e| format!("spooling: {e}"))?;
        let mut file = w.into_inner().map_err(|e| format!("spooling: {e}"))?;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| format!("spooling: {e}"))?;
        Ok(file)
    })()?;
    let ext = crate::target::SIDECAR_SUFFIX.trim_start_matches('.');
    let mut upload = target
        .create(&manifest.archive_name, ext)
        .await
        .map_err(|e| e.to_string())?;
    if upload.name != name {
        upload.abort().await;
        return Err(format!("{name} exists already"));
    }
    let mut src = tokio::fs::File::from_std(file);
    let mut w = upload.writer();
    let copied = async {
        tokio::io::copy(&mut src, &mut w).await?;
        w.shutdown().await
    }
    .await;
    drop(w);
    match copied {
        Ok(()) => upload.commit().await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => {
            upload.abort().await;
            Err(format!("writing {name}: {e}"))
        }
    }
}

fn inventory_info(plan: &Plan) -> InventoryInfo {
    let inv = &plan.inventory;
    let groups = inv
        .groups
        .keys()
        .map(|g| {
            (
                g.clone(),
                inv.group_hosts(g).iter().map(|h| h.name.clone()).collect(),
            )
        })
        .collect();
    let hosts = inv
        .hosts
        .iter()
        .map(|h| {
            let addr = match inv.connection(&h.name) {
                Ok(c) if c.local => "local".to_string(),
                Ok(c) => format!("{}:{}", c.address, c.port),
                Err(_) => String::new(),
            };
            (h.name.clone(), addr)
        })
        .collect();
    InventoryInfo {
        path: inv.source.display().to_string(),
        groups,
        hosts,
    }
}
