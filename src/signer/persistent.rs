//! A `sign_command` kept running (`sign_persistent = true`): the program is started once per
//! broker or `get` process and signs one request per line of JSON, so a KMS client pays its
//! start-up and credential lookup once, not per token.
//!
//! The protocol, like cargo's credential providers and git's long-running filters: the program
//! writes `{"v":[1]}` first (the versions it speaks); each request is one line
//! `{"v":1,"alg":"ES256","input":"<base64url signing input>"}`; each answer is one line,
//! `{"signature":"..."}` in any shape a one-shot `sign_command` may print, or `{"error":"..."}`.
//! Requests are serialised: one in flight at a time, which a KMS round trip dominates anyway.
//! A program that exits, hangs past the deadline or answers garbage is stopped with its process
//! group; the request fails with one line, and the next request starts it again, at once after
//! the first failure and then after a doubling pause, so a broken KMS is not hammered.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::key::{self, Algorithm, KeyError, KeySource, PublicKey, SignCommandSource};
use crate::signature;
use crate::signer::{SignError, Signer};

/// The longest line read from the program; a signature in any encoding is far shorter.
const MAX_LINE: u64 = 64 * 1024;

/// The most characters of a program's own `error` message passed on.
const MAX_ERROR_CHARS: usize = 300;

/// The longest pause before a failed program is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a kept-running signer gave no signature; the [`SignError`] around it names the program.
#[derive(Debug, thiserror::Error)]
pub enum PersistentError {
    /// The program could not be found or started.
    #[error("cannot start it: {0}")]
    Start(crate::process::ProcessError),
    /// The program exited (or closed its output) instead of answering.
    #[error(
        "the kept-running signer exited {when}; run it by hand to see why (it must keep reading requests until its stdin closes)"
    )]
    Exited {
        /// Before its greeting, or while a request waited.
        when: &'static str,
    },
    /// No answer within the deadline: it was stopped.
    #[error(
        "the kept-running signer gave no answer within {}s and was stopped; if the KMS is slow, raise CODESTORAGE_KEY_COMMAND_TIMEOUT (e.g. 30s)",
        .0.as_secs_f32()
    )]
    Timeout(Duration),
    /// A line that is not the protocol.
    #[error(
        "the kept-running signer wrote {0}, not a protocol line; with sign_persistent = true it writes a JSON greeting listing its versions first, then one JSON line with a signature or an error per request (docs/keys.md)"
    )]
    Garbage(&'static str),
    /// The greeting lists no version this helper speaks.
    #[error(
        "the kept-running signer speaks protocol versions {0:?}, and this helper speaks only 1"
    )]
    Version(Vec<u64>),
    /// The program said it could not sign.
    #[error(
        "the signer says: {0}; fix that (KMS reachable, credentials, key enabled), then `git-credential-codestorage doctor` tries a signature"
    )]
    Refused(String),
    /// It failed recently and waits before being started again.
    #[error("it failed {}s ago ({last}) and is started again in {}s", .ago.as_secs(), .wait.as_secs().max(1))]
    BackingOff {
        /// Since the failure.
        ago: Duration,
        /// Until the next start.
        wait: Duration,
        /// The failure, as a line.
        last: String,
    },
    /// Writing the request failed.
    #[error("writing the request failed: {0}")]
    Io(std::io::Error),
}

/// What the program's greeting says: the versions it speaks.
pub fn parse_hello(line: &str) -> Result<(), PersistentError> {
    #[derive(serde::Deserialize)]
    struct Hello {
        v: Vec<u64>,
    }
    let hello: Hello = serde_json::from_str(line.trim())
        .map_err(|_| PersistentError::Garbage("a first line that is not {\"v\":[...]}"))?;
    if hello.v.contains(&1) {
        Ok(())
    } else {
        Err(PersistentError::Version(hello.v))
    }
}

/// One request line, newline included.
pub fn request_line(algorithm: Algorithm, signing_input: &[u8]) -> String {
    format!(
        "{{\"v\":1,\"alg\":\"{}\",\"input\":\"{}\"}}\n",
        algorithm.as_str(),
        URL_SAFE_NO_PAD.encode(signing_input)
    )
}

/// The signature text an answer line carries, or the program's refusal.
pub fn parse_answer(line: &str) -> Result<String, PersistentError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        signature: Option<String>,
        error: Option<String>,
    }
    let answer: Answer = serde_json::from_str(line.trim())
        .map_err(|_| PersistentError::Garbage("an answer that is not a JSON object"))?;
    match (answer.signature, answer.error) {
        (Some(signature), None) => Ok(signature),
        (None, Some(error)) => {
            let line: String = error.chars().filter(|c| !c.is_control()).collect();
            let mut short: String = line.chars().take(MAX_ERROR_CHARS).collect();
            if short.len() < line.len() {
                short.push('…');
            }
            Err(PersistentError::Refused(short))
        }
        _ => Err(PersistentError::Garbage(
            "an answer with neither or both of \"signature\" and \"error\"",
        )),
    }
}

