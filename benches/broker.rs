//! Whole-process `get` through the token broker, side by side with a local `get`: what a
//! sandbox's git pays for not holding the key. Both are the real binary as git runs it (spawn,
//! request on stdin, answer on stdout); the local one reads its config and key and signs, the
//! sandboxed one connects to a running broker, which decides (reading the client's process
//! ancestry) and signs with the key it loaded at start. Each side runs its own fresh copy of
//! the binary (a copy long in the page cache starts measurably faster), runs are interleaved,
//! and medians are compared. Target: at most 1.5x the local `get`; a brokered `get` answered
//! with a reused token at most 1.1x one the broker signs with a local key; 1,000 gets for 10
//! repositories at most 10 signer calls.
//! `cargo bench --bench broker` (BENCH_ROUNDS=N to change the count).
//!
//! Then the serving model at scale: 10,000 sandboxes registered through the control API (each
//! registration's time, p50 and p99), the broker's RSS with them all served, and one sandbox's
//! `get` (straight on its socket, 1,000 times from 16 threads at once, the most requests one
//! sandbox may have in progress) unloaded and while
//! another sandbox floods its own socket from 8 threads: the two p99s compared. Targets:
//! registration p99 at most 10 ms, RSS at most 64 MiB, flooded p99 at most 2x unloaded.
//! BENCH_SANDBOXES=N changes the 10,000.

#[cfg(unix)]
mod support;

/// The broker serves Unix sockets: everything measured here needs them.
#[cfg(unix)]
mod unix {
    use super::support::{Broker, fresh_copy, median, rounds, run_once, write_private};
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use git_credential_codestorage::broker::control_client::request;
    use git_credential_codestorage::broker::server::MAX_PER_SANDBOX;

    use git_credential_codestorage::key::{self, NewKey};

    const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");
    const REQUEST: &[u8] =
        b"capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=agents/42/project.git\n\n";
    const TARGET: f64 = 1.5;
    const CACHED_TARGET: f64 = 1.1;
    const GETS: usize = 1000;

