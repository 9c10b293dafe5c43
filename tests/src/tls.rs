//! TLS material made fresh for each test run: a test CA, a server
//! certificate it signed, a client certificate for mTLS, and an unrelated
//! CA with its own server certificate for the wrong-CA cases.
//!
//! Why generated and not checked in: certificates expire, and a key in the
//! repository invites copying it somewhere real. Why a CA plus a leaf and
//! not one self-signed certificate: rustls rejects a CA used as the
//! end-entity certificate (`CaUsedAsEndEntity`). Why EC P-256: embedded-tls
//! verifies RSA signatures only with an allocator, and P-256 is what both
//! the Tokio adapter and the firmware accept. Keys are PKCS#8 PEM, which
//! Redis's OpenSSL loads as `tls-key-file`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tempfile::TempDir;

/// A certificate with its private key, as PEM text, as DER, and as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER (what rustls' `CertificateDer` wants).
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// Where the certificate PEM was written.
    pub cert_path: PathBuf,
    /// Where the key PEM was written.
    pub key_path: PathBuf,
}

/// A complete test PKI, written under a temporary directory that is removed
/// when this value is dropped. Servers started from it copy what they need
/// (see [`crate::server::RedisServerBuilder::tls`]), so they may outlive it.
#[derive(Debug)]
pub struct TestPki {
    /// The test CA (CA:TRUE). Trust `ca.cert_pem` / `ca.cert_path` in clients.
    pub ca: CertFiles,
    /// Server certificate signed by `ca`: CA:FALSE, serverAuth, SAN
    /// `localhost` and `127.0.0.1`.
    pub server: CertFiles,
    /// Client certificate signed by `ca`, clientAuth, for mTLS servers.
    pub client: CertFiles,
    /// An unrelated CA: trusting it instead of `ca` must fail verification.
    pub other_ca: CertFiles,
    /// A valid-looking server certificate signed by `other_ca`, for a server
    /// a client configured with `ca` must refuse.
    pub other_server: CertFiles,
    dir: TempDir,
}

impl TestPki {
    /// Generates everything. Cheap (EC keys): call it per test.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("resilis-pki-")
            .tempdir()
            .expect("cannot create a temp dir for TLS material");

        let (ca, ca_issuer) = make_ca(dir.path(), "ca", "resilis test CA");
        let server = make_leaf(dir.path(), "server", &ca_issuer, Role::Server);
        let client = make_leaf(dir.path(), "client", &ca_issuer, Role::Client);
        let (other_ca, other_issuer) = make_ca(dir.path(), "other-ca", "resilis other CA");
        let other_server = make_leaf(dir.path(), "other-server", &other_issuer, Role::Server);

        TestPki {
            ca,
            server,
            client,
            other_ca,
            other_server,
            dir,
        }
    }

    /// The directory holding every PEM file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[derive(Clone, Copy)]
enum Role {
    Server,
    Client,
}

fn key_pair() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key generation cannot fail")
}

fn write(dir: &Path, name: &str, cert_pem: String, cert_der: Vec<u8>, key: &KeyPair) -> CertFiles {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    let key_pem = key.serialize_pem();
    fs::write(&cert_path, &cert_pem).expect("cannot write certificate PEM");
    fs::write(&key_path, &key_pem).expect("cannot write key PEM");
    CertFiles {
        cert_pem,
        cert_der,
        key_pem,
        key_der: key.serialize_der(),
        cert_path,
        key_path,
    }
}

fn make_ca(
    dir: &Path,
    name: &str,
    common_name: &str,
) -> (CertFiles, CertifiedIssuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SAN to reject");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "resilis tests");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = key_pair();
    // The issuer keeps its own key; a copy goes to disk for completeness.
    let key_copy = KeyPair::from_pem(&key.serialize_pem()).expect("own PEM parses");
    let issuer = CertifiedIssuer::self_signed(params, key).expect("CA self-signing");
    let files = write(dir, name, issuer.pem(), issuer.der().to_vec(), &key_copy);
    (files, issuer)
}

fn make_leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    role: Role,
) -> CertFiles {
    let sans = match role {
        Role::Server => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        Role::Client => vec!["resilis-test-client".to_owned()],
    };
    let mut params = CertificateParams::new(sans).expect("valid SAN names");
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        match role {
            Role::Server => "localhost",
            Role::Client => "resilis-test-client",
        },
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let key = key_pair();
    let cert = params.signed_by(&key, issuer).expect("leaf signing");
    write(dir, name, cert.pem(), cert.der().to_vec(), &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pkcs8_pem_files_for_every_role() {
        let pki = TestPki::generate();
        for files in [
            &pki.ca,
            &pki.server,
            &pki.client,
            &pki.other_ca,
            &pki.other_server,
        ] {
            let cert = fs::read_to_string(&files.cert_path).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
            let key = fs::read_to_string(&files.key_path).unwrap();
            assert!(
                key.starts_with("-----BEGIN PRIVATE KEY-----"),
                "PKCS#8 expected"
            );
            assert!(!files.cert_der.is_empty() && !files.key_der.is_empty());
        }
        assert_ne!(pki.ca.cert_pem, pki.other_ca.cert_pem);
    }
}
