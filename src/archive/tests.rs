//! Writer tests: every format is written, then read back by astral-tokio-tar / the zip crate
//! (`verify_archive`) and by the system's `tar`, `zstd`, `gzip` and `unzip`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

const FORMATS: [Format; 3] = [Format::TarZst, Format::TarGz, Format::Zip];

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A 1 MiB pool of pseudo-random bytes from a small alphabet (mildly compressible), made once.
fn pool() -> &'static [u8] {
    static POOL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnop \n"[(x % 18) as usize]
            })
            .collect()
    })
}

/// Deterministic pseudo-random data: 4 KiB pieces of [`pool`] at xorshift-chosen offsets
/// (fast even in debug builds).
struct Gen(u64);

impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        let pool = pool();
        for piece in buf.chunks_mut(4096) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let at = (self.0 % (pool.len() - 4096) as u64) as usize;
            piece.copy_from_slice(&pool[at..at + piece.len()]);
        }
    }
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).fill(&mut v);
        v
    }
}

/// A consistent manifest for `entries`: an entry `C/H/...` belongs to component `C` on host
/// `H`, and every such host is in the inventory.
fn manifest_with(format: Format, entries: Vec<EntryRecord>) -> Manifest {
    let mut by_component: BTreeMap<String, BTreeMap<String, Vec<EntryRecord>>> = BTreeMap::new();
    for e in entries {
        let mut parts = e.path.split('/');
        let c = parts.next().unwrap_or_default().to_string();
        let h = parts.next().unwrap_or("h").to_string();
        by_component
            .entry(c)
            .or_default()
            .entry(h)
            .or_default()
            .push(e);
    }
    if by_component.is_empty() {
        by_component.insert("test".into(), BTreeMap::from([("h".into(), vec![])]));
    }
    let hosts: BTreeMap<String, String> = by_component
        .values()
        .flat_map(|hs| hs.keys())
        .map(|h| (h.clone(), "127.0.0.1:22".to_string()))
        .collect();
    Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: crate::VERSION.into(),
        },
        started_at: "2026-11-25T01:39:04Z".into(),
        finished_at: "2026-11-25T01:40:00Z".into(),
        build_dir: "/build".into(),
        archive_name: format!("test.{}", format.extension()),
        archive_format: format,
        status: Status::Ok,
        inventory: InventoryInfo {
            path: "/build/inventory".into(),
            groups: BTreeMap::new(),
            hosts,
        },
        selection: by_component.keys().cloned().collect(),
        host_key_checking: String::new(),
        components: by_component
            .into_iter()
            .map(|(name, hosts)| ComponentReport {
                name,
                description: "test entries".into(),
                groups: vec![],
                status: Status::Ok,
                hosts: hosts
                    .into_iter()
                    .map(|(host, entries)| HostReport {
                        host,
                        address: "127.0.0.1:22".into(),
                        role: "all".into(),
                        status: Status::Ok,
                        versions: BTreeMap::new(),
                        commands: vec![],
                        entries: entries.into(),
                        flags: vec![],
                        errors: vec![],
                    })
                    .collect(),
                errors: vec![],
            })
            .collect(),
        archive: None,
    }
}

async fn file_sink(path: &Path) -> Box<dyn AsyncWrite + Send + Unpin> {
    Box::new(tokio::fs::File::create(path).await.unwrap())
}

