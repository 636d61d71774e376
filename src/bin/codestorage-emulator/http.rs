//! Just enough HTTP/1.1 for git's smart protocol: request heads, bodies by length or chunked,
//! and responses framed the same two ways, never by closing the connection (libgit2 and other
//! strict clients cannot read a close-delimited body). One request per connection keeps the
//! server simple; clients reconnect as needed.

use std::io::{self, BufRead, Read, Write};

/// The most bytes a request head may have.
const MAX_HEAD: usize = 64 * 1024;

/// A request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names (as sent) and values.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target, without `?`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// How the body is framed.
    pub fn body(&self) -> Result<Body, io::Error> {
        if let Some(coding) = self.header("transfer-encoding") {
            // git sends only `chunked`; anything else would be misread as an empty body.
            return if coding.eq_ignore_ascii_case("chunked") {
                Ok(Body::Chunked)
            } else {
                Err(invalid("unsupported Transfer-Encoding"))
            };
        }
        match self.header("content-length") {
            None => Ok(Body::Length(0)),
            Some(v) => v
                .trim()
                .parse()
                .map(Body::Length)
                .map_err(|_| invalid("bad Content-Length")),
        }
    }
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read > *budget {
        return Err(invalid("request head too large"));
    }
    *budget -= read;
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("request head is not UTF-8"))
}

/// Reads a request head; `None` when the client closed the connection first.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let request_line = read_line(reader, &mut budget)?;
    if request_line.is_empty() {
        return Ok(None);
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(invalid("bad request line"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    }))
}

/// Copies a request body of the given framing from `reader` to `out`; returns its length.
pub fn copy_body(body: Body, reader: &mut impl BufRead, out: &mut impl Write) -> io::Result<u64> {
    match body {
        Body::Length(length) => {
            let copied = io::copy(&mut reader.by_ref().take(length), out)?;
            if copied != length {
                return Err(invalid("request body ended early"));
            }
            Ok(copied)
        }
        Body::Chunked => {
            let mut total = 0;
            loop {
                let mut budget = 1024;
                let size_line = read_line(reader, &mut budget)?;
                let size_text = size_line.split(';').next().unwrap_or("").trim();
                // from_str_radix would also take a sign; a chunk size is hex digits only.
                if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid("bad chunk size"));
                }
                let size =
                    u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the final empty line.
                    while !read_line(reader, &mut budget)?.is_empty() {}
                    return Ok(total);
                }
                let copied = io::copy(&mut reader.by_ref().take(size), out)?;
                if copied != size {
                    return Err(invalid("chunk ended early"));
                }
                total += copied;
                let mut budget = 2;
                if !read_line(reader, &mut budget)?.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
            }
        }
    }
}

/// The reason phrase for the statuses the emulator sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

