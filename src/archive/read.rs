//! Reading archives back: the embedded manifest, and a full verification of every entry's size
//! and sha256 against it. The format is detected by its magic bytes, not the file name.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::Path;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::crypt::{AGE_MAGIC, Identities};
use super::digest::{ArchiveDigest, Digesting};

use super::{
    ArchiveError, EntryKind, EntryRecord, Format, MANIFEST_FORMAT, MANIFEST_PATH, Manifest,
};

/// Largest manifest accepted when reading (a guard against garbage, not a real limit).
pub(crate) const MAX_MANIFEST: u64 = 256 * 1024 * 1024;

/// One entry as found in an archive.
#[derive(Debug, Clone)]
struct Found {
    kind: Option<EntryKind>,
    size: u64,
    sha256: Option<String>,
    link_target: Option<String>,
}

struct Scan {
    format: Format,
    /// In archive order, manifest excluded.
    entries: Vec<(String, Found)>,
    manifest: Option<ManifestData>,
    /// Entries found after `manifest.json` (there should be none).
    after_manifest: Vec<String>,
    /// Entries whose data could not be read back (a zip entry failing its CRC): named, and the
    /// scan goes on with the next one.
    corrupt: Vec<String>,
}

/// A difference between an entry's record in the manifest and what the archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    /// `kind`, `size`, `sha256` or `link_target`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is {}, manifest says {}",
            self.path, self.field, self.actual, self.expected
        )
    }
}

/// The outcome of [`verify_archive`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub format: Format,
    pub manifest: Manifest,
    /// Entries read (manifest excluded).
    pub entries: usize,
    /// Bytes of file content read and hashed.
    pub bytes: u64,
    /// Recorded in the manifest, absent from the archive.
    pub missing: Vec<String>,
    /// In the archive, recorded nowhere in the manifest.
    pub extra: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// File records without a sha256 (entries recorded as failed): present, content not checked.
    pub unverified: Vec<String>,
    /// Structural problems: entries after the manifest, duplicate paths.
    pub problems: Vec<String>,
    /// The archive file's size and sha256 as read (compressed, encrypted when it is).
    pub stored: ArchiveDigest,
    /// The sidecar the archive was checked against ([`VerifyReport::check_sidecar`]), if any.
    pub sidecar: Option<String>,
    /// What was not checked, and why (not problems).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when every recorded entry is present and matches, and nothing else is wrong.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.mismatches.is_empty()
            && self.problems.is_empty()
    }
}

impl VerifyReport {
    /// Check the archive against its manifest sidecar `name` (the bytes read from beside it):
    /// the file's size and sha256 must be the ones recorded when it was written (this catches
    /// a damaged byte outside any entry's content: a header, padding, compression framing), and
    /// the sidecar's manifest must be the one inside.
    pub fn check_sidecar(&mut self, name: &str, beside: Result<Manifest, String>) {
        let beside = match beside {
            Ok(m) => m,
            Err(e) => {
                self.problems.push(e);
                return;
            }
        };
        self.check_archive_digest(name, &beside.archive);
        // compared as parsed (not as JSON values: those took ~3 KB an entry)
        let outside = Manifest {
            archive: None,
            ..beside
        };
        if self.manifest != outside {
            self.problems.push(format!(
                "{name}: differs from the {MANIFEST_PATH} inside the archive"
            ));
        }
    }

    /// [`VerifyReport::check_sidecar`] of the sidecar `name` streamed from `reader`, without
    /// holding a second manifest in memory when it is the one inside byte for byte (as lsbackup
    /// writes it): its sha256 is compared with that of the manifest inside serialized with the
    /// sidecar's archive digest. Otherwise (another writer's formatting, a difference) it is
    /// read again with `again` and compared as parsed, to say what differs.
    pub async fn check_sidecar_stream<F, Fut>(
        &mut self,
        name: &str,
        reader: Box<dyn AsyncRead + Send + Unpin>,
        again: F,
    ) where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Box<dyn AsyncRead + Send + Unpin>, String>>,
    {
        match sidecar_head(name, reader).await {
            Err(e) => {
                self.problems.push(e);
                return;
            }
            // (the manifest inside records no archive digest: it cannot hold its own file's)
            Ok((sha, Some(archive))) if self.manifest.archive.is_none() => {
                let mut hasher = HashWriter(Sha256::new());
                self.manifest.archive = Some(archive.clone());
                let written = serde_json::to_writer_pretty(&mut hasher, &self.manifest);
                self.manifest.archive = None;
                if written.is_ok() && hasher.0.finalize()[..] == sha[..] {
                    self.check_archive_digest(name, &Some(archive));
                    return;
                }
            }
            Ok(_) => {}
        }
        let full = match again().await {
            Ok(r) => read_sidecar(name, r).await,
            Err(e) => Err(e),
        };
        self.check_sidecar(name, full);
    }

