//! ZooKeeper: the configuration (zoo.cfg, myid, ...) and the data of ONE serving node: dataDir
//! (snapshots) and dataLogDir (transaction logs) when set apart.
//!
//! Why one node: every ZooKeeper server keeps a full replica of the whole tree, so the data of
//! any one node that serves is a complete backup. The node chosen is the first in inventory
//! order whose server answers the four-letter word `srvr` with a `Mode:` (standalone, leader,
//! follower or observer); lsbackup asks it itself, through the host's SSH connection
//! (`direct-tcpip`, no `bash /dev/tcp` on the host).
//!
//! Where zoo.cfg is: the config argument of the running server (`QuorumPeerMain <config>`, found
//! in `/proc` and only trusted from a process of root or `zookeeper_user`), else the first
//! existing of `zookeeper_config_candidates`. zoo.cfg is read with `cat` and parsed here.
//!
//! Transaction logs (`version-2/log.*`) are preallocated (64 MiB of zeros by default) and grow
//! inside that space; a copy keeps only their used part: the file header and every complete
//! transaction record, up to the first record of length 0 (the padding), the end of the file, or
//! a torn last record (see [`TxnLogTrimmer`]). ZooKeeper reads such a log as it reads a full one
//! (it stops at the same place) and pads a log again when it appends to it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::jvm;
use super::{Native, NativeRef};
use crate::archive::FailureKind;
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::shell::Script;

pub const SPEC: &str = r#"
name: zookeeper
description: ZooKeeper config (zoo.cfg, myid) and dataDir/dataLogDir (snapshots, txn logs) of one serving node
groups: [zookeeper]
hosts: first
vars:
  # empty: the config file of the running server (its QuorumPeerMain argument), else the first
  # existing one of zookeeper_config_candidates
  zookeeper_config_file: ""
  # space-separated
  zookeeper_config_candidates: /etc/zookeeper/conf/zoo.cfg /opt/zookeeper/conf/zoo.cfg
  # empty: clientPort of zoo.cfg, else 2181
  zookeeper_client_port: ""
  zookeeper_default_data_dir: /var/lib/zookeeper
  # the server's config argument is only trusted from a process of root or this user
  zookeeper_user: zookeeper
not_covered:
  - the other nodes' copies of the same data (every serving node holds the full tree)
  - transactions committed after the copy of the transaction log they went to
  - ZooKeeper's own logs (zookeeper.log) and the systemd unit / JVM options
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(ZooKeeper))
}

const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

// state kept from select() for backup()
const CFG: &str = "zookeeper__cfg";
const DATA_DIR: &str = "zookeeper__data_dir";
const DATA_LOG_DIR: &str = "zookeeper__data_log_dir";

struct ZooKeeper;

/// Where the server is, from zoo.cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub addr: String,
    pub port: u16,
    pub data_dir: String,
    pub data_log_dir: Option<String>,
}

/// The client address and port and the data dirs of a parsed zoo.cfg. `port_var`:
/// `zookeeper_client_port` (empty: clientPort). ZooKeeper trims values.
pub fn locate(
    cfg: &jvm::Properties,
    port_var: &str,
    default_data_dir: &str,
) -> Result<Location, String> {
    let port_text = if !port_var.trim().is_empty() {
        port_var.trim().to_string()
    } else if let Some(p) = cfg.get_nonempty("clientPort") {
        p.to_string()
    } else if let Some(p) = cfg.get_nonempty("secureClientPort") {
        return Err(format!(
            "zoo.cfg has only a secureClientPort ({p}); srvr needs a plain client port: set zookeeper_client_port"
        ));
    } else {
        "2181".to_string()
    };
    let port: u16 = port_text
        .parse()
        .map_err(|_| format!("client port {port_text:?} is not a port number"))?;
    let addr = match cfg.get_nonempty("clientPortAddress") {
        None | Some("0.0.0.0" | "::" | "[::]" | "0:0:0:0:0:0:0:0") => "127.0.0.1".to_string(),
        Some(a) => a.trim_start_matches('[').trim_end_matches(']').to_string(),
    };
    let data_dir = cfg
        .get_nonempty("dataDir")
        .unwrap_or(default_data_dir)
        .trim_end_matches('/')
        .to_string();
    let data_log_dir = cfg
        .get_nonempty("dataLogDir")
        .map(|d| d.trim_end_matches('/').to_string())
        .filter(|d| !d.is_empty() && *d != data_dir);
    Ok(Location {
        addr,
        port,
        data_dir: if data_dir.is_empty() {
            "/".into()
        } else {
            data_dir
        },
        data_log_dir,
    })
}

