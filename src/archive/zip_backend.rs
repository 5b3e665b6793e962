//! zip: the writer task's side, written by hand (the `zip` crate cannot splice data compressed
//! elsewhere). Each entry arrives with its deflate data already compressed (pieces ending in a
//! sync flush, closed by an empty final block, see `codec.rs`), its CRC-32 and sizes, so its
//! local header carries the real sizes and no data descriptor is needed. ZIP64 extra fields are
//! used for sizes and offsets that do not fit 32 bits, and a ZIP64 end record when needed
//! (APPNOTE 6.3.x, sections 4.3.7, 4.3.12, 4.3.14-16, 4.5.3).
//!
//! Reading (verify) uses the `zip` crate.

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::entry::Prepared;
use super::{EntryHeader, EntryKind};

type DynWrite = Box<dyn AsyncWrite + Send + Unpin>;

const SINK_BUFFER: usize = 256 * 1024;
const MAX32: u64 = 0xFFFF_FFFF;
/// General purpose flag bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 0x0800;
/// Version made by: UNIX (3), spec 4.5.
const MADE_BY: u16 = (3 << 8) | 45;

struct Central {
    name: Vec<u8>,
    method: u16,
    dos_time: u16,
    dos_date: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    external: u32,
}

pub(crate) struct ZipBackend {
    out: BufWriter<DynWrite>,
    offset: u64,
    central: Vec<Central>,
}

