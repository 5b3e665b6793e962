//! Per-host connection settings from resolved inventory variables, the way Ansible's `ssh`
//! connection plugin builds its `ssh` command line.
//!
//! Variable aliases follow the plugin's option definitions, where the last name listed wins
//! when several are set: address `ansible_host` < `ansible_ssh_host`; port `ansible_port` <
//! `ansible_ssh_port`; user `ansible_user` < `ansible_ssh_user`; key `ansible_private_key_file`
//! < `ansible_ssh_private_key_file`; `ansible_host_key_checking` <
//! `ansible_ssh_host_key_checking`.
//!
//! OpenSSH keeps the *first* value it sees for an option, and Ansible orders the command line as
//! `ansible_ssh_args`, `StrictHostKeyChecking=no` (when host key checking is off), `Port`,
//! `IdentityFile`, `User`, `ConnectTimeout` (only when `ansible_ssh_timeout` is set; see below),
//! `ansible_ssh_common_args`, `ansible_ssh_extra_args`. The same order decides here, so
//! `-o Port=2200` in `ansible_ssh_common_args` loses to `ansible_port`, exactly as with Ansible.
//!
//! Honoured OpenSSH options (`-o Key=Value`, `-o "Key Value"`, `-oKey=Value`, and the flags
//! `-p`, `-l`, `-i`, `-J`): `StrictHostKeyChecking`, `UserKnownHostsFile`, `ProxyJump`,
//! `ProxyCommand`, `ServerAliveInterval`, `ServerAliveCountMax`, `ConnectTimeout`, `Port`,
//! `User`, `IdentityFile`, `HostName`. Everything else is listed in [`SshOptions::ignored`].
//!
//! Deviation: Ansible always passes `-o ConnectTimeout=<ansible_ssh_timeout, default 10>` ahead
//! of the common/extra args, which makes a `ConnectTimeout` there ineffective under Ansible.
//! lsbackup only does that when `ansible_ssh_timeout` is set, so a `ConnectTimeout` in
//! `ansible_ssh_common_args` is honoured when no timeout variable is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::jinja::{self, HostScope, ResolveError, Resolver, Val};
use super::pylit::shlex_split;
use super::{ConnectionSpec, InventoryError, SshOptions, StrictHostKeyChecking, Vars};

/// Remarks about one host's settings, for `Inventory::warnings`: `(remark, per-host detail)`.
pub(crate) type Notes = Vec<String>;

fn other(host: &str, msg: String) -> InventoryError {
    InventoryError::Other(format!("host {host}: {msg}"))
}

/// The host's variables, resolved on demand (Jinja subset of [`super::jinja`]).
type Res<'a> = Resolver<'a, HostScope<'a>>;

/// Resolve connection variable `name` (`None` when unset); an unresolvable one is an error
/// naming the host, the variable and the file it came from.
fn resolved(host: &str, r: &mut Res<'_>, name: &str) -> Result<Option<Val>, InventoryError> {
    match r.resolve(name) {
        Ok(Val::None) | Err(ResolveError::Undefined { .. }) if !r.defines(name) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(ResolveError::Vault) => Err(other(
            host,
            format!("{name} is vault-encrypted; lsbackup cannot decrypt ansible-vault values"),
        )),
        Err(e) => Err(other(
            host,
            format!(
                "{name} (from {}): {e}; lsbackup resolves only {} in inventory values: set a \
                 literal value for this host (for example in host_vars/{host}.yml)",
                r.origin(name),
                jinja::SUPPORTED
            ),
        )),
    }
}

/// A variable as a plain string (`None` when unset or null).
fn str_var(host: &str, r: &mut Res<'_>, name: &str) -> Result<Option<String>, InventoryError> {
    Ok(match resolved(host, r, name)? {
        None | Some(Val::None) => None,
        Some(Val::Bool(b)) => Some(if b { "True" } else { "False" }.to_string()),
        Some(v @ (Val::List(_) | Val::Map(_))) => {
            return Err(other(
                host,
                format!("{name} must be a string, got {}", v.to_plain()),
            ));
        }
        Some(v) => Some(v.to_plain()),
    })
}