/// The version in a `srvr` answer: `Zookeeper version: 3.8.0-5a02a05..., built on ...` → `3.8.0`.
pub fn srvr_version(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Zookeeper version: "))
        .and_then(|v| v.split(['-', ',']).next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Ask the server `srvr` through the session (a TCP connection as the host sees it).
async fn srvr(h: &HostCtx<'_>, addr: &str, port: u16) -> Result<String, StepError> {
    let ask = async {
        let mut conn = h.session().connect_tcp(addr, port).await?;
        conn.write_all(b"srvr")
            .await
            .map_err(|e| StepError::api(format!("sending srvr: {e}")))?;
        let mut answer = Vec::new();
        (&mut conn)
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| StepError::api(format!("reading the srvr answer: {e}")))?;
        Ok::<_, StepError>(String::from_utf8_lossy(&answer).to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), ask).await {
        Ok(r) => r,
        Err(_) => Err(StepError::new(FailureKind::Timeout, "no answer within 10s")),
    }
}

/// The physical directory a path resolves to (symlinks followed), if it is a directory.
pub(crate) const PHYSICAL: &str = r#"for p in "$@"; do
  if r=$(cd -P -- "$p" 2>/dev/null && pwd -P); then printf '%s\000' "$r"; else printf '\000'; fi
done"#;

async fn physical(
    h: &mut HostCtx<'_>,
    step: &str,
    paths: &[String],
) -> Result<Vec<Option<String>>, StepError> {
    let out = h
        .run_ok(
            step,
            &Script::new(PHYSICAL).args(paths.iter().cloned()),
            None,
            Some(&format!("resolve {}", crate::shell::quote_words(paths))),
        )
        .await?;
    let mut v: Vec<Option<String>> = out
        .stdout
        .split(|b| *b == 0)
        .map(|p| Some(String::from_utf8_lossy(p).to_string()).filter(|p| p.starts_with('/')))
        .collect();
    v.truncate(paths.len());
    v.resize(paths.len(), None);
    Ok(v)
}

/// The entries of data directories: `C<path>\0` for what is copied as it is, `L<path>\0` for a
/// transaction log (a regular file `version-2/log.*`), `E<dir>\0` for a directory with nothing
/// in it. Only `sh` (globs and `test`).
const LIST_DATA: &str = r#"for d in "$@"; do
  n=0
  for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    n=$((n + 1))
    if [ "${f##*/}" = version-2 ] && [ -d "$f" ] && [ ! -L "$f" ]; then
      m=0
      for g in "$f"/* "$f"/.[!.]* "$f"/..?*; do
        [ -e "$g" ] || [ -L "$g" ] || continue
        m=$((m + 1))
        case ${g##*/} in
          log.*) if [ -f "$g" ] && [ ! -L "$g" ]; then printf 'L%s\000' "$g"; else printf 'C%s\000' "$g"; fi ;;
          *) printf 'C%s\000' "$g" ;;
        esac
      done
      [ "$m" -gt 0 ] || printf 'E%s\000' "$f"
    else
      printf 'C%s\000' "$f"
    fi
  done
  [ "$n" -gt 0 ] || printf 'E%s\000' "$d"
