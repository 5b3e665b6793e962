//! Small POSIX shell helpers for the commands the engine sends to hosts.

pub use crate::shell::quote;

/// The remote script of a `copy` step: expand the patterns (globs and space-separated lists),
/// report the ones that match nothing on stderr as `lsbackup-missing: PATTERN`, and stream a tar
/// of the rest (paths relative to `/`) to stdout. No match at all gives an empty stdout.
pub fn copy_script(patterns: &[String]) -> String {
    let words = patterns.join(" ");
    format!(
        r#"cd / || exit 2
set --
for p in {words}; do
  if [ -e "$p" ] || [ -L "$p" ]; then set -- "$@" "${{p#/}}"; else echo "lsbackup-missing: $p" >&2; fi
done
[ $# -gt 0 ] || exit 0
exec tar --create --file=- --numeric-owner --hard-dereference --ignore-failed-read -- "$@""#
    )
}

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
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("lsbackup-missing:"), "{stderr}");
        assert!(stderr.contains("/missing"), "{stderr}");
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
            .arg(&none)
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty());
    }
}
