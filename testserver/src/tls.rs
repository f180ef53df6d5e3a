//! `wss://` support: a self-signed certificate generated at start with rcgen and
//! a rustls acceptor that uses the ring provider explicitly, so no process-wide
//! default crypto provider has to be installed first.

use std::net::IpAddr;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// The acceptor and the certificate clients must trust.
pub(crate) struct SelfSignedTls {
    pub(crate) acceptor: TlsAcceptor,
    /// The certificate in PEM; it is its own CA.
    pub(crate) certificate_pem: String,
}

/// Generates a certificate for `localhost`, `127.0.0.1` and `::1`, plus the
/// address the server is bound to when that is a specific other address.
pub(crate) fn self_signed(bound_ip: IpAddr) -> Result<SelfSignedTls, Error> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let bound = bound_ip.to_string();
    if !bound_ip.is_unspecified() && !names.contains(&bound) {
        names.push(bound);
    }
    // rcgen turns names that parse as IP addresses into IP subject alternative names.
    let certified = rcgen::generate_simple_self_signed(names).map_err(|source| Error::Certificate { source })?;
    let certificate_pem = certified.cert.pem();
    let certificate = certified.cert.der().clone();
    let private_key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(vec![certificate], private_key)
        })
        .map_err(|source| Error::Tls { source })?;
    Ok(SelfSignedTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate_pem,
    })
}
