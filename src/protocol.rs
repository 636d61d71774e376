//! git's credential protocol: the `key=value` lines git writes to a helper and the ones it reads back.
//!
//! Pure parsing and writing of plain structs; the process's stdin and stdout are the caller's.
//! The rules follow git's `credential.c` and the hardening after CVE-2020-5260 and CVE-2024-52006:
//! lines end at LF only, and a value holding CR or NUL is refused rather than guessed at.

use std::io::{self, BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

/// The most input the helper reads: git's lines are at most 64 KiB each, and a server may send
/// many `WWW-Authenticate` headers, so a bound well above one line.
pub const MAX_INPUT: usize = 1024 * 1024;

/// The actions git runs a helper with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAction {
    /// Print a credential for the request.
    Get,
    /// A credential worked; tokens are never stored, so nothing to do.
    Store,
    /// A credential was refused; explain it if it is ours.
    Erase,
}

impl GitAction {
    /// The action git names `word`, if any; git may invent others, which are ignored.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "get" => Some(Self::Get),
            "store" => Some(Self::Store),
            "erase" => Some(Self::Erase),
            _ => None,
        }
    }

    /// The word git runs the helper with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Store => "store",
            Self::Erase => "erase",
        }
    }
}

/// The attributes of a credential request that this helper uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `protocol`, e.g. `https`.
    pub protocol: Option<String>,
    /// `host`, with `:port` when the URL had one.
    pub host: Option<String>,
    /// `path`, sent only with `credential.useHttpPath`, already %-decoded by git.
    pub path: Option<String>,
    /// `username`, from the URL or an earlier helper.
    pub username: Option<String>,
    /// `password`; on `erase` the credential the server refused.
    pub password: Option<Secret<String>>,
    /// `authtype` (git 2.46+): the scheme of `credential`, e.g. `Basic`.
    pub authtype: Option<String>,
    /// `credential` (git 2.46+): a ready `Authorization` value; on `erase` the one refused.
    pub credential: Option<Secret<String>>,
    /// `capability[]`: what this git understands beyond the basics (`authtype`, `state`).
    pub capabilities: Vec<String>,
    /// `wwwauth[]`: the server's `WWW-Authenticate` headers.
    pub wwwauth: Vec<String>,
}

impl Request {
    /// Whether git offered `capability[]=NAME`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }
}

/// Why a request could not be read; each message says what git would never have sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The input is larger than [`MAX_INPUT`].
    #[error("credential request is larger than {MAX_INPUT} bytes; git never sends that much")]
    TooLong,
    /// A line is not valid UTF-8.
    #[error("credential request line {line} is not valid UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line holds a NUL byte.
    #[error("credential request line {line} contains a NUL byte")]
    Nul {
        /// 1-based line number.
        line: usize,
    },
    /// A line holds a carriage return (CVE-2024-52006: some helpers read it as a line end).
    #[error("credential request line {line} contains a carriage return")]
    CarriageReturn {
        /// 1-based line number.
        line: usize,
    },
    /// A line has no `=`.
    #[error("credential request line {line} is not of the form key=value")]
    NoEquals {
        /// 1-based line number.
        line: usize,
    },
    /// Reading stdin failed.
    #[error("could not read the credential request: {0}")]
    Io(String),
}

/// Parses a request; reading stops at the first blank line, as git's does.
///
/// ```
/// use git_credential_codestorage::protocol;
///
/// let request = protocol::parse(b"protocol=https\nhost=acme.code.storage\npath=team/x.git\n\n")?;
/// assert_eq!(request.host.as_deref(), Some("acme.code.storage"));
/// assert_eq!(request.path.as_deref(), Some("team/x.git"));
/// assert!(protocol::parse(b"host=a\rprotocol=https\n").is_err());
/// # Ok::<(), protocol::ParseError>(())
/// ```
pub fn parse(input: &[u8]) -> Result<Request, ParseError> {
    if input.len() > MAX_INPUT {
        return Err(ParseError::TooLong);
    }
    let mut request = Request::default();
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        if raw.is_empty() {
            break;
        }
        let Some(equals) = raw.iter().position(|&b| b == b'=') else {
            // git's own reader dies on such a line: nothing sent this is git.
            return Err(ParseError::NoEquals { line });
        };
        let (key, value) = (&raw[..equals], &raw[equals + 1..]);
        // Only what the helper needs must be well formed: a server's odd `wwwauth[]` header or a
        // future attribute must not cost the user a token (git would fall back to a prompt).
        let needed = matches!(key, b"protocol" | b"host" | b"path");
        let checked = check_value(value, line);
        match (needed, checked) {
            (true, Err(e)) => return Err(e),
            (false, Err(_)) => continue,
            (_, Ok(value)) => {
                if let Ok(key) = std::str::from_utf8(key) {
                    request.set(key, value);
                }
            }
        }
    }
    Ok(request)
}