done"#;

const CAT: &str = r#"exec cat -- "$1""#;

#[async_trait::async_trait]
impl Native for ZooKeeper {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let cfg = if v("zookeeper_config_file").is_empty() {
            format!(
                "zoo.cfg: the running server's ({MAIN} argument, processes of root or {}), else the first of {}",
                v("zookeeper_user"),
                v("zookeeper_config_candidates")
            )
        } else {
            format!("zoo.cfg: {}", v("zookeeper_config_file"))
        };
        vec![
            cfg,
            "select: the server answers srvr with a Mode (asked by lsbackup through the SSH connection)".into(),
            "copy: the directory of zoo.cfg (and the directory it resolves to)".into(),
            format!(
                "copy: dataDir (default {}) and dataLogDir of zoo.cfg; transaction logs without their preallocated padding",
                v("zookeeper_default_data_dir")
            ),
        ]
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        let (cfg_path, cfg_text) = find_config(h).await?;
        let cfg = jvm::parse_properties(&jvm::decode(&cfg_text));
        let loc = locate(
            &cfg,
            h.var("zookeeper_client_port"),
            h.var("zookeeper_default_data_dir"),
        )
        .map_err(|e| StepError::config(format!("{cfg_path}: {e}")))?;
        let not_serving = |why: String| {
            format!(
                "no ZooKeeper serving at {}:{} ({cfg_path}): srvr: {why}",
                loc.addr, loc.port
            )
        };
        let answer = srvr(h, &loc.addr, loc.port)
            .await
            .map_err(|e| StepError::new(e.kind, not_serving(e.cause)))?;
        if !answer.contains("Mode: ") {
            let first = answer.lines().next().unwrap_or("").trim();
            return Err(StepError::api(not_serving(if first.is_empty() {
                "no answer".into()
            } else {
                first.to_string()
            })));
        }
        if let Some(v) = srvr_version(&answer) {
            h.version("zookeeper", &v);
        }
        h.set_var(CFG, cfg_path);
        h.set_var(DATA_DIR, loc.data_dir);
        h.set_var(DATA_LOG_DIR, loc.data_log_dir.unwrap_or_default());
        Ok(None)
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let cfg = h.var(CFG).to_string();
        // config: the directory of zoo.cfg, and the directory it resolves to
        let step = "config";
        h.step(step);
        let dir = match cfg.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((d, _)) => d.to_string(),
            None => ".".to_string(),
        };
        let mut dirs = vec![dir.clone()];
        match physical(h, step, std::slice::from_ref(&dir)).await {
            Ok(r) => dirs.extend(r.into_iter().flatten().filter(|r| *r != dir)),
            Err(e) => h.fail(step, e),
        }
        if let Err(e) = h.copy(step, &dirs, false).await {
            h.fail(step, e);
        }

        // data: dataDir and dataLogDir (each also where it resolves to)
        let step = "data";
        h.step(step);
        let mut wanted = vec![h.var(DATA_DIR).to_string()];
        if !h.var(DATA_LOG_DIR).is_empty() {
            wanted.push(h.var(DATA_LOG_DIR).to_string());
        }
        let resolved = physical(h, step, &wanted).await.at(step)?;
        let mut links = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        let mut missing = Vec::new();
        for (p, r) in wanted.iter().zip(resolved) {
            match r {
                None => missing.push(p.clone()),
                Some(r) => {
                    if r != *p {
                        links.push(p.clone());
                    }
                    if !dirs.contains(&r) {
                        dirs.push(r);
                    }
                }
            }
        }
        for m in &missing {
            h.note(&format!("not found on host: {m}"));
        }
        if dirs.is_empty() {
            return Err(StepError::bad_data(format!(
                "nothing to copy: no such directory on host: {}",
                missing.join(" ")
            ))
            .at(step));
        }
        let out = h
            .run_ok(
                step,
                &Script::new(LIST_DATA).args(dirs.iter().cloned()),
                None,
                Some(&format!("list {}", crate::shell::quote_words(&dirs))),
            )
            .await
            .at(step)?;
        let (mut copy, logs) = parse_listing(&out.stdout);
        copy.splice(0..0, links);
        // snapshots first, then the logs that follow them
        if !copy.is_empty()
            && let Err(e) = h.copy(step, &copy, false).await
        {
            h.fail(step, e);
        }
        self.logs(h, "transaction logs", &logs).await;
        Ok(())
    }
}

