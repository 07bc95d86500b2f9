//! HTTPS for the webhook server (`http.tls: {cert, key}`), with rustls and its `ring`
//! provider (already in the build for the Prefect client).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::TlsConfig;

/// Reads the certificate and key; `(key, message)` naming the file and what is wrong.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, (&'static str, String)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            (
                "tls.cert",
                format!(
                    "cannot read a PEM certificate chain from {}: {e}",
                    cfg.cert.display()
                ),
            )
        })?;
    if certs.is_empty() {
        return Err((
            "tls.cert",
            format!("{} holds no certificate", cfg.cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        (
            "tls.key",
            format!(
                "cannot read a PEM private key from {}: {e}",
                cfg.key.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            (
                "tls",
                format!("the certificate and key do not make a TLS identity: {e}"),
            )
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
