//! HTTPS: the rustls server configuration from `webhook.tls_cert_file` and
//! `webhook.tls_key_file`, loaded once at start so that a bad file is an
//! error the main thread logs, not a failure per connection.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub fn acceptor(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read webhook.tls_cert_file \"{cert_file}\": {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate in \"{cert_file}\": {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in \"{cert_file}\""));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!("cannot read a private key from webhook.tls_key_file \"{key_file}\": {e}")
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("webhook.tls_cert_file and webhook.tls_key_file do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
