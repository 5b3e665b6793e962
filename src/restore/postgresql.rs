//! Restore PostgreSQL into the running primary: the roles and tablespaces (`globals.sql`,
//! through `psql`; those that exist already stay as they are), then each database from its
//! `pg_dump -Fc` dump with `pg_restore --create`. A database that exists is only replaced with
//! `--yes` (dropped with `DROP DATABASE ... WITH (FORCE)`, which ends its sessions, then
//! created from the dump); without it, it is left alone and listed. Then the server's
//! configuration files (postgresql.conf, pg_hba.conf, ... under its config file's directory or
//! /etc/postgresql) are put back, each current one kept beside it; the server checks them
//! (`pg_file_settings`, `pg_hba_file_rules`: errors roll them back) and reloads; settings that
//! need a restart are named in a note.
//!
//! Every dump streams from lsbackup to `pg_restore` on the host (its stdin), never through a
//! file there; database names reach SQL only as psql variables (`:"name"`, `:'name'`), quoted by
//! psql.

use crate::shell::Script;

use super::{HostRestore, Put, Restore, RestoreError};

pub struct PostgreSql;

/// `f` on a primary, `t` on a standby.
const IN_RECOVERY: &str = r#"exec psql -p "$1" -XtAc 'SELECT pg_is_in_recovery()'"#;

/// Exit 0 when database `$2` exists.
const EXISTS: &str = r#"r=$(psql -p "$1" -XtA -v ON_ERROR_STOP=1 -v name="$2" <<'EOF'
SELECT 1 FROM pg_database WHERE datname = :'name'
EOF
) || exit 2
[ "$r" = 1 ] && exit 0
exit 3"#;