/// Split [`LIST_DATA`]'s output into paths copied as they are and transaction logs.
pub fn parse_listing(out: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut copy, mut logs) = (Vec::new(), Vec::new());
    for item in out.split(|b| *b == 0) {
        let Some((&kind, path)) = item.split_first() else {
            continue;
        };
        let path = String::from_utf8_lossy(path).to_string();
        if !path.starts_with('/') {
            continue;
        }
        match kind {
            b'L' => logs.push(path),
            b'C' | b'E' => copy.push(path),
            _ => {}
        }
    }
    (copy, logs)
}

impl ZooKeeper {
    /// Stream each transaction log up to the end of its used part.
    async fn logs(&self, h: &mut HostCtx<'_>, step: &str, logs: &[String]) {
        let (mut kept, mut files) = (0u64, 0usize);
        for path in logs {
            if h.is_cancelled() {
                return;
            }
            let rel = path.trim_start_matches('/').to_string();
            if h.is_taken(&rel) {
                continue;
            }
            let report = Arc::new(Mutex::new(None));
            let r2 = report.clone();
            let res = h
                .stream_filtered(
                    step,
                    &Script::new(CAT).arg(path.clone()),
                    None,
                    &rel,
                    Some(&format!("cat -- {}", crate::shell::quote(path))),
                    move |r| TxnLogReader::new(r, r2),
                )
                .await;
            match res {
                Err(e) => h.fail(step, StepError::new(e.kind, format!("{path}: {}", e.cause))),
                Ok(size) => {
                    let end = report.lock().unwrap().take();
                    match end {
                        Some(TrimEnd::NotALog) => h.note(&format!(
                            "{path}: no ZooKeeper transaction log header (ZKLG): stored whole"
                        )),
                        Some(TrimEnd::Truncated { dropped }) => h.note(&format!(
                            "{path}: ends with a partial transaction ({dropped} bytes, being written during the copy): not stored"
                        )),
                        Some(TrimEnd::BadRecord(why)) => h.note(&format!(
                            "{path}: stored up to a record ZooKeeper would not read either ({why})"
                        )),
                        _ => {}
                    }
                    kept += size;
                    files += 1;
                }
            }
        }
        if files > 0 {
            h.note(&format!(
                "transaction logs stored without their preallocated zero padding: {files} files, {kept} bytes (their used part)"
            ));
        }
    }
}

/// Find and read zoo.cfg: `zookeeper_config_file`, else the running server's config argument,
/// else the first existing candidate. Returns its path and bytes.
async fn find_config(h: &mut HostCtx<'_>) -> Result<(String, Vec<u8>), StepError> {
    let step = "config location";
    let set = h.var("zookeeper_config_file").trim().to_string();
    if !set.is_empty() {
        return match h.read_file(step, &set, None).await? {
            Some(b) => Ok((set, b)),
            None => Err(StepError::config(format!(
                "zookeeper_config_file {set} does not exist on the host"
            ))),
        };
    }
    let user = h.var("zookeeper_user").to_string();
    let found = jvm::find(h, Some(step), MAIN, &user).await?;
    for p in &found.ignored {
        h.note(&jvm::ignored_note(MAIN, &user, p));
    }
    for p in &found.trusted {
        if let Some(cfg) = p.config_arg(MAIN)
            && let Some(b) = h.read_file(step, &cfg, None).await?
        {
            return Ok((cfg, b));
        }
    }
    let cands = h.var("zookeeper_config_candidates").to_string();
    for c in cands.split_whitespace() {
        if let Some(b) = h.read_file(step, c, None).await? {
            return Ok((c.to_string(), b));
        }
    }
    Err(StepError::config(format!(
        "no zoo.cfg found (no running {}, none of {cands}); set zookeeper_config_file",
        MAIN.rsplit('.').next().unwrap_or(MAIN)
    )))
}

