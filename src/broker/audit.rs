//! The broker's audit log: one JSON line per request, for the platform's log pipeline. It says
//! who asked (sandbox, peer uid and pid), for what (host, organisation, repository, operation),
//! what was decided and why, and what a granted token allows (scopes, expiry). Never a token or
//! a key: a record has no field that could hold one.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// The most characters of a value from a request kept in a record (a host, a reason).
const MAX_FIELD_CHARS: usize = 512;

/// What the broker did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A token was signed and sent.
    Granted,
    /// The sandbox may not have a token for this request; git was told to quit.
    Refused,
    /// The request is not for a Code Storage host; git asks its other helpers.
    Declined,
    /// `store` or `erase`: nothing to sign, noted.
    Noted,
    /// The request could not be read or answered (garbage, too large, too slow, a key failure).
    Error,
    /// Lines of refused or unreadable connections held back by [`Throttle`], summed up.
    Summary,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The sandbox whose socket the request came on.
    pub sandbox: String,
    /// The peer's user ID, from the kernel.
    pub peer_uid: Option<u32>,
    /// The peer's process ID in the broker's PID namespace, from the kernel.
    pub peer_pid: Option<u32>,
    /// `get`, `store` or `erase`; `None` when the request could not be read.
    pub action: Option<&'static str>,
    /// The host git asked about.
    pub host: Option<String>,
    /// The organisation.
    pub org: Option<String>,
    /// The repository.
    pub repo: Option<String>,
    /// `read`, `write` or `unknown`, from the peer's processes.
    pub operation: Option<&'static str>,
    /// The scopes of the token granted.
    pub scopes: Vec<&'static str>,
    /// When the token granted expires, unix seconds.
    pub expires: Option<i64>,
    /// Whether the token granted was one signed earlier and handed out again.
    pub reused: Option<bool>,
    /// What was decided.
    pub decision: Decision,
    /// Why, in words, when not granted.
    pub reason: Option<String>,
}

impl Record {
    /// A record of `decision` at `now` for a request on `sandbox`'s socket, the rest unknown.
    pub fn new(now: i64, sandbox: &str, decision: Decision) -> Self {
        Self {
            time: crate::clock::format_time(now),
            sandbox: sandbox.to_owned(),
            peer_uid: None,
            peer_pid: None,
            action: None,
            host: None,
            org: None,
            repo: None,
            operation: None,
            scopes: Vec::new(),
            expires: None,
            reused: None,
            decision,
            reason: None,
        }
    }

    /// The record as one JSON line, values from requests bounded.
    pub fn to_line(&self) -> String {
        let mut bounded = self.clone();
        for field in [&mut bounded.host, &mut bounded.reason] {
            if let Some(text) = field
                && text.chars().count() > MAX_FIELD_CHARS
            {
                *text = text.chars().take(MAX_FIELD_CHARS).collect::<String>() + "…";
            }
        }
        // A struct of strings, numbers and lists always serializes.
        let mut line = serde_json::to_string(&bounded).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Where audit lines go: stderr or a file opened for appending. Lines from concurrent requests
/// never interleave: each is one write under a lock.
pub struct Audit {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Audit {
    /// Audit lines to the process's stderr (systemd's journal, a container's log).
    pub fn stderr() -> Self {
        Self {
            out: Mutex::new(Box::new(io::stderr())),
        }
    }

    /// Audit lines appended to `path`, created with mode 0600 if missing.
    pub fn file(path: &Path) -> io::Result<Self> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Self {
            out: Mutex::new(Box::new(options.open(path)?)),
        })
    }

    /// Audit lines to any writer (tests).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// Writes `record` as one line. An error means the line may be lost: the caller must then
    /// not hand out a token.
    pub fn write(&self, record: &Record) -> io::Result<()> {
        let line = record.to_line();
        // A worker that panicked while writing left at worst a partial line; keep auditing.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

/// Lines of refused, declined or unreadable connections one sandbox may write per second; past
/// that they are counted and summed up in one line, so a sandbox that floods its socket cannot
/// fill the disk. Grants are never held back: each token has its own line.
pub const LINES_PER_SECOND: u32 = 20;

/// Raised when any sandbox's lines are held back: the main loop looks for summaries to write
/// only then, not through every sandbox each turn. A hint shared by all brokers of the process
/// (tests run several): a false one costs one look.
static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether some sandbox may hold lines back.
pub fn may_hold() -> bool {
    HELD.load(std::sync::atomic::Ordering::SeqCst)
}

/// Whether some sandbox may hold lines back, lowering the hint: who takes it looks, and raises
/// it again with [`raise_held`] if lines are still held.
pub fn take_held() -> bool {
    HELD.swap(false, std::sync::atomic::Ordering::SeqCst)
}

/// Says that some sandbox holds lines back.
pub fn raise_held() {
    HELD.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// One sandbox's budget of audit lines for connections that got no token.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    second: i64,
    written: u32,
    held: u64,
}

impl Throttle {
    /// Writes `record` (which is no grant), made at `now`, unless this second's budget is spent;
    /// the lines held back are summed up in one line before the next one written.
    pub fn write(&self, audit: &Audit, record: &Record, now: i64) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.second != now {
            Self::sum_up(&mut state, audit, &record.sandbox, now)?;
        }
        if state.written >= LINES_PER_SECOND {
            state.held += 1;
            raise_held();
            return Ok(());
        }
        state.written += 1;
        audit.write(record)
    }

    /// Whether lines are held back, waiting for their summary.
    pub fn holds(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).held > 0
    }

    /// Writes the summary of lines held back in an earlier second, if any (the main loop calls
    /// this once the flood has stopped, so a summary is never left unwritten).
    pub fn flush(&self, audit: &Audit, sandbox: &str, now: i64) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.second == now {
            return Ok(());
        }
        Self::sum_up(&mut state, audit, sandbox, now)
    }

