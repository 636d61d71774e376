//! Public keys in the two shapes users hold them: OpenSSH (`ssh-ed25519 AAAA… comment`, the SSH
//! wire blob inside) and X.509 SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`, what Code
//! Storage registers), converted both ways, with OpenSSH's `SHA256:` fingerprint.
//!
//! Only the three key types Code Storage accepts are read; every other type is named in a
//! refusal so that a user who points at an ECDSA P-384 or a security key learns why it fails.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::wire::{self, Writer};
use crate::alg::{ACCEPTED, Algorithm};
use crate::der::{self, oid};

/// The SSH key type name of a P-256 key.
pub const SSH_P256: &str = "ecdsa-sha2-nistp256";
/// The SSH key type name of an Ed25519 key.
pub const SSH_ED25519: &str = "ssh-ed25519";
/// The SSH key type name of an RSA key.
pub const SSH_RSA: &str = "ssh-rsa";

/// The curve name inside a P-256 key blob.
const NISTP256: &str = "nistp256";
/// The smallest RSA modulus Code Storage accepts.
const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus ring verifies (`RSA_PKCS1_2048_8192_SHA256`).
const RSA_MAX_BITS: usize = 8192;

/// rsassa-pss, 1.2.840.113549.1.1.10: an RSA key bound to PSS, which RS256 cannot use.
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// id-dsa, 1.2.840.10040.4.1.
const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];

/// Why a public key or a fingerprint could not be read; each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// The text is neither an OpenSSH public key line nor a PEM public key.
    #[error(
        "no public key found: expected an OpenSSH `.pub` line (`ssh-ed25519 AAAA…`) or a `-----BEGIN PUBLIC KEY-----` PEM block"
    )]
    NotAPublicKey,
    /// The text holds a private key where a public key was expected.
    #[error("this is a private key, not a public one; give its public half")]
    PrivateKey {
        /// Whether it is in OpenSSH's own format, which `ssh-keygen` reads and OpenSSL does not.
        openssh: bool,
    },
    /// The text holds more than one key, so which one is meant is unclear.
    #[error("the text holds {0} public keys; give exactly one")]
    MultipleKeys(usize),
    /// A key type Code Storage does not accept.
    #[error("the key is {kind}; {ACCEPTED}")]
    Unsupported {
        /// What it is, e.g. "an EC P-384 key".
        kind: String,
    },
    /// A P-256 key whose point is compressed, which SSH and ring's verifier do not take.
    #[error(
        "the EC public key has a compressed point, which OpenSSH does not take; re-export it uncompressed"
    )]
    CompressedPoint,
    /// The key's encoding is broken.
    #[error(
        "the public key is malformed ({0}); export it again from its private key (`ssh-keygen -y -f` reads it)"
    )]
    Malformed(&'static str),
    /// Text that should be a `SHA256:` fingerprint is not one.
    #[error(
        "{0:?} is not a SHA256 key fingerprint; `ssh-add -l -E sha256` lists them (`SHA256:` and 43 characters)"
    )]
    BadFingerprint(String),
}

impl PublicKeyError {
    /// The command that mends the file at `path`, filled in, when there is one: the public half
    /// of a private key given by mistake, or a compressed point written out uncompressed.
    pub fn fix(&self, path: &Path) -> Option<String> {
        let file = crate::shell::quote(&path.to_string_lossy());
        let public = crate::shell::quote(&format!("{}.pub", path.to_string_lossy()));
        match self {
            Self::PrivateKey { openssh: true } => Some(format!(
                "`ssh-keygen -y -f {file} > {public}` writes it; then name {public} instead"
            )),
            Self::PrivateKey { openssh: false } => Some(format!(
                "`openssl pkey -in {file} -pubout -out {public}` writes it; then name {public} instead"
            )),
            Self::CompressedPoint => {
                let new = crate::shell::quote(&format!("{}.new", path.to_string_lossy()));
                Some(format!(
                    "`openssl ec -pubin -in {file} -pubout -conv_form uncompressed -out {new} && mv {new} {file}`"
                ))
            }
            _ => None,
        }
    }
}

