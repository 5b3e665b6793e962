//! Archives stay standard: every format lsbackup writes opens with the standard tools, and what
//! they extract is byte for byte what was written.
//!
//! - tar.zst: `zstd -t`, `zstd -d -c | tar x`, `tar -I zstd -x`, `bsdtar -x`, Python's `tarfile`
//!   (fed the output of `zstd -d`: `tarfile` reads zstd only from Python 3.14 on).
//! - tar.gz: `gzip -t`, `tar xzf`, `bsdtar -x`, Python's `tarfile` (`r:gz`).
//! - zip: `unzip -t`, `unzip`, `bsdtar -x`, Python's `zipfile` (`testzip()`, every member read),
//!   `7z t`.
//!
//! Each archive holds an empty file, a few bytes, 3 MiB of incompressible data (several
//! chunks), 5 MiB of compressible data added as a stream, a path over 100 bytes (a GNU long
//! name in tar), a path with spaces and UTF-8, a directory, a symlink and a symlink whose target
//! is over 100 bytes (a GNU long link in tar), then `manifest.json`.
//!
//! The tools are installed by `tests/testbed/up.sh` (packages zstd, gzip, tar, unzip,
//! libarchive-tools, p7zip-full, python3). A missing tool fails the test under `CI=true`;
//! elsewhere it is skipped with a note on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lsbackup::archive::{
    ArchiveWriter, ComponentReport, EntryMeta, EntryRecord, Format, HostReport, InventoryInfo,
    MANIFEST_FORMAT, MANIFEST_PATH, Manifest, Status, ToolInfo, WriterOptions,
};
use sha2::{Digest, Sha256};

const MTIME: i64 = 1_764_034_744;

/// What an archive path is expected to be (or was found to be) after extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File { size: u64, sha256: String },
    Dir,
    Symlink(String),
}

fn file_node(data: &[u8]) -> Node {
    Node::File {
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
    }
}

/// Deterministic xorshift bytes: incompressible.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Log-like lines: compresses well.
fn compressible_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 100);
    let mut i = 0u64;
    while out.len() < n {
        writeln!(
            out,
            "2026-11-25T01:39:{:02}Z node{} postgres[{}]: LOG:  checkpoint complete: wrote {} buffers",
            i % 60,
            i % 3 + 1,
            1000 + i % 97,
            i % 1000
        )
        .unwrap();
        i += 1;
    }
    out.truncate(n);
    out
}

const DIR: &str = "postgresql/node1";

/// A path over 100 bytes (GNU long name in tar).
fn long_path() -> String {
    format!(
        "{DIR}/var/lib/postgresql/15/main/a-directory-name-long-enough-to-need-a-gnu-long-name-entry/\
         and-a-file-name-that-is-long-as-well.conf"
    )
}

/// A symlink target over 100 bytes (GNU long link in tar).
fn long_target() -> String {
    "../../../some/where/else/entirely/a-symlink-target-that-does-not-fit-into-the-hundred-bytes-of-a-tar-header/target.bin".into()
}

/// The entries of the test archive, in the order they are added.
struct Content {
    empty: Vec<u8>,
    small: Vec<u8>,
    random: Vec<u8>,
    compressible: Vec<u8>,
}

impl Content {
    fn new() -> Content {
        Content {
            empty: Vec::new(),
            small: b"ok\n".to_vec(),
            random: random_bytes(3 << 20),
            compressible: compressible_bytes(5 << 20),
        }
    }

    /// Every explicit entry (not manifest.json) with what it must be after extraction.
    fn expected(&self) -> BTreeMap<String, Node> {
        let mut m = BTreeMap::new();
        m.insert(format!("{DIR}/empty"), file_node(&self.empty));
        m.insert(format!("{DIR}/version.txt"), file_node(&self.small));
        m.insert(format!("{DIR}/random.bin"), file_node(&self.random));
        m.insert(
            format!("{DIR}/log/postgresql.log"),
            file_node(&self.compressible),
        );
        m.insert(long_path(), file_node(&self.small));
        m.insert(
            format!("{DIR}/with space/ünïcødé 文件 ☃.txt"),
            file_node(&self.small),
        );
        m.insert(format!("{DIR}/empty dir"), Node::Dir);
        m.insert(
            format!("{DIR}/current"),
            Node::Symlink("version.txt".into()),
        );
        m.insert(format!("{DIR}/long-link"), Node::Symlink(long_target()));
        m
    }
}

