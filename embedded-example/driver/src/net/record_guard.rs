//! [`RecordGuard`]: keeps from embedded-tls 0.19 the one server record we
//! know it panics on. An encrypted record whose plaintext is empty (its
//! body exactly one AEAD tag long) decrypts fine and then reaches an
//! `unwrap()` on the plaintext's last byte in `decrypt_record`. Anyone on
//! the path can send one during the handshake, before the server has
//! authenticated: the key exchange is all it takes. The guard sits between
//! the socket and embedded-tls, follows the record framing of what the
//! server sends, and fails the read instead.

use embedded_io_async::{Error, ErrorKind, ErrorType, Read, Write};

/// Record header: content type (1), legacy version (2), length (2).
const HEADER_LEN: usize = 5;
const APPLICATION_DATA: u8 = 23;
/// AES-128-GCM's tag, the only AEAD embedded-tls negotiates here: a record
/// body no longer than this has no plaintext at all.
const TAG_LEN: u16 = 16;

/// The socket under embedded-tls. Its error is the socket's `ErrorKind`,
/// which is all embedded-tls keeps of it; a refused record reads as
/// [`ErrorKind::InvalidData`] (a TCP socket never reports that), now and on
/// every later read.
pub struct RecordGuard<S> {
    inner: S,
    header: [u8; HEADER_LEN],
    /// Bytes of the next record's header seen so far.
    header_seen: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
    refused: bool,
}

impl<S> RecordGuard<S> {
    pub fn new(inner: S) -> Self {
        RecordGuard {
            inner,
            header: [0; HEADER_LEN],
            header_seen: 0,
            body_left: 0,
            refused: false,
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Follows the framing over `bytes`, the next the server sent; false
    /// once a record with an empty encrypted plaintext has begun.
    fn inspect(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() && !self.refused {
            if self.body_left > 0 {
                let skipped = bytes.len().min(self.body_left);
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = bytes.len().min(HEADER_LEN - self.header_seen);
            self.header[self.header_seen..][..taken].copy_from_slice(&bytes[..taken]);
            self.header_seen += taken;
            bytes = &bytes[taken..];
            if self.header_seen == HEADER_LEN {
                self.header_seen = 0;
                let length = u16::from_be_bytes([self.header[3], self.header[4]]);
                self.refused = self.header[0] == APPLICATION_DATA && length <= TAG_LEN;
                self.body_left = usize::from(length);
            }
        }
        !self.refused
    }
}

impl<S: ErrorType> ErrorType for RecordGuard<S> {
    type Error = ErrorKind;
}

impl<S: Read> Read for RecordGuard<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.refused {
            return Err(ErrorKind::InvalidData);
        }
        let n = self.inner.read(buf).await.map_err(|e| e.kind())?;
        if !self.inspect(&buf[..n]) {
            crate::fmt::warning!("TLS: refused an encrypted record with no plaintext");
            return Err(ErrorKind::InvalidData);
        }
        Ok(n)
    }
}

impl<S: Write> Write for RecordGuard<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.inner.write(buf).await.map_err(|e| e.kind())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.inner.flush().await.map_err(|e| e.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake record (5 + 3 bytes), an application-data record with
    /// one byte of plaintext (5 + 17), then a header split anywhere.
    const STREAM: [u8; 30] = [
        22, 3, 3, 0, 3, 1, 2, 3, //
        23, 3, 3, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
    ];
    const EMPTY: [u8; 21] = [
        23, 3, 3, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// Feeds `stream` in chunks of `chunk` bytes; where it was refused.
    fn refused_at(stream: &[u8], chunk: usize) -> Option<usize> {
        let mut guard = RecordGuard::new(());
        for (index, piece) in stream.chunks(chunk).enumerate() {
            if !guard.inspect(piece) {
                return Some(index * chunk);
            }
        }
        None
    }

    #[test]
    fn well_formed_records_pass_however_they_are_split() {
        for chunk in 1..=STREAM.len() {
            assert_eq!(refused_at(&STREAM, chunk), None, "chunks of {chunk}");
        }
    }

    #[test]
    fn an_empty_encrypted_record_is_refused_however_it_is_split() {
        let mut stream = [0; STREAM.len() + EMPTY.len()];
        stream[..STREAM.len()].copy_from_slice(&STREAM);
        stream[STREAM.len()..].copy_from_slice(&EMPTY);
        for chunk in 1..=stream.len() {
            let at = refused_at(&stream, chunk).expect("refused");
            // Refused in the read that completes its header.
            assert!(
                at <= STREAM.len() + 4 && at + chunk > STREAM.len() + 4,
                "chunks of {chunk}"
            );
        }
    }
}
