//! Host policy: on which hosts of its groups a component runs (the first that is reachable and
//! selected, or every one; in turn or at once), and how the hosts' outcomes make the
//! component's.

use std::sync::Arc;

use super::plan::{PlannedComponent, PlannedHost};
use super::unit::{Ctx, HostCtx, StepError, host_report};
use crate::archive::{ComponentReport, Failure, FailureKind, HostReport, Status};
use crate::components::HostMode;
use crate::transport::Session;

/// Whether a host takes part: the spec's `select` command, then a native component's own test.
enum Selected {
    Yes,
    No(String),
}

async fn check_select(u: &mut HostCtx<'_>) -> Result<Selected, StepError> {
    if let Some(sel) = u.pc.spec.select.clone() {
        let script = u.script(&sel.command)?;
        let user = u.user(&sel.become_user)?;
        let out = u.session.run(&script, user.as_deref(), 64 * 1024).await?;
        if !out.exit.success() {
            let e = StepError::command(&out.exit);
            return Err(StepError::new(
                e.kind,
                format!("checking {}: {}", sel.name, e.cause),
            ));
        }
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got != sel.expect {
            return Ok(Selected::No(format!("not {} ({got:?})", sel.name)));
        }
    }
    if let Some(native) = u.pc.spec.native.clone()
        && let Some(why) = native.0.select(u).await?
    {
        return Ok(Selected::No(why));
    }
    Ok(Selected::Yes)
}

/// The outcome of one host: its report, whether it ran the component, and whether a cleanup
/// failed (a serial run then stops).
struct HostOutcome {
    report: HostReport,
    ran: bool,
    cleanup_failed: bool,
}

impl HostOutcome {
    /// The host did not run the component (unreachable, not selected, ...).
    fn not_run(report: HostReport) -> HostOutcome {
        HostOutcome {
            report,
            ran: false,
            cleanup_failed: false,
        }
    }
}

/// Connect, select, and (when selected) run the component on one host.
async fn on_host(
    ctx: &Ctx,
    pc: &PlannedComponent,
    h: &PlannedHost,
    role: &str,
    unreachable_status: Status,
) -> HostOutcome {
    let name = &pc.spec.name;
    // A declared variable that cannot be resolved fails this host before any connection.
    if let Some(e) = &h.var_error {
        let mut r = host_report(h, role, Status::Failed);
        r.errors.push(Failure::new(
            FailureKind::Config,
            Some("variables"),
            format!("{}: {name}: variables: {}", h.name, e.cause()),
        ));
        ctx.progress.finished(name, &h.name, r.status, &r.errors);
        return HostOutcome {
            report: r,
            ran: true,
            cleanup_failed: false,
        };
    }
    let _slot = ctx.slots.acquire(&h.name).await;
    let session: Arc<Session> = match ctx.sessions.get(h, &ctx.transport).await {
        Ok(s) => s,
        Err(f) => {
            let mut r = host_report(h, "unreachable", unreachable_status);
            r.errors.push(f);
            return HostOutcome::not_run(r);
        }
    };
    let mut u = HostCtx::new(ctx, pc, h, session, role);
    let mut attempt = select_and_run(&mut u, true).await;
    // The connection dropped before anything of this unit streamed into the archive: once, on
    // a fresh connection, the first attempt's cleanups run again (they could not run on the
    // dropped one), then the whole unit.
    if let Some(cause) = dropped_before_streaming(&u, &attempt)
        && let Some(fresh) = ctx.sessions.renew(h, &ctx.transport, &u.session).await
    {
        match fresh {
            Ok(fresh) => {
                tracing::warn!(
                    "{}: {name}: {cause}; nothing of it was in the archive yet: running it again on a fresh connection",
                    h.name
                );
                let mut carried = Vec::new();
                let mut cleanup_failed = false;
                if matches!(attempt, Attempt::Ran { cleaned: true }) {
                    u.session = fresh.clone();
                    u.cleanup_failed = false;
                    let before = u.report.errors.len();
                    run_cleanups(&mut u).await;
                    carried = u.report.errors.split_off(before);
                    cleanup_failed = u.cleanup_failed;
                }
                let mut again = HostCtx::new(ctx, pc, h, fresh, role);
                again.note(&format!("retried on a fresh connection after: {cause}"));
                attempt = select_and_run(&mut again, false).await;
                again.report.errors.extend(carried);
                again.cleanup_failed |= cleanup_failed;
                u = again;
            }
            // (the connection failure is logged by the pool, once per host)
            Err(f) => u.note(&format!("not retried on a fresh connection: {}", f.message)),
        }
    }
    match attempt {
        Attempt::NotSelected(why) => HostOutcome::not_run(host_report(h, &why, Status::Skipped)),
        Attempt::SelectFailed(e) => {
            let mut r = host_report(h, "selection failed", Status::Skipped);
            r.flags = u.report.flags;
            r.errors.push(Failure::new(
                e.kind,
                None,
                format!("{}: {name}: {}", h.name, e.cause),
            ));
            ctx.progress.finished(name, &h.name, r.status, &r.errors);
            HostOutcome::not_run(r)
        }
        Attempt::Ran { .. } => {
            finish_unit(&mut u);
            HostOutcome {
                cleanup_failed: u.cleanup_failed,
                report: u.report,
                ran: true,
            }
        }
    }
}

