//! lsbackup: agentless backup of whole clusters over SSH into one archive.
//!
//! # Layout
//!
//! Each module has one job:
//!
//! - [`inventory`]: finds and parses the Ansible inventory in a build directory (INI and YAML,
//!   `group_vars/`, `host_vars/`, host ranges, variable precedence) and resolves per-host
//!   connection settings ([`inventory::ConnectionSpec`]). `lsbackup inventory --list` prints the
//!   same JSON as `ansible-inventory --list`.
//! - [`transport`]: opens one session per host (russh over SSH, or a local process for
//!   `ansible_connection=local`), checks host keys, runs commands with become/sudo and streams
//!   their stdout. Components never touch russh.
//! - [`http`]: HTTP/1.1 client (hyper, rustls) for hosts' local APIs, spoken from lsbackup
//!   through the host's SSH connection ([`transport::Session::connect_tcp`]); credentials never
//!   reach the host. [`secret::Secret`] keeps passwords and tokens out of logs and errors.
//! - [`components`]: the component specs (`components/*.yaml`, embedded in the binary and
//!   overridable from a user's directory): groups, host selection, steps, version detection.
//! - [`engine`]: turns the CLI's selection into a [`engine::Plan`] (components × hosts), executes
//!   it with bounded concurrency and produces a run report; reports progress through
//!   [`engine::Progress`].
//! - [`archive`]: the streaming archive writer (tar.zst, tar.gz, zip), spooling of streams of
//!   unknown length, sha256 of every entry, and the [`archive::Manifest`] written into it.
//! - [`target`]: where the archive goes (a local or NFS-mounted directory today), written as
//!   `NAME.partial`, fsynced and renamed.
//! - [`restore`]: `lsbackup restore`, one file per component (`src/restore/<name>.rs`) built on
//!   [`restore::HostRestore`]'s primitives (read-only queries, changes a dry run only describes,
//!   files and directories put back checked and with the current ones kept).
//! - `cli` (in the binary): argument parsing, progress bars, summary and exit codes.
//!
//! Where PostgreSQL is backed up: `components/postgresql.yaml`; restored:
//! `src/restore/postgresql.rs`. The engine that runs it:
//! `src/engine/`.

pub mod archive;
pub mod components;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod inventory;
pub mod retention;
pub mod secret;
pub mod shell;
pub mod target;
pub mod transport;

/// The tool's version, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod restore;

/// A byte count for people: `512 B`, `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
