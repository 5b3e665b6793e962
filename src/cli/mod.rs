//! Command line: arguments (clap derive), logging set-up, and the subcommands.

mod args;
mod config;
mod output;
mod report;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use lsbackup::archive::Format;
use lsbackup::components::Catalog;
use lsbackup::engine::{Interrupt, Plan, Progress, RunOptions, Selection, run_backup};
use lsbackup::inventory::Inventory;
use lsbackup::target::Target;

pub use args::*;

/// Exit codes (documented in README.md).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_PARTIAL: i32 = 2;
/// Interrupted: 128 + the signal's number, as shells report a process killed by it.
pub const EXIT_SIGHUP: i32 = 129;
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;

pub fn main() -> i32 {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lsbackup: error: {e}");
            return EXIT_FAILED;
        }
    };
    let cli = match Cli::try_parse_from(argv.clone()) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_FAILED } else { EXIT_OK };
            let _ = e.print();
            if e.use_stderr() {
                argument_error_files(&argv, &e);
            }
            return code;
        }
    };
    // Blocking threads run compression (bounded by --zstd-workers) and spool and file I/O: a
    // few dozen are plenty, and each one that ever ran keeps its stack and allocator cache.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lsbackup: error: starting runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let code = rt.block_on(async move {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("lsbackup: error: {e}");
                EXIT_FAILED
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

async fn run(cli: Cli) -> Result<i32, AnyError> {
    let g = cli.global;
    if !matches!(cli.command, Command::Backup(_)) {
        // Without bars: a terminal gets short lines without timestamps, a log file the full ones.
        let terminal = std::io::stderr().is_terminal() && g.log_format == LogFormat::Text;
        output::init_logging(g.log_format, g.verbose, g.quiet, terminal, None);
    }
    match cli.command {
        Command::Backup(a) => backup(*a, &g).await,
        Command::Plan(a) => plan(a),
        Command::Inventory(a) => inventory(a),
        Command::Components(a) => components(a),
        Command::Verify(a) => verify(a).await,
        Command::List(a) => list(a).await,
        Command::Extract(a) => extract(a).await,
        Command::Restore(a) => restore(*a).await,
        Command::Config(a) => match a.command {
            ConfigCommand::Check { file } => {
                let file = file.to_string_lossy().into_owned();
                let problems = config::check(&file);
                for p in &problems {
                    eprintln!("lsbackup: error: {}", output::printable(p));
                }
                if problems.is_empty() {
                    println!("{file}: ok");
                    Ok(EXIT_OK)
                } else {
                    Ok(EXIT_FAILED)
                }
            }
        },
        Command::Completions(a) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "lsbackup", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Man(a) => {
            use clap::CommandFactory;
            let cmd = Cli::command();
            match a.dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir)
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                None => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                    // `lsbackup man | head`: the reader is gone, nothing more to say
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                },
            }
            Ok(EXIT_OK)
        }
        Command::Prune(a) => {
            let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
            let target = Target::parse_with(&a.target, &settings)?;
            let policy = a.keep.policy();
            if policy.is_empty() {
                return Err(
                    "prune: give at least one --keep-* rule (nothing is removed without one)"
                        .into(),
                );
            }
            target.check().await?;
            // A dry run changes nothing: no lock needed.
            let lock = if a.dry_run {
                None
            } else {
                Some(take_lock(&target, &a.name_prefix, "prune", a.lock_stale_after).await?)
            };
            let ok = prune(
                &target,
                &policy,
                &a.name_prefix,
                a.dry_run,
                &mut std::io::stdout(),
            )
            .await;
            if let Some(lock) = lock {
                release_lock(lock, &target).await;
            }
            Ok(if ok? { EXIT_OK } else { EXIT_FAILED })
        }
    }
}

fn load_inventory(build_dir: &Path, inventory: Option<&Path>) -> Result<Inventory, AnyError> {
    let inv = Inventory::discover(build_dir, inventory)?;
    Ok(inv)
}

