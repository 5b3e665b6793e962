//! A guard in front of the tar reader: it follows the tar stream block by block and refuses an
//! extension header (PAX `x`/`g`, GNU long name `L` / long link `K`) larger than
//! [`MAX_EXTENSION`] before the reader sees it. The tar reader (astral-tokio-tar) reads such a
//! header's data whole into memory, whatever its declared size: a crafted archive with an 8 GiB
//! PAX record would otherwise make a root process allocate 8 GiB. lsbackup's own archives use
//! extension headers only for long paths and link targets (a few KiB at most).
//!
//! It also refuses a stream that ends before an end-of-archive block (a zero header): a tar
//! cut exactly after a complete entry, e.g. a zstd stream cut at a frame boundary, would
//! otherwise read as a whole (shorter) archive.
//!
//! Written by hand: it only needs each header's type flag and size field (and a PAX `size`
//! record, which overrides the size of the entry that follows), not a tar parser.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The largest extension header accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

enum State {
    /// Collecting a 512-byte header.
    Header { buf: Box<[u8; 512]>, filled: usize },
    /// Passing an entry's data (padded to whole blocks); a PAX header's data is kept to read
    /// its `size` record.
    Data { left: u64, pax: Option<Vec<u8>> },
}

pub struct TarGuard<R> {
    inner: R,
    state: State,
    /// A PAX `size` record for the next entry.
    next_size: Option<u64>,
    failed: Option<String>,
    /// An end-of-archive block was seen (at a header boundary).
    ended: bool,
}

impl<R> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header {
                buf: Box::new([0; 512]),
                filled: 0,
            },
            next_size: None,
            failed: None,
            ended: false,
        }
    }

    /// Follow `bytes` through the stream; an error for a header the tar reader must not see.
    fn follow(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header { buf, filled } => {
                    let n = (512 - *filled).min(bytes.len());
                    buf[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    bytes = &bytes[n..];
                    if *filled == 512 {
                        let h: [u8; 512] = **buf;
                        self.header(&h)?;
                    }
                }
                State::Data { left, pax } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    if let Some(p) = pax {
                        p.extend_from_slice(&bytes[..n]);
                    }
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        if let Some(p) = pax.take() {
                            self.next_size = pax_size(&p);
                        }
                        self.state = State::Header {
                            buf: Box::new([0; 512]),
                            filled: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self, h: &[u8; 512]) -> Result<(), String> {
        let kind = h[156];
        let field = parse_size(&h[124..136]);
        if h.iter().all(|&b| b == 0) {
            // An end-of-archive block.
            self.ended = true;
            self.state = State::Header {
                buf: Box::new([0; 512]),
                filled: 0,
            };
            return Ok(());
        }
        let size = match field {
            Some(s) => s,
            None => return Err("a tar header with an unreadable size field".into()),
        };
        let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = if extension {
            if size > MAX_EXTENSION {
                let what = match kind {
                    b'x' | b'g' => "PAX extended header",
                    b'L' => "GNU long-name header",
                    _ => "GNU long-link header",
                };
                return Err(format!(
                    "a {what} of {size} bytes (more than {} KiB): refused",
                    MAX_EXTENSION >> 10
                ));
            }
            size
        } else {
            self.next_size.take().unwrap_or(size)
        };
        let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        self.state = if padded == 0 {
            State::Header {
                buf: Box::new([0; 512]),
                filled: 0,
            }
        } else {
            State::Data {
                left: padded,
                pax: (kind == b'x').then(Vec::new),
            }
        };
        Ok(())
    }
}

/// A header's numeric field: octal text (NUL/space padded) or GNU base-256 (high bit set).
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = (f[0] & 0x7f) as u64;
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let t: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| *b != b' ' && *b != 0)
        .collect();
    if t.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&t).ok()?, 8).ok()
}

/// The `size` record of a PAX header's data (`LEN size=N\n` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() && rest[0] != 0 {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else {
            return found;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
        else {
            return found;
        };
        if len <= sp || len > rest.len() {
            return found;
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

impl<R: AsyncRead + Unpin> AsyncRead for TarGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(std::io::Error::other(e.clone())));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r
            && room
            && buf.filled().len() == before
            && !this.ended
        {
            let e = "the archive ends before its end-of-archive block: truncated".to_string();
            this.failed = Some(e.clone());
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                e,
            )));
        }
        if let Poll::Ready(Ok(())) = &r
            && let Err(e) = this.follow(&buf.filled()[before..])
        {
            // Nothing of the refused header reaches the reader.
            buf.set_filled(before);
            this.failed = Some(e.clone());
            return Poll::Ready(Err(std::io::Error::other(e)));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0] = b'a';
        let s = format!("{size:011o}\0");
        h[124..136].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h
    }

    #[test]
    fn sizes_parse_in_octal_and_base256() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"     1750 \0\0"), Some(1000));
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[11] = 0x10;
        b[10] = 0x01;
        assert_eq!(parse_size(&b), Some(0x110));
        assert_eq!(parse_size(b"zzzzzzzzzzz\0"), None);
    }

    #[test]
    fn pax_size_records_are_read() {
        assert_eq!(pax_size(b"12 size=100\n22 path=a/b/c/d/e/f/g\n"), Some(100));
        assert_eq!(pax_size(b"11 path=ab\n"), None);
    }

    #[tokio::test]
    async fn a_stream_without_its_end_block_is_truncated() {
        use tokio::io::AsyncReadExt;
        let mut s = header(b'0', 1);
        s.extend(vec![1u8; 512]);
        let mut out = Vec::new();
        let e = TarGuard::new(&s[..])
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        s.extend(vec![0u8; 1024]);
        let mut out = Vec::new();
        TarGuard::new(&s[..]).read_to_end(&mut out).await.unwrap();
        assert_eq!(out, s);
    }

    #[test]
    fn follows_entries_and_refuses_a_huge_extension() {
        let mut g = TarGuard::new(&b""[..]);
        let mut s = header(b'0', 700);
        s.extend(vec![7u8; 1024]);
        // A PAX header that says the next entry is 1000 bytes although its header says 0.
        let rec = b"13 size=1000\n";
        s.extend(header(b'x', rec.len() as u64));
        let mut d = rec.to_vec();
        d.resize(512, 0);
        s.extend(d);
        s.extend(header(b'0', 0));
        s.extend(vec![1u8; 1024]);
        s.extend(header(b'L', 100));
        s.extend(vec![b'n'; 512]);
        s.extend(header(b'0', 1));
        s.extend(vec![1u8; 512]);
        // Fed in odd pieces.
        for c in s.chunks(97) {
            g.follow(c).unwrap();
        }
        let e = g.follow(&header(b'x', 64 << 20)).unwrap_err();
        assert!(e.contains("PAX extended header of 67108864 bytes"), "{e}");
        let mut g = TarGuard::new(&b""[..]);
        let e = g.follow(&header(b'L', 2 << 20)).unwrap_err();
        assert!(e.contains("GNU long-name header"), "{e}");
    }
}
