//! Host patterns: `name[:port]`, `[v6]:port` and ranges such as `node[01:03]`, `db-[a:c]`,
//! `web[0:10:2]`, as Ansible's `parse_address` (parsing/utils/addresses.py),
//! `_expand_hostpattern` and `expand_hostname_range` (plugins/inventory/__init__.py) handle them.

use std::sync::LazyLock;

use regex::Regex;

/// Most host names one pattern may stand for, and most hosts an inventory may define (see
/// `data`): far more than any cluster, few enough that a range such as `node[1:99999999999]` is
/// an error rather than an exhausted machine (Ansible would try to expand it).
pub(crate) const MAX_HOSTS: usize = 10_000;

const NUMERIC_RANGE: &str = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]";
const HEX_RANGE: &str = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]";
const ALNUM_RANGE: &str = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";

static BRACKETED_HOSTPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[(.+)\]:([0-9]+)$").expect("regex"));
static HOSTPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$").expect("regex"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    let c = format!(r"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{NUMERIC_RANGE})");
    Regex::new(&format!(r"(?i)^(?:{c}\.){{3}}{c}$")).expect("regex")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    let c = format!(r"(?:[0-9a-f]{{1,4}}|{HEX_RANGE})");
    let alts = [
        format!(r"(?:{c}:){{7}}{c}"),
        format!(r"(?:{c}:){{1,6}}:"),
        format!(r"(?:{c}:)(?::{c}){{1,6}}"),
        format!(r"(?:{c}:){{2}}(?::{c}){{1,5}}"),
        format!(r"(?:{c}:){{3}}(?::{c}){{1,4}}"),
        format!(r"(?:{c}:){{4}}(?::{c}){{1,3}}"),
        format!(r"(?:{c}:){{5}}(?::{c}){{1,2}}"),
        format!(r"(?:{c}:){{6}}(?::{c})"),
        format!(r":(?::{c}){{1,6}}"),
        format!(r"{c}?::"),
        format!(r"(?:0:){{6}}(?:{c}\.){{3}}{c}"),
        format!(r"::(?:ffff:)?(?:{c}\.){{3}}{c}"),
        format!(r"(?:0:){{5}}ffff:(?:{c}\.){{3}}{c}"),
    ];
    Regex::new(&format!(r"(?i)^(?:{})$", alts.join("|"))).expect("regex")
});
/// Hostname labels; the "a label may not end with - or _" look-behind of the Python pattern is
/// checked separately (the regex crate has no look-behind).
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    let label = format!(r"(?:\w|{ALNUM_RANGE})(?:[\w-]|{ALNUM_RANGE})*");
    Regex::new(&format!(r"(?i)^{label}(?:\.{label})*$")).expect("regex")
});

fn is_hostname(s: &str) -> bool {
    HOSTNAME.is_match(s) && s.split('.').all(|l| !l.ends_with('-') && !l.ends_with('_'))
}

/// `parse_address(address, allow_ranges=True)`: `(host, port)`, or `None` when the text is not a
/// recognisable host identifier.
pub(crate) fn parse_address(address: &str) -> Option<(String, Option<u64>)> {
    let mut address = address.to_string();
    let mut port = None;
    // Both patterns are tried in turn, the second on what the first left.
    for re in [&*BRACKETED_HOSTPORT, &*HOSTPORT] {
        if let Some(m) = re.captures(&address) {
            let a = m[1].to_string();
            let p = m[2].parse::<u64>().ok()?;
            address = a;
            port = Some(p);
        }
    }
    if IPV4.is_match(&address) || IPV6.is_match(&address) || is_hostname(&address) {
        Some((address, port))
    } else {
        None
    }
}

/// `_expand_hostpattern`: the host names a pattern stands for, and its port.
pub(crate) fn expand_hostpattern(pattern: &str) -> Result<(Vec<String>, Option<u64>), String> {
    let (pat, port) = match parse_address(pattern) {
        Some((h, p)) => (h, p),
        // Not a recognisable address: the whole text is the pattern, without a port.
        None => (pattern.to_string(), None),
    };
    let hosts = if pat.contains('[') {
        expand_hostname_range(&pat)?
    } else {
        vec![pat]
    };
    Ok((hosts, port))
}

const ASCII_LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Python's `int(str)` for range bounds.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let v: i64 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

fn zfill(v: i64, width: usize) -> String {
    let s = v.abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    let pad = width.saturating_sub(s.len() + sign.len());
    format!("{sign}{}{s}", "0".repeat(pad))
}

