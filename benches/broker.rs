//! Whole-process `get` through the token broker, side by side with a local `get`: what a
//! sandbox's git pays for not holding the key. Both are the real binary as git runs it (spawn,
//! request on stdin, answer on stdout); the local one reads its config and key and signs, the
//! sandboxed one connects to a running broker, which decides (reading the client's process
//! ancestry) and signs with the key it loaded at start. Each side runs its own fresh copy of
//! the binary (a copy long in the page cache starts measurably faster), runs are interleaved,
//! and medians are compared. Target: at most 1.5x the local `get`.
//! `cargo bench --bench broker` (BENCH_ROUNDS=N to change the count).
//!
//! Then the serving model at scale: 10,000 sandboxes registered through the control API (each
//! registration's time, p50 and p99), the broker's RSS with them all served, and one sandbox's
//! `get` (straight on its socket, 1,000 times from 50 threads at once) unloaded and while
//! another sandbox floods its own socket from 8 threads: the two p99s compared. Targets:
//! registration p99 at most 10 ms, RSS at most 64 MiB, flooded p99 at most 2x unloaded.
//! BENCH_SANDBOXES=N changes the 10,000.

#[cfg(unix)]
mod support;

/// The broker serves Unix sockets: everything measured here needs them.
#[cfg(unix)]
mod unix {
    use super::support::{fresh_copy, median, rounds, run_once};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use git_credential_codestorage::broker::control_client::request;

    use git_credential_codestorage::key::{self, NewKey};

    const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");
    const REQUEST: &[u8] =
        b"capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=agents/42/project.git\n\n";
    const TARGET: f64 = 1.5;

    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The broker on `config`, once it says it is ready; killed when dropped.
    struct Broker(Child);

    impl Broker {
        fn start(program: &Path, config: &Path) -> Self {
            let mut child = Command::new(program)
                .args(["broker", "--audit-log", "/dev/null", "--config"])
                .arg(config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            loop {
                let line = lines
                    .next()
                    .expect("the broker stopped before it was ready")
                    .unwrap();
                if line.contains("broker: ready:") {
                    break;
                }
            }
            // Its later lines (reloads, a stop) must not block it on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            Self(child)
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

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
        let socket = home.join("agent-42.sock");
        write_private(
            &home.join("broker.toml"),
            &format!(
                "{org}[sandbox.agent-42]\nsocket = \"{}\"\norgs = [\"acme\"]\nrepos = [\"agents/42/**\"]\nttl = \"15m\"\n",
                socket.display()
            ),
        );
        let local_program = fresh_copy(Path::new(HELPER), home, "local-get");
        let client_program = fresh_copy(Path::new(HELPER), home, "sandbox-get");
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
        let mut sandboxed = base(&client_program);
        sandboxed
            .env("CODESTORAGE_BROKER", &socket)
            // No config and no key: what a sandbox has.
            .env("CODESTORAGE_CONFIG", home.join("absent.toml"));

        let mut cases = [
            ("get, local key (ES256)", local, Vec::new()),
            ("get through the broker (ES256)", sandboxed, Vec::new()),
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
        let ratio = median(&mut cases[1].2).as_secs_f64() / local_median.as_secs_f64();
        println!(
            "\nthrough the broker: {ratio:.2}x a local get (target at most {TARGET:.1}x: {})",
            if ratio <= TARGET { "met" } else { "NOT met" }
        );
        drop(_broker);
        scale(&broker_program, home, org);
    }

    /// The `q` quantile of `times`, in milliseconds.
    fn quantile(times: &mut [Duration], q: f64) -> f64 {
        times.sort();
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[index].as_secs_f64() * 1000.0
    }

    /// One `get` straight on `socket`, as the sandbox's client sends it.
    fn socket_get(socket: &Path) -> Duration {
        let started = Instant::now();
        let mut stream = UnixStream::connect(socket).unwrap();
        stream.write_all(b"get\n").unwrap();
        stream.write_all(REQUEST).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("password="), "{answer}");
        started.elapsed()
    }

    /// 1,000 gets on `socket` from 50 threads at once: each one's time.
    fn concurrent_gets(socket: &Path) -> Vec<Duration> {
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let socket = socket.to_owned();
                std::thread::spawn(move || (0..20).map(|_| socket_get(&socket)).collect::<Vec<_>>())
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
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
        let mut unloaded = concurrent_gets(&calm);
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
        let mut flooded = concurrent_gets(&calm);
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
        println!("| get p99, 1,000 from 50 threads, unloaded | {calm99:.2} ms | |");
        println!(
            "| get p99, same, another sandbox flooding | {flood99:.2} ms ({:.2}x) | at most 2x |",
            flood99 / calm99
        );
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