// --- transaction logs: the used part ------------------------------------------------------------

/// The file header of a transaction log: magic `ZKLG`, int version, long dbid.
const HEADER_LEN: usize = 16;
/// A record's head: long crc, int length.
const RECORD_HEAD: usize = 12;
/// Longer records are not believed (ZooKeeper's own limit, `jute.maxbuffer`, is 1 MiB by
/// default); the used part ends before such a record.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Why the kept part of a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrimEnd {
    /// At a record of length 0: the preallocated zero padding.
    Padding,
    /// The file ended after a complete record (no padding).
    EndOfFile,
    /// The file ended inside a record (being written while read): that record is dropped.
    Truncated { dropped: u64 },
    /// A record ZooKeeper would not read either (negative or huge length, no end marker).
    BadRecord(String),
    /// Not a transaction log (no `ZKLG` header, or shorter than one): passed whole.
    NotALog,
}

/// The used part of a ZooKeeper transaction log, computed as bytes arrive: the 16-byte header,
/// then records `long crc, int len, byte[len], 'B'` while `len > 0` and complete. Memory: at
/// most one record (bounded by [`MAX_RECORD`]) is held.
#[derive(Debug)]
pub struct TxnLogTrimmer {
    stage: Stage,
    /// Bytes of the current unit (header, record head, record) not yet complete.
    cur: Vec<u8>,
    need: usize,
    end: Option<TrimEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    RecordHead,
    Record,
    Whole,
    Done,
}

impl Default for TxnLogTrimmer {
    fn default() -> Self {
        Self::new()
    }
}

impl TxnLogTrimmer {
    pub fn new() -> TxnLogTrimmer {
        TxnLogTrimmer {
            stage: Stage::Header,
            cur: Vec::new(),
            need: HEADER_LEN,
            end: None,
        }
    }

    /// True once the used part is complete: no more input is needed.
    pub fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Why it ended (after [`TxnLogTrimmer::done`] or [`TxnLogTrimmer::finish`]).
    pub fn end(&self) -> Option<&TrimEnd> {
        self.end.as_ref()
    }

    fn stop(&mut self, end: TrimEnd) {
        self.stage = Stage::Done;
        self.end = Some(end);
        self.cur = Vec::new();
    }

