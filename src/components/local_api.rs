//! Helpers of the native components that speak a host's local HTTP API (Elasticsearch,
//! Kibana): where the config lives, which addresses the service may listen on, the config file
//! read as YAML, API errors as one line. Everything read from the host is parsed here, in Rust;
//! the scripts are fixed text with the values as positional parameters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::{HostCtx, StepError, clean_text};
use crate::http::{HttpClient, HttpError};
use crate::shell::Script;

/// Prints the first of its arguments that is a regular file; exit 3 when none is.
pub(crate) const FIRST_FILE: &str =
    r#"for f in "$@"; do if [ -f "$f" ]; then printf '%s\n' "$f"; exit 0; fi; done; exit 3"#;

/// The names of the regular files in directory `$1`, NUL-terminated; exit 3 when it is no
/// directory.
pub(crate) const LIST_FILES: &str = r#"cd -- "$1" 2>/dev/null || exit 3
for f in * .[!.]*; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done
exit 0"#;

/// The host's name, then its addresses.
const HOST_ADDRESSES: &str = "hostname 2>/dev/null; echo; hostname -I 2>/dev/null; exit 0";

/// `dir/file` for every dir and file, dirs first: what [`FIRST_FILE`] tries, in order.
pub fn config_candidates<D: AsRef<str>>(dirs: &[D], files: &[&str]) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| files.iter().map(move |f| format!("{}/{f}", d.as_ref())))
        .collect()
}

/// The first existing file among `dir/file` for every dir and file (dirs first): its directory
/// and file name.
pub async fn find_config(
    h: &mut HostCtx<'_>,
    step: &str,
    dirs: &[&str],
    files: &[&str],
) -> Result<Option<(String, String)>, StepError> {
    let candidates = config_candidates(dirs, files);
    let out = h
        .run(step, &Script::new(FIRST_FILE).args(candidates), None, None)
        .await?;
    match out.exit.code {
        Some(0) => {
            let path = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
            Ok(path
                .rsplit_once('/')
                .map(|(d, f)| (d.to_string(), f.to_string())))
        }
        Some(3) => Ok(None),
        _ => Err(StepError::command(&out.exit)),
    }
}

/// The names of the regular files in `dir` on the host (empty when it is no directory).
pub async fn list_files(
    h: &mut HostCtx<'_>,
    step: &str,
    dir: &str,
) -> Result<Vec<String>, StepError> {
    let out = h
        .run(step, &Script::new(LIST_FILES).arg(dir), None, None)
        .await?;
    match out.exit.code {
        Some(0) => Ok(parse_nul_list(&out.stdout)),
        Some(3) => Ok(vec![]),
        _ => Err(StepError::command(&out.exit)),
    }
}

/// NUL-terminated names; names that are not UTF-8 or hold a `/` are dropped.
pub fn parse_nul_list(bytes: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Where a service on the host may listen besides `127.0.0.1`: the host's name and its IPv4
/// addresses (as `hostname` and `hostname -I` print them), in that order.
pub async fn host_addresses(h: &mut HostCtx<'_>, step: &str) -> Vec<String> {
    match h.run(step, &Script::new(HOST_ADDRESSES), None, None).await {
        Ok(out) => parse_addresses(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => vec![],
    }
}

/// `hostname` output, an empty line, `hostname -I` output: plausible host names and IPv4
/// addresses only (anything else a host prints is dropped).
pub fn parse_addresses(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let ok = word.parse::<Ipv4Addr>().is_ok() || is_host_name(word);
        if ok && !out.iter().any(|w| w == word) {
            out.push(word.to_string());
        }
    }
    out
}

/// A DNS name (letters, digits, `-`, `.`), not an IPv6 address.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A config file (elasticsearch.yml, kibana.yml) as flat dotted keys: `server.port: 5601` and
/// `server:\n  port: 5601` both give `server.port`. Values: scalars as text, sequences as
/// lists of text.
pub fn flat_yaml(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(a) => {
                out.insert(
                    prefix.to_string(),
                    a.iter().filter_map(scalar_text).collect(),
                );
            }
            other => {
                if let Some(s) = scalar_text(other) {
                    out.insert(prefix.to_string(), vec![s]);
                }
            }
        }
    }
    match &v {
        Value::Object(_) => walk("", &v, &mut out),
        Value::Null => {}
        _ => return Err("not a mapping of settings".into()),
    }
    Ok(out)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first value of a key of a [`flat_yaml`] map.