/// How one attempt at a unit ended.
enum Attempt {
    NotSelected(String),
    SelectFailed(StepError),
    /// It ran; `cleaned`: its steps ran, and so did its cleanups.
    Ran {
        cleaned: bool,
    },
}

async fn select_and_run(u: &mut HostCtx<'_>, first: bool) -> Attempt {
    match check_select(u).await {
        Ok(Selected::Yes) => Attempt::Ran {
            cleaned: run_unit(u, first).await,
        },
        Ok(Selected::No(why)) => Attempt::NotSelected(why),
        Err(e) => Attempt::SelectFailed(e),
    }
}

/// Why this unit may run again on a fresh connection: its connection dropped (a failure of kind
/// connection lost) and nothing of it streamed into the archive.
fn dropped_before_streaming(u: &HostCtx<'_>, attempt: &Attempt) -> Option<String> {
    let prefix = format!("{}: {}: ", u.h.name, u.pc.spec.name);
    let lost = match attempt {
        Attempt::NotSelected(_) => return None,
        Attempt::SelectFailed(e) => {
            (e.kind == FailureKind::ConnectionLost).then(|| format!("selection: {}", e.cause))
        }
        Attempt::Ran { .. } => u
            .report
            .errors
            .iter()
            .find(|f| f.kind == FailureKind::ConnectionLost)
            .map(|f| {
                f.message
                    .strip_prefix(&prefix)
                    .unwrap_or(&f.message)
                    .to_string()
            }),
    };
    lost.filter(|_| !u.streamed() && !u.is_cancelled())
}

/// The component's work on a selected host: requires, versions, steps (or the native backup),
/// then the cleanups whatever happened. `first`: the first attempt (not a retry). Returns
/// whether the steps (and cleanups) ran.
async fn run_unit(u: &mut HostCtx<'_>, first: bool) -> bool {
    let name = u.pc.spec.name.clone();
    let host = u.h.name.clone();
    if first {
        u.ctx.progress.started(&name, &host);
    }
    tracing::info!(component = %name, host = %host, "starting");
    match u.check_requires().await {
        Err(e) => {
            u.fail("requires", e);
            false
        }
        Ok(()) => {
            match u.pc.spec.native.clone() {
                None => u.run_steps().await,
                Some(native) => {
                    let cancel = u.ctx.cancel.clone();
                    let r = tokio::select! {
                        r = native.0.backup(u) => r,
                        _ = cancel.cancelled() => Err(StepError::new(FailureKind::Interrupted, "interrupted").at("backup")),
                    };
                    if let Err(f) = r {
                        u.fail(&f.step, f.error);
                    }
                }
            }
            // what branches set for the cleanup, also when they were cut off
            u.adopt_set_vars();
            run_cleanups(u).await;
            true
        }
    }
}

/// The spec's cleanups or the native component's.
async fn run_cleanups(u: &mut HostCtx<'_>) {
    match u.pc.spec.native.clone() {
        None => u.run_cleanups().await,
        Some(native) => {
            if let Err(f) = native.0.cleanup(u).await {
                u.cleanup_failed = true;
                u.fail(&format!("cleanup {}", f.step), f.error);
            }
        }
    }
}

/// The unit's status from what it recorded, shown by the progress display.
fn finish_unit(u: &mut HostCtx<'_>) {
    let name = u.pc.spec.name.clone();
    let host = u.h.name.clone();
    let r = &mut u.report;
    r.status = if r.errors.is_empty() {
        Status::Ok
    } else if r.entries.is_empty() {
        Status::Failed
    } else {
        Status::Partial
    };
    // The progress display shows (or logs) the errors, once.
    u.ctx.progress.finished(&name, &host, r.status, &r.errors);
}

