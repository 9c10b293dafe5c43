//! A scripted TLS 1.3 server (TLS_AES_128_GCM_SHA256, secp256r1), just
//! enough of RFC 8446 to complete embedded-tls's handshake: ClientHello in,
//! then ServerHello, EncryptedExtensions, whatever authentication messages
//! the script says in whatever order, and a correct Finished. A man in the
//! middle can do all of this; what it cannot do is sign the handshake with
//! the real server's key. Over an in-memory duplex, in the test's thread.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::pipe::Pipe;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use rcgen::{KeyPair, SigningKey};
use sha2::{Digest, Sha256};

pub type Wire = Pipe<NoopRawMutex, 16384>;

/// One end of an in-memory byte stream.
pub struct Duplex<'w> {
    pub rx: &'w Wire,
    pub tx: &'w Wire,
}

impl ErrorType for Duplex<'_> {
    type Error = ErrorKind;
}

impl Read for Duplex<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        Ok(self.rx.read(buf).await)
    }
}

impl Write for Duplex<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(self.tx.write(buf).await)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// What the server sends between EncryptedExtensions and Finished.
pub enum Step<'a> {
    /// A Certificate message with this chain (the server's own first).
    Certificate(&'a [&'a [u8]]),
    /// A CertificateVerify: `key`'s ECDSA-P256-SHA256 signature over the
    /// transcript so far.
    CertificateVerify(&'a KeyPair),
    /// An encrypted record whose plaintext is empty (not even the content
    /// type): only the AEAD tag. Not part of the transcript.
    EmptyRecord,
}

const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// Plays the server's side of one handshake over `io`. Everything is
/// written before the client answers, so the client may give up at any
/// point; the client's own Finished is not read.
pub async fn serve(io: &mut Duplex<'_>, steps: &[Step<'_>]) {
    let client_hello = read_record(io).await;
    let (session_id, client_share) = parse_client_hello(&client_hello);
    let mut transcript = Sha256::new();
    transcript.update(&client_hello);

    let secret = EphemeralSecret::random(&mut OsRng);
    let server_hello = handshake(2, &server_hello_body(&session_id, &secret));
    transcript.update(&server_hello);
    write_record(io, HANDSHAKE, &server_hello).await;

    let client_public = PublicKey::from_sec1_bytes(&client_share).unwrap();
    let shared = secret.diffie_hellman(&client_public);
    let mut keys = ServerHandshakeKeys::derive(shared.raw_secret_bytes(), &transcript);

    let encrypted_extensions = handshake(8, &[0, 0]);
    transcript.update(&encrypted_extensions);
    io.write_all(&keys.seal(&encrypted_extensions))
        .await
        .unwrap();
    for step in steps {
        if let Step::EmptyRecord = step {
            io.write_all(&keys.seal_raw(Vec::new())).await.unwrap();
            continue;
        }
        let message = match step {
            Step::Certificate(chain) => handshake(11, &certificate_body(chain)),
            Step::CertificateVerify(key) => {
                handshake(15, &certificate_verify_body(key, &transcript))
            }
            Step::EmptyRecord => unreachable!(),
        };
        transcript.update(&message);
        io.write_all(&keys.seal(&message)).await.unwrap();
    }
    let finished = handshake(20, &keys.finished(&transcript));
    io.write_all(&keys.seal(&finished)).await.unwrap();
}

async fn read_record(io: &mut Duplex<'_>) -> Vec<u8> {
    let mut header = [0; 5];
    io.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], HANDSHAKE, "expected a handshake record");
    let mut body = vec![0; usize::from(u16::from_be_bytes([header[3], header[4]]))];
    io.read_exact(&mut body).await.unwrap();
    body
}

async fn write_record(io: &mut Duplex<'_>, content_type: u8, body: &[u8]) {
    let mut record = vec![content_type, 3, 3];
    record.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    record.extend_from_slice(body);
    io.write_all(&record).await.unwrap();
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&u24(body.len()));
    message.extend_from_slice(body);
    message
}

fn u24(n: usize) -> [u8; 3] {
    let bytes = u32::try_from(n).unwrap().to_be_bytes();
    [bytes[1], bytes[2], bytes[3]]
}

/// The legacy session id to echo and the client's secp256r1 key share.
fn parse_client_hello(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(message[0], 1, "expected ClientHello");
    let mut at = 4 + 2 + 32;
    let take = |at: &mut usize, len: usize| {
        let field = &message[*at..*at + len];
        *at += len;
        field
    };
    let len = usize::from(take(&mut at, 1)[0]);
    let session_id = take(&mut at, len).to_vec();
    let len = usize::from(u16::from_be_bytes(take(&mut at, 2).try_into().unwrap()));
    take(&mut at, len); // cipher suites
    let len = usize::from(take(&mut at, 1)[0]);
    take(&mut at, len); // compression methods
    let end = at + 2 + usize::from(u16::from_be_bytes(take(&mut at, 2).try_into().unwrap()));
    while at < end {
        let kind = u16::from_be_bytes(take(&mut at, 2).try_into().unwrap());
        let len = usize::from(u16::from_be_bytes(take(&mut at, 2).try_into().unwrap()));
        let data = take(&mut at, len);
        if kind == 0x0033 {
            // client_shares<2>: group(2) key_exchange<2>; embedded-tls offers one.
            assert_eq!(&data[2..4], &[0x00, 0x17], "expected a secp256r1 share");
            let key_len = usize::from(u16::from_be_bytes([data[4], data[5]]));
            return (session_id, data[6..6 + key_len].to_vec());
        }
    }
    panic!("ClientHello without key_share");
}

