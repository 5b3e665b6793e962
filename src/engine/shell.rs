//! Small POSIX shell helpers for the commands the engine sends to hosts.

use crate::shell::Script;
pub use crate::shell::quote;

/// The remote script of a `copy` step. The patterns arrive as positional parameters (data,
/// never code): each is expanded as a glob and nothing else (`IFS` empty: no field splitting;
/// expansion results are never re-parsed), the index of each pattern that matches nothing is
/// reported on stderr as `lsbackup-missing: N`, and a tar of the matches (paths relative to `/`)
/// streams to stdout. No match at all gives an empty stdout.
pub fn copy_script(patterns: &[String]) -> Script {
    Script::new(COPY_SCRIPT).args(patterns.iter().cloned())
}

const COPY_SCRIPT: &str = r#"cd / || exit 2
IFS=
n=$#
i=0
while [ "$i" -lt "$n" ]; do
  p=$1
  shift
  found=
  for f in $p; do
    if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "${f#/}"; found=1; fi
  done
  [ -n "$found" ] || echo "lsbackup-missing: $i" >&2
  i=$((i + 1))
done
[ $# -gt 0 ] || exit 0
exec tar --create --file=- --numeric-owner --hard-dereference --ignore-failed-read -- "$@""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_script_runs_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.conf"), "x").unwrap();
        std::fs::write(d.join("b.conf"), "y").unwrap();
        let script = copy_script(&[
            format!("{}/*.conf", d.display()),
            format!("{}/missing", d.display()),
        ]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.to_shell())
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("lsbackup-missing: 1"), "{stderr}");
        // a tar with both files
        let list = std::process::Command::new("tar")
            .arg("-t")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&out.stdout)?;
                c.wait_with_output()
            })
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        assert!(
            names.contains("a.conf") && names.contains("b.conf"),
            "{names}"
        );
        let none = copy_script(&[format!("{}/nothing*", d.display())]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(none.to_shell())
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty());
    }
}
