//! The HTTP client through SSH tunnels, against the real test bed: Prometheus and Alertmanager
//! (real), the Elasticsearch stand-in (HTTPS with client certificates), Kibana's stand-in, all
//! reached at 127.0.0.1 as seen from a test bed host over SSH (and from a local host).

mod common;

use std::time::{Duration, Instant};

use lsbackup::http::{Endpoint, HttpClient, HttpError, TlsSettings};
use lsbackup::inventory::{ConnectionSpec, SshOptions};
use lsbackup::secret::Secret;
use lsbackup::shell::Script;
use lsbackup::transport::{Session, TransportConfig, TransportError};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tb() -> &'static common::TestBed {
    common::testbed()
}

fn spec(node: &str) -> ConnectionSpec {
    let tb = tb();
    ConnectionSpec {
        host: node.to_string(),
        address: tb.host_of(node),
        port: tb.ssh_port(),
        user: Some(tb.ssh_user().to_string()),
        key_file: Some(tb.client_key()),
        local: false,
        become_: false,
        become_user: "root".to_string(),
        ssh: SshOptions::default(),
    }
}

fn cfg() -> TransportConfig {
    TransportConfig {
        known_hosts: tb().known_hosts(),
        accept_new_host_keys: false,
        identities: Vec::new(),
        use_agent: false,
        connect_timeout: Duration::from_secs(10),
        command_timeout: None,
        idle_timeout: None,
        known_hosts_overrides_inventory: false,
        insecure_skip_host_key_check: false,
    }
}

async fn connect(node: &str) -> Session {
    Session::connect(&spec(node), &cfg())
        .await
        .unwrap_or_else(|e| panic!("connect {node}: {e}"))
}

async fn local() -> Session {
    let sp = ConnectionSpec {
        host: "localhost".into(),
        address: "localhost".into(),
        port: 22,
        user: None,
        key_file: None,
        local: true,
        become_: false,
        become_user: "root".into(),
        ssh: SshOptions::default(),
    };
    Session::connect(&sp, &cfg()).await.unwrap()
}

fn client(s: &Session, url: &str) -> HttpClient {
    HttpClient::builder(s.clone(), Endpoint::parse(url).unwrap())
        .build()
        .unwrap()
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Elasticsearch stand-in's CA and admin client certificate, read here: the test bed hosts
/// share this machine's filesystem (a component reads them from the host).
fn es_tls() -> TlsSettings {
    TlsSettings {
        ca_pem: Some(read(tb().var("LSB_ES_CA"))),
        client_cert_pem: Some(read(tb().var("LSB_ES_ADMIN_CERT"))),
        client_key_pem: Some(read(tb().var("LSB_ES_ADMIN_KEY"))),
        ..TlsSettings::default()
    }
}

fn es(s: &Session, tls: TlsSettings) -> Result<HttpClient, HttpError> {
    HttpClient::builder(s.clone(), Endpoint::parse(tb().var("LSB_ES_URL")).unwrap())
        .tls(tls)
        .build()
}

#[derive(Debug, Deserialize)]
struct PromResponse<T> {
    status: String,
    data: T,
}

#[derive(Debug, Deserialize)]
struct BuildInfo {
    version: String,
}

/// A port on this machine (so on every test bed host's loopback) where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_buildinfo_over_ssh() {
    let s = connect("node1").await;
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let info: PromResponse<BuildInfo> = prom.get_json("/api/v1/status/buildinfo").await.unwrap();
    assert_eq!(info.status, "success");
    let expected = std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(!info.data.version.is_empty());
    if !expected.is_empty() {
        assert!(
            expected.contains(&info.data.version),
            "{expected} vs {}",
            info.data.version
        );
    }
    // The session still runs commands after HTTP requests over it.
    let out = s.run(&Script::new("echo ok"), None, 100).await.unwrap();
    assert_eq!(out.stdout_text(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_post_then_delete_a_silence() {
    let s = connect("node2").await;
    let am = client(&s, tb().var("LSB_ALERTMANAGER_URL"));
    let now = jiff::Timestamp::now();
    let comment = common_unique("lsbackup http_tunnel test");
    let body = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "LsbackupHttpTunnelTest", "isRegex": false}],
        "startsAt": now.to_string(),
        "endsAt": (now + jiff::SignedDuration::from_mins(5)).to_string(),
        "createdBy": "lsbackup-tests",
        "comment": comment,
    });
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "silenceID")]
        silence_id: String,
    }
    let created: Created = am.post_json("/api/v2/silences", &body).await.unwrap();
    let listed: Vec<serde_json::Value> = am.get_json("/api/v2/silences").await.unwrap();
    let mine = listed
        .iter()
        .find(|v| v["id"] == created.silence_id.as_str())
        .expect("the new silence is listed");
    assert_eq!(mine["comment"], comment.as_str());
    assert_eq!(mine["status"]["state"], "active");
    let r = am
        .delete(&format!("/api/v2/silence/{}", created.silence_id))
        .await
        .unwrap();
    assert!(r.status.is_success());
    let after: serde_json::Value = am
        .get_json(&format!("/api/v2/silence/{}", created.silence_id))
        .await
        .unwrap();
    assert_eq!(after["status"]["state"], "expired");
}