fn server_hello_body(session_id: &[u8], secret: &EphemeralSecret) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(u8::try_from(session_id.len()).unwrap());
    body.extend_from_slice(session_id);
    body.extend_from_slice(&[0x13, 0x01, 0]); // TLS_AES_128_GCM_SHA256, no compression
    let point = secret.public_key().to_encoded_point(false);
    let point = point.as_bytes();
    let mut extensions = vec![0x00, 0x2b, 0, 2, 3, 4]; // supported_versions: TLS 1.3
    extensions.extend_from_slice(&[0x00, 0x33]); // key_share
    extensions.extend_from_slice(&u16::try_from(4 + point.len()).unwrap().to_be_bytes());
    extensions.extend_from_slice(&[0x00, 0x17]);
    extensions.extend_from_slice(&u16::try_from(point.len()).unwrap().to_be_bytes());
    extensions.extend_from_slice(point);
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);
    body
}

fn certificate_body(chain: &[&[u8]]) -> Vec<u8> {
    let mut entries = Vec::new();
    for der in chain {
        entries.extend_from_slice(&u24(der.len()));
        entries.extend_from_slice(der);
        entries.extend_from_slice(&[0, 0]); // no extensions
    }
    let mut body = vec![0]; // empty certificate_request_context
    body.extend_from_slice(&u24(entries.len()));
    body.extend_from_slice(&entries);
    body
}

fn certificate_verify_body(key: &KeyPair, transcript: &Sha256) -> Vec<u8> {
    let mut signed = vec![0x20; 64];
    signed.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
    signed.extend_from_slice(&transcript.clone().finalize());
    let signature = key.sign(&signed).unwrap();
    let mut body = vec![0x04, 0x03]; // ecdsa_secp256r1_sha256
    body.extend_from_slice(&u16::try_from(signature.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&signature);
    body
}

/// The server's handshake traffic keys (RFC 8446 7.1, 7.3), no PSK.
struct ServerHandshakeKeys {
    /// Records sealed so far: the nonce's counter.
    sequence: u64,
    key: [u8; 16],
    iv: [u8; 12],
    finished_key: [u8; 32],
}

impl ServerHandshakeKeys {
    fn derive(shared_secret: &[u8], hello_transcript: &Sha256) -> ServerHandshakeKeys {
        let (early_secret, _) = Hkdf::<Sha256>::extract(Some(&[0; 32]), &[0; 32]);
        let derived: [u8; 32] = expand_label(&early_secret, "derived", &Sha256::digest(b""));
        let (handshake_secret, _) = Hkdf::<Sha256>::extract(Some(&derived), shared_secret);
        let traffic: [u8; 32] = expand_label(
            &handshake_secret,
            "s hs traffic",
            &hello_transcript.clone().finalize(),
        );
        ServerHandshakeKeys {
            sequence: 0,
            key: expand_label(&traffic, "key", &[]),
            iv: expand_label(&traffic, "iv", &[]),
            finished_key: expand_label(&traffic, "finished", &[]),
        }
    }

    /// An encrypted record carrying one handshake message.
    fn seal(&mut self, message: &[u8]) -> Vec<u8> {
        let mut plaintext = message.to_vec();
        plaintext.push(HANDSHAKE);
        self.seal_raw(plaintext)
    }

    /// An encrypted record of exactly `plaintext` (TLSInnerPlaintext).
    fn seal_raw(&mut self, plaintext: Vec<u8>) -> Vec<u8> {
        let mut nonce = self.iv;
        for (byte, counter) in nonce[4..].iter_mut().zip(self.sequence.to_be_bytes()) {
            *byte ^= counter;
        }
        self.sequence += 1;
        let length = u16::try_from(plaintext.len() + 16).unwrap().to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, length[0], length[1]];
        let sealed = Aes128Gcm::new(&self.key.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &header,
                },
            )
            .unwrap();
        [&header[..], &sealed].concat()
    }

    fn finished(&self, transcript: &Sha256) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.finished_key).unwrap();
        mac.update(&transcript.clone().finalize());
        mac.finalize().into_bytes().to_vec()
    }
}

fn expand_label<const N: usize>(secret: &[u8], label: &str, context: &[u8]) -> [u8; N] {
    let mut info = u16::try_from(N).unwrap().to_be_bytes().to_vec();
    info.push(u8::try_from(6 + label.len()).unwrap());
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label.as_bytes());
    info.push(u8::try_from(context.len()).unwrap());
    info.extend_from_slice(context);
    let mut out = [0; N];
    Hkdf::<Sha256>::from_prk(secret)
        .unwrap()
        .expand(&info, &mut out)
        .unwrap();
    out
}
