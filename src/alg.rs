//! The JWT signing algorithms Code Storage accepts, named once for keys, signatures and the
//! ssh-agent code alike.

use std::fmt;

/// The key types Code Storage accepts, for error messages.
pub const ACCEPTED: &str =
    "Code Storage accepts EC P-256 (ES256), RSA of 2048 bits or more (RS256) and Ed25519 (EdDSA)";

/// The JWT signing algorithm a key implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The JWT `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