    pub fn main() {
        let rounds = rounds();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_private(
            &home.join("acme.pem"),
            key::generate(NewKey::P256).unwrap().expose(),
        );
        let org = "subject = \"bench\"\n[org.acme]\nkey_file = \"acme.pem\"\n";
        write_private(&home.join("local.toml"), org);
        // A sign_command that counts its calls, for the reuse figure.
        let calls = home.join("signer-calls");
        let counting = home.join("counting-sign");
        write_private(
            &counting,
            &format!(
                "#!/bin/sh\necho signed >> '{}'\nopenssl dgst -sha256 -sign '{}' | openssl base64 -A\n",
                calls.display(),
                home.join("acme.pem").display()
            ),
        );
        std::fs::set_permissions(&counting, std::fs::Permissions::from_mode(0o700)).unwrap();
        let exported = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(home.join("acme.pem"))
            .arg("-out")
            .arg(home.join("acme.pub.pem"))
            .status()
            .expect("openssl exports the public key (scripts/install-test-deps.sh installs it)");
        assert!(exported.success());
        let sandbox = |name: &str, org: &str, reuse: bool| {
            format!(
                "[sandbox.{name}]\nsocket = \"{}\"\norgs = [\"{org}\"]\nrepos = [\"agents/42/**\"]\nttl = \"15m\"\nreuse_tokens = {reuse}\n",
                home.join(format!("{name}.sock")).display()
            )
        };
        write_private(
            &home.join("broker.toml"),
            &format!(
                "{org}[org.counted]\nsign_command = [\"{}\"]\npublic_key_file = \"acme.pub.pem\"\n{}{}{}",
                counting.display(),
                sandbox("signing", "acme", false),
                sandbox("cached", "acme", true),
                sandbox("counted", "counted", true),
            ),
        );
        let local_program = fresh_copy(Path::new(HELPER), home, "local-get");
        let broker_program = fresh_copy(Path::new(HELPER), home, "broker");
        let _broker = Broker::start(&broker_program, &home.join("broker.toml"));

        let base = |program: &Path| {
            let mut command = Command::new(program);
            command
                .arg("get")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", home);
            command
        };
        let mut local = base(&local_program);
        local.env("CODESTORAGE_CONFIG", home.join("local.toml"));
        let sandboxed = |name: &str| {
            let mut command = base(&fresh_copy(Path::new(HELPER), home, &format!("{name}-get")));
            command
                .env("CODESTORAGE_BROKER", home.join(format!("{name}.sock")))
                // No config and no key: what a sandbox has.
                .env("CODESTORAGE_CONFIG", home.join("absent.toml"));
            command
        };

        let mut cases = [
            ("get, local key (ES256)", local, Vec::new()),
            (
                "get through the broker, signing each token (ES256)",
                sandboxed("signing"),
                Vec::new(),
            ),
            (
                "get through the broker, token reused",
                sandboxed("cached"),
                Vec::new(),
            ),
        ];
        for (_, command, _) in &mut cases {
            run_once(command, REQUEST); // warm the page cache
        }
        for _ in 0..rounds {
            for (_, command, times) in &mut cases {
                times.push(run_once(command, REQUEST));
            }
        }
        let local_median = median(&mut cases[0].2.clone());
        println!("{rounds} interleaved runs each, medians:\n");
        println!("| command | median | ratio to local get |");
        println!("| --- | --- | --- |");
        for (name, _, times) in &mut cases {
            let m = median(times);
            println!(
                "| {name} | {:.2} ms | {:.2} |",
                m.as_secs_f64() * 1000.0,
                m.as_secs_f64() / local_median.as_secs_f64()
            );
        }
        let signing = median(&mut cases[1].2).as_secs_f64();
        let ratio = signing / local_median.as_secs_f64();
        println!(
            "\nthrough the broker: {ratio:.2}x a local get (target at most {TARGET:.1}x: {})",
            if ratio <= TARGET { "met" } else { "NOT met" }
        );
        let cached = median(&mut cases[2].2).as_secs_f64() / signing;
        println!(
            "token reused: {cached:.2}x a brokered get that signs with a local key (target at most {CACHED_TARGET:.1}x: {})",
            if cached <= CACHED_TARGET {
                "met"
            } else {
                "NOT met"
            }
        );

        // 1,000 gets of one sandbox for 10 repositories within one token lifetime.
        let mut counted = sandboxed("counted");
        let probes = count_lines(&calls);
        for n in 0..GETS {
            let request = format!(
                "protocol=https\nhost=counted.code.storage\npath=agents/42/r{}.git\n\n",
                n % 10
            );
            run_once(&mut counted, request.as_bytes());
        }
        let signed = count_lines(&calls) - probes;
        println!(
            "{GETS} gets for 10 repositories: {signed} signer calls (target at most 10: {})",
            if signed <= 10 { "met" } else { "NOT met" }
        );
        drop(_broker);
        scale(&broker_program, home, org);
    }