/// An OpenSSH SHA-256 key fingerprint, `SHA256:` and the unpadded base64 of the blob's digest,
/// exactly as `ssh-add -l -E sha256` and `ssh-keygen -lf` print it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of an SSH public key blob.
    pub fn of(ssh_blob: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, ssh_blob);
        Self(format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(digest.as_ref())
        ))
    }

    /// Reads a fingerprint a user typed: the `SHA256:` prefix in any case, trailing `=`
    /// padding tolerated (some tools print it).
    pub fn parse(text: &str) -> Result<Self, PublicKeyError> {
        let bad = || PublicKeyError::BadFingerprint(shorten(text.trim()));
        let text = text.trim();
        let (prefix, body) = text.split_once(':').ok_or_else(bad)?;
        if !prefix.eq_ignore_ascii_case("SHA256") {
            return Err(bad());
        }
        let body = body.trim_end_matches('=');
        match STANDARD_NO_PAD.decode(body) {
            Ok(digest) if digest.len() == 32 => {
                Ok(Self(format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))))
            }
            _ => Err(bad()),
        }
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = PublicKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A public key Code Storage accepts, in both encodings, with its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    algorithm: Algorithm,
    ssh_blob: Vec<u8>,
    spki_der: Vec<u8>,
    fingerprint: Fingerprint,
    signature_len: usize,
    comment: Option<String>,
}