    /// The archive file's digest as `name` records it, against the file's.
    fn check_archive_digest(&mut self, name: &str, recorded: &Option<ArchiveDigest>) {
        match recorded {
            None => self.notes.push(format!(
                "{name} records no size and sha256 of the archive (written before lsbackup recorded them): bytes outside entries not compared"
            )),
            Some(d) if *d != self.stored => self.problems.push(format!(
                "the archive differs from what {name} records: {} bytes with sha256 {}, the file has {} bytes with sha256 {} (damaged, or not the archive that sidecar describes)",
                d.size, d.sha256, self.stored.size, self.stored.sha256
            )),
            Some(_) => self.sidecar = Some(name.to_string()),
        }
    }
}

/// A `Write` that only hashes.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sidecar streamed from `reader`: the sha256 of its bytes and the archive digest it records,
/// its other fields skipped as they pass (nothing of its size held). Checked as
/// [`read_sidecar`] checks one: a valid manifest of a known version, at most its size limit.
async fn sidecar_head(
    name: &str,
    reader: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<([u8; 32], Option<ArchiveDigest>), String> {
    #[derive(serde::Deserialize)]
    struct Head {
        format_version: u32,
        #[serde(default)]
        archive: Option<ArchiveDigest>,
    }
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let owned = name.to_string();
    tokio::task::spawn_blocking(move || {
        let (head, sha) = parse_metered::<Head>(&owned, bridge, true, |h| h.format_version)?;
        Ok((sha.expect("hashed"), head.archive))
    })
    .await
    .map_err(|e| format!("{name}: reading: {e}"))?
}

/// Guess the format from the first bytes of a file.
pub fn detect_format(magic: &[u8]) -> Option<Format> {
    match magic {
        [0x28, 0xB5, 0x2F, 0xFD, ..] => Some(Format::TarZst),
        [0x1F, 0x8B, ..] => Some(Format::TarGz),
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] | [b'P', b'K', 7, 8, ..] => {
            Some(Format::Zip)
        }
        _ => None,
    }
}

/// Read the manifest embedded in the archive at `path` (any of the three formats).
///
/// For tar formats this decompresses the whole archive, since the manifest is the last entry;
/// it also checks that the compressed stream ends cleanly.
pub async fn read_manifest(path: impl AsRef<Path>) -> Result<Manifest, ArchiveError> {
    let path = path.as_ref();
    let mut scan = scan(path, false, &Identities::default(), &Digesting::off()).await?;
    parse_manifest(path, &mut scan)
}

/// Read every entry of the archive at `path`, recompute sizes and sha256s, and compare them
/// with the embedded manifest. `Err` means the archive could not be read at all (unknown
/// format, corrupt or incomplete stream, no manifest); differences are in the report.
pub async fn verify_archive(path: impl AsRef<Path>) -> Result<VerifyReport, ArchiveError> {
    verify_archive_with(path, &Identities::default()).await
}

/// [`verify_archive`], for an archive that may be encrypted with age (`NAME.age`): `ids` holds
/// the keys that can decrypt it; the plaintext is streamed, never written out (except for a
/// zip, whose reader needs to seek: decrypted into an unlinked temporary file, mode 0600).
pub async fn verify_archive_with(
    path: impl AsRef<Path>,
    ids: &Identities,
) -> Result<VerifyReport, ArchiveError> {
    let path = path.as_ref();
    let stored = Digesting::new();
    let scan = scan(path, true, ids, &stored).await?;
    report(path, scan, stored.digest())
}

