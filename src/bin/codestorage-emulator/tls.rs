//! A certificate authority made at start, and a server certificate it signs for loopback.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::EmulatorError;

/// Names the server certificate covers: loopback, and Code Storage's own names so that a test
/// can point `acme.code.storage` at loopback (git's `http.curloptResolve`) and use real URLs.
const NAMES: [&str; 5] = [
    "localhost",
    "127.0.0.1",
    "::1",
    "code.storage",
    "*.code.storage",
];

/// The server's TLS configuration and the CA certificate that clients must trust.
pub struct Tls {
    /// rustls server configuration (ring provider).
    pub config: Arc<ServerConfig>,
    /// The CA certificate, PEM, for git's `http.sslCAInfo` / `GIT_SSL_CAINFO`.
    pub ca_pem: String,
}

/// Makes a throwaway CA and a server certificate signed by it.
pub fn make() -> Result<Tls, EmulatorError> {
    let tls = |e: rcgen::Error| EmulatorError::Tls(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own per run: TLS clients look CAs up by name, and a bundle holding two
    // emulators' CAs must not confuse them.
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!(
            "codestorage-emulator throwaway CA {}-{unique}",
            std::process::id()
        ),
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(tls)?).map_err(tls)?;

    let leaf_key = KeyPair::generate().map_err(tls)?;
    let mut leaf_params =
        CertificateParams::new(NAMES.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .map_err(tls)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "codestorage-emulator");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(tls)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .map_err(|e| EmulatorError::Tls(e.to_string()))?;
    Ok(Tls {
        config: Arc::new(config),
        ca_pem: ca.pem(),
    })
}
