//! Encryption of whole archives with age (<https://age-encryption.org/v1>), for copies kept
//! offsite: the archive stream is encrypted on its way to the target, so no plaintext byte
//! reaches it, and the result decrypts with the `age` command line tool (`age -d -i KEY`).
//!
//! Recipients are age X25519 public keys (`age1...`) or SSH public key lines (`ssh-ed25519 ...`,
//! `ssh-rsa ...`), given one by one or in a recipients file (one per line, `#` comments).
//! Identities (for reading an encrypted archive) are age identity files (`AGE-SECRET-KEY-1...`
//! lines, as `age-keygen` writes them) or unencrypted OpenSSH private keys.

use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt,
    TokioAsyncWriteCompatExt,
};

/// The first bytes of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
/// Appended to an encrypted archive's name.
pub const AGE_EXT: &str = "age";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("encryption recipient {value:?}: {cause}")]
    Recipient { value: String, cause: String },
    #[error("recipients file {}: {cause}", path.display())]
    RecipientsFile { path: PathBuf, cause: String },
    #[error("age identity file {}: {cause}", path.display())]
    Identity { path: PathBuf, cause: String },
    #[error("encrypting: {0}")]
    Encrypt(String),
    #[error("{0}")]
    Decrypt(String),
}

/// Who can decrypt: at least one recipient.
pub struct Recipients(Vec<Box<dyn age::Recipient + Send + Sync>>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

fn parse_recipient(s: &str) -> Result<Box<dyn age::Recipient + Send + Sync>, CryptError> {
    let bad = |cause: String| CryptError::Recipient {
        value: s.to_string(),
        cause,
    };
    if s.starts_with("age1") {
        return age::x25519::Recipient::from_str(s)
            .map(|r| Box::new(r) as _)
            .map_err(|e| bad(format!("not an age X25519 recipient: {e}")));
    }
    if s.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(s)
            .map(|r| Box::new(r) as _)
            .map_err(|e| bad(format!("not a usable SSH public key: {e:?}")));
    }
    Err(bad(
        "expected an age recipient (age1...) or an SSH public key line (ssh-ed25519 ..., ssh-rsa ...)"
            .into(),
    ))
}

