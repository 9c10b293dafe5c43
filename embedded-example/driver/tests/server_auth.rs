//! `ServerVerifier` called directly, as embedded-tls 0.19 calls a verifier,
//! with crafted message sequences: the order guards (what reaches rustpki
//! and what is refused before it), and the signer checks on chains where a
//! certificate that may not sign certificates signed one. `hostile_server.rs`
//! runs the same attacks through embedded-tls's real handshake.

#[path = "support/certs.rs"]
mod certs;

use certs::{Cert, HOST, Role, ca, forged_by_a_leaf, make};
use embedded_tls::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, NoClock, SignatureScheme, TlsError,
    TlsVerifier,
};
use resilis_core::TransportError;
use resilis_embassy::net::{ChainError, Refusal, ServerVerifier, Stage, check_signers};
use sha2::{Digest, Sha256};

/// The server's Certificate message: its own certificate first. (Built
/// outside embedded-tls it lacks the raw bytes rustpki keeps for
/// CertificateVerify: the signature itself is checked in hostile_server.rs.)
fn message<'a>(chain: &[&'a Cert]) -> CertificateRef<'a> {
    let mut message = CertificateRef::with_context(&[]);
    for cert in chain {
        message.add(CertificateEntryRef::X509(&cert.der)).unwrap();
    }
    message
}

fn verifier(ca: &Cert) -> ServerVerifier<'_, NoClock> {
    let mut verifier = ServerVerifier::new(&ca.der);
    verifier.set_hostname_verification(HOST).unwrap();
    verifier
}

/// Any transcript: rustpki keeps it for CertificateVerify, not checked here.
fn transcript() -> Sha256 {
    let mut transcript = Sha256::new();
    transcript.update(b"ClientHello ServerHello EncryptedExtensions Certificate");
    transcript
}

/// A CertificateVerify message (its signature is never reached here).
fn certificate_verify() -> CertificateVerifyRef<'static> {
    CertificateVerifyRef {
        signature_scheme: SignatureScheme::EcdsaSecp256r1Sha256,
        signature: &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
    }
}

/// Offers `chain` and returns where the verifier stands.
#[track_caller]
fn offer(ca: &Cert, chain: &[&Cert]) -> Stage {
    let mut verifier = verifier(ca);
    let result = verifier.verify_certificate(&transcript(), message(chain));
    assert_eq!(
        result.is_ok(),
        matches!(verifier.stage(), Stage::AwaitingSignature)
    );
    verifier.stage()
}

#[track_caller]
fn assert_refused_as(stage: Stage, expected: ChainError) {
    match stage {
        Stage::Refused(Refusal::Chain(error)) => assert_eq!(error, expected),
        other => panic!("expected a refusal for {expected:?}, got {other:?}"),
    }
}

// (1) The handshake ends without the server proving anything:
// `authenticated()`, asked after embedded-tls's `open` returned Ok.

#[test]
fn a_handshake_without_certificate_is_refused() {
    let ca = ca();
    let verifier = verifier(&ca);

    // embedded-tls accepted Finished with no verifier call at all.
    assert!(matches!(verifier.stage(), Stage::AwaitingCertificate));
    assert_eq!(
        verifier.authenticated(),
        Err(TransportError::TlsCertificate)
    );
}

#[test]
fn a_handshake_without_certificate_verify_is_refused() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let mut verifier = verifier(&ca);

    // A man in the middle replays the real server's (public) chain but
    // cannot sign the handshake, so it leaves CertificateVerify out.
    verifier
        .verify_certificate(&transcript(), message(&[&server]))
        .unwrap();

    assert!(matches!(verifier.stage(), Stage::AwaitingSignature));
    assert_eq!(
        verifier.authenticated(),
        Err(TransportError::TlsCertificate)
    );
}

// (2) Messages out of order: refused before rustpki, which would panic.

#[test]
fn certificate_verify_before_certificate_is_an_error_not_a_panic() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let mut verifier = verifier(&ca);

    let error = verifier.verify_signature(certificate_verify()).unwrap_err();

    // InvalidCertificate: the connector reports it as TlsCertificate.
    assert!(matches!(error, TlsError::InvalidCertificate));
    assert!(matches!(
        verifier.stage(),
        Stage::Refused(Refusal::OutOfOrder)
    ));
    // Sticky: a Certificate after it does not revive the handshake.
    assert!(
        verifier
            .verify_certificate(&transcript(), message(&[&server]))
            .is_err()
    );
    assert!(matches!(
        verifier.stage(),
        Stage::Refused(Refusal::OutOfOrder)
    ));
    assert_eq!(
        verifier.authenticated(),
        Err(TransportError::TlsCertificate)
    );
}

#[test]
fn a_second_certificate_is_refused() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let mut verifier = verifier(&ca);
    verifier
        .verify_certificate(&transcript(), message(&[&server]))
        .unwrap();

    assert!(
        verifier
            .verify_certificate(&transcript(), message(&[&server]))
            .is_err()
    );

    assert!(matches!(
        verifier.stage(),
        Stage::Refused(Refusal::OutOfOrder)
    ));
    // And a CertificateVerify after the refusal is not passed on either.
    assert!(verifier.verify_signature(certificate_verify()).is_err());
}

