//! `haproxy`: the configuration directory, LambdaStack's certificate directory, and every
//! certificate, CA, CRL and crt-list file the configuration names, wherever it lives.
//!
//! The `*.cfg` files are read from the host and parsed here ([`words`], [`Refs`]), as HAProxy
//! splits its lines: quotes, backslash escapes and `#` comments; `crt-base`/`ca-base` resolve
//! relative paths; the files a `crt-list` names are read and parsed too. Every path found is
//! copied as one literal path (`HostCtx::copy`): a path is data, never shell text.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Native, NativeRef};
use crate::engine::{At, Failed, HostCtx};
use crate::shell::Script;

/// The declarative facts (see `docs/components.md`); the logic is [`Haproxy`].
pub const SPEC: &str = r#"
name: haproxy
description: HAProxy configuration and the certificates it references
groups: [haproxy]
hosts: first
requires: [haproxy]
vars:
  haproxy_config_dir: /etc/haproxy
  haproxy_ssl_dir: /etc/ssl/haproxy
not_covered:
  - runtime state (stick tables, server states) which HAProxy rebuilds on start
  - paths built from environment variables ($VAR, ${VAR}) in haproxy.cfg, and crt-store sections
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(Haproxy))
}

pub struct Haproxy;

/// Split one configuration line into words as HAProxy does: blanks separate words, `#` starts a
/// comment, a backslash escapes the next character (`\ `, `\#`, `\\`, `\"`, `\'`, and `\t`,
/// `\n`, `\r`, `\xHH`), `"..."` quotes (escapes still apply) and `'...'` quotes (nothing is
/// special inside). Environment variables are left as written (not expanded).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some('t') => cur.push('\t'),
                    Some('n') => cur.push('\n'),
                    Some('r') => cur.push('\r'),
                    Some('x') => {
                        let hex: String =
                            [chars.next(), chars.next()].into_iter().flatten().collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(b) => cur.push(char::from(b)),
                            Err(_) => {
                                cur.push('x');
                                cur.push_str(&hex);
                            }
                        }
                    }
                    Some(o) => cur.push(o),
                    None => {}
                }
            }
            (Some('"'), '"') => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c == ' ' || c == '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `crt-base` / `ca-base` in force (they apply to the lines after them, across files).
#[derive(Debug, Default, Clone)]
pub struct Bases {
    pub crt: Option<String>,
    pub ca: Option<String>,
}

impl Bases {
    /// `p` as HAProxy opens it: absolute as is, else under the base, else under `/` (HAProxy's
    /// working directory when a service manager starts it).
    fn resolve(base: &Option<String>, p: &str) -> String {
        if p.starts_with('/') {
            p.to_string()
        } else {
            match base {
                Some(b) => format!("{}/{p}", b.trim_end_matches('/')),
                None => format!("/{p}"),
            }
        }
    }
}

/// Files the configuration references.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refs {
    /// Certificates (files or directories), CA files, CRLs, ... to copy.
    pub files: Vec<String>,
    /// crt-list files: copied, and read for the certificates they name.
    pub crt_lists: Vec<String>,
}

impl Refs {
    fn push(v: &mut Vec<String>, p: String) {
        if !p.is_empty() && !v.contains(&p) {
            v.push(p);
        }
    }