fn opts(format: Format) -> WriterOptions {
    WriterOptions {
        zstd_workers: 2,
        ..WriterOptions::new(format)
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Extract with the system tools into a fresh directory.
fn extract_with_cli(archive: &Path, format: Format) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    match format {
        Format::TarZst => {
            run(Command::new("zstd").args(["-q", "-t"]).arg(archive));
            run(Command::new("tar")
                .args(["--zstd", "-xf"])
                .arg(archive)
                .arg("-C")
                .arg(dir.path()));
        }
        Format::TarGz => {
            run(Command::new("gzip").arg("-t").arg(archive));
            run(Command::new("tar")
                .args(["-xzf"])
                .arg(archive)
                .arg("-C")
                .arg(dir.path()));
        }
        Format::Zip => {
            run(Command::new("unzip").args(["-tq"]).arg(archive));
            run(Command::new("unzip")
                .arg("-q")
                .arg(archive)
                .arg("-d")
                .arg(dir.path()));
        }
    }
    dir
}

/// Entry names as listed by the system tools, in archive order.
fn list_with_cli(archive: &Path, format: Format) -> Vec<String> {
    let out = match format {
        Format::TarZst => run(Command::new("tar").args(["--zstd", "-tf"]).arg(archive)),
        Format::TarGz => run(Command::new("tar").args(["-tzf"]).arg(archive)),
        Format::Zip => run(Command::new("unzip").arg("-Z1").arg(archive)),
    };
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// A long path: > 100 bytes (GNU long name in tar) and > 255 bytes.
fn long_path(n: usize) -> String {
    let seg = "a-rather-long-directory-name-0123456789";
    let mut p = String::from("test/h");
    while p.len() < n {
        p.push('/');
        p.push_str(seg);
    }
    p.push_str("/file.conf");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips() {
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("a.{}", format.extension()));
        let w = ArchiveWriter::new(file_sink(&path).await, opts(format))
            .await
            .unwrap();
        let s = w.sink();
        let mut recs = Vec::new();
        let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();

        recs.push(s.add_dir("test/h", 0o755, 1_700_000_000).await.unwrap());
        recs.push(
            s.add_dir("test/h/etc/", 0o700, 1_700_000_000)
                .await
                .unwrap(),
        );
        assert_eq!(recs.last().unwrap().path, "test/h/etc");

        let dump = Gen::bytes(1, 700_000);
        let r = s
            .add_stream("test/h/dump.sql", 0o640, dump.as_slice())
            .await
            .unwrap();
        assert_eq!(
            (r.size, r.sha256.as_deref(), r.mode, r.kind),
            (700_000, Some(sha(&dump).as_str()), 0o640, EntryKind::File)
        );
        recs.push(r);
        expected.insert("test/h/dump.sql".into(), dump);

        let conf = b"listen_addresses = '*'\n".to_vec();
        let meta = EntryMeta {
            path: "test/h/etc/postgresql.conf".into(),
            size: conf.len() as u64,
            mode: 0o100644,
            mtime: 1_700_000_000,
        };
        let r = s.add_sized(meta, conf.as_slice()).await.unwrap();
        assert_eq!((r.mode, r.sha256.clone().unwrap()), (0o644, sha(&conf)));
        recs.push(r);
        expected.insert("test/h/etc/postgresql.conf".into(), conf);

        // Empty files, both ways.
        recs.push(
            s.add_stream("test/h/empty-stream", 0o600, tokio::io::empty())
                .await
                .unwrap(),
        );
        let meta = EntryMeta {
            path: "test/h/empty-sized".into(),
            size: 0,
            mode: 0o600,
            mtime: 0,
        };
        recs.push(s.add_sized(meta, tokio::io::empty()).await.unwrap());
        expected.insert("test/h/empty-stream".into(), vec![]);
        expected.insert("test/h/empty-sized".into(), vec![]);
        assert_eq!(
            recs.last().unwrap().sha256.as_deref(),
            Some(sha(b"").as_str())
        );

        // Long paths and a non-ASCII name.
        for n in [120, 300] {
            let p = long_path(n);
            let data = Gen::bytes(n as u64, 3000);
            recs.push(s.add_stream(&p, 0o644, data.as_slice()).await.unwrap());
            expected.insert(p, data);
        }
        let uni = "test/h/etc/zażółć gęślą jaźń.txt".to_string();
        recs.push(s.add_stream(&uni, 0o644, &b"unicode"[..]).await.unwrap());
        expected.insert(uni, b"unicode".to_vec());

        // Symlinks: short and long targets.
        recs.push(
            s.add_symlink("test/h/etc/current", "postgresql.conf", 1_700_000_000)
                .await
                .unwrap(),
        );
        let long_target = format!("../{}", "x".repeat(150));
        recs.push(
            s.add_symlink("test/h/long-link", &long_target, 1_700_000_000)
                .await
                .unwrap(),
        );

        let manifest = manifest_with(format, recs.clone());
        w.finish(&manifest).await.unwrap();

        // Our own reader: sizes, sha256s, symlink targets, manifest last.
        let report = verify_archive(&path).await.unwrap();
        assert!(report.is_ok(), "{format}: {report:#?}");
        assert_eq!(report.format, format);
        assert_eq!(report.entries, recs.len());
        assert!(report.unverified.is_empty());
        let m = read_manifest(&path).await.unwrap();
        assert_eq!(m.archive_name, manifest.archive_name);
        assert_eq!(m.entries().count(), recs.len());

        // The system tools: manifest.json last, every path present, contents byte-identical.
        let listed = list_with_cli(&path, format);
        assert_eq!(
            listed.last().map(String::as_str),
            Some(MANIFEST_PATH),
            "{format}: {listed:?}"
        );
        for r in &recs {
            assert!(
                listed.contains(&r.path),
                "{format}: {} not listed in {listed:?}",
                r.path
            );
        }
        let out = extract_with_cli(&path, format);
        for (p, data) in &expected {
            let got =
                std::fs::read(out.path().join(p)).unwrap_or_else(|e| panic!("{format}: {p}: {e}"));
            assert!(got == *data, "{format}: {p} differs");
        }
        let link = std::fs::read_link(out.path().join("test/h/etc/current")).unwrap();
        assert_eq!(link, PathBuf::from("postgresql.conf"), "{format}");
        let link = std::fs::read_link(out.path().join("test/h/long-link")).unwrap();
        assert_eq!(link, PathBuf::from(&long_target), "{format}");
        let json: Manifest =
            serde_json::from_slice(&std::fs::read(out.path().join(MANIFEST_PATH)).unwrap())
                .unwrap();
        assert_eq!(json.components[0].hosts[0].entries, recs);
        if format != Format::Zip {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.path().join("test/h/dump.sql"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640, "{format}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_entries_from_many_tasks() {
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("c.{}", format.extension()));
        let w = ArchiveWriter::new(file_sink(&path).await, opts(format))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let s = w.sink();
            tasks.push(tokio::spawn(async move {
                let mut recs = Vec::new();
                for i in 0..40u64 {
                    let seed = t * 1000 + i;
                    // Sizes from 0 to ~600 KiB, crossing chunk boundaries.
                    let size = ((seed * 7919) % 600_000) as usize * (i % 5 != 0) as usize;
                    let data = Gen::bytes(seed, size);
                    let p = format!("comp{}/host{t}/file-{i}", i % 3);
                    let r = if i % 2 == 0 {
                        s.add_stream(&p, 0o600, data.as_slice()).await.unwrap()
                    } else {
                        let meta = EntryMeta {
                            path: p,
                            size: size as u64,
                            mode: 0o644,
                            mtime: 1_700_000_000,
                        };
                        s.add_sized(meta, data.as_slice()).await.unwrap()
                    };
                    assert_eq!(r.sha256.as_deref(), Some(sha(&data).as_str()));
                    recs.push(r);
                    tokio::task::yield_now().await;
                }
                recs
            }));
        }
        let mut recs = Vec::new();
        for t in tasks {
            recs.extend(t.await.unwrap());
        }
        assert_eq!(recs.len(), 320);
        w.finish(&manifest_with(format, recs.clone()))
            .await
            .unwrap();
        let report = verify_archive(&path).await.unwrap();
        assert!(report.is_ok(), "{format}: {report:#?}");
        assert_eq!(report.entries, 320);
        // Cross-check a sample with the system tools.
        let out = extract_with_cli(&path, format);
        for r in recs.iter().step_by(37) {
            let got = std::fs::read(out.path().join(&r.path)).unwrap();
            assert_eq!(Some(sha(&got)), r.sha256, "{format}: {}", r.path);
        }
    }
}

/// An `AsyncRead` producing `remaining` generated bytes, hashing what it hands out.
struct GenReader {
    gen_: Gen,
    remaining: u64,
    hasher: Sha256,
}

impl AsyncRead for GenReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.remaining).min(64 * 1024) as usize;
        let mut tmp = vec![0u8; n];
        self.gen_.fill(&mut tmp);
        self.hasher.update(&tmp);
        self.remaining -= n as u64;
        buf.put_slice(&tmp);
        Poll::Ready(Ok(()))
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn current_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stream_keeps_memory_flat() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tar.zst");
    // Reset the peak-RSS counter (Linux >= 4.0), so the peak below is this test's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = current_rss_kib();

    let w = ArchiveWriter::new(
        file_sink(&path).await,
        WriterOptions {
            spool_dir: Some(dir.path().into()),
            ..opts(Format::TarZst)
        },
    )
    .await
    .unwrap();
    let s = w.sink();
    let mut reader = GenReader {
        gen_: Gen(42),
        remaining: SIZE,
        hasher: Sha256::new(),
    };
    let r1 = s
        .add_stream("big/h/stream.bin", 0o600, &mut reader)
        .await
        .unwrap();
    assert_eq!(r1.size, SIZE);
    assert_eq!(r1.sha256, Some(hex::encode(reader.hasher.finalize())));
    // The spool file is anonymous: nothing is left in the spool dir.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("big.tar.zst")]);

    let mut reader = GenReader {
        gen_: Gen(43),
        remaining: SIZE / 2,
        hasher: Sha256::new(),
    };
    let meta = EntryMeta {
        path: "big/h/sized.bin".into(),
        size: SIZE / 2,
        mode: 0o600,
        mtime: 0,
    };
    let r2 = s.add_sized(meta, &mut reader).await.unwrap();
    assert_eq!(r2.sha256, Some(hex::encode(reader.hasher.finalize())));
    w.finish(&manifest_with(Format::TarZst, vec![r1, r2]))
        .await
        .unwrap();
    // The spool held compressed bytes (the random data does not compress: about its size),
    // and none are left once the entries are in the archive.
    let st = s.stats();
    assert!(st.spool_peak > SIZE / 4, "{st:?}");
    assert!(st.spool_peak < SIZE + SIZE / 8, "{st:?}");
    assert_eq!(st.spool_now, 0, "{st:?}");
    assert_eq!(st.written, std::fs::metadata(&path).unwrap().len());

    let grown_mib = peak_rss_kib().saturating_sub(base) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB while writing 300 MiB");
    // 300 MiB went through; the writer holds a few 512 KiB chunks and two zstd contexts.
    // Anything near the data size would mean buffering.
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while writing 300 MiB"
    );

    let report = verify_archive(&path).await.unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.bytes, SIZE + SIZE / 2);
}

