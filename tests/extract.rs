//! `lsbackup extract` and `lsbackup verify` against crafted archives: hostile entries (traversal,
//! absolute names, links out, paths through an earlier symlink, duplicates, hard links, devices,
//! FIFOs, huge PAX or long-name headers, unknown manifest versions, a manifest that lies) are refused with one
//! clear line each and nothing is written outside (or inside) DIR; a truncated or bit-flipped
//! archive is caught and the broken entry named, in every format.
//!
//! The tar archives are written byte by byte here (ustar headers, no library that would refuse to
//! write what an attacker would), then compressed with zstd or gzip as lsbackup's own are.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lsbackup::archive::{
    ArchiveDigest, ArchiveWriter, ComponentReport, EntryKind, EntryMeta, EntryRecord, Format,
    HostReport, InventoryInfo, MANIFEST_FORMAT, Manifest, Status, ToolInfo, WriterOptions,
    verify_archive,
};
use sha2::{Digest, Sha256};

const C: &str = "haproxy";
const H: &str = "node1";

/// One raw tar member.
#[derive(Clone)]
struct Raw {
    name: String,
    /// ustar type flag: b'0' file, b'1' hard link, b'2' symlink, b'3' char device, b'5' dir,
    /// b'6' FIFO, b'x' PAX header.
    kind: u8,
    data: Vec<u8>,
    link: String,
    mode: u32,
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        name: name.into(),
        kind: b'0',
        data: data.to_vec(),
        link: String::new(),
        mode: 0o640,
    }
}

fn dir(name: &str) -> Raw {
    Raw {
        name: name.into(),
        kind: b'5',
        data: vec![],
        link: String::new(),
        mode: 0o750,
    }
}

fn symlink(name: &str, target: &str) -> Raw {
    Raw {
        name: name.into(),
        kind: b'2',
        data: vec![],
        link: target.into(),
        mode: 0o777,
    }
}

