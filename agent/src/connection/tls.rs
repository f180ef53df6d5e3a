//! TLS client settings: the run's (public web roots, plus the test server's certificate), a
//! connect step's own (its CA, or no verification), and how a failed TLS handshake is reported.

use std::io;
use std::sync::Arc;

use wsfleet_metrics::ErrorKind;

use crate::failure::{io_error, ConnectError};

/// Shared TLS client settings (one per run).
pub type TlsConfig = Arc<rustls::ClientConfig>;

/// Trusts the public web roots (webpki-roots) with the ring provider.
pub fn default_tls_config() -> Result<TlsConfig, rustls::Error> {
    run_tls_config(None)
}

/// Trusts the public web roots, plus the run's test server certificate when there is one.
pub fn run_tls_config(testserver_pem: Option<&str>) -> Result<TlsConfig, rustls::Error> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = testserver_pem {
        for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
            roots.add(certificate)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS settings for a connect step that trusts its own CA or skips verification.
pub fn step_tls_config(
    options: &wsfleet_scenario::TlsOptions,
    testserver_pem: Option<&str>,
) -> Result<TlsConfig, String> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let config = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &options.ca_pem {
            Some(pem) => {
                for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                    let certificate = certificate.map_err(|error| format!("cannot read the CA file: {error}"))?;
                    roots
                        .add(certificate)
                        .map_err(|error| format!("cannot trust a certificate of the CA file: {error}"))?;
                }
                if roots.is_empty() {
                    return Err("the CA file holds no certificate".into());
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for certificate in testserver_pem
                    .map(|pem| rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    roots
                        .add(certificate)
                        .map_err(|error| format!("cannot trust the test server's certificate: {error}"))?;
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `insecure_skip_verify`: any certificate is accepted; signatures are still checked so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls_pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls_pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn tls_or_io(error: &io::Error) -> ConnectError {
    let is_tls = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls || error.kind() == io::ErrorKind::InvalidData {
        ConnectError::new(ErrorKind::Tls, format!("TLS handshake failed: {error}"))
    } else {
        io_error(error, "TLS handshake")
    }
}