/// Yields `good` bytes, then fails.
struct FailingReader {
    good: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.good == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "channel closed by peer",
            )));
        }
        let n = buf.remaining().min(self.good);
        buf.put_slice(&vec![b'x'; n]);
        self.good -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn failures_keep_the_archive_valid() {
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("f.{}", format.extension()));
        let w = ArchiveWriter::new(file_sink(&path).await, WriterOptions::new(format))
            .await
            .unwrap();
        let s = w.sink();
        let mut recs = Vec::new();

        // A stream that fails: nothing added, the path can be used again.
        let e = s
            .add_stream("t/h/dump", 0o600, FailingReader { good: 300_000 })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ArchiveError::Entry { path, cause } if path == "t/h/dump" && cause.contains("channel closed by peer") && cause.contains("nothing added")),
            "{e}"
        );
        recs.push(
            s.add_stream("t/h/dump", 0o600, &b"retry"[..])
                .await
                .unwrap(),
        );

        // A sized source that ends early: Truncated, nothing added, the path free again.
        let meta = EntryMeta {
            path: "t/h/short".into(),
            size: 1000,
            mode: 0o644,
            mtime: 0,
        };
        let e = s.add_sized(meta, &b"only this"[..]).await.unwrap_err();
        assert!(
            matches!(e, ArchiveError::Truncated { ref path, got: 9, expected: 1000 } if path == "t/h/short"),
            "{e}"
        );
        let meta = EntryMeta {
            path: "t/h/short".into(),
            size: 9,
            mode: 0o644,
            mtime: 0,
        };
        recs.push(s.add_sized(meta, &b"only this"[..]).await.unwrap());

        // A sized source that fails midway: nothing added, the error names the cause.
        let meta = EntryMeta {
            path: "t/h/broken".into(),
            size: 600_000,
            mode: 0o644,
            mtime: 0,
        };
        let e = s
            .add_sized(meta, FailingReader { good: 300_000 })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ArchiveError::Entry { cause, .. } if cause.contains("after 300000 of 600000 bytes")),
            "{e}"
        );

        // A sized source with more data than declared: stops at the size.
        let meta = EntryMeta {
            path: "t/h/long".into(),
            size: 4,
            mode: 0o644,
            mtime: 0,
        };
        let r = s.add_sized(meta, &b"1234567890"[..]).await.unwrap();
        assert_eq!(r.sha256, Some(sha(b"1234")));
        recs.push(r);

        // Duplicates, bad paths and the reserved name are refused up front.
        let e = s
            .add_stream("t/h/long", 0o600, &b"dup"[..])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already in the archive"), "{e}");
        for bad in ["", "/abs", "a//b", "a/../b", "./a", MANIFEST_PATH] {
            assert!(
                matches!(
                    s.add_dir(bad, 0o755, 0).await,
                    Err(ArchiveError::Entry { .. })
                ),
                "{bad:?}"
            );
        }

        w.finish(&manifest_with(format, recs)).await.unwrap();
        let report = verify_archive(&path).await.unwrap();
        assert!(report.is_ok(), "{format}: {report:#?}");
        assert!(report.unverified.is_empty(), "{report:#?}");
        let out = extract_with_cli(&path, format);
        assert_eq!(
            std::fs::read(out.path().join("t/h/short")).unwrap(),
            b"only this"
        );
        assert!(!out.path().join("t/h/broken").exists());
        assert_eq!(std::fs::read(out.path().join("t/h/long")).unwrap(), b"1234");
        assert_eq!(
            std::fs::read(out.path().join("t/h/dump")).unwrap(),
            b"retry"
        );
    }
}

