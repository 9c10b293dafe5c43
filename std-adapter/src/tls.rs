//! TLS settings and the rustls client configuration built from them.
//!
//! Verification is on by default, against the Mozilla roots (webpki-roots)
//! plus, when `REDIS_TLS_CA_FILE` is set, the provider's CA. Turning it off
//! takes an explicit `REDIS_TLS_INSECURE=true`, which the driver answers with
//! a WARN on every connect: the seed's `rejectUnauthorized: false`, made
//! honest. A bad file is a [`TlsConfigError`] naming the variable and the fix,
//! found when the client is built, not at the first connect. So is a
//! `REDIS_TLS_*` setting on a connection without TLS, which would otherwise
//! be silently ignored ([`TlsOptions::check_tls_on`]).
//!
//! [`client_config`] is public so that the `resilis doctor` CLI checks TLS
//! exactly as the client does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The environment variables [`TlsOptions::from_env`] reads.
pub const TLS_ENV_VARS: &[&str] = &[
    "REDIS_TLS_CA_FILE",
    "REDIS_TLS_CERT_FILE",
    "REDIS_TLS_KEY_FILE",
    "REDIS_TLS_SERVER_NAME",
    "REDIS_TLS_INSECURE",
];

/// How to do TLS, when the connection config asks for it (`rediss://` or
/// `REDIS_TLS=true`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) to trust in addition to the
    /// Mozilla roots (`REDIS_TLS_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mutual TLS, PEM (`REDIS_TLS_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM: PKCS#8, PKCS#1 or SEC1 (`REDIS_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// Name to send as SNI and verify the certificate against, when it is not
    /// the host to connect to (`REDIS_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// Skip certificate verification (`REDIS_TLS_INSECURE=true`). The
    /// connection is still encrypted, but anyone in the path can read it.
    pub insecure: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: the key itself is never read into this struct.
        f.debug_struct("TlsOptions")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsOptions {
    /// Reads the `REDIS_TLS_*` variables of the process environment.
    pub fn from_env() -> Result<TlsOptions, TlsConfigError> {
        TlsOptions::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the `REDIS_TLS_*` variables through `lookup` (for tests and for
    /// configuration that does not come from the process environment).
    pub fn from_lookup(
        mut lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<TlsOptions, TlsConfigError> {
        let mut get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let insecure = match get("REDIS_TLS_INSECURE").as_deref() {
            None => false,
            Some(v)
                if ["true", "1", "yes", "on"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t)) =>
            {
                true
            }
            Some(v)
                if ["false", "0", "no", "off"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t)) =>
            {
                false
            }
            Some(v) => {
                return Err(TlsConfigError::new(
                    "REDIS_TLS_INSECURE",
                    v,
                    "is not a boolean",
                    "set REDIS_TLS_INSECURE to true or false",
                ));
            }
        };
        let options = TlsOptions {
            ca_file: get("REDIS_TLS_CA_FILE").map(PathBuf::from),
            cert_file: get("REDIS_TLS_CERT_FILE").map(PathBuf::from),
            key_file: get("REDIS_TLS_KEY_FILE").map(PathBuf::from),
            server_name: get("REDIS_TLS_SERVER_NAME"),
            insecure,
        };
        if let Some(name) = &options.server_name {
            ServerName::try_from(name.as_str()).map_err(|_| {
                TlsConfigError::new(
                    "REDIS_TLS_SERVER_NAME",
                    name,
                    "is not a valid DNS name or IP address",
                    "set REDIS_TLS_SERVER_NAME to the host name on the server's certificate",
                )
            })?;
        }
        Ok(options)
    }

    /// The name to verify the certificate against: the override, else the
    /// host, which came from `host_source` (named by the error).
    pub fn server_name_for(
        &self,
        host: &str,
        host_source: HostSource,
    ) -> Result<ServerName<'static>, TlsConfigError> {
        if let Some(name) = &self.server_name {
            return ServerName::try_from(name.clone()).map_err(|_| {
                TlsConfigError::new(
                    "REDIS_TLS_SERVER_NAME",
                    name,
                    "is not a valid DNS name or IP address for TLS",
                    "set REDIS_TLS_SERVER_NAME to the host name on the server's certificate",
                )
            });
        }
        ServerName::try_from(host.to_owned()).map_err(|_| {
            TlsConfigError::new(
                host_source.setting(),
                host,
                "is not a valid DNS name or IP address for TLS",
                host_source.fix(),
            )
        })
    }

    /// Refuses TLS settings on a connection without TLS (`redis://` and
    /// `REDIS_TLS` not true), which would ignore them: a CA file or a client
    /// certificate set for nothing means the URL is not the one intended.
    /// `REDIS_TLS_INSECURE=false` is the default, and is no setting.
    pub fn check_tls_on(&self, tls: bool) -> Result<(), TlsConfigError> {
        if tls {
            return Ok(());
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let set = [
            ("REDIS_TLS_CA_FILE", path(&self.ca_file)),
            ("REDIS_TLS_CERT_FILE", path(&self.cert_file)),
            ("REDIS_TLS_KEY_FILE", path(&self.key_file)),
            ("REDIS_TLS_SERVER_NAME", self.server_name.clone()),
            (
                "REDIS_TLS_INSECURE",
                self.insecure.then(|| "true".to_owned()),
            ),
        ];
        let Some((variable, Some(value))) = set.into_iter().find(|(_, v)| v.is_some()) else {
            return Ok(());
        };
        let fix = match variable {
            "REDIS_TLS_CA_FILE" => {
                "use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_CA_FILE"
            }
            "REDIS_TLS_CERT_FILE" => {
                "use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_CERT_FILE"
            }
            "REDIS_TLS_KEY_FILE" => {
                "use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_KEY_FILE"
            }
            "REDIS_TLS_SERVER_NAME" => {
                "use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_SERVER_NAME"
            }
            _ => "use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_INSECURE",
        };
        Err(TlsConfigError::new(
            variable,
            value,
            "is set, but TLS is off (redis://, REDIS_TLS not true) and would ignore it",
            fix,
        ))
    }
}

/// Where the host to connect to came from, so that an error about it (a
/// host that cannot be a TLS server name) names the setting to fix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostSource {
    /// The host of `REDIS_URL`.
    RedisUrl,
    /// The host of a URL given in code (`Options::from_url`,
    /// `Client::connect`) or on the command line.
    Url,
    /// `REDIS_HOST`.
    RedisHost,
    /// `Config::host`, set in code (or its default).
    #[default]
    Config,
}

