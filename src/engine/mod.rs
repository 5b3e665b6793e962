//! Plan and run a backup.
//!
//! [`Plan::build`] resolves, before any host is contacted, which components apply (their inventory
//! groups exist and `--only`/`--skip` select them), on which hosts, with which variables.
//! [`run_backup`] executes a plan: one session per host (shared by every component on it), at most
//! `concurrency` host jobs at once, every entry streamed into one archive, and a run report that
//! becomes the manifest, the summary and the exit code.

mod plan;
mod progress;
mod run;
pub(crate) mod shell;

pub use plan::{Plan, PlanError, PlannedComponent, PlannedHost, Selection};
pub use progress::{NoProgress, Progress};
pub use run::{EngineError, Interrupt, Outcome, RunOptions, run_backup};
pub use shell::quote as shell_quote;