/// The key material, borrowed from whichever encoding it was read from.
enum Material<'a> {
    P256 { point: &'a [u8] },
    Ed25519 { key: &'a [u8] },
    Rsa { e: &'a [u8], n: &'a [u8] },
}

impl PublicKeyInfo {
    /// Reads an SSH wire blob (`string type, …`), as an agent lists it or a `.pub` line holds it.
    pub fn from_ssh_blob(blob: &[u8]) -> Result<Self, PublicKeyError> {
        let mut reader = wire::Reader::new(blob);
        let truncated = |_| PublicKeyError::Malformed("truncated SSH key blob");
        let kind = reader.string().map_err(truncated)?;
        let material = match kind {
            k if k == SSH_P256.as_bytes() => {
                if reader.string().map_err(truncated)? != NISTP256.as_bytes() {
                    return Err(PublicKeyError::Malformed(
                        "curve name does not match key type",
                    ));
                }
                Material::P256 {
                    point: reader.string().map_err(truncated)?,
                }
            }
            k if k == SSH_ED25519.as_bytes() => Material::Ed25519 {
                key: reader.string().map_err(truncated)?,
            },
            k if k == SSH_RSA.as_bytes() => {
                let negative = |_| PublicKeyError::Malformed("negative or truncated RSA integer");
                let e = reader.positive_mpint().map_err(negative)?;
                let n = reader.positive_mpint().map_err(negative)?;
                Material::Rsa { e, n }
            }
            other => {
                return Err(PublicKeyError::Unsupported {
                    kind: ssh_kind(other),
                });
            }
        };
        reader
            .finish()
            .map_err(|_| PublicKeyError::Malformed("trailing bytes after the SSH key"))?;
        let info = Self::from_material(&material)?;
        // Re-encoding must give the same bytes: one key has one blob and so one fingerprint.
        if info.ssh_blob != blob {
            return Err(PublicKeyError::Malformed("non-canonical SSH key encoding"));
        }
        Ok(info)
    }

    /// Reads a DER SubjectPublicKeyInfo (the contents of a `PUBLIC KEY` PEM block).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, PublicKeyError> {
        let malformed = |_| PublicKeyError::Malformed("broken SubjectPublicKeyInfo DER");
        let mut outer = der::Reader::new(spki);
        let mut info = der::Reader::new(outer.expect(der::SEQUENCE).map_err(malformed)?);
        let mut algorithm_id = der::Reader::new(info.expect(der::SEQUENCE).map_err(malformed)?);
        let algorithm = algorithm_id.expect(der::OID).map_err(malformed)?;
        let bits = info.expect(der::BIT_STRING).map_err(malformed)?;
        if !outer.is_empty() || !info.is_empty() {
            return Err(PublicKeyError::Malformed(
                "trailing bytes in SubjectPublicKeyInfo",
            ));
        }
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(PublicKeyError::Malformed("bit string with unused bits")),
        };
        let unsupported = |kind: &str| {
            Err(PublicKeyError::Unsupported {
                kind: kind.to_owned(),
            })
        };
        let material = match algorithm {
            a if a == oid::EC_PUBLIC_KEY => match algorithm_id.expect(der::OID) {
                Ok(curve) if curve == oid::P256 => {
                    if matches!(key, [0x02 | 0x03, ..]) && key.len() == 33 {
                        return Err(PublicKeyError::CompressedPoint);
                    }
                    Material::P256 { point: key }
                }
                Ok(curve) if curve == oid::P384 => return unsupported("an EC P-384 key"),
                Ok(curve) if curve == oid::P521 => return unsupported("an EC P-521 key"),
                Ok(curve) if curve == oid::SECP256K1 => {
                    return unsupported("an EC secp256k1 key");
                }
                Ok(_) => return unsupported("an EC key on an unknown curve"),
                Err(_) => return Err(PublicKeyError::Malformed("EC key without a named curve")),
            },
            a if a == oid::ED25519 => Material::Ed25519 { key },
            a if a == oid::RSA_ENCRYPTION => return Self::from_rsa_public_key_der(key),
            a if a == oid::ED448 => return unsupported("an Ed448 key"),
            a if a == OID_RSA_PSS => return unsupported("an RSA-PSS key"),
            a if a == OID_DSA => return unsupported("a DSA key"),
            _ => return unsupported("a key of an unknown type"),
        };
        Self::from_material(&material)
    }

    /// Reads a DER PKCS#1 `RSAPublicKey` (the contents of an `RSA PUBLIC KEY` PEM block).
    pub fn from_rsa_public_key_der(der_bytes: &[u8]) -> Result<Self, PublicKeyError> {
        let malformed = |_| PublicKeyError::Malformed("broken RSAPublicKey DER");
        let mut outer = der::Reader::new(der_bytes);
        let mut key = der::Reader::new(outer.expect(der::SEQUENCE).map_err(malformed)?);
        let n = key.expect(der::INTEGER).map_err(malformed)?;
        let e = key.expect(der::INTEGER).map_err(malformed)?;
        if !outer.is_empty() || !key.is_empty() {
            return Err(PublicKeyError::Malformed("trailing bytes in RSAPublicKey"));
        }
        if [n, e]
            .iter()
            .any(|i| i.first().is_some_and(|b| b & 0x80 != 0))
        {
            return Err(PublicKeyError::Malformed("negative RSA integer"));
        }
        Self::from_material(&Material::Rsa {
            e: wire::strip_leading_zeros(e),
            n: wire::strip_leading_zeros(n),
        })
    }

    fn from_material(material: &Material<'_>) -> Result<Self, PublicKeyError> {
        let (algorithm, ssh_blob, algorithm_id, raw, signature_len) = match *material {
            Material::P256 { point } => {
                if point.len() != 65 || point[0] != 0x04 {
                    return Err(PublicKeyError::Malformed(
                        "a P-256 point is 65 bytes starting with 04",
                    ));
                }
                let mut blob = Writer::with_capacity(128);
                blob.string(SSH_P256.as_bytes())
                    .string(NISTP256.as_bytes())
                    .string(point);
                let id = der::sequence(&[
                    &der::element(der::OID, oid::EC_PUBLIC_KEY),
                    &der::element(der::OID, oid::P256),
                ]);
                (Algorithm::Es256, blob, id, point.to_vec(), 64)
            }
            Material::Ed25519 { key } => {
                if key.len() != 32 {
                    return Err(PublicKeyError::Malformed("an Ed25519 key is 32 bytes"));
                }
                let mut blob = Writer::with_capacity(64);
                blob.string(SSH_ED25519.as_bytes()).string(key);
                let id = der::sequence(&[&der::element(der::OID, oid::ED25519)]);
                (Algorithm::EdDsa, blob, id, key.to_vec(), 64)
            }
            Material::Rsa { e, n } => {
                let bits = der::integer_bits(n);
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    let kind = if bits < RSA_MIN_BITS {
                        format!("a {bits}-bit RSA key")
                    } else {
                        format!("a {bits}-bit RSA key, over the {RSA_MAX_BITS} bits ring verifies")
                    };
                    return Err(PublicKeyError::Unsupported { kind });
                }
                if e.is_empty() {
                    return Err(PublicKeyError::Malformed("RSA exponent is zero"));
                }
                let mut blob = Writer::with_capacity(n.len() + e.len() + 32);
                blob.string(SSH_RSA.as_bytes())
                    .positive_mpint(e)
                    .positive_mpint(n);
                let id = der::sequence(&[
                    &der::element(der::OID, oid::RSA_ENCRYPTION),
                    &der::element(der::NULL, &[]),
                ]);
                let pkcs1 = der::sequence(&[
                    &der::element(der::INTEGER, &der_positive(n)),
                    &der::element(der::INTEGER, &der_positive(e)),
                ]);
                (Algorithm::Rs256, blob, id, pkcs1, n.len())
            }
        };
        let ssh_blob = ssh_blob.as_bytes().to_vec();
        let bit_string = [&[0u8][..], &raw].concat();
        let spki_der = der::sequence(&[&algorithm_id, &der::element(der::BIT_STRING, &bit_string)]);
        Ok(Self {
            algorithm,
            fingerprint: Fingerprint::of(&ssh_blob),
            ssh_blob,
            spki_der,
            signature_len,
            comment: None,
        })
    }

    /// The JWS algorithm this key signs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The SSH wire blob, as agents and `.pub` files carry it.
    pub fn ssh_blob(&self) -> &[u8] {
        &self.ssh_blob
    }

    /// The DER SubjectPublicKeyInfo, as Code Storage registers it.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The OpenSSH `SHA256:` fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The length of this key's JWS signatures: 64 for ES256 and EdDSA, the modulus for RS256.
    pub fn signature_len(&self) -> usize {
        self.signature_len
    }

    /// The comment of the OpenSSH line it was read from, if any.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The SSH key type name (`ecdsa-sha2-nistp256`, `ssh-ed25519`, `ssh-rsa`).
    pub fn ssh_type(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Es256 => SSH_P256,
            Algorithm::EdDsa => SSH_ED25519,
            Algorithm::Rs256 => SSH_RSA,
        }
    }

    /// The OpenSSH one-line form, `type base64 [comment]`, as a `.pub` file holds it.
    pub fn to_openssh(&self) -> String {
        let mut line = format!("{} {}", self.ssh_type(), STANDARD.encode(&self.ssh_blob));
        if let Some(comment) = &self.comment {
            line.push(' ');
            line.push_str(comment);
        }
        line
    }

    /// The SPKI as a `PUBLIC KEY` PEM block with LF line ends, as OpenSSL writes it.
    pub fn to_spki_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", self.spki_der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// The same key with `comment` attached.
    pub fn with_comment(mut self, comment: Option<String>) -> Self {
        self.comment = comment;
        self
    }
}

