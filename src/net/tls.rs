//! TLS client configuration with rustls (CA file, client certificate and key, or an explicit
//! insecure mode). rustls rather than OpenSSL: no C library to match across the machines a
//! journal travels between, and a memory-safe handshake.

use super::Error;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::PathBuf;
use std::sync::Arc;

/// The TLS flags of one side (`--source-tls-*` or `--target-tls-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust. Without it the system's roots are used.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for servers with `tls-auth-clients yes`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. An explicit opt-out, logged as a warning when used.
    pub insecure: bool,
}

impl TlsOptions {
    /// Builds the rustls client configuration. `addr` is only used in error messages.
    pub fn client_config(&self, addr: &str) -> Result<Arc<rustls::ClientConfig>, Error> {
        let err = |why: String| Error::Tls {
            addr: addr.to_string(),
            why,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca_file {
                Some(path) => {
                    for cert in read_certs(path).map_err(err)? {
                        roots
                            .add(cert)
                            .map_err(|e| err(format!("CA file {}: {e}", path.display())))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        let _ = roots.add(cert);
                    }
                    if roots.is_empty() {
                        return Err(err(
                            "no CA certificates: give --source-tls-ca/--target-tls-ca, or install the system's ca-certificates".into(),
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert).map_err(err)?;
                let key = read_key(key).map_err(err)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| err(format!("client certificate: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(err(
                    "a client certificate needs both --*-tls-cert and --*-tls-key".into(),
                ));
            }
        };
        Ok(Arc::new(config))
    }

    /// The name the server certificate must carry: an IP address or a DNS name.
    pub fn server_name(host: &str, addr: &str) -> Result<ServerName<'static>, Error> {
        ServerName::try_from(host.to_string()).map_err(|e| Error::Tls {
            addr: addr.to_string(),
            why: format!("invalid server name {host:?}: {e}"),
        })
    }
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", path.display()))
}

/// The verifier behind `--*-tls-insecure`: checks signatures are well formed but trusts any
/// certificate and name.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
