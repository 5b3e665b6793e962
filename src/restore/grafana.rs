//! Restore Grafana through its HTTP API, from the backup's API exports (`api/folders.json`,
//! `api/datasources.json`, `api/dashboards/<uid>.json`), in that order:
//!
//! - folders: a missing folder is created with its uid and title (`POST /api/folders`); an
//!   existing uid with another title is renamed back (`PUT /api/folders/<uid>`, overwrite); an
//!   identical one is left alone.
//! - datasources, matched by name: a missing one is created (`POST /api/datasources`, with its
//!   uid); an existing one that differs is updated (`PUT /api/datasources/uid/<uid>`), which keeps
//!   the secrets Grafana holds for it; a read-only (provisioned) one is left to its provisioning
//!   file. Secrets (passwords, tokens: `secureJsonData`) are never in the export: a datasource
//!   created again has none, and a note says so.
//! - dashboards, by uid: saved again as backed up, in their folder (`POST /api/dashboards/db`,
//!   `overwrite: true`, `folderUid` kept), unless the current one is the same (panels, title,
//!   folder); a provisioned one is left to its provisioning file.
//!
//! grafana.db, the data dir and the config files are not put back (users, teams, alert rules
//! live in grafana.db: `lsbackup extract` and docs/components/grafana.md). The API is reached as
//! for the backup: `grafana_url` (or grafana.ini's `[server]`), credentials from `grafana_token`,
//! `grafana_user`/`grafana_password` or grafana.ini's admin, sent only over verified https unless
//! `grafana_allow_plain_http_credentials`. A dry run reads the current state and says what would
//! change.

use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::components::grafana::Ini;
use crate::http::{Endpoint, HttpClient, Response, Scheme, TlsSettings};
use crate::secret::Secret;
use crate::shell::Script;

use super::{HostRestore, Restore, RestoreError};

pub struct Grafana;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A folder of `GET /api/folders`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Folder {
    pub uid: String,
    pub title: String,
    #[serde(rename = "parentUid", default)]
    pub parent_uid: Option<String>,
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create,
    /// Update the existing object (its uid, for datasources).
    Update(String),
    Same,
    /// Left alone, with why.
    Leave(String),
}

/// The fields of a datasource that `POST/PUT /api/datasources` take and the restore compares;
/// ids, versions and the display fields of `GET /api/datasources` are left out.
const DS_FIELDS: &[&str] = &[
    "name",
    "type",
    "uid",
    "access",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
];

