//! Just enough DER to tell key formats apart and to wrap or write the few structures we need.
//!
//! ring parses and validates the key material itself; this module only reads the outer layers
//! (which algorithm, which curve, how many modulus bits) so that an unsupported key gets an error
//! that names it, and writes the SPKI and PKCS#8 envelopes that ring does not produce.

use std::fmt;

/// DER tag of an INTEGER.
pub const INTEGER: u8 = 0x02;
/// DER tag of a BIT STRING.
pub const BIT_STRING: u8 = 0x03;
/// DER tag of an OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// DER tag of a NULL.
pub const NULL: u8 = 0x05;
/// DER tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// DER tag of a SEQUENCE.
pub const SEQUENCE: u8 = 0x30;
/// DER tag of the context-specific constructed field `[0]`.
pub const CONTEXT_0: u8 = 0xa0;
/// DER tag of the context-specific constructed field `[1]`.
pub const CONTEXT_1: u8 = 0xa1;

/// Object identifiers (their encoded contents) that key files carry.
pub mod oid {
    /// rsaEncryption, 1.2.840.113549.1.1.1.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-ecPublicKey, 1.2.840.10045.2.1.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 (P-256), 1.2.840.10045.3.1.7.
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp384r1 (P-384), 1.3.132.0.34.
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// secp521r1 (P-521), 1.3.132.0.35.
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// secp256k1, 1.3.132.0.10.
    pub const SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
    /// id-Ed25519, 1.3.101.112.
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// id-Ed448, 1.3.101.113.
    pub const ED448: &[u8] = &[0x2b, 0x65, 0x71];
}

/// The input is not the DER structure that was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerError;

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed DER")
    }
}

impl std::error::Error for DerError {}

/// A cursor over DER bytes that hands out the contents of one element at a time.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag, and returns its tag and contents.
    pub fn any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.rest.split_first().ok_or(DerError)?;
        let (&first, mut rest) = rest.split_first().ok_or(DerError)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: 1 to 4 length bytes are plenty for any key (no key is 4 GiB).
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(DerError);
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(DerError);
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, contents))
    }

    /// Reads the next element, which must carry `tag`, and returns its contents.
    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.any()? {
            (t, contents) if t == tag => Ok(contents),
            _ => Err(DerError),
        }
    }

    /// Reads the next element only if it carries `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Encodes one element: tag, definite length, contents.
pub fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// Encodes a SEQUENCE of already encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    element(SEQUENCE, &parts.concat())
}

/// The number of significant bits in a DER INTEGER's contents (a modulus, say).
pub fn integer_bits(contents: &[u8]) -> usize {
    let significant: &[u8] = match contents.iter().position(|&b| b != 0) {
        Some(start) => &contents[start..],
        None => return 0,
    };
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_round_trips_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let contents = vec![0xab; len];
            let encoded = element(OCTET_STRING, &contents);
            let mut reader = Reader::new(&encoded);
            assert_eq!(reader.expect(OCTET_STRING).unwrap(), &contents[..]);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn truncated_and_oversized_lengths_are_errors() {
        assert_eq!(Reader::new(&[]).any(), Err(DerError));
        assert_eq!(Reader::new(&[0x30]).any(), Err(DerError));
        assert_eq!(Reader::new(&[0x30, 0x05, 0x00]).any(), Err(DerError));
        assert_eq!(
            Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).any(),
            Err(DerError)
        );
        assert_eq!(Reader::new(&[0x30, 0x80]).any(), Err(DerError));
    }

    #[test]
    fn expect_rejects_another_tag_and_optional_skips_it() {
        let encoded = element(INTEGER, &[1]);
        assert_eq!(Reader::new(&encoded).expect(SEQUENCE), Err(DerError));
        let mut reader = Reader::new(&encoded);
        assert_eq!(reader.optional(CONTEXT_0).unwrap(), None);
        assert_eq!(reader.optional(INTEGER).unwrap(), Some(&[1u8][..]));
    }

    #[test]
    fn integer_bits_ignores_leading_zero_bytes() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01]), 1);
        assert_eq!(integer_bits(&[0x00]), 0);
        assert_eq!(integer_bits(&[]), 0);
    }
}