/// `expand_hostname_range`: expands the first `[beg:end(:step)]` and recurses on the rest.
pub(crate) fn expand_hostname_range(line: &str) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    if line.is_empty() {
        return Ok(all);
    }
    // line.replace('[', '|', 1).replace(']', '|', 1).split('|') must give exactly 3 parts.
    let replaced = line.replacen('[', "|", 1).replacen(']', "|", 1);
    let parts: Vec<&str> = replaced.split('|').collect();
    if parts.len() != 3 {
        return Err(format!(
            "invalid host range in '{line}': expected exactly one '[' and one ']' around a range \
             (a '|' is not allowed in a host name)"
        ));
    }
    let (head, nrange, tail) = (parts[0], parts[1], parts[2]);
    let bounds: Vec<&str> = nrange.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "host range must be begin:end or begin:end:step (in '{line}')"
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step = if bounds.len() == 3 { bounds[2] } else { "1" };
    if end.is_empty() {
        return Err(format!("host range must specify end value (in '{line}')"));
    }
    let rlen = if beg.starts_with('0') && beg.chars().count() > 1 {
        if beg.chars().count() != end.chars().count() {
            return Err(format!(
                "host range must specify equal-length begin and end formats (in '{line}')"
            ));
        }
        Some(beg.chars().count())
    } else {
        None
    };
    let fill = |v: i64| match rlen {
        Some(w) => zfill(v, w),
        None => v.to_string(),
    };
    // Alphabetic range: positions in string.ascii_letters (str.index finds substrings too).
    let alpha = match (ASCII_LETTERS.find(beg), ASCII_LETTERS.find(end)) {
        (Some(ib), Some(ie)) => {
            if ib > ie {
                return Err(format!("host range must have begin <= end (in '{line}')"));
            }
            match py_int(step) {
                Some(s) if s > 0 => Some(
                    ASCII_LETTERS[ib..=ie]
                        .chars()
                        .step_by(s as usize)
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>(),
                ),
                Some(s) if s < 0 => {
                    // Python slice [ib:ie+1:s] with a negative step is empty unless ib > ie.
                    Some(Vec::new())
                }
                _ => None, // step 0 or not a number: falls back to the numeric attempt (fails)
            }
        }
        _ => None,
    };
    let seq: Vec<String> = match alpha {
        Some(v) => v,
        None => {
            let (Some(b), Some(e), Some(s)) = (py_int(beg), py_int(end), py_int(step)) else {
                return Err(format!(
                    "invalid host range [{nrange}] in '{line}': bounds must be numbers or \
                     single letters, and the step a number"
                ));
            };
            if s == 0 {
                return Err(format!("host range step must not be zero (in '{line}')"));
            }
            // In i128: no bound or step of an i64 overflows, and the count is known before
            // any name is made.
            let (b, stop, s) = (i128::from(b), i128::from(e) + 1, i128::from(s));
            let count = match s > 0 {
                true if stop > b => (stop - b + s - 1) / s,
                false if b > stop => (b - stop - s - 1) / -s,
                _ => 0,
            };
            if count > MAX_HOSTS as i128 {
                return Err(too_many(line));
            }
            let mut v = Vec::with_capacity(count as usize);
            let mut i = b;
            while (s > 0 && i < stop) || (s < 0 && i > stop) {
                // Between the two i64 bounds.
                v.push(fill(i as i64));
                i += s;
            }
            v
        }
    };
    for r in seq {
        let hname = format!("{head}{r}{tail}");
        if hname.contains('[') {
            all.extend(expand_hostname_range(&hname)?);
        } else {
            all.push(hname);
        }
        if all.len() > MAX_HOSTS {
            return Err(too_many(line));
        }
    }
    Ok(all)
}