/// [`verify_archive_with`] on a stream (an archive read from an object store): `label` names
/// it in messages.
pub async fn verify_reader<R: AsyncRead + Send + Unpin + 'static>(
    label: &str,
    reader: R,
    ids: &Identities,
) -> Result<VerifyReport, ArchiveError> {
    let path = Path::new(label);
    let stored = Digesting::new();
    let scan = scan_reader(path, reader, true, ids, &stored).await?;
    report(path, scan, stored.digest())
}

/// [`read_manifest`] on a stream (decrypted with `ids` when it is encrypted).
pub async fn read_manifest_reader<R: AsyncRead + Send + Unpin + 'static>(
    label: &str,
    reader: R,
    ids: &Identities,
) -> Result<Manifest, ArchiveError> {
    let path = Path::new(label);
    let mut scan = scan_reader(path, reader, false, ids, &Digesting::off()).await?;
    parse_manifest(path, &mut scan)
}

/// Scan a stream that is not seekable (see [`plain_reader`]).
async fn scan_reader<R: AsyncRead + Send + Unpin + 'static>(
    path: &Path,
    reader: R,
    hash: bool,
    ids: &Identities,
    stored: &Digesting,
) -> Result<Scan, ArchiveError> {
    match plain_reader(path, reader, ids, stored).await? {
        Plain::Zip(file) => scan_zip_file(path, file, hash).await,
        Plain::Tar(format, tar) => scan_tar(path, format, tar, hash).await,
    }
}

/// An archive's plaintext, ready to read: a decompressed tar stream, or a zip in a file (its
/// reader seeks).
pub(crate) enum Plain {
    Tar(Format, Box<dyn AsyncRead + Send + Unpin>),
    Zip(std::fs::File),
}

/// The plaintext of an archive read from a stream that is not seekable: age is told by its
/// first bytes (which are then put back in front of the rest) and decrypted with `ids`; the
/// format by the magic bytes of the (decrypted) stream. A zip goes to an unlinked temporary
/// file (0600) first, since its reader seeks. Every byte read as stored feeds `stored`.
pub(crate) async fn plain_reader<R: AsyncRead + Send + Unpin + 'static>(
    path: &Path,
    reader: R,
    ids: &Identities,
    stored: &Digesting,
) -> Result<Plain, ArchiveError> {
    let mut reader = stored.reader(reader);
    let magic = peek(path, &mut reader, AGE_MAGIC.len()).await?;
    let is_age = magic == *AGE_MAGIC;
    let whole = AsyncReadExt::chain(std::io::Cursor::new(magic), reader);
    if is_age {
        let plain = ids
            .decrypting_reader(whole)
            .await
            .map_err(|e| read_err(path, e))?;
        return plain_stream(path, BufReader::with_capacity(256 * 1024, plain)).await;
    }
    plain_stream(path, BufReader::with_capacity(256 * 1024, whole)).await
}

/// [`plain_reader`] for a file: a plain zip is read in place.
pub(crate) async fn plain_file(
    path: &Path,
    ids: &Identities,
    stored: &Digesting,
) -> Result<Plain, ArchiveError> {
    let open = || async {
        tokio::fs::File::open(path)
            .await
            .map_err(|e| read_err(path, format!("opening: {e}")))
    };
    let magic = peek(path, &mut open().await?, 4).await?;
    if detect_format(&magic) == Some(Format::Zip) {
        let mut file = open().await?.into_std().await;
        let d = stored.clone();
        let file = tokio::task::spawn_blocking(move || d.feed_file(&mut file).map(|()| file))
            .await
            .map_err(|e| read_err(path, e))?
            .map_err(|e| read_err(path, format!("reading: {e}")))?;
        return Ok(Plain::Zip(file));
    }
    plain_reader(path, open().await?, ids, stored).await
}

