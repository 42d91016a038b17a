//! TLS configuration for both directions, built once and shared: the acceptor clients connect
//! to (`tls:` cert and key), and the connector the proxy uses towards shards and the catalog.
//!
//! Owns reading the PEM files (errors name the file), the choice of crypto provider (`ring`;
//! aws-lc would need cmake to build) and the certificate "verifier" for shards, which checks
//! handshake signatures but not the certificate itself: like libpq's `sslmode=require`, this
//! is encryption without authentication of the server (see `no_verify`). It does not hold the
//! streams (`frontend::stream`, `backend::stream`) nor decide when to use TLS (the callers,
//! from `tls.require` and each target's `sslmode`).
//!
//! Not supported yet: client certificates (towards clients or shards) and `verify-ca` /
//! `verify-full` towards shards (the config parser rejects those modes).

mod no_verify;
pub mod stream;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsConfig;

/// Why the proxy's own certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls: {0}")]
    Config(String),
}

/// The one crypto provider shardgate uses, named explicitly so that no process-wide default
/// is needed (and none can be picked by accident).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// The acceptor for client connections, from the certificate chain and key in `cfg` (PEM).
/// Called when a proxy starts (and whenever its config is reloaded), so a bad file is an
/// error at that moment rather than at the first client.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cfg.cert.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: cfg.key.display().to_string(),
        reason,
    };
    let pem = read(&cfg.cert).map_err(cert_err)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate found".into()));
    }
    let pem = read(&cfg.key).map_err(key_err)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_err(format!("no usable PEM private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| key_err(format!("does not fit the certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client configuration towards shards and the catalog: TLS 1.2 or 1.3, server
/// certificates accepted without verification (`sslmode=require` semantics). Built once: it
/// is immutable and the same for every target.
fn shard_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(no_verify::NoCertVerification::new(
                    provider,
                )))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A connector for the proxy's own server connections (`backend::conn`).
pub fn shard_connector() -> TlsConnector {
    TlsConnector::from(shard_client_config())
}

/// The tokio-postgres TLS connector for control-plane connections (catalog, listener,
/// recovery, `shardgate check`). With `sslmode=disable` tokio-postgres never uses it; with
/// `prefer` it falls back to plaintext when the server declines, as libpq does.
pub fn make_tls_connect() -> MakeRustlsConnect {
    MakeRustlsConnect::new((*shard_client_config()).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            require: false,
        }
    }

    #[test]
    fn unreadable_and_malformed_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sg-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").expect("write junk");
        let junk = junk.to_str().expect("utf-8 path");
        let cases = [
            (
                cfg("/nonexistent/server.crt", junk),
                "tls.cert /nonexistent/server.crt: cannot read",
            ),
            (cfg(junk, junk), "no PEM certificate found"),
        ];
        for (c, want) in cases {
            let got = acceptor(&c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.contains(want), "{got:?} should contain {want:?}");
            assert!(got.contains(".pem") || got.contains(".crt"), "{got}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("sg-tls-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).expect("cert a");
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).expect("cert b");
        let (cert, key_a, key_b) = (dir.join("a.crt"), dir.join("a.key"), dir.join("b.key"));
        std::fs::write(&cert, a.cert.pem()).expect("write cert");
        std::fs::write(&key_a, a.signing_key.serialize_pem()).expect("write key a");
        std::fs::write(&key_b, b.signing_key.serialize_pem()).expect("write key b");
        let ok = TlsConfig {
            cert: cert.clone(),
            key: key_a,
            require: true,
        };
        assert!(acceptor(&ok).is_ok());
        let wrong = TlsConfig {
            cert,
            key: key_b.clone(),
            require: true,
        };
        let got = acceptor(&wrong)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            got.starts_with(&format!("tls.key {}: does not fit", key_b.display())),
            "{got}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_shard_config_is_built_once_and_offers_tls13() {
        let a = shard_client_config();
        let b = shard_client_config();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a
            .crypto_provider()
            .cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13));
    }
}
