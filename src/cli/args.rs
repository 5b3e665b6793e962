//! Arguments (clap derive). Values are validated here; the resolved plan is built in the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Agentless backup of whole clusters: reads the Ansible inventory of a \
LambdaStack/Epiphany build directory, runs each component's native backup commands on its hosts \
over SSH, and streams everything into one archive with a manifest.";

const AFTER: &str = "\
Examples:
  lsbackup backup -b ~/clusters/prod -t /mnt/backups
  lsbackup backup -b ~/clusters/prod -t /mnt/backups --only postgresql,kubernetes
  lsbackup backup -b ~/clusters/prod -t /mnt/backups --skip haproxy --format tar.gz
  lsbackup plan -b ~/clusters/prod
  lsbackup inventory -b ~/clusters/prod --list
  lsbackup verify /mnt/backups/lsbackup-20261125T013904Z.tar.zst
  lsbackup restore /mnt/backups/lsbackup-20261125T013904Z.tar.zst -b ~/clusters/prod --dry-run

Exit codes: 0 everything backed up; 2 partial (archive kept, failures in its manifest);
1 nothing usable or bad input; 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP (no archive
left behind).";

#[derive(Debug, Parser)]
#[command(name = "lsbackup", version = env!("LSBACKUP_VERSION"), about = ABOUT, after_help = AFTER, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after its name (`lsbackup -v backup ...` or
/// `lsbackup backup ... -v`).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Read options from a YAML file (keys are long option names; the command line wins). Read by
    /// backup and plan (every key), list and prune (the keys they take: target, target-setting,
    /// name-prefix, keep-*, ...). Also `LSBACKUP_CONFIG`.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Log lines as text or JSON (JSON for schedulers and log shippers).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up every component present in the inventory into one archive in TARGET.
    #[command(after_help = AFTER)]
    Backup(Box<BackupArgs>),
    /// Show what a backup would run, per component and host, without contacting any host.
    Plan(PlanArgs),
    /// Show the parsed inventory: groups, hosts and connection settings.
    Inventory(InventoryArgs),
    /// List the known components (built-in and from --components-dir).
    Components(ComponentsArgs),
    /// Check an archive: every entry against the sha256 in its manifest.
    Verify(VerifyArgs),
    /// List the backups in a target: name, time, size, encrypted or not, and (unencrypted)
    /// the status, components and hosts from each manifest.
    List(ListArgs),
    /// Delete old backups from a target by a retention policy (restic's `forget` rules).
    Prune(PruneArgs),
    /// Unpack an archive into a directory, for recovery by hand: every entry is checked against
    /// the manifest before anything is moved into DIR; hostile entries are refused.
    Extract(ExtractArgs),
    /// Put a backup back on the cluster's hosts, component by component (PostgreSQL databases,
    /// configuration files with the current ones kept beside them, ...). `--dry-run` first.
    Restore(Box<RestoreArgs>),
    /// Config files (`--config FILE`): `lsbackup config check FILE`.
    Config(ConfigArgs),
    /// Print a shell completion script: `lsbackup completions bash > /etc/bash_completion.d/lsbackup`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file as `backup --config FILE` would read it: unknown keys, wrong values,
    /// missing required options, each named with FILE:LINE. Exit 0 when it is fine.
    Check {
        /// The YAML config file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write lsbackup.1 and lsbackup-COMMAND.1 for every command into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The archive: a file, or s3://BUCKET/PREFIX/NAME, az://CONTAINER/PREFIX/NAME,
    /// azfile://SHARE/DIR/NAME (streamed from the store).
    pub archive: PathBuf,
    /// Where to unpack (created when missing; names already in it are never replaced).
    pub dir: PathBuf,
    /// Only these components (comma-separated or repeated); the manifest always comes along.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Settings of an object-store target, as for `backup` (KEY=env:NAME, KEY=file:PATH).
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// Key for an encrypted archive (`.age`): an age identity file or an unencrypted OpenSSH
    /// private key. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub age_identity: Vec<PathBuf>,
}

/// Retention rules (restic's `forget` semantics; times in UTC).
#[derive(Debug, Args, Clone, Default)]
pub struct KeepArgs {
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// For the N most recent hours that have backups, keep the newest of each.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// For the N most recent days that have backups, keep the newest of each.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// For the N most recent ISO weeks that have backups, keep the newest of each.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// For the N most recent months that have backups, keep the newest of each.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// For the N most recent years that have backups, keep the newest of each.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
}

