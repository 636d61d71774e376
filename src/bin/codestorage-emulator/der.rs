//! Just enough DER to read a SubjectPublicKeyInfo. Written apart from the helper's own DER code
//! on purpose: the emulator checks the helper's keys and tokens, so it must not share the code
//! it is checking.

/// DER tag of an INTEGER.
pub const INTEGER: u8 = 0x02;
/// DER tag of a BIT STRING.
pub const BIT_STRING: u8 = 0x03;
/// DER tag of a NULL.
pub const NULL: u8 = 0x05;
/// DER tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// DER tag of a SEQUENCE.
pub const SEQUENCE: u8 = 0x30;

/// The encoded contents of the object identifiers a registered key may carry.
pub mod oid {
    /// id-ecPublicKey, 1.2.840.10045.2.1.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 (P-256), 1.2.840.10045.3.1.7.
    pub const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// rsaEncryption, 1.2.840.113549.1.1.1.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-Ed25519, 1.3.101.112.
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
}

/// The bytes are not the DER element that was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER")]
pub struct Malformed;

/// A cursor that hands out one element's contents at a time.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `input` from its start.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if there is one.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element: its tag and contents.
    pub fn next_element(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        let (&tag, rest) = self.rest.split_first().ok_or(Malformed)?;
        // Multi-byte tags never occur in key structures; refusing them keeps this reader small.
        if tag & 0x1f == 0x1f {
            return Err(Malformed);
        }
        let (&first, mut rest) = rest.split_first().ok_or(Malformed)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length; more than 4 length bytes is no key we accept.
            if count == 0 || count > 4 || rest.len() < count {
                return Err(Malformed);
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            let length = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
            // DER wants the shortest form: no leading zero byte, no long form below 128.
            if bytes[0] == 0 || length < 0x80 {
                return Err(Malformed);
            }
            length
        };
        if rest.len() < length {
            return Err(Malformed);
        }
        let (contents, after) = rest.split_at(length);
        self.rest = after;
        Ok((tag, contents))
    }

    /// Reads the next element, which must have tag `tag`, and returns its contents.
    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], Malformed> {
        match self.next_element()? {
            (found, contents) if found == tag => Ok(contents),
            _ => Err(Malformed),
        }
    }
}

/// The number of significant bits in a DER INTEGER's contents read as unsigned.
pub fn unsigned_bits(integer: &[u8]) -> usize {
    let digits = match integer.iter().position(|b| *b != 0) {
        Some(start) => &integer[start..],
        None => return 0,
    };
    digits.len() * 8 - digits[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![SEQUENCE, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        long.extend_from_slice(&[NULL, 0x00]);
        let mut reader = Reader::new(&long);
        assert_eq!(reader.expect(SEQUENCE).unwrap().len(), 0x80);
        assert_eq!(reader.peek_tag(), Some(NULL));
        assert_eq!(reader.expect(NULL).unwrap(), b"");
        assert!(reader.is_empty());
    }

    #[test]
    fn refuses_non_der_lengths_and_truncation() {
        for bad in [
            &[SEQUENCE, 0x80][..],                  // indefinite length
            &[SEQUENCE, 0x81, 0x05, 0, 0, 0, 0, 0], // long form for a short length
            &[SEQUENCE, 0x82, 0x00, 0x80],          // leading zero length byte
            &[SEQUENCE, 0x03, 0x00],                // contents cut short
            &[0x1f, 0x01, 0x00],                    // multi-byte tag
            &[],
        ] {
            assert_eq!(
                Reader::new(bad).next_element(),
                Err(Malformed),
                "{bad:02x?}"
            );
        }
        assert_eq!(Reader::new(&[NULL, 0]).expect(SEQUENCE), Err(Malformed));
    }

    #[test]
    fn counts_integer_bits() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01, 0xff]), 9);
        assert_eq!(unsigned_bits(&[0x00]), 0);
    }
}