impl Recipients {
    /// From `--encrypt-to` values and `--encrypt-to-file` files; `None` when both are empty.
    pub fn load(values: &[String], files: &[PathBuf]) -> Result<Option<Recipients>, CryptError> {
        let mut out = Vec::new();
        for v in values {
            out.push(parse_recipient(v.trim())?);
        }
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|e| CryptError::RecipientsFile {
                path: path.clone(),
                cause: e.to_string(),
            })?;
            let before = out.len();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(
                    parse_recipient(line).map_err(|e| CryptError::RecipientsFile {
                        path: path.clone(),
                        cause: format!("line {}: {e}", n + 1),
                    })?,
                );
            }
            if out.len() == before {
                return Err(CryptError::RecipientsFile {
                    path: path.clone(),
                    cause: "no recipient in it".into(),
                });
            }
        }
        Ok((!out.is_empty()).then_some(Recipients(out)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wrap `inner`: what is written is encrypted to every recipient. Shutting the returned
    /// writer down writes age's last chunk and shuts `inner` down.
    pub async fn encrypting_writer(
        &self,
        inner: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> Result<Box<dyn AsyncWrite + Send + Unpin>, CryptError> {
        let enc = age::Encryptor::with_recipients(self.0.iter().map(|r| r.as_ref() as _))
            .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        let w = enc
            .wrap_async_output(inner.compat_write())
            .await
            .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        Ok(Box::new(w.compat_write()))
    }
}

/// Keys that can decrypt archives (`--age-identity`).
#[derive(Default)]
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

impl Identities {
    pub fn load(files: &[PathBuf]) -> Result<Identities, CryptError> {
        let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        for path in files {
            let bad = |cause: String| CryptError::Identity {
                path: path.clone(),
                cause,
            };
            let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            if data.starts_with(b"-----BEGIN") {
                let id =
                    age::ssh::Identity::from_buffer(&data[..], Some(path.display().to_string()))
                        .map_err(|e| bad(format!("not a usable SSH private key: {e}")))?;
                match id {
                    age::ssh::Identity::Unencrypted(_) => out.push(Box::new(id)),
                    age::ssh::Identity::Encrypted(_) => {
                        return Err(bad(
                            "the SSH key is passphrase-protected: use an unencrypted key or an age identity"
                                .into(),
                        ));
                    }
                    age::ssh::Identity::Unsupported(k) => {
                        return Err(bad(format!("unsupported SSH key: {k:?}")));
                    }
                }
            } else {
                // An identity file: `AGE-SECRET-KEY-1...` lines, `#` comments.
                let text = String::from_utf8(data).map_err(|_| bad("not UTF-8 text".into()))?;
                let before = out.len();
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let id = age::x25519::Identity::from_str(line).map_err(|_| {
                        bad(format!(
                            "line {}: not an age secret key (AGE-SECRET-KEY-1...)",
                            n + 1
                        ))
                    })?;
                    out.push(Box::new(id));
                }
                if out.len() == before {
                    return Err(bad("no identity in it".into()));
                }
            }
        }
        Ok(Identities(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A reader of the plaintext of the age file `input` (its header included).
    pub async fn decrypting_reader<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        input: R,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, CryptError> {
        if self.0.is_empty() {
            return Err(CryptError::Decrypt(
                "encrypted with age: give the key with --age-identity FILE".into(),
            ));
        }
        let d = age::Decryptor::new_async(input.compat())
            .await
            .map_err(|e| CryptError::Decrypt(format!("not a readable age file: {e}")))?;
        let r = d
            .decrypt_async(self.0.iter().map(|i| i.as_ref() as _))
            .map_err(|e| CryptError::Decrypt(format!("cannot decrypt: {e}")))?;
        Ok(Box::new(r.compat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let key = dir.path().join("key.txt");
        std::fs::write(
            &key,
            format!("# a comment\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        let rfile = dir.path().join("recipients");
        std::fs::write(&rfile, format!("# team\n\n{}\n", id.to_public())).unwrap();
        let recipients = Recipients::load(&[], &[rfile]).unwrap().unwrap();
        assert_eq!(recipients.len(), 1);

        let out = dir.path().join("x.age");
        let f = tokio::fs::File::create(&out).await.unwrap();
        let mut w = recipients.encrypting_writer(Box::new(f)).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        let enc = std::fs::read(&out).unwrap();
        assert!(enc.starts_with(AGE_MAGIC));
        assert!(!enc.windows(64).any(|w| w == &data[1000..1064]));

        let ids = Identities::load(&[key]).unwrap();
        let f = tokio::fs::File::open(&out).await.unwrap();
        let mut r = ids.decrypting_reader(f).await.unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);

        // A cut or altered payload fails age's authentication.
        for bad in [enc[..enc.len() - 100].to_vec(), {
            let mut b = enc.clone();
            let i = b.len() / 2;
            b[i] ^= 1;
            b
        }] {
            let mut r = ids
                .decrypting_reader(std::io::Cursor::new(bad))
                .await
                .unwrap();
            let mut back = Vec::new();
            assert!(r.read_to_end(&mut back).await.is_err());
        }

        let wrong = dir.path().join("wrong.txt");
        std::fs::write(&wrong, other.to_string().expose_secret()).unwrap();
        let ids = Identities::load(&[wrong]).unwrap();
        let f = tokio::fs::File::open(&out).await.unwrap();
        assert!(ids.decrypting_reader(f).await.is_err());
        let f = tokio::fs::File::open(&out).await.unwrap();
        let e = Identities::default()
            .decrypting_reader(f)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("--age-identity"), "{e}");
    }

    #[test]
    fn bad_recipients_are_named() {
        let e = Recipients::load(&["age1nope".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("age1nope"), "{e}");
        let e = Recipients::load(&["hello".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("expected an age recipient"), "{e}");
        assert!(Recipients::load(&[], &[]).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("r");
        std::fs::write(&empty, "# nobody\n").unwrap();
        let e = Recipients::load(&[], &[empty]).unwrap_err();
        assert!(e.to_string().contains("no recipient"), "{e}");
    }
}
