//! Where an object-store target finds its endpoint and credentials: the variables and files users
//! already keep for the AWS and Azure command-line tools, and `--target-setting KEY=SOURCE`
//! (also a `target-setting:` list in a `--config` file) naming, by reference, where a value is.
//!
//! Order, first found wins: a `--target-setting`, then the environment variable of the same name
//! in capitals (`AWS_ACCESS_KEY_ID`, ...), then for S3 the profile files (`~/.aws/credentials`,
//! `~/.aws/config`, profile `AWS_PROFILE` or `default`). Whatever none of these gives is left to
//! the object_store crate's own chain (web identity, container and instance credentials for S3;
//! managed identity and the rest for Azure).
//!
//! Secrets (keys, tokens, connection strings) are only taken by reference, `env:NAME` or
//! `file:PATH`: a value written inline in a config file would sit in a file that is often
//! world-readable and versioned, and on a command line in `/proc/*/cmdline`. No value is ever
//! printed: [`Settings`] has no `Debug` that shows them.
//!
//! The profile files are read by hand (a few lines of INI): the AWS SDK that reads them is a
//! large dependency for two sections of a text file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::TargetError;

/// Setting keys a `--target-setting` may name (lower case, as the variables are spelled in
/// capitals), and whether the value is a secret (given only by reference).
pub const KEYS: &[(&str, bool)] = &[
    ("aws_access_key_id", true),
    ("aws_secret_access_key", true),
    ("aws_session_token", true),
    ("aws_region", false),
    ("aws_default_region", false),
    ("aws_profile", false),
    ("aws_endpoint_url", false),
    ("aws_endpoint_url_s3", false),
    ("azure_storage_connection_string", true),
    ("azure_storage_account", false),
    ("azure_storage_key", true),
    ("azure_storage_sas_token", true),
];

/// Settings given with `--target-setting`, resolved (file contents read, env vars looked up).
#[derive(Default, Clone)]
pub struct Settings {
    given: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be secrets.
        f.debug_struct("Settings")
            .field("keys", &self.given.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bad(cause: impl Into<String>) -> TargetError {
    TargetError::Setting(cause.into())
}

impl Settings {
    /// Parse `KEY=env:NAME`, `KEY=file:PATH` or, for a key that is not a secret, `KEY=VALUE`.
    pub fn parse(items: &[String]) -> Result<Settings, TargetError> {
        let mut given = BTreeMap::new();
        for item in items {
            let (key, source) = item.split_once('=').ok_or_else(|| {
                bad(format!(
                    "--target-setting {item:?}: expected KEY=env:NAME or KEY=file:PATH"
                ))
            })?;
            let key = key.trim().to_ascii_lowercase();
            let Some(&(_, secret)) = KEYS.iter().find(|(k, _)| *k == key) else {
                let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                return Err(bad(format!(
                    "--target-setting: unknown key {key:?} (known: {})",
                    known.join(", ")
                )));
            };
            let value = if let Some(var) = source.strip_prefix("env:") {
                std::env::var(var).map_err(|_| {
                    bad(format!(
                        "--target-setting {key}: environment variable {var} is not set"
                    ))
                })?
            } else if let Some(path) = source.strip_prefix("file:") {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("--target-setting {key}: reading {path}: {e}")))?;
                text.trim_end_matches(['\n', '\r']).to_string()
            } else if secret {
                return Err(bad(format!(
                    "--target-setting {key}: a secret is taken by reference only, env:NAME or file:PATH (an inline value would be readable in the config file or in /proc/*/cmdline)"
                )));
            } else {
                source.to_string()
            };
            given.insert(key, value);
        }
        Ok(Settings { given })
    }

    /// The value of `key` (lower case): a `--target-setting`, else the environment variable
    /// of that name in capitals. Empty values count as unset.
    pub fn get(&self, key: &str) -> Option<String> {
        self.given
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key.to_ascii_uppercase()).ok())
            .filter(|v| !v.is_empty())
    }
}

/// What the AWS profile files give for one profile.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct AwsProfile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Read profile `name` from the AWS credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
/// `~/.aws/credentials`, sections `[name]`) and config file (`AWS_CONFIG_FILE`, default
/// `~/.aws/config`, sections `[profile name]`, or `[default]`). Missing files are no error.
pub fn aws_profile(name: &str) -> AwsProfile {
    let creds = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")));
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
    profile_from(name, read(creds).as_deref(), read(config).as_deref())
}