/// The pause before a start that follows `failures` failures in a row: none after the first,
/// then 1s, 2s, 4s, ... up to 30s.
pub fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_BACKOFF),
    }
}

/// A running program: its stdin, and the lines of its stdout read by a thread.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
}

impl Running {
    /// Starts `argv` and reads its greeting within `timeout`.
    fn start(argv: &[String], timeout: Duration) -> Result<Self, PersistentError> {
        let (name, args) = argv
            .split_first()
            .ok_or(PersistentError::Start(crate::process::ProcessError::Empty))?;
        let program = crate::process::find_program(name, std::env::var_os("PATH").as_deref())
            .map_err(PersistentError::Start)?;
        let mut command = Command::new(&program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group, so that stopping it ends what it started too.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|source| {
            PersistentError::Start(crate::process::ProcessError::Spawn { program, source })
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            crate::process::end(&mut child);
            return Err(PersistentError::Exited {
                when: "before it greeted",
            });
        };
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || read_lines(stdout, sender));
        let mut running = Self {
            child,
            stdin,
            lines,
        };
        let greeted = running
            .line(timeout, "before it greeted")
            .and_then(|line| parse_hello(&line));
        match greeted {
            Ok(()) => Ok(running),
            Err(e) => {
                running.stop();
                Err(e)
            }
        }
    }

    /// The next line within `timeout`.
    fn line(&mut self, timeout: Duration, when: &'static str) -> Result<String, PersistentError> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                Err(PersistentError::Exited { when })
            }
            Err(RecvTimeoutError::Timeout) => Err(PersistentError::Timeout(timeout)),
        }
    }

    /// Sends one request and waits for its answer line.
    fn ask(&mut self, request: &str, timeout: Duration) -> Result<String, PersistentError> {
        if let Err(e) = self
            .stdin
            .write_all(request.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            return Err(match e.kind() {
                std::io::ErrorKind::BrokenPipe => PersistentError::Exited {
                    when: "while a request waited",
                },
                _ => PersistentError::Io(e),
            });
        }
        self.line(timeout, "while a request waited")
    }

    /// True once the program has exited.
    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the program and what it started.
    fn stop(&mut self) {
        crate::process::end(&mut self.child);
    }
}

/// Reads `stdout` line by line into `sender` until it closes; a line longer than [`MAX_LINE`]
/// is an error (and ends the reading).
fn read_lines(stdout: impl Read, sender: mpsc::Sender<std::io::Result<String>>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE).read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if !line.ends_with('\n') && line.len() as u64 >= MAX_LINE => {
                let _ = sender.send(Err(std::io::Error::other("line too long")));
                return;
            }
            Ok(_) => {
                if sender.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = sender.send(Err(e));
                return;
            }
        }
    }
}

/// The program's state between requests.
#[derive(Default)]
struct State {
    running: Option<Running>,
    failures: u32,
    last_failure: Option<(Instant, String)>,
}

/// A signing program kept running, and the public key its signatures must verify with.
pub struct PersistentSigner {
    argv: Vec<String>,
    named: String,
    public_key_file: PathBuf,
    public: PublicKey,
    signature_len: usize,
    timeout: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for PersistentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentSigner")
            .field("argv", &self.argv)
            .field("public_key_file", &self.public_key_file)
            .finish_non_exhaustive()
    }
}

impl PersistentSigner {
    /// Reads `public_key_file` (which decides the algorithm); the program starts at the first
    /// signature.
    pub fn new(
        source: &KeySource,
        signer: &SignCommandSource,
        timeout: Duration,
    ) -> Result<Self, KeyError> {
        let info = key::read_public_key_file(&signer.public_key_file, source)?;
        let public = PublicKey::from_spki(info.spki_der(), source)?;
        Ok(Self {
            argv: signer.argv.clone(),
            named: format!("{source} (sign_persistent)"),
            public_key_file: signer.public_key_file.clone(),
            signature_len: info.signature_len(),
            public,
            timeout,
            state: Mutex::default(),
        })
    }

    /// One exchange on a running program, starting it when none runs (or it has exited
    /// since the last request, which is no failure of this request).
    fn exchange(&self, state: &mut State, request: &str) -> Result<String, PersistentError> {
        if let Some(running) = &mut state.running
            && running.exited()
        {
            running.stop();
            state.running = None;
        }
        if state.running.is_none() {
            if let Some((at, last)) = &state.last_failure {
                let wait = backoff(state.failures).saturating_sub(at.elapsed());
                if !wait.is_zero() {
                    return Err(PersistentError::BackingOff {
                        ago: at.elapsed(),
                        wait,
                        last: last.clone(),
                    });
                }
            }
            state.running = Some(Running::start(&self.argv, self.timeout)?);
        }
        let running = state.running.as_mut().ok_or(PersistentError::Exited {
            when: "before it greeted",
        })?;
        running
            .ask(request, self.timeout)
            .and_then(|line| parse_answer(&line))
    }