fn manifest(format: Format, entries: Vec<EntryRecord>) -> Manifest {
    Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: lsbackup::VERSION.into(),
        },
        started_at: "2026-11-25T01:39:04Z".into(),
        finished_at: "2026-11-25T01:39:05Z".into(),
        build_dir: "/build".into(),
        archive_name: format!("lsbackup-20261125T013904Z.{}", format.extension()),
        archive_format: format,
        status: Status::Ok,
        inventory: InventoryInfo {
            path: "/build/inventory".into(),
            groups: BTreeMap::new(),
            hosts: BTreeMap::from([("node1".to_string(), "127.0.0.2:2222".to_string())]),
        },
        selection: vec!["postgresql".into()],
        host_key_checking: String::new(),
        components: vec![ComponentReport {
            name: "postgresql".into(),
            description: "PostgreSQL".into(),
            groups: vec!["postgresql".into()],
            status: Status::Ok,
            hosts: vec![HostReport {
                host: "node1".into(),
                address: "127.0.0.2:2222".into(),
                role: "primary".into(),
                status: Status::Ok,
                versions: BTreeMap::new(),
                commands: vec![],
                entries: entries.into(),
                flags: vec![],
                errors: vec![],
            }],
            errors: vec![],
        }],
        archive: None,
    }
}

/// Write the test archive in `format` to `path` through the public writer API; returns the
/// manifest written.
async fn write_archive(path: &Path, format: Format, c: &Content) -> Manifest {
    let file = tokio::fs::File::create(path).await.unwrap();
    let writer = ArchiveWriter::new(Box::new(file), WriterOptions::new(format))
        .await
        .unwrap();
    let sink = writer.sink();
    let sized = |p: String, data: &[u8], mode: u32| {
        (
            EntryMeta {
                path: p,
                size: data.len() as u64,
                mode,
                mtime: MTIME,
            },
            data.to_vec(),
        )
    };
    let mut recs = Vec::new();
    for (meta, data) in [
        sized(format!("{DIR}/empty"), &c.empty, 0o600),
        sized(format!("{DIR}/version.txt"), &c.small, 0o644),
        sized(format!("{DIR}/random.bin"), &c.random, 0o600),
    ] {
        recs.push(sink.add_sized(meta, data.as_slice()).await.unwrap());
    }
    recs.push(
        sink.add_stream(
            &format!("{DIR}/log/postgresql.log"),
            0o640,
            c.compressible.as_slice(),
        )
        .await
        .unwrap(),
    );
    for p in [long_path(), format!("{DIR}/with space/ünïcødé 文件 ☃.txt")] {
        let (meta, data) = sized(p, &c.small, 0o644);
        recs.push(sink.add_sized(meta, data.as_slice()).await.unwrap());
    }
    recs.push(
        sink.add_dir(&format!("{DIR}/empty dir"), 0o750, MTIME)
            .await
            .unwrap(),
    );
    recs.push(
        sink.add_symlink(&format!("{DIR}/current"), "version.txt", MTIME)
            .await
            .unwrap(),
    );
    recs.push(
        sink.add_symlink(&format!("{DIR}/long-link"), &long_target(), MTIME)
            .await
            .unwrap(),
    );
    let m = manifest(format, recs);
    writer.finish(&m).await.unwrap();
    m
}

/// Is `tool` installed? Under `CI=true` a missing tool fails the test; elsewhere the check that
/// needs it is skipped with a note.
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed (apt-get install {package}, or run `sudo tests/testbed/up.sh`): \
             required under CI=true"
        );
        eprintln!("NOTE: {tool} is not installed (package {package}): its checks are skipped");
    }
    found
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Environment for every tool: a UTF-8 locale, so names are not transcoded.
fn tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("LC_ALL", "C.UTF-8");
    c
}

