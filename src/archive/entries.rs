//! A host's entry records in a manifest ([`super::HostReport::entries`]).
//!
//! Read from a manifest they are a plain list in memory. During a backup they are appended to
//! the run's [`EntrySpool`] (one unlinked file in the spool directory), [`CHUNK_RECORDS`] at a
//! time: only the last chunk of each running unit, the chunks' places and the counts stay in
//! memory, so a run's memory does not grow with the number of files it backs up. Serializing
//! the manifest (inside the archive and the sidecar) reads the chunks back one at a time, in
//! the order the records were added.

use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::Deserializer;
use serde::ser::{Error as _, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::manifest::EntryRecord;

/// Records kept in memory per host before they go to the spool as one chunk (about 250 KiB).
pub const CHUNK_RECORDS: usize = 1024;

/// The run's spool of entry records: chunks appended to one unlinked file, mode 0600.
pub struct EntrySpool {
    file: Mutex<(std::fs::File, u64)>,
    /// A write failed once (said once; records then stay in memory).
    failed: AtomicBool,
}

impl EntrySpool {
    /// A new spool file in `dir` (unlinked at once: nothing is left behind, whatever happens).
    pub fn new(dir: &Path) -> std::io::Result<Arc<EntrySpool>> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(Arc::new(EntrySpool {
            file: Mutex::new((file, 0)),
            failed: AtomicBool::new(false),
        }))
    }

    /// Append `bytes`; their offset.
    fn append(&self, bytes: &[u8]) -> std::io::Result<u64> {
        let mut g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let offset = g.1;
        g.0.write_all_at(bytes, offset)?;
        g.1 += bytes.len() as u64;
        Ok(offset)
    }

    fn read(&self, c: Chunk) -> std::io::Result<Vec<EntryRecord>> {
        let mut bytes = vec![0; c.len as usize];
        {
            let g = self.file.lock().unwrap_or_else(|e| e.into_inner());
            g.0.read_exact_at(&mut bytes, c.offset)?;
        }
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Where one chunk (a JSON array of records) lies in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    offset: u64,
    len: u64,
}

/// A host's entry records: in memory, or spooled to disk but for the last chunk.
#[derive(Clone, Default)]
pub struct Entries {
    /// The records not in a chunk (all of them when nothing was spooled), latest last.
    mem: Vec<EntryRecord>,
    spool: Option<Arc<EntrySpool>>,
    /// Chunks in the spool, before `mem` in order.
    chunks: Vec<Chunk>,
    /// Records and content bytes in `chunks`.
    spooled: usize,
    spooled_size: u64,
}

impl Entries {
    /// An empty list whose records go to `spool` a chunk at a time.
    pub fn spooled(spool: Arc<EntrySpool>) -> Entries {
        Entries {
            spool: Some(spool),
            ..Entries::default()
        }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.spooled + self.mem.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of the records' sizes (content bytes).
    pub fn total_size(&self) -> u64 {
        self.spooled_size + self.mem.iter().map(|e| e.size).sum::<u64>()
    }

    /// Whether records went to the spool (they can then only be read back by serializing).
    pub fn is_spooled(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Add a record after the others.
    pub fn push(&mut self, rec: EntryRecord) {
        self.mem.push(rec);
        if self.mem.len() >= CHUNK_RECORDS {
            self.spill();
        }
    }

    /// Add `other`'s records after these (a branch's, see `HostCtx::join`).
    pub fn append(&mut self, other: Entries) {
        let same_spool = match (&self.spool, &other.spool) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if other.chunks.is_empty() {
            for r in other.mem {
                self.push(r);
            }
            return;
        }
        // Its chunks can follow ours only when all of ours are in the same spool.
        if same_spool {
            self.spill();
        }
        if same_spool && self.mem.is_empty() {
            self.chunks.extend(other.chunks);
            self.spooled += other.spooled;
            self.spooled_size += other.spooled_size;
            for r in other.mem {
                self.push(r);
            }
            return;
        }
        // Read back (another spool, or ours failing): record by record, in order.
        if let Some(spool) = &other.spool {
            for c in &other.chunks {
                match spool.read(*c) {
                    Ok(recs) => recs.into_iter().for_each(|r| self.push(r)),
                    Err(e) => tracing::error!("entry records lost reading the spool back: {e}"),
                }
            }
        }
        for r in other.mem {
            self.push(r);
        }
    }

    /// Move the records in memory to the spool as one chunk. A failing spool keeps them in
    /// memory (said once): memory grows, nothing is lost.
    fn spill(&mut self) {
        let Some(spool) = &self.spool else {
            return;
        };
        if self.mem.is_empty() || spool.failed.load(Ordering::Relaxed) {
            return;
        }
        let bytes = match serde_json::to_vec(&self.mem) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("entry records kept in memory: {e}");
                return;
            }
        };
        match spool.append(&bytes) {
            Ok(offset) => {
                self.chunks.push(Chunk {
                    offset,
                    len: bytes.len() as u64,
                });
                self.spooled += self.mem.len();
                self.spooled_size += self.mem.iter().map(|e| e.size).sum::<u64>();
                self.mem.clear();
            }
            Err(e) => {
                if !spool.failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "entry records kept in memory from now on: writing the spool failed: {e}"
                    );
                }
            }
        }
    }

    /// Every record, read back from the spool where needed (for comparisons; a backup never
    /// needs them all at once).
    fn all(&self) -> std::io::Result<Vec<EntryRecord>> {
        let mut out = Vec::with_capacity(self.len());
        if let Some(spool) = &self.spool {
            for c in &self.chunks {
                out.extend(spool.read(*c)?);
            }
        }
        out.extend(self.mem.iter().cloned());
        Ok(out)
    }
}