/// Reads a public key file: an OpenSSH line (`.pub`, or an `authorized_keys` line with options
/// before the key) or PEM (`PUBLIC KEY` SPKI, `RSA PUBLIC KEY` PKCS#1).
pub fn read_public_key(text: &[u8]) -> Result<PublicKeyInfo, PublicKeyError> {
    if text.windows(11).any(|w| w == b"-----BEGIN ") {
        return read_pem(text);
    }
    let text = std::str::from_utf8(text).map_err(|_| PublicKeyError::NotAPublicKey)?;
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(key) = openssh_line(line)? {
            found.push(key);
        }
    }
    match found.len() {
        0 => Err(PublicKeyError::NotAPublicKey),
        1 => Ok(found.remove(0)),
        n => Err(PublicKeyError::MultipleKeys(n)),
    }
}

fn read_pem(text: &[u8]) -> Result<PublicKeyInfo, PublicKeyError> {
    let blocks = pem::parse_many(text).map_err(|_| PublicKeyError::NotAPublicKey)?;
    let mut found = Vec::new();
    for block in &blocks {
        match block.tag() {
            "PUBLIC KEY" => found.push(PublicKeyInfo::from_spki_der(block.contents())?),
            "RSA PUBLIC KEY" => {
                found.push(PublicKeyInfo::from_rsa_public_key_der(block.contents())?);
            }
            tag if tag.ends_with("PRIVATE KEY") => {
                return Err(PublicKeyError::PrivateKey {
                    openssh: tag == "OPENSSH PRIVATE KEY",
                });
            }
            _ => {}
        }
    }
    match found.len() {
        0 => Err(PublicKeyError::NotAPublicKey),
        1 => Ok(found.remove(0)),
        n => Err(PublicKeyError::MultipleKeys(n)),
    }
}