impl HostSource {
    /// Where [`resilis_core::Config::from_env`] takes the host from, with
    /// the same lookup.
    pub fn of_env(mut lookup: impl FnMut(&str) -> Option<String>) -> HostSource {
        let mut set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
        if set("REDIS_URL") {
            HostSource::RedisUrl
        } else if set("REDIS_HOST") {
            HostSource::RedisHost
        } else {
            HostSource::Config
        }
    }

    /// The setting an error names, e.g. `REDIS_URL host`.
    pub fn setting(self) -> &'static str {
        match self {
            HostSource::RedisUrl => "REDIS_URL host",
            HostSource::Url => "URL host",
            HostSource::RedisHost => "REDIS_HOST",
            HostSource::Config => "Config::host",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            HostSource::RedisUrl => {
                "fix the host in REDIS_URL, or set REDIS_TLS_SERVER_NAME to the host name on the server's certificate"
            }
            HostSource::Url => {
                "fix the host in the URL, or set REDIS_TLS_SERVER_NAME (TlsOptions::server_name) to the host name on the server's certificate"
            }
            HostSource::RedisHost => {
                "fix REDIS_HOST, or set REDIS_TLS_SERVER_NAME to the host name on the server's certificate"
            }
            HostSource::Config => {
                "fix Config::host, or set TlsOptions::server_name to the host name on the server's certificate"
            }
        }
    }
}

/// A TLS setting that cannot work: which variable, what is wrong, the fix.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// e.g. `REDIS_TLS_CA_FILE`.
    pub variable: &'static str,
    /// The value given (a path or a name; never key material).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do.
    pub fix: &'static str,
}

impl TlsConfigError {
    fn new(
        variable: &'static str,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: &'static str,
    ) -> Self {
        TlsConfigError {
            variable,
            value: value.into(),
            problem: problem.into(),
            fix,
        }
    }
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} {}: {}",
            self.variable, self.value, self.problem, self.fix
        )
    }
}

impl fmt::Debug for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsConfigError({self})")
    }
}

