//! Small POSIX shell helpers for the commands the engine sends to hosts.

use crate::shell::Script;

/// The remote script of a `copy` step, fixed text with the path patterns as positional
/// parameters: expand each pattern (pathname expansion only: `IFS=` turns field splitting off,
/// and an expansion never runs code), report the ones that match nothing on stderr by their
/// 1-based index as `lsbackup-missing: N` ([`missing_patterns`] maps them back), and stream a tar
/// of the rest (paths relative to `/`) to stdout. No match at all gives an empty stdout.
pub fn copy_script(patterns: &[String]) -> Script {
    Script::new(
        r#"cd / || exit 2
IFS=
n=$#
i=0
while [ "$i" -lt "$n" ]; do
  i=$((i + 1))
  p=$1
  shift
  found=
  for f in $p; do
    if [ -e "$f" ] || [ -L "$f" ]; then
      f=${f#/}
      set -- "$@" "${f:-.}"
      found=1
    fi
  done
  [ -n "$found" ] || echo "lsbackup-missing: $i" >&2
done
[ $# -gt 0 ] || exit 0
exec tar --create --file=- --numeric-owner --hard-dereference --ignore-failed-read -- "$@""#,
    )
    .args(patterns.iter().cloned())
}

/// The patterns (as `shown`, same order as given to [`copy_script`]) its stderr reported missing.
pub fn missing_patterns(stderr: &str, shown: &[String]) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("lsbackup-missing: "))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .filter_map(|n| n.checked_sub(1).and_then(|i| shown.get(i)).cloned())
        .collect()
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
            .arg(script.to_shell())
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = ["conf".to_string(), "the missing one".to_string()];
        assert_eq!(
            missing_patterns(&stderr, &shown),
            ["the missing one"],
            "{stderr}"
        );
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