/// A reader that waits before each piece, to keep an entry in flight.
struct SlowReader {
    pieces: usize,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SlowReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pieces == 0 {
            return Poll::Ready(Ok(()));
        }
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep(std::time::Duration::from_millis(20)))
        });
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        self.pieces -= 1;
        buf.put_slice(b"slow");
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_waits_for_entries_in_flight_then_refuses_more() {
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("w.{}", format.extension()));
        let w = ArchiveWriter::new(file_sink(&path).await, WriterOptions::new(format))
            .await
            .unwrap();
        let s = w.sink();
        let s2 = w.sink();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let slow = tokio::spawn(async move {
            let meta = EntryMeta {
                path: "s/h/slow".into(),
                size: 40,
                mode: 0o600,
                mtime: 0,
            };
            let fut = s.add_sized(
                meta,
                SlowReader {
                    pieces: 10,
                    sleep: None,
                },
            );
            tokio::pin!(fut);
            // Signal once the entry has started.
            tokio::select! {
                biased;
                r = &mut fut => return r,
                _ = tokio::time::sleep(std::time::Duration::from_millis(30)) => {}
            }
            let _ = started_tx.send(());
            fut.await
        });
        started_rx.await.unwrap();
        let slow_stream = tokio::spawn(async move {
            s2.add_stream(
                "s/h/slow-stream",
                0o600,
                SlowReader {
                    pieces: 5,
                    sleep: None,
                },
            )
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let late = w.sink();
        // Both entries are in flight: finish must wait for them.
        let finishing = async { w.finish(&manifest_with(format, vec![])).await };
        let (fin, r1, r2) = tokio::join!(finishing, slow, slow_stream);
        fin.unwrap();
        assert_eq!(r1.unwrap().unwrap().sha256, Some(sha(&b"slow".repeat(10))));
        assert_eq!(r2.unwrap().unwrap().size, 20);
        let e = late.add_dir("s/h/late", 0o755, 0).await.unwrap_err();
        assert!(matches!(e, ArchiveError::Closed(_)), "{e}");
        let report = verify_archive(&path).await.unwrap();
        assert_eq!(
            report.extra,
            vec!["s/h/slow".to_string(), "s/h/slow-stream".to_string()],
            "{format}"
        );
        assert!(report.problems.is_empty() && report.missing.is_empty());
    }
}

