//! The driver's TLS handshake (`start_tls`, which `TlsConnector` runs after
//! TCP) through embedded-tls's real state machine, against a scripted TLS
//! 1.3 server that behaves as a man in the middle can: it completes the key
//! exchange and a correct Finished, and chooses which authentication
//! messages to send, in which order, with which certificates.
//!
//! Each attack is run twice: against embedded-tls with its bare `rustpki`
//! verifier (the upstream defect, pinned in `upstream_*`: if one of those
//! starts failing, embedded-tls changed and the README's note needs
//! revisiting) and against the driver, which must refuse it as
//! `TlsCertificate`, a permanent failure, without panicking.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/tls13_server.rs"]
mod tls13_server;

use std::panic::{AssertUnwindSafe, catch_unwind};

use certs::{Cert, HOST, Role, ca, forged_by_a_leaf, make, new_key};
use embassy_futures::block_on;
use embassy_futures::join::join;
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CryptoProvider, CryptoRngCore, NoClock, TlsConfig, TlsConnection,
    TlsContext, TlsError, TlsVerifier,
};
use rand_core::OsRng;
use resilis_core::TransportError;
use resilis_embassy::net::{Verify, start_tls};
use tls13_server::{Duplex, Step, Wire, serve};

/// Runs `client` against the scripted server, both in this thread.
fn against<T>(steps: &[Step<'_>], client: impl AsyncFnOnce(Duplex<'_>) -> T) -> T {
    let to_client = Wire::new();
    let to_server = Wire::new();
    let mut server = Duplex {
        rx: &to_server,
        tx: &to_client,
    };
    let client_end = Duplex {
        rx: &to_client,
        tx: &to_server,
    };
    let (result, ()) = block_on(join(client(client_end), serve(&mut server, steps)));
    result
}

/// The driver's handshake, verifying against `ca`.
fn driver(ca: &Cert, steps: &[Step<'_>]) -> Result<(), TransportError> {
    let mut read_record = vec![0; 16640];
    let mut write_record = vec![0; 4096];
    against(steps, async |socket| {
        let verify = Verify::Ca(&ca.der);
        start_tls::<_, _, NoClock>(
            socket,
            &mut read_record,
            &mut write_record,
            verify,
            HOST,
            &mut OsRng,
        )
        .await
        .map(drop)
    })
}

/// embedded-tls with the `rustpki` verifier the driver used before.
struct BareRustpki<'a> {
    verifier: CertVerifier<'a, Aes128GcmSha256, NoClock, 4096>,
}

impl CryptoProvider for BareRustpki<'_> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        OsRng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// `Ok(result)` of embedded-tls's handshake with bare rustpki, or `Err(())`
/// when it panicked.
fn upstream(ca: &Cert, steps: &[Step<'_>]) -> Result<Result<(), TlsError>, ()> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut read_record = vec![0; 16640];
        let mut write_record = vec![0; 4096];
        against(steps, async |socket| {
            let config = TlsConfig::new().with_server_name(HOST);
            let provider = BareRustpki {
                verifier: CertVerifier::new(Certificate::X509(&ca.der)),
            };
            let mut tls = TlsConnection::new(socket, &mut read_record, &mut write_record);
            tls.open(TlsContext::new(&config, provider)).await
        })
    }))
    .map_err(drop)
}

fn chain<'a>(certs: &[&'a Cert]) -> Vec<&'a [u8]> {
    certs.iter().map(|cert| cert.der.as_slice()).collect()
}

// What must keep working.

#[test]
fn an_honest_server_is_authenticated() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);
    let honest = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
    ];

    assert_eq!(driver(&ca, &honest), Ok(()));
}

#[test]
fn an_honest_server_with_an_intermediate_ca_is_authenticated() {
    let ca = ca();
    let intermediate = make("intermediate", Role::Ca { path_len: Some(0) }, Some(&ca));
    let server = make("server", Role::Leaf, Some(&intermediate));
    let chain = chain(&[&server, &intermediate]);
    let honest = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
    ];

    assert_eq!(driver(&ca, &honest), Ok(()));
}