impl From<Vec<EntryRecord>> for Entries {
    fn from(mem: Vec<EntryRecord>) -> Entries {
        Entries {
            mem,
            ..Entries::default()
        }
    }
}

/// The records of a list read from a manifest (or built in memory). Spooled ones are not in
/// memory: asking for them so is a bug in lsbackup (use [`Entries::len`],
/// [`Entries::total_size`], or serialize).
impl std::ops::Deref for Entries {
    type Target = Vec<EntryRecord>;

    fn deref(&self) -> &Vec<EntryRecord> {
        assert!(
            self.chunks.is_empty(),
            "entry records are in the run's spool: only counted and serialized"
        );
        &self.mem
    }
}

impl std::ops::DerefMut for Entries {
    fn deref_mut(&mut self) -> &mut Vec<EntryRecord> {
        assert!(
            self.chunks.is_empty(),
            "entry records are in the run's spool: only counted and serialized"
        );
        &mut self.mem
    }
}

impl FromIterator<EntryRecord> for Entries {
    fn from_iter<I: IntoIterator<Item = EntryRecord>>(iter: I) -> Entries {
        Entries::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a EntryRecord;
    type IntoIter = std::slice::Iter<'a, EntryRecord>;

    fn into_iter(self) -> Self::IntoIter {
        use std::ops::Deref;
        self.deref().iter()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Entries) -> bool {
        if self.chunks.is_empty() && other.chunks.is_empty() {
            return self.mem == other.mem;
        }
        self.len() == other.len() && matches!((self.all(), other.all()), (Ok(a), Ok(b)) if a == b)
    }
}

impl PartialEq<Vec<EntryRecord>> for Entries {
    fn eq(&self, other: &Vec<EntryRecord>) -> bool {
        self.len() == other.len() && self.all().is_ok_and(|a| a == *other)
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.chunks.is_empty() {
            f.debug_list().entries(self.mem.iter()).finish()
        } else {
            write!(
                f,
                "[{} entry records, {} in {} spooled chunks]",
                self.len(),
                self.spooled,
                self.chunks.len()
            )
        }
    }
}

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        if let Some(spool) = &self.spool {
            for c in &self.chunks {
                let recs = spool
                    .read(*c)
                    .map_err(|e| S::Error::custom(format!("reading the entry spool: {e}")))?;
                for r in &recs {
                    seq.serialize_element(r)?;
                }
            }
        }
        for r in &self.mem {
            seq.serialize_element(r)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        Vec::<EntryRecord>::deserialize(d).map(Entries::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::EntryKind;

    fn rec(i: usize) -> EntryRecord {
        EntryRecord {
            path: format!("c/h/file{i}"),
            kind: EntryKind::File,
            size: i as u64,
            sha256: Some(format!("{i:064x}")),
            mode: 0o644,
            link_target: None,
        }
    }

    /// Spooled records serialize exactly like the same records in memory, in order, with
    /// a branch's records (spooled or not) after the unit's own; memory holds one chunk.
    #[test]
    fn spooled_records_serialize_as_in_memory_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = EntrySpool::new(dir.path()).unwrap();
        let n = 3 * CHUNK_RECORDS + 17;
        let mut unit = Entries::spooled(spool.clone());
        let mut plain = Vec::new();
        for i in 0..n {
            unit.push(rec(i));
            plain.push(rec(i));
        }
        assert!(unit.is_spooled());
        assert!(unit.mem.len() < CHUNK_RECORDS);
        assert_eq!(unit.len(), n);
        assert_eq!(unit.total_size(), (0..n as u64).sum::<u64>());
        // a branch that spooled too, and one that did not
        let mut branch = Entries::spooled(spool.clone());
        let mut small = Entries::spooled(spool);
        for i in n..n + 2 * CHUNK_RECORDS + 5 {
            branch.push(rec(i));
            plain.push(rec(i));
        }
        for i in n + 2 * CHUNK_RECORDS + 5..n + 2 * CHUNK_RECORDS + 9 {
            small.push(rec(i));
            plain.push(rec(i));
        }
        unit.append(branch);
        unit.append(small);
        assert_eq!(unit.len(), plain.len());
        let a = serde_json::to_string(&unit).unwrap();
        let b = serde_json::to_string(&plain).unwrap();
        assert!(a == b, "spooled records serialize differently");
        assert!(unit == plain);
        let back: Entries = serde_json::from_str(&a).unwrap();
        assert!(!back.is_spooled());
        assert_eq!(back, unit);
        assert_eq!(back.iter().count(), plain.len());
    }

    /// Without a spool (or with one that fails) records stay in memory.
    #[test]
    fn without_a_spool_records_stay_in_memory() {
        let mut e = Entries::default();
        for i in 0..CHUNK_RECORDS + 1 {
            e.push(rec(i));
        }
        assert!(!e.is_spooled());
        assert_eq!(e.iter().count(), CHUNK_RECORDS + 1);
    }

    #[test]
    #[should_panic(expected = "in the run's spool")]
    fn spooled_records_are_not_a_slice() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Entries::spooled(EntrySpool::new(dir.path()).unwrap());
        for i in 0..CHUNK_RECORDS {
            e.push(rec(i));
        }
        let _ = e.iter().count();
    }
}