fn report(
    path: &Path,
    mut scan: Scan,
    stored: ArchiveDigest,
) -> Result<VerifyReport, ArchiveError> {
    let manifest = parse_manifest(path, &mut scan)?;

    let mut problems = Vec::new();
    for p in &scan.after_manifest {
        problems.push(format!(
            "{p}: entry after {MANIFEST_PATH} (the manifest must be last)"
        ));
    }
    problems.extend(scan.corrupt.iter().cloned());
    problems.extend(manifest_problems(&manifest, Some(scan.format)));
    let mut found: BTreeMap<&str, &Found> = BTreeMap::new();
    for (p, f) in &scan.entries {
        // a name extract would refuse: said as extract says it
        if let Err(why) = super::extract::normalize(p.trim_end_matches('/')) {
            problems.push(format!("entry {p:?}: {why}"));
        }
        if found.insert(p.as_str(), f).is_some() {
            problems.push(format!("{p}: more than one entry with this path"));
        }
    }
    let mut recorded: BTreeSet<&str> = BTreeSet::new();
    let mut missing = Vec::new();
    let mut mismatches = Vec::new();
    let mut unverified = Vec::new();
    let records: Vec<&EntryRecord> = manifest
        .components
        .iter()
        .flat_map(|c| c.hosts.iter())
        .flat_map(|h| h.entries.iter())
        .collect();
    for r in records {
        let rpath = r.path.trim_end_matches('/');
        if !recorded.insert(rpath) {
            problems.push(format!("{rpath}: recorded more than once in the manifest"));
            continue;
        }
        let Some(f) = found.get(rpath) else {
            missing.push(rpath.to_string());
            continue;
        };
        let mut mismatch = |field: &str, expected: String, actual: String| {
            mismatches.push(Mismatch {
                path: rpath.to_string(),
                field: field.into(),
                expected,
                actual,
            })
        };
        if f.kind != Some(r.kind) {
            mismatch(
                "kind",
                format!("{:?}", r.kind),
                f.kind.map(|k| format!("{k:?}")).unwrap_or("other".into()),
            );
            continue;
        }
        match r.kind {
            EntryKind::File => {
                if f.size != r.size {
                    mismatch("size", r.size.to_string(), f.size.to_string());
                }
                match (&r.sha256, &f.sha256) {
                    (Some(want), Some(got)) if !want.eq_ignore_ascii_case(got) => {
                        mismatch("sha256", want.clone(), got.clone())
                    }
                    (None, _) => unverified.push(rpath.to_string()),
                    _ => {}
                }
            }
            EntryKind::Symlink => {
                if r.link_target != f.link_target {
                    mismatch(
                        "link_target",
                        r.link_target.clone().unwrap_or_default(),
                        f.link_target.clone().unwrap_or_default(),
                    );
                }
            }
            EntryKind::Dir => {}
        }
    }
    let extra = found
        .keys()
        .filter(|p| !recorded.contains(**p))
        .map(|p| p.to_string())
        .collect();
    let bytes = scan
        .entries
        .iter()
        .filter(|(_, f)| f.kind == Some(EntryKind::File))
        .map(|(_, f)| f.size)
        .sum();
    Ok(VerifyReport {
        format: scan.format,
        entries: scan.entries.len(),
        bytes,
        manifest,
        missing,
        extra,
        mismatches,
        unverified,
        problems,
        stored,
        sidecar: None,
        notes: Vec::new(),
    })
}

fn read_err(path: &Path, cause: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Read {
        archive: path.display().to_string(),
        cause: cause.to_string(),
    }
}

