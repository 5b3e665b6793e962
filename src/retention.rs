//! Which backups to keep: restic's `forget` policy, on the times in lsbackup's archive names.
//!
//! Backups are taken newest first. `--keep-last N` keeps the N newest. Each of `--keep-hourly`,
//! `--keep-daily`, `--keep-weekly`, `--keep-monthly`, `--keep-yearly N` keeps, for the N most
//! recent hours (days, ISO weeks, months, years) that have a backup, the newest backup of that
//! period; periods without a backup do not count. A backup is kept when any rule keeps it, and
//! the reasons are all the rules that did. Times are UTC (the names' timestamps).
//!
//! Two guards beyond restic: the newest backup is always kept, and so is the newest one whose
//! manifest says `ok`, when its status is known (a run of partial backups never prunes away the
//! last complete one).

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// How many to keep per rule; `None` = rule not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|r| r.is_none())
    }
}

/// One backup to decide on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// Epoch seconds, UTC.
    pub time: i64,
    /// `Some(true)` when its manifest says ok, `Some(false)` when not, `None` when unknown.
    pub complete: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub time: i64,
    pub keep: bool,
    /// Why it is kept (`last`, `hourly`, ..., `newest`, `newest complete`); empty when removed.
    pub reasons: Vec<String>,
}

fn bucket(kind: &str, t: i64) -> String {
    let z = Timestamp::from_second(t)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC);
    match kind {
        "hourly" => z.strftime("%Y-%m-%d %H").to_string(),
        "daily" => z.strftime("%Y-%m-%d").to_string(),
        "weekly" => z.strftime("%G-W%V").to_string(),
        "monthly" => z.strftime("%Y-%m").to_string(),
        _ => z.strftime("%Y").to_string(),
    }
}

/// Decide for every candidate (any order in, newest first out).
pub fn apply(policy: &Policy, candidates: &[Candidate]) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut rules: Vec<(&str, Option<u32>, Option<String>)> = vec![
        ("last", policy.last, None),
        ("hourly", policy.hourly, None),
        ("daily", policy.daily, None),
        ("weekly", policy.weekly, None),
        ("monthly", policy.monthly, None),
        ("yearly", policy.yearly, None),
    ];
    let newest_complete = sorted.iter().position(|c| c.complete == Some(true));
    sorted
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut reasons = Vec::new();
            for (kind, left, last) in rules.iter_mut() {
                let Some(n) = left else { continue };
                if *n == 0 {
                    continue;
                }
                let key = if *kind == "last" {
                    c.name.clone()
                } else {
                    bucket(kind, c.time)
                };
                if last.as_deref() != Some(key.as_str()) {
                    *last = Some(key);
                    *n -= 1;
                    reasons.push(kind.to_string());
                }
            }
            if i == 0 {
                reasons.push("newest".into());
            }
            if Some(i) == newest_complete && i != 0 {
                reasons.push("newest complete".into());
            }
            Decision {
                name: c.name.clone(),
                time: c.time,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn cands(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .map(|t| Candidate {
                name: format!("lsbackup-{t}"),
                time: at(t),
                complete: Some(true),
            })
            .collect()
    }

    fn kept(d: &[Decision]) -> Vec<String> {
        d.iter()
            .filter(|d| d.keep)
            .map(|d| d.name.trim_start_matches("lsbackup-").to_string())
            .collect()
    }

    #[test]
    fn keep_last_and_daily_like_restic() {
        // Three backups a day for four days, and one a month earlier.
        let c = cands(&[
            "2026-12-01T01:00:00Z",
            "2026-12-01T09:00:00Z",
            "2026-12-01T17:00:00Z",
            "2026-12-02T01:00:00Z",
            "2026-12-02T09:00:00Z",
            "2026-12-02T17:00:00Z",
            "2026-12-03T01:00:00Z",
            "2026-12-03T09:00:00Z",
            "2026-12-04T01:00:00Z",
            "2026-11-01T12:00:00Z",
        ]);
        let d = apply(
            &Policy {
                last: Some(2),
                daily: Some(3),
                ..Default::default()
            },
            &c,
        );
        assert_eq!(
            kept(&d),
            vec![
                "2026-12-04T01:00:00Z",
                "2026-12-03T09:00:00Z",
                "2026-12-02T17:00:00Z"
            ]
        );
        assert_eq!(d[0].reasons, vec!["last", "daily", "newest"]);
        assert_eq!(d[1].reasons, vec!["last", "daily"]);
        // 2026-12-03T01 is in a day already kept
        assert!(d[2].reasons.is_empty() && !d[2].keep);
        assert_eq!(d[3].reasons, vec!["daily"]);
    }

    #[test]
    fn periods_without_backups_do_not_count() {
        let c = cands(&[
            "2026-01-15T00:00:00Z",
            "2026-03-15T00:00:00Z",
            "2026-03-20T00:00:00Z",
            "2025-12-31T23:00:00Z",
            "2024-06-01T00:00:00Z",
        ]);
        let d = apply(
            &Policy {
                monthly: Some(3),
                yearly: Some(3),
                ..Default::default()
            },
            &c,
        );
        assert_eq!(
            kept(&d),
            vec![
                "2026-03-20T00:00:00Z",
                "2026-01-15T00:00:00Z",
                "2025-12-31T23:00:00Z",
                "2024-06-01T00:00:00Z"
            ]
        );
        assert_eq!(d[2].reasons, vec!["monthly"]); // 2026-01
        assert_eq!(d[3].reasons, vec!["monthly", "yearly"]); // 2025-12, 2025
        assert_eq!(d[4].reasons, vec!["yearly"]); // 2024
    }

    #[test]
    fn weeks_are_iso_weeks() {
        // 2026-12-27 (Sunday) and 2026-12-28 (Monday) are in different ISO weeks; 2027-01-01 is
        // in the same ISO week as 2026-12-28.
        let c = cands(&[
            "2026-12-27T12:00:00Z",
            "2026-12-28T12:00:00Z",
            "2027-01-01T12:00:00Z",
        ]);
        let d = apply(
            &Policy {
                weekly: Some(5),
                ..Default::default()
            },
            &c,
        );
        assert_eq!(
            kept(&d),
            vec!["2027-01-01T12:00:00Z", "2026-12-27T12:00:00Z"]
        );
    }

    #[test]
    fn the_newest_and_the_newest_complete_are_always_kept() {
        let mut c = cands(&[
            "2026-12-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
            "2026-12-03T00:00:00Z",
        ]);
        c[2].complete = Some(false);
        c[1].complete = None;
        let d = apply(
            &Policy {
                hourly: Some(0),
                ..Default::default()
            },
            &c,
        );
        assert_eq!(
            kept(&d),
            vec!["2026-12-03T00:00:00Z", "2026-12-01T00:00:00Z"]
        );
        assert_eq!(d[0].reasons, vec!["newest"]);
        assert_eq!(d[2].reasons, vec!["newest complete"]);
    }
}
