//! The SSH wire encoding (RFC 4251 §5) that agent messages and key blobs use: bytes, uint32s,
//! length-prefixed strings and mpints.
//!
//! Hand-written because the protocol needs only these four types, and the crates that offer them
//! bring RustCrypto's hashing and key types along; ring does all cryptography here.

use zeroize::Zeroizing;

/// The bytes ended before a field did, or a field broke the encoding's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError;

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed SSH wire encoding")
    }
}

impl std::error::Error for WireError {}

/// A cursor over SSH-encoded bytes that hands out one field at a time.
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

    /// Fails unless every byte has been read: trailing bytes mean a misread structure.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError)
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < len {
            return Err(WireError);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// Reads one byte.
    pub fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a big-endian uint32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Reads a length-prefixed string and returns its contents.
    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.u32()?).map_err(|_| WireError)?;
        self.take(len)
    }

    /// Reads an mpint that must not be negative and returns its magnitude without leading
    /// zero bytes (empty for zero).
    pub fn positive_mpint(&mut self) -> Result<&'a [u8], WireError> {
        let contents = self.string()?;
        if contents.first().is_some_and(|&b| b & 0x80 != 0) {
            return Err(WireError);
        }
        Ok(strip_leading_zeros(contents))
    }
}

/// `bytes` without its leading zero bytes.
pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Builds SSH-encoded bytes. The buffer is wiped when dropped, since an agent request may
/// carry a private key; callers size it up front so that growing never leaves a stale copy.
#[derive(Default)]
pub struct Writer {
    out: Zeroizing<Vec<u8>>,
}

impl Writer {
    /// An empty writer that can hold `capacity` bytes without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Zeroizing::new(Vec::with_capacity(capacity)),
        }
    }

    /// Appends one byte.
    pub fn byte(&mut self, value: u8) -> &mut Self {
        self.out.push(value);
        self
    }

    /// Appends a big-endian uint32.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.out.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Appends a length-prefixed string.
    ///
    /// # Panics
    /// If `contents` is 4 GiB or longer, which no caller here comes near (agent messages are
    /// bounded far below that).
    pub fn string(&mut self, contents: &[u8]) -> &mut Self {
        let len = u32::try_from(contents.len()).expect("an SSH string is shorter than 4 GiB");
        self.u32(len);
        self.out.extend_from_slice(contents);
        self
    }

    /// Appends a non-negative integer given as big-endian magnitude bytes, as a minimal mpint.
    pub fn positive_mpint(&mut self, magnitude: &[u8]) -> &mut Self {
        let magnitude = strip_leading_zeros(magnitude);
        let pad = magnitude.first().is_some_and(|&b| b & 0x80 != 0);
        let len = magnitude.len() + usize::from(pad);
        let len = u32::try_from(len).expect("an SSH mpint is shorter than 4 GiB");
        self.u32(len);
        if pad {
            self.out.push(0);
        }
        self.out.extend_from_slice(magnitude);
        self
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// The bytes written, in a buffer that is wiped when dropped.
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut writer = Writer::default();
        writer
            .byte(13)
            .u32(0xdead_beef)
            .string(b"ssh-ed25519")
            .string(b"")
            .positive_mpint(&[0x00, 0x00, 0x7f])
            .positive_mpint(&[0x80, 0x01])
            .positive_mpint(&[0x00]);
        let bytes = writer.into_bytes();
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.byte().unwrap(), 13);
        assert_eq!(reader.u32().unwrap(), 0xdead_beef);
        assert_eq!(reader.string().unwrap(), b"ssh-ed25519");
        assert_eq!(reader.string().unwrap(), b"");
        assert_eq!(reader.positive_mpint().unwrap(), &[0x7f]);
        assert_eq!(reader.positive_mpint().unwrap(), &[0x80, 0x01]);
        assert_eq!(reader.positive_mpint().unwrap(), b"");
        assert!(reader.is_empty());
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn mpints_are_minimal_as_rfc_4251_shows() {
        // The examples of RFC 4251 §5.
        let mpint = |magnitude: &[u8]| {
            let mut writer = Writer::default();
            writer.positive_mpint(magnitude);
            writer.as_bytes().to_vec()
        };
        assert_eq!(mpint(&[]), [0, 0, 0, 0]);
        assert_eq!(
            mpint(&[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]),
            [0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]
        );
        assert_eq!(mpint(&[0x80]), [0, 0, 0, 2, 0x00, 0x80]);
        assert_eq!(mpint(&[0x00, 0x00, 0x80]), [0, 0, 0, 2, 0x00, 0x80]);
    }

    #[test]
    fn truncation_negative_mpints_and_trailing_bytes_are_errors() {
        assert_eq!(Reader::new(&[0, 0, 0]).u32(), Err(WireError));
        assert_eq!(Reader::new(&[0, 0, 0, 5, 1, 2]).string(), Err(WireError));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).string(),
            Err(WireError)
        );
        assert_eq!(
            Reader::new(&[0, 0, 0, 1, 0x80]).positive_mpint(),
            Err(WireError)
        );
        assert_eq!(Reader::new(&[]).byte(), Err(WireError));
        let mut reader = Reader::new(&[1, 2]);
        reader.byte().unwrap();
        assert_eq!(reader.finish(), Err(WireError));
    }
}