/// What is wrong with a manifest on its own terms (one line each): an entry recorded outside
/// its component's and host's directory, a status that does not follow from its components',
/// a host that is not in the recorded inventory, a format that is not the archive's.
pub fn manifest_problems(m: &Manifest, format: Option<Format>) -> Vec<String> {
    let mut out = Vec::new();
    // extract never writes through a symlink: an entry below one is refused here too
    let links: BTreeSet<&str> = m
        .components
        .iter()
        .flat_map(|c| &c.hosts)
        .flat_map(|h| &h.entries)
        .filter(|e| e.kind == EntryKind::Symlink)
        .map(|e| e.path.trim_end_matches('/'))
        .collect();
    if let Some(f) = format
        && f != m.archive_format
    {
        out.push(format!(
            "{MANIFEST_PATH}: says the archive is {}, it is {f}",
            m.archive_format
        ));
    }
    for c in &m.components {
        for h in &c.hosts {
            if !m.inventory.hosts.contains_key(&h.host) {
                out.push(format!(
                    "{MANIFEST_PATH}: component {} names host {:?}, which is not in its inventory",
                    c.name, h.host
                ));
            }
            let prefix = format!("{}/{}/", c.name, h.host);
            for e in &h.entries {
                // what extract would refuse to write is refused here too
                if let Err(why) = super::extract::normalize(e.path.trim_end_matches('/')) {
                    out.push(format!("{MANIFEST_PATH}: entry {}: {why}", e.path));
                    continue;
                }
                let path = e.path.trim_end_matches('/');
                if let Some(link) = path
                    .match_indices('/')
                    .map(|(i, _)| &path[..i])
                    .find(|p| links.contains(p))
                {
                    out.push(format!(
                        "{MANIFEST_PATH}: entry {}: goes through {link}, a symlink in the archive",
                        e.path
                    ));
                }
                let own_dir = e.kind == EntryKind::Dir
                    && e.path.trim_end_matches('/') == prefix.trim_end_matches('/');
                if !own_dir && !e.path.starts_with(&prefix) {
                    out.push(format!(
                        "{MANIFEST_PATH}: entry {} is recorded under {} on {} but lies outside {prefix}",
                        e.path, c.name, h.host
                    ));
                }
                if e.kind == EntryKind::File
                    && let Some(sha) = &e.sha256
                    && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    out.push(format!(
                        "{MANIFEST_PATH}: entry {} has a malformed sha256 {sha:?}",
                        e.path
                    ));
                }
            }
        }
        let d = c.derived_status();
        if d != c.status {
            out.push(format!(
                "{MANIFEST_PATH}: component {} is recorded as {:?} but its hosts say {d:?}",
                c.name, c.status
            ));
        }
    }
    let derived = super::overall_status(&m.components);
    if derived != m.status {
        out.push(format!(
            "{MANIFEST_PATH}: the backup is recorded as {:?}, its components' statuses give {derived:?}",
            m.status
        ));
    }
    out
}

fn parse_manifest(path: &Path, scan: &mut Scan) -> Result<Manifest, ArchiveError> {
    match scan.manifest.take() {
        None => Err(read_err(
            path,
            format!("no {MANIFEST_PATH}: the archive is incomplete"),
        )),
        Some(ManifestData::Mem(bytes)) => parse_manifest_bytes(path, &bytes),
        Some(ManifestData::File(f)) => parse_manifest_file(path, &f),
    }
}

/// `manifest.json` as read from an archive: spooled to an unlinked temporary file (it grows
/// with the number of entries: ~300 bytes each), or in memory when no such file can be made.
enum ManifestData {
    File(std::fs::File),
    Mem(Vec<u8>),
}

impl ManifestData {
    /// Read `r` (at most `size` bytes are expected) into a temporary file, else into memory.
    fn read_sync(r: &mut impl std::io::Read, size: u64) -> std::io::Result<ManifestData> {
        use std::io::Seek;
        match tempfile::tempfile() {
            Ok(mut f) => {
                std::io::copy(&mut r.take(size), &mut f)?;
                f.rewind()?;
                Ok(ManifestData::File(f))
            }
            Err(_) => {
                let mut bytes = Vec::new();
                r.take(size).read_to_end(&mut bytes)?;
                Ok(ManifestData::Mem(bytes))
            }
        }
    }

    /// [`ManifestData::read_sync`] of an async reader.
    async fn read_async(
        r: &mut (impl AsyncRead + Unpin),
        size: u64,
    ) -> std::io::Result<ManifestData> {
        use std::io::Seek;
        match tempfile::tempfile() {
            Ok(f) => {
                let mut f = tokio::fs::File::from_std(f);
                tokio::io::copy(&mut r.take(size), &mut f).await?;
                let mut f = f.into_std().await;
                f.rewind()?;
                Ok(ManifestData::File(f))
            }
            Err(_) => {
                let mut bytes = Vec::new();
                r.take(size).read_to_end(&mut bytes).await?;
                Ok(ManifestData::Mem(bytes))
            }
        }
    }
}

/// [`parse_manifest_bytes`] of a spooled manifest, read as it streams (version first).
pub(crate) fn parse_manifest_file(
    path: &Path,
    f: &std::fs::File,
) -> Result<Manifest, ArchiveError> {
    use std::io::Seek;
    parse_versioned(path, || {
        let mut f = f.try_clone()?;
        f.rewind()?;
        Ok(std::io::BufReader::with_capacity(256 * 1024, f))
    })
}