/// Run `cmd`; it must exit 0 and write nothing to stderr (no warnings either). Returns stdout.
fn run_clean(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", show(cmd)));
    check_output(what, &show(cmd), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_output(what: &str, shown: &str, out: &Output) {
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{what}: `{shown}` exited with {}\nstderr:\n{}\nstdout:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&String::from_utf8_lossy(&out.stdout)),
    );
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// `first | second`: both must succeed with empty stderr. Returns the second's stdout.
fn run_pipe(what: &str, first: &mut Command, second: &mut Command) -> String {
    let mut a = first
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", show(first)));
    let b = second
        .stdin(a.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", show(second)));
    let b_out = b.wait_with_output().unwrap();
    let a_out = a.wait_with_output().unwrap();
    check_output(what, &show(first), &a_out);
    check_output(what, &show(second), &b_out);
    String::from_utf8_lossy(&b_out.stdout).into_owned()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap()
        .to_str()
        .unwrap_or_else(|| panic!("extracted name is not UTF-8: {}", p.display()))
        .to_string()
}

/// Everything under `root`: path relative to it -> what it is.
fn scan(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let node = if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                Node::Symlink(t.to_str().expect("UTF-8 symlink target").to_string())
            } else if md.is_dir() {
                stack.push(p.clone());
                Node::Dir
            } else if md.is_file() {
                file_node(&std::fs::read(&p).unwrap())
            } else {
                panic!("{} is neither file, dir nor symlink", p.display());
            };
            out.insert(rel(root, &p), node);
        }
    }
    out
}

/// The tree that extracting the archive must give: every entry, every parent dir of one, and
/// manifest.json.
fn expected_tree(entries: &BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    let mut t = entries.clone();
    for p in entries.keys() {
        let mut parent = Path::new(p).parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            t.insert(d.to_str().unwrap().to_string(), Node::Dir);
            parent = d.parent();
        }
    }
    t
}