fn common_unique(prefix: &str) -> String {
    format!(
        "{prefix} {}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_a_status_error_and_send_returns_it() {
    let s = connect("node1").await;
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let err = prom
        .get_json::<serde_json::Value>("/api/v1/no/such/thing")
        .await
        .unwrap_err();
    match &err {
        HttpError::Status {
            host, status, url, ..
        } => {
            assert_eq!(host, "node1");
            assert_eq!(status.as_u16(), 404);
            assert_eq!(url, "http://127.0.0.1:9090/api/v1/no/such/thing");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("node1: GET http://127.0.0.1:9090/api/v1/no/such/thing returned HTTP 404"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let r = prom
        .send(http::Method::GET, "/api/v1/no/such/thing", None)
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 404);
    assert!(r.error_for_status().is_err());
    // Not JSON where JSON was asked for: a Json error naming the request.
    let err = prom
        .get_json::<serde_json::Value>("/metrics")
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Json { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("GET http://127.0.0.1:9090/metrics"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_one_clear_line() {
    let s = connect("node3").await;
    let port = closed_port();
    let err = s.connect_tcp("127.0.0.1", port).await.unwrap_err();
    assert!(
        matches!(err, TransportError::NothingListening { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "node3: nothing answers at 127.0.0.1:{port} as seen from node3 (the SSH server could not connect)"
        )
    );
    let c = client(&s, &format!("http://127.0.0.1:{port}"));
    let err = c.get_json::<serde_json::Value>("/").await.unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::Tunnel(TransportError::NothingListening { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("node3: nothing answers at 127.0.0.1:{port}")),
        "{err}"
    );
    // The session is fine afterwards.
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let _: PromResponse<BuildInfo> = prom.get_json("/api/v1/status/buildinfo").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_https_with_client_certificate() {
    let s = connect("node2").await;
    let es_client = es(&s, es_tls()).unwrap();
    let health: serde_json::Value = es_client.get_json("/_cluster/health").await.unwrap();
    assert_eq!(health["status"], "green");
    let info: serde_json::Value = es_client.get_json("/").await.unwrap();
    assert!(info["version"]["number"].is_string(), "{info}");
    // PUT a document into a scratch index, then DELETE the index.
    let index = format!("lsbackup-http-tunnel-{}", std::process::id());
    let put: serde_json::Value = es_client
        .put_json(
            &format!("/{index}/_doc/1"),
            &serde_json::json!({"message": "through the tunnel"}),
        )
        .await
        .unwrap();
    assert_eq!(put["_index"], index.as_str(), "{put}");
    let r = es_client.delete(&format!("/{index}")).await.unwrap();
    assert!(r.status.is_success());
    let r = es_client
        .send(http::Method::DELETE, &format!("/{index}"), None)
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 404, "deleted already");

    // Without the client certificate the server does not know us: 401.
    let anonymous = es(
        &s,
        TlsSettings {
            client_cert_pem: None,
            client_key_pem: None,
            ..es_tls()
        },
    )
    .unwrap();
    let err = anonymous
        .get_json::<serde_json::Value>("/_cluster/health")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::Status { status, .. } if status.as_u16() == 401),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_wrong_ca_or_name_is_refused() {
    let s = connect("node2").await;
    let wrong_ca = es(
        &s,
        TlsSettings {
            ca_pem: Some(read(tb().var("LSB_ETCD_CACERT"))),
            ..es_tls()
        },
    )
    .unwrap();
    let err = wrong_ca
        .get_json::<serde_json::Value>("/_cluster/health")
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "node2: TLS with https://127.0.0.1:9200 failed: the server's certificate is not signed by the given CA (wrong ca_pem?)"
    );

    let wrong_name = es(
        &s,
        TlsSettings {
            server_name: Some("kibana.example".into()),
            ..es_tls()
        },
    )
    .unwrap();
    let err = wrong_name
        .get_json::<serde_json::Value>("/_cluster/health")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
    assert!(
        msg.contains("not valid for the name \"kibana.example\""),
        "{msg}"
    );

    // verify=false talks to it anyway (explicit opt-out)...
    let unverified = es(
        &s,
        TlsSettings {
            ca_pem: None,
            verify: false,
            ..es_tls()
        },
    )
    .unwrap();
    let health: serde_json::Value = unverified.get_json("/_cluster/health").await.unwrap();
    assert_eq!(health["status"], "green");
    // ...but never with credentials.
    let err = HttpClient::builder(s.clone(), Endpoint::parse(tb().var("LSB_ES_URL")).unwrap())
        .tls(TlsSettings {
            ca_pem: None,
            verify: false,
            ..TlsSettings::default()
        })
        .basic_auth("admin", Secret::from("pw"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, HttpError::InsecureCredentials { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("verification is off"), "{err}");

    // TLS to a plain-http port: a TLS error, not a hang.
    let plain = HttpClient::builder(
        s.clone(),
        Endpoint::parse("https://127.0.0.1:9090").unwrap(),
    )
    .tls(es_tls())
    .timeout(Duration::from_secs(10))
    .build()
    .unwrap();
    let err = plain
        .get_json::<serde_json::Value>("/api/v1/status/buildinfo")
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_over_plain_http_are_refused_and_never_printed() {
    let s = connect("node3").await;
    let password = tb().var("LSB_KIBANA_PASSWORD");
    let err = HttpClient::builder(
        s.clone(),
        Endpoint::parse(tb().var("LSB_KIBANA_URL")).unwrap(),
    )
    .basic_auth("kibanaserver", Secret::from(password))
    .build()
    .unwrap_err();
    assert!(
        matches!(err, HttpError::InsecureCredentials { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "node3: refusing to send credentials to http://127.0.0.1:5601: it is plain http"
        ),
        "{msg}"
    );
    assert!(!msg.contains(password) && !format!("{err:?}").contains(password));

    // A sensitive header counts as a credential too.
    let mut v = http::HeaderValue::from_static("Bearer x");
    v.set_sensitive(true);
    let err = HttpClient::builder(
        s.clone(),
        Endpoint::parse(tb().var("LSB_KIBANA_URL")).unwrap(),
    )
    .header(http::header::AUTHORIZATION, v)
    .build()
    .unwrap_err();
    assert!(
        matches!(err, HttpError::InsecureCredentials { .. }),
        "{err:?}"
    );

    // Over verified https the client is built, and its Debug shows no secret.
    let key_pem = read(tb().var("LSB_ES_ADMIN_KEY"));
    let c = es(&s, es_tls()).unwrap();
    let with_password =
        HttpClient::builder(s.clone(), Endpoint::parse(tb().var("LSB_ES_URL")).unwrap())
            .tls(es_tls())
            .basic_auth("admin", Secret::from(password))
            .build()
            .unwrap();
    let with_token =
        HttpClient::builder(s.clone(), Endpoint::parse(tb().var("LSB_ES_URL")).unwrap())
            .tls(es_tls())
            .bearer(Secret::from(password))
            .build()
            .unwrap();
    let key_line = String::from_utf8_lossy(&key_pem)
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for dbg in [
        format!("{c:?}"),
        format!("{with_password:?}"),
        format!("{with_token:?}"),
        format!("{:?}", es_tls()),
    ] {
        assert!(!dbg.contains(password), "{dbg}");
        assert!(!dbg.contains(&key_line), "{dbg}");
        assert!(
            dbg.contains("node3") || dbg.contains("TlsSettings"),
            "{dbg}"
        );
    }
    let dbg = format!("{with_password:?}");
    assert!(dbg.contains("basic admin:********"), "{dbg}");
    // Requests with an Authorization header go through (the stand-in admits us by certificate).
    let r = with_password
        .send(http::Method::GET, "/_cluster/health", None)
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_host_connects_directly() {
    let s = local().await;
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let info: PromResponse<BuildInfo> = prom.get_json("/api/v1/status/buildinfo").await.unwrap();
    assert_eq!(info.status, "success");
    let es_client = es(&s, es_tls()).unwrap();
    let health: serde_json::Value = es_client.get_json("/_cluster/health").await.unwrap();
    assert_eq!(health["status"], "green");
    let port = closed_port();
    let err = s.connect_tcp("127.0.0.1", port).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "localhost: nothing answers at 127.0.0.1:{port} as seen from localhost (connection refused)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_a_body_and_body_limit_and_timeout_hold() {
    let s = connect("node1").await;
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let buffered = prom
        .send(http::Method::GET, "/api/v1/status/config", None)
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let (status, mut body) = prom
        .stream(http::Method::GET, "/api/v1/status/config", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let mut streamed = Vec::new();
    body.read_to_end(&mut streamed).await.unwrap();
    assert_eq!(streamed, buffered.body.to_vec());
    assert!(streamed.len() > 100);

    let err = prom
        .stream(http::Method::GET, "/api/v1/nope", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::Status { status, .. } if status.as_u16() == 404),
        "{err:?}"
    );

    let small = HttpClient::builder(
        s.clone(),
        Endpoint::parse(tb().var("LSB_PROMETHEUS_URL")).unwrap(),
    )
    .body_limit(50)
    .build()
    .unwrap();
    let err = small
        .get_json::<serde_json::Value>("/api/v1/status/buildinfo")
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::TooLarge { limit: 50, .. }),
        "{err:?}"
    );

    // A service that accepts and never answers: the timeout, not a hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            held.push(sock);
        }
    });
    let slow = HttpClient::builder(
        s.clone(),
        Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    )
    .timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let t = Instant::now();
    let err = slow.get_json::<serde_json::Value>("/x").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err.to_string(),
        format!("node1: GET http://127.0.0.1:{port}/x timed out after 1s")
    );
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_short_is_an_error_not_eof() {
    let s = connect("node1").await;
    // A service that promises 1000 bytes and closes after 10.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await.unwrap();
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            .await
            .unwrap();
        sock.shutdown().await.unwrap();
    });
    let c = client(&s, &format!("http://127.0.0.1:{port}"));
    let (_, mut body) = c.stream(http::Method::GET, "/export", None).await.unwrap();
    let mut got = Vec::new();
    let err = body.read_to_end(&mut got).await.unwrap_err();
    assert!(err.to_string().contains("node1: GET"), "{err}");
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_at_once_share_one_session() {
    let s = connect("node2").await;
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let es_client = es(&s, es_tls()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..3 * lsbackup::transport::MAX_TUNNELS {
        let prom = prom.clone();
        let es_client = es_client.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let r: PromResponse<BuildInfo> =
                    prom.get_json("/api/v1/status/buildinfo").await.unwrap();
                r.status
            } else {
                let h: serde_json::Value = es_client.get_json("/_cluster/health").await.unwrap();
                h["status"].as_str().unwrap().to_string()
            }
        }));
    }
    // Commands keep running alongside the tunnels.
    let out = s
        .run(&Script::new("echo still-here"), None, 100)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "still-here");
    for t in tasks {
        let st = t.await.unwrap();
        assert!(st == "success" || st == "green", "{st}");
    }
}

/// An sshd of our own (node1's config and host key) with `AllowTcpForwarding no`; stopped on
/// drop.
struct NoForwardSshd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NoForwardSshd {
    fn start() -> NoForwardSshd {
        let tb = tb();
        let ip = tb.host_of("node1");
        let port = closed_port();
        let base = tb.dir().join("ssh").join("node1").join("sshd_config");
        let text = std::fs::read_to_string(&base).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config: String = text
            .lines()
            .filter(|l| {
                let k = l.split_whitespace().next().unwrap_or_default();
                !["ListenAddress", "PidFile", "AllowTcpForwarding"].contains(&k)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        config.push_str(&format!(
            "ListenAddress {ip}:{port}\nPidFile none\nAllowTcpForwarding no\n"
        ));
        let path = dir.path().join("sshd_config");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let t = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        NoForwardSshd {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for NoForwardSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_disabled_on_the_server_is_one_clear_line() {
    let sshd = NoForwardSshd::start();
    let mut sp = spec("node1");
    sp.port = sshd.port;
    sp.ssh.strict_host_key_checking = Some(lsbackup::inventory::StrictHostKeyChecking::No);
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    // Commands still run there; only tunnels are refused.
    assert_eq!(
        s.run(&Script::new("echo ok"), None, 100)
            .await
            .unwrap()
            .stdout_text(),
        "ok"
    );
    let err = s.connect_tcp("127.0.0.1", 9090).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ForwardingRefused { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "node1: the SSH server refuses to forward a connection to 127.0.0.1:9090 (administratively prohibited); tunnels need AllowTcpForwarding"
        ),
        "{msg}"
    );
    let prom = client(&s, tb().var("LSB_PROMETHEUS_URL"));
    let err = prom
        .get_json::<serde_json::Value>("/api/v1/status/buildinfo")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::Tunnel(TransportError::ForwardingRefused { .. })
        ),
        "{err:?}"
    );
    drop(s);
    drop(sshd);
}