/// Parse a manifest from what `open` gives (twice: the format version first, then the whole,
/// since a newer format may not parse as this one), refusing a version this build does not know.
fn parse_versioned<R: std::io::Read>(
    path: &Path,
    mut open: impl FnMut() -> std::io::Result<R>,
) -> Result<Manifest, ArchiveError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let bad = |e: serde_json::Error| {
        read_err(
            path,
            format!("{MANIFEST_PATH} is not a valid manifest: {e}"),
        )
    };
    let io = |e: std::io::Error| read_err(path, format!("reading {MANIFEST_PATH}: {e}"));
    let v: Version = serde_json::from_reader(open().map_err(io)?).map_err(bad)?;
    check_version(path, v.format_version)?;
    serde_json::from_reader(open().map_err(io)?).map_err(bad)
}

fn check_version(path: &Path, v: u32) -> Result<(), ArchiveError> {
    if v == 0 || v > MANIFEST_FORMAT {
        return Err(read_err(
            path,
            format!(
                "{MANIFEST_PATH} has format version {v}, which this lsbackup does not know (it reads 1 to {MANIFEST_FORMAT}); use a newer lsbackup"
            ),
        ));
    }
    Ok(())
}

/// Parse a manifest sidecar streamed from `reader` (a file, an object): no buffer of its size,
/// at most as large as a manifest inside an archive may be. `name` is for messages.
pub async fn read_sidecar(
    name: &str,
    reader: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<Manifest, String> {
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let owned = name.to_string();
    tokio::task::spawn_blocking(move || parse_sidecar(&owned, bridge))
        .await
        .map_err(|e| format!("{name}: reading: {e}"))?
}

/// [`read_sidecar`] of bytes in memory.
pub fn parse_sidecar_bytes(name: &str, bytes: &[u8]) -> Result<Manifest, String> {
    parse_sidecar(name, bytes)
}

fn parse_sidecar(name: &str, reader: impl std::io::Read) -> Result<Manifest, String> {
    parse_metered::<Manifest>(name, reader, false, |m| m.format_version).map(|(m, _)| m)
}

/// Parse a sidecar's JSON as `T` from `reader`, reading at most the manifest size limit (a
/// larger one is refused as such), with the sha256 of what was read when `hash`; a format
/// version (`version` of it) this build does not know is refused.
fn parse_metered<T: serde::de::DeserializeOwned>(
    name: &str,
    reader: impl std::io::Read,
    hash: bool,
    version: impl Fn(&T) -> u32,
) -> Result<(T, Option<[u8; 32]>), String> {
    /// Counts (and hashes) what passes, to tell "too large" from "cut short".
    struct Metered<R> {
        inner: R,
        n: u64,
        sha: Option<Sha256>,
    }
    impl<R: std::io::Read> std::io::Read for Metered<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let k = self.inner.read(buf)?;
            self.n += k as u64;
            if let Some(sha) = &mut self.sha {
                sha.update(&buf[..k]);
            }
            Ok(k)
        }
    }
    let mut r = Metered {
        inner: reader.take(MAX_MANIFEST + 1),
        n: 0,
        sha: hash.then(Sha256::new),
    };
    let parsed = serde_json::from_reader::<_, T>(std::io::BufReader::new(&mut r));
    if r.n > MAX_MANIFEST {
        return Err(format!(
            "{name} is larger than {} MiB: not a manifest sidecar",
            MAX_MANIFEST >> 20
        ));
    }
    let parsed = parsed.map_err(|e| format!("{name} is not a valid manifest: {e}"))?;
    let v = version(&parsed);
    if v == 0 || v > MANIFEST_FORMAT {
        return Err(format!(
            "{name} has format version {v}, which this lsbackup does not know (it reads 1 to {MANIFEST_FORMAT}); use a newer lsbackup"
        ));
    }
    Ok((parsed, r.sha.map(|s| s.finalize().into())))
}

/// Parse a manifest, refusing a format version this build does not know (before the rest of
/// it: a newer format may not parse as this one).
pub(crate) fn parse_manifest_bytes(path: &Path, bytes: &[u8]) -> Result<Manifest, ArchiveError> {
    parse_versioned(path, || Ok(bytes))
}