pub fn first<'a>(conf: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    conf.get(key)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// How a probe of a URL went.
pub enum Probe {
    /// A 2xx answer.
    Ok(Bytes),
    /// Something answered there, but not usefully (an HTTP error, a TLS failure): why.
    Refused(String),
    /// Nothing answers there (nothing listening, no answer in time): why.
    Silent(String),
}

/// `GET path` as a probe (recorded in the manifest as `GET URL`).
pub async fn probe(
    h: &mut HostCtx<'_>,
    step: &str,
    c: &HttpClient,
    path: &str,
    error_text: fn(StatusCode, &[u8]) -> String,
) -> Probe {
    let t = Instant::now();
    let call = format!("GET {}{path}", c.endpoint());
    let r = c.send(Method::GET, path, None).await;
    let status = r.as_ref().ok().map(|r| r.status.as_u16());
    h.record_call(step, &call, status, t);
    match r {
        Ok(resp) if resp.status.is_success() => Probe::Ok(resp.body),
        Ok(resp) => Probe::Refused(format!(
            "GET {path}: {}",
            error_text(resp.status, &resp.body)
        )),
        Err(e @ (HttpError::Tunnel(_) | HttpError::Timeout { .. })) => {
            Probe::Silent(StepError::from(e).cause)
        }
        Err(e) => Probe::Refused(StepError::from(e).cause),
    }
}

/// An API call that must succeed: recorded as `METHOD PATH` with its status; a non-2xx answer
/// is an error `METHOD PATH: HTTP CODE ...` (`error_text` reads the service's error body).
pub async fn call(
    h: &mut HostCtx<'_>,
    step: &str,
    c: &HttpClient,
    method: Method,
    path: &str,
    body: Option<&Value>,
    error_text: fn(StatusCode, &[u8]) -> String,
) -> Result<Bytes, StepError> {
    let (status, bytes) = call_any(h, step, c, method.clone(), path, body).await?;
    if status.is_success() {
        Ok(bytes)
    } else {
        Err(StepError::api(format!(
            "{method} {path}: {}",
            error_text(status, &bytes)
        )))
    }
}

/// An API call whose every answer is returned (status, body); recorded as `METHOD PATH`.
pub async fn call_any(
    h: &mut HostCtx<'_>,
    step: &str,
    c: &HttpClient,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Bytes), StepError> {
    let t = Instant::now();
    let r = c.send(method.clone(), path, body).await;
    let status = r.as_ref().ok().map(|r| r.status.as_u16());
    h.record_call(step, &format!("{method} {path}"), status, t);
    let r = r?;
    Ok((r.status, r.body))
}

/// A one-line excerpt of a body that is not the JSON expected.
pub fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    clean_text(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of text from a service (reasons, names): control characters replaced, whitespace
/// collapsed, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let s: String = clean_text(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// `Deserialize` for a value given either as one string or as a list of strings (`path.repo`,
/// `server.ssl.certificateAuthorities`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => s
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_lists_drop_odd_names() {
        let names = parse_nul_list(b"b.pem\0a.pem\0\0x/y\0\xff\xfe\0");
        assert_eq!(names, vec!["a.pem", "b.pem"]);
    }

    #[test]
    fn addresses_only_plausible_words() {
        let a = parse_addresses("node2\n\n10.0.0.3 fe80::1 127.0.0.3 $(reboot) 10.0.0.3 ;rm\n");
        assert_eq!(a, vec!["node2", "10.0.0.3", "127.0.0.3"]);
    }

    #[test]
    fn yaml_flat_and_nested() {
        let c = flat_yaml(
            "server.port: 5601\nserver:\n  host: \"0.0.0.0\"\npath.repo: [\"/a\", \"/b\"]\nelasticsearch.password: 'p:w \"x'\nssl.enabled: true\n",
        )
        .unwrap();
        assert_eq!(first(&c, "server.port"), Some("5601"));
        assert_eq!(first(&c, "server.host"), Some("0.0.0.0"));
        assert_eq!(c["path.repo"], vec!["/a", "/b"]);
        assert_eq!(first(&c, "elasticsearch.password"), Some("p:w \"x"));
        assert_eq!(first(&c, "ssl.enabled"), Some("true"));
        assert!(flat_yaml("").unwrap().is_empty());
        assert!(flat_yaml("- a\n- b\n").is_err());
    }

    #[test]
    fn one_or_many() {
        let v: OneOrMany = serde_json::from_str("\"/a, /b\"").unwrap();
        assert_eq!(v.to_vec(), vec!["/a", "/b"]);
        let v: OneOrMany = serde_json::from_str("[\"/a\"]").unwrap();
        assert_eq!(v.to_vec(), vec!["/a"]);
        assert_eq!(OneOrMany::default().to_vec(), Vec::<String>::new());
    }
}