fn special(name: &str, kind: u8, link: &str) -> Raw {
    Raw {
        name: name.into(),
        kind,
        data: vec![],
        link: link.into(),
        mode: 0o644,
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0w$o}\0", v, w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// A ustar header for `r` (names up to 100 bytes; longer ones go in a PAX record before it).
fn header(name: &str, kind: u8, size: u64, link: &str, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.as_bytes();
    h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    let l = link.as_bytes();
    h[157..157 + l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
}

fn tar_bytes(members: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        if m.name.len() > 100 {
            let rec = pax_record("path", &m.name);
            out.extend_from_slice(&header("PaxHeader", b'x', rec.len() as u64, "", 0o644));
            out.extend_from_slice(&rec);
            pad(&mut out);
        }
        out.extend_from_slice(&header(
            &m.name,
            m.kind,
            m.data.len() as u64,
            &m.link,
            m.mode,
        ));
        out.extend_from_slice(&m.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// One PAX extended header record, `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// A consistent manifest recording `members` (those under `C/H/`) as they are.
fn manifest_for(format: Format, members: &[Raw]) -> Manifest {
    let entries = members
        .iter()
        .filter(|m| m.name.starts_with(&format!("{C}/{H}")))
        .map(|m| EntryRecord {
            path: m.name.trim_end_matches('/').to_string(),
            kind: match m.kind {
                b'5' => EntryKind::Dir,
                b'2' => EntryKind::Symlink,
                _ => EntryKind::File,
            },
            size: m.data.len() as u64,
            sha256: (m.kind == b'0').then(|| sha(&m.data)),
            mode: m.mode,
            link_target: (m.kind == b'2').then(|| m.link.clone()),
        })
        .collect();
    Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: lsbackup::VERSION.into(),
        },
        started_at: "2026-12-06T10:00:00Z".into(),
        finished_at: "2026-12-06T10:00:01Z".into(),
        build_dir: "/build".into(),
        archive_name: format!("lsbackup-20261206T100000Z.{}", format.extension()),
        archive_format: format,
        status: Status::Ok,
        inventory: InventoryInfo {
            path: "/build/inventory".into(),
            groups: BTreeMap::from([(C.to_string(), vec![H.to_string()])]),
            hosts: BTreeMap::from([(H.to_string(), "127.0.0.2:2222".to_string())]),
        },
        selection: vec![C.into()],
        host_key_checking: "known_hosts".into(),
        components: vec![ComponentReport {
            name: C.into(),
            description: "HAProxy configuration".into(),
            groups: vec![C.into()],
            status: Status::Ok,
            hosts: vec![HostReport {
                host: H.into(),
                address: "127.0.0.2:2222".into(),
                role: "every host".into(),
                status: Status::Ok,
                versions: BTreeMap::new(),
                commands: vec![],
                entries,
                flags: vec![],
                errors: vec![],
            }],
            errors: vec![],
        }],
        archive: None,
    }
}

fn manifest_member(m: &Manifest) -> Raw {
    let mut r = file("manifest.json", &serde_json::to_vec_pretty(m).unwrap());
    r.mode = 0o600;
    r
}

/// `members` then a manifest recording them, as a tar.zst file in `dir`.
fn write_tar(dir: &Path, format: Format, members: &[Raw], manifest: Option<&Manifest>) -> PathBuf {
    let mut all = members.to_vec();
    let m = manifest
        .cloned()
        .unwrap_or_else(|| manifest_for(format, members));
    all.push(manifest_member(&m));
    write_raw_tar(dir, format, &all)
}

fn write_raw_tar(dir: &Path, format: Format, members: &[Raw]) -> PathBuf {
    let raw = tar_bytes(members);
    let path = dir.join(format!("crafted.{}", format.extension()));
    let bytes = match format {
        Format::TarZst => zstd::encode_all(raw.as_slice(), 3).unwrap(),
        Format::TarGz => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }
        Format::Zip => unreachable!("zip archives are written with the zip crate"),
    };
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The same members as a zip (files, dirs and symlinks only: zip has no hard links or devices
/// the way tar has them), the manifest last.
fn write_zip(dir: &Path, members: &[Raw], manifest: Option<&Manifest>) -> PathBuf {
    let path = dir.join("crafted.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = |mode: u32| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode)
    };
    for m in members {
        match m.kind {
            b'0' => {
                z.start_file(m.name.as_str(), opts(m.mode)).unwrap();
                z.write_all(&m.data).unwrap();
            }
            b'5' => z.add_directory(m.name.as_str(), opts(m.mode)).unwrap(),
            b'2' => z
                .add_symlink(m.name.as_str(), m.link.as_str(), opts(0o777))
                .unwrap(),
            other => panic!("no zip form for type {other}"),
        }
    }
    let m = manifest
        .cloned()
        .unwrap_or_else(|| manifest_for(Format::Zip, members));
    z.start_file("manifest.json", opts(0o600)).unwrap();
    z.write_all(&serde_json::to_vec_pretty(&m).unwrap())
        .unwrap();
    z.finish().unwrap();
    path
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn lsbackup(args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_lsbackup"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A sandbox: `base/src` holds the archive, `base/deep/out` is DIR (so `../` and `../../` land
/// inside `base`, where the test can see them), `base/deep/out/keep` a file already there.
struct Sandbox {
    base: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("src")).unwrap();
        std::fs::create_dir_all(base.path().join("deep/out")).unwrap();
        std::fs::write(base.path().join("deep/out/keep"), b"mine").unwrap();
        Sandbox { base }
    }
    fn src(&self) -> PathBuf {
        self.base.path().join("src")
    }
    fn out(&self) -> PathBuf {
        self.base.path().join("deep/out")
    }
    /// Everything in the sandbox except the archive itself.
    fn state(&self) -> Vec<String> {
        tree(self.base.path())
            .into_iter()
            .filter(|p| !p.starts_with("src/crafted"))
            .collect()
    }
    fn extract(&self, archive: &Path, extra: &[&str]) -> Out {
        let out = self.out();
        let mut args = vec!["extract", archive.to_str().unwrap(), out.to_str().unwrap()];
        args.extend_from_slice(extra);
        lsbackup(&args)
    }
}

/// Extract must refuse `archive` with exit 1, an error line containing `why`, and leave the
/// sandbox exactly as it was.
fn assert_refused(sb: &Sandbox, archive: &Path, why: &str) {
    let before = sb.state();
    let o = sb.extract(archive, &[]);
    assert_eq!(o.code, 1, "{why}: exit code; stderr:\n{}", o.stderr);
    let errors: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("lsbackup: error:"))
        .collect();
    assert!(
        errors.iter().any(|l| l.contains(why)),
        "no error line saying {why:?}; stderr:\n{}",
        o.stderr
    );
    // One line per problem: no line repeated.
    let mut seen = std::collections::HashSet::new();
    for l in &errors {
        assert!(seen.insert(*l), "repeated line {l:?}");
    }
    assert!(
        o.stderr.contains("extract refused; nothing was written to"),
        "{}",
        o.stderr
    );
    assert_eq!(sb.state(), before, "{why}: the sandbox changed");
    assert_eq!(
        std::fs::read(sb.out().join("keep")).unwrap(),
        b"mine",
        "{why}: DIR's file touched"
    );
    // verify refuses it too, and so does restore, before any host (the inventory's host does
    // not even exist)
    let v = lsbackup(&["verify", archive.to_str().unwrap()]);
    assert_ne!(
        v.code, 0,
        "{why}: verify passed it:\n{}{}",
        v.stdout, v.stderr
    );
    let said = format!("{}{}", v.stdout, v.stderr);
    // in its own words: the same cause, or the entry at fault named
    let entry = why
        .strip_prefix("entry ")
        .and_then(|r| r.split(':').next())
        .filter(|e| !e.is_empty());
    assert!(
        said.lines()
            .any(|l| l.contains(why) || entry.is_some_and(|e| l.contains(e))),
        "verify does not say {why:?}:\n{said}"
    );
    let build = tempfile::tempdir().unwrap();
    std::fs::write(
        build.path().join("inventory"),
        "[haproxy]\nnode3 ansible_host=192.0.2.1\n",
    )
    .unwrap();
    let r = lsbackup(&[
        "restore",
        archive.to_str().unwrap(),
        "-b",
        build.path().to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(r.code, 1, "{why}: restore:\n{}{}", r.stdout, r.stderr);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.lines().any(|l| l.contains(why)),
        "restore does not say {why:?}:\n{said}"
    );
    assert!(
        !said.contains("192.0.2.1"),
        "restore went to the host:\n{said}"
    );
    assert_eq!(sb.state(), before, "{why}: the sandbox changed");
}

fn p(rel: &str) -> String {
    format!("{C}/{H}/{rel}")
}

#[test]
fn hostile_tar_entries_are_refused_and_nothing_is_written() {
    let good = file(&p("etc/haproxy/haproxy.cfg"), b"global\n");
    let cases: Vec<(&str, Vec<Raw>, String)> = vec![
        (
            "traversal",
            vec![good.clone(), file(&p("../../../../escaped"), b"x")],
            "climbs out of the destination".into(),
        ),
        (
            "leading ..",
            vec![file("../escaped", b"x")],
            "entry ../escaped".into(),
        ),
        (
            "absolute",
            vec![file("/tmp/lsbackup-absolute-escape", b"x")],
            "entry /tmp/lsbackup-absolute-escape".into(),
        ),
        (
            "through a symlink",
            vec![
                symlink(&p("etc"), "../../../.."),
                file(&p("etc/passwd"), b"root::0:0::/:/bin/sh\n"),
            ],
            format!("entry {}: goes through", p("etc/passwd")),
        ),
        (
            "through an inside symlink",
            vec![dir(&p("a")), symlink(&p("b"), "a"), file(&p("b/x"), b"x")],
            format!("entry {}: goes through", p("b/x")),
        ),
        (
            "duplicate",
            vec![good.clone(), file(&p("etc/haproxy/haproxy.cfg"), b"evil\n")],
            format!(
                "entry {}: appears more than once",
                p("etc/haproxy/haproxy.cfg")
            ),
        ),
        (
            "hard link",
            vec![good.clone(), special(&p("shadow"), b'1', "/etc/shadow")],
            format!("entry {}: a hard link", p("shadow")),
        ),
        (
            "hard link inside",
            vec![
                good.clone(),
                special(&p("copy"), b'1', &p("etc/haproxy/haproxy.cfg")),
            ],
            format!("entry {}: a hard link", p("copy")),
        ),
        (
            "char device",
            vec![special(&p("mem"), b'3', "")],
            format!("entry {}: a device file", p("mem")),
        ),
        (
            "block device",
            vec![special(&p("sda"), b'4', "")],
            format!("entry {}: a device file", p("sda")),
        ),
        (
            "fifo",
            vec![special(&p("pipe"), b'6', "")],
            format!("entry {}: a FIFO", p("pipe")),
        ),
        ("empty name", vec![file("", b"x")], "empty".into()),
        (
            "entry after the manifest",
            vec![], // filled below
            "after manifest.json".into(),
        ),
    ];
    for format in [Format::TarZst, Format::TarGz] {
        for (what, members, why) in &cases {
            let sb = Sandbox::new();
            let archive = if *what == "entry after the manifest" {
                let m = manifest_for(format, std::slice::from_ref(&good));
                write_raw_tar(
                    &sb.src(),
                    format,
                    &[good.clone(), manifest_member(&m), file(&p("late"), b"x")],
                )
            } else {
                write_tar(&sb.src(), format, members, None)
            };
            eprintln!("{format}: {what}");
            assert_refused(&sb, &archive, why);
            assert!(!Path::new("/tmp/lsbackup-absolute-escape").exists());
        }
    }
}

#[test]
fn a_symlink_out_is_not_created_and_only_accepted_when_recorded() {
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let members = vec![
            file(&p("etc/zookeeper/conf/zoo.cfg"), b"tickTime=2000\n"),
            symlink(&p("var/lib/zookeeper/myid"), "/etc/zookeeper/conf/myid"),
            symlink(&p("etc/up"), "../../../../.."),
            symlink(&p("etc/zoo.cfg"), "zookeeper/conf/zoo.cfg"),
        ];
        // Recorded in the manifest (a real backup of a host's symlinks): told, not created.
        let sb = Sandbox::new();
        let archive = if format == Format::Zip {
            write_zip(&sb.src(), &members, None)
        } else {
            write_tar(&sb.src(), format, &members, None)
        };
        let o = sb.extract(&archive, &[]);
        assert_eq!(o.code, 0, "{format}: {}", o.stderr);
        let out = sb.out();
        for l in [p("var/lib/zookeeper/myid"), p("etc/up")] {
            assert!(
                o.stdout.contains("not created (points outside") && o.stdout.contains(&l),
                "{format}: {l} not told; stdout:\n{}",
                o.stdout
            );
            assert!(
                std::fs::symlink_metadata(out.join(&l)).is_err(),
                "{l} created"
            );
        }
        // The link inside is created as it was.
        let inside = out.join(p("etc/zoo.cfg"));
        assert_eq!(
            std::fs::read_link(&inside).unwrap(),
            Path::new("zookeeper/conf/zoo.cfg")
        );
        assert_eq!(std::fs::read(&inside).unwrap(), b"tickTime=2000\n");

        // Not recorded: refused.
        let sb = Sandbox::new();
        let recorded = manifest_for(format, &members[..1]);
        let archive = if format == Format::Zip {
            write_zip(&sb.src(), &members, Some(&recorded))
        } else {
            write_tar(&sb.src(), format, &members, Some(&recorded))
        };
        assert_refused(
            &sb,
            &archive,
            &format!("entry {}: not recorded in the manifest", p("etc/up")),
        );
    }
}

#[test]
fn manifests_of_unknown_versions_or_that_lie_are_refused() {
    let members = vec![
        dir(&p("etc")),
        file(&p("etc/haproxy.cfg"), b"global\n  maxconn 100\n"),
        file(&p("etc/other.cfg"), b"x"),
    ];
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let write = |sb: &Sandbox, m: &Manifest| {
            if format == Format::Zip {
                write_zip(&sb.src(), &members, Some(m))
            } else {
                write_tar(&sb.src(), format, &members, Some(m))
            }
        };
        let honest = manifest_for(format, &members);

        let mut future = honest.clone();
        future.format_version = 99;
        let sb = Sandbox::new();
        assert_refused(&sb, &write(&sb, &future), "format version 99");

        let mut lying = honest.clone();
        lying.components[0].hosts[0].entries[1].size = 5;
        let sb = Sandbox::new();
        assert_refused(
            &sb,
            &write(&sb, &lying),
            &format!("entry {}: ", p("etc/haproxy.cfg")),
        );

        let mut wrong_sum = honest.clone();
        wrong_sum.components[0].hosts[0].entries[2].sha256 = Some(sha(b"y"));
        let sb = Sandbox::new();
        assert_refused(
            &sb,
            &write(&sb, &wrong_sum),
            &format!(
                "entry {}: sha256 differs from the manifest",
                p("etc/other.cfg")
            ),
        );

        let mut missing = honest.clone();
        missing.components[0].hosts[0].entries.push(EntryRecord {
            path: p("etc/gone.cfg"),
            kind: EntryKind::File,
            size: 1,
            sha256: Some(sha(b"z")),
            mode: 0o644,
            link_target: None,
        });
        let sb = Sandbox::new();
        assert_refused(&sb, &write(&sb, &missing), &p("etc/gone.cfg"));

        let mut unrecorded = honest.clone();
        unrecorded.components[0].hosts[0].entries.pop();
        let sb = Sandbox::new();
        assert_refused(
            &sb,
            &write(&sb, &unrecorded),
            &format!("entry {}: not recorded in the manifest", p("etc/other.cfg")),
        );
    }
}

#[test]
fn huge_extension_headers_are_refused_with_bounded_memory() {
    // A 64 MiB PAX record, and a 64 MiB GNU long name: a reader that buffers extension headers
    // whole would take them (or 8 GiB ones) into memory.
    for kind in [b'x', b'L'] {
        let sb = Sandbox::new();
        let body = if kind == b'x' {
            pax_record("comment", &"a".repeat(64 << 20))
        } else {
            vec![b'n'; 64 << 20]
        };
        let mut raw = header("././@LongLink", kind, body.len() as u64, "", 0o644).to_vec();
        raw.extend_from_slice(&body);
        pad(&mut raw);
        let x = file(&p("x"), b"x");
        let m = manifest_for(Format::TarZst, std::slice::from_ref(&x));
        raw.extend_from_slice(&tar_bytes(&[x, manifest_member(&m)]));
        let path = sb.src().join("crafted.tar.zst");
        std::fs::write(&path, zstd::encode_all(raw.as_slice(), 1).unwrap()).unwrap();
        let what = if kind == b'x' {
            "PAX extended header of"
        } else {
            "GNU long-name header of"
        };
        assert_refused(&sb, &path, what);
        let v = lsbackup(&["verify", path.to_str().unwrap()]);
        assert_eq!(v.code, 1, "{}", v.stderr);
        assert!(v.stderr.contains(what), "{}", v.stderr);
    }
}

/// A valid archive in `format`, written by lsbackup's own writer, with entries of a few sizes.
/// Sizes of [`real_archive`]'s files.
const SMALL: &[usize] = &[0, 1, 700, 5000];

/// An archive written by lsbackup's writer holding a file of each of `sizes`.
async fn real_archive(
    dir: &Path,
    format: Format,
    sizes: &[usize],
) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let path = dir.join(format!("lsbackup-20261206T100000Z.{}", format.extension()));
    let f = tokio::fs::File::create(&path).await.unwrap();
    let w = ArchiveWriter::new(Box::new(f), WriterOptions::new(format))
        .await
        .unwrap();
    let s = w.sink();
    let mut recs = vec![s.add_dir(&p("etc"), 0o755, 1_700_000_000).await.unwrap()];
    let mut files = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7) as u8).collect();
        let name = p(&format!("etc/file{i}"));
        let meta = EntryMeta {
            path: name.clone(),
            size: size as u64,
            mode: 0o640,
            mtime: 1_700_000_000,
        };
        recs.push(s.add_sized(meta, data.as_slice()).await.unwrap());
        files.push((name, data));
    }
    let mut m = manifest_for(format, &[]);
    m.components[0].hosts[0].entries = recs.into();
    w.finish(&m).await.unwrap();
    // The sidecar, as a backup writes it: the manifest plus the file's own size and sha256.
    let bytes = std::fs::read(&path).unwrap();
    m.archive = Some(ArchiveDigest {
        size: bytes.len() as u64,
        sha256: sha(&bytes),
    });
    std::fs::write(sidecar_of(&path), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    (path, files)
}