async fn scan(
    path: &Path,
    hash: bool,
    ids: &Identities,
    stored: &Digesting,
) -> Result<Scan, ArchiveError> {
    match plain_file(path, ids, stored).await? {
        Plain::Zip(file) => scan_zip_file(path, file, hash).await,
        Plain::Tar(format, tar) => scan_tar(path, format, tar, hash).await,
    }
}

async fn scan_zip_file(path: &Path, file: std::fs::File, hash: bool) -> Result<Scan, ArchiveError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || scan_zip(&p, file, hash))
        .await
        .map_err(|e| read_err(path, e))?
}

/// Up to `n` first bytes of `reader` (fewer only at its end).
async fn peek<R: AsyncRead + Unpin>(
    path: &Path,
    reader: &mut R,
    n: usize,
) -> Result<Vec<u8>, ArchiveError> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match reader
            .read(&mut buf[got..])
            .await
            .map_err(|e| read_err(path, e))?
        {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The plaintext stream `input` as a tar stream or a zip file, by its magic bytes.
async fn plain_stream<R: AsyncBufRead + Unpin + Send + 'static>(
    path: &Path,
    mut input: R,
) -> Result<Plain, ArchiveError> {
    let head = input.fill_buf().await.map_err(|e| read_err(path, e))?;
    let format = detect_format(&head[..head.len().min(4)]).ok_or_else(|| {
        read_err(
            path,
            "not a tar.zst, tar.gz or zip archive (unknown magic bytes)",
        )
    })?;
    Ok(match format {
        Format::Zip => {
            // Only a stream gets here (a plain zip file is read in place): the zip reader
            // seeks, so the stream goes to an unlinked temporary file (0600) first.
            let mut tmp = tokio::fs::File::from_std(
                tempfile::tempfile().map_err(|e| read_err(path, format!("temporary file: {e}")))?,
            );
            tokio::io::copy_buf(&mut input, &mut tmp)
                .await
                .map_err(|e| read_err(path, format!("corrupt or incomplete stream: {e}")))?;
            Plain::Zip(tmp.into_std().await)
        }
        Format::TarZst => {
            let mut d = ZstdDecoder::new(input);
            d.multiple_members(true);
            Plain::Tar(format, Box::new(super::targuard::TarGuard::new(d)))
        }
        Format::TarGz => {
            let mut d = GzipDecoder::new(input);
            d.multiple_members(true);
            Plain::Tar(format, Box::new(super::targuard::TarGuard::new(d)))
        }
    })
}

async fn hash_reader<R: AsyncRead + Unpin>(
    r: &mut R,
    hash: bool,
) -> std::io::Result<(u64, Option<String>)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if hash {
            hasher.update(&buf[..n]);
        }
        size += n as u64;
    }
    Ok((size, hash.then(|| hex::encode(hasher.finalize()))))
}