impl std::error::Error for TlsConfigError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for `options`: roots, client identity,
/// verification. Call once per client; the result is shared by every connect.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            TlsConfigError::new(
                "TLS",
                "",
                e.to_string(),
                "this build of rustls lacks TLS 1.2/1.3: report a bug",
            )
        })?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &options.ca_file {
            let certs = read_certs("REDIS_TLS_CA_FILE", path)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsConfigError::new(
                    "REDIS_TLS_CA_FILE",
                    path.display().to_string(),
                    "holds no usable CA certificate",
                    "point REDIS_TLS_CA_FILE at your provider's CA certificate (PEM, -----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("REDIS_TLS_CERT_FILE", cert)?;
            let key_der = read_key(key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                TlsConfigError::new(
                    "REDIS_TLS_KEY_FILE",
                    key.display().to_string(),
                    format!("does not match REDIS_TLS_CERT_FILE or is unsupported ({e})"),
                    "use the private key that belongs to the client certificate (PEM)",
                )
            })?
        }
        (Some(cert), None) => {
            return Err(TlsConfigError::new(
                "REDIS_TLS_KEY_FILE",
                "",
                format!("is not set but REDIS_TLS_CERT_FILE is ({})", cert.display()),
                "set REDIS_TLS_KEY_FILE to the client certificate's private key (PEM), or unset REDIS_TLS_CERT_FILE",
            ));
        }
        (None, Some(key)) => {
            return Err(TlsConfigError::new(
                "REDIS_TLS_CERT_FILE",
                "",
                format!("is not set but REDIS_TLS_KEY_FILE is ({})", key.display()),
                "set REDIS_TLS_CERT_FILE to the client certificate (PEM), or unset REDIS_TLS_KEY_FILE",
            ));
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(
    variable: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let fix = match variable {
        "REDIS_TLS_CA_FILE" => {
            "point REDIS_TLS_CA_FILE at a readable PEM file with your provider's CA certificate"
        }
        _ => "point REDIS_TLS_CERT_FILE at a readable PEM file with the client certificate",
    };
    let shown = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| TlsConfigError::new(variable, &shown, format!("cannot be read ({e})"), fix))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(TlsConfigError::new(
            variable,
            shown,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            fix,
        )),
        Err(e) => Err(TlsConfigError::new(
            variable,
            shown,
            format!("is not valid PEM ({e})"),
            fix,
        )),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let fix = "point REDIS_TLS_KEY_FILE at a readable PEM private key (PKCS#8, PKCS#1 or SEC1)";
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| {
        TlsConfigError::new(
            "REDIS_TLS_KEY_FILE",
            &shown,
            format!("cannot be read ({e})"),
            fix,
        )
    })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        TlsConfigError::new(
            "REDIS_TLS_KEY_FILE",
            shown,
            format!("holds no usable private key ({e})"),
            fix,
        )
    })
}

