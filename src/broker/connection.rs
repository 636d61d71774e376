//! One connection: read the request, decide with the sandbox's policy, sign, audit, answer.
//! Runs on a thread of its own, never panics on what the client sends, and every outcome is
//! one audit line; a token is never sent that the audit log does not show.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::REQUEST_TIMEOUT;
use super::audit::{Audit, Decision, Record, Throttle};
use super::describe::Description;
use super::gate::Gate;
use super::load::Loaded;
use super::message::{self, Action, error_answer};
use super::metrics::{Counters, Metrics};
use super::peer::{self, Peer};
use super::policy::{self, Sandbox};
use super::server::Slot;
use crate::env::Env;
use crate::operation::{self, Operation};
use crate::protocol::GitAction;
use crate::protocol::Request;
use crate::resolve::Disposition;
use crate::secret::Secret;

/// What a connection's thread needs.
pub struct Job {
    /// The config and keys the connection was accepted under.
    pub loaded: Arc<Loaded>,
    /// The sandbox whose socket it came in on.
    pub sandbox: Arc<Sandbox>,
    /// Closed when the sandbox is removed, its policy replaced or its lease ended.
    pub gate: Arc<Gate>,
    /// The sandbox's counters.
    pub counters: Arc<Counters>,
    /// The broker's counters.
    pub metrics: Arc<Metrics>,
    /// Where the outcome is written.
    pub audit: Arc<Audit>,
    /// The sandbox's budget of audit lines for connections that get no token.
    pub throttle: Arc<Throttle>,
    /// The environment the config's settings are read with.
    pub env: Arc<dyn Env + Send + Sync>,
    /// The connection's place among those served, given back when the job ends.
    pub slot: Slot,
}

/// Turns a connection away when the broker is at its limit, without a thread.
pub fn busy(stream: UnixStream, sandbox: &str, why: &str, audit: &Audit, throttle: &Throttle) {
    let peer = peer::of(&stream);
    let reason = format!("{why}; try again in a moment");
    // Fresh socket buffers take these few bytes at once; never block the accept loop on it.
    let _ = stream.set_nonblocking(true);
    // Take in what the client already sent: a socket closed with unread bytes resets its peer,
    // which then reads the reset instead of this answer.
    let mut sink = [0u8; 4096];
    let mut taken = 0;
    while taken < super::MAX_REQUEST {
        match (&stream).read(&mut sink) {
            Ok(n) if n > 0 => taken += n,
            _ => break,
        }
    }
    let _ = (&stream).write_all(error_answer(&reason).expose());
    let _ = (&stream).write_all(message::ANSWER_END);
    let now = crate::clock::now();
    let mut record = Record::new(now, sandbox, Decision::Error);
    record.peer_uid = peer.uid;
    record.peer_pid = peer.pid;
    record.reason = Some(reason);
    let _ = throttle.write(audit, &record, now);
}

/// Serves one connection: read, decide, sign, audit, answer.
pub fn handle(mut stream: UnixStream, job: Job) {
    let started = Instant::now();
    let peer = peer::of(&stream);
    let now = crate::clock::now();
    let mut record = Record::new(now, &job.sandbox.name, Decision::Error);
    record.peer_uid = peer.uid;
    record.peer_pid = peer.pid;
    let deadline = started + REQUEST_TIMEOUT;
    let answer = respond(&mut stream, &job, peer, now, deadline, &mut record);
    if record.decision != Decision::Granted {
        job.counters.count(record.decision, now);
        let _ = job.throttle.write(&job.audit, &record, now);
        send(&mut stream, &answer, deadline);
        return;
    }
    // The token leaves only while the sandbox's policy holds, and only with its audit line.
    let sent = job.gate.while_open(crate::clock::now(), || {
        if let Err(e) = job.audit.write(&record) {
            let reason =
                format!("the broker cannot write its audit log ({e}); no token is handed out");
            send(&mut stream, &error_answer(&reason), deadline);
            return Decision::Error;
        }
        send(&mut stream, &answer, deadline);
        Decision::Granted
    });
    let decision = match sent {
        Ok(decision) => decision,
        Err(closed) => {
            // Closed while this request was decided: the token is not sent.
            let reason = closed.reason(&job.sandbox.name);
            record.decision = Decision::Refused;
            record.scopes.clear();
            record.expires = None;
            record.reason = Some(reason.clone());
            let _ = job.throttle.write(&job.audit, &record, now);
            send(&mut stream, &error_answer(&reason), deadline);
            Decision::Refused
        }
    };
    job.counters.count(decision, now);
    job.metrics.observe(started.elapsed());
}