async fn scan_tar<D: AsyncRead + Unpin + Send>(
    path: &Path,
    format: Format,
    decoder: D,
    hash: bool,
) -> Result<Scan, ArchiveError> {
    let corrupt =
        |e: std::io::Error| read_err(path, format!("corrupt or incomplete {format} stream: {e}"));
    // Where the stream broke: inside an entry's data, or after one (a header).
    let inside = |name: &str, e: std::io::Error| {
        read_err(
            path,
            format!("entry {name}: corrupt or incomplete {format} stream: {e}"),
        )
    };
    let after = |last: &Option<String>, e: std::io::Error| match last {
        Some(name) => read_err(
            path,
            format!("corrupt or incomplete {format} stream after entry {name}: {e}"),
        ),
        None => corrupt(e),
    };
    let mut last: Option<String> = None;
    let mut archive = tokio_tar::Archive::new(decoder);
    let mut scan = Scan {
        format,
        entries: Vec::new(),
        manifest: None,
        after_manifest: Vec::new(),
        corrupt: Vec::new(),
    };
    {
        let mut entries = archive.entries().map_err(corrupt)?;
        use futures::StreamExt;
        while let Some(entry) = entries.next().await {
            let mut entry = entry.map_err(|e| after(&last, e))?;
            let name = entry
                .path()
                .map_err(|e| after(&last, e))?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            last = Some(name.clone());
            if scan.manifest.is_some() {
                scan.after_manifest.push(name.clone());
            }
            let kind = match entry.header().entry_type() {
                tokio_tar::EntryType::Regular | tokio_tar::EntryType::Continuous => {
                    Some(EntryKind::File)
                }
                tokio_tar::EntryType::Directory => Some(EntryKind::Dir),
                tokio_tar::EntryType::Symlink => Some(EntryKind::Symlink),
                _ => None,
            };
            if name == MANIFEST_PATH && kind == Some(EntryKind::File) && scan.manifest.is_none() {
                let size = entry.effective_size();
                if size > MAX_MANIFEST {
                    return Err(read_err(
                        path,
                        format!("{MANIFEST_PATH} is implausibly large ({size} bytes)"),
                    ));
                }
                let data = ManifestData::read_async(&mut entry, size)
                    .await
                    .map_err(|e| inside(&name, e))?;
                scan.manifest = Some(data);
                continue;
            }
            let link_target = match kind {
                Some(EntryKind::Symlink) => entry
                    .link_name()
                    .map_err(|e| inside(&name, e))?
                    .map(|l| l.to_string_lossy().into_owned()),
                _ => None,
            };
            let (size, sha256) = hash_reader(&mut entry, hash && kind == Some(EntryKind::File))
                .await
                .map_err(|e| inside(&name, e))?;
            scan.entries.push((
                name,
                Found {
                    kind,
                    size,
                    sha256,
                    link_target,
                },
            ));
        }
    }
    // The tar end-of-archive blocks were seen; the compressed stream must also end cleanly.
    let mut rest = archive
        .into_inner()
        .map_err(|_| read_err(path, "tar reader still in use"))?;
    let mut sink = vec![0u8; 64 * 1024];
    while rest.read(&mut sink).await.map_err(|e| after(&last, e))? != 0 {}
    Ok(scan)
}

fn scan_zip(path: &Path, mut file: std::fs::File, hash: bool) -> Result<Scan, ArchiveError> {
    use std::io::Seek as _;
    let corrupt =
        |e: &dyn std::fmt::Display| read_err(path, format!("corrupt or incomplete zip: {e}"));
    file.rewind().map_err(|e| read_err(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::with_capacity(256 * 1024, file))
        .map_err(|e| corrupt(&e))?;
    let mut scan = Scan {
        format: Format::Zip,
        entries: Vec::new(),
        manifest: None,
        after_manifest: Vec::new(),
        corrupt: Vec::new(),
    };
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| corrupt(&e))?;
        let name = f
            .name()
            .map_err(|e| corrupt(&e))?
            .trim_end_matches('/')
            .to_string();
        if scan.manifest.is_some() {
            scan.after_manifest.push(name.clone());
        }
        let kind = if f.is_dir() {
            EntryKind::Dir
        } else if f.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        };
        if name == MANIFEST_PATH && kind == EntryKind::File && scan.manifest.is_none() {
            if f.size() > MAX_MANIFEST {
                return Err(read_err(
                    path,
                    format!("{MANIFEST_PATH} is implausibly large ({} bytes)", f.size()),
                ));
            }
            let size = f.size();
            let data = ManifestData::read_sync(&mut f, size).map_err(|e| corrupt(&e))?;
            scan.manifest = Some(data);
            continue;
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut content = Vec::new();
        if kind == EntryKind::File && !hash {
            // Sizes come from the central directory; the data is not read.
            size = f.size();
        } else {
            loop {
                let n = match f.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        scan.corrupt.push(format!("{name}: corrupt zip entry: {e}"));
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                if kind == EntryKind::Symlink {
                    content.extend_from_slice(&buf[..n]);
                } else {
                    hasher.update(&buf[..n]);
                }
                size += n as u64;
            }
        }
        let broken = scan
            .corrupt
            .last()
            .is_some_and(|c| c.starts_with(&format!("{name}: ")));
        let (size, sha256, link_target) = match kind {
            EntryKind::File if broken => (size, None, None),
            EntryKind::File => (size, hash.then(|| hex::encode(hasher.finalize())), None),
            EntryKind::Dir => (0, None, None),
            EntryKind::Symlink => (
                0,
                None,
                Some(String::from_utf8_lossy(&content).into_owned()),
            ),
        };
        scan.entries.push((
            name,
            Found {
                kind: Some(kind),
                size,
                sha256,
                link_target,
            },
        ));
    }
    Ok(scan)
}
