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
    let _permit = ctx.limit.clone().acquire_owned().await;
    let session: Arc<Session> = match ctx.sessions.get(h, &ctx.transport).await {
        Ok(s) => s,
        Err(f) => {
            let mut r = host_report(h, "unreachable", unreachable_status);
            r.errors.push(f);
            return HostOutcome::not_run(r);
        }
    };
    let mut u = HostCtx::new(ctx, pc, h, session, role);
    match check_select(&mut u).await {
        Ok(Selected::Yes) => {}
        Ok(Selected::No(why)) => {
            return HostOutcome::not_run(host_report(h, &why, Status::Skipped));
        }
        Err(e) => {
            let mut r = host_report(h, "selection failed", Status::Skipped);
            r.errors.push(Failure::new(
                e.kind,
                None,
                format!("{}: {name}: {}", h.name, e.cause),
            ));
            u.ctx.progress.finished(name, &h.name, r.status, &r.errors);
            return HostOutcome::not_run(r);
        }
    }
    run_unit(&mut u).await;
    HostOutcome {
        cleanup_failed: u.cleanup_failed,
        report: u.report,
        ran: true,
    }
}

/// The component's work on a selected host: requires, versions, steps (or the native backup),
/// then the cleanups whatever happened.
async fn run_unit(u: &mut HostCtx<'_>) {
    let name = u.pc.spec.name.clone();
    let host = u.h.name.clone();
    u.ctx.progress.started(&name, &host);
    tracing::info!(component = %name, host = %host, "starting");
    match u.check_requires().await {
        Err(e) => u.fail("requires", e),
        Ok(()) => {
            match u.pc.spec.native.clone() {
                None => {
                    u.run_steps().await;
                    u.adopt_set_vars();
                    u.run_cleanups().await;
                }
                Some(native) => {
                    let cancel = u.ctx.cancel.clone();
                    let r = tokio::select! {
                        r = native.0.backup(u) => r,
                        _ = cancel.cancelled() => Err(StepError::new(FailureKind::Interrupted, "interrupted").at("backup")),
                    };
                    if let Err(f) = r {
                        u.fail(&f.step, f.error);
                    }
                    // what branches set for the cleanup, also when they were cut off
                    u.adopt_set_vars();
                    if let Err(f) = native.0.cleanup(u).await {
                        u.cleanup_failed = true;
                        u.fail(&format!("cleanup {}", f.step), f.error);
                    }
                }
            }
        }
    }
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