/// One line of a `.pub` or `authorized_keys` file: `[options] type base64 [comment]`. The key
/// is the first word followed by base64 whose blob names that same type, so options (which
/// hold no such pair) are skipped without parsing their quoting.
fn openssh_line(line: &str) -> Result<Option<PublicKeyInfo>, PublicKeyError> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    for (i, pair) in words.windows(2).enumerate() {
        let [kind, encoded] = [pair[0], pair[1]];
        let Ok(blob) = STANDARD.decode(encoded) else {
            continue;
        };
        if wire::Reader::new(&blob).string().ok() != Some(kind.as_bytes()) {
            continue;
        }
        let info = PublicKeyInfo::from_ssh_blob(&blob)?;
        let comment = words[i + 2..].join(" ");
        let comment = (!comment.is_empty()).then_some(comment);
        return Ok(Some(info.with_comment(comment)));
    }
    Ok(None)
}

/// A DER INTEGER's contents for a non-negative magnitude: a leading zero keeps it positive.
fn der_positive(magnitude: &[u8]) -> Vec<u8> {
    let magnitude = wire::strip_leading_zeros(magnitude);
    match magnitude.first() {
        None => vec![0],
        Some(&b) if b & 0x80 != 0 => [&[0u8][..], magnitude].concat(),
        Some(_) => magnitude.to_vec(),
    }
}

/// Names an SSH key type Code Storage does not take, for a refusal.
pub(crate) fn ssh_kind(name: &[u8]) -> String {
    match name {
        b"ecdsa-sha2-nistp384" => "an EC P-384 key".into(),
        b"ecdsa-sha2-nistp521" => "an EC P-521 key".into(),
        b"ssh-dss" => "a DSA key".into(),
        b"ssh-ed448" => "an Ed448 key".into(),
        b"sk-ecdsa-sha2-nistp256@openssh.com" | b"sk-ssh-ed25519@openssh.com" => {
            "a FIDO security key (sk-), whose signatures are not plain ES256 or EdDSA".into()
        }
        n if n.ends_with(b"-cert-v01@openssh.com") => format!(
            "an OpenSSH certificate ({}); use the plain key it certifies",
            shorten(&String::from_utf8_lossy(n))
        ),
        n => format!("a key of type {:?}", shorten(&String::from_utf8_lossy(n))),
    }
}

