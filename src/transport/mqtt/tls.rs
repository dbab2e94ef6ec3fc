//! MQTT over TLS: the server certificate (loaded at start, reloadable without restart) and the
//! client-certificate policy (asked for, never required; a device's certificate and the chain the
//! client sends are checked at CONNECT against X.509 credentials and chain profiles' CAs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// A certificate or key file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsFileError {
    pub path: PathBuf,
    pub reason: String,
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsFileError {
    TlsFileError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsFileError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, format!("cannot read the certificate chain: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("not a PEM private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        file_error(
            key,
            format!("unusable with the certificate in {}: {e}", cert.display()),
        )
    })?;
    Ok(certified)
}

/// The server's certificate, swapped in place on reload; handshakes in progress keep the one they
/// started with.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsFileError> {
        let certified = load_certified_key(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(certified)),
        }))
    }

    /// Reads the files again; on any error the certificate in use stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let certified = Arc::new(load_certified_key(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = certified;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Asks for a client certificate but does not require one. A presented certificate is not
/// validated against a CA here (ThingsBoard does not either): the handshake proves that the client
/// holds its key, and the CONNECT accepts it only when it is a device's registered certificate
/// within its validity dates.
#[derive(Debug)]
struct DeviceCertificates {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeviceCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS configuration of the MQTT listener (TLS 1.2 and 1.3).
pub fn server_config(cert: Arc<ReloadableCert>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = Arc::new(DeviceCertificates {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// The DER of the leaf certificate a TLS client presented; None on plain TCP or without one.
pub fn peer_certificate(io: &ntex_io::IoBoxed) -> Option<Vec<u8>> {
    io.query::<ntex_tls::rustls::PeerCert<'static>>()
        .as_ref()
        .map(|cert| cert.0.as_ref().to_vec())
}

/// The certificates a TLS client sent after its leaf (its issuers, nearest first); empty on plain
/// TCP or without a client certificate.
pub fn peer_chain(io: &ntex_io::IoBoxed) -> Vec<Vec<u8>> {
    io.query::<ntex_tls::rustls::PeerCertChain<'static>>()
        .as_ref()
        .map(|chain| {
            chain
                .0
                .iter()
                .skip(1)
                .map(|c| c.as_ref().to_vec())
                .collect()
        })
        .unwrap_or_default()
}