/// A value as text: UTF-8, with no NUL and no carriage return (CVE-2024-52006).
fn check_value(value: &[u8], line: usize) -> Result<&str, ParseError> {
    if value.contains(&0) {
        return Err(ParseError::Nul { line });
    }
    if value.contains(&b'\r') {
        return Err(ParseError::CarriageReturn { line });
    }
    std::str::from_utf8(value).map_err(|_| ParseError::NotUtf8 { line })
}

impl Request {
    /// The token the request carries: `password`, or inside a `Basic` `credential` (`t:TOKEN`).
    pub fn token(&self) -> Option<Secret<String>> {
        if let Some(password) = &self.password {
            return Some(password.clone());
        }
        let credential = self.credential.as_ref()?;
        if !self.authtype.as_deref()?.eq_ignore_ascii_case("basic") {
            return None;
        }
        let basic = Secret::new(STANDARD.decode(credential.expose()).ok()?);
        let text = std::str::from_utf8(basic.expose()).ok()?;
        Some(Secret::new(text.split_once(':')?.1.to_owned()))
    }

    fn set(&mut self, key: &str, value: &str) {
        let scalar = match key {
            "protocol" => &mut self.protocol,
            "host" => &mut self.host,
            "path" => &mut self.path,
            "username" => &mut self.username,
            "password" => {
                self.password = Some(Secret::new(value.to_owned()));
                return;
            }
            "credential" => {
                self.credential = Some(Secret::new(value.to_owned()));
                return;
            }
            "authtype" => &mut self.authtype,
            "capability[]" => return push_or_clear(&mut self.capabilities, value),
            "wwwauth[]" => return push_or_clear(&mut self.wwwauth, value),
            // git ignores keys it does not know, so that newer gits can talk to older helpers.
            _ => return,
        };
        // A repeated scalar key replaces the earlier value, as in git.
        *scalar = Some(value.to_owned());
    }

    /// Writes the request as git would send it (used by tests and by the round-trip property).
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for capability in &self.capabilities {
            writeln!(out, "capability[]={capability}")?;
        }
        let scalars = [
            ("protocol", &self.protocol),
            ("host", &self.host),
            ("path", &self.path),
            ("username", &self.username),
            (
                "password",
                &self.password.as_ref().map(|p| p.expose().clone()),
            ),
            ("authtype", &self.authtype),
            (
                "credential",
                &self.credential.as_ref().map(|c| c.expose().clone()),
            ),
        ];
        for (key, value) in scalars {
            if let Some(value) = value {
                writeln!(out, "{key}={value}")?;
            }
        }
        for header in &self.wwwauth {
            writeln!(out, "wwwauth[]={header}")?;
        }
        writeln!(out)
    }
}

// `key[]=` with an empty value resets the list, so a later helper can clear what an earlier set.
fn push_or_clear(list: &mut Vec<String>, value: &str) {
    if value.is_empty() {
        list.clear();
    } else {
        list.push(value.to_owned());
    }
}