/// A sink that accepts `budget` bytes, then fails.
struct BrokenSink {
    budget: usize,
}

impl AsyncWrite for BrokenSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.budget == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full (test)",
            )));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_stops_the_writer_with_its_error() {
    for format in FORMATS {
        let w = ArchiveWriter::new(
            Box::new(BrokenSink { budget: 100_000 }),
            WriterOptions::new(format),
        )
        .await
        .unwrap();
        let s = w.sink();
        let mut first_err = None;
        for i in 0..20 {
            // Incompressible, so the compressed output passes the budget quickly.
            let data: Vec<u8> = (0..6250u32)
                .flat_map(|j| Sha256::digest(format!("{i}-{j}").as_bytes()))
                .collect();
            if let Err(e) = s
                .add_stream(&format!("x/h/{i}"), 0o600, data.as_slice())
                .await
            {
                first_err = Some(e);
                break;
            }
        }
        let e = first_err.unwrap_or_else(|| panic!("{format}: the sink error never surfaced"));
        assert!(matches!(e, ArchiveError::Closed(_)), "{format}: {e}");
        assert!(e.to_string().contains("disk full (test)"), "{format}: {e}");
        let e = w.finish(&manifest_with(format, vec![])).await.unwrap_err();
        assert!(e.to_string().contains("disk full (test)"), "{format}: {e}");
    }
}