#[test]
fn a_refused_chain_is_not_followed_by_a_signature_check() {
    let ca = ca();
    let (accomplice, forged) = forged_by_a_leaf(&ca);
    let mut verifier = verifier(&ca);
    assert!(
        verifier
            .verify_certificate(&transcript(), message(&[&forged, &accomplice]))
            .is_err()
    );

    // rustpki stored nothing: delegating now would unwrap None.
    assert!(verifier.verify_signature(certificate_verify()).is_err());
    assert_eq!(
        verifier.authenticated(),
        Err(TransportError::TlsCertificate)
    );
}

// (3) A certificate signed by one that may not sign certificates.

#[test]
fn a_chain_whose_signer_is_a_leaf_is_refused() {
    let ca = ca();
    let (accomplice, forged) = forged_by_a_leaf(&ca);

    let stage = offer(&ca, &[&forged, &accomplice]);

    assert_refused_as(stage, ChainError::NotCa { position: 1 });
}

#[test]
fn a_signer_without_basic_constraints_is_refused() {
    let ca = ca();
    let accomplice = make("v1-style leaf", Role::NoBasicConstraints, Some(&ca));
    let forged = make("forged server", Role::Leaf, Some(&accomplice));

    let stage = offer(&ca, &[&forged, &accomplice]);

    assert_refused_as(stage, ChainError::NotCa { position: 1 });
}

#[test]
fn a_ca_without_key_cert_sign_is_refused() {
    let ca = ca();
    let intermediate = make("signing-only CA", Role::CaWithoutKeyCertSign, Some(&ca));
    let server = make("server", Role::Leaf, Some(&intermediate));

    let stage = offer(&ca, &[&server, &intermediate]);

    assert_refused_as(stage, ChainError::NoKeyCertSign { position: 1 });
}

#[test]
fn an_intermediate_beyond_its_path_length_is_refused() {
    let ca = ca();
    // pathLenConstraint 0: `issuing` may sign servers, not another CA.
    let issuing = make("issuing CA", Role::Ca { path_len: Some(0) }, Some(&ca));
    let sub = make("sub CA", Role::Ca { path_len: None }, Some(&issuing));
    let server = make("server", Role::Leaf, Some(&sub));

    let stage = offer(&ca, &[&server, &sub, &issuing]);

    assert_refused_as(stage, ChainError::PathTooLong { position: 2 });
}

#[test]
fn a_configured_ca_that_is_not_a_ca_is_refused() {
    // The configured CA signs the last certificate sent: it must be a CA
    // too, unless it is the server's own certificate, pinned.
    let not_a_ca = make("leaf configured as CA", Role::Leaf, None);
    let server = make("server", Role::Leaf, Some(&not_a_ca));

    let stage = offer(&not_a_ca, &[&server]);

    assert_refused_as(stage, ChainError::NotCa { position: 1 });
}

#[test]
fn an_empty_certificate_message_is_refused() {
    let ca = ca();

    assert_refused_as(offer(&ca, &[]), ChainError::Empty);
}

#[test]
fn a_certificate_that_is_not_der_is_refused_not_a_panic() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));
    let mut garbled = server.der.clone();
    garbled[1] ^= 0x40; // the outer SEQUENCE's length
    let truncations = [0, 1, 2, 10, server.der.len() / 2, server.der.len() - 1];
    let mut signers: Vec<&[u8]> = truncations.iter().map(|&cut| &server.der[..cut]).collect();
    signers.push(&garbled);
    signers.push(b"not a certificate");

    for signer in signers {
        assert_eq!(
            check_signers(&ca.der, &[&server.der, signer]),
            Err(ChainError::Malformed { position: 1 }),
            "signer {signer:02x?}"
        );
    }
}

// (4) What must keep working (rustpki then checks the signatures).

#[test]
fn a_proper_chain_passes_to_the_signature_check() {
    let ca = ca();
    let server = make("server", Role::Leaf, Some(&ca));

    assert!(matches!(offer(&ca, &[&server]), Stage::AwaitingSignature));
}

#[test]
fn an_intermediate_ca_within_its_path_length_passes() {
    let ca = ca();
    let intermediate = make("intermediate", Role::Ca { path_len: Some(0) }, Some(&ca));
    let server = make("server", Role::Leaf, Some(&intermediate));

    assert!(matches!(
        offer(&ca, &[&server, &intermediate]),
        Stage::AwaitingSignature
    ));
}

#[test]
fn a_server_that_also_sends_the_root_passes() {
    let ca = make("root CA", Role::Ca { path_len: Some(1) }, None);
    let intermediate = make("intermediate", Role::Ca { path_len: Some(0) }, Some(&ca));
    let server = make("server", Role::Leaf, Some(&intermediate));

    // The root, sent again, signs itself; being self-issued it does not
    // count against anyone's path length.
    assert_eq!(
        check_signers(&ca.der, &[&server.der, &intermediate.der, &ca.der]),
        Ok(())
    );
}

#[test]
fn a_pinned_self_signed_server_certificate_passes() {
    // Pinning the server's own certificate: it signs only itself, so it
    // need not be a CA.
    let server = make("server", Role::Leaf, None);

    assert!(matches!(
        offer(&server, &[&server]),
        Stage::AwaitingSignature
    ));
}

#[test]
fn the_firmware_placeholder_ca_is_a_valid_signer() {
    let ca = include_bytes!("../../firmware/certs/ca.der");
    let server = make("server", Role::Leaf, None);

    assert_eq!(check_signers(ca, &[&server.der]), Ok(()));
}