/// The last of `names` that is set (Ansible's "last one in the list wins"), with its name.
fn last_var(
    host: &str,
    r: &mut Res<'_>,
    names: &[&str],
) -> Result<Option<(String, String)>, InventoryError> {
    let mut found = None;
    for n in names {
        if let Some(v) = str_var(host, r, n)? {
            found = Some((v, n.to_string()));
        }
    }
    Ok(found)
}

/// Ansible's `boolean(value, strict=False)` of a resolved variable (`None` when unset or null).
fn bool_var(host: &str, r: &mut Res<'_>, name: &str) -> Result<Option<bool>, InventoryError> {
    Ok(match resolved(host, r, name)? {
        None | Some(Val::None) => None,
        Some(Val::Bool(b)) => Some(b),
        Some(Val::Int(i)) => Some(i == 1),
        Some(Val::Float(f)) => Some(f == 1.0),
        Some(Val::Str(s)) => Some(ansible_bool(&Value::String(s))),
        Some(_) => Some(false),
    })
}

/// Ansible's `boolean(value, strict=False)`.
pub(crate) fn ansible_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => {
            matches!(
                s.trim().to_lowercase().as_str(),
                "y" | "yes" | "on" | "1" | "true" | "t"
            )
        }
        Value::Object(o) if o.len() == 1 => match o.get("__ansible_unsafe") {
            Some(s) => ansible_bool(s),
            None => false,
        },
        _ => false,
    }
}

fn parse_port(host: &str, what: &str, s: &str) -> Result<u16, InventoryError> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            other(
                host,
                format!("{what} must be a port number between 1 and 65535, got {s:?}"),
            )
        })
}

/// `os.path.expanduser`.
pub(crate) fn expand_user(p: &str) -> PathBuf {
    let Some(rest) = p.strip_prefix('~') else {
        return PathBuf::from(p);
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| home_of(None))
    } else {
        home_of(Some(user))
    };
    match home {
        Some(h) => {
            let mut s = h.into_os_string();
            s.push(tail);
            PathBuf::from(s)
        }
        None => PathBuf::from(p),
    }
}