    fn failed(&self, reason: PersistentError) -> SignError {
        SignError::Persistent {
            command: self.named.clone(),
            reason,
        }
    }
}

impl Signer for PersistentSigner {
    fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let request = request_line(self.algorithm(), signing_input);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = self.exchange(&mut state, &request);
        let checked = answer.map_err(|e| self.failed(e)).and_then(|text| {
            let signature =
                signature::decode(self.algorithm(), self.signature_len, text.as_bytes()).map_err(
                    |reason| SignError::Output {
                        command: self.named.clone(),
                        reason,
                    },
                )?;
            self.public
                .verify(signing_input, &signature)
                .map_err(|_| SignError::Mismatch {
                    command: self.named.clone(),
                    algorithm: self.algorithm(),
                    public_key_file: self.public_key_file.clone(),
                })?;
            Ok(signature)
        });
        match &checked {
            Ok(_) => {
                state.failures = 0;
                state.last_failure = None;
            }
            // A program still backing off has not been started again: no new failure.
            Err(SignError::Persistent {
                reason: PersistentError::BackingOff { .. },
                ..
            }) => {}
            // A refusal comes from a program that works (a KMS that said no): keep it.
            Err(SignError::Persistent {
                reason: PersistentError::Refused(_),
                ..
            }) => {}
            Err(e) => {
                if let Some(mut running) = state.running.take() {
                    running.stop();
                }
                state.failures = state.failures.saturating_add(1);
                let line = match e {
                    SignError::Persistent { reason, .. } => reason.to_string(),
                    other => other.to_string(),
                };
                state.last_failure = Some((Instant::now(), line));
            }
        }
        checked
    }
}

impl Drop for PersistentSigner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut running) = state.running.take() {
            running.stop();
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_must_offer_version_1() {
        assert!(parse_hello("{\"v\":[1]}\n").is_ok());
        assert!(parse_hello("{\"v\":[2,1]}").is_ok());
        let error = parse_hello("{\"v\":[2]}").unwrap_err();
        assert!(error.to_string().contains("versions [2]"), "{error}");
        assert!(matches!(
            parse_hello("ready\n"),
            Err(PersistentError::Garbage(_))
        ));
    }

    #[test]
    fn a_request_is_one_line_of_json_with_base64url_input() {
        let line = request_line(Algorithm::Es256, b"a.b?>");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["alg"], "ES256");
        let input = URL_SAFE_NO_PAD
            .decode(value["input"].as_str().unwrap())
            .unwrap();
        assert_eq!(input, b"a.b?>");
    }

    #[test]
    fn answers_carry_a_signature_or_an_error_never_both() {
        assert_eq!(parse_answer("{\"signature\":\"abc\"}\n").unwrap(), "abc");
        let refused = parse_answer("{\"error\":\"AccessDenied\\nnext\"}").unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("the signer says: AccessDeniednext; fix that"),
            "{refused}"
        );
        for garbage in [
            "MEUCIQ...",
            "{}",
            "{\"signature\":\"a\",\"error\":\"b\"}",
            "[1]",
        ] {
            assert!(
                matches!(parse_answer(garbage), Err(PersistentError::Garbage(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_program_that_keeps_dying_is_started_again_at_once_then_only_after_a_pause() {
        let dir = tempfile::tempdir().unwrap();
        let source = KeySource::Env("K".into());
        let pem = crate::key::generate(crate::key::NewKey::P256).unwrap();
        let local = crate::signer::local::LocalSigner::new(
            crate::key::parse_pem(pem.expose().as_bytes(), &source).unwrap(),
            &source,
        )
        .unwrap();
        let public = dir.path().join("k.pub.pem");
        std::fs::write(&public, local.public_key().to_pem()).unwrap();
        let log = dir.path().join("starts");
        let script = format!("echo start >> '{}'; exit 3", log.display());
        let source = KeySource::SignCommand(Box::new(SignCommandSource {
            argv: vec!["sh".into(), "-c".into(), script],
            public_key_file: public,
            persistent: true,
        }));
        let KeySource::SignCommand(config) = &source else {
            unreachable!()
        };
        let signer = PersistentSigner::new(&source, config, Duration::from_secs(10)).unwrap();
        let starts = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .count()
        };
        for expected in 1..=2 {
            let error = signer.sign(b"a.b").unwrap_err().to_string();
            assert!(error.contains("exited before it greeted"), "{error}");
            assert_eq!(starts(), expected);
        }
        // Two failures in a row: the third request waits for the pause, without a start.
        let error = signer.sign(b"a.b").unwrap_err().to_string();
        assert!(
            error.contains("(sign_persistent): it failed 0s ago (the kept-running signer exited"),
            "{error}"
        );
        assert!(error.contains("and is started again in 1s"), "{error}");
        assert_eq!(starts(), 2);
    }

    #[test]
    fn backoff_starts_at_once_then_doubles_to_a_bound() {
        let pauses: Vec<u64> = (0..10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(pauses, [0, 0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
