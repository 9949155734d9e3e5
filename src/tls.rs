//! TLS client settings on rustls with the ring provider, shared by the MQTT clients and the
//! HTTP function client: the roots to trust (a PEM file, else the system's) and an optional
//! client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct TlsError {
    what: String,
    reason: String,
}

fn error(what: &str, reason: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// A client configuration trusting `ca_file`'s certificates (else the system's roots), with a
/// client certificate and key when given.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let name = path.display().to_string();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(&name, e))? {
                let cert = cert.map_err(|e| error(&name, e))?;
                roots.add(cert).map_err(|e| error(&name, e))?;
            }
            if roots.is_empty() {
                return Err(error(&name, "holds no PEM certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| error("protocol versions", e))?
            .with_root_certificates(roots);
    match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| error(&cert.display().to_string(), e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| error(&key.display().to_string(), e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| error("client certificate", e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
