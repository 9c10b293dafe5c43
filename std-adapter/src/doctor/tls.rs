//! The doctor's TLS: the client's trust (Mozilla roots plus
//! `REDIS_TLS_CA_FILE`, or `REDIS_TLS_INSECURE=true`) behind a verifier that
//! records what it was shown, so that a refusal can be explained: which
//! certificate, which issuer, which names, when it expires. A second, blind
//! configuration answers only "does this port speak TLS at all?".
//!
//! The settings are the client's own [`TlsOptions`], and [`trust_config`]
//! first builds the client's configuration with [`client_config`], so a bad
//! `REDIS_TLS_*` setting is reported with the client's exact words. The
//! probe then uses the same roots behind a recording verifier, which the
//! client's configuration cannot expose.

use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::tls::{TlsOptions, client_config};

/// What the recording verifier saw in one handshake.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub chain: Vec<CertificateDer<'static>>,
    /// The real verification's verdict, even when insecure mode overrode it.
    pub result: Result<(), rustls::Error>,
}

pub(crate) type Recorder = Arc<Mutex<Option<Seen>>>;

pub(crate) fn seen(recorder: &Recorder) -> Option<Seen> {
    lock(recorder).clone()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client's trust, recording into `recorder`. Errors are configuration
/// problems (unreadable CA file...), each naming its variable.
pub(crate) fn trust_config(
    settings: &TlsOptions,
    recorder: Recorder,
) -> Result<Arc<ClientConfig>, String> {
    client_config(settings).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        let certs = read_certs("REDIS_TLS_CA_FILE", path)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "REDIS_TLS_CA_FILE={} holds no usable CA certificate: point it at your provider's CA certificate (PEM)",
                path.display()
            ));
        }
    }
    build(
        settings,
        Recording {
            roots: Arc::new(roots),
            insecure: settings.insecure,
            recorder,
        },
    )
}

/// Accepts any certificate: only for "does this port speak TLS?". Never
/// used to send credentials.
pub(crate) fn blind_config(recorder: Recorder) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    build(
        &TlsOptions::default(),
        Recording {
            roots: Arc::new(roots),
            insecure: true,
            recorder,
        },
    )
}

fn build(settings: &TlsOptions, recording: Recording) -> Result<Arc<ClientConfig>, String> {
    let verifier = recording.verifier()?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls has no TLS 1.2/1.3 ({e}): report a bug"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
            inner: verifier,
            insecure: recording.insecure,
            recorder: recording.recorder,
        }));
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("REDIS_TLS_CERT_FILE", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "REDIS_TLS_KEY_FILE={} holds no usable private key ({e}): point it at the client certificate's key (PEM)",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "REDIS_TLS_KEY_FILE={} does not match REDIS_TLS_CERT_FILE ({e})",
                    key.display()
                )
            })?
        }
        (Some(_), None) => {
            return Err(
                "REDIS_TLS_CERT_FILE is set but REDIS_TLS_KEY_FILE is not: set both or neither"
                    .into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                "REDIS_TLS_KEY_FILE is set but REDIS_TLS_CERT_FILE is not: set both or neither"
                    .into(),
            );
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(
    variable: &str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| {
        format!(
            "{variable}={} cannot be read ({e}): point it at a readable PEM file",
            path.display()
        )
    })?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "{variable}={} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )),
        Err(e) => Err(format!(
            "{variable}={} is not valid PEM ({e})",
            path.display()
        )),
    }
}

struct Recording {
    roots: Arc<RootCertStore>,
    insecure: bool,
    recorder: Recorder,
}

impl Recording {
    fn verifier(&self) -> Result<Arc<WebPkiServerVerifier>, String> {
        WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))
    }
}

/// Runs the real verification, keeps the chain and the verdict, and in
/// insecure mode accepts anyway (the handshake signatures are still checked).
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    insecure: bool,
    recorder: Recorder,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *lock(&self.recorder) = Some(Seen {
            chain,
            result: result.as_ref().map(|_| ()).map_err(Clone::clone),
        });
        if self.insecure {
            Ok(ServerCertVerified::assertion())
        } else {
            result
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The fields of a certificate a person needs to see.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    /// Negative when expired.
    pub days_left: i64,
    pub names: Vec<String>,
    pub self_signed: bool,
}

pub(crate) fn summarize(der: &CertificateDer<'_>) -> Option<CertSummary> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_after = cert.validity().not_after;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => names.push((*n).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let shown = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        16 => <[u8; 16]>::try_from(*ip)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        _ => None,
                    };
                    names.extend(shown);
                }
                _ => {}
            }
        }
    }
    Some(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: not_after.to_string(),
        days_left: (not_after.timestamp() - now).div_euclid(86_400),
        names,
        self_signed: cert.subject() == cert.issuer(),
    })
}

/// Why rustls refused the certificate, in words, and whether it is an
/// issuer problem (the fix is a CA file) or something else.
pub(crate) fn explain_certificate(error: &rustls::Error, expected: &str) -> String {
    let rustls::Error::InvalidCertificate(cert) = error else {
        return error.to_string();
    };
    match cert {
        CertificateError::UnknownIssuer => {
            "its issuer is neither in the Mozilla roots nor in REDIS_TLS_CA_FILE".to_owned()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the certificate is not valid yet (check this machine's clock)".to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("the certificate is not issued for \"{expected}\"")
        }
        CertificateError::Revoked => "the certificate has been revoked".to_owned(),
        other => format!("the certificate was refused: {other:?}"),
    }
}

/// Did this handshake error come from the peer not speaking TLS?
pub(crate) fn is_not_tls(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
    )
}

/// The rustls error inside a tokio-rustls I/O error, if any.
pub(crate) fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}
