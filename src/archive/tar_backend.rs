//! tar.zst / tar.gz: the writer task's side. Entries arrive finished and compressed (their
//! pieces are zstd frames or gzip members, see `codec.rs`); the writer copies them to the sink
//! in order, so the archive decompresses to one ordinary tar stream.
//!
//! Headers are GNU tar headers built with astral-tokio-tar's `Header`: paths over 100 bytes get a
//! GNU long-name entry (`L`), long symlink targets a GNU long-link entry (`K`), and sizes of
//! 8 GiB and more the GNU base-256 size field.

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_tar::{EntryType, Header};

use super::codec::Codec;
use super::entry::Prepared;
use super::{EntryHeader, EntryKind};

type DynWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Buffer between the writer and the sink.
const SINK_BUFFER: usize = 256 * 1024;

/// Zeros after an entry's data up to the next 512-byte boundary.
pub(crate) fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// A GNU `././@LongLink` entry of type `kind` (`L`: path, `K`: link target) carrying `value`.
fn long_entry(kind: EntryType, value: &str, out: &mut Vec<u8>) {
    let mut data = value.as_bytes().to_vec();
    data.push(0);
    let mut header = Header::new_gnu();
    let name = b"././@LongLink";
    header.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    header.set_entry_type(kind);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    let pad = padding(data.len() as u64);
    out.extend_from_slice(&data);
    out.resize(out.len() + pad, 0);
}

/// The tar header block(s) of `h`, uncompressed: a GNU long-name entry when the path does not
/// fit, a long-link entry when the symlink target does not fit, then the 512-byte header.
pub(crate) fn tar_header_bytes(h: &EntryHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut header = Header::new_gnu();
    header.set_mode(h.mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(h.mtime.max(0) as u64);
    let (kind, size) = match h.kind {
        EntryKind::File => (EntryType::Regular, h.size),
        EntryKind::Dir => (EntryType::Directory, 0),
        EntryKind::Symlink => (EntryType::Symlink, 0),
    };
    header.set_entry_type(kind);
    header.set_size(size);
    if let Some(target) = &h.link_target
        && header.set_link_name(target).is_err()
    {
        long_entry(EntryType::GNULongLink, target, &mut out);
    }
    // Directories carry a trailing slash, as tar writes them.
    let path = match h.kind {
        EntryKind::Dir => format!("{}/", h.path),
        _ => h.path.clone(),
    };
    let bytes = path.as_bytes();
    let gnu = header.as_gnu_mut().expect("gnu header");
    if bytes.len() <= gnu.name.len() {
        gnu.name[..bytes.len()].copy_from_slice(bytes);
    } else {
        long_entry(EntryType::GNULongName, &path, &mut out);
        let n = gnu.name.len();
        gnu.name.copy_from_slice(&bytes[..n]);
    }
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out
}

pub(crate) struct TarBackend {
    out: BufWriter<DynWrite>,
}

impl TarBackend {
    pub fn new(sink: DynWrite) -> TarBackend {
        TarBackend {
            out: BufWriter::with_capacity(SINK_BUFFER, sink),
        }
    }

    /// Splice a finished entry: its pieces, unchanged.
    pub async fn write(&mut self, mut p: Prepared) -> std::io::Result<()> {
        self.out.write_all(&p.head).await?;
        if let Some(body) = p.body.as_mut() {
            body.copy_to(&mut self.out).await?;
        }
        self.out.write_all(&p.tail).await
    }

    /// The end-of-archive blocks in one last piece; then flush and shut the sink down.
    pub async fn finish(mut self, codec: &Codec) -> std::io::Result<()> {
        let piece = codec.compress_blocking(&[0u8; 1024])?;
        self.out.write_all(&piece).await?;
        self.out.flush().await?;
        self.out.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> EntryHeader {
        EntryHeader {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mode: 0o640,
            mtime: 1_700_000_000,
            link_target: None,
        }
    }

    /// Sizes of 8 GiB and more do not fit tar's 11 octal digits: GNU base-256 encoding, read
    /// back exactly by the tar crate and by Python's tarfile.
    #[test]
    fn sizes_over_8_gib_are_encoded_exactly() {
        for size in [
            8 * 1024 * 1024 * 1024 - 1,
            8 * 1024 * 1024 * 1024,
            9 * 1024 * 1024 * 1024 + 123,
            1u64 << 40,
        ] {
            let bytes = tar_header_bytes(&file("c/h/big", size));
            assert_eq!(bytes.len(), 512);
            let h = Header::from_byte_slice(&bytes);
            assert_eq!(h.raw_entry_size().unwrap(), size, "tar crate reads {size}");
            assert_eq!(h.raw_file_size().unwrap(), size);
            if size >= 8 * 1024 * 1024 * 1024 {
                assert_eq!(bytes[124] & 0x80, 0x80, "base-256 marker for {size}");
            }
            // Python's tarfile, when there is one, agrees.
            let py = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys,tarfile; print(tarfile.TarInfo.frombuf(sys.stdin.buffer.read(512), 'utf-8', 'strict').size)",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn();
            if let Ok(mut child) = py {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(&bytes).unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success());
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    size.to_string()
                );
            }
        }
    }

    #[test]
    fn long_paths_and_links_get_gnu_entries() {
        let long = format!("c/h/{}", "d/".repeat(80) + "file");
        let bytes = tar_header_bytes(&file(&long, 5));
        // L header + name data (padded) + header
        assert_eq!(bytes.len(), 512 + 512 + 512);
        assert_eq!(bytes[156], b'L');
        assert_eq!(&bytes[512..512 + long.len()], long.as_bytes());
        let target = "t/".repeat(70);
        let link = EntryHeader {
            path: "c/h/l".into(),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: 0,
            link_target: Some(target.clone()),
        };
        let bytes = tar_header_bytes(&link);
        assert_eq!(bytes[156], b'K');
        assert_eq!(bytes[bytes.len() - 512 + 156], b'2');
    }
}
