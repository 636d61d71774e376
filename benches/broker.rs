//! Whole-process `get` through the token broker, side by side with a local `get`: what a
//! sandbox's git pays for not holding the key. Both are the real binary as git runs it (spawn,
//! request on stdin, answer on stdout); the local one reads its config and key and signs, the
//! sandboxed one connects to a running broker, which decides (reading the client's process
//! ancestry) and signs with the key it loaded at start. Each side runs its own fresh copy of
//! the binary (a copy long in the page cache starts measurably faster), runs are interleaved,
//! and medians are compared. Target: at most 1.5x the local `get`.
//! `cargo bench --bench broker` (BENCH_ROUNDS=N to change the count).

#[cfg(unix)]
mod support;

/// The broker serves Unix sockets: everything measured here needs them.
#[cfg(unix)]
mod unix {
    use super::support::{fresh_copy, median, rounds, run_once};
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

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