/// Reads a request from `input` (stdin) up to its blank line or EOF, refusing more than
/// [`MAX_INPUT`] bytes. Stopping at the blank line lets a person type a request by hand.
pub fn read_request(input: impl BufRead) -> Result<Request, ParseError> {
    let mut buffer = Vec::with_capacity(512);
    let mut limited = input.take(MAX_INPUT as u64 + 1);
    loop {
        let start = buffer.len();
        let read = limited
            .read_until(b'\n', &mut buffer)
            .map_err(|e| ParseError::Io(e.to_string()))?;
        if read == 0 || buffer[start..] == *b"\n" {
            break;
        }
    }
    parse(&buffer)
}

/// What the helper answers to `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A credential for git to use.
    Credential {
        /// `username`: always `t` for Code Storage.
        username: String,
        /// `password`: the signed token.
        password: Secret<String>,
        /// `password_expiry_utc`: when git must stop using the password (unix seconds).
        expiry: i64,
        /// git offered `capability[]=authtype` (2.46+): answer with a ready `Authorization: Basic`
        /// credential marked `ephemeral` and no password, so that no credential helper
        /// (credential-store, credential-cache) configured before or after keeps the token.
        ephemeral: bool,
    },
    /// `quit=1`: the host is ours but no credential can be made; git stops without prompting.
    Quit,
    /// Nothing: the request is not ours, and git asks its other helpers.
    Decline,
}

impl Response {
    /// Writes the answer in git's format.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        match self {
            Self::Credential {
                username,
                password,
                expiry,
                ephemeral,
            } => {
                if *ephemeral {
                    // git reads `authtype`, `credential` and `ephemeral` only after the
                    // capability is echoed back.
                    writeln!(out, "capability[]=authtype")?;
                    writeln!(out, "authtype=Basic")?;
                    let basic = Secret::new(format!("{username}:{}", password.expose()));
                    let encoded = Secret::new(STANDARD.encode(basic.expose()));
                    writeln!(out, "credential={}", encoded.expose())?;
                    writeln!(out, "ephemeral=1")?;
                } else {
                    writeln!(out, "username={username}")?;
                    writeln!(out, "password={}", password.expose())?;
                }
                writeln!(out, "password_expiry_utc={expiry}")
            }
            Self::Quit => writeln!(out, "quit=1"),
            Self::Decline => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(text: &str) -> Result<Request, ParseError> {
        parse(text.as_bytes())
    }

