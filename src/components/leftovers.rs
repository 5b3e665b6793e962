//! What an earlier run left on a host (a second Ctrl-C, a lost connection, a crash of lsbackup
//! or of the host), found and removed at the start of the next run.
//!
//! Everything lsbackup makes on a host that outlives one command carries, in its name, the pid
//! of the process that holds lsbackup's connection to the host (the *holder*): the nearest
//! ancestor of the remote shell named `sshd` or `sshd-session` (OpenSSH's per-connection
//! process), or `lsbackup` itself for a local host. [`HOLDER`] finds it. The holder lives as long
//! as the run's connection does, so:
//!
//! - a thing whose holder is no longer a running `sshd`/`sshd-session`/`lsbackup` process is a
//!   leftover: the run that made it is gone (a reused pid that happens to be such a process again
//!   only keeps the leftover until that one ends);
//! - a thing whose holder could not be found when it was made (holder `0`) is a leftover once it
//!   is older than [`UNKNOWN_HOLDER_AGE`];
//! - only entries of the exact name shape a component makes, directly in the directory it makes
//!   them in, of the type it makes (a directory or a regular file, never a symlink: `find -P`
//!   does not follow links and `%y` tells them apart), owned by the user the sweep runs as (the
//!   one that made them) are ever candidates; [`REMOVE`] checks type, owner and holder again right
//!   before `rm -rf`, which itself never follows a symlink.
//!
//! Each component sweeps its own kinds of things on each host it runs on, once at its start, and
//! says what it removed in one note (`removed what an earlier run left: ...`).

use crate::engine::{HostCtx, StepError};
use crate::shell::Script;

/// Age (seconds) after which a thing whose holder is unknown (`0`) counts as left over.
pub const UNKNOWN_HOLDER_AGE: u64 = 24 * 3600;

/// Shell text that sets `lsb_holder` to the holder pid (see the module docs), `0` when none is
/// found. A macro so that it can be `concat!`ed into the fixed text of a [`Script`].
macro_rules! holder_sh {
    () => {
        r#"lsb_holder=0
lsb_p=$$
while [ "$lsb_p" -gt 1 ] 2>/dev/null; do
  lsb_c=$(cat "/proc/$lsb_p/comm" 2>/dev/null) || break
  case $lsb_c in sshd|sshd-session|lsbackup) lsb_holder=$lsb_p; break;; esac
  lsb_s=$(cat "/proc/$lsb_p/stat" 2>/dev/null) || break
  lsb_s=${lsb_s##*) }
  lsb_p=$(printf '%s\n' "$lsb_s" | cut -d ' ' -f 2)
done
"#
    };
}
pub(crate) use holder_sh;

/// Prints the holder pid.
pub const HOLDER: &str = concat!(holder_sh!(), r#"printf '%s\n' "$lsb_holder""#);

/// The holder pid of this host's connection (`0`: not found).
pub async fn holder(h: &mut HostCtx<'_>, step: &str) -> Result<u32, StepError> {
    let out = h
        .run_ok(
            step,
            &Script::new(HOLDER),
            None,
            Some("lsbackup holder pid"),
        )
        .await?;
    Ok(out.stdout_text().parse().unwrap_or(0))
}

/// `$1` = directory, `$2` = `find -name` pattern, repeated. Prints the sweeping user's uid, the
/// time and the holder pid, then `TYPE UID MTIME PATH\0` of each match directly in each
/// directory.
const LIST: &str = concat!(
    holder_sh!(),
    r#"printf '%s %s %s\0' "$(id -u)" "$(date +%s)" "$lsb_holder"
while [ $# -ge 2 ]; do
  if [ -d "$1" ]; then
    find "$1" -mindepth 1 -maxdepth 1 -name "$2" -printf '%y %U %T@ %p\0' 2>/dev/null
  fi
  shift 2
done
exit 0"#
);

/// `$1` = holder pid, `$2` = owner uid (`-`: any owner), `$3` = type (`d` or `f`), `$4` = path,
/// repeated. Removes each path that is still of that type (not a symlink), owned so, and whose
/// holder is not a running connection; prints each one removed, NUL-terminated.
const REMOVE: &str = r#"while [ $# -ge 4 ]; do
  pid=$1 uid=$2 t=$3 p=$4; shift 4
  if [ "$pid" != 0 ]; then
    c=$(cat "/proc/$pid/comm" 2>/dev/null) || c=
    case $c in sshd|sshd-session|lsbackup) continue;; esac
  fi
  [ -L "$p" ] && continue
  if [ "$t" = d ]; then [ -d "$p" ] || continue; else [ -f "$p" ] || continue; fi
  if [ "$uid" != - ]; then
    u=$(stat -c %u -- "$p" 2>/dev/null) || continue
    [ "$u" = "$uid" ] || continue
  fi
  rm -rf -- "$p" && printf '%s\0' "$p"
done
exit 0"#;

/// One kind of thing a component makes: entries of `dir` matching `glob` whose name `parse`
/// accepts.
pub struct Kind<'a> {
    /// The absolute directory the things are made in.
    pub dir: &'a str,
    /// A `find -name` pattern (fixed text) preselecting names.
    pub glob: &'static str,
    /// `d`: a directory; `f`: a regular file.
    pub file_type: char,
    /// The holder pid for a name of the exact shape made, else `None` (never removed).
    pub parse: fn(&str) -> Option<Found>,
}

