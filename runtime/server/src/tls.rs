//! TLS for SIP (`[server] tls`) and for the HTTP interface (`[server] https`): a rustls
//! server configuration (ring provider, TLS 1.2 and 1.3) from a PEM certificate chain and
//! its private key. Read at start; a new certificate takes a restart.

use ivr_compiler::config::CertFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("certificate {path}: {why}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("private key {path}: {why}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// rustls refused the pair (the key does not match the certificate, an unsupported key).
    #[error("certificate {cert} with key {key}: {why}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        why: rustls::Error,
    },
}

/// A rustls server configuration for `files`, offering `alpn` (e.g. `http/1.1`) when given.
pub fn server_config(
    files: &CertFiles,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: files.cert.clone(),
            why: "no certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|why| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