/// `REDIS_TLS_INSECURE=true`: accepts any certificate, but still checks that
/// the server owns the key it presents (handshake signatures), so the session
/// is at least encrypted to whoever answered.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Maps a failed TLS handshake to what the core needs to diagnose it.
pub(crate) fn classify_tls_error(error: &std::io::Error) -> resilis_core::TransportError {
    use resilis_core::TransportError;
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                TransportError::TlsCertificate
            }
            // Plaintext where a TLS record should be: e.g. Redis answering
            // "-ERR ..." to our ClientHello.
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                TransportError::TlsNotSpoken
            }
            _ => TransportError::TlsOther,
        };
    }
    crate::driver::transport::classify_io_error(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_map_to_what_the_core_diagnoses() {
        use resilis_core::TransportError;
        let wrap = |e: rustls::Error| {
            classify_tls_error(&std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        assert_eq!(
            wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            )),
            TransportError::TlsCertificate
        );
        assert_eq!(
            wrap(rustls::Error::NoCertificatesPresented),
            TransportError::TlsCertificate
        );
        assert_eq!(
            wrap(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            )),
            TransportError::TlsNotSpoken
        );
        assert_eq!(
            wrap(rustls::Error::HandshakeNotComplete),
            TransportError::TlsOther
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify_tls_error(&reset), TransportError::Reset);
    }

    fn lookup(vars: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_verify_against_web_roots() {
        let options = TlsOptions::from_lookup(lookup(&[])).unwrap();
        assert!(!options.insecure);
        assert!(client_config(&options).is_ok());
    }

    #[test]
    fn missing_ca_file_names_the_variable_and_the_fix() {
        let options =
            TlsOptions::from_lookup(lookup(&[("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem")]))
                .unwrap();
        let err = client_config(&options).unwrap_err();
        assert_eq!(err.variable, "REDIS_TLS_CA_FILE");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(text.contains("cannot be read"), "{text}");
        assert!(text.contains("provider's CA"), "{text}");
    }

    #[test]
    fn a_file_without_certificates_is_rejected() {
        let dir = std::env::temp_dir().join(format!("resilis-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let options = TlsOptions {
            ca_file: Some(path.clone()),
            ..TlsOptions::default()
        };
        let err = client_config(&options).unwrap_err();
        assert!(err.problem.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn half_an_identity_is_a_config_error() {
        let options = TlsOptions {
            cert_file: Some("/tmp/client.crt".into()),
            ..TlsOptions::default()
        };
        let err = client_config(&options).unwrap_err();
        assert_eq!(err.variable, "REDIS_TLS_KEY_FILE");
    }

    #[test]
    fn unreadable_or_mismatched_client_key_names_the_key_variable() {
        let dir = std::env::temp_dir().join(format!("resilis-tls-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("client.crt");
        // A malformed certificate: one of the two files is reported, by name.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let options = TlsOptions {
            cert_file: Some(cert.clone()),
            key_file: Some(dir.join("missing.key")),
            ..TlsOptions::default()
        };
        let err = client_config(&options).unwrap_err();
        // Either the (bogus) certificate or the missing key is reported, by name.
        assert!(
            ["REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"].contains(&err.variable),
            "{err}"
        );
        let key = dir.join("bad.key");
        std::fs::write(&key, "no key here\n").unwrap();
        let err = read_key(&key).unwrap_err();
        assert_eq!(err.variable, "REDIS_TLS_KEY_FILE");
        assert!(err.to_string().contains("bad.key"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn insecure_must_be_a_boolean() {
        let err = TlsOptions::from_lookup(lookup(&[("REDIS_TLS_INSECURE", "maybe")])).unwrap_err();
        assert_eq!(err.variable, "REDIS_TLS_INSECURE");
        let ok = TlsOptions::from_lookup(lookup(&[("REDIS_TLS_INSECURE", "TRUE")])).unwrap();
        assert!(ok.insecure);
        assert!(client_config(&ok).is_ok());
    }

    #[test]
    fn server_name_override_is_validated() {
        let err =
            TlsOptions::from_lookup(lookup(&[("REDIS_TLS_SERVER_NAME", "bad name!")])).unwrap_err();
        assert_eq!(err.variable, "REDIS_TLS_SERVER_NAME");
        let ok =
            TlsOptions::from_lookup(lookup(&[("REDIS_TLS_SERVER_NAME", "localhost")])).unwrap();
        assert!(ok.server_name_for("127.0.0.1", HostSource::Url).is_ok());
        assert!(ok.server_name_for("bad host!", HostSource::Url).is_ok());
    }

    #[test]
    fn a_bad_host_name_says_where_the_host_came_from() {
        let none = TlsOptions::default();
        for (source, setting, fix) in [
            (
                HostSource::RedisUrl,
                "REDIS_URL host",
                "fix the host in REDIS_URL",
            ),
            (HostSource::Url, "URL host", "fix the host in the URL"),
            (HostSource::RedisHost, "REDIS_HOST", "fix REDIS_HOST"),
            (HostSource::Config, "Config::host", "fix Config::host"),
        ] {
            let err = none.server_name_for("bad host!", source).unwrap_err();
            assert_eq!(err.variable, setting);
            assert!(err.fix.starts_with(fix), "{err}");
            assert!(err.fix.contains("REDIS_TLS_SERVER_NAME") || err.fix.contains("server_name"));
        }
        let err = none
            .server_name_for("bad host!", HostSource::RedisUrl)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "REDIS_URL host=\"bad host!\" is not a valid DNS name or IP address for TLS: fix the host in REDIS_URL, or set REDIS_TLS_SERVER_NAME to the host name on the server's certificate"
        );
        let env = lookup(&[("REDIS_URL", "rediss://h"), ("REDIS_HOST", "x")]);
        assert_eq!(HostSource::of_env(env), HostSource::RedisUrl);
        let env = lookup(&[("REDIS_URL", " "), ("REDIS_HOST", "x")]);
        assert_eq!(HostSource::of_env(env), HostSource::RedisHost);
        assert_eq!(HostSource::of_env(lookup(&[])), HostSource::Config);
    }

    #[test]
    fn tls_settings_without_tls_are_refused() {
        for (variable, value) in [
            ("REDIS_TLS_CA_FILE", "/etc/ca.pem"),
            ("REDIS_TLS_CERT_FILE", "/etc/client.crt"),
            ("REDIS_TLS_KEY_FILE", "/etc/client.key"),
            ("REDIS_TLS_SERVER_NAME", "cache.example.com"),
            ("REDIS_TLS_INSECURE", "true"),
        ] {
            let options = TlsOptions::from_lookup(lookup(&[(variable, value)])).unwrap();
            assert!(options.check_tls_on(true).is_ok());
            let err = options.check_tls_on(false).unwrap_err();
            assert_eq!((err.variable, err.value.as_str()), (variable, value));
            assert!(err.fix.contains("rediss://") && err.fix.contains("REDIS_TLS=true"));
            assert!(err.fix.ends_with(variable), "{err}");
        }
        let err = TlsOptions::from_lookup(lookup(&[("REDIS_TLS_CA_FILE", "/etc/ca.pem")]))
            .unwrap()
            .check_tls_on(false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "REDIS_TLS_CA_FILE=\"/etc/ca.pem\" is set, but TLS is off (redis://, REDIS_TLS not true) and would ignore it: use a rediss:// URL or set REDIS_TLS=true, or unset REDIS_TLS_CA_FILE"
        );
        // Nothing set, or only the default, is fine.
        let quiet = TlsOptions::from_lookup(lookup(&[("REDIS_TLS_INSECURE", "false")])).unwrap();
        assert!(quiet.check_tls_on(false).is_ok());
    }
}
