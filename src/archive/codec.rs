//! Compression of one entry's data, chunk by chunk, as it arrives.
//!
//! A zstd stream may be several concatenated frames and a gzip file several members; both
//! decompress to the concatenation of their parts. A deflate stream (a zip entry's data) may be
//! built from independently compressed pieces that each end with a sync flush (an empty stored
//! block), closed by one empty final block: that is how pigz compresses in parallel. So every
//! [`CHUNK`] of an entry is compressed on its own, on a small pool of blocking threads, while the
//! next chunk is still being received; the archive writer only splices finished pieces.
//!
//! Memory: at most [`Codec::workers`] chunks are being compressed at once (each holds its input,
//! its output and, for zstd, one reused compression context sized for a [`CHUNK`] input).

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::Format;

/// Size of the pieces an entry's data is cut into and compressed independently. Larger chunks
/// compress a little better (zstd's window is bounded by the chunk) and cost memory per chunk in
/// flight.
pub const CHUNK: usize = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Each piece a zstd frame with its content checksum.
    Zstd,
    /// Each piece a gzip member (with its CRC-32 and length).
    Gzip,
    /// Each piece raw deflate ending in a sync flush; [`Codec::end_marker`] closes the stream.
    Deflate,
}

/// The compressor of one archive: format, level, and the bounded pool chunks are compressed on.
pub(crate) struct Codec {
    kind: Kind,
    level: i32,
    workers: usize,
    permits: Arc<Semaphore>,
    /// Reused zstd contexts, at most `workers` of them.
    zstd: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("kind", &self.kind)
            .field("level", &self.level)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Codec {
    /// `workers`: chunks compressed at once (at least 1).
    pub fn new(format: Format, level: i32, workers: usize) -> Arc<Codec> {
        let workers = workers.max(1);
        Arc::new(Codec {
            kind: match format {
                Format::TarZst => Kind::Zstd,
                Format::TarGz => Kind::Gzip,
                Format::Zip => Kind::Deflate,
            },
            level,
            workers,
            permits: Arc::new(Semaphore::new(workers)),
            zstd: Mutex::new(Vec::new()),
        })
    }

    /// Bytes that end an entry's data after its last piece: the empty final deflate block for
    /// zip; nothing for zstd frames and gzip members, which are complete on their own.
    pub fn end_marker(&self) -> &'static [u8] {
        match self.kind {
            // BFINAL=1, BTYPE=01 (fixed Huffman), end-of-block code: 3 bits + 7 bits.
            Kind::Deflate => &[0x03, 0x00],
            Kind::Zstd | Kind::Gzip => &[],
        }
    }

    /// Compress `data` into one self-contained piece (blocking: call off the async threads, or
    /// for small inputs).
    pub fn compress_blocking(&self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self.kind {
            Kind::Zstd => {
                let pooled = self.zstd.lock().unwrap().pop();
                let mut c = match pooled {
                    Some(c) => c,
                    None => {
                        let mut c = zstd::bulk::Compressor::new(self.level)?;
                        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                        c
                    }
                };
                let out = c.compress(data);
                let mut pool = self.zstd.lock().unwrap();
                if pool.len() < self.workers {
                    pool.push(c);
                }
                out
            }
            Kind::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 2 + 64),
                    flate2::Compression::new(self.level as u32),
                );
                e.write_all(data)?;
                e.finish()
            }
            Kind::Deflate => deflate_sync(data, self.level),
        }
    }

    /// Start compressing `data` on the pool once a worker is free (waits for one: this is the
    /// back-pressure that keeps memory bounded). The handle yields the piece.
    pub async fn submit(
        self: &Arc<Self>,
        data: Bytes,
    ) -> tokio::task::JoinHandle<std::io::Result<Vec<u8>>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the codec's semaphore is never closed");
        let codec = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            codec.compress_blocking(&data)
        })
    }
}

/// Raw deflate of `data` ending in a sync flush (not final), so pieces can be concatenated.
fn deflate_sync(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(level as u32), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 128);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        // With a sync flush the stream is flushed when all input is taken and output space was
        // left over.
        if c.total_in() as usize == data.len()
            && out.len() < out.capacity()
            && status != Status::BufError
        {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[(i % 3) + 1] % 17 + b'a')
            .collect()
    }

    #[test]
    fn zstd_frames_concatenate() {
        let c = Codec::new(Format::TarZst, 3, 2);
        let (a, b) = (sample(300_000), vec![7u8; 5000]);
        let mut z = c.compress_blocking(&a).unwrap();
        z.extend(c.compress_blocking(&b).unwrap());
        z.extend(c.compress_blocking(&[]).unwrap());
        let out = zstd::stream::decode_all(&z[..]).unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert!(out[..a.len()] == a[..] && out[a.len()..] == b[..]);
    }

    #[test]
    fn gzip_members_concatenate() {
        let c = Codec::new(Format::TarGz, 6, 1);
        let (a, b) = (sample(200_000), sample(10));
        let mut z = c.compress_blocking(&a).unwrap();
        z.extend(c.compress_blocking(&b).unwrap());
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, [a, b].concat());
    }

    #[test]
    fn deflate_pieces_and_end_marker_make_one_stream() {
        for level in [0, 1, 6, 9] {
            let c = Codec::new(Format::Zip, level, 1);
            let parts = [sample(CHUNK), vec![0u8; 70_000], sample(1), vec![]];
            let mut z = Vec::new();
            for p in &parts {
                z.extend(c.compress_blocking(p).unwrap());
            }
            z.extend_from_slice(c.end_marker());
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, parts.concat(), "level {level}");
        }
        // No data at all: the end marker alone is a valid empty stream.
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&[0x03u8, 0x00][..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