/// Writes a status line and headers; the headers must frame the body (`Content-Length` or
/// `Transfer-Encoding: chunked`, see [`Chunked`]).
pub fn write_head(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<()> {
    write!(out, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    for (name, value) in headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(out, "Connection: close\r\n\r\n")
}

/// Writes a body in chunks of `Transfer-Encoding: chunked`; [`end_chunks`] sends the last.
pub struct Chunked<W: Write> {
    out: W,
}

impl<W: Write> Chunked<W> {
    /// Frames what is written to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

/// Ends a chunked body: the final empty chunk, then flush.
pub fn end_chunks(out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // An empty chunk would end the body.
        if data.is_empty() {
            return Ok(0);
        }
        write!(self.out, "{:x}\r\n", data.len())?;
        self.out.write_all(data)?;
        self.out.write_all(b"\r\n")?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes a whole response whose body is `body`, framed by `Content-Length`.
pub fn write_whole(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut all = headers.to_vec();
    all.push(("Content-Length".to_owned(), body.len().to_string()));
    write_head(out, status, &all)?;
    out.write_all(body)?;
    out.flush()
}

/// Writes a whole plain-text response.
pub fn write_text(
    out: &mut impl Write,
    status: u16,
    extra: &[(String, String)],
    text: &str,
) -> io::Result<()> {
    let mut headers = vec![(
        "Content-Type".to_owned(),
        "text/plain; charset=utf-8".to_owned(),
    )];
    headers.extend_from_slice(extra);
    write_whole(out, status, &headers, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> io::Result<Option<Head>> {
        read_head(&mut text.as_bytes())
    }

    #[test]
    fn parses_git_info_refs_request() {
        let h = head("GET /team/x.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nGit-Protocol: version=2\r\nauthorization: Basic dDpw\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.path(), "/team/x.git/info/refs");
        assert_eq!(h.query(), "service=git-upload-pack");
        assert_eq!(h.header("git-protocol"), Some("version=2"));
        assert_eq!(h.header("Authorization"), Some("Basic dDpw"));
        assert_eq!(h.body().unwrap(), Body::Length(0));
    }

    #[test]
    fn frames_bodies_by_transfer_encoding_then_content_length() {
        let h = head("POST /x.git/git-receive-pack HTTP/1.1\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body().unwrap(), Body::Chunked);
        let h = head("POST /x HTTP/1.1\r\ncontent-length: 42\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body().unwrap(), Body::Length(42));
        for bad in [
            "Content-Length: -1",
            "Content-Length: ten",
            "Transfer-Encoding: gzip, chunked",
        ] {
            let h = head(&format!("POST /x HTTP/1.1\r\n{bad}\r\n\r\n"))
                .unwrap()
                .unwrap();
            assert!(h.body().is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_bodies_read_back_as_written() {
        let mut framed = Vec::new();
        let mut chunked = Chunked::new(&mut framed);
        chunked.write_all(b"hello").unwrap();
        chunked.write_all(b"").unwrap();
        chunked.write_all(&[9; 300]).unwrap();
        end_chunks(&mut framed).unwrap();
        assert!(framed.starts_with(b"5\r\nhello\r\n12c\r\n"), "{framed:?}");
        let mut out = Vec::new();
        assert_eq!(
            copy_body(Body::Chunked, &mut &framed[..], &mut out).unwrap(),
            305
        );
        assert_eq!(&out[..5], b"hello");
    }

    #[test]
    fn refuses_malformed_heads_and_accepts_a_closed_connection() {
        assert!(head("").unwrap().is_none());
        assert!(head("GET\r\n\r\n").is_err());
        assert!(head("GET x HTTP/1.1\r\n\r\n").is_err());
        assert!(head("GET / HTTP/1.1\r\nno-colon\r\n\r\n").is_err());
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(head(&huge).is_err());
    }

    #[test]
    fn copies_length_and_chunked_bodies() {
        let mut out = Vec::new();
        copy_body(Body::Length(5), &mut &b"hello world"[..], &mut out).unwrap();
        assert_eq!(out, b"hello");
        let mut out = Vec::new();
        let chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(
            copy_body(Body::Chunked, &mut &chunked[..], &mut out).unwrap(),
            11
        );
        assert_eq!(out, b"hello world");
        assert!(copy_body(Body::Chunked, &mut &b"zz\r\n"[..], &mut Vec::new()).is_err());
        assert!(
            copy_body(
                Body::Chunked,
                &mut &b"+5\r\nhello\r\n0\r\n\r\n"[..],
                &mut Vec::new()
            )
            .is_err()
        );
        // Data longer than its chunk size, and a body cut off before the last chunk.
        assert!(
            copy_body(
                Body::Chunked,
                &mut &b"3\r\nhello\r\n0\r\n\r\n"[..],
                &mut Vec::new()
            )
            .is_err()
        );
        assert!(copy_body(Body::Chunked, &mut &b"5\r\nhel"[..], &mut Vec::new()).is_err());
        assert!(copy_body(Body::Chunked, &mut &b"5\r\nhello\r\n"[..], &mut Vec::new()).is_err());
        // Upper-case hex and a large chunk in one piece.
        let big = vec![7u8; 0x1A2B];
        let mut framed = b"1A2B\r\n".to_vec();
        framed.extend_from_slice(&big);
        framed.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut out = Vec::new();
        assert_eq!(
            copy_body(Body::Chunked, &mut &framed[..], &mut out).unwrap(),
            0x1A2B
        );
        assert_eq!(out, big);
        assert!(copy_body(Body::Length(9), &mut &b"short"[..], &mut Vec::new()).is_err());
    }
}