impl KeepArgs {
    pub fn policy(&self) -> lsbackup::retention::Policy {
        lsbackup::retention::Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        }
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Where the backups are: a directory, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or
    /// azfile://SHARE/DIR.
    #[arg(short = 't', long, env = "LSBACKUP_TARGET", value_name = "TARGET")]
    pub target: String,
    /// Settings of an object-store target, as for `backup` (KEY=env:NAME, KEY=file:PATH).
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// A lock on the target (PREFIX.lock) older than this many seconds is taken over (its run
    /// is presumed dead); one left on this machine by a process that no longer runs is taken over
    /// at once. Another run's live lock makes this one stop with its holder named.
    #[arg(long, value_name = "SECS", default_value_t = 86400)]
    pub lock_stale_after: u64,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Only backups named PREFIX-<time>... are considered (default: lsbackup).
    #[arg(long, value_name = "NAME", default_value = "lsbackup")]
    pub name_prefix: String,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// Build directory holding the cluster's Ansible inventory.
    #[arg(
        short = 'b',
        long = "build-dir",
        value_name = "BUILD_DIR",
        env = "LSBACKUP_BUILD_DIR"
    )]
    pub build_dir: PathBuf,
    /// Inventory file or directory (default: found in BUILD_DIR, see README).
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Only these components (comma-separated or repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these components (comma-separated or repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Override a component variable: NAME=VALUE (all components) or COMPONENT.NAME=VALUE.
    #[arg(long, value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Extra component specs; a file there replaces the built-in component of the same name.
    #[arg(long, value_name = "DIR", env = "LSBACKUP_COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.gz")]
    TarGz,
    Zip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Where to write the archive: a directory (local or NFS-mounted), s3://BUCKET/PREFIX,
    /// az://CONTAINER/PREFIX (Azure Blob storage) or azfile://SHARE/DIR (Azure Files).
    #[arg(short = 't', long, value_name = "TARGET", env = "LSBACKUP_TARGET")]
    pub target: String,
    /// Where an object-store target's endpoint or credentials come from, by reference:
    /// `KEY=env:NAME` or `KEY=file:PATH` (secrets only so), or `KEY=VALUE` for region, profile,
    /// account and endpoints. KEY is a variable name such as aws_access_key_id,
    /// aws_secret_access_key, aws_region, aws_endpoint_url, aws_profile,
    /// azure_storage_connection_string, azure_storage_account, azure_storage_key,
    /// azure_storage_sas_token. Without it the same variables are read from the environment
    /// (and ~/.aws/credentials, ~/.aws/config). Repeatable.
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "tar.zst")]
    pub format: FormatArg,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Compression threads: 1 MiB chunks of entries compressed at once, as they arrive (default:
    /// number of CPUs; the name is historical, it applies to gzip and zip too).
    #[arg(long, value_name = "N")]
    pub zstd_workers: Option<u32>,
    /// At most this many hosts worked on at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Directory for the compressed spool of entries being received (default: the target
    /// directory for a local target, else $TMPDIR). Holds compressed bytes only, 0600, removed
    /// on every exit.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Archive name prefix.
    #[arg(long, value_name = "NAME", default_value = "lsbackup")]
    pub name_prefix: String,
    /// A lock on the target (PREFIX.lock) older than this many seconds is taken over (its run
    /// is presumed dead); one left on this machine by a process that no longer runs is taken over
    /// at once. Another run's live lock makes this one stop with its holder named.
    #[arg(long, value_name = "SECS", default_value_t = 86400)]
    pub lock_stale_after: u64,

    /// Encrypt the archive to this age recipient (`age1...`) or SSH public key line
    /// (`ssh-ed25519 AAAA...`), on the way out: no plaintext byte reaches the target. The name
    /// gets `.age`; decrypt with `age -d -i KEY`. Repeatable (any one key decrypts).
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt to every recipient in FILE (one per line, `#` comments). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub encrypt_to_file: Vec<PathBuf>,
    /// After a backup that wrote an archive, prune the target with the --keep-* rules (as
    /// `lsbackup prune`, over this --name-prefix).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Write a JSON report of the run to FILE (status and exit code; per component and host:
    /// status, failures with kind and cause, duration, bytes, entries; the archive's name, place
    /// and size). Written atomically, 0600, whatever the outcome.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write Prometheus textfile-collector metrics to FILE (e.g. in node_exporter's
    /// --collector.textfile.directory, named *.prom): last run and last success timestamps,
    /// exit code, duration, archive size, per component status, duration, bytes and failures.
    /// Written atomically; the last success is carried over from the file's previous content.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Progress bars: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// How hosts are reached (SSH), for `backup` and `restore`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Seconds to wait for a host to accept the connection.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub connect_timeout: u64,
    /// Seconds one remote command may run (default: no limit).
    #[arg(long, value_name = "SECS")]
    pub command_timeout: Option<u64>,
    /// Seconds a streaming command (a dump, a snapshot, a file copy) may send nothing before it
    /// is stopped as stalled (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub idle_timeout: u64,
    /// known_hosts file to check host keys against (default ~/.ssh/known_hosts); wins over
    /// the inventory's UserKnownHostsFile.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record host keys not yet known (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// DANGEROUS: do not check host keys. Hosts whose key is unknown or CHANGED are connected
    /// to anyway (a warning per host), nothing is recorded; @revoked keys are still refused.
    /// The inventory cannot do this (its StrictHostKeyChecking=no means accept-new).
    #[arg(long)]
    pub insecure_skip_host_key_check: bool,
    /// Private key to try after the inventory's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Don't use ssh-agent even when SSH_AUTH_SOCK is set.
    #[arg(long)]
    pub no_agent: bool,
}