fn too_many(line: &str) -> String {
    format!("host range in '{line}' stands for more than {MAX_HOSTS} hosts (lsbackup's limit)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(p: &str) -> (Vec<String>, Option<u64>) {
        expand_hostpattern(p).unwrap()
    }

    #[test]
    fn plain_hosts_and_ports() {
        assert_eq!(exp("node1"), (vec!["node1".into()], None));
        assert_eq!(exp("node1:2222"), (vec!["node1".into()], Some(2222)));
        assert_eq!(exp("10.0.0.1:22"), (vec!["10.0.0.1".into()], Some(22)));
        assert_eq!(exp("[::1]:2222"), (vec!["::1".into()], Some(2222)));
        assert_eq!(exp("fe80::1"), (vec!["fe80::1".into()], None));
        assert_eq!(exp("db.example.com"), (vec!["db.example.com".into()], None));
        // Not a valid hostname: the whole text is the name, no port.
        assert_eq!(exp("foo_:22"), (vec!["foo_:22".into()], None));
        assert_eq!(exp("user@host:22"), (vec!["user@host:22".into()], None));
    }

    #[test]
    fn numeric_ranges() {
        assert_eq!(exp("node[1:3]").0, ["node1", "node2", "node3"]);
        assert_eq!(exp("node[01:03]").0, ["node01", "node02", "node03"]);
        assert_eq!(
            exp("node[01:10:3]").0,
            ["node01", "node04", "node07", "node10"]
        );
        assert_eq!(exp("node[:2]").0, ["node0", "node1", "node2"]);
        assert_eq!(
            exp("node[1:2]:2200"),
            (vec!["node1".into(), "node2".into()], Some(2200))
        );
        assert_eq!(exp("10.0.0.[1:2]").0, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(exp("r[1:2]-n[a:b]").0, ["r1-na", "r1-nb", "r2-na", "r2-nb"]);
    }

    #[test]
    fn alphabetic_ranges() {
        assert_eq!(exp("db-[a:c]").0, ["db-a", "db-b", "db-c"]);
        assert_eq!(exp("db-[a:e:2]").0, ["db-a", "db-c", "db-e"]);
        assert_eq!(exp("x[y:B]").0, ["xy", "xz", "xA", "xB"]);
    }

    #[test]
    fn bad_ranges() {
        assert!(
            expand_hostpattern("node[01:3]")
                .unwrap_err()
                .contains("equal-length")
        );
        assert!(
            expand_hostpattern("node[1:]")
                .unwrap_err()
                .contains("end value")
        );
        assert!(
            expand_hostpattern("node[1]")
                .unwrap_err()
                .contains("begin:end")
        );
        assert!(
            expand_hostpattern("node[c:a]")
                .unwrap_err()
                .contains("begin <= end")
        );
        assert!(expand_hostpattern("node[1:x]").is_err());
        assert!(expand_hostpattern("[::1]").is_err());
    }

    /// Hostile input (docs/fuzzing.md, fuzz/regressions/ini_inventory): bounds at the ends of
    /// i64 overflowed (a panic), and a huge range was expanded whole (a hang, then out of memory).
    #[test]
    fn huge_ranges_are_refused_not_expanded() {
        for p in [
            "h[0:9223372036854775807]",
            "h[9223372036854775807:0:-1]",
            "h[0:99999999999]",
            "h[1:10001]",
            "h[0:99][0:99][0:99]",
        ] {
            let e = expand_hostpattern(p).unwrap_err();
            assert!(e.contains("more than 10000 hosts"), "{p}: {e}");
        }
        assert_eq!(exp("h[1:10000]").0.len(), 10_000);
        assert_eq!(exp("h[1:100][1:100]").0.len(), 10_000);
        assert_eq!(
            exp("h[9223372036854775806:9223372036854775807]").0,
            ["h9223372036854775806", "h9223372036854775807"]
        );
        assert_eq!(
            exp("h[-9223372036854775807:9223372036854775807:9223372036854775807]").0,
            ["h-9223372036854775807", "h0", "h9223372036854775807"]
        );
        // range(3, 1 + 1, -1), as in Python.
        assert_eq!(exp("h[3:1:-1]").0, ["h3"]);
        assert_eq!(exp("h[1:3:-1]").0, Vec::<String>::new());
    }

    /// The inputs libFuzzer timed out on (fuzz/regressions/*/timeout-*): host ranges of tens of
    /// thousands of hosts in one group, each host added after a search of the group's hosts.
    #[test]
    fn fuzzed_range_inventories_are_refused() {
        let ini = include_bytes!(
            "../../fuzz/regressions/ini_inventory/timeout-4ba6b2ff9e943062d39768648e8b56db59152b41"
        );
        let yaml = include_bytes!(
            "../../fuzz/regressions/yaml_inventory/timeout-9fd0aa95009e730745debca8b58b2c0d1a65b6c8"
        );
        for (name, bytes) in [("hosts.ini", &ini[..]), ("hosts.yml", &yaml[..])] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let e = crate::inventory::Inventory::load(&path)
                .unwrap_err()
                .to_string();
            assert!(e.contains("more than 10000 hosts"), "{name}: {e}");
        }
    }

    #[test]
    fn address_classes() {
        assert!(IPV4.is_match("10.1.2.3"));
        assert!(IPV6.is_match("::ffff:10.1.2.3"));
        assert!(!IPV4.is_match("node1.example") && !IPV6.is_match("node1.example"));
        assert!(parse_address("a-.b").is_none());
        assert!(parse_address("a_b.c").is_some());
    }
}