    fn count_lines(path: &Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The `q` quantile of `times`, in milliseconds.
    fn quantile(times: &mut [Duration], q: f64) -> f64 {
        times.sort();
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[index].as_secs_f64() * 1000.0
    }

    /// One `get` straight on `socket`, as the sandbox's client sends it: its time, or none when
    /// the broker turned it away as busy (a thread of the last get may still hold its place for
    /// a moment after the answer).
    fn socket_get(socket: &Path) -> Option<Duration> {
        let started = Instant::now();
        let mut stream = UnixStream::connect(socket).unwrap();
        let mut request = b"get\n".to_vec();
        request.extend_from_slice(REQUEST);
        let mut answer = String::new();
        let sent = stream.write_all(&request);
        let read = stream.read_to_string(&mut answer);
        if answer.contains("most requests in progress") || sent.is_err() {
            return None;
        }
        read.unwrap();
        assert!(answer.contains("password="), "{answer}");
        Some(started.elapsed())
    }

    /// About 1,000 gets on `socket` from as many threads at once as one sandbox may have
    /// requests in progress: each one's time, and how many were turned away as busy.
    fn concurrent_gets(socket: &Path) -> (Vec<Duration>, usize) {
        let threads: Vec<_> = (0..MAX_PER_SANDBOX)
            .map(|_| {
                let socket = socket.to_owned();
                std::thread::spawn(move || {
                    (0..GETS / MAX_PER_SANDBOX)
                        .map(|_| socket_get(&socket))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Option<Duration>> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let busy = all.iter().filter(|t| t.is_none()).count();
        (all.into_iter().flatten().collect(), busy)
    }

    fn scale(program: &Path, home: &Path, org: &str) {
        let count: usize = std::env::var("BENCH_SANDBOXES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        let dir = home.join("sandboxes");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let control = home.join("control.sock");
        write_private(
            &home.join("scale.toml"),
            &format!(
                "control_socket = \"{}\"\nsandbox_dir = \"{}\"\n{org}",
                control.display(),
                dir.display()
            ),
        );
        let broker = Broker::start(program, &home.join("scale.toml"));
        let mut registrations = Vec::with_capacity(count);
        for i in 0..count {
            let body = serde_json::json!({"orgs": ["acme"], "repos": ["agents/42/**"]});
            let started = Instant::now();
            let (status, _) =
                request(&control, "PUT", &format!("/v1/sandboxes/s{i}"), Some(&body)).unwrap();
            registrations.push(started.elapsed());
            assert_eq!(status, 201);
        }
        let rss = std::fs::read_to_string(format!("/proc/{}/status", broker.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
            .unwrap_or_default();
        let calm = dir.join("s1/git.sock");
        let (mut unloaded, calm_busy) = concurrent_gets(&calm);
        let flooding = Arc::new(AtomicBool::new(true));
        let floods: Vec<_> = (0..8)
            .map(|_| {
                let (socket, flooding) = (dir.join("s2/git.sock"), flooding.clone());
                std::thread::spawn(move || {
                    while flooding.load(Ordering::Relaxed) {
                        if let Ok(mut s) = UnixStream::connect(&socket) {
                            let _ = s.write_all(b"garbage\n\n");
                            let _ = s.read_to_end(&mut Vec::new());
                        }
                    }
                })
            })
            .collect();
        let (mut flooded, flood_busy) = concurrent_gets(&calm);
        let delays = control_while_flooded(broker, &control);
        flooding.store(false, Ordering::Relaxed);
        floods.into_iter().for_each(|f| f.join().unwrap());
        let (p50, p99) = (
            quantile(&mut registrations, 0.5),
            quantile(&mut registrations, 0.99),
        );
        let (calm99, flood99) = (quantile(&mut unloaded, 0.99), quantile(&mut flooded, 0.99));
        println!("\n{count} sandboxes registered through the control API:\n");
        println!("| measure | value | target |");
        println!("| --- | --- | --- |");
        println!("| registration p50 | {p50:.2} ms | |");
        println!("| registration p99 | {p99:.2} ms | at most 10 ms |");
        println!("| broker RSS with {count} sandboxes | {rss} | at most 64 MiB |");
        println!(
            "| get p99, {GETS} from {MAX_PER_SANDBOX} threads, unloaded ({calm_busy} turned away as busy) | {calm99:.2} ms | |"
        );
        println!(
            "| get p99, same, another sandbox flooding ({flood_busy} busy) | {flood99:.2} ms ({:.2}x) | at most 2x |",
            flood99 / calm99
        );
        let whats = [
            "a registration",
            "SIGHUP to the reload's line",
            "SIGTERM to the line that it stops",
            "SIGTERM to the exit, every socket removed",
        ];
        for (what, took) in whats.iter().zip(delays) {
            println!(
                "| {what}, another sandbox flooding | {:.2} ms | at most 100 ms |",
                took.as_secs_f64() * 1000.0
            );
        }
    }

    /// While another sandbox floods its socket: how long a registration, a reload (`SIGHUP`
    /// until the broker says it reloaded) and a stop (`SIGTERM` until the broker says it stops,
    /// and until it has removed every socket and exited) take.
    fn control_while_flooded(mut broker: Broker, control: &Path) -> [Duration; 4] {
        use rustix::process::{Pid, Signal, kill_process};
        let body = serde_json::json!({"orgs": ["acme"], "repos": ["agents/42/**"]});
        let started = Instant::now();
        let (status, _) = request(control, "PUT", "/v1/sandboxes/flooded", Some(&body)).unwrap();
        let register = started.elapsed();
        assert_eq!(status, 201);
        let pid = Pid::from_raw(broker.0.id() as i32).unwrap();
        while broker.1.try_recv().is_ok() {}
        let started = Instant::now();
        kill_process(pid, Signal::HUP).unwrap();
        wait_for_line(&broker.1, "reloaded");
        let reload = started.elapsed();
        let started = Instant::now();
        kill_process(pid, Signal::TERM).unwrap();
        wait_for_line(&broker.1, "stopping on signal");
        let stopping = started.elapsed();
        broker.0.wait().unwrap();
        [register, reload, stopping, started.elapsed()]
    }

    /// Waits for the broker to write a line containing `text`.
    fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) {
        loop {
            let line = lines.recv_timeout(Duration::from_secs(60)).unwrap();
            if line.contains(text) {
                return;
            }
        }
    }
}

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("broker bench: the broker serves Unix sockets, which this system lacks");
}