/// The database a `pg_dump -Fc` archive was taken of: the `dbname` of its header (PostgreSQL's
/// `ReadHead`: magic, version, int and offset sizes, format, compression, creation time, then
/// the name as a length-prefixed string). None when the header is not one.
pub fn dump_dbname(b: &[u8]) -> Option<String> {
    if !b.starts_with(b"PGDMP") || b.len() < 11 {
        return None;
    }
    let version = (b[5], b[6]);
    let int_size = b[8] as usize;
    if !(1..=8).contains(&int_size) {
        return None;
    }
    let mut p = 11;
    let int = |p: &mut usize| -> Option<i64> {
        let sign = *b.get(*p)?;
        let mut v: i64 = 0;
        for i in 0..int_size {
            v |= i64::from(*b.get(*p + 1 + i)?) << (8 * i);
        }
        *p += 1 + int_size;
        Some(if sign != 0 { -v } else { v })
    };
    if version >= (1, 15) {
        p += 1; // compression algorithm
    } else if version >= (1, 4) {
        int(&mut p)?; // compression level
    } else {
        return None;
    }
    for _ in 0..7 {
        int(&mut p)?; // creation time
    }
    let len = usize::try_from(int(&mut p)?).ok()?;
    let name = b.get(p..p.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

/// Drop database `$2` (its sessions ended; connected to template1, so `postgres` can go too).
const DROP: &str = r#"exec psql -p "$1" -X -q -v ON_ERROR_STOP=1 -v name="$2" -d template1 <<'EOF'
DROP DATABASE IF EXISTS :"name" WITH (FORCE)
EOF"#;

/// Roles and tablespaces from fd 3: statements for what exists already fail harmlessly; the
/// count of failures is printed (stderr has them).
const GLOBALS: &str = r#"out=$(psql -p "$1" -X -q -d postgres -f - <&3 2>&1 >/dev/null)
printf '%s\n' "$out" | grep -c '^psql:.*ERROR:' || true
printf '%s\n' "$out" | grep '^psql:.*ERROR:' | grep -v 'already exists' | tail -n 3 >&2"#;

/// Create the database of the dump on fd 3 and restore it (connected to template1, so the
/// `postgres` database itself can be restored too).
const RESTORE: &str = r#"exec pg_restore -p "$1" --create --no-password -d template1 <&3"#;

/// `SHOW config_file`.
const CONFIG_FILE: &str = r#"exec psql -p "$1" -XtAc 'SHOW config_file'"#;

/// Lines of postgresql.conf (and its includes) and pg_hba.conf the server cannot use, as it reads
/// the files now (`pg_file_settings`, `pg_hba_file_rules`): `file:line: error`.
const CONFIG_ERRORS: &str = r#"exec psql -p "$1" -XtA -v ON_ERROR_STOP=1 <<'EOF'
SELECT coalesce(sourcefile, '?') || ':' || coalesce(sourceline, 0) || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL
UNION ALL
SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL
EOF"#;

const RELOAD: &str = r#"exec psql -p "$1" -XtAc 'SELECT pg_reload_conf()'"#;

/// Settings changed in the files that only a restart applies.
const PENDING_RESTART: &str = r#"exec psql -p "$1" -XtAc "SELECT string_agg(name, ', ' ORDER BY name) FROM pg_settings WHERE pending_restart""#;

/// The server's configuration files (its config file's directory, /etc/postgresql) put back,
/// checked by the server itself, reloaded; rolled back when it finds errors in them.
async fn config_files(
    r: &mut HostRestore<'_>,
    port: &str,
    u: Option<&str>,
) -> Result<(), RestoreError> {
    let step = "config";
    let conf = r
        .query(step, &Script::new(CONFIG_FILE).arg(port), u)
        .await?
        .stdout_text();
    let dir = conf
        .rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    let done = r
        .put_files(
            &[dir, "/etc/postgresql".to_string()],
            &["globals.sql", "databases"],
        )
        .await?;
    if done.iter().all(|(_, p)| *p == Put::Unchanged) {
        return Ok(());
    }
    if r.is_dry_run() {
        r.say("would check the files (pg_file_settings, pg_hba_file_rules), then reload (pg_reload_conf())");
        return Ok(());
    }
    let errors = r
        .query(step, &Script::new(CONFIG_ERRORS).arg(port), u)
        .await?
        .stdout_text();
    if !errors.is_empty() {
        r.undo(&done).await;
        return Err(r.failed(
            step,
            format!(
                "PostgreSQL finds errors in the restored configuration, which was rolled back: {}",
                crate::engine::clean_text(&errors.replace('\n', "; "))
            ),
        ));
    }
    r.query(step, &Script::new(RELOAD).arg(port), u).await?;
    r.say("reloaded the configuration (pg_reload_conf())");
    let pending = r
        .query(step, &Script::new(PENDING_RESTART).arg(port), u)
        .await?
        .stdout_text();
    if !pending.is_empty() {
        r.note(format!(
            "restart PostgreSQL to apply: {}",
            crate::engine::clean_text(&pending)
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Restore for PostgreSql {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let port = r.var("postgresql_port").to_string();
        let user = r.var("postgresql_user").to_string();
        let u = Some(user.as_str());
        let role = r
            .query("primary", &Script::new(IN_RECOVERY).arg(port.as_str()), u)
            .await?;
        if role.stdout_text() != "f" {
            return Err(r.failed(
                "primary",
                format!(
                    "this server is a standby now (pg_is_in_recovery() = {}): restore into the primary (map it with --only and the inventory)",
                    role.stdout_text()
                ),
            ));
        }
        if r.entry("globals.sql").is_some() {
            let out = r
                .change_with_file(
                    "globals",
                    "restore roles and tablespaces (globals.sql; existing ones are left as they are)",
                    &Script::new(GLOBALS).arg(port.as_str()),
                    u,
                    "globals.sql",
                )
                .await?;
            if let Some(out) = out {
                let failed: u64 = out.stdout_text().parse().unwrap_or(0);
                if failed > 0 {
                    r.say(format!(
                        "{failed} statement(s) of globals.sql failed (roles or tablespaces that exist already keep their settings)"
                    ));
                }
                let other = crate::engine::clean_text(out.exit.stderr_tail.trim());
                if !other.is_empty() {
                    r.note(format!("globals.sql: {other}"));
                }
            }
        }
        let dumps = r.files_under("databases/");
        let mut left = Vec::new();
        for (_, rel) in dumps {
            let Some(name) = rel
                .strip_prefix("databases/")
                .and_then(|n| n.strip_suffix(".dump"))
            else {
                continue;
            };
            let name = name.to_string();
            // The name the dump itself holds is the one pg_restore --create uses.
            let inside = {
                use std::io::Read;
                let mut head = Vec::new();
                std::fs::File::open(r.local(&rel))
                    .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
                    .map_err(|e| r.failed("databases", format!("{rel}: {e}")))?;
                dump_dbname(&head).unwrap_or_default()
            };
            if inside != name {
                return Err(r.failed(
                    "databases",
                    format!(
                        "{rel}: the dump is of database {inside:?}, not {name:?}: not restored"
                    ),
                ));
            }
            let exists = r
                .query_status(
                    "databases",
                    &Script::new(EXISTS).arg(port.as_str()).arg(name.as_str()),
                    u,
                )
                .await?;
            let exists = match exists.exit.code {
                Some(0) => true,
                Some(3) => false,
                _ => {
                    return Err(r.failed(
                        "databases",
                        format!("{name}: {}", crate::engine::exit_text(&exists.exit)),
                    ));
                }
            };
            if exists && !r.yes() {
                left.push(name);
                continue;
            }
            if exists {
                r.change(
                    "databases",
                    &format!("drop database {name:?} (its sessions ended)"),
                    &Script::new(DROP).arg(port.as_str()).arg(name.as_str()),
                    u,
                )
                .await?;
            }
            let size = r.entry(&rel).map_or(0, |e| e.size);
            r.change_with_file(
                "databases",
                &format!(
                    "create database {name:?} from {rel} ({}, pg_restore --create)",
                    super::human_bytes(size)
                ),
                &Script::new(RESTORE).arg(port.as_str()),
                u,
                &rel,
            )
            .await?;
        }
        if !left.is_empty() {
            r.note(format!(
                "left alone, they exist: {} (--yes replaces them)",
                left.iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !r.files_under("etc/").is_empty() {
            config_files(r, &port, u).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header `pg_dump -Fc` 15 writes (format 1.14, 4-byte ints) for database "my db".
    fn header(version: (u8, u8)) -> Vec<u8> {
        let mut b = b"PGDMP".to_vec();
        b.extend([version.0, version.1, 0, 4, 8, 1]);
        let int = |b: &mut Vec<u8>, v: u32| {
            b.push(0);
            b.extend(v.to_le_bytes());
        };
        if version >= (1, 15) {
            b.push(0);
        } else {
            int(&mut b, 0);
        }
        for v in [5, 4, 3, 2, 1, 126, 0] {
            int(&mut b, v);
        }
        int(&mut b, 5);
        b.extend(b"my db");
        int(&mut b, 4);
        b.extend(b"15.1");
        b
    }

    #[test]
    fn dbname_from_the_dump_header() {
        assert_eq!(dump_dbname(&header((1, 14))).as_deref(), Some("my db"));
        assert_eq!(dump_dbname(&header((1, 15))).as_deref(), Some("my db"));
        let h = header((1, 14));
        assert_eq!(dump_dbname(&h[..h.len() - 12]), None);
        assert_eq!(dump_dbname(b"PGDMX"), None);
    }
}
