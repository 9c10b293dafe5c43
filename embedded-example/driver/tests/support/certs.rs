//! Certificates made at test time with rcgen: EC P-256 (what rustpki
//! verifies without an allocator), all naming the same host.
#![allow(dead_code)] // each test file uses part of it

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

pub const HOST: &str = "redis.test";

/// A certificate and the key it certifies.
pub struct Cert {
    pub der: Vec<u8>,
    pub key: KeyPair,
    params: CertificateParams,
}

pub enum Role {
    /// basicConstraints cA, keyUsage keyCertSign (at most `path_len` CAs below).
    Ca { path_len: Option<u8> },
    /// basicConstraints cA, but keyUsage digitalSignature only.
    CaWithoutKeyCertSign,
    /// basicConstraints CA:FALSE, keyUsage digitalSignature: a server's.
    Leaf,
    /// No basicConstraints extension at all (so not a CA, RFC 5280 4.2.1.9).
    NoBasicConstraints,
}

/// A certificate for `HOST` with subject CN `name`, signed by `signer`
/// (self-signed without one).
pub fn make(name: &str, role: Role, signer: Option<&Cert>) -> Cert {
    let mut params = CertificateParams::new(vec![HOST.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    match role {
        Role::Ca { path_len } => {
            params.is_ca = IsCa::Ca(match path_len {
                Some(n) => BasicConstraints::Constrained(n),
                None => BasicConstraints::Unconstrained,
            });
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        Role::CaWithoutKeyCertSign => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        Role::Leaf => {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        Role::NoBasicConstraints => params.is_ca = IsCa::NoCa,
    }
    let key = new_key();
    let certificate = match signer {
        Some(signer) => {
            let issuer = Issuer::from_params(&signer.params, &signer.key);
            params.signed_by(&key, &issuer).unwrap()
        }
        None => params.self_signed(&key).unwrap(),
    };
    Cert {
        der: certificate.der().to_vec(),
        key,
        params,
    }
}

pub fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

pub fn ca() -> Cert {
    make("test CA", Role::Ca { path_len: None }, None)
}

/// The attack: whoever holds a leaf the CA issued (`CA:FALSE`, for any
/// name) signs a certificate for the victim's host name with its key.
/// Returns (the accomplice leaf, the forged certificate).
pub fn forged_by_a_leaf(ca: &Cert) -> (Cert, Cert) {
    let accomplice = make("someone's leaf", Role::Leaf, Some(ca));
    let forged = make("forged server", Role::Leaf, Some(&accomplice));
    (accomplice, forged)
}