/// What a leftover's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub holder: u32,
    /// A sibling (a name in the same directory, already validated by `parse`) to remove before
    /// this entry: the thing this entry marks, whatever its owner (e.g. the snapshot directory a
    /// Prometheus marker names).
    pub marks: Option<(String, char)>,
}

/// `<prefix><holder>.<random>`: `mktemp` names made from `<prefix><holder>.XXXXXX...` (random
/// part `min` or more ASCII letters and digits).
pub fn mktemp_name(name: &str, prefix: &str, min: usize) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, random) = rest.split_once('.')?;
    (!pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() >= min
        && random.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then(|| pid.parse().ok())
    .flatten()
}

/// What [`sweep`] did.
#[derive(Debug, Default)]
pub struct Swept {
    /// The holder pid of this run's connection (`0`: not found).
    pub holder: u32,
    /// The paths removed.
    pub removed: Vec<String>,
}

/// The listing command for these kinds (run it as the user who made them).
pub(crate) fn list_script(kinds: &[Kind<'_>]) -> Script {
    let mut args = Vec::new();
    for k in kinds {
        if !k.dir.starts_with('/') || k.dir.contains('\0') {
            continue;
        }
        args.push(k.dir.to_string());
        args.push(k.glob.to_string());
    }
    Script::new(LIST).args(args)
}

/// How [`list_script`] is shown in the record.
pub(crate) const LIST_SHOWN: &str =
    "find DIR -mindepth 1 -maxdepth 1 -name PATTERN (leftovers of earlier runs)";

/// What a listing says is to be removed: the command (run as the same user) and how it is shown.
pub(crate) struct Removals {
    removals: Vec<Removal>,
    pub script: Script,
    pub shown: String,
}

impl Removals {
    /// From a [`list_script`] output; `None` when nothing is to go.
    pub(crate) fn of(listing: &[u8], kinds: &[Kind<'_>]) -> Option<Removals> {
        let removals = choose(listing, kinds);
        if removals.is_empty() {
            return None;
        }
        let mut rm_args = Vec::new();
        for r in &removals {
            rm_args.extend([
                r.holder.to_string(),
                r.uid.clone(),
                r.t.to_string(),
                r.path.clone(),
            ]);
        }
        let shown = format!(
            "rm -rf -- {} (each if its run's connection is gone)",
            crate::shell::quote_words(removals.iter().map(|r| r.path.as_str()))
        );
        Some(Removals {
            removals,
            script: Script::new(REMOVE).args(rm_args),
            shown,
        })
    }

    /// The paths the removal command printed: all of them, and those worth naming (not the
    /// markers).
    pub(crate) fn removed(&self, stdout: &[u8]) -> (Vec<String>, Vec<String>) {
        let removed: Vec<String> = stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let shown = removed
            .iter()
            .filter(|p| !self.removals.iter().any(|r| r.path == **p && r.marker))
            .cloned()
            .collect();
        (removed, shown)
    }
}

/// The note saying what was removed.
pub(crate) fn removed_note(shown: &[String]) -> String {
    format!(
        "removed what an earlier run left (its connection is gone): {}",
        shown.join(", ")
    )
}

/// Remove what earlier runs left of these kinds on this host; one note says what was removed.
pub async fn sweep(
    h: &mut HostCtx<'_>,
    step: &str,
    kinds: &[Kind<'_>],
) -> Result<Swept, StepError> {
    let out = h
        .run_ok(step, &list_script(kinds), None, Some(LIST_SHOWN))
        .await?;
    let holder = holder_of(&out.stdout);
    let Some(removals) = Removals::of(&out.stdout, kinds) else {
        return Ok(Swept {
            holder,
            removed: Vec::new(),
        });
    };
    let out = h
        .run_ok(step, &removals.script, None, Some(&removals.shown))
        .await?;
    let (removed, shown) = removals.removed(&out.stdout);
    if !shown.is_empty() {
        h.note(&removed_note(&shown));
    }
    Ok(Swept { holder, removed })
}

/// `$@` = pids: prints, one a line, those that are a running connection holder.
const RUNNING: &str = r#"for pid in "$@"; do
  case $pid in ''|*[!0-9]*) continue;; esac
  c=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
  case $c in sshd|sshd-session|lsbackup) printf '%s\n' "$pid";; esac
done
exit 0"#;

/// Which of `pids` are running connection holders on this host (see the module docs).
pub async fn running(
    h: &mut HostCtx<'_>,
    step: &str,
    pids: &[u32],
) -> Result<std::collections::BTreeSet<u32>, StepError> {
    if pids.is_empty() {
        return Ok(Default::default());
    }
    let out = h
        .run_ok(
            step,
            &Script::new(RUNNING).args(pids.iter().map(u32::to_string)),
            None,
            Some("cat /proc/PID/comm (are these runs' connections still there)"),
        )
        .await?;
    Ok(out
        .stdout_text()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Prints the holder pid, then the machine's id (or its host name when it has none).
const IDENTITY: &str = concat!(
    holder_sh!(),
    r#"printf '%s\n' "$lsb_holder"
cat /etc/machine-id 2>/dev/null || cat /var/lib/dbus/machine-id 2>/dev/null || cat /proc/sys/kernel/hostname 2>/dev/null
exit 0"#
);

/// Who this run is on a host, for things that do not live in the host's file system (e.g. an
/// Elasticsearch snapshot reached through the host's connection): the holder pid and an id of
/// the machine whose processes the pid is one of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `0`: not found.
    pub holder: u32,
    /// 8 hex digits: sha256 of `lsbackup host id` and `/etc/machine-id` (systemd asks that the
    /// id itself not be shown), else of the host name.
    pub host: String,
}

/// The [`Identity`] of this run on this host.
pub async fn identity(h: &mut HostCtx<'_>, step: &str) -> Result<Identity, StepError> {
    let out = h
        .run_ok(
            step,
            &Script::new(IDENTITY),
            None,
            Some("lsbackup holder pid; cat /etc/machine-id (hashed in lsbackup)"),
        )
        .await?;
    Ok(identity_of(&out.stdout_text()))
}

fn identity_of(text: &str) -> Identity {
    use sha2::Digest;
    let mut lines = text.lines();
    let holder = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let id = lines.next().unwrap_or("").trim();
    let digest = sha2::Sha256::digest(format!("lsbackup host id\n{id}").as_bytes());
    Identity {
        holder,
        host: hex::encode(&digest[..4]),
    }
}

/// The holder pid in a [`LIST`] output's first record.
fn holder_of(listing: &[u8]) -> u32 {
    let head = listing.split(|b| *b == 0).next().unwrap_or(b"");
    String::from_utf8_lossy(head)
        .split(' ')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, PartialEq)]
struct Removal {
    holder: u32,
    uid: String,
    t: char,
    path: String,
    marker: bool,
}

/// The removals for a [`LIST`] output: exact names, right type and owner, holder known or the
/// thing old enough.
fn choose(listing: &[u8], kinds: &[Kind<'_>]) -> Vec<Removal> {
    let mut fields = listing.split(|b| *b == 0);
    let head = String::from_utf8_lossy(fields.next().unwrap_or(b"")).into_owned();
    let mut head = head.split(' ');
    let (Some(me), Some(now)) = (head.next(), head.next().and_then(|s| s.parse::<u64>().ok()))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rec in fields {
        let Ok(rec) = std::str::from_utf8(rec) else {
            continue;
        };
        let mut parts = rec.splitn(4, ' ');
        let (Some(t), Some(uid), Some(mtime), Some(path)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if uid != me {
            continue;
        }
        let Some((dir, name)) = path.rsplit_once('/') else {
            continue;
        };
        let dir = if dir.is_empty() { "/" } else { dir };
        // the first kind of this directory and type that takes the name
        let Some((kind, found)) = kinds
            .iter()
            .filter(|k| k.dir.trim_end_matches('/') == dir.trim_end_matches('/') || k.dir == dir)
            .filter(|k| t.len() == 1 && t.starts_with(k.file_type))
            .find_map(|k| (k.parse)(name).map(|f| (k, f)))
        else {
            continue;
        };
        if found.holder == 0 {
            let age = mtime
                .split('.')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .map(|m| now.saturating_sub(m));
            if age.is_none_or(|a| a < UNKNOWN_HOLDER_AGE) {
                continue;
            }
        }
        let base = if dir == "/" {
            String::new()
        } else {
            dir.to_string()
        };
        if let Some((sibling, st)) = &found.marks {
            out.push(Removal {
                holder: found.holder,
                uid: "-".into(),
                t: *st,
                path: format!("{base}/{sibling}"),
                marker: false,
            });
        }
        out.push(Removal {
            holder: found.holder,
            uid: uid.to_string(),
            t: kind.file_type,
            path: path.to_string(),
            marker: found.marks.is_some(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> Option<Found> {
        mktemp_name(name, "lsbackup-x.", 6).map(|holder| Found {
            holder,
            marks: None,
        })
    }

    #[test]
    fn mktemp_names() {
        assert_eq!(
            mktemp_name("lsbackup-x.123.AbC123", "lsbackup-x.", 6),
            Some(123)
        );
        for bad in [
            "lsbackup-x.123.AbC12",
            "lsbackup-x..AbC123",
            "lsbackup-x.12a.AbC123",
            "lsbackup-x.123.AbC-123",
            "lsbackup-x.AbC123",
            "lsbackup-y.123.AbC123",
            "lsbackup-x.123.AbC123/..",
        ] {
            assert_eq!(mktemp_name(bad, "lsbackup-x.", 6), None, "{bad:?}");
        }
    }

    #[test]
    fn only_exact_names_of_the_sweeping_user() {
        let kinds = [Kind {
            dir: "/tmp",
            glob: "lsbackup-x.*",
            file_type: 'd',
            parse: tmp,
        }];
        let listing = b"0 100000 7\0d 0 99990.5 /tmp/lsbackup-x.42.AbCdEf\0\
d 1000 99990.5 /tmp/lsbackup-x.43.AbCdEf\0\
l 0 99990.5 /tmp/lsbackup-x.44.AbCdEf\0\
f 0 99990.5 /tmp/lsbackup-x.45.AbCdEf\0\
d 0 99990.5 /tmp/lsbackup-x.46.Ab\0\
d 0 99990.5 /tmp/lsbackup-x.0.AbCdEf\0\
d 0 10000.0 /tmp/lsbackup-x.0.OldOld\0\
d 0 99990.5 /var/lsbackup-x.47.AbCdEf\0";
        let r = choose(listing, &kinds);
        let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/tmp/lsbackup-x.42.AbCdEf", "/tmp/lsbackup-x.0.OldOld"]
        );
        assert_eq!(r[0].holder, 42);
        assert_eq!(r[0].uid, "0");
        assert!(choose(b"", &kinds).is_empty());
        assert_eq!(holder_of(listing), 7);
        assert_eq!(holder_of(b""), 0);
    }

    #[test]
    fn two_kinds_in_one_directory() {
        fn file(name: &str) -> Option<Found> {
            mktemp_name(name, ".lsbackup-f.", 6).map(|holder| Found {
                holder,
                marks: None,
            })
        }
        let kinds = [
            Kind {
                dir: "/srv",
                glob: ".lsbackup-f.*",
                file_type: 'f',
                parse: file,
            },
            Kind {
                dir: "/srv",
                glob: "lsbackup-x.*",
                file_type: 'd',
                parse: tmp,
            },
        ];
        let listing = b"0 5 1\0f 0 4 /srv/.lsbackup-f.8.AbCdEf\0d 0 4 /srv/lsbackup-x.9.AbCdEf\0\
d 0 4 /srv/.lsbackup-f.8.AbCdEf2\0";
        let r = choose(listing, &kinds);
        let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/srv/.lsbackup-f.8.AbCdEf", "/srv/lsbackup-x.9.AbCdEf"]
        );
    }

    #[test]
    fn identities() {
        let a = identity_of("1234\n0123456789abcdef0123456789abcdef\n");
        assert_eq!(a.holder, 1234);
        assert_eq!(a.host.len(), 8);
        assert!(
            !a.host.contains("0123"),
            "the machine id itself is not shown"
        );
        let b = identity_of("0\n0123456789abcdef0123456789abcdee\n");
        assert_eq!(b.holder, 0);
        assert_ne!(a.host, b.host);
        assert_eq!(identity_of("").holder, 0);
    }

    #[test]
    fn a_marker_removes_what_it_marks_first() {
        fn marker(name: &str) -> Option<Found> {
            let rest = name.strip_prefix(".lsbackup-")?;
            let (pid, snap) = rest.split_once('-')?;
            Some(Found {
                holder: pid.parse().ok()?,
                marks: Some((snap.to_string(), 'd')),
            })
        }
        let kinds = [Kind {
            dir: "/data/snapshots",
            glob: ".lsbackup-*",
            file_type: 'f',
            parse: marker,
        }];
        let r = choose(b"0 5 1\0f 0 4 /data/snapshots/.lsbackup-7-snap\0", &kinds);
        assert_eq!(
            r,
            [
                Removal {
                    holder: 7,
                    uid: "-".into(),
                    t: 'd',
                    path: "/data/snapshots/snap".into(),
                    marker: false
                },
                Removal {
                    holder: 7,
                    uid: "0".into(),
                    t: 'f',
                    path: "/data/snapshots/.lsbackup-7-snap".into(),
                    marker: true
                }
            ]
        );
    }
}
