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

#[cfg(unix)]
mod support;

/// The broker serves Unix sockets: everything measured here needs them.
#[cfg(unix)]
mod unix {
    use super::support::{Broker, fresh_copy, median, rounds, run_once, write_private};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

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
    }

    fn count_lines(path: &Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
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
