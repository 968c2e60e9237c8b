//! HTTPS: the rustls server configuration from `webhook.tls_cert_file` and
//! `webhook.tls_key_file`. The files are read at start, so that a bad file
//! is an error the main thread logs, and again on every configuration reload
//! (`pg_reload_conf()`, like PostgreSQL's own ssl files): new handshakes get
//! the renewed certificate, established connections keep theirs, and a
//! renewal that cannot be read leaves the current one in place.

use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The certificate and key handshakes use now; the main thread swaps them.
#[derive(Debug)]
pub struct Certificate {
    files: (String, String),
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Certificate {
    /// Reads the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load(&self.files.0, &self.files.1, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }
}

/// The acceptor for the listening sockets, and the certificate it serves.
pub fn acceptor(
    cert_file: &str,
    key_file: &str,
) -> Result<(TlsAcceptor, Arc<Certificate>), String> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let certificate = Arc::new(Certificate {
        files: (cert_file.to_string(), key_file.to_string()),
        current: RwLock::new(Arc::new(load(cert_file, key_file, &provider)?)),
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}

fn load(
    cert_file: &str,
    key_file: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
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
    CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| format!("webhook.tls_cert_file and webhook.tls_key_file do not fit: {e}"))
}