/// Text from outside, cut to a length that fits in one line of an error message.
fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    #[cfg(unix)]
    use std::process::Command;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[cfg(unix)]
    fn fixture_path(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    /// The fingerprint `ssh-keygen -l -E sha256 -f FILE` prints, the independent reference.
    #[cfg(unix)]
    fn ssh_keygen_fingerprint(path: &str) -> String {
        let output = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f", path])
            .output()
            .expect("ssh-keygen runs");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_owned()
    }

    #[test]
    fn openssh_and_spki_forms_of_one_key_agree() {
        // The .pub files were converted from the PEM ones by ssh-keygen, not by this code.
        for (openssh, spki, algorithm) in [
            ("p256.pub", "p256.pub.pem", Algorithm::Es256),
            ("rsa2048.pub", "rsa2048.pub.pem", Algorithm::Rs256),
            ("rsa2048.pub", "rsa2048.pkcs1.pub.pem", Algorithm::Rs256),
        ] {
            let from_ssh = read_public_key(&fixture(openssh)).unwrap();
            let from_pem = read_public_key(&fixture(spki)).unwrap();
            assert_eq!(from_ssh.algorithm(), algorithm);
            assert_eq!(from_ssh.ssh_blob(), from_pem.ssh_blob(), "{spki}");
            assert_eq!(from_ssh.spki_der(), from_pem.spki_der(), "{spki}");
            assert_eq!(from_ssh.fingerprint(), from_pem.fingerprint());
        }
        let spki = pem::parse(fixture("rsa2048.pub.pem")).unwrap();
        let from_pkcs1 = read_public_key(&fixture("rsa2048.pkcs1.pub.pem")).unwrap();
        assert_eq!(from_pkcs1.spki_der(), spki.contents());
        assert_eq!(from_pkcs1.signature_len(), 256);
    }

    // Runs the host's `ssh-keygen`, which a Windows build under Wine cannot start (Wine gives a Linux
    // program no process handle to wait on).
    #[cfg(unix)]
    #[test]
    fn fingerprints_match_ssh_keygen() {
        for name in ["p256.pub", "rsa2048.pub"] {
            let ours = read_public_key(&fixture(name)).unwrap();
            assert_eq!(
                ours.fingerprint().as_str(),
                ssh_keygen_fingerprint(&fixture_path(name)),
                "{name}"
            );
        }
    }

    // Runs the host's `ssh-keygen`, which a Windows build under Wine cannot start (Wine gives a Linux
    // program no process handle to wait on).
    #[cfg(unix)]
    #[test]
    fn keys_made_by_ssh_keygen_read_and_fingerprint_alike() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, bits, algorithm) in [
            ("ed25519", "256", Algorithm::EdDsa),
            ("ecdsa", "256", Algorithm::Es256),
            ("rsa", "3072", Algorithm::Rs256),
        ] {
            let path = dir.path().join(kind);
            let status = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    kind,
                    "-b",
                    bits,
                    "-N",
                    "",
                    "-C",
                    "a comment",
                    "-f",
                ])
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success());
            let public = format!("{}.pub", path.display());
            let text = std::fs::read(&public).unwrap();
            let info = read_public_key(&text).unwrap();
            assert_eq!(info.algorithm(), algorithm);
            assert_eq!(info.comment(), Some("a comment"));
            assert_eq!(info.fingerprint().as_str(), ssh_keygen_fingerprint(&public));
            assert_eq!(
                info.to_openssh(),
                String::from_utf8(text).unwrap().trim_end()
            );
            // The SPKI form leads back to the same blob.
            let again = read_public_key(info.to_spki_pem().as_bytes()).unwrap();
            assert_eq!(again.ssh_blob(), info.ssh_blob());
        }
    }

    #[test]
    fn ed25519_spki_round_trips_through_the_blob() {
        let spki = pem::parse(fixture("ed25519.openssl.pub.pem")).unwrap();
        let info = PublicKeyInfo::from_spki_der(spki.contents()).unwrap();
        assert_eq!(info.algorithm(), Algorithm::EdDsa);
        assert_eq!(info.ssh_blob().len(), 4 + 11 + 4 + 32);
        let back = PublicKeyInfo::from_ssh_blob(info.ssh_blob()).unwrap();
        assert_eq!(back.spki_der(), spki.contents());
    }

    #[test]
    fn authorized_keys_options_and_comment_lines_are_skipped() {
        let line = String::from_utf8(fixture("p256.pub")).unwrap();
        let text = format!(
            "# my key\n\nfrom=\"10.0.0.1\",no-pty {} laptop key\n",
            line.trim()
        );
        let info = read_public_key(text.as_bytes()).unwrap();
        assert_eq!(info.comment(), Some("laptop key"));
        assert_eq!(info.algorithm(), Algorithm::Es256);
    }

    #[test]
    fn other_key_types_are_refused_by_name() {
        let refusal = |text: &[u8]| read_public_key(text).unwrap_err().to_string();
        let message = refusal(&fixture("p384.pub"));
        assert!(
            message.contains("P-384") && message.contains(ACCEPTED),
            "{message}"
        );
        let message = refusal(&fixture("p384.pkcs8.pem"));
        assert!(message.contains("private key"), "{message}");
        for (kind, expected) in [
            ("ssh-dss", "DSA"),
            ("sk-ssh-ed25519@openssh.com", "security key"),
            ("sk-ecdsa-sha2-nistp256@openssh.com", "security key"),
            ("ecdsa-sha2-nistp521", "P-521"),
            ("ssh-ed25519-cert-v01@openssh.com", "certificate"),
        ] {
            let mut blob = Writer::default();
            blob.string(kind.as_bytes()).string(&[1; 32]);
            let line = format!("{kind} {}", STANDARD.encode(blob.as_bytes()));
            let message = refusal(line.as_bytes());
            assert!(message.contains(expected), "{kind}: {message}");
        }
    }

    #[test]
    fn short_rsa_and_broken_blobs_are_refused_without_panicking() {
        let mut blob = Writer::default();
        blob.string(b"ssh-rsa")
            .positive_mpint(&[1, 0, 1])
            .positive_mpint(&[0xc5; 128]);
        let message = PublicKeyInfo::from_ssh_blob(blob.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(message.contains("1024-bit RSA"), "{message}");
        let good = read_public_key(&fixture("p256.pub")).unwrap();
        let blob = good.ssh_blob();
        for cut in 0..blob.len() {
            assert!(PublicKeyInfo::from_ssh_blob(&blob[..cut]).is_err());
        }
        let trailing = [blob, &[0][..]].concat();
        assert_eq!(
            PublicKeyInfo::from_ssh_blob(&trailing),
            Err(PublicKeyError::Malformed(
                "trailing bytes after the SSH key"
            ))
        );
        let spki = good.spki_der();
        for cut in 0..spki.len() {
            assert!(PublicKeyInfo::from_spki_der(&spki[..cut]).is_err());
        }
        assert_eq!(
            read_public_key(b"hello"),
            Err(PublicKeyError::NotAPublicKey)
        );
        assert_eq!(
            read_public_key(&[0xff, 0xfe]),
            Err(PublicKeyError::NotAPublicKey)
        );
        let two = [fixture("p256.pub"), fixture("rsa2048.pub")].concat();
        assert_eq!(read_public_key(&two), Err(PublicKeyError::MultipleKeys(2)));
    }

    #[test]
    fn compressed_points_get_their_own_fix() {
        let mut spki = hex("3039301306072a8648ce3d020106082a8648ce3d030107032200");
        spki.push(0x02);
        spki.extend_from_slice(&[7; 32]);
        assert_eq!(
            PublicKeyInfo::from_spki_der(&spki),
            Err(PublicKeyError::CompressedPoint)
        );
        assert!(
            PublicKeyError::CompressedPoint
                .fix(Path::new("k.pub"))
                .unwrap()
                .contains(
                    "-in k.pub -pubout -conv_form uncompressed -out k.pub.new && mv k.pub.new k.pub"
                )
        );
    }

    #[test]
    fn a_private_key_is_named_with_the_command_for_its_own_format() {
        let block = |tag: &str| format!("-----BEGIN {tag}-----\nAAAA\n-----END {tag}-----\n");
        let path = Path::new("/keys/my acme");
        let openssh = read_public_key(block("OPENSSH PRIVATE KEY").as_bytes()).unwrap_err();
        assert_eq!(openssh, PublicKeyError::PrivateKey { openssh: true });
        assert_eq!(
            openssh.fix(path).unwrap(),
            "`ssh-keygen -y -f '/keys/my acme' > '/keys/my acme.pub'` writes it; then name '/keys/my acme.pub' instead"
        );
        let pkcs8 = read_public_key(block("PRIVATE KEY").as_bytes()).unwrap_err();
        assert!(
            pkcs8
                .fix(path)
                .unwrap()
                .starts_with("`openssl pkey -in '/keys/my acme' -pubout -out '/keys/my acme.pub'`")
        );
        assert_eq!(PublicKeyError::NotAPublicKey.fix(path), None);
    }

    #[test]
    fn fingerprints_parse_leniently_and_print_canonically() {
        let canonical = "SHA256:eWRlrt7+WYAk8GvCIe51z4Ev84MZ6mzREuyxqwATGFw";
        for typed in [
            canonical,
            "sha256:eWRlrt7+WYAk8GvCIe51z4Ev84MZ6mzREuyxqwATGFw",
            " SHA256:eWRlrt7+WYAk8GvCIe51z4Ev84MZ6mzREuyxqwATGFw=\n",
        ] {
            assert_eq!(Fingerprint::parse(typed).unwrap().as_str(), canonical);
        }
        for bad in [
            "",
            "eWRlrt7+WYAk8GvCIe51z4Ev84MZ6mzREuyxqwATGFw",
            "MD5:12:34",
            "SHA256:short",
            "SHA256:eWRlrt7-WYAk8GvCIe51z4Ev84MZ6mzREuyxqwATGFw",
        ] {
            assert!(
                matches!(
                    Fingerprint::parse(bad),
                    Err(PublicKeyError::BadFingerprint(_))
                ),
                "{bad:?}"
            );
        }
        let long = "x".repeat(10_000);
        let message = Fingerprint::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
