//! What embedded-tls's `rustpki` chain walk leaves out: whether each
//! certificate that signed another was allowed to sign certificates at all
//! (RFC 5280: basicConstraints cA and pathLenConstraint, 4.2.1.9; keyUsage
//! keyCertSign, 4.2.1.3). rustpki checks every signature and date in the
//! chain but none of these, so a leaf certificate the CA issued to anyone
//! could sign a certificate for any host name. Parsed with `der`, which
//! rustpki already links; nothing is copied.

use der::asn1::{BitStringRef, ObjectIdentifier};
use der::{AnyRef, Decode, Reader, SliceReader, Tag, TagNumber, Tagged};

/// Why a certificate chain is refused before rustpki sees it. `position` is
/// the certificate's index in the chain the server sent (0 is the server's
/// own); the configured CA is one past the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChainError {
    /// The server's Certificate message holds no certificate.
    Empty,
    /// A certificate that is not DER X.509 (or not X.509 at all).
    Malformed { position: usize },
    /// It signed another certificate without basicConstraints `cA = TRUE`.
    NotCa { position: usize },
    /// It signed another certificate, and its keyUsage lacks keyCertSign.
    NoKeyCertSign { position: usize },
    /// More CAs sit between it and the server's certificate than its
    /// pathLenConstraint allows.
    PathTooLong { position: usize },
}

/// Checks every certificate that signs another in the order rustpki walks
/// the chain: `anchor` signs the last certificate the server sent, each one
/// signs the one before it, down to the server's own at index 0.
///
/// A pinned self-signed server certificate (the anchor is the one
/// certificate the server sends) vouches only for itself: it need not be a
/// CA.
pub fn check_signers(anchor: &[u8], chain: &[&[u8]]) -> Result<(), ChainError> {
    let Some(&leaf) = chain.first() else {
        return Err(ChainError::Empty);
    };
    let pinned = chain.len() == 1 && leaf == anchor;
    let signers = chain[1..]
        .iter()
        .copied()
        .chain((!pinned).then_some(anchor));
    // CAs between the signer and the leaf; self-issued ones (a root sent
    // again, a key rollover) do not count (RFC 5280 6.1.4 (l)).
    let mut cas_below: u32 = 0;
    for (index, der) in signers.enumerate() {
        let position = index + 1;
        let signer = Signer::parse(der).map_err(|_| ChainError::Malformed { position })?;
        if !signer.ca {
            return Err(ChainError::NotCa { position });
        }
        if signer.key_cert_sign == Some(false) {
            return Err(ChainError::NoKeyCertSign { position });
        }
        if signer.path_len.is_some_and(|most| cas_below > most) {
            return Err(ChainError::PathTooLong { position });
        }
        if !signer.self_issued {
            cas_below += 1;
        }
    }
    Ok(())
}

const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const KEY_CERT_SIGN_BIT: usize = 5;
const VERSION: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber(0),
};
const EXTENSIONS: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber(3),
};

/// What a certificate says about its right to sign certificates.
#[derive(Default)]
struct Signer {
    /// basicConstraints cA (absent: false).
    ca: bool,
    path_len: Option<u32>,
    /// keyUsage keyCertSign; `None` when there is no keyUsage (no limit).
    key_cert_sign: Option<bool>,
    /// Issuer and subject are the same name (compared as DER bytes).
    self_issued: bool,
}

impl Signer {
    fn parse(certificate: &[u8]) -> der::Result<Signer> {
        let mut reader = SliceReader::new(certificate)?;
        let signer = reader.sequence(|certificate| {
            let signer = certificate.sequence(Signer::parse_tbs)?;
            // signatureAlgorithm, signatureValue: rustpki checks those.
            certificate.tlv_bytes()?;
            certificate.tlv_bytes()?;
            Ok::<_, der::Error>(signer)
        })?;
        reader.finish()?;
        Ok(signer)
    }

    fn parse_tbs(tbs: &mut SliceReader<'_>) -> der::Result<Signer> {
        if Tag::peek(tbs)? == VERSION {
            tbs.tlv_bytes()?;
        }
        let _serial = tbs.tlv_bytes()?;
        let _signature = tbs.tlv_bytes()?;
        let issuer = tbs.tlv_bytes()?;
        let _validity = tbs.tlv_bytes()?;
        let subject = tbs.tlv_bytes()?;
        let _public_key = tbs.tlv_bytes()?;
        let mut signer = Signer {
            self_issued: issuer == subject,
            ..Signer::default()
        };
        // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
        while !tbs.is_finished() {
            let field = AnyRef::decode(tbs)?;
            if field.tag() == EXTENSIONS {
                SliceReader::new(field.value())?.sequence(|extensions| {
                    while !extensions.is_finished() {
                        extensions.sequence(|extension| signer.parse_extension(extension))?;
                    }
                    Ok::<_, der::Error>(())
                })?;
            }
        }
        Ok(signer)
    }

    fn parse_extension(&mut self, extension: &mut SliceReader<'_>) -> der::Result<()> {
        let id = ObjectIdentifier::decode(extension)?;
        if Tag::peek(extension)? == Tag::Boolean {
            let _critical = bool::decode(extension)?;
        }
        let value = AnyRef::decode(extension)?;
        value.tag().assert_eq(Tag::OctetString)?;
        let mut value = SliceReader::new(value.value())?;
        if id == BASIC_CONSTRAINTS {
            value.sequence(|constraints| {
                if !constraints.is_finished() && Tag::peek(constraints)? == Tag::Boolean {
                    self.ca = bool::decode(constraints)?;
                }
                if !constraints.is_finished() {
                    self.path_len = Some(u32::decode(constraints)?);
                }
                Ok::<_, der::Error>(())
            })?;
        } else if id == KEY_USAGE {
            let usage = BitStringRef::decode(&mut value)?;
            self.key_cert_sign = Some(usage.get(KEY_CERT_SIGN_BIT).unwrap_or(false));
        } else {
            return Ok(());
        }
        value.finish()
    }
}