/// MS-DOS date and time (local time is unknowable here: UTC), clamped to 1980..=2107.
fn dos_datetime(mtime: i64) -> (u16, u16) {
    let ts = jiff::Timestamp::from_second(mtime).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let year = dt.year();
    if year < 1980 {
        return ((1 << 5) | 1, 0);
    }
    if year > 2107 {
        return ((127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29);
    }
    let date = (((year - 1980) as u16) << 9) | ((dt.month() as u16) << 5) | dt.day() as u16;
    let time = ((dt.hour() as u16) << 11) | ((dt.minute() as u16) << 5) | (dt.second() as u16 / 2);
    (date, time)
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl ZipBackend {
    pub fn new(sink: DynWrite) -> ZipBackend {
        ZipBackend {
            out: BufWriter::with_capacity(SINK_BUFFER, sink),
            offset: 0,
            central: Vec::new(),
        }
    }

    async fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes).await?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Local header of an entry whose CRC and sizes are known.
    fn local_header(c: &Central) -> Vec<u8> {
        let zip64 = c.usize >= MAX32 || c.csize >= MAX32;
        let mut v = Vec::with_capacity(30 + c.name.len() + 20);
        put32(&mut v, 0x0403_4b50);
        put16(&mut v, if zip64 { 45 } else { 20 });
        put16(&mut v, FLAG_UTF8);
        put16(&mut v, c.method);
        put16(&mut v, c.dos_time);
        put16(&mut v, c.dos_date);
        put32(&mut v, c.crc);
        put32(&mut v, if zip64 { MAX32 as u32 } else { c.csize as u32 });
        put32(&mut v, if zip64 { MAX32 as u32 } else { c.usize as u32 });
        put16(&mut v, c.name.len() as u16);
        put16(&mut v, if zip64 { 20 } else { 0 });
        v.extend_from_slice(&c.name);
        if zip64 {
            // In a local header the ZIP64 field holds both sizes.
            put16(&mut v, 0x0001);
            put16(&mut v, 16);
            put64(&mut v, c.usize);
            put64(&mut v, c.csize);
        }
        v
    }

    fn central_record(c: &Central) -> Vec<u8> {
        let mut extra = Vec::new();
        if c.usize >= MAX32 {
            put64(&mut extra, c.usize);
        }
        if c.csize >= MAX32 {
            put64(&mut extra, c.csize);
        }
        if c.offset >= MAX32 {
            put64(&mut extra, c.offset);
        }
        let zip64 = !extra.is_empty();
        let mut v = Vec::with_capacity(46 + c.name.len() + 28);
        put32(&mut v, 0x0201_4b50);
        put16(&mut v, MADE_BY);
        put16(&mut v, if zip64 { 45 } else { 20 });
        put16(&mut v, FLAG_UTF8);
        put16(&mut v, c.method);
        put16(&mut v, c.dos_time);
        put16(&mut v, c.dos_date);
        put32(&mut v, c.crc);
        put32(&mut v, c.csize.min(MAX32) as u32);
        put32(&mut v, c.usize.min(MAX32) as u32);
        put16(&mut v, c.name.len() as u16);
        put16(&mut v, if zip64 { 4 + extra.len() as u16 } else { 0 });
        put16(&mut v, 0); // comment
        put16(&mut v, 0); // disk number start
        put16(&mut v, 0); // internal attributes
        put32(&mut v, c.external);
        put32(&mut v, c.offset.min(MAX32) as u32);
        v.extend_from_slice(&c.name);
        if zip64 {
            put16(&mut v, 0x0001);
            put16(&mut v, extra.len() as u16);
            v.extend_from_slice(&extra);
        }
        v
    }

    fn central_for(h: &EntryHeader, method: u16, crc: u32, csize: u64, usize: u64) -> Central {
        let (dos_date, dos_time) = dos_datetime(h.mtime);
        let (name, unix, dos) = match h.kind {
            EntryKind::File => (h.path.clone(), 0o100000 | (h.mode & 0o7777), 0),
            EntryKind::Dir => (format!("{}/", h.path), 0o040000 | (h.mode & 0o7777), 0x10),
            EntryKind::Symlink => (h.path.clone(), 0o120777, 0),
        };
        Central {
            name: name.into_bytes(),
            method,
            dos_time,
            dos_date,
            crc,
            csize,
            usize,
            offset: 0,
            external: (unix << 16) | dos,
        }
    }

    async fn write_entry(
        &mut self,
        mut c: Central,
        p: Option<&mut Prepared>,
        data: &[u8],
    ) -> std::io::Result<()> {
        c.offset = self.offset;
        if c.name.len() > u16::MAX as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "entry name longer than 65535 bytes",
            ));
        }
        let local = Self::local_header(&c);
        self.put(&local).await?;
        if let Some(p) = p {
            self.put(&std::mem::take(&mut p.head)).await?;
            if let Some(body) = p.body.as_mut() {
                body.copy_to(&mut self.out).await?;
                self.offset += body.len();
            }
            let tail = std::mem::take(&mut p.tail);
            self.put(&tail).await?;
        } else {
            self.put(data).await?;
        }
        self.central.push(c);
        Ok(())
    }

    /// Splice a finished entry.
    pub async fn write(&mut self, mut p: Prepared) -> std::io::Result<()> {
        let h = p.header.clone();
        match h.kind {
            EntryKind::File => {
                let c = Self::central_for(&h, 8, p.crc32, p.compressed_len(), h.size);
                self.write_entry(c, Some(&mut p), &[]).await
            }
            EntryKind::Dir => {
                let c = Self::central_for(&h, 0, 0, 0, 0);
                self.write_entry(c, None, &[]).await
            }
            EntryKind::Symlink => {
                let target = h.link_target.clone().unwrap_or_default().into_bytes();
                let crc = crc32fast::hash(&target);
                let n = target.len() as u64;
                let c = Self::central_for(&h, 0, crc, n, n);
                self.write_entry(c, None, &target).await
            }
        }
    }

    /// The central directory and the end records; then flush and shut the sink down.
    pub async fn finish(mut self) -> std::io::Result<()> {
        let cd_offset = self.offset;
        let central = std::mem::take(&mut self.central);
        for c in &central {
            let rec = Self::central_record(c);
            self.put(&rec).await?;
        }
        let cd_size = self.offset - cd_offset;
        let count = central.len() as u64;
        if count >= 0xFFFF || cd_size >= MAX32 || cd_offset >= MAX32 {
            let z64_offset = self.offset;
            let mut v = Vec::with_capacity(56 + 20);
            put32(&mut v, 0x0606_4b50);
            put64(&mut v, 44);
            put16(&mut v, MADE_BY);
            put16(&mut v, 45);
            put32(&mut v, 0);
            put32(&mut v, 0);
            put64(&mut v, count);
            put64(&mut v, count);
            put64(&mut v, cd_size);
            put64(&mut v, cd_offset);
            put32(&mut v, 0x0706_4b50);
            put32(&mut v, 0);
            put64(&mut v, z64_offset);
            put32(&mut v, 1);
            self.put(&v).await?;
        }
        let mut v = Vec::with_capacity(22);
        put32(&mut v, 0x0605_4b50);
        put16(&mut v, 0);
        put16(&mut v, 0);
        put16(&mut v, count.min(0xFFFF) as u16);
        put16(&mut v, count.min(0xFFFF) as u16);
        put32(&mut v, cd_size.min(MAX32) as u32);
        put32(&mut v, cd_offset.min(MAX32) as u32);
        put16(&mut v, 0);
        self.put(&v).await?;
        self.out.flush().await?;
        self.out.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_datetime_encodes_and_clamps() {
        // 2026-12-05T01:02:03Z
        let t = jiff::Timestamp::from_second(1_796_432_523).unwrap();
        let dt = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        let (d, tm) = dos_datetime(1_796_432_523);
        assert_eq!(d >> 9, (dt.year() - 1980) as u16);
        assert_eq!((d >> 5) & 15, dt.month() as u16);
        assert_eq!(d & 31, dt.day() as u16);
        assert_eq!(tm >> 11, dt.hour() as u16);
        assert_eq!(dos_datetime(0), ((1 << 5) | 1, 0));
    }

    #[test]
    fn zip64_fields_appear_only_when_needed() {
        let h = EntryHeader {
            path: "c/h/f".into(),
            kind: EntryKind::File,
            size: 10,
            mode: 0o600,
            mtime: 0,
            link_target: None,
        };
        let small = ZipBackend::central_for(&h, 8, 1, 5, 10);
        assert_eq!(ZipBackend::local_header(&small).len(), 30 + 5);
        assert_eq!(ZipBackend::central_record(&small).len(), 46 + 5);
        let mut big = ZipBackend::central_for(&h, 8, 1, 5 << 30, 9 << 30);
        big.offset = 6 << 30;
        let local = ZipBackend::local_header(&big);
        assert_eq!(local.len(), 30 + 5 + 20);
        assert_eq!(&local[18..26], &[0xFF; 8]);
        assert_eq!(
            &local[local.len() - 16..local.len() - 8],
            &(9u64 << 30).to_le_bytes()
        );
        let rec = ZipBackend::central_record(&big);
        assert_eq!(rec.len(), 46 + 5 + 4 + 24);
        assert_eq!(&rec[rec.len() - 8..], &(6u64 << 30).to_le_bytes());
    }
}