/// The request body for a backed-up datasource (only [`DS_FIELDS`]).
pub fn datasource_body(backed_up: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(obj) = backed_up.as_object() {
        for f in DS_FIELDS {
            if let Some(v) = obj.get(*f) {
                out.insert((*f).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Whether the current datasource already has every field of `body` (absent and empty/false
/// count as the same).
fn same_fields(body: &Value, current: &Value) -> bool {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    body.as_object().is_some_and(|b| {
        b.iter().all(|(k, v)| {
            let c = current.get(k);
            c == Some(v) || (empty(Some(v)) && empty(c))
        })
    })
}

/// What to do with a backed-up datasource given the current ones (matched by name).
pub fn datasource_action(backed_up: &Value, current: &[Value]) -> Action {
    let body = datasource_body(backed_up);
    let name = body.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(cur) = current
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    else {
        return Action::Create;
    };
    if same_fields(&body, cur) {
        return Action::Same;
    }
    if cur.get("readOnly").and_then(Value::as_bool) == Some(true) {
        return Action::Leave("provisioned (read-only): its provisioning file sets it".into());
    }
    match cur.get("uid").and_then(Value::as_str) {
        Some(uid) if valid_uid(uid) => Action::Update(uid.to_string()),
        _ => Action::Leave("its current uid is not one Grafana makes".into()),
    }
}

/// What to do with a backed-up folder given the current ones (matched by uid).
pub fn folder_action(backed_up: &Folder, current: &[Folder]) -> Action {
    match current.iter().find(|c| c.uid == backed_up.uid) {
        None => Action::Create,
        Some(c) if c.title == backed_up.title => Action::Same,
        Some(c) => Action::Update(c.uid.clone()),
    }
}

/// A backed-up dashboard (`GET /api/dashboards/uid/<uid>` as exported).
#[derive(Debug, Clone, Deserialize)]
pub struct Dashboard {
    pub dashboard: Value,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(rename = "folderUid", default)]
    pub folder_uid: String,
    #[serde(default)]
    pub provisioned: bool,
}

impl Dashboard {
    pub fn uid(&self) -> &str {
        self.dashboard
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn title(&self) -> &str {
        self.dashboard
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The dashboard without the fields Grafana sets on each save (`id`, `version`).
    fn content(&self) -> Value {
        let mut d = self.dashboard.clone();
        if let Some(o) = d.as_object_mut() {
            o.remove("id");
            o.remove("version");
        }
        d
    }

    /// The body of `POST /api/dashboards/db` saving it again, in its folder, over what exists.
    pub fn save_body(&self) -> Value {
        let mut d = self.content();
        if let Some(o) = d.as_object_mut() {
            o.insert("id".into(), Value::Null);
        }
        let mut body = json!({
            "dashboard": d,
            "overwrite": true,
            "message": "restored by lsbackup",
        });
        if !self.meta.folder_uid.is_empty() {
            body["folderUid"] = Value::String(self.meta.folder_uid.clone());
        }
        body
    }
}

/// What to do with a backed-up dashboard given the current one with its uid (None: absent).
pub fn dashboard_action(backed_up: &Dashboard, current: Option<&Dashboard>) -> Action {
    match current {
        None => Action::Create,
        Some(c) if c.meta.provisioned => {
            Action::Leave("provisioned: its provisioning file sets it".into())
        }
        Some(c)
            if c.content() == backed_up.content()
                && c.meta.folder_uid == backed_up.meta.folder_uid =>
        {
            Action::Same
        }
        Some(c) => Action::Update(c.uid().to_string()),
    }
}

/// A uid as Grafana makes them (letters, digits, `-`, `_`): it goes into request paths.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Grafana's `message` of an error answer, on one line.
fn message(r: &Response) -> String {
    #[derive(Deserialize)]
    struct M {
        #[serde(default)]
        message: String,
    }
    let m = serde_json::from_slice::<M>(&r.body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into());
    let m = crate::engine::clean_text(m.trim());
    if m.is_empty() {
        format!("HTTP {}", r.status.as_u16())
    } else {
        format!("HTTP {}: {m}", r.status.as_u16())
    }
}

/// Grafana resolves relative paths against its home, /usr/share/grafana on Debian.
fn home_relative(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/usr/share/grafana/{p}")
    }
}

const CAT_IF_ANY: &str = r#"[ -e "$1" ] || exit 0
exec cat -- "$1""#;

/// The API client, checked with `GET /api/datasources` (Admin role), as the backup connects.
async fn connect(r: &mut HostRestore<'_>) -> Result<(HttpClient, Vec<Value>), RestoreError> {
    let step = "connect";
    let conf = r
        .var("grafana_config_dir")
        .trim_end_matches('/')
        .to_string();
    let ini_path = format!("{conf}/grafana.ini");
    let out = r
        .query(step, &Script::new(CAT_IF_ANY).arg(ini_path.as_str()), None)
        .await?;
    let ini = Ini::parse(&String::from_utf8_lossy(&out.stdout));
    let urls: Vec<String> = match r.var("grafana_url").trim() {
        "" | "auto" => vec![ini.url()],
        v => v.split_whitespace().map(str::to_string).collect(),
    };
    let (user, password, token, from) = if !r.var("grafana_token").is_empty() {
        (
            String::new(),
            None,
            Some(Secret::new(r.var("grafana_token"))),
            "grafana_token".to_string(),
        )
    } else if !r.var("grafana_user").is_empty() {
        (
            r.var("grafana_user").to_string(),
            Some(Secret::new(r.var("grafana_password"))),
            None,
            "grafana_user".to_string(),
        )
    } else {
        let user = ini
            .get("security", "admin_user")
            .unwrap_or("admin")
            .to_string();
        let raw = ini
            .get("security", "admin_password")
            .unwrap_or("admin")
            .to_string();
        let password = if let Some(f) = raw
            .strip_prefix("$__file{")
            .and_then(|x| x.strip_suffix('}'))
        {
            let out = r
                .query(
                    step,
                    &Script::new(r#"exec cat -- "$1""#).arg(f.trim()),
                    None,
                )
                .await?;
            Secret::new(String::from_utf8_lossy(&out.stdout).trim_end_matches(['\r', '\n']))
        } else if raw.starts_with("$__") {
            return Err(r.failed(
                step,
                format!(
                    "admin_password in {ini_path} is not a plain value: give grafana_user and grafana_password (or grafana_token)"
                ),
            ));
        } else {
            Secret::new(raw)
        };
        (
            user,
            Some(password),
            None,
            format!("admin_user/admin_password of {ini_path}"),
        )
    };
    let verify = !matches!(
        r.var("grafana_tls_verify")
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "false" | "no" | "off" | "0"
    );
    let mut errors = Vec::new();
    for url in &urls {
        let endpoint = Endpoint::parse(url).map_err(|e| r.failed(step, e))?;
        let mut b = r.http(url)?.timeout(TIMEOUT);
        if endpoint.scheme == Scheme::Https {
            let ca = match r.var("grafana_ca_cert") {
                "" => ini
                    .get("server", "cert_file")
                    .map(home_relative)
                    .unwrap_or_default(),
                v => v.to_string(),
            };
            let mut tls = TlsSettings {
                verify,
                ..Default::default()
            };
            if verify {
                if ca.is_empty() {
                    return Err(r.failed(
                        step,
                        format!("{url} is https but there is no CA to check its certificate with: set grafana_ca_cert"),
                    ));
                }
                let pem = r
                    .query(
                        step,
                        &Script::new(r#"exec cat -- "$1""#).arg(ca.as_str()),
                        None,
                    )
                    .await?;
                tls.ca_pem = Some(pem.stdout);
            }
            b = b.tls(tls);
        }
        b = match (&token, &password) {
            (Some(t), _) => b.bearer(t.clone()),
            (None, Some(p)) => b.basic_auth(user.clone(), p.clone()),
            (None, None) => b,
        };
        let b = b.allow_plain_http_credentials(matches!(
            r.var("grafana_allow_plain_http_credentials")
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "true" | "yes" | "on" | "1"
        ));
        let api = b.build().map_err(|e| {
            r.failed(
                step,
                format!("{e} (credentials: {from}; serve Grafana over https, or set grafana_allow_plain_http_credentials=true)"),
            )
        })?;
        match api.send(Method::GET, "/api/datasources", None).await {
            Ok(resp) if resp.status.is_success() => {
                let list: Vec<Value> = resp.json().map_err(|e| r.failed(step, e))?;
                r.say(format!("Grafana API at {url} (credentials: {from})"));
                return Ok((api, list));
            }
            Ok(resp) => errors.push(format!(
                "{url}: GET /api/datasources: {} (credentials: {from})",
                message(&resp)
            )),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(r.failed(step, errors.join("; ")))
}

/// A change through the API: said ("would ..." in a dry run, where nothing is sent); a non-2xx
/// answer is an error with Grafana's message.
async fn apply(
    r: &mut HostRestore<'_>,
    api: &HttpClient,
    step: &str,
    what: &str,
    method: Method,
    path: &str,
    body: &Value,
) -> Result<(), RestoreError> {
    r.say(format!("{}{what}", r.would()));
    if r.is_dry_run() {
        return Ok(());
    }
    let resp = api
        .send(method.clone(), path, Some(body))
        .await
        .map_err(|e| r.failed(step, e))?;
    if !resp.status.is_success() {
        return Err(r.failed(step, format!("{method} {path}: {}", message(&resp))));
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(
    r: &HostRestore<'_>,
    rel: &str,
) -> Result<T, RestoreError> {
    serde_json::from_slice(&r.read_local(rel)?)
        .map_err(|e| r.failed("reading the backup", format!("{rel}: {e}")))
}

#[async_trait::async_trait]
impl Restore for Grafana {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let dashboards = r.files_under("api/dashboards/");
        if r.entry("api/folders.json").is_none()
            && r.entry("api/datasources.json").is_none()
            && dashboards.is_empty()
        {
            r.note("the backup holds no API export of Grafana (only files): restore grafana.db by hand (docs/components/grafana.md)");
            return Ok(());
        }
        let (api, current_ds) = connect(r).await?;

        // Folders first: dashboards are saved into them.
        if r.entry("api/folders.json").is_some() {
            let step = "folders";
            let backed: Vec<Folder> = read_json(r, "api/folders.json")?;
            let current: Vec<Folder> = api
                .get_json("/api/folders")
                .await
                .map_err(|e| r.failed(step, e))?;
            let mut same = 0;
            for f in &backed {
                if !valid_uid(&f.uid) {
                    r.say(format!(
                        "folder {:?}: uid {:?} is not one Grafana makes: left out",
                        crate::engine::clean_text(&f.title),
                        crate::engine::clean_text(&f.uid)
                    ));
                    continue;
                }
                let title = crate::engine::clean_text(&f.title);
                match folder_action(f, &current) {
                    Action::Same => same += 1,
                    Action::Create => {
                        let mut body = json!({"uid": f.uid, "title": f.title});
                        if let Some(p) = &f.parent_uid {
                            body["parentUid"] = Value::String(p.clone());
                        }
                        apply(
                            r,
                            &api,
                            step,
                            &format!("create folder {title:?} ({})", f.uid),
                            Method::POST,
                            "/api/folders",
                            &body,
                        )
                        .await?
                    }
                    Action::Update(uid) => {
                        apply(
                            r,
                            &api,
                            step,
                            &format!("rename folder {uid} back to {title:?}"),
                            Method::PUT,
                            &format!("/api/folders/{uid}"),
                            &json!({"title": f.title, "overwrite": true}),
                        )
                        .await?
                    }
                    Action::Leave(why) => r.say(format!("folder {title:?}: left alone: {why}")),
                }
            }
            if same > 0 {
                r.say(format!("folders as backed up: {same}"));
            }
        }

        if r.entry("api/datasources.json").is_some() {
            let step = "datasources";
            let backed: Vec<Value> = read_json(r, "api/datasources.json")?;
            let mut same = 0;
            let mut created = Vec::new();
            for ds in &backed {
                let body = datasource_body(ds);
                let name = body.get("name").and_then(Value::as_str).unwrap_or("");
                let shown = crate::engine::clean_text(name);
                if name.is_empty() || body.get("type").and_then(Value::as_str).is_none() {
                    r.say("a datasource without name or type in the backup: left out");
                    continue;
                }
                match datasource_action(ds, &current_ds) {
                    Action::Same => same += 1,
                    Action::Create => {
                        apply(
                            r,
                            &api,
                            step,
                            &format!("create datasource {shown:?}"),
                            Method::POST,
                            "/api/datasources",
                            &body,
                        )
                        .await?;
                        created.push(shown);
                    }
                    Action::Update(uid) => {
                        apply(
                            r,
                            &api,
                            step,
                            &format!("update datasource {shown:?} to its backed-up settings (its secrets kept)"),
                            Method::PUT,
                            &format!("/api/datasources/uid/{uid}"),
                            &body,
                        )
                        .await?
                    }
                    Action::Leave(why) => {
                        r.say(format!("datasource {shown:?}: left alone: {why}"))
                    }
                }
            }
            if same > 0 {
                r.say(format!("datasources as backed up: {same}"));
            }
            if !created.is_empty() {
                r.note(format!(
                    "datasource secrets (passwords, tokens) are not in Grafana's export: {} {} created without them; set them in Grafana if they need any",
                    created.join(", "),
                    if created.len() == 1 { "was" } else { "were" }
                ));
            }
        }

        let step = "dashboards";
        let mut same = 0;
        for (_, rel) in dashboards {
            if !rel.ends_with(".json") {
                continue;
            }
            let d: Dashboard = read_json(r, &rel)?;
            let uid = d.uid().to_string();
            let title = crate::engine::clean_text(d.title());
            if !valid_uid(&uid) {
                r.say(format!(
                    "dashboard {title:?} in {rel}: no uid Grafana makes: left out"
                ));
                continue;
            }
            let resp = api
                .send(Method::GET, &format!("/api/dashboards/uid/{uid}"), None)
                .await
                .map_err(|e| r.failed(step, e))?;
            let current: Option<Dashboard> = if resp.status == http::StatusCode::NOT_FOUND {
                None
            } else if resp.status.is_success() {
                Some(resp.json().map_err(|e| r.failed(step, e))?)
            } else {
                return Err(r.failed(
                    step,
                    format!("GET /api/dashboards/uid/{uid}: {}", message(&resp)),
                ));
            };
            let folder = match d.meta.folder_uid.as_str() {
                "" => "General".to_string(),
                f => crate::engine::clean_text(f),
            };
            match dashboard_action(&d, current.as_ref()) {
                Action::Same => same += 1,
                Action::Create => {
                    apply(
                        r,
                        &api,
                        step,
                        &format!("create dashboard {title:?} ({uid}) in folder {folder}"),
                        Method::POST,
                        "/api/dashboards/db",
                        &d.save_body(),
                    )
                    .await?
                }
                Action::Update(_) => {
                    apply(
                        r,
                        &api,
                        step,
                        &format!("save dashboard {title:?} ({uid}) as backed up, in folder {folder} (a new version; the current one stays in its history)"),
                        Method::POST,
                        "/api/dashboards/db",
                        &d.save_body(),
                    )
                    .await?
                }
                Action::Leave(why) => r.say(format!("dashboard {title:?}: left alone: {why}")),
            }
        }
        if same > 0 {
            r.say(format!("dashboards as backed up: {same}"));
        }
        let db_files = r
            .files_under("")
            .iter()
            .filter(|(_, p)| !p.starts_with("api/"))
            .count();
        if db_files > 0 {
            let done = r.put_config_files(&["/etc/grafana".to_string()]).await?;
            if done.iter().any(|(_, p)| *p != super::Put::Unchanged) {
                r.note("Grafana reads grafana.ini and its provisioning files at start: restart it to use the restored ones");
            }
            let rest = db_files - done.len();
            if rest > 0 {
                let noun = if rest == 1 { "file" } else { "files" };
                r.say(format!(
                    "not restored: {rest} {noun} (grafana.db, the data dir; users, teams, alert rules are in grafana.db): by hand from `lsbackup extract`, docs/components/grafana.md"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasources_matched_by_name_and_compared_on_their_settings() {
        let backed = json!({"id": 1, "uid": "prom", "orgId": 1, "name": "Prometheus", "type": "prometheus",
            "typeName": "Prometheus", "typeLogoUrl": "x.svg", "access": "proxy", "url": "http://p:9090",
            "user": "", "database": "", "basicAuth": false, "isDefault": true,
            "jsonData": {"httpMethod": "POST"}, "readOnly": false});
        let body = datasource_body(&backed);
        assert_eq!(body.get("id"), None);
        assert_eq!(body.get("typeLogoUrl"), None);
        assert_eq!(body["uid"], "prom");
        assert_eq!(body["jsonData"]["httpMethod"], "POST");
        assert_eq!(datasource_action(&backed, &[]), Action::Create);
        // the same settings, other ids and display fields, an absent empty field
        let mut same = backed.clone();
        same["id"] = json!(7);
        same.as_object_mut().unwrap().remove("database");
        assert_eq!(datasource_action(&backed, &[same]), Action::Same);
        let mut moved = backed.clone();
        moved["url"] = json!("http://elsewhere:9090");
        moved["uid"] = json!("other-uid");
        assert_eq!(
            datasource_action(&backed, &[moved.clone()]),
            Action::Update("other-uid".into())
        );
        moved["readOnly"] = json!(true);
        assert!(matches!(
            datasource_action(&backed, &[moved.clone()]),
            Action::Leave(_)
        ));
        moved["readOnly"] = json!(false);
        moved["uid"] = json!("../x");
        assert!(matches!(
            datasource_action(&backed, &[moved]),
            Action::Leave(_)
        ));
    }

    #[test]
    fn folders_by_uid() {
        let f = |uid: &str, title: &str| Folder {
            uid: uid.into(),
            title: title.into(),
            parent_uid: None,
        };
        let current = vec![f("a", "A"), f("b", "Old")];
        assert_eq!(folder_action(&f("a", "A"), &current), Action::Same);
        assert_eq!(
            folder_action(&f("b", "B"), &current),
            Action::Update("b".into())
        );
        assert_eq!(folder_action(&f("c", "C"), &current), Action::Create);
        let parsed: Vec<Folder> =
            serde_json::from_str(r#"[{"id":3,"uid":"x","title":"T","url":"/dashboards/f/x/t"}]"#)
                .unwrap();
        assert_eq!(parsed[0], f("x", "T"));
    }

    #[test]
    fn dashboards_saved_over_by_uid_in_their_folder() {
        let export: Dashboard = serde_json::from_value(json!({
            "meta": {"folderUid": "lsbackup-folder", "folderTitle": "LambdaStack", "provisioned": false, "version": 3},
            "dashboard": {"id": 12, "uid": "node", "title": "Node", "version": 3, "panels": [{"id": 1}]}
        }))
        .unwrap();
        let body = export.save_body();
        assert_eq!(body["overwrite"], true);
        assert_eq!(body["folderUid"], "lsbackup-folder");
        assert_eq!(body["dashboard"]["id"], Value::Null);
        assert_eq!(body["dashboard"].get("version"), None);
        assert_eq!(body["dashboard"]["uid"], "node");
        assert_eq!(body["dashboard"]["panels"][0]["id"], 1);
        assert_eq!(dashboard_action(&export, None), Action::Create);
        // saved since (other id and version): the same
        let mut later = export.clone();
        later.dashboard["id"] = json!(40);
        later.dashboard["version"] = json!(9);
        assert_eq!(dashboard_action(&export, Some(&later)), Action::Same);
        later.dashboard["title"] = json!("Renamed");
        assert_eq!(
            dashboard_action(&export, Some(&later)),
            Action::Update("node".into())
        );
        later.meta.provisioned = true;
        assert!(matches!(
            dashboard_action(&export, Some(&later)),
            Action::Leave(_)
        ));
        // moved to another folder: saved back into its own
        let mut moved = export.clone();
        moved.meta.folder_uid = String::new();
        assert_eq!(
            dashboard_action(&export, Some(&moved)),
            Action::Update("node".into())
        );
        // a General dashboard has no folderUid in the body
        let general: Dashboard =
            serde_json::from_value(json!({"meta": {}, "dashboard": {"uid": "g", "title": "G"}}))
                .unwrap();
        assert_eq!(general.save_body().get("folderUid"), None);
    }

    #[test]
    fn uids_are_checked() {
        assert!(valid_uid("lsbackup-node_1"));
        for bad in ["", "a/b", "..", "a b", "x?y", "é"] {
            assert!(!valid_uid(bad), "{bad:?}");
        }
    }
}