fn build_plan(s: &SelectArgs) -> Result<Plan, AnyError> {
    let inv = load_inventory(&s.build_dir, s.inventory.as_deref())?;
    let catalog = Catalog::load(s.components_dir.as_deref())?;
    let sel = Selection {
        only: split_list(&s.only),
        skip: split_list(&s.skip),
        sets: s.set.clone(),
    };
    let mut plan = Plan::build(inv, &catalog, &sel)?;
    for set in &s.set {
        let name = set.split_once('=').map_or(set.as_str(), |(n, _)| n);
        let var = name.rsplit_once('.').map_or(name, |(_, v)| v);
        if lsbackup::components::is_secret_var(var) {
            plan.inventory.warnings.push(format!(
                "--set {name}=... puts a secret on lsbackup's command line, where every user of \
                 this machine can read it (/proc/PID/cmdline): keep it in the inventory's \
                 group_vars or host_vars instead"
            ));
        }
    }
    Ok(plan)
}

fn split_list(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn plan(a: PlanArgs) -> Result<i32, AnyError> {
    let plan = build_plan(&a.select)?;
    for w in &plan.inventory.warnings {
        eprintln!("lsbackup: warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
    } else {
        print!("{}", plan.describe());
    }
    // Declared variables that cannot be resolved: those component × host pairs will not run
    // (the rest of the plan stands), so the plan is only partly usable.
    let errors = plan.var_errors();
    for e in &errors {
        eprintln!("lsbackup: error: {e}");
    }
    Ok(if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

fn inventory(a: InventoryArgs) -> Result<i32, AnyError> {
    let inv = load_inventory(&a.build_dir, a.inventory.as_deref())?;
    for w in &inv.warnings {
        eprintln!("lsbackup: warning: {w}");
    }
    if a.list {
        println!("{}", inv.to_ansible_list_json());
        return Ok(EXIT_OK);
    }
    print!("{}", output::inventory_table(&inv));
    Ok(EXIT_OK)
}

fn components(a: ComponentsArgs) -> Result<i32, AnyError> {
    let catalog = Catalog::load(a.components_dir.as_deref())?;
    for c in &catalog.components {
        println!(
            "{:<14} groups: {:<40} {}",
            c.name,
            c.groups.join(","),
            c.description
        );
    }
    Ok(EXIT_OK)
}

async fn list(a: ListArgs) -> Result<i32, AnyError> {
    let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
    let target = Target::parse_with(&a.target, &settings)?;
    let ids = lsbackup::archive::crypt::Identities::load(&a.age_identity)?;
    let mut rows = Vec::new();
    for l in target.list().await? {
        // The manifest: from the sidecar, else from the archive itself, which means reading it
        // through (an encrypted one only with --age-identity).
        let (manifest, source, problem) = if l.encrypted && a.age_identity.is_empty() {
            (None, None, None)
        } else if let Some(sc) = &l.sidecar {
            match target.read_sidecar(sc).await {
                Ok(m) => (Some(summary_only(m)), Some("sidecar"), None),
                Err(e) => (None, None, Some(e)),
            }
        } else {
            let read = match target.local_dir() {
                Some(dir) if !l.encrypted => lsbackup::archive::read_manifest(dir.join(&l.name))
                    .await
                    .map_err(|e| e.to_string()),
                _ => match target.open_read(&l.name).await {
                    Ok(r) => lsbackup::archive::read::read_manifest_reader(&l.name, r, &ids)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            match read {
                Ok(m) => (Some(summary_only(m)), Some("archive"), None),
                Err(e) => (None, None, Some(e)),
            }
        };
        rows.push(output::Listed {
            entry: l,
            manifest,
            source,
            problem,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::list_json(&rows))?
        );
    } else {
        print!(
            "{}",
            output::list_text(&target.display(), &rows, output::term_width())
        );
    }
    Ok(EXIT_OK)
}

/// What `list` shows of a manifest (status, components, hosts), without the entry and command
/// records that grow with the backup: a listing holds one manifest per backup at once.
fn summary_only(mut m: lsbackup::archive::Manifest) -> lsbackup::archive::Manifest {
    for h in m.components.iter_mut().flat_map(|c| c.hosts.iter_mut()) {
        h.entries = Default::default();
        h.commands = Vec::new();
    }
    m
}

/// Apply `policy` to the backups named `PREFIX-<time>...` in `target`: print every decision
/// with its reasons, delete what goes (archive, then sidecar) unless `dry_run`. `Ok(false)` when
/// a deletion failed (each said once).
async fn prune(
    target: &Target,
    policy: &lsbackup::retention::Policy,
    prefix: &str,
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> Result<bool, AnyError> {
    use lsbackup::retention::{Candidate, apply};
    let listed: Vec<_> = target
        .list()
        .await?
        .into_iter()
        // PREFIX-<stamp>..., the stamp right after the prefix: `lsbackup-prod-<stamp>` is not
        // one of `lsbackup`'s.
        .filter(|l| {
            l.name
                .strip_prefix(&format!("{prefix}-"))
                .and_then(|rest| rest.get(..16))
                .is_some_and(|stamp| {
                    !stamp.contains('-')
                        && lsbackup::target::name_time(&format!("-{stamp}")).is_some()
                })
        })
        .collect();
    let mut candidates = Vec::new();
    for l in &listed {
        let complete = match &l.sidecar {
            Some(sc) => target
                .read_sidecar(sc)
                .await
                .ok()
                .map(|m| m.status == lsbackup::archive::Status::Ok),
            None => None,
        };
        candidates.push(Candidate {
            name: l.name.clone(),
            time: l.time,
            complete,
        });
    }
    let decisions = apply(policy, &candidates);
    let name_w = decisions
        .iter()
        .map(|d| d.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut ok = true;
    let (mut kept, mut removed) = (0, 0);
    for d in &decisions {
        let when = jiff::Timestamp::from_second(d.time)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        if d.keep {
            kept += 1;
            writeln!(
                out,
                "{:<12}  {:name_w$}  {when}  ({})",
                "keep",
                d.name,
                d.reasons.join(", ")
            )?;
            continue;
        }
        if dry_run {
            removed += 1;
            writeln!(out, "{:<12}  {:name_w$}  {when}", "would remove", d.name)?;
            continue;
        }
        let sidecar = listed
            .iter()
            .find(|l| l.name == d.name)
            .and_then(|l| l.sidecar.clone());
        match target.delete(&d.name).await {
            Ok(()) => {
                removed += 1;
                writeln!(out, "{:<12}  {:name_w$}  {when}", "remove", d.name)?;
                if let Some(sc) = sidecar
                    && let Err(e) = target.delete(&sc).await
                {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => {
                ok = false;
                tracing::error!("{e}");
            }
        }
    }
    writeln!(
        out,
        "{kept} kept, {removed} {} in {} (times in UTC)",
        if dry_run {
            "would be removed"
        } else {
            "removed"
        },
        target.display(),
    )?;
    Ok(ok)
}

async fn verify(a: VerifyArgs) -> Result<i32, AnyError> {
    let ids = lsbackup::archive::crypt::Identities::load(&a.age_identity)?;
    let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
    let url = a.archive.to_str().unwrap_or_default();
    let suffix = lsbackup::target::SIDECAR_SUFFIX;
    let report = match Target::split_archive_url(url, &settings) {
        Some(split) => {
            let (target, name) = split?;
            let reader = target.open_read(&name).await?;
            let mut report = lsbackup::archive::read::verify_reader(url, reader, &ids).await?;
            let listed = target.list().await?;
            if let Some(sidecar) = listed
                .iter()
                .find(|l| l.name == name)
                .and_then(|l| l.sidecar.clone())
            {
                match target.open_read(&sidecar).await {
                    Ok(r) => {
                        let again = || async {
                            target.open_read(&sidecar).await.map_err(|e| e.to_string())
                        };
                        report.check_sidecar_stream(&sidecar, r, again).await;
                    }
                    Err(e) => report.problems.push(e.to_string()),
                }
            }
            report
        }
        None => {
            let mut report = lsbackup::archive::read::verify_archive_with(&a.archive, &ids).await?;
            let mut sidecar = a.archive.clone().into_os_string();
            sidecar.push(suffix);
            let sidecar = std::path::PathBuf::from(sidecar);
            let name = sidecar.display().to_string();
            match std::fs::metadata(&sidecar) {
                Ok(m) if m.is_file() => {
                    let open = || async {
                        tokio::fs::File::open(&sidecar)
                            .await
                            .map(|f| Box::new(f) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)
                            .map_err(|e| format!("reading {name}: {e}"))
                    };
                    let file = open().await?;
                    report.check_sidecar_stream(&name, file, open).await;
                }
                Ok(_) => report
                    .problems
                    .push(format!("{name}: not a manifest sidecar (not a file)")),
                Err(_) => {}
            }
            report
        }
    };
    print!("{}", output::verify_text(&a.archive, &report));
    Ok(if report.is_ok() { EXIT_OK } else { EXIT_FAILED })
}

async fn extract(a: ExtractArgs) -> Result<i32, AnyError> {
    use lsbackup::archive::extract::{Filter, extract_file, extract_reader};
    let ids = lsbackup::archive::crypt::Identities::load(&a.age_identity)?;
    let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
    let url = a.archive.to_str().unwrap_or_default();
    let filter = Filter {
        components: split_list(&a.only),
    };
    let done = match Target::split_archive_url(url, &settings) {
        Some(split) => {
            let (target, name) = split?;
            let reader = target.open_read(&name).await?;
            extract_reader(url, reader, &a.dir, &filter, &ids).await
        }
        None => extract_file(&a.archive, &a.dir, &filter, &ids).await,
    };
    let x = match done {
        Ok(x) => x,
        Err(lsbackup::archive::ArchiveError::Refused { archive, cause }) => {
            for line in cause.lines() {
                eprintln!("lsbackup: error: {archive}: {}", output::printable(line));
            }
            eprintln!(
                "lsbackup: extract refused; nothing was written to {}",
                a.dir.display()
            );
            return Ok(EXIT_FAILED);
        }
        Err(e) => {
            eprintln!("lsbackup: error: {}", output::printable(&e.to_string()));
            eprintln!(
                "lsbackup: extract refused; nothing was written to {}",
                a.dir.display()
            );
            return Ok(EXIT_FAILED);
        }
    };
    if !filter.components.is_empty() {
        let known: Vec<&str> = x
            .manifest
            .components
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        for c in &filter.components {
            if !known.contains(&c.as_str()) {
                eprintln!(
                    "lsbackup: warning: the archive has no component {c} (it has: {})",
                    known.join(", ")
                );
            }
        }
    }
    for (path, target) in &x.links_outside {
        println!(
            "not created (points outside {}): {} -> {}",
            a.dir.display(),
            output::printable(path),
            output::printable(target)
        );
    }
    for path in &x.unverified {
        println!(
            "recorded as failed during the backup, content unchecked: {}",
            output::printable(path)
        );
    }
    let n = |k: u64, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    println!(
        "{}: {} ({}), {}, {} extracted into {}{}; backup status {:?}",
        a.archive.display(),
        n(x.files, "file", "files"),
        output::human(x.bytes),
        n(x.dirs, "directory", "directories"),
        n(x.links, "symlink", "symlinks"),
        a.dir.display(),
        if x.skipped > 0 {
            format!(" ({} entries of other components left out)", x.skipped)
        } else {
            String::new()
        },
        x.manifest.status,
    );
    Ok(EXIT_OK)
}

async fn backup(a: BackupArgs, g: &GlobalArgs) -> Result<i32, AnyError> {
    let started = jiff::Timestamp::now();
    let r = backup_checked(&a, g).await;
    // A run that stopped on an error still tells the scheduler and the monitoring: a full disk,
    // a held lock or a bad inventory is a failed run there too.
    if let Err(e) = &r {
        write_run_files(
            &a,
            &report::failed(&a.target, EXIT_FAILED, started, e.to_string()),
        );
    }
    r
}

async fn backup_checked(a: &BackupArgs, g: &GlobalArgs) -> Result<i32, AnyError> {
    let tty = std::io::stderr().is_terminal();
    let bars = match a.progress {
        ProgressMode::Auto => tty && g.log_format == LogFormat::Text,
        ProgressMode::Always => true,
        ProgressMode::Never => false,
    };
    let (progress, multi) = output::make_progress(bars);
    output::init_logging(g.log_format, g.verbose, g.quiet, bars, multi.clone());

    let plan = build_plan(&a.select)?;
    for w in &plan.inventory.warnings {
        tracing::warn!("{w}");
    }
    if a.ssh.insecure_skip_host_key_check {
        tracing::warn!(
            "--insecure-skip-host-key-check: host keys are NOT checked in this run; hosts with an unknown or changed key are connected to anyway, and the cluster's secrets may go to whoever answers"
        );
    }
    let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
    let target = Target::parse_with(&a.target, &settings)?;
    let policy = a.keep.policy();
    if a.prune && policy.is_empty() {
        return Err("--prune needs at least one --keep-* rule".into());
    }
    if !a.prune && !policy.is_empty() {
        return Err("--keep-* rules are used with --prune (or by `lsbackup prune`)".into());
    }
    // Recipients are checked before any host is contacted.
    let encrypt = lsbackup::archive::crypt::Recipients::load(&a.encrypt_to, &a.encrypt_to_file)?
        .map(Arc::new);
    let opts = RunOptions {
        encrypt,
        format: a.format.into(),
        level: a.level,
        zstd_workers: a.zstd_workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        }),
        // Beside the archive when the target is local: same disk, already checked writable.
        spool_dir: a.spool_dir.clone().or_else(|| target.local_dir()),
        concurrency: a.concurrency,
        transport: a.ssh.transport(),
        build_dir: a.select.build_dir.clone(),
        name_prefix: a.name_prefix.clone(),
    };
    target.check().await?;
    let lock = take_lock(&target, &a.name_prefix, "backup", a.lock_stale_after).await?;
    remove_stale_partials(&target, &a.name_prefix).await;
    let code = backup_locked(a, g, &plan, &target, &opts, &policy, progress).await;
    release_lock(lock, &target).await;
    code
}

/// The lock of `target` for this run (`PREFIX.lock`); taking over a stale one is a warning.
async fn take_lock(
    target: &Target,
    prefix: &str,
    command: &str,
    stale_after: u64,
) -> Result<lsbackup::target::lock::TargetLock, AnyError> {
    let lock =
        lsbackup::target::lock::acquire(target, prefix, command, Duration::from_secs(stale_after))
            .await?;
    if let Some(w) = &lock.took_over {
        tracing::warn!("{w}");
    }
    Ok(lock)
}

/// With the lock held, the partial files earlier runs of `prefix` left (killed before their
/// end) are stale: removed, and said in one line naming them.
async fn remove_stale_partials(target: &Target, prefix: &str) {
    match target.remove_stale_partials(prefix).await {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => tracing::warn!(
            "removed {} left in {} by an earlier run that did not finish: {}",
            match removed.len() {
                1 => "a stale partial file".to_string(),
                n => format!("{n} stale partial files"),
            },
            target.display(),
            removed.join(", ")
        ),
        Err(e) => tracing::warn!("stale partial files of an earlier run not removed: {e}"),
    }
}

async fn release_lock(lock: lsbackup::target::lock::TargetLock, target: &Target) {
    let name = lock.name().to_string();
    if let Err(e) = lock.release(target).await {
        tracing::error!("releasing the lock {name}: {e}");
    }
}

/// The backup once the target's lock is held.
async fn backup_locked(
    a: &BackupArgs,
    g: &GlobalArgs,
    plan: &Plan,
    target: &Target,
    opts: &RunOptions,
    policy: &lsbackup::retention::Policy,
    progress: Arc<output::Bars>,
) -> Result<i32, AnyError> {
    let interrupt = Interrupt::default();
    let signalled = spawn_signal_handler(interrupt.clone());
    let started = jiff::Timestamp::now();
    let timing = Arc::new(report::Timing::new(progress.clone()));
    let progress_dyn: Arc<dyn Progress> = timing.clone();
    let outcome = run_backup(plan, target, opts, progress_dyn, interrupt).await;
    progress.clear();
    let outcome = match outcome {
        Err(lsbackup::engine::EngineError::Interrupted) => {
            let code = signalled.load(std::sync::atomic::Ordering::SeqCst);
            let name = match code {
                EXIT_SIGHUP => "SIGHUP",
                EXIT_SIGTERM => "SIGTERM",
                _ => "SIGINT",
            };
            if g.log_format == LogFormat::Json {
                tracing::error!(
                    signal = name,
                    exit_code = code,
                    "interrupted: no archive was written"
                );
            } else {
                eprintln!("lsbackup: interrupted ({name}): no archive was written");
            }
            let code = if code == 0 { EXIT_SIGINT } else { code };
            write_run_files(a, &report::interrupted(&a.target, code, started));
            return Ok(code);
        }
        other => other?,
    };
    let mut code = outcome.exit_code();
    if g.log_format == LogFormat::Json {
        tracing::info!(
            status = format!("{:?}", outcome.manifest.status).to_lowercase(),
            archive = outcome.location.as_deref().unwrap_or(""),
            bytes = outcome.stats.written,
            duration_seconds = (started
                .duration_until(jiff::Timestamp::now())
                .as_millis_f64()
                / 1000.0)
                .round(),
            exit_code = code,
            "backup finished"
        );
    } else if !(g.quiet && code == EXIT_OK) {
        // -q: nothing to say about a run that went well (stdout still names the archive)
        eprint!("{}", output::summary(&outcome, output::term_width()));
    }
    if g.verbose > 0 {
        tracing::info!(
            spool_peak = outcome.stats.spool_peak,
            archive_bytes = outcome.stats.written,
            "spool: peak {} of compressed data in {}; archive {}",
            output::human(outcome.stats.spool_peak),
            outcome.spool_dir.display(),
            output::human(outcome.stats.written),
        );
    }
    if let Some(loc) = &outcome.location {
        println!("{loc}");
    }
    // Pruning after a run that wrote its archive; its lines go to stderr (stdout is the path).
    // The archive stands whatever happens here; a prune that failed makes the run partial.
    if a.prune && outcome.location.is_some() {
        let pruned = prune(
            target,
            policy,
            &a.name_prefix,
            false,
            &mut std::io::stderr(),
        )
        .await;
        if let Err(e) = &pruned {
            tracing::error!("prune: {e}");
        }
        if !matches!(pruned, Ok(true)) {
            code = EXIT_PARTIAL;
        }
    }
    let code = match code {
        0 => EXIT_OK,
        2 => EXIT_PARTIAL,
        _ => EXIT_FAILED,
    };
    let r = report::build(
        &outcome.manifest,
        outcome.location.as_deref(),
        outcome.stats.written,
        &a.target,
        code,
        &timing,
    );
    write_run_files(a, &r);
    Ok(code)
}

/// `--report` and `--metrics-file`, when asked for. A file that cannot be written is an error
/// line; the run's own exit code stands (the archive is what matters).
fn write_run_files(a: &BackupArgs, r: &report::Report) {
    for e in write_report_files(a.report.as_deref(), a.metrics_file.as_deref(), r) {
        tracing::error!("{e}");
    }
}

/// A `backup` whose arguments clap refused still writes its `--report` and `--metrics-file`
/// (found in the raw arguments) as a failed run: a scheduled job with a mistyped option must
/// show up in the monitoring as failed, not as a run that never happened.
fn argument_error_files(argv: &[std::ffi::OsString], e: &clap::Error) {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !args.iter().any(|a| a == "backup") {
        return;
    }
    let value = |long: &str, short: Option<&str>| -> Option<String> {
        let eq = format!("{long}=");
        let mut found = None;
        for (i, a) in args.iter().enumerate() {
            if a == "--" {
                break;
            }
            if a == long || short == Some(a.as_str()) {
                found = args.get(i + 1).cloned();
            } else if let Some(v) = a.strip_prefix(&eq) {
                found = Some(v.to_string());
            }
        }
        found.filter(|v| !v.is_empty())
    };
    let report = value("--report", None).map(std::path::PathBuf::from);
    let metrics = value("--metrics-file", None).map(std::path::PathBuf::from);
    if report.is_none() && metrics.is_none() {
        return;
    }
    let target = value("--target", Some("-t")).unwrap_or_default();
    // clap's first line, e.g. "error: unexpected argument '--bogus' found"
    let rendered = e.render().to_string();
    let line = rendered.lines().next().unwrap_or("invalid arguments");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let r = report::failed(
        &target,
        EXIT_FAILED,
        jiff::Timestamp::now(),
        format!("invalid arguments: {}", output::printable(line)),
    );
    // no logging yet at this point
    for e in write_report_files(report.as_deref(), metrics.as_deref(), &r) {
        eprintln!("lsbackup: error: {}", output::printable(&e));
    }
}

fn write_report_files(
    report: Option<&std::path::Path>,
    metrics: Option<&std::path::Path>,
    r: &report::Report,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(path) = report {
        let mut text = serde_json::to_vec_pretty(r).unwrap_or_default();
        text.push(b'\n');
        if let Err(e) = report::write_atomic(path, &text, 0o600) {
            errors.push(format!("--report {}: {e}", path.display()));
        }
    }
    if let Some(path) = metrics {
        let previous = std::fs::read_to_string(path).ok();
        let text = report::metrics(r, jiff::Timestamp::now(), previous.as_deref());
        if let Err(e) = report::write_atomic(path, text.as_bytes(), 0o644) {
            errors.push(format!("--metrics-file {}: {e}", path.display()));
        }
    }
    errors
}

/// First Ctrl-C / SIGTERM / SIGHUP: stop, let hosts clean up, remove the partial archive.
/// Second: stop waiting for the cleanups. Returns where the exit code of the first signal is set
/// (130, 143 or 129; 0 until then).
fn spawn_signal_handler(interrupt: Interrupt) -> Arc<std::sync::atomic::AtomicI32> {
    use tokio::signal::unix::{SignalKind, signal};
    let code = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let set = code.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        for token in [interrupt.stop, interrupt.abort] {
            let got = tokio::select! {
                _ = tokio::signal::ctrl_c() => EXIT_SIGINT,
                _ = term.recv() => EXIT_SIGTERM,
                _ = hup.recv() => EXIT_SIGHUP,
            };
            let _ = set.compare_exchange(
                0,
                got,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            );
            token.cancel();
        }
    });
    code
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::TarZst => Format::TarZst,
            FormatArg::TarGz => Format::TarGz,
            FormatArg::Zip => Format::Zip,
        }
    }
}

async fn restore(a: RestoreArgs) -> Result<i32, AnyError> {
    use lsbackup::archive::extract::{Filter, extract_file, extract_reader};
    use lsbackup::restore::{Options, prepare, run, staging_dir};
    let ids = lsbackup::archive::crypt::Identities::load(&a.age_identity)?;
    let settings = lsbackup::target::settings::Settings::parse(&a.target_setting)?;
    let inv = load_inventory(&a.build_dir, a.inventory.as_deref())?;
    for w in &inv.warnings {
        eprintln!("lsbackup: warning: {}", output::printable(w));
    }
    let catalog = Catalog::load(a.components_dir.as_deref())?;
    let mut opts = Options {
        only: split_list(&a.only),
        skip: split_list(&a.skip),
        sets: a.set.clone(),
        yes: a.yes,
        dry_run: true,
        keep_suffix: format!(
            "lsbackup-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ),
    };
    // Unpacked and checked against the manifest before any host is contacted.
    let staging = staging_dir(a.work_dir.as_deref())
        .map_err(|e| format!("cannot create a work directory for restore: {e}"))?;
    let dir = staging.path().join("archive");
    let filter = Filter {
        components: opts.only.clone(),
    };
    let url = a.archive.to_str().unwrap_or_default();
    let done = match Target::split_archive_url(url, &settings) {
        Some(split) => {
            let (target, name) = split?;
            let reader = target.open_read(&name).await?;
            extract_reader(url, reader, &dir, &filter, &ids).await
        }
        None => extract_file(&a.archive, &dir, &filter, &ids).await,
    };
    let x = match done {
        Ok(x) => x,
        Err(lsbackup::archive::ArchiveError::Refused { archive, cause }) => {
            for line in cause.lines() {
                eprintln!("lsbackup: error: {archive}: {}", output::printable(line));
            }
            eprintln!("lsbackup: restore refused; no host was contacted");
            return Ok(EXIT_FAILED);
        }
        Err(e) => {
            eprintln!("lsbackup: error: {}", output::printable(&e.to_string()));
            eprintln!("lsbackup: restore refused; no host was contacted");
            return Ok(EXIT_FAILED);
        }
    };
    let m = &x.manifest;
    let taken = m
        .started_at
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| m.started_at.clone());
    println!("{}", a.archive.display());
    println!(
        "  backup of {}, taken {taken}, status {}",
        output::printable(&m.build_dir),
        format!("{:?}", m.status).to_lowercase()
    );
    if let Some(line) = lsbackup::restore::archive_status_line(m) {
        println!("{line}");
    }
    let prepared = match prepare(m, inv, &catalog, &opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lsbackup: error: {}", output::printable(&e.to_string()));
            eprintln!("lsbackup: restore refused; no host was contacted");
            return Ok(EXIT_FAILED);
        }
    };
    for (c, why) in &prepared.left_out {
        println!("left out: {c}: {why}");
    }
    if prepared.units.is_empty() {
        eprintln!("lsbackup: error: nothing to restore");
        return Ok(EXIT_FAILED);
    }
    let transport = a.ssh.transport();
    let width = std::io::stdout()
        .is_terminal()
        .then(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, w)| w as usize)
        })
        .flatten()
        .filter(|w| *w >= 40);
    let say = |l: &str| print!("{}", output::report_line(l, width));
    let ask = !a.yes && !a.dry_run;
    if ask && !std::io::stdin().is_terminal() {
        eprintln!(
            "lsbackup: error: restore changes the hosts and there is no terminal to ask on: see what it would do with --dry-run, then run it with --yes"
        );
        return Ok(EXIT_FAILED);
    }
    if a.dry_run || ask {
        if ask {
            println!("What this restore would do (nothing is changed yet):");
        }
        let results = run(&prepared.units, m, &dir, &transport, &opts, &say).await;
        let failed = results.iter().filter(|r| r.error.is_some()).count();
        if a.dry_run {
            println!(
                "dry run: nothing was changed{}",
                if failed > 0 {
                    format!("; {failed} of {} could not be planned", results.len())
                } else {
                    String::new()
                }
            );
            return Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED });
        }
        if failed > 0 {
            eprintln!(
                "lsbackup: error: {failed} of {} could not be planned (above): nothing was changed",
                results.len()
            );
            return Ok(EXIT_FAILED);
        }
        eprint!(
            "Restore now? Replaced files are kept as FILE.{}. [y/N] ",
            opts.keep_suffix
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("nothing was changed");
            return Ok(EXIT_FAILED);
        }
    }
    opts.dry_run = false;
    let results = run(&prepared.units, m, &dir, &transport, &opts, &say).await;
    drop(staging);
    let failed: Vec<_> = results.iter().filter(|r| r.error.is_some()).collect();
    let notes: Vec<_> = results
        .iter()
        .flat_map(|r| r.notes.iter().map(move |n| (r, n)))
        .collect();
    for (r, n) in &notes {
        println!(
            "note: {} on {}: {}",
            r.component,
            r.host,
            output::printable(n)
        );
    }
    println!(
        "restore {}: {} of {} restored{}",
        if failed.is_empty() {
            "complete"
        } else {
            "incomplete"
        },
        results.len() - failed.len(),
        results.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(
                "; failed: {}",
                failed
                    .iter()
                    .map(|r| format!("{} on {}", r.component, r.host))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(if failed.is_empty() {
        EXIT_OK
    } else if failed.len() < results.len() {
        EXIT_PARTIAL
    } else {
        EXIT_FAILED
    })
}