/// Compare found with expected, naming every difference.
fn assert_same(what: &str, found: &BTreeMap<String, Node>, expected: &BTreeMap<String, Node>) {
    let mut diffs = Vec::new();
    for (p, want) in expected {
        match found.get(p) {
            None => diffs.push(format!("missing: {p:?} (want {want:?})")),
            Some(got) if got != want => {
                diffs.push(format!("differs: {p:?}: got {got:?}, want {want:?}"))
            }
            Some(_) => {}
        }
    }
    for (p, got) in found {
        if !expected.contains_key(p) {
            diffs.push(format!("unexpected: {p:?} ({got:?})"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n  {}", diffs.join("\n  "));
}

/// The manifest extracted as a file must be the manifest written (as JSON values).
fn assert_manifest(what: &str, data: &[u8], written: &Manifest) {
    let got: serde_json::Value = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("{what}: {MANIFEST_PATH} is not JSON: {e}"));
    let want = serde_json::to_value(written).unwrap();
    assert!(
        got == want,
        "{what}: {MANIFEST_PATH} differs from the one written:\n{got:#}"
    );
}

/// Check a tree extracted by a tool.
fn check_tree(what: &str, root: &Path, entries: &BTreeMap<String, Node>, written: &Manifest) {
    let mut found = scan(root);
    let manifest = found
        .remove(MANIFEST_PATH)
        .unwrap_or_else(|| panic!("{what}: no {MANIFEST_PATH} extracted"));
    assert!(
        matches!(manifest, Node::File { .. }),
        "{what}: {MANIFEST_PATH} is {manifest:?}"
    );
    assert_manifest(
        what,
        &std::fs::read(root.join(MANIFEST_PATH)).unwrap(),
        written,
    );
    assert_same(what, &found, &expected_tree(entries));
}

/// Extract with `extract` (given the empty destination dir), then check the tree.
fn extract_and_check(
    what: &str,
    entries: &BTreeMap<String, Node>,
    written: &Manifest,
    extract: impl FnOnce(&Path),
) {
    let dest = tempfile::tempdir().unwrap();
    extract(dest.path());
    check_tree(what, dest.path(), entries, written);
    eprintln!("ok: {what}");
}

/// Python's tarfile on a tar stream (stdin, mode `r|`) or file (mode `r:gz`): every member's
/// name, type, size, sha256 and link target as JSON lines; manifest.json's content in full.
const PY_TAR: &str = r#"
import hashlib, json, sys, tarfile
src, mode = sys.argv[1], sys.argv[2]
tf = tarfile.open(fileobj=sys.stdin.buffer, mode=mode) if src == "-" else tarfile.open(src, mode)
for m in tf:
    rec = {"name": m.name}
    if m.isfile():
        data = tf.extractfile(m).read()
        rec.update(kind="file", size=m.size, read=len(data), sha256=hashlib.sha256(data).hexdigest())
        if m.name == "manifest.json":
            rec["content"] = data.decode("utf-8")
    elif m.isdir():
        rec["kind"] = "dir"
    elif m.issym():
        rec.update(kind="symlink", target=m.linkname)
    else:
        rec["kind"] = "type " + repr(m.type)
    print(json.dumps(rec))
tf.close()
"#;

/// Python's zipfile: `testzip()` must find nothing; then every member as JSON lines (a symlink's
/// data is its target).
const PY_ZIP: &str = r#"
import hashlib, json, stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    bad = zf.testzip()
    if bad is not None:
        sys.exit("testzip: bad member " + bad)
    for i in zf.infolist():
        data = zf.read(i)
        mode = i.external_attr >> 16
        rec = {"name": i.filename}
        if i.is_dir():
            rec["kind"] = "dir"
        elif stat.S_ISLNK(mode):
            rec.update(kind="symlink", target=data.decode("utf-8"))
        else:
            rec.update(kind="file", size=i.file_size, read=len(data), sha256=hashlib.sha256(data).hexdigest())
            if i.filename == "manifest.json":
                rec["content"] = data.decode("utf-8")
        print(json.dumps(rec))
"#;

#[derive(serde::Deserialize)]
struct PyMember {
    name: String,
    kind: String,
    size: Option<u64>,
    read: Option<u64>,
    sha256: Option<String>,
    target: Option<String>,
    content: Option<String>,
}

/// Check the member list printed by [`PY_TAR`] / [`PY_ZIP`]: exactly the entries written, in
/// order, manifest.json last.
fn check_python_listing(
    what: &str,
    stdout: &str,
    entries: &BTreeMap<String, Node>,
    written: &Manifest,
) {
    let members: Vec<PyMember> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect();
    let last = members
        .last()
        .unwrap_or_else(|| panic!("{what}: no members"));
    assert_eq!(last.name, MANIFEST_PATH, "{what}: the last member");
    let mut found = BTreeMap::new();
    for m in &members {
        let name = m.name.trim_end_matches('/').to_string();
        if name == MANIFEST_PATH {
            assert_eq!(m.kind, "file", "{what}: {MANIFEST_PATH}");
            assert_manifest(what, m.content.as_deref().unwrap().as_bytes(), written);
            continue;
        }
        let node = match m.kind.as_str() {
            "file" => {
                assert_eq!(m.size, m.read, "{what}: {name}: header size vs bytes read");
                Node::File {
                    size: m.read.unwrap(),
                    sha256: m.sha256.clone().unwrap(),
                }
            }
            "dir" => Node::Dir,
            "symlink" => Node::Symlink(m.target.clone().unwrap()),
            other => panic!("{what}: member {name:?} is of kind {other}"),
        };
        assert!(
            found.insert(name.clone(), node).is_none(),
            "{what}: {name:?} twice"
        );
    }
    assert_same(what, &found, entries);
    eprintln!("ok: {what}");
}

fn check_tar_zst(f: &Path, entries: &BTreeMap<String, Node>, m: &Manifest) {
    if have("zstd", "zstd") {
        run_clean("zstd -t", tool("zstd").args(["-q", "-t"]).arg(f));
        eprintln!("ok: zstd -t");
        if have("tar", "tar") {
            extract_and_check("zstd -d -c | tar x", entries, m, |d| {
                run_pipe(
                    "zstd -d -c | tar x",
                    tool("zstd").args(["-q", "-d", "-c"]).arg(f),
                    tool("tar").arg("x").arg("-C").arg(d),
                );
            });
            extract_and_check("tar -I zstd -xf", entries, m, |d| {
                run_clean(
                    "tar -I zstd -xf",
                    tool("tar")
                        .args(["-I", "zstd", "-xf"])
                        .arg(f)
                        .arg("-C")
                        .arg(d),
                );
            });
        }
        if have("python3", "python3") {
            let out = run_pipe(
                "zstd -d -c | python3 tarfile",
                tool("zstd").args(["-q", "-d", "-c"]).arg(f),
                tool("python3").args(["-c", PY_TAR, "-", "r|"]),
            );
            check_python_listing("zstd -d -c | python3 tarfile", &out, entries, m);
        }
    }
    if have("bsdtar", "libarchive-tools") {
        extract_and_check("bsdtar -xf (tar.zst)", entries, m, |d| {
            run_clean(
                "bsdtar -xf",
                tool("bsdtar").arg("-xf").arg(f).arg("-C").arg(d),
            );
        });
    }
}

fn check_tar_gz(f: &Path, entries: &BTreeMap<String, Node>, m: &Manifest) {
    if have("gzip", "gzip") {
        run_clean("gzip -t", tool("gzip").arg("-t").arg(f));
        eprintln!("ok: gzip -t");
    }
    if have("tar", "tar") {
        extract_and_check("tar xzf", entries, m, |d| {
            run_clean("tar xzf", tool("tar").arg("xzf").arg(f).arg("-C").arg(d));
        });
    }
    if have("bsdtar", "libarchive-tools") {
        extract_and_check("bsdtar -xf (tar.gz)", entries, m, |d| {
            run_clean(
                "bsdtar -xf",
                tool("bsdtar").arg("-xf").arg(f).arg("-C").arg(d),
            );
        });
    }
    if have("python3", "python3") {
        let out = run_clean(
            "python3 tarfile r:gz",
            tool("python3").args(["-c", PY_TAR]).arg(f).arg("r:gz"),
        );
        check_python_listing("python3 tarfile r:gz", &out, entries, m);
    }
}

fn check_zip(f: &Path, entries: &BTreeMap<String, Node>, m: &Manifest) {
    if have("unzip", "unzip") {
        let out = run_clean("unzip -t", tool("unzip").arg("-t").arg(f));
        assert!(
            out.contains("No errors detected"),
            "unzip -t did not say \"No errors detected\":\n{}",
            tail(&out)
        );
        eprintln!("ok: unzip -t");
        extract_and_check("unzip", entries, m, |d| {
            run_clean("unzip", tool("unzip").arg("-q").arg(f).arg("-d").arg(d));
        });
    }
    if have("bsdtar", "libarchive-tools") {
        extract_and_check("bsdtar -xf (zip)", entries, m, |d| {
            run_clean(
                "bsdtar -xf",
                tool("bsdtar").arg("-xf").arg(f).arg("-C").arg(d),
            );
        });
    }
    if have("python3", "python3") {
        let out = run_clean(
            "python3 zipfile",
            tool("python3").args(["-c", PY_ZIP]).arg(f),
        );
        check_python_listing("python3 zipfile", &out, entries, m);
    }
    // 7-Zip: p7zip-full's `7z`; the test bed installs it, so it is required under CI=true.
    if have("7z", "p7zip-full") {
        let out = run_clean("7z t", tool("7z").args(["t", "-bd"]).arg(f));
        assert!(
            out.contains("Everything is Ok"),
            "7z t did not say \"Everything is Ok\":\n{}",
            tail(&out)
        );
        eprintln!("ok: 7z t");
    }
}

async fn check_format(format: Format, content: &Content) {
    let dir = tempfile::tempdir().unwrap();
    let f: PathBuf = dir
        .path()
        .join(format!("lsbackup-20261125T013904Z.{}", format.extension()));
    let written = write_archive(&f, format, content).await;
    let entries = content.expected();
    eprintln!(
        "== {format}: {} bytes",
        std::fs::metadata(&f).unwrap().len()
    );
    match format {
        Format::TarZst => check_tar_zst(&f, &entries, &written),
        Format::TarGz => check_tar_gz(&f, &entries, &written),
        Format::Zip => check_zip(&f, &entries, &written),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_zst_opens_with_the_standard_tools() {
    check_format(Format::TarZst, &Content::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_gz_opens_with_the_standard_tools() {
    check_format(Format::TarGz, &Content::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_opens_with_the_standard_tools() {
    check_format(Format::Zip, &Content::new()).await;
}