pub(crate) async fn run_component(ctx: &Ctx, pc: &PlannedComponent) -> ComponentReport {
    let name = &pc.spec.name;
    let mut report = ComponentReport {
        name: name.clone(),
        description: pc.spec.description.clone(),
        groups: pc.groups.clone(),
        status: Status::Failed,
        hosts: vec![],
        errors: vec![],
    };
    match pc.spec.hosts {
        HostMode::First => {
            let mut chosen = false;
            for (i, h) in pc.hosts.iter().enumerate() {
                if chosen {
                    report.hosts.push(host_report(
                        h,
                        "not needed (another host was used)",
                        Status::Skipped,
                    ));
                    continue;
                }
                let role = match pc.spec.select_name() {
                    Some(s) => format!("first reachable {s}"),
                    None => "first reachable host".into(),
                };
                let mut o = on_host(ctx, pc, h, &role, Status::Skipped).await;
                if o.ran {
                    // Nothing at all came from this host (e.g. its etcd is down): the next
                    // candidate of the group may do better. Its errors stay in the manifest.
                    if o.report.status == Status::Failed && i + 1 < pc.hosts.len() {
                        tracing::warn!("{name}: {}: failed, trying the next host", h.name);
                        o.report.role = "failed; next host tried".into();
                        o.report.status = Status::Skipped;
                        report.hosts.push(o.report);
                        continue;
                    }
                    chosen = true;
                }
                report.hosts.push(o.report);
            }
            if !chosen {
                let what = match pc.spec.select_name() {
                    Some(s) => format!("no reachable host is {s}"),
                    None => "no reachable host".into(),
                };
                report
                    .errors
                    .push(no_host_failure(name, &what, pc, &report));
            }
        }
        HostMode::All => {
            // With a selection, an unreachable host may simply be a standby: the component
            // fails only if no host is selected.
            let unreachable = if pc.spec.select_name().is_some() {
                Status::Skipped
            } else {
                Status::Failed
            };
            let role = match pc.spec.select_name() {
                Some(s) => s,
                None => "every host".into(),
            };
            // A serial flag that cannot be evaluated (undefined variable) errs on the safe side.
            let serial = pc
                .hosts
                .first()
                .map(|h| pc.spec.serial.eval(&h.vars).unwrap_or(true))
                .unwrap_or(false);
            let results: Vec<HostOutcome> = if serial {
                let mut v: Vec<HostOutcome> = Vec::new();
                let mut stopped: Option<String> = None;
                for h in &pc.hosts {
                    if let Some(prev) = &stopped {
                        let mut r = host_report(h, "not run", Status::Failed);
                        r.errors.push(Failure::new(
                            FailureKind::Skipped,
                            None,
                            format!(
                                "{}: {name}: not run: the cleanup on {prev} failed (hosts are done one at a time; fix {prev} first)",
                                h.name
                            ),
                        ));
                        v.push(HostOutcome::not_run(r));
                        continue;
                    }
                    let o = on_host(ctx, pc, h, &role, unreachable).await;
                    if o.cleanup_failed {
                        stopped = Some(h.name.clone());
                    }
                    v.push(o);
                }
                v
            } else {
                futures::future::join_all(
                    pc.hosts
                        .iter()
                        .map(|h| on_host(ctx, pc, h, &role, unreachable)),
                )
                .await
            };
            let any_ran = results.iter().any(|o| o.ran);
            report.hosts = results.into_iter().map(|o| o.report).collect();
            if !any_ran && let Some(sel) = pc.spec.select_name() {
                let what = format!("no reachable host is {sel}");
                report
                    .errors
                    .push(no_host_failure(name, &what, pc, &report));
            }
        }
    }
    report.status = report.derived_status();
    report
}

/// "no host could run it": its kind is that of the hosts' failures when they share one.
fn no_host_failure(
    name: &str,
    what: &str,
    pc: &PlannedComponent,
    report: &ComponentReport,
) -> Failure {
    let why: Vec<&Failure> = report.hosts.iter().flat_map(|h| h.errors.iter()).collect();
    let kind = match why.first() {
        Some(f) if why.iter().all(|g| g.kind == f.kind) => f.kind,
        _ => FailureKind::Connection,
    };
    let msg = if why.is_empty() {
        format!("{name}: {what} in {}", pc.groups.join(", "))
    } else {
        format!(
            "{name}: {what} in {} ({})",
            pc.groups.join(", "),
            why.iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Failure::new(kind, None, msg)
}
