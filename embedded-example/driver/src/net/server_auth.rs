//! [`ServerVerifier`]: embedded-tls's `rustpki` verifier behind the guards
//! that embedded-tls 0.19 itself lacks, so that an open TLS connection means
//! the server proved it holds the key of a certificate the CA vouches for.
//!
//! embedded-tls calls a verifier only for the handshake messages that
//! arrive, in the order they arrive, and accepts the server's `Finished`
//! whether or not `Certificate` and `CertificateVerify` came first. A
//! man in the middle who omits both completes the handshake unverified.
//! `CertificateVerify` before `Certificate` (or twice) reaches an `unwrap!`
//! in rustpki and panics. And rustpki's chain walk checks signatures, not
//! whether the signer may sign certificates. So this verifier
//!
//! - accepts the messages only in the order Certificate, CertificateVerify,
//!   each once, and refuses anything else before delegating (no panic);
//! - checks basicConstraints, keyUsage and pathLenConstraint of every
//!   certificate that signs another ([`check_signers`]) before rustpki
//!   checks signatures, dates and the host name;
//! - records what was verified, and [`ServerVerifier::authenticated`] is
//!   asked after `TlsConnection::open` returns: a handshake that ended
//!   before both were verified is refused as `TlsCertificate`.

use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateEntryRef, CertificateRef, CertificateVerifyRef,
    TlsCipherSuite, TlsClock, TlsError, TlsVerifier,
};
use heapless::Vec;
use resilis_core::TransportError;

use super::signers::{ChainError, check_signers};
use crate::fmt::warning;

/// Largest server certificate chain the verifier holds (a P-256 leaf is
/// about 600 bytes).
const CERT_SIZE: usize = 2048;

/// Most certificates embedded-tls parses from one Certificate message.
const MAX_CHAIN: usize = 16;

type Hash = <Aes128GcmSha256 as TlsCipherSuite>::Hash;

/// How far the server got in proving who it is. Moves only forward:
/// `AwaitingCertificate` → `AwaitingSignature` → `Authenticated`, or to
/// `Refused` from anywhere, where it stays.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// No Certificate message yet.
    AwaitingCertificate,
    /// The chain and the host name are verified; the CertificateVerify
    /// signature over the handshake is not yet.
    AwaitingSignature,
    /// Both verified.
    Authenticated,
    Refused(Refusal),
}

/// Why the server was refused during the handshake.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Refusal {
    /// A second Certificate, or a CertificateVerify with no verified
    /// Certificate before it (or a second one). Not passed to rustpki,
    /// which would panic.
    OutOfOrder,
    /// A certificate signed another without being allowed to.
    Chain(ChainError),
    /// rustpki refused the chain (a signature, a date), the host name, or
    /// the CertificateVerify signature.
    Rustpki(TlsError),
}

/// A [`TlsVerifier`] for one handshake (make a new one per connection):
/// verifies the server against one CA certificate (DER) and a host name.
pub struct ServerVerifier<'a, Clk: TlsClock> {
    anchor: &'a [u8],
    rustpki: CertVerifier<'a, Aes128GcmSha256, Clk, CERT_SIZE>,
    stage: Stage,
}

impl<'a, Clk: TlsClock> ServerVerifier<'a, Clk> {
    pub fn new(ca_der: &'a [u8]) -> Self {
        ServerVerifier {
            anchor: ca_der,
            rustpki: CertVerifier::new(Certificate::X509(ca_der)),
            stage: Stage::AwaitingCertificate,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether the handshake that just completed authenticated the server.
    /// Ask it after `TlsConnection::open` returns `Ok`: embedded-tls
    /// completes a handshake in which the server sent neither Certificate
    /// nor CertificateVerify.
    pub fn authenticated(&self) -> Result<(), TransportError> {
        match self.stage {
            Stage::Authenticated => Ok(()),
            stage => {
                warning!(
                    "TLS: the handshake ended with the server not authenticated: {:?}",
                    stage
                );
                Err(TransportError::TlsCertificate)
            }
        }
    }

    /// Records the refusal; returns what embedded-tls should fail the
    /// handshake with: rustpki's own error, or for a guard of ours one that
    /// the connector classifies as `TransportError::TlsCertificate`.
    fn refuse(&mut self, refusal: Refusal) -> TlsError {
        warning!("TLS: server refused: {:?}", refusal);
        self.stage = Stage::Refused(refusal);
        match refusal {
            Refusal::Rustpki(error) => error,
            Refusal::OutOfOrder | Refusal::Chain(_) => TlsError::InvalidCertificate,
        }
    }

    fn check_chain(&self, certificate: &CertificateRef<'_>) -> Result<(), ChainError> {
        let mut chain: Vec<&[u8], MAX_CHAIN> = Vec::new();
        for (position, entry) in certificate.entries.iter().enumerate() {
            let CertificateEntryRef::X509(der) = entry else {
                return Err(ChainError::Malformed { position });
            };
            // Cannot fail: `entries` holds at most MAX_CHAIN.
            chain
                .push(der)
                .map_err(|_| ChainError::Malformed { position })?;
        }
        check_signers(self.anchor, &chain)
    }
}

impl<Clk: TlsClock> TlsVerifier<Aes128GcmSha256> for ServerVerifier<'_, Clk> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.rustpki.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &Hash,
        certificate: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        if !matches!(self.stage, Stage::AwaitingCertificate) {
            return Err(self.refuse(Refusal::OutOfOrder));
        }
        if let Err(error) = self.check_chain(&certificate) {
            return Err(self.refuse(Refusal::Chain(error)));
        }
        match self.rustpki.verify_certificate(transcript, certificate) {
            Ok(()) => {
                self.stage = Stage::AwaitingSignature;
                Ok(())
            }
            Err(error) => Err(self.refuse(Refusal::Rustpki(error))),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        // rustpki unwraps the certificate and transcript the one successful
        // verify_certificate stored, and takes the transcript: only then,
        // and only once, may it be called.
        if !matches!(self.stage, Stage::AwaitingSignature) {
            return Err(self.refuse(Refusal::OutOfOrder));
        }
        match self.rustpki.verify_signature(verify) {
            Ok(()) => {
                self.stage = Stage::Authenticated;
                Ok(())
            }
            Err(error) => Err(self.refuse(Refusal::Rustpki(error))),
        }
    }
}