/// [`aws_profile`] on the files' text.
pub fn profile_from(name: &str, credentials: Option<&str>, config: Option<&str>) -> AwsProfile {
    let c = credentials
        .map(|t| ini_section(t, |s| s == name))
        .unwrap_or_default();
    let config_section = |s: &str| {
        if name == "default" {
            s == "default" || s == "profile default"
        } else {
            s.strip_prefix("profile ").map(str::trim) == Some(name)
        }
    };
    let f = config
        .map(|t| ini_section(t, config_section))
        .unwrap_or_default();
    let pick = |k: &str| c.get(k).or_else(|| f.get(k)).cloned();
    AwsProfile {
        access_key_id: pick("aws_access_key_id"),
        secret_access_key: pick("aws_secret_access_key"),
        session_token: pick("aws_session_token"),
        region: f.get("region").or_else(|| c.get("region")).cloned(),
        endpoint_url: f
            .get("endpoint_url")
            .or_else(|| c.get("endpoint_url"))
            .cloned(),
    }
}

/// `key = value` lines of the first section whose name `want` accepts (`#`/`;` comments;
/// indented lines, which belong to a nested block such as `s3 =`, are skipped).
fn ini_section(text: &str, want: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    let mut seen = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            if seen && inside {
                break;
            }
            inside = want(name.trim());
            seen |= inside;
            continue;
        }
        if !inside || line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// An Azure storage connection string's fields (`AccountName=...;AccountKey=...;...`), keys
/// as written. `UseDevelopmentStorage=true` expands to the Azurite defaults.
pub fn connection_string(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for part in s.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if out
        .get("UseDevelopmentStorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        out.entry("AccountName".into())
            .or_insert_with(|| "devstoreaccount1".into());
        out.entry("AccountKey".into()).or_insert_with(|| {
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".into()
        });
        out.entry("BlobEndpoint".into())
            .or_insert_with(|| "http://127.0.0.1:10000/devstoreaccount1".into());
        out.entry("FileEndpoint".into())
            .or_insert_with(|| "http://127.0.0.1:10004/devstoreaccount1".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_from_both_files() {
        let creds = "[default]\naws_access_key_id = AKD\naws_secret_access_key = SD\n\n[prod]\naws_access_key_id=AKP\naws_secret_access_key=SP\naws_session_token = TP\n";
        let config = "[default]\nregion = eu-west-1\n[profile prod]\nregion = us-east-2\nendpoint_url = http://minio:9000\ns3 =\n  addressing_style = path\n";
        let d = profile_from("default", Some(creds), Some(config));
        assert_eq!(d.access_key_id.as_deref(), Some("AKD"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.endpoint_url, None);
        let p = profile_from("prod", Some(creds), Some(config));
        assert_eq!(
            p,
            AwsProfile {
                access_key_id: Some("AKP".into()),
                secret_access_key: Some("SP".into()),
                session_token: Some("TP".into()),
                region: Some("us-east-2".into()),
                endpoint_url: Some("http://minio:9000".into()),
            }
        );
        assert_eq!(
            profile_from("nope", Some(creds), Some(config)),
            AwsProfile::default()
        );
    }

    #[test]
    fn settings_take_secrets_by_reference_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let s = Settings::parse(&[
            format!("aws_secret_access_key=file:{}", f.display()),
            "AWS_REGION=eu-central-1".into(),
        ])
        .unwrap();
        assert_eq!(s.get("aws_secret_access_key").as_deref(), Some("s3cr3t"));
        assert_eq!(s.get("aws_region").as_deref(), Some("eu-central-1"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let e = Settings::parse(&["aws_secret_access_key=inline".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("by reference only"), "{e}");
        let e = Settings::parse(&["aws_secret_access_key=env:LSB_SURELY_UNSET_VAR".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("LSB_SURELY_UNSET_VAR is not set"), "{e}");
        assert!(Settings::parse(&["nonsense=x".into()]).is_err());
    }

    #[test]
    fn connection_strings() {
        let c = connection_string(
            "DefaultEndpointsProtocol=http;AccountName=acc;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/acc;",
        );
        assert_eq!(c["AccountName"], "acc");
        assert_eq!(c["AccountKey"], "a2V5");
        assert_eq!(c["BlobEndpoint"], "http://127.0.0.1:10000/acc");
        let d = connection_string("UseDevelopmentStorage=true");
        assert_eq!(d["AccountName"], "devstoreaccount1");
        assert!(d["BlobEndpoint"].starts_with("http://127.0.0.1:10000"));
    }
}
