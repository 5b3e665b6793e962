//! Plan and run a backup.
//!
//! [`Plan::build`] resolves, before any host is contacted, which components apply (their inventory
//! groups exist and `--only`/`--skip` select them), on which hosts, with which variables.
//! [`run_backup`] executes a plan: one session per host (shared by every component on it), at most
//! `concurrency` host jobs at once, every entry streamed into one archive, and a run report that
//! becomes the manifest, the summary and the exit code.

//!
//! # Layout
//!
//! - `plan.rs`: the plan (components × hosts × variables), printed by `lsbackup plan`.
//! - `vars.rs`: a component's declared variables on one host, resolved ([`VarError`]).
//! - `run.rs`: a run end to end: target, archive writer, components at once, manifest, exit.
//! - `policy.rs`: host policy: first reachable / every host, in turn or at once, `select`,
//!   fall back to the next host, the component's status from its hosts'.
//! - `sessions.rs`: the session pool (one per host, opened once, shared).
//! - `slots.rs`: at most `concurrency` host jobs at once, hosts whose connection is open first.
//! - `unit.rs`: [`HostCtx`], one component on one host: the primitives every component is
//!   built from, and [`StepError`], a failed step's kind and cause.
//! - `steps.rs`: the interpreter of spec components (`components/*.yaml`).
//! - `copy.rs`: remote tar streams re-rooted into the archive.
//! - `shell.rs`: the fixed scripts the engine runs on hosts (copy).
//! - `fault.rs`: the archive cannot be written (the target failed, or the spool on its disk):
//!   the run stops with one error, no component blamed.

mod copy;
mod fault;
mod plan;
mod policy;
mod progress;
mod run;
mod sessions;
pub(crate) mod shell;
mod slots;
mod steps;
mod unit;
mod vars;

pub use plan::{Plan, PlanError, PlannedComponent, PlannedHost, Selection};
pub use progress::{NoProgress, Progress};
pub use run::{EngineError, Interrupt, Outcome, RunOptions, run_backup};
pub use unit::{At, Failed, HostCtx, StepError, clean_text, exit_text};
pub use vars::VarError;