fn sidecar_of(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.json", archive.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_archive_round_trips_and_only_selects() {
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let sb = Sandbox::new();
        let (archive, files) = real_archive(&sb.src(), format, SMALL).await;
        let o = sb.extract(&archive, &[]);
        assert_eq!(o.code, 0, "{format}: {}", o.stderr);
        assert!(o.stdout.contains("4 files"), "{}", o.stdout);
        for (name, data) in &files {
            let f = sb.out().join(name);
            assert_eq!(&std::fs::read(&f).unwrap(), data, "{name}");
            assert_eq!(
                std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(sb.out().join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(m.components[0].name, C);
        assert_eq!(std::fs::read(sb.out().join("keep")).unwrap(), b"mine");

        // A second extract into the same DIR is refused: nothing replaced.
        let o = sb.extract(&archive, &[]);
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains("already exists"), "{}", o.stderr);

        // --only: just that component (here, none of the archive's) and a warning.
        let sb2 = Sandbox::new();
        let o = sb2.extract(&archive, &["--only", "postgresql"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(
            o.stderr.contains("the archive has no component postgresql"),
            "{}",
            o.stderr
        );
        assert!(!sb2.out().join(C).exists());
        let o = sb2.extract(&archive, &["--only", C]);
        assert_eq!(o.code, 1, "manifest.json already there: {}", o.stderr);
        let sb3 = Sandbox::new();
        let o = sb3.extract(&archive, &["--only", C]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(sb3.out().join(&files[3].0).is_file());
    }
}

/// Files around extract's buffer size (256 KiB: smaller ones are read whole and written at once,
/// larger ones streamed) come out byte for byte, in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_around_the_buffer_size_come_out_whole() {
    const K: usize = 256 * 1024;
    let sizes = [K - 1, K, K + 1, 3 * K + 17];
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let sb = Sandbox::new();
        let (archive, files) = real_archive(&sb.src(), format, &sizes).await;
        let o = sb.extract(&archive, &[]);
        assert_eq!(o.code, 0, "{format}: {}", o.stderr);
        assert!(o.stdout.contains("4 files"), "{}", o.stdout);
        for (name, data) in &files {
            let got = std::fs::read(sb.out().join(name)).unwrap();
            assert!(
                got == *data,
                "{format} {name}: {} bytes, want {}",
                got.len(),
                data.len()
            );
        }
    }
}

/// verify catches a truncation at any point and a single flipped byte anywhere, and names the
/// entry (or the manifest, or the stream position) it broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_every_flipped_byte_and_truncation() {
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let dir = tempfile::tempdir().unwrap();
        let (archive, files) = real_archive(dir.path(), format, SMALL).await;
        let good = std::fs::read(&archive).unwrap();
        let sidecar = std::fs::read(sidecar_of(&archive)).unwrap();
        let mut r = verify_archive(&archive).await.unwrap();
        r.check_sidecar(
            "sidecar",
            lsbackup::archive::read::parse_sidecar_bytes("sidecar", &sidecar),
        );
        assert!(r.is_ok(), "{:?}", r.problems);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let probe = dir.path().join(format!("probe.{}", format.extension()));
        let mut undetected = Vec::new();
        let mut unnamed = Vec::new();
        let check = |problems: String| -> bool {
            names.iter().any(|n| problems.contains(n))
                || problems.contains("manifest")
                || problems.contains(&p("etc"))
                || problems.contains("stream")
                || problems.contains("zip")
        };
        // Every byte position (the archives are a few KiB), and every 7th truncation length.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&probe, &bad).unwrap();
            match verify_archive(&probe).await {
                Ok(mut r) if r.is_ok() => {
                    r.check_sidecar(
                        "sidecar",
                        lsbackup::archive::read::parse_sidecar_bytes("sidecar", &sidecar),
                    );
                    if r.is_ok() {
                        undetected.push(i);
                    } else if !r
                        .problems
                        .iter()
                        .any(|p| p.contains("the archive differs from what sidecar records"))
                    {
                        unnamed.push(i);
                    }
                }
                Ok(r) => {
                    let text = format!(
                        "{:?} {:?} {:?} {:?}",
                        r.missing, r.extra, r.mismatches, r.problems
                    );
                    if !check(text) {
                        unnamed.push(i);
                    }
                }
                Err(e) => {
                    if !check(e.to_string()) {
                        unnamed.push(i);
                    }
                }
            }
        }
        assert!(
            undetected.is_empty(),
            "{format}: {} of {} flipped bytes undetected, at {:?}",
            undetected.len(),
            good.len(),
            &undetected[..undetected.len().min(20)]
        );
        assert!(
            unnamed.is_empty(),
            "{format}: flips not named at {unnamed:?}"
        );
        for len in (0..good.len()).step_by(7) {
            std::fs::write(&probe, &good[..len]).unwrap();
            if let Ok(r) = verify_archive(&probe).await {
                assert!(!r.is_ok(), "{format}: truncated to {len} passed");
            }
        }
        // Through the CLI: exit 1 and the problem named.
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&probe, &bad).unwrap();
        std::fs::write(sidecar_of(&probe), &sidecar).unwrap();
        let o = lsbackup(&["verify", probe.to_str().unwrap()]);
        assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(check(all.clone()), "{format}: {all}");
    }
}