    fn sum_up(state: &mut ThrottleState, audit: &Audit, sandbox: &str, now: i64) -> io::Result<()> {
        let held = std::mem::take(&mut state.held);
        state.second = now;
        state.written = 0;
        if held == 0 {
            return Ok(());
        }
        let mut summary = Record::new(now, sandbox, Decision::Summary);
        summary.reason = Some(format!(
            "{held} more connection(s) that got no token were not logged one by one (at most {LINES_PER_SECOND} lines a second per sandbox)"
        ));
        audit.write(&summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_summed_up_and_grants_are_not_throttled() {
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let audit = Audit::to_writer(Box::new(Sink(lines.clone())));
        let throttle = Throttle::default();
        let refused = Record::new(100, "a", Decision::Refused);
        for _ in 0..1000 {
            throttle.write(&audit, &refused, 100).unwrap();
        }
        throttle
            .write(&audit, &Record::new(101, "a", Decision::Error), 101)
            .unwrap();
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count(),
            LINES_PER_SECOND as usize + 2,
            "{text}"
        );
        let summary: serde_json::Value =
            serde_json::from_str(text.lines().nth(LINES_PER_SECOND as usize).unwrap()).unwrap();
        assert_eq!(summary["decision"], "summary");
        assert!(
            summary["reason"].as_str().unwrap().starts_with("980 more"),
            "{summary}"
        );
    }

    #[test]
    fn a_record_is_one_line_of_json_with_bounded_values() {
        let mut record = Record::new(1_800_000_000, "agent-42", Decision::Refused);
        record.host = Some(format!("evil\n{}", "h".repeat(5000)));
        record.reason = Some("outside repos".into());
        record.peer_pid = Some(42);
        let line = record.to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2027-01-15T08:00:00Z");
        assert_eq!(value["decision"], "refused");
        assert_eq!(value["peer_pid"], 42);
        assert!(value["host"].as_str().unwrap().chars().count() <= MAX_FIELD_CHARS + 1);
        for key in [
            "sandbox",
            "peer_uid",
            "peer_pid",
            "action",
            "host",
            "org",
            "repo",
            "operation",
            "scopes",
            "expires",
            "reused",
            "decision",
            "reason",
        ] {
            assert!(value.get(key).is_some(), "{key} missing: {line}");
        }
    }

    #[test]
    fn a_file_log_is_appended_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for decision in [Decision::Granted, Decision::Noted] {
            Audit::file(&path)
                .unwrap()
                .write(&Record::new(0, "a", decision))
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