#[tokio::test]
async fn writes_to_a_pipe() {
    // A non-seekable sink: the stdin of `zstd -d | tar -t` (tar formats), of `cat > f` (zip).
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("piped");
        let script = match format {
            Format::TarZst => format!("zstd -dc | tar -tvf - > {}", out.display()),
            Format::TarGz => format!("gzip -dc | tar -tvf - > {}", out.display()),
            Format::Zip => format!(
                "cat > {}.zip && unzip -Z1 {}.zip > {}",
                out.display(),
                out.display(),
                out.display()
            ),
        };
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let w = ArchiveWriter::new(Box::new(stdin), WriterOptions::new(format))
            .await
            .unwrap();
        let s = w.sink();
        let r = s
            .add_stream("p/h/data", 0o600, Gen::bytes(9, 2_000_000).as_slice())
            .await
            .unwrap();
        w.finish(&manifest_with(format, vec![r])).await.unwrap();
        assert!(child.wait().await.unwrap().success(), "{format}");
        let listing = std::fs::read_to_string(&out).unwrap();
        assert!(
            listing.contains("p/h/data") && listing.contains(MANIFEST_PATH),
            "{format}: {listing}"
        );
    }
}

#[tokio::test]
async fn incomplete_or_foreign_archives_are_refused() {
    for format in FORMATS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("i.{}", format.extension()));
        let w = ArchiveWriter::new(file_sink(&path).await, WriterOptions::new(format))
            .await
            .unwrap();
        let s = w.sink();
        let r = s
            .add_stream("i/h/data", 0o600, Gen::bytes(3, 1_000_000).as_slice())
            .await
            .unwrap();
        w.finish(&manifest_with(format, vec![r])).await.unwrap();
        let full = std::fs::read(&path).unwrap();

        // Cut off: no clean end of stream (tar) / no central directory (zip).
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &full[..full.len() - 200]).unwrap();
        let e = read_manifest(&cut).await.unwrap_err();
        assert!(matches!(e, ArchiveError::Read { .. }), "{format}: {e}");
        assert!(verify_archive(&cut).await.is_err(), "{format}");

        // A corrupted byte in the middle is caught by a checksum (zstd frame, gzip crc, zip crc)
        // or by the sha256 comparison.
        let mut bad = full.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let badp = dir.path().join("bad");
        std::fs::write(&badp, &bad).unwrap();
        match verify_archive(&badp).await {
            Err(_) => {}
            Ok(rep) => assert!(!rep.is_ok(), "{format}: corruption not detected"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"hello").unwrap();
    let e = read_manifest(&other).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("not a tar.zst, tar.gz or zip archive"),
        "{e}"
    );
    let e = read_manifest(dir.path().join("missing")).await.unwrap_err();
    assert!(e.to_string().contains("opening"), "{e}");
}

#[tokio::test]
async fn an_archive_without_manifest_is_incomplete() {
    // Written by the writer but never finished: dropping it stops the writer task.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.tar.zst");
    let w = ArchiveWriter::new(file_sink(&path).await, WriterOptions::new(Format::TarZst))
        .await
        .unwrap();
    let s = w.sink();
    s.add_stream("n/h/x", 0o600, &b"x"[..]).await.unwrap();
    drop(w);
    let e = s.add_stream("n/h/y", 0o600, &b"y"[..]).await.unwrap_err();
    assert!(matches!(e, ArchiveError::Closed(_)), "{e}");
    assert!(
        e.to_string().contains("abandoned before it was finished"),
        "{e}"
    );
    assert!(read_manifest(&path).await.is_err());
}