/// A sidecar as lsbackup writes it is checked by its sha256 against the manifest inside
/// serialized again, without being read into memory a second time; any other sidecar (another
/// formatting, a changed record) is read again and compared as parsed, which names the
/// difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_is_compared_by_digest_and_read_again_only_when_it_differs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = real_archive(dir.path(), Format::TarZst, SMALL).await;
    let good = std::fs::read(sidecar_of(&archive)).unwrap();
    let reads = AtomicUsize::new(0);
    let check = |bytes: Vec<u8>| {
        let archive = archive.clone();
        let reads = &reads;
        async move {
            let mut r = verify_archive(&archive).await.unwrap();
            let first: Reader = Box::new(std::io::Cursor::new(bytes.clone()));
            let again = || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(std::io::Cursor::new(bytes)) as Reader)
            };
            r.check_sidecar_stream("sidecar", first, again).await;
            r
        }
    };
    // as written: one read, ok
    let r = check(good.clone()).await;
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.sidecar.as_deref(), Some("sidecar"));
    assert_eq!(reads.load(Ordering::SeqCst), 0);
    // the same manifest formatted otherwise: read again, still ok
    let compact = serde_json::to_vec(&serde_json::from_slice::<Manifest>(&good).unwrap()).unwrap();
    let r = check(compact).await;
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(reads.swap(0, Ordering::SeqCst), 1);
    // a record changed: read again, the difference said
    let mut m: Manifest = serde_json::from_slice(&good).unwrap();
    m.components[0].hosts[0].entries[0].size += 1;
    let r = check(serde_json::to_vec_pretty(&m).unwrap()).await;
    assert!(
        r.problems
            .iter()
            .any(|p| p == "sidecar: differs from the manifest.json inside the archive"),
        "{:?}",
        r.problems
    );
    assert_eq!(reads.swap(0, Ordering::SeqCst), 1);
    // not JSON: said at once
    let r = check(b"{\"format_version\": 2, ".to_vec()).await;
    assert!(
        r.problems[0].starts_with("sidecar is not a valid manifest: "),
        "{:?}",
        r.problems
    );
    assert_eq!(reads.load(Ordering::SeqCst), 0);
}