impl SshArgs {
    pub fn transport(&self) -> lsbackup::transport::TransportConfig {
        use lsbackup::transport::TransportConfig;
        use std::time::Duration;
        TransportConfig {
            known_hosts: self
                .known_hosts
                .clone()
                .unwrap_or_else(TransportConfig::default_known_hosts),
            known_hosts_overrides_inventory: self.known_hosts.is_some(),
            accept_new_host_keys: self.accept_new_host_keys,
            insecure_skip_host_key_check: self.insecure_skip_host_key_check,
            identities: self.identity.clone(),
            use_agent: !self.no_agent,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            command_timeout: self.command_timeout.map(Duration::from_secs),
            idle_timeout: match self.idle_timeout {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive: a file, or s3://BUCKET/PREFIX/NAME, az://CONTAINER/PREFIX/NAME,
    /// azfile://SHARE/DIR/NAME (streamed from the store).
    pub archive: PathBuf,
    /// The build directory whose inventory names the hosts now (the backup's hosts are looked
    /// up there by name).
    #[arg(short = 'b', long, value_name = "DIR", env = "LSBACKUP_BUILD_DIR")]
    pub build_dir: PathBuf,
    /// Inventory file or directory (default: found in the build directory).
    #[arg(short = 'i', long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Only these components (comma-separated or repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Not these components.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Override a component variable: NAME=VALUE (all components) or COMPONENT.NAME=VALUE.
    #[arg(long, value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Extra component specs, as for backup (their variables' defaults).
    #[arg(long, value_name = "DIR", env = "LSBACKUP_COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,
    /// Say every step per host and change nothing (queries that only read still run).
    #[arg(long)]
    pub dry_run: bool,
    /// Do it without asking, and replace what exists (PostgreSQL databases).
    #[arg(long)]
    pub yes: bool,
    /// Where the archive is unpacked and checked before anything is restored (a private
    /// directory created there, removed at the end; default $TMPDIR). Needs room for the
    /// selected components.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Settings of an object-store target, as for `backup` (KEY=env:NAME, KEY=file:PATH).
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// Key for an encrypted archive (`.age`). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub age_identity: Vec<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Build directory holding the cluster's Ansible inventory.
    #[arg(
        short = 'b',
        long = "build-dir",
        value_name = "BUILD_DIR",
        env = "LSBACKUP_BUILD_DIR"
    )]
    pub build_dir: PathBuf,
    /// Inventory file or directory (default: found in BUILD_DIR).
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Print the same JSON as `ansible-inventory --list`.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct ComponentsArgs {
    #[arg(long, value_name = "DIR", env = "LSBACKUP_COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Where the backups are: a directory, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or
    /// azfile://SHARE/DIR.
    #[arg(short = 't', long, env = "LSBACKUP_TARGET", value_name = "TARGET")]
    pub target: String,
    /// Where an object-store target's endpoint or credentials come from, by reference:
    /// `KEY=env:NAME` or `KEY=file:PATH` (secrets only so), or `KEY=VALUE` for region, profile,
    /// account and endpoints. KEY is a variable name such as aws_access_key_id,
    /// aws_secret_access_key, aws_region, aws_endpoint_url, aws_profile,
    /// azure_storage_connection_string, azure_storage_account, azure_storage_key,
    /// azure_storage_sas_token. Without it the same variables are read from the environment
    /// (and ~/.aws/credentials, ~/.aws/config). Repeatable.
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// One JSON array on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Key for encrypted archives (`.age`): their manifests are read (the whole archive is
    /// decrypted through) to show their status, components and hosts. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub age_identity: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive to check: a file, or s3://BUCKET/PREFIX/NAME, az://CONTAINER/PREFIX/NAME,
    /// azfile://SHARE/DIR/NAME (streamed from the store).
    pub archive: PathBuf,
    /// Where an object-store target's endpoint or credentials come from, by reference:
    /// `KEY=env:NAME` or `KEY=file:PATH` (secrets only so), or `KEY=VALUE` for region, profile,
    /// account and endpoints. KEY is a variable name such as aws_access_key_id,
    /// aws_secret_access_key, aws_region, aws_endpoint_url, aws_profile,
    /// azure_storage_connection_string, azure_storage_account, azure_storage_key,
    /// azure_storage_sas_token. Without it the same variables are read from the environment
    /// (and ~/.aws/credentials, ~/.aws/config). Repeatable.
    #[arg(long, value_name = "KEY=SOURCE")]
    pub target_setting: Vec<String>,
    /// Key for an encrypted archive (`.age`): an age identity file (`age-keygen` output) or an
    /// unencrypted OpenSSH private key. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub age_identity: Vec<PathBuf>,
}