#[test]
fn a_pinned_self_signed_server_is_authenticated() {
    let server = make("server", Role::Leaf, None);
    let chain = chain(&[&server]);
    let honest = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
    ];

    assert_eq!(driver(&server, &honest), Ok(()));
}

// What rustpki already refused, and still does.

#[test]
fn a_server_certified_by_another_ca_is_refused() {
    let ca = ca();
    let other_ca = make("some other CA", Role::Ca { path_len: None }, None);
    let server = make("server", Role::Leaf, Some(&other_ca));
    let chain = chain(&[&server]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
    ];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let impostor = new_key();
    let chain = chain(&[&server]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&impostor),
    ];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

// (1) The handshake completes without the server proving who it is.

#[test]
fn a_server_that_sends_neither_certificate_nor_certificate_verify_is_refused() {
    let ca = ca();

    assert_eq!(driver(&ca, &[]), Err(TransportError::TlsCertificate));
}

#[test]
fn a_server_that_omits_certificate_verify_is_refused() {
    // The real server's chain is public; its key is not.
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);

    let steps = [Step::Certificate(&chain)];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

// (2) Authentication messages out of order: an error, not a panic.

#[test]
fn certificate_verify_before_certificate_is_refused_not_a_panic() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);
    let steps = [
        Step::CertificateVerify(&server.key),
        Step::Certificate(&chain),
    ];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

#[test]
fn a_second_certificate_verify_is_refused_not_a_panic() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
        Step::CertificateVerify(&server.key),
    ];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

// (3) A leaf the CA issued to someone signs a certificate for our host.

#[test]
fn a_certificate_forged_by_a_leaf_is_refused() {
    let ca = ca();
    let (accomplice, forged) = forged_by_a_leaf(&ca);
    let chain = chain(&[&forged, &accomplice]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&forged.key),
    ];

    assert_eq!(driver(&ca, &steps), Err(TransportError::TlsCertificate));
}

// An encrypted record with no plaintext at all: embedded-tls unwraps its
// (missing) last byte. Any man in the middle can send it, before the server
// is authenticated: RecordGuard refuses it as it arrives.

#[test]
fn an_empty_encrypted_record_is_refused_not_a_panic() {
    let ca = ca();

    assert_eq!(
        driver(&ca, &[Step::EmptyRecord]),
        Err(TransportError::TlsOther)
    );
}

// The upstream defects, embedded-tls 0.19.0 with its bare rustpki verifier.

#[test]
fn upstream_accepts_a_server_that_sends_neither_certificate_nor_certificate_verify() {
    let ca = ca();

    assert!(matches!(upstream(&ca, &[]), Ok(Ok(()))));
}

#[test]
fn upstream_accepts_a_server_that_omits_certificate_verify() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);

    assert!(matches!(
        upstream(&ca, &[Step::Certificate(&chain)]),
        Ok(Ok(()))
    ));
}

#[test]
fn upstream_panics_on_certificate_verify_before_certificate() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);
    let steps = [
        Step::CertificateVerify(&server.key),
        Step::Certificate(&chain),
    ];

    assert!(
        upstream(&ca, &steps).is_err(),
        "expected the unwrap! in pki.rs to panic"
    );
}

#[test]
fn upstream_panics_on_a_second_certificate_verify() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let chain = chain(&[&server]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&server.key),
        Step::CertificateVerify(&server.key),
    ];

    assert!(
        upstream(&ca, &steps).is_err(),
        "expected the unwrap! in pki.rs to panic"
    );
}

#[test]
fn upstream_accepts_a_certificate_forged_by_a_leaf() {
    let ca = ca();
    let (accomplice, forged) = forged_by_a_leaf(&ca);
    let chain = chain(&[&forged, &accomplice]);
    let steps = [
        Step::Certificate(&chain),
        Step::CertificateVerify(&forged.key),
    ];

    assert!(matches!(upstream(&ca, &steps), Ok(Ok(()))));
}

#[test]
fn upstream_panics_on_an_empty_encrypted_record() {
    let ca = ca();

    assert!(
        upstream(&ca, &[Step::EmptyRecord]).is_err(),
        "expected the unwrap() in connection.rs to panic"
    );
}
