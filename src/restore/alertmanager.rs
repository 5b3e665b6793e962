//! Restore Alertmanager: its configuration file and notification templates are put back (each
//! current file kept beside it as `FILE.lsbackup-<time>`), Alertmanager reloads them
//! (`POST /-/reload`; a configuration it refuses is rolled back and reloaded again), and the
//! silences that were active or pending at backup time and have not ended since are created
//! again through the API (`POST /api/v2/silences`), unless an identical one exists.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HostRestore, Put, Restore, RestoreError};

pub struct Alertmanager;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex", default)]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes", skip_serializing_if = "is_true")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, Deserialize)]
pub struct Silence {
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "createdBy", default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub status: SilenceStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SilenceStatus {
    #[serde(default)]
    pub state: String,
}

/// The body of `POST /api/v2/silences` for a new silence.
#[derive(Debug, Serialize)]
struct NewSilence<'a> {
    matchers: &'a [Matcher],
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: &'a str,
    #[serde(rename = "createdBy")]
    created_by: &'a str,
    comment: &'a str,
}

/// The silences of the backup to create again: active or pending then, ending after `now`, and
/// not already present (same matchers and end) among `current`'s unexpired ones.
pub fn to_recreate<'a>(
    backed_up: &'a [Silence],
    current: &[Silence],
    now: jiff::Timestamp,
) -> Vec<&'a Silence> {
    backed_up
        .iter()
        .filter(|s| matches!(s.status.state.as_str(), "active" | "pending"))
        .filter(|s| {
            s.ends_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|end| end > now)
        })
        .filter(|s| {
            !current.iter().any(|c| {
                c.status.state != "expired" && c.matchers == s.matchers && c.ends_at == s.ends_at
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl Restore for Alertmanager {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let config = r.var("alertmanager_config_file").to_string();
        let dir = config
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let roots = vec![
            dir,
            "/etc/prometheus".to_string(),
            "/etc/alertmanager".to_string(),
        ];
        let done = r
            .put_files(&roots, &["status.json", "silences.json"])
            .await?;
        let client = r.api_client("alertmanager", TIMEOUT).await?;
        let url = r.var("alertmanager_url").trim_end_matches('/').to_string();
        if done.iter().any(|(_, p)| *p != Put::Unchanged) {
            if r.is_dry_run() {
                r.say(format!("would reload Alertmanager (POST {url}/-/reload)"));
            } else {
                let reload = client
                    .send(http::Method::POST, "/-/reload", None)
                    .await
                    .map_err(|e| r.failed("reload", e))?;
                if !reload.status.is_success() {
                    let why = String::from_utf8_lossy(&reload.body).trim().to_string();
                    r.undo(&done).await;
                    let _ = client.send(http::Method::POST, "/-/reload", None).await;
                    return Err(r.failed(
                        "reload",
                        format!(
                            "Alertmanager refused the restored configuration ({}: {}); the previous files were put back and reloaded",
                            reload.status,
                            crate::engine::clean_text(&why)
                        ),
                    ));
                }
                r.say(format!("reloaded Alertmanager (POST {url}/-/reload)"));
            }
        }
        if r.entry("silences.json").is_none() {
            return Ok(());
        }
        let backed_up: Vec<Silence> = serde_json::from_slice(&r.read_local("silences.json")?)
            .map_err(|e| r.failed("silences", format!("silences.json: {e}")))?;
        let current: Vec<Silence> = client
            .get_json("/api/v2/silences")
            .await
            .map_err(|e| r.failed("silences", e))?;
        let now = jiff::Timestamp::now();
        let todo = to_recreate(&backed_up, &current, now);
        if todo.is_empty() {
            r.say("silences: none to create (none active at backup time, ended, or present)");
        }
        for s in todo {
            let what: Vec<String> = s
                .matchers
                .iter()
                .map(|m| {
                    let op = match (m.is_equal, m.is_regex) {
                        (true, false) => "=",
                        (false, false) => "!=",
                        (true, true) => "=~",
                        (false, true) => "!~",
                    };
                    format!("{}{op}{:?}", m.name, m.value)
                })
                .collect();
            r.say(format!(
                "{}create silence {{{}}} until {}",
                r.would(),
                crate::engine::clean_text(&what.join(",")),
                s.ends_at
            ));
            if r.is_dry_run() {
                continue;
            }
            let body = NewSilence {
                matchers: &s.matchers,
                starts_at: now.to_string(),
                ends_at: &s.ends_at,
                created_by: &s.created_by,
                comment: &s.comment,
            };
            let _: serde_json::Value = client
                .post_json("/api/v2/silences", &body)
                .await
                .map_err(|e| r.failed("silences", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(state: &str, ends: &str, value: &str) -> Silence {
        Silence {
            matchers: vec![Matcher {
                name: "alertname".into(),
                value: value.into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: "2026-01-01T00:00:00Z".into(),
            ends_at: ends.into(),
            created_by: "ops".into(),
            comment: "c".into(),
            status: SilenceStatus {
                state: state.into(),
            },
        }
    }

    #[test]
    fn only_live_missing_silences_are_recreated() {
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let backed = vec![
            silence("active", "2027-01-01T00:00:00Z", "A"),
            silence("expired", "2027-01-01T00:00:00Z", "B"),
            silence("active", "2026-05-01T00:00:00Z", "C"),
            silence("pending", "2027-01-01T00:00:00Z", "D"),
            silence("active", "2027-01-01T00:00:00Z", "E"),
        ];
        let current = vec![
            silence("active", "2027-01-01T00:00:00Z", "D"),
            silence("expired", "2027-01-01T00:00:00Z", "E"),
        ];
        let got: Vec<&str> = to_recreate(&backed, &current, now)
            .iter()
            .map(|s| s.matchers[0].value.as_str())
            .collect();
        assert_eq!(got, ["A", "E"]);
    }
}