    /// Feed input; what is kept of it is appended to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.stage {
                Stage::Done => return,
                Stage::Whole => {
                    out.extend_from_slice(input);
                    return;
                }
                Stage::Header | Stage::RecordHead | Stage::Record => {
                    let take = (self.need - self.cur.len()).min(input.len());
                    self.cur.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.cur.len() == self.need {
                        self.unit_complete(out);
                    }
                }
            }
        }
    }

    fn unit_complete(&mut self, out: &mut Vec<u8>) {
        match self.stage {
            Stage::Header => {
                let is_log = self.cur.starts_with(b"ZKLG");
                out.append(&mut self.cur);
                if is_log {
                    self.stage = Stage::RecordHead;
                    self.need = RECORD_HEAD;
                } else {
                    self.stage = Stage::Whole;
                    self.end = Some(TrimEnd::NotALog);
                }
            }
            Stage::RecordHead => {
                let len = i32::from_be_bytes(self.cur[8..12].try_into().unwrap());
                if len == 0 {
                    self.stop(TrimEnd::Padding);
                } else if len < 0 {
                    self.stop(TrimEnd::BadRecord(format!("record length {len}")));
                } else if len as usize > MAX_RECORD {
                    self.stop(TrimEnd::BadRecord(format!(
                        "record length {len} over {MAX_RECORD}"
                    )));
                } else {
                    self.stage = Stage::Record;
                    self.need = RECORD_HEAD + len as usize + 1;
                }
            }
            Stage::Record => {
                if self.cur.last() != Some(&b'B') {
                    self.stop(TrimEnd::BadRecord(
                        "record without its end marker 'B'".into(),
                    ));
                } else {
                    out.append(&mut self.cur);
                    self.stage = Stage::RecordHead;
                    self.need = RECORD_HEAD;
                }
            }
            Stage::Whole | Stage::Done => {}
        }
    }

    /// The input ended: what is still kept is appended to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.stage {
            Stage::Header => {
                // shorter than a header: not a log, passed whole
                out.append(&mut self.cur);
                self.stop(TrimEnd::NotALog);
            }
            Stage::RecordHead if self.cur.is_empty() => self.stop(TrimEnd::EndOfFile),
            Stage::RecordHead | Stage::Record => {
                let dropped = self.cur.len() as u64;
                self.stop(TrimEnd::Truncated { dropped });
            }
            Stage::Whole => {
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }
}

/// An [`AsyncRead`] of the used part of the transaction log read from `inner`: it ends as soon
/// as the used part is complete, without reading the rest of `inner`. Why it ended goes to
/// `report`.
pub struct TxnLogReader<R> {
    inner: R,
    trim: TxnLogTrimmer,
    buf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    report: Arc<Mutex<Option<TrimEnd>>>,
}

impl<R> TxnLogReader<R> {
    pub fn new(inner: R, report: Arc<Mutex<Option<TrimEnd>>>) -> TxnLogReader<R> {
        TxnLogReader {
            inner,
            trim: TxnLogTrimmer::new(),
            buf: vec![0; 64 * 1024],
            out: Vec::new(),
            pos: 0,
            report,
        }
    }