fn home_of(user: Option<&str>) -> Option<PathBuf> {
    use std::ffi::{CStr, CString};
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match user {
        Some(u) => {
            let c = CString::new(u).ok()?;
            // SAFETY: all pointers are valid for the call; buf outlives the use of `pwd`.
            unsafe {
                libc::getpwnam_r(
                    c.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            }
        }
        // SAFETY: as above.
        None => unsafe {
            libc::getpwuid_r(
                libc::getuid(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        },
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf, NUL-terminated, set by getpw*_r.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
    Some(PathBuf::from(dir.to_string_lossy().into_owned()))
}

/// A key file as Ansible hands it to ssh: `~` expanded; a relative path is then opened by ssh
/// relative to the working directory of the process, i.e. `cwd`.
pub(crate) fn resolve_key_path(p: &str, cwd: &Path) -> PathBuf {
    let e = expand_user(p);
    if e.is_absolute() { e } else { cwd.join(e) }
}

/// What the ssh command-line sources said, first value wins per option.
#[derive(Default)]
struct Collected {
    port: Option<(u16, String)>,
    user: Option<String>,
    identity: Option<String>,
    hostname: Option<String>,
    strict: Option<StrictHostKeyChecking>,
    known_hosts: Option<String>,
    /// ProxyJump or ProxyCommand, whichever came first (`none` disables).
    proxy: Option<Proxy>,
    alive_interval: Option<u64>,
    alive_count: Option<u32>,
    connect_timeout: Option<u64>,
    ignored: Vec<String>,
    notes: Vec<String>,
}

enum Proxy {
    Jump(String),
    Command(String),
    None,
}

fn split_kv(opt: &str) -> (String, String) {
    let t = opt.trim();
    let end = t
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(t.len());
    let key = t[..end].to_string();
    let mut rest = t[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    (key, rest.trim_end().to_string())
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

impl Collected {
    fn option(
        &mut self,
        host: &str,
        source: &str,
        written: &str,
        opt: &str,
    ) -> Result<(), InventoryError> {
        let (key, value) = split_kv(opt);
        let bad = |what: &str| other(host, format!("{source}: {written:?}: {what}"));
        match key.to_ascii_lowercase().as_str() {
            "stricthostkeychecking" => {
                let v = match unquote(&value).to_ascii_lowercase().as_str() {
                    "yes" | "ask" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "off" | "false" => StrictHostKeyChecking::No,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    _ => {
                        return Err(bad(
                            "StrictHostKeyChecking must be yes, no, ask, accept-new or off",
                        ));
                    }
                };
                self.strict.get_or_insert(v);
            }
            "userknownhostsfile" => {
                if self.known_hosts.is_none() {
                    let files = shlex_split(&value, false).unwrap_or_else(|_| vec![value.clone()]);
                    let Some(first) = files.first() else {
                        return Err(bad("UserKnownHostsFile needs a file name"));
                    };
                    if files.len() > 1 {
                        self.notes.push(format!(
                            "UserKnownHostsFile lists {} files; lsbackup uses only the first, {first}",
                            files.len()
                        ));
                    }
                    // Never a way to switch checking off: the default known_hosts is used.
                    if first == "/dev/null" {
                        self.notes.push(
                            "UserKnownHostsFile=/dev/null is ignored: host keys are checked against the default known_hosts file (or --known-hosts)".into(),
                        );
                        self.known_hosts = Some(String::new());
                    } else {
                        self.known_hosts = Some(first.clone());
                    }
                }
            }
            "proxyjump" => {
                if self.proxy.is_none() {
                    let v = unquote(&value);
                    self.proxy = Some(if v.eq_ignore_ascii_case("none") {
                        Proxy::None
                    } else {
                        Proxy::Jump(v.to_string())
                    });
                }
            }
            "proxycommand" => {
                if self.proxy.is_none() {
                    self.proxy = Some(if value.eq_ignore_ascii_case("none") {
                        Proxy::None
                    } else {
                        Proxy::Command(value.clone())
                    });
                }
            }
            "serveraliveinterval" => {
                let v = unquote(&value)
                    .parse::<u64>()
                    .map_err(|_| bad("expected seconds"))?;
                self.alive_interval.get_or_insert(v);
            }
            "serveralivecountmax" => {
                let v = unquote(&value)
                    .parse::<u32>()
                    .map_err(|_| bad("expected a count"))?;
                self.alive_count.get_or_insert(v);
            }
            "connecttimeout" => {
                let v = unquote(&value)
                    .parse::<u64>()
                    .map_err(|_| bad("expected seconds"))?;
                self.connect_timeout.get_or_insert(v);
            }
            "port" => {
                let p = parse_port(host, &format!("{source} Port"), unquote(&value))?;
                self.port.get_or_insert((p, source.to_string()));
            }
            "user" => {
                self.user.get_or_insert(unquote(&value).to_string());
            }
            "identityfile" => {
                let v = unquote(&value).to_string();
                if self.identity.is_none() {
                    self.identity = Some(v);
                } else {
                    self.notes.push(format!(
                        "more than one identity file given; lsbackup uses the first, {}",
                        self.identity.as_deref().unwrap_or_default()
                    ));
                }
            }
            "hostname" => {
                self.hostname.get_or_insert(unquote(&value).to_string());
            }
            _ => self.ignored.push(format!("{written} (from {source})")),
        }
        Ok(())
    }

    /// Parse one argument string (shell-split like Ansible's `_split_ssh_args`).
    fn args(&mut self, host: &str, source: &str, s: &str) -> Result<(), InventoryError> {
        let args: Vec<String> = shlex_split(s, false)
            .map_err(|e| other(host, format!("{source}: cannot split {s:?}: {e}")))?
            .into_iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        const WITH_ARG: &str = "BbcDEeFIiJLlmOopQRSWw";
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            i += 1;
            let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
                self.ignored.push(format!("{a} (from {source})"));
                continue;
            };
            let chars: Vec<char> = flags.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                if WITH_ARG.contains(c) {
                    let rest: String = chars[j + 1..].iter().collect();
                    let (optarg, written) = if !rest.is_empty() {
                        (rest.clone(), format!("-{c}{rest}"))
                    } else if i < args.len() {
                        i += 1;
                        (args[i - 1].clone(), format!("-{c} {}", args[i - 1]))
                    } else {
                        return Err(other(
                            host,
                            format!("{source}: option -{c} needs an argument"),
                        ));
                    };
                    match c {
                        'o' => self.option(host, source, &written, &optarg)?,
                        'p' => self.option(host, source, &written, &format!("Port={optarg}"))?,
                        'l' => self.option(host, source, &written, &format!("User={optarg}"))?,
                        'i' => {
                            self.option(host, source, &written, &format!("IdentityFile={optarg}"))?
                        }
                        'J' => {
                            self.option(host, source, &written, &format!("ProxyJump={optarg}"))?
                        }
                        _ => self.ignored.push(format!("{written} (from {source})")),
                    }
                    break;
                }
                self.ignored.push(format!("-{c} (from {source})"));
                j += 1;
            }
        }
        Ok(())
    }
}

/// Build the connection settings of `host` from its resolved variables. Relative key paths are
/// resolved against `cwd`. Also returns remarks for the user (ignored options and the like).
pub(crate) fn connection_spec(
    host: &str,
    vars: &Vars,
    origin: &dyn Fn(&str) -> String,
    cwd: &Path,
) -> Result<(ConnectionSpec, Notes), InventoryError> {
    let scope = HostScope { host, vars, origin };
    let mut r = Resolver::new(&scope);
    let r = &mut r;
    let mut c = Collected::default();
    let mut notes: Notes = Vec::new();

    // ansible_connection
    let local = match last_var(host, r, &["ansible_connection"])? {
        None => false,
        Some((v, _)) => match v.as_str() {
            "local" | "ansible.builtin.local" | "ansible.legacy.local" => true,
            "ssh"
            | "smart"
            | "paramiko"
            | "paramiko_ssh"
            | "ansible.builtin.ssh"
            | "ansible.legacy.ssh"
            | "ansible.builtin.paramiko_ssh"
            | "ansible.legacy.paramiko_ssh" => false,
            other_conn => {
                return Err(other(
                    host,
                    format!(
                        "ansible_connection={other_conn} is not supported (lsbackup connects with \
                         ssh, or runs locally for ansible_connection=local)"
                    ),
                ));
            }
        },
    };

    // 1. ansible_ssh_args
    if let Some(s) = str_var(host, r, "ansible_ssh_args")? {
        c.args(host, "ansible_ssh_args", &s)?;
    }
    // 2. host key checking off
    let mut hkc = None;
    for name in ["ansible_host_key_checking", "ansible_ssh_host_key_checking"] {
        if let Some(b) = bool_var(host, r, name)? {
            hkc = Some(b);
        }
    }
    if hkc == Some(false) {
        c.strict.get_or_insert(StrictHostKeyChecking::No);
    }
    // 3. Port
    if let Some((p, name)) = last_var(host, r, &["ansible_port", "ansible_ssh_port"])? {
        let p = parse_port(host, &name, &p)?;
        c.port.get_or_insert((p, name));
    }
    // 4. IdentityFile
    let key_var = last_var(
        host,
        r,
        &["ansible_private_key_file", "ansible_ssh_private_key_file"],
    )?;
    if let Some((k, _)) = &key_var
        && c.identity.is_none()
    {
        c.identity = Some(k.clone());
    }
    // 5. User
    if let Some((u, _)) = last_var(host, r, &["ansible_user", "ansible_ssh_user"])? {
        c.user.get_or_insert(u);
    }
    // 6. ConnectTimeout
    if let Some((t, _)) = last_var(host, r, &["ansible_ssh_timeout"])? {
        let t = t.trim().parse::<u64>().map_err(|_| {
            other(
                host,
                format!("ansible_ssh_timeout must be a number of seconds, got {t:?}"),
            )
        })?;
        c.connect_timeout.get_or_insert(t);
    }
    // 7., 8. common and extra args
    for name in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some(s) = str_var(host, r, name)? {
            c.args(host, name, &s)?;
        }
    }

    let address = match (
        &c.hostname,
        last_var(host, r, &["ansible_host", "ansible_ssh_host"])?,
    ) {
        (Some(h), _) => h.clone(),
        (None, Some((a, _))) => a,
        (None, None) => host.to_string(),
    };
    let become_ = bool_var(host, r, "ansible_become")?.unwrap_or(false);
    let become_user = last_var(host, r, &["ansible_become_user"])?
        .map(|(u, _)| u)
        .unwrap_or_else(|| "root".to_string());
    if become_
        && let Some((m, _)) = last_var(host, r, &["ansible_become_method"])?
        && m != "sudo"
        && m != "ansible.builtin.sudo"
    {
        notes.push(format!(
            "ansible_become_method={m} is not supported; lsbackup uses sudo"
        ));
    }
    for secret in [
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
    ] {
        if vars.get(secret).is_some_and(|v| !v.is_null()) {
            notes.push(format!(
                "{secret} is set but lsbackup never uses passwords (use keys)"
            ));
        }
    }
    for secret in [
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_sudo_pass",
    ] {
        if vars.get(secret).is_some_and(|v| !v.is_null()) {
            notes.push(format!(
                "{secret} is set but lsbackup never sends passwords; sudo must not need one"
            ));
        }
    }

    let (proxy_jump, proxy_command) = match c.proxy {
        Some(Proxy::Jump(j)) => (Some(j), None),
        Some(Proxy::Command(cmd)) => (None, Some(cmd)),
        Some(Proxy::None) | None => (None, None),
    };
    let ssh = SshOptions {
        strict_host_key_checking: c.strict,
        user_known_hosts_file: c
            .known_hosts
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(expand_user),
        proxy_jump,
        proxy_command,
        server_alive_interval: c.alive_interval.filter(|s| *s > 0).map(Duration::from_secs),
        server_alive_count_max: c.alive_count,
        connect_timeout: c
            .connect_timeout
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        ignored: c.ignored,
    };
    if c.strict == Some(StrictHostKeyChecking::No) {
        notes.push(
            "host key checking off (StrictHostKeyChecking=no or ansible_host_key_checking=false) is treated as accept-new: unknown host keys are recorded, a changed key is refused (only --insecure-skip-host-key-check switches checking off)".into(),
        );
    }
    notes.extend(c.notes);
    let spec = ConnectionSpec {
        host: host.to_string(),
        address,
        port: c.port.map(|(p, _)| p).unwrap_or(22),
        user: c.user,
        key_file: c.identity.as_deref().map(|k| resolve_key_path(k, cwd)),
        local,
        become_,
        become_user,
        ssh,
    };
    Ok((spec, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> ConnectionSpec {
        let Value::Object(m) = v else { panic!() };
        connection_spec(
            "h1",
            &m,
            &|n| format!("file-of-{n}"),
            Path::new("/work/dir"),
        )
        .unwrap()
        .0
    }
    fn spec_err(v: serde_json::Value) -> String {
        let Value::Object(m) = v else { panic!() };
        connection_spec(
            "h1",
            &m,
            &|n| format!("file-of-{n}"),
            Path::new("/work/dir"),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn defaults() {
        let s = spec(json!({}));
        assert_eq!(s.address, "h1");
        assert_eq!(s.port, 22);
        assert_eq!(s.user, None);
        assert_eq!(s.key_file, None);
        assert!(!s.local && !s.become_);
        assert_eq!(s.become_user, "root");
        assert_eq!(s.ssh, SshOptions::default());
    }

    #[test]
    fn basic_vars_and_aliases() {
        let s = spec(json!({
            "ansible_host": "10.0.0.1", "ansible_port": 2222, "ansible_user": "operations",
            "ansible_ssh_private_key_file": "keys/id_rsa", "ansible_become": "yes",
            "ansible_become_user": "postgres"
        }));
        assert_eq!((s.address.as_str(), s.port), ("10.0.0.1", 2222));
        assert_eq!(s.user.as_deref(), Some("operations"));
        assert_eq!(s.key_file, Some(PathBuf::from("/work/dir/keys/id_rsa")));
        assert!(s.become_);
        assert_eq!(s.become_user, "postgres");
        // The later alias in Ansible's list wins.
        let s = spec(
            json!({"ansible_user": "a", "ansible_ssh_user": "b", "ansible_port": "22",
                            "ansible_ssh_port": "2200", "ansible_host": "x", "ansible_ssh_host": "y"}),
        );
        assert_eq!(s.user.as_deref(), Some("b"));
        assert_eq!(s.port, 2200);
        assert_eq!(s.address, "y");
        let s = spec(json!({"ansible_connection": "local", "ansible_become": false}));
        assert!(s.local && !s.become_);
    }

    #[test]
    fn key_paths() {
        let home = std::env::var("HOME").unwrap();
        let s = spec(json!({"ansible_ssh_private_key_file": "~/.ssh/id"}));
        assert_eq!(s.key_file, Some(PathBuf::from(format!("{home}/.ssh/id"))));
        let s = spec(json!({"ansible_private_key_file": "/abs/k"}));
        assert_eq!(s.key_file, Some(PathBuf::from("/abs/k")));
    }

    #[test]
    fn ssh_option_forms() {
        let s = spec(json!({
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o 'UserKnownHostsFile /dev/null' -oServerAliveCountMax=3 -J jump@bastion:22",
            "ansible_ssh_extra_args": "-o ServerAliveInterval=60 -o ConnectTimeout=15 -o ControlMaster=auto -C"
        }));
        assert_eq!(
            s.ssh.strict_host_key_checking,
            Some(StrictHostKeyChecking::No)
        );
        // /dev/null never switches checking off: dropped (the default file is used).
        assert_eq!(s.ssh.user_known_hosts_file, None);
        assert_eq!(s.ssh.server_alive_count_max, Some(3));
        assert_eq!(s.ssh.proxy_jump.as_deref(), Some("jump@bastion:22"));
        assert_eq!(s.ssh.server_alive_interval, Some(Duration::from_secs(60)));
        assert_eq!(s.ssh.connect_timeout, Some(Duration::from_secs(15)));
        assert_eq!(
            s.ssh.ignored,
            vec![
                "-o ControlMaster=auto (from ansible_ssh_extra_args)".to_string(),
                "-C (from ansible_ssh_extra_args)".to_string()
            ]
        );
    }

    #[test]
    fn host_key_checking_off_and_dev_null_are_warned_about() {
        let notes = |v: serde_json::Value| {
            let Value::Object(m) = v else { panic!() };
            connection_spec(
                "h1",
                &m,
                &|n| format!("file-of-{n}"),
                Path::new("/work/dir"),
            )
            .unwrap()
            .1
        };
        let n = notes(json!({
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o UserKnownHostsFile=/other"
        }));
        assert!(
            n.iter().any(|r| r.contains("treated as accept-new")),
            "{n:?}"
        );
        assert!(
            n.iter()
                .any(|r| r.starts_with("UserKnownHostsFile=/dev/null is ignored")),
            "{n:?}"
        );
        let n = notes(json!({"ansible_host_key_checking": false}));
        assert!(
            n.iter().any(|r| r.contains("treated as accept-new")),
            "{n:?}"
        );
        assert!(
            notes(json!({"ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"}))
                .is_empty()
        );
        // First value wins, as in OpenSSH: /dev/null first means the default file, not /other.
        let s = spec(json!({
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o UserKnownHostsFile=/other"
        }));
        assert_eq!(s.ssh.user_known_hosts_file, None);
    }

    #[test]
    fn strict_host_key_checking_values() {
        let shkc = |v: &str| {
            spec(json!({"ansible_ssh_common_args": format!("-o StrictHostKeyChecking={v}")}))
                .ssh
                .strict_host_key_checking
        };
        assert_eq!(shkc("yes"), Some(StrictHostKeyChecking::Yes));
        assert_eq!(shkc("ask"), Some(StrictHostKeyChecking::Yes));
        assert_eq!(shkc("accept-new"), Some(StrictHostKeyChecking::AcceptNew));
        assert_eq!(shkc("off"), Some(StrictHostKeyChecking::No));
        assert!(
            spec_err(json!({"ansible_ssh_common_args": "-o StrictHostKeyChecking=maybe"}))
                .contains("StrictHostKeyChecking must be")
        );
        let s = spec(json!({"ansible_host_key_checking": "False"}));
        assert_eq!(
            s.ssh.strict_host_key_checking,
            Some(StrictHostKeyChecking::No)
        );
        let s = spec(json!({"ansible_host_key_checking": true}));
        assert_eq!(s.ssh.strict_host_key_checking, None);
    }

    #[test]
    fn first_value_wins_in_ansible_command_order() {
        // ansible_ssh_args comes before everything; ansible_port before common args.
        let s = spec(json!({
            "ansible_ssh_args": "-o StrictHostKeyChecking=yes",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -p 2300 -o User=other",
            "ansible_port": 2222
        }));
        assert_eq!(
            s.ssh.strict_host_key_checking,
            Some(StrictHostKeyChecking::Yes)
        );
        assert_eq!(s.port, 2222);
        assert_eq!(s.user.as_deref(), Some("other"));
        let s = spec(json!({"ansible_ssh_extra_args": "-p 2300 -l bob -i /k"}));
        assert_eq!((s.port, s.user.as_deref()), (2300, Some("bob")));
        assert_eq!(s.key_file, Some(PathBuf::from("/k")));
        let s = spec(json!({
            "ansible_ssh_common_args": "-o ProxyCommand=\"ssh -W %h:%p bastion\" -J other"
        }));
        assert_eq!(s.ssh.proxy_command.as_deref(), Some("ssh -W %h:%p bastion"));
        assert_eq!(s.ssh.proxy_jump, None);
    }

    #[test]
    fn templates_and_bad_values_are_clear_errors() {
        let e = spec_err(json!({"ansible_host": "{{ hostvars['x'].ip }}"}));
        assert!(
            e.contains(
                "host h1: ansible_host (from file-of-ansible_host): {{ hostvars['x'].ip }}: \
                 hostvars is not supported; lsbackup resolves only"
            ),
            "{e}"
        );
        let e = spec_err(json!({"ansible_port": "{{ p }}"}));
        assert!(
            e.contains("ansible_port (from file-of-ansible_port): p is not defined"),
            "{e}"
        );
        // The supported subset resolves, typed values included.
        let s = spec(json!({"ansible_port": "{{ p }}", "p": 2222,
                            "ansible_host": "{{ net }}.{{ n | default(7) }}", "net": "10.0.0",
                            "ansible_user": "{{ u | default('ops') | lower }}",
                            "ansible_become": "{{ b }}", "b": "yes",
                            "ansible_ssh_common_args": {"__ansible_unsafe": "-o ProxyCommand=\"x {{y}}\""}}));
        assert_eq!(s.port, 2222);
        assert_eq!(s.address, "10.0.0.7");
        assert_eq!(s.user.as_deref(), Some("ops"));
        assert!(s.become_);
        assert_eq!(s.ssh.proxy_command.as_deref(), Some("x {{y}}"));
        let e = spec_err(json!({"ansible_become": "{% if x %}yes{% endif %}"}));
        assert!(
            e.contains("ansible_become (from file-of-ansible_become): {% if x %}"),
            "{e}"
        );
        let e = spec_err(json!({"ansible_port": "ssh"}));
        assert!(e.contains("ansible_port must be a port number"), "{e}");
        let e = spec_err(json!({"ansible_connection": "docker"}));
        assert!(e.contains("not supported"), "{e}");
        let e = spec_err(json!({"ansible_user": {"__ansible_vault": "x"}}));
        assert!(e.contains("vault"), "{e}");
        let s = spec(json!({"ansible_user": {"__ansible_unsafe": "op"}}));
        assert_eq!(s.user.as_deref(), Some("op"));
        // Templates elsewhere do not matter.
        spec(json!({"foo": "{{ bar }}"}));
    }

    #[test]
    fn remarks_for_passwords_and_become_method() {
        let Value::Object(m) = json!({"ansible_password": "x", "ansible_become": true,
                                      "ansible_become_method": "su"})
        else {
            panic!()
        };
        let (_, notes) =
            connection_spec("h1", &m, &|n| format!("file-of-{n}"), Path::new("/")).unwrap();
        assert!(notes.iter().any(|n| n.contains("ansible_password")));
        assert!(notes.iter().any(|n| n.contains("ansible_become_method=su")));
    }
}