    #[test]
    fn parses_what_git_2_47_sends_for_https() {
        let r = request(
            "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=acme.code.storage\npath=team/x.git\nwwwauth[]=Basic realm=\"Code Storage\"\n\n",
        )
        .unwrap();
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("acme.code.storage"));
        assert_eq!(r.path.as_deref(), Some("team/x.git"));
        assert!(r.has_capability("authtype"));
        assert_eq!(r.wwwauth, ["Basic realm=\"Code Storage\""]);
    }

    #[test]
    fn stops_at_the_first_blank_line_and_accepts_eof_instead() {
        let r = request("host=a\n\nhost=b\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("a"));
        let r = request("protocol=https\nhost=a").unwrap();
        assert_eq!(r.host.as_deref(), Some("a"));
    }

    #[test]
    fn later_scalars_win_and_empty_list_values_clear() {
        let r = request("host=a\nhost=b\ncapability[]=x\ncapability[]=\ncapability[]=y\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("b"));
        assert_eq!(r.capabilities, ["y"]);
    }

    #[test]
    fn values_keep_equals_signs_and_unknown_keys_are_ignored() {
        let r = request("password=a=b==\nfuture_key=1\nurl=https://x\n").unwrap();
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().as_str()),
            Some("a=b==")
        );
        assert_eq!(r.host, None);
    }

    #[test]
    fn refuses_cr_nul_missing_equals_and_invalid_utf8() {
        assert_eq!(
            request("host=a\rprotocol=https\n"),
            Err(ParseError::CarriageReturn { line: 1 })
        );
        assert_eq!(
            request("protocol=https\r\n"),
            Err(ParseError::CarriageReturn { line: 1 })
        );
        assert_eq!(
            request("protocol=https\nhost=a\0b\n"),
            Err(ParseError::Nul { line: 2 })
        );
        assert_eq!(request("hostname\n"), Err(ParseError::NoEquals { line: 1 }));
        assert_eq!(
            parse(b"path=\xff\xfe\n"),
            Err(ParseError::NotUtf8 { line: 1 })
        );
    }

    #[test]
    fn reading_stops_at_the_blank_line_without_waiting_for_eof() {
        let mut input = &b"protocol=https\nhost=a\n\nhost=b\n"[..];
        let r = read_request(&mut input).unwrap();
        assert_eq!(r.host.as_deref(), Some("a"));
        assert_eq!(input, b"host=b\n", "the rest is left unread");
    }

    #[test]
    fn refuses_input_over_the_bound() {
        let big = format!("path={}\n", "a".repeat(MAX_INPUT));
        assert_eq!(request(&big), Err(ParseError::TooLong));
        assert_eq!(
            read_request(big.as_bytes()).unwrap_err(),
            ParseError::TooLong
        );
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let r = request("password=secret-token\n").unwrap();
        assert!(!format!("{r:?}").contains("secret-token"));
        let answer = Response::Credential {
            username: "t".into(),
            password: Secret::new("secret-token".into()),
            expiry: 1,
            ephemeral: false,
        };
        assert!(!format!("{answer:?}").contains("secret-token"));
    }

    #[test]
    fn writes_credential_with_expiry_and_optional_ephemeral_marker() {
        let mut out = Vec::new();
        Response::Credential {
            username: "t".into(),
            password: Secret::new("jwt".into()),
            expiry: 1700000000,
            ephemeral: true,
        }
        .write_to(&mut out)
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "capability[]=authtype\nauthtype=Basic\ncredential=dDpqd3Q=\nephemeral=1\npassword_expiry_utc=1700000000\n"
        );
        let mut out = Vec::new();
        Response::Quit.write_to(&mut out).unwrap();
        assert_eq!(out, b"quit=1\n");
        let mut out = Vec::new();
        Response::Decline.write_to(&mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn the_token_is_the_password_or_inside_a_basic_credential() {
        let token = |text: &str| request(text).unwrap().token().map(|t| t.expose().clone());
        assert_eq!(token("password=jwt\n").as_deref(), Some("jwt"));
        assert_eq!(
            token("authtype=Basic\ncredential=dDpqd3Q=\n").as_deref(),
            Some("jwt")
        );
        assert_eq!(token("authtype=Bearer\ncredential=dDpqd3Q=\n"), None);
        assert_eq!(token("authtype=Basic\ncredential=!!\n"), None);
        assert_eq!(token("username=t\n"), None);
    }

    #[test]
    fn a_written_request_parses_back_to_itself() {
        let original = Request {
            protocol: Some("https".into()),
            host: Some("acme.code.storage:8443".into()),
            path: Some("team/x.git".into()),
            username: Some("t".into()),
            password: Some(Secret::new("p=q".into())),
            authtype: Some("Basic".into()),
            credential: Some(Secret::new("dDpqd3Q=".into())),
            capabilities: vec!["authtype".into()],
            wwwauth: vec!["Basic realm=x".into()],
        };
        let mut out = Vec::new();
        original.write_to(&mut out).unwrap();
        assert_eq!(parse(&out).unwrap(), original);
    }

    fn value() -> impl Strategy<Value = String> {
        "[^\n\r\x00]{0,40}"
    }

    fn request_strategy() -> impl Strategy<Value = Request> {
        let scalars = (
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
        );
        let lists = (
            proptest::collection::vec("[a-z]{1,12}", 0..3),
            proptest::collection::vec("[^\n\r\x00]{1,40}", 0..3),
        );
        (scalars, lists).prop_map(
            |((protocol, host, path, username, password), (capabilities, wwwauth))| Request {
                protocol,
                host,
                path,
                username,
                password: password.map(Secret::new),
                capabilities,
                wwwauth,
                ..Request::default()
            },
        )
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&bytes);
            let _ = read_request(&bytes[..]);
        }

        #[test]
        fn every_request_round_trips(request in request_strategy()) {
            let mut out = Vec::new();
            request.write_to(&mut out).unwrap();
            prop_assert_eq!(parse(&out).unwrap(), request);
        }
    }
}