#[tokio::test]
async fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o");
    let bad_level = WriterOptions {
        level: Some(12),
        ..WriterOptions::new(Format::TarGz)
    };
    let e = ArchiveWriter::new(file_sink(&p).await, bad_level)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("compression level 12 is out of range for tar.gz (0-9)"),
        "{e}"
    );
    let bad_spool = WriterOptions {
        spool_dir: Some(dir.path().join("nope")),
        ..WriterOptions::new(Format::TarZst)
    };
    let e = ArchiveWriter::new(file_sink(&p).await, bad_spool)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("spool directory is not usable"),
        "{e}"
    );
    assert_eq!("tgz".parse::<Format>().unwrap(), Format::TarGz);
    assert_eq!(".tar.zst".parse::<Format>().unwrap(), Format::TarZst);
    assert!("rar".parse::<Format>().is_err());
    for (f, ext) in [
        (Format::TarZst, "tar.zst"),
        (Format::TarGz, "tar.gz"),
        (Format::Zip, "zip"),
    ] {
        assert_eq!(f.extension(), ext);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            format!("\"{}\"", ext.replace('.', "-"))
        );
    }
    // Levels at the edges work.
    for (format, level) in [(Format::TarZst, 19), (Format::TarGz, 1), (Format::Zip, 0)] {
        let p = dir.path().join(format!("lvl.{}", format.extension()));
        let w = ArchiveWriter::new(
            file_sink(&p).await,
            WriterOptions {
                level: Some(level),
                ..WriterOptions::new(format)
            },
        )
        .await
        .unwrap();
        let r = w
            .sink()
            .add_stream("l/h/x", 0o600, Gen::bytes(5, 100_000).as_slice())
            .await
            .unwrap();
        w.finish(&manifest_with(format, vec![r])).await.unwrap();
        assert!(
            verify_archive(&p).await.unwrap().is_ok(),
            "{format} level {level}"
        );
    }
}

/// docs/format.md's example manifest.
fn documented_manifest() -> &'static str {
    let doc = include_str!("../../docs/format.md");
    let section = doc
        .find("## Manifest (`manifest.json`)")
        .expect("manifest section in docs/format.md");
    let start = section
        + doc[section..]
            .find("```json\n")
            .expect("json example in docs/format.md")
        + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    &doc[start..end]
}

#[test]
fn the_documented_manifest_example_parses() {
    // docs/format.md's example must stay in step with the schema.
    let m: Manifest = serde_json::from_str(documented_manifest()).unwrap();
    assert_eq!(m.format_version, MANIFEST_FORMAT);
    assert_eq!(m.archive_format, Format::TarZst);
    assert_eq!(m.status, Status::Partial);
    for e in m.entries() {
        assert_eq!(e.sha256.as_ref().map(|s| s.len()), Some(64), "{}", e.path);
        assert!(e.path.starts_with("postgresql/node1/"));
    }
    assert_eq!(m.entries().count(), 2);
    // What we write reads back the same.
    let again: Manifest = serde_json::from_slice(&serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    assert_eq!(
        again.entries().cloned().collect::<Vec<_>>(),
        m.entries().cloned().collect::<Vec<_>>()
    );
}

/// A sidecar is parsed as it streams in: whitespace around it is fine, a cut one or one of an
/// unknown version says so, and one larger than a manifest may be is refused after reading just
/// past the limit (never buffered whole).
#[tokio::test]
async fn sidecar_read_as_a_stream_with_a_limit() {
    let json = documented_manifest();
    let boxed =
        |b: Vec<u8>| -> Box<dyn AsyncRead + Send + Unpin> { Box::new(std::io::Cursor::new(b)) };
    let padded = format!("\n\n   {json}\n\n");
    let m = read::read_sidecar("s.json", boxed(padded.into_bytes()))
        .await
        .unwrap();
    assert_eq!(m.entries().count(), 2);
    let e = read::read_sidecar("s.json", boxed(json.as_bytes()[..json.len() / 2].to_vec()))
        .await
        .unwrap_err();
    assert!(e.starts_with("s.json is not a valid manifest: "), "{e}");
    let future = json.replacen(
        &format!("\"format_version\": {MANIFEST_FORMAT}"),
        "\"format_version\": 99",
        1,
    );
    assert_ne!(future, json);
    let e = read::parse_sidecar_bytes("s.json", future.as_bytes()).unwrap_err();
    assert!(e.contains("format version 99"), "{e}");
    // endless whitespace: refused at the limit
    let endless = tokio::io::repeat(b' ');
    let e = read::read_sidecar("s.json", Box::new(endless))
        .await
        .unwrap_err();
    assert_eq!(e, "s.json is larger than 256 MiB: not a manifest sidecar");
}