    fn publish(&self) {
        if let Some(e) = self.trim.end() {
            *self.report.lock().unwrap() = Some(e.clone());
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TxnLogReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = (this.out.len() - this.pos).min(dst.remaining());
                dst.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.out.len() {
                    this.out.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.trim.done() {
                this.publish();
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.trim.finish(&mut this.out);
                    } else {
                        let (trim, buf, out) = (&mut this.trim, &this.buf, &mut this.out);
                        trim.push(&buf[..n], out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log: header, records with the given payloads, then `pad` zero bytes.
    fn log(payloads: &[&[u8]], pad: usize) -> (Vec<u8>, usize) {
        let mut v = b"ZKLG".to_vec();
        v.extend_from_slice(&2i32.to_be_bytes());
        v.extend_from_slice(&0i64.to_be_bytes());
        for p in payloads {
            v.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
            v.extend_from_slice(&(p.len() as i32).to_be_bytes());
            v.extend_from_slice(p);
            v.push(b'B');
        }
        let used = v.len();
        v.resize(used + pad, 0);
        (v, used)
    }

    /// Trim `data` fed in chunks of `chunk` bytes.
    fn trim(data: &[u8], chunk: usize) -> (Vec<u8>, TrimEnd, usize) {
        let mut t = TxnLogTrimmer::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for c in data.chunks(chunk.max(1)) {
            if t.done() {
                break;
            }
            t.push(c, &mut out);
            consumed += c.len();
        }
        if !t.done() {
            t.finish(&mut out);
        }
        (out, t.end().cloned().unwrap(), consumed)
    }

    #[test]
    fn used_part_ends_at_the_padding_whatever_the_chunking() {
        let (data, used) = log(&[b"first txn", &[7u8; 300], b"B-ending payload B"], 1 << 20);
        for chunk in [1, 2, 11, 12, 13, 16, 17, 100, 4096, 1 << 21] {
            let (out, end, consumed) = trim(&data, chunk);
            assert_eq!(out, data[..used], "chunk {chunk}");
            assert_eq!(end, TrimEnd::Padding, "chunk {chunk}");
            // it stopped reading right after the first padding record head
            assert!(
                consumed < used + RECORD_HEAD + chunk,
                "chunk {chunk}: {consumed}"
            );
        }
    }

    #[test]
    fn no_padding_empty_log_and_truncated_records() {
        let (data, used) = log(&[b"a", b"bb"], 0);
        assert_eq!(trim(&data, 5), (data.clone(), TrimEnd::EndOfFile, used));
        let (data, _) = log(&[], 100);
        assert_eq!(trim(&data, 7).0, data[..HEADER_LEN]);
        // cut inside the last record's head, payload, end marker: that record is dropped
        let (full, _) = log(&[b"one", b"two-two"], 0);
        let first_end = HEADER_LEN + RECORD_HEAD + 3 + 1;
        for cut in [first_end + 1, first_end + RECORD_HEAD, full.len() - 1] {
            let (out, end, _) = trim(&full[..cut], 3);
            assert_eq!(out, full[..first_end], "cut {cut}");
            assert_eq!(
                end,
                TrimEnd::Truncated {
                    dropped: (cut - first_end) as u64
                }
            );
        }
    }

    #[test]
    fn hostile_and_foreign_inputs() {
        // not a log: passed whole
        let text = b"this is not a transaction log at all, but some other file".to_vec();
        assert_eq!(trim(&text, 4), (text.clone(), TrimEnd::NotALog, text.len()));
        // shorter than a header, even one starting with the magic
        assert_eq!(trim(b"ZKL", 1).0, b"ZKL");
        assert_eq!(trim(b"ZKLG\0\0", 2).1, TrimEnd::NotALog);
        assert_eq!(trim(b"", 2), (vec![], TrimEnd::NotALog, 0));
        // a negative or huge length ends the used part before that record, without
        // allocating or waiting for it
        let (mut data, used) = log(&[b"ok"], 0);
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&(-5i32).to_be_bytes());
        data.extend_from_slice(&[1u8; 64]);
        let (out, end, _) = trim(&data, 9);
        assert_eq!(out, data[..used]);
        assert!(matches!(end, TrimEnd::BadRecord(_)), "{end:?}");
        let (mut data, used) = log(&[b"ok"], 0);
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&i32::MAX.to_be_bytes());
        data.extend_from_slice(&[1u8; 64]);
        let (out, end, consumed) = trim(&data, 9);
        assert_eq!(out, data[..used]);
        assert!(matches!(end, TrimEnd::BadRecord(_)), "{end:?}");
        assert!(consumed <= used + RECORD_HEAD + 9);
        // a record whose end marker is not 'B'
        let (mut data, used) = log(&[b"ok"], 0);
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"xyzX");
        data.extend_from_slice(&[0u8; 40]);
        let (out, end, _) = trim(&data, 64);
        assert_eq!(out, data[..used]);
        assert!(matches!(end, TrimEnd::BadRecord(_)), "{end:?}");
    }

    #[tokio::test]
    async fn reader_stops_without_reading_the_padding() {
        let (data, used) = log(&[&b"x"[..]; 50], 8 << 20);
        let report = Arc::new(Mutex::new(None));
        // a reader that counts what was taken from it
        let src = std::io::Cursor::new(data.clone());
        let mut r = TxnLogReader::new(src, report.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data[..used]);
        assert_eq!(*report.lock().unwrap(), Some(TrimEnd::Padding));
        let taken = r.inner.position() as usize;
        assert!(taken <= 64 * 1024 + used, "read {taken} of {}", data.len());
    }

    #[test]
    fn zoo_cfg_locations() {
        let cfg = jvm::parse_properties(
            "tickTime=2000\ndataDir=/var/lib/zookeeper/\nclientPortAddress=0.0.0.0\nclientPort = 2182 \n",
        );
        let l = locate(&cfg, "", "/default").unwrap();
        assert_eq!(
            l,
            Location {
                addr: "127.0.0.1".into(),
                port: 2182,
                data_dir: "/var/lib/zookeeper".into(),
                data_log_dir: None
            }
        );
        assert_eq!(locate(&cfg, "1", "/d").unwrap().port, 1);
        assert!(locate(&cfg, "x1", "/d").is_err());
        let cfg = jvm::parse_properties(
            "dataLogDir=/logs\nclientPortAddress=[::1]\nsecureClientPort=2281\nclientPort=2181\n",
        );
        let l = locate(&cfg, "", "/default").unwrap();
        assert_eq!(l.data_dir, "/default");
        assert_eq!(l.data_log_dir.as_deref(), Some("/logs"));
        assert_eq!(l.addr, "::1");
        let only_secure = jvm::parse_properties("secureClientPort=2281\n");
        let e = locate(&only_secure, "", "/d").unwrap_err();
        assert!(e.contains("secureClientPort"), "{e}");
        assert_eq!(
            locate(&jvm::parse_properties(""), "", "/d").unwrap().port,
            2181
        );
        // hostile values are data
        let cfg = jvm::parse_properties("dataDir=/x$(touch /tmp/M)\nclientPort=99999\n");
        assert!(locate(&cfg, "", "/d").is_err());
        assert_eq!(
            locate(&cfg, "2181", "/d").unwrap().data_dir,
            "/x$(touch /tmp/M)"
        );
    }

    #[test]
    fn srvr_version_and_listing() {
        let a = "Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25 08:49 UTC\nLatency min/avg/max: 0/0.0/0\nMode: standalone\n";
        assert_eq!(srvr_version(a).as_deref(), Some("3.8.0"));
        assert_eq!(
            srvr_version("srvr is not executed because it is not in the whitelist."),
            None
        );
        let (c, l) = parse_listing(
            b"C/var/lib/zookeeper/myid\0L/var/lib/zookeeper/version-2/log.1\0Cnot-absolute\0X/weird\0E/empty\0",
        );
        assert_eq!(c, ["/var/lib/zookeeper/myid", "/empty"]);
        assert_eq!(l, ["/var/lib/zookeeper/version-2/log.1"]);
    }

    #[test]
    fn listing_script_runs_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data $(touch x)");
        std::fs::create_dir_all(d.join("version-2")).unwrap();
        std::fs::write(d.join("myid"), "1").unwrap();
        std::fs::write(d.join("version-2/log.1"), "x").unwrap();
        std::fs::write(d.join("version-2/snapshot.0"), "s").unwrap();
        std::fs::write(d.join("version-2/.hidden"), "h").unwrap();
        std::fs::create_dir(d.join("version-2/log.dir")).unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let script = Script::new(LIST_DATA)
            .arg(d.display().to_string())
            .arg(empty.display().to_string());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.to_shell())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let (mut c, l) = parse_listing(&out.stdout);
        c.sort();
        let p = |s: &str| d.join(s).display().to_string();
        let mut want = vec![
            p("myid"),
            p("version-2/.hidden"),
            p("version-2/log.dir"),
            p("version-2/snapshot.0"),
            empty.display().to_string(),
        ];
        want.sort();
        assert_eq!(c, want);
        assert_eq!(l, [p("version-2/log.1")]);
        assert!(!dir.path().join("x").exists());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                Script::new(PHYSICAL)
                    .arg(d.display().to_string())
                    .arg("/nonexistent")
                    .to_shell(),
            )
            .output()
            .unwrap();
        let parts: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(
            parts[0],
            std::fs::canonicalize(&d)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
        );
        assert_eq!(parts[1], b"");
    }
}
