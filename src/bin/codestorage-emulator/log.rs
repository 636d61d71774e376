//! The request log (`--log FILE`): one JSON object per line and per request, with what the
//! request asked for, what was decided and why, and the claims of the token it carried (never
//! the token itself), so that tests can check what a server was given.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::auth::Claims;
use crate::{EmulatorError, io_error};

/// What the emulator did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The token allowed it and http-backend served it (whatever http-backend answered).
    Allowed,
    /// Refused before http-backend ran: a malformed request, or a missing or insufficient token.
    Refused,
    /// The client did not send a whole request head in time.
    Dropped,
}

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// When it was decided, in seconds since the Unix epoch.
    pub time: i64,
    /// The request method; empty when the head never came whole.
    pub method: &'a str,
    /// The request path as sent, without the query; empty when the head never came whole.
    pub path: &'a str,
    /// `upload-pack`, `receive-pack`, or `none` when the request was refused before routing.
    pub service: &'static str,
    /// git's wire protocol: `v0` or `v2`; empty for LFS and when the head never came whole.
    pub protocol: &'static str,
    /// The HTTP status sent.
    pub status: u16,
    /// What was decided.
    pub decision: Decision,
    /// Why, in words.
    pub reason: &'a str,
    /// Whether the token passed every check: signature, lifetime, repository.
    pub verified: bool,
    /// The token's claims (as claimed, when `verified` is false); absent without a token.
    pub claims: Option<&'a Claims>,
}

/// The open log file, shared by every connection.
#[derive(Debug)]
pub struct RequestLog {
    file: Mutex<File>,
}

impl RequestLog {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> Result<Self, EmulatorError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error(format!("cannot open --log {}", path.display())))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends `record` as one line, written whole in a single call so that concurrent
    /// requests never interleave.
    pub fn write(&self, record: &Record<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("codestorage-emulator: cannot encode a request log record: {e}");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(&line) {
            eprintln!("codestorage-emulator: cannot write the request log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_object_per_line_with_claims_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let log = RequestLog::open(&path).unwrap();
        let claims: Claims = serde_json::from_str(
            r#"{"iss":"acme","sub":"sandbox:agent-42","repo":"team/x","scopes":["git:read"],"iat":100,"exp":1000}"#,
        )
        .unwrap();
        log.write(&Record {
            time: 5,
            method: "GET",
            path: "/team/x.git/info/refs",
            service: "upload-pack",
            protocol: "v2",
            status: 200,
            decision: Decision::Allowed,
            reason: "git-upload-pack team/x",
            verified: true,
            claims: Some(&claims),
        });
        log.write(&Record {
            time: 6,
            method: "",
            path: "",
            service: "none",
            protocol: "",
            status: 408,
            decision: Decision::Dropped,
            reason: "a \"quoted\"\nreason",
            verified: false,
            claims: None,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["decision"], "allowed");
        assert_eq!(first["claims"]["sub"], "sandbox:agent-42");
        assert_eq!(first["claims"]["scopes"], serde_json::json!(["git:read"]));
        // Optional claims the token did not carry stay out.
        assert!(first["claims"].get("refs").is_none());
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["decision"], "dropped");
        assert_eq!(second["reason"], "a \"quoted\"\nreason");
        assert!(second["claims"].is_null());
        // Reopening appends.
        drop(log);
        RequestLog::open(&path).unwrap().write(&Record {
            time: 7,
            method: "POST",
            path: "/x.git/git-receive-pack",
            service: "receive-pack",
            protocol: "v0",
            status: 403,
            decision: Decision::Refused,
            reason: "git-receive-pack needs git:write",
            verified: true,
            claims: Some(&claims),
        });
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }
}