fn send(stream: &mut UnixStream, answer: &Secret<Vec<u8>>, deadline: Instant) {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let _ = stream.set_write_timeout(Some(left));
    let _ = stream
        .write_all(answer.expose())
        .and_then(|()| stream.write_all(message::ANSWER_END));
}

/// `reason` as the audit record's and the user's answer.
fn fail(record: &mut Record, reason: String) -> Secret<Vec<u8>> {
    let answer = error_answer(&reason);
    record.reason = Some(reason);
    answer
}

/// Decides the answer to the request on `stream`, filling in `record`.
fn respond(
    stream: &mut UnixStream,
    job: &Job,
    peer: Peer,
    now: i64,
    deadline: Instant,
    record: &mut Record,
) -> Secret<Vec<u8>> {
    let message::Incoming {
        action,
        request,
        hint,
    } = match message::read_request(stream, deadline) {
        Ok(read) => read,
        Err(e) => return fail(record, e.to_string()),
    };
    record.action = Some(action.as_str());
    record.host = request.host.clone();
    if let Err(closed) = job.gate.check(now) {
        record.decision = Decision::Refused;
        return fail(record, closed.reason(&job.sandbox.name));
    }
    match action {
        Action::Describe => {
            record.decision = Decision::Noted;
            let description = Description::of(&job.sandbox, &job.loaded.config);
            // A struct of strings and lists always serializes.
            let json = serde_json::to_string(&description).unwrap_or_default();
            Secret::new(format!("{json}\n").into_bytes())
        }
        Action::Git(GitAction::Store) => {
            record.decision = Decision::Noted;
            Secret::new(Vec::new())
        }
        Action::Git(GitAction::Erase) => {
            record.decision = Decision::Noted;
            record.reason = Some("the server refused a token".into());
            // `erase` explains a refused token of ours: the same line `erase` prints.
            let config = Some(&job.loaded.config);
            let explained =
                crate::credential::explain_refusal(&request, config, now, &mut Vec::new);
            message::error_lines(explained.as_deref())
        }
        Action::Git(GitAction::Get) => get(job, &request, peer, hint, now, record),
    }
}

/// The operation a token is for: `read` when the sandbox names itself a reader, whatever its
/// processes show; otherwise what they show (`detected`), which a sandbox's `write` never
/// widens: the sandbox may narrow its own tokens, never widen them.
fn narrowed(hint: Option<Operation>, detected: impl FnOnce() -> Operation) -> Operation {
    match hint {
        Some(Operation::Read) => Operation::Read,
        _ => detected(),
    }
}