    /// The references of one configuration file (lines of `bind`, `server`, `default-server`,
    /// `server-template`, and the global file settings), with the bases it sets.
    pub fn parse_cfg(&mut self, text: &str, bases: &mut Bases) {
        for line in text.lines() {
            let w = words(line);
            let Some(first) = w.first() else { continue };
            match first.as_str() {
                "crt-base" if w.len() > 1 => bases.crt = Some(w[1].clone()),
                "ca-base" if w.len() > 1 => bases.ca = Some(w[1].clone()),
                "ssl-dh-param-file" | "issuers-chain-path" if w.len() > 1 => {
                    Self::push(&mut self.files, Bases::resolve(&None, &w[1]))
                }
                "bind" | "server" | "default-server" | "server-template" => {
                    for i in 1..w.len().saturating_sub(1) {
                        let arg = &w[i + 1];
                        match w[i].as_str() {
                            "crt" => Self::push(&mut self.files, Bases::resolve(&bases.crt, arg)),
                            "crt-list" => {
                                Self::push(&mut self.crt_lists, Bases::resolve(&bases.crt, arg))
                            }
                            "ca-file" | "crl-file" | "ca-verify-file" | "ca-sign-file" => {
                                Self::push(&mut self.files, Bases::resolve(&bases.ca, arg))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The certificates a crt-list names: the first word of each line (`crtfile [ssl options]
    /// [sni filters]`), relative ones under `crt-base`. HAProxy (2.6) splits these lines at
    /// blanks only (no quotes, no escapes); `#` starts a comment line.
    pub fn parse_crt_list(&mut self, text: &str, bases: &Bases) {
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with('#') {
                continue;
            }
            if let Some(crt) = line.split_whitespace().next() {
                Self::push(&mut self.files, Bases::resolve(&bases.crt, crt));
            }
        }
    }

    /// Files HAProxy loads beside a certificate when they exist (`ssl-load-extra-files`).
    pub fn extras(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            for ext in [".key", ".ocsp", ".issuer", ".sctl"] {
                if !f.ends_with(ext) {
                    out.push(format!("{f}{ext}"));
                }
            }
        }
        out
    }
}

/// The version in `haproxy -v`'s first line (`HAProxy version 2.6.12-1+deb12u1 2023/12/16 - ...`).
pub fn parse_version(out: &str) -> Option<&str> {
    let first = out.lines().next()?;
    let mut w = first.split_whitespace();
    while let Some(x) = w.next() {
        if x == "version" {
            return w.next();
        }
    }
    None
}

#[async_trait::async_trait]
impl Native for Haproxy {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).cloned().unwrap_or_default();
        let conf = v("haproxy_config_dir");
        vec![
            "version: `haproxy -v`".into(),
            format!(
                "certificates: read {}/*.cfg and the crt-lists they name, parsed by lsbackup (crt, crt-list, ca-file, crl-file, ca-verify-file, ca-sign-file with crt-base/ca-base)",
                conf.trim_end_matches('/')
            ),
            format!(
                "config: copy {} and every file found above (each a literal path)",
                crate::shell::quote_words([conf.as_str(), v("haproxy_ssl_dir").as_str()])
            ),
            "certificate extras: copy <crt>.key/.ocsp/.issuer/.sctl where they exist".into(),
        ]
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        // at once (each on its own channel): the version, and the *.cfg files' names
        let conf = h
            .var("haproxy_config_dir")
            .trim_end_matches('/')
            .to_string();
        const LIST: &str =
            "for f in \"$1\"/*.cfg; do if [ -f \"$f\" ]; then printf '%s\\0' \"$f\"; fi; done";
        let list = Script::new(LIST).arg(conf.as_str());
        let mut v = h.fork();
        h.step("certificates");
        let (version, listed) = tokio::join!(
            async {
                v.run("version", &Script::new("exec haproxy -v"), None, None)
                    .await
            },
            h.run_ok("certificates", &list, None, None),
        );
        h.join(v);
        if let Ok(out) = version
            && out.exit.success()
            && let Some(v) = parse_version(&String::from_utf8_lossy(&out.stdout))
        {
            h.version("haproxy", v);
        }
        let listed = listed.at("certificates")?;
        let cfgs: Vec<String> = listed
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let mut refs = Refs::default();
        let mut bases = Bases::default();
        for cfg in &cfgs {
            match h.read_file("certificates", cfg, None).await {
                Ok(Some(text)) => refs.parse_cfg(&String::from_utf8_lossy(&text), &mut bases),
                Ok(None) => {}
                Err(e) => h.fail("certificates", e),
            }
        }
        for list in refs.crt_lists.clone() {
            match h.read_file("certificates", &list, None).await {
                Ok(Some(text)) => refs.parse_crt_list(&String::from_utf8_lossy(&text), &bases),
                // a missing crt-list is noted by the copy below
                Ok(None) => {}
                Err(e) => h.fail("certificates", e),
            }
        }

        h.step("config");
        let mut paths = vec![conf.clone(), h.var("haproxy_ssl_dir").to_string()];
        for p in refs.files.iter().chain(&refs.crt_lists) {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        h.copy("config", &paths, false).await.at("config")?;

        let extras = refs.extras();
        if !extras.is_empty() {
            h.step("certificate extras");
            if let Err(e) = h.copy("certificate extras", &extras, true).await {
                h.optional_failed("certificate extras", &e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_escapes_comments() {
        assert_eq!(
            words("  bind :443 ssl crt /etc/ssl/a.pem # comment crt /x"),
            ["bind", ":443", "ssl", "crt", "/etc/ssl/a.pem"]
        );
        assert_eq!(
            words(r#"bind :443 crt "/etc/my certs/a.pem" ca-file '/etc/ca $(touch x).pem'"#),
            [
                "bind",
                ":443",
                "crt",
                "/etc/my certs/a.pem",
                "ca-file",
                "/etc/ca $(touch x).pem"
            ]
        );
        assert_eq!(
            words(r"crt /etc/my\ certs/a\#1.pem \x41\tB"),
            ["crt", "/etc/my certs/a#1.pem", "A\tB"]
        );
        assert_eq!(words(r#"x "a\"b" 'c\d' "#), ["x", "a\"b", r"c\d"]);
        assert_eq!(words(r#"x """#), ["x", ""]);
        assert!(words("   # only a comment").is_empty());
    }

    #[test]
    fn references_with_bases_and_hostile_paths() {
        let cfg = r#"
global
    ca-base /etc/ssl/certs
    crt-base "/etc/ssl/my private"
    ssl-dh-param-file /etc/haproxy/dh.pem
frontend https
    bind *:443 ssl crt site.pem crt /abs/other.pem ca-file ca.pem crl-file /etc/crl.pem verify optional
    bind *:8443 ssl crt-list lists/sites.txt
    bind *:9443 ssl crt '$(touch /tmp/lsb-pwned)' crt "evil\nname.pem" crt ;rm\ -rf\ x
    http-request set-header X-Crt crt # not a bind line
backend b
    server s1 10.0.0.1:443 ssl crt client.pem ca-file /etc/haproxy/backend-ca.pem verify required
    default-server ssl ca-verify-file chain.pem
"#;
        let mut refs = Refs::default();
        let mut bases = Bases::default();
        refs.parse_cfg(cfg, &mut bases);
        assert_eq!(
            refs.files,
            [
                "/etc/haproxy/dh.pem",
                "/etc/ssl/my private/site.pem",
                "/abs/other.pem",
                "/etc/ssl/certs/ca.pem",
                "/etc/crl.pem",
                "/etc/ssl/my private/$(touch /tmp/lsb-pwned)",
                "/etc/ssl/my private/evil\nname.pem",
                "/etc/ssl/my private/;rm -rf x",
                "/etc/ssl/my private/client.pem",
                "/etc/haproxy/backend-ca.pem",
                "/etc/ssl/certs/chain.pem",
            ]
        );
        assert_eq!(refs.crt_lists, ["/etc/ssl/my private/lists/sites.txt"]);

        refs.parse_crt_list(
            "# sites\n\n/etc/ssl/a.pem [alpn h2 ssl-min-ver TLSv1.2] a.example.com\n  b$(id)`x`.pem *.example.org !x.example.org\n'q'\n",
            &bases,
        );
        assert!(refs.files.contains(&"/etc/ssl/a.pem".to_string()));
        assert!(
            refs.files
                .contains(&"/etc/ssl/my private/b$(id)`x`.pem".to_string())
        );
        assert!(refs.files.contains(&"/etc/ssl/my private/'q'".to_string()));
        assert!(!refs.files.iter().any(|f| f.contains("example")));

        let extras = refs.extras();
        assert!(extras.contains(&"/abs/other.pem.key".to_string()));
        assert!(extras.contains(&"/abs/other.pem.ocsp".to_string()));
    }

    #[test]
    fn no_base_means_root_and_bases_follow_the_lines() {
        let mut refs = Refs::default();
        let mut bases = Bases::default();
        refs.parse_cfg(
            "frontend a\n  bind :1 ssl crt rel.pem\nglobal\n  crt-base /b\nfrontend c\n  bind :2 ssl crt rel.pem\n  bind :3 ssl crt\n",
            &mut bases,
        );
        assert_eq!(refs.files, ["/rel.pem", "/b/rel.pem"]);
    }

    #[test]
    fn version_from_haproxy_v() {
        assert_eq!(
            parse_version(
                "HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/\nStatus: long-term supported branch\n"
            ),
            Some("2.6.12-1+deb12u1")
        );
        assert_eq!(
            parse_version("HA-Proxy version 1.8.19 2019/02/11"),
            Some("1.8.19")
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn describe_names_the_dirs() {
        let vars: BTreeMap<String, String> = [
            ("haproxy_config_dir", "/etc/haproxy"),
            ("haproxy_ssl_dir", "/etc/ssl/my certs"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let d = Haproxy.describe(&vars).join("\n");
        assert!(
            d.contains("config: copy /etc/haproxy '/etc/ssl/my certs'"),
            "{d}"
        );
    }
}