/// Answers `get`: the sandbox's policy decides, then the end of `get` signs and answers.
fn get(
    job: &Job,
    request: &Request,
    peer: Peer,
    hint: Option<Operation>,
    now: i64,
    record: &mut Record,
) -> Secret<Vec<u8>> {
    let config = &job.loaded.config;
    let decided = policy::decide(config, &job.sandbox, request, job.env.as_ref(), || {
        narrowed(hint, || {
            peer.pid.map_or(Operation::Unknown, |pid| {
                operation::detect_for_pid(pid).operation
            })
        })
    });
    let mut grant = match decided {
        Ok(grant) => grant,
        Err(denied) => {
            record.org = denied.org;
            record.repo = denied.repo;
            record.reason = Some(denied.reason.clone());
            return match denied.disposition {
                Disposition::Decline => {
                    record.decision = Decision::Declined;
                    Secret::new(Vec::new())
                }
                Disposition::Quit | Disposition::DeclineWithHint => {
                    record.decision = Decision::Refused;
                    error_answer(&denied.reason)
                }
            };
        }
    };
    if hint == Some(Operation::Read) {
        // Named by the sandbox: a read narrows even where least privilege is off, as in `get`.
        grant.settings.least_privilege = true;
        grant.operation = Operation::Read;
    }
    let org = grant.settings.org.clone();
    record.org = Some(org.to_string());
    record.repo = Some(grant.settings.repo.clone());
    record.operation = Some(grant.operation.as_str());
    let Some(signer) = job.loaded.signers.get(org.as_str()) else {
        return fail(record, format!("no key loaded for organisation \"{org}\""));
    };
    let reuse = job.sandbox.reuse_tokens.unwrap_or(config.reuse_tokens);
    let reuse = reuse.then_some((job.loaded.reuse.as_ref(), job.sandbox.name.as_str()));
    let mut reused = false;
    let sign = |settings: &_| {
        super::reuse::sign(reuse, settings, signer.as_ref(), now).map(|(minted, was)| {
            reused = was;
            minted
        })
    };
    match crate::credential::answer(request, grant.settings, grant.operation, sign) {
        Ok(answered) => {
            record.decision = Decision::Granted;
            record.reused = Some(reused);
            record.scopes = answered.claims.scopes.iter().map(|s| s.as_str()).collect();
            record.expires = Some(answered.claims.exp);
            let mut answer = Secret::new(Vec::with_capacity(1024));
            // Writing to a Vec cannot fail.
            let _ = answered.response.write_to(answer.expose_mut());
            answer
        }
        // The key lives with the broker, so the fix is its operator's, not the sandbox's:
        // say whose failure it is before what failed.
        Err(e) => {
            job.metrics
                .signer_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            fail(record, format!("the token broker could not sign: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MAX_REQUEST;
    use crate::broker::load::testing::{Fixture, fixture};
    use crate::env::MapEnv;
    use std::io::{self, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_sandbox_s_hint_narrows_to_read_and_never_widens() {
        let write = || Operation::Write;
        let read = || Operation::Read;
        assert_eq!(narrowed(Some(Operation::Read), write), Operation::Read);
        assert_eq!(narrowed(Some(Operation::Write), read), Operation::Read);
        assert_eq!(narrowed(None, write), Operation::Write);
        assert_eq!(
            narrowed(Some(Operation::Write), || Operation::Unknown),
            Operation::Unknown
        );
    }

    fn gate(closed: bool) -> Gate {
        let gate = Gate::open(None);
        if closed {
            gate.close(crate::broker::gate::Closed::Removed);
        }
        gate
    }

    /// Sends `input` on one end of a socket pair served by `handle`; returns the answer and
    /// the audit record.
    fn exchange(f: &Fixture, input: &[u8], revoked: bool) -> (String, serde_json::Value) {
        let (mut client, server) = UnixStream::pair().unwrap();
        let global = Arc::new(AtomicUsize::new(0));
        let per = Arc::new(AtomicUsize::new(0));
        let job = Job {
            loaded: f.loaded.clone(),
            sandbox: Arc::new(f.loaded.config.sandboxes[0].clone()),
            gate: Arc::new(gate(revoked)),
            counters: Arc::default(),
            metrics: Arc::default(),
            throttle: Arc::default(),
            audit: f.audit.clone(),
            env: Arc::new(MapEnv::default()),
            slot: Slot::take(&global, &per).unwrap(),
        };
        // A request larger than the socket's buffer is written while the server reads it.
        let input = input.to_vec();
        let mut writer = client.try_clone().unwrap();
        let writing = std::thread::spawn(move || {
            // The server stops reading after MAX_REQUEST bytes; the rest may meet a closed socket.
            let _ = writer.write_all(&input);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        handle(server, job);
        assert_eq!(global.load(Ordering::SeqCst), 0, "the slot is given back");
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        writing.join().unwrap();
        let lines = f.lines.lock().unwrap();
        let last = String::from_utf8_lossy(&lines)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        (answer, serde_json::from_str(&last).unwrap())
    }

    #[test]
    fn a_get_is_signed_audited_and_never_logged_as_a_token() {
        let f = fixture("");
        let (answer, record) = exchange(
            &f,
            b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n",
            false,
        );
        let token = answer
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap_or_else(|| panic!("{answer}"));
        let claims = crate::token::decode_unverified(token)
            .unwrap()
            .claims
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.repo.as_str()),
            ("sandbox:a", "agents/a/x")
        );
        assert_eq!(claims.exp - claims.iat, 600);
        assert_eq!(record["decision"], "granted");
        assert_eq!(record["peer_pid"], std::process::id());
        assert_eq!(record["expires"], claims.exp);
        assert_eq!(record["action"], "get");
        assert!(!String::from_utf8_lossy(&f.lines.lock().unwrap()).contains(token));
    }

    #[test]
    fn garbage_oversized_and_revoked_requests_get_error_answers() {
        let f = fixture("");
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (b"\xff\xfe\n\n".to_vec(), false, "does not start with get"),
            (b"get\nhost=a\rb\n\n".to_vec(), false, "carriage return"),
            (b"get\nnoequals\n\n".to_vec(), false, "key=value"),
            (vec![b'x'; MAX_REQUEST + 10], false, "larger than"),
            (b"".to_vec(), false, "does not start with get"),
            (
                b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n".to_vec(),
                true,
                "was removed",
            ),
        ];
        for (input, revoked, words) in cases {
            let (answer, record) = exchange(&f, &input, revoked);
            assert!(
                answer.starts_with("error=") && answer.ends_with("quit=1\n\n"),
                "{answer}"
            );
            assert!(answer.contains(words), "{words}: {answer}");
            assert!(
                record["reason"].as_str().unwrap().contains(words),
                "{record}"
            );
        }
    }

    /// An audit log that cannot be written.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_token_is_handed_out_that_the_audit_log_does_not_show() {
        let mut f = fixture("");
        f.audit = Arc::new(Audit::to_writer(Box::new(Broken)));
        let (mut client, server) = UnixStream::pair().unwrap();
        let global = Arc::new(AtomicUsize::new(0));
        let job = Job {
            loaded: f.loaded.clone(),
            sandbox: Arc::new(f.loaded.config.sandboxes[0].clone()),
            gate: Arc::new(gate(false)),
            counters: Arc::default(),
            metrics: Arc::default(),
            throttle: Arc::default(),
            audit: f.audit.clone(),
            env: Arc::new(MapEnv::default()),
            slot: Slot::take(&global, &Arc::default()).unwrap(),
        };
        client
            .write_all(b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n")
            .unwrap();
        handle(server, job);
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(
            answer,
            "error=the broker cannot write its audit log (disk full); no token is handed out\nquit=1\n\n"
        );
    }

    #[test]
    fn describe_answers_the_sandbox_s_own_policy_and_nothing_of_the_key() {
        let f = fixture("push_branches = [\"agents/a/*\"]\n");
        let (answer, record) = exchange(&f, b"describe\n\n", false);
        let json = answer
            .strip_suffix("\n\n")
            .unwrap_or_else(|| panic!("{answer:?}"));
        let d: Description = serde_json::from_str(json).unwrap();
        assert_eq!(
            d,
            Description::of(&f.loaded.config.sandboxes[0], &f.loaded.config)
        );
        assert_eq!(
            (d.sandbox.as_str(), d.hosts.as_slice(), d.ttl.as_deref()),
            ("a", &["acme.code.storage".to_owned()][..], Some("10m"))
        );
        assert_eq!(d.push_branches, ["refs/heads/agents/a/*"]);
        assert!(!answer.contains("acme.pem"), "{answer}");
        assert_eq!(
            (&record["action"], &record["decision"]),
            (&serde_json::json!("describe"), &serde_json::json!("noted"))
        );
        let (answer, _) = exchange(&f, b"describe\n\n", true);
        assert!(answer.contains("was removed"), "{answer}");
    }

    #[test]
    fn store_is_noted_and_erase_explains_a_refused_token() {
        let f = fixture("");
        let (answer, record) = exchange(
            &f,
            b"store\nprotocol=https\nhost=acme.code.storage\n\n",
            false,
        );
        assert_eq!(
            (answer.as_str(), &record["decision"]),
            ("\n", &serde_json::json!("noted"))
        );
        let (granted, _) = exchange(
            &f,
            b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n",
            false,
        );
        let token = granted
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap();
        let erase = format!(
            "erase\nprotocol=https\nhost=acme.code.storage\nusername=t\npassword={token}\n\n"
        );
        let (answer, record) = exchange(&f, erase.as_bytes(), false);
        assert!(
            answer.starts_with("error=acme.code.storage refused the token"),
            "{answer}"
        );
        assert!(!answer.contains(token));
        assert_eq!(record["action"], "erase");
    }
}
