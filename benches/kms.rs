//! What a token costs when the organisation's key is in AWS KMS (moto's local server): the
//! contrib signer run once per token (`sign_command`) against the same program kept running
//! (`sign_persistent = true`), each behind a broker that reuses no token, beside a broker
//! signing with a local key file. Whole-process brokered `get`s as git runs them, fresh copies
//! of the binary, interleaved; the signing cost of a mode is its median minus the local key's.
//! Target: kept running at least 10x cheaper per token than one-shot.
//! Needs `scripts/install-test-deps.sh` (moto and boto3 in target/kms-venv).
//! `cargo bench --bench kms` (BENCH_ROUNDS=N to change the count; default 30 here, since a
//! one-shot signature starts Python).

#[cfg(unix)]
mod support;

#[cfg(unix)]
#[path = "../tests/support/kms.rs"]
#[allow(dead_code)]
mod kms;

#[cfg(unix)]
mod unix {
    use super::kms::{Moto, signer_argv};
    use super::support::{Broker, fresh_copy, median, run_once, write_private};
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");
    const TARGET: f64 = 10.0;
    const CONCURRENT: usize = 4;

    fn sandbox(name: &str, socket: &Path) -> String {
        format!(
            "[sandbox.{name}]\nsocket = \"{}\"\norgs = [\"acme\"]\nrepos = [\"agents/**\"]\nttl = \"15m\"\nreuse_tokens = false\n",
            socket.display()
        )
    }

    pub fn main() {
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(if std::env::args().any(|a| a == "--bench") {
                30
            } else {
                2
            });
        let moto = Moto::start();
        let alias = moto.create_p256_key("codestorage-bench");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::write(home.join("kms.pub.pem"), moto.public_key_pem(&alias)).unwrap();
        write_private(
            &home.join("acme.pem"),
            git_credential_codestorage::key::generate(
                git_credential_codestorage::key::NewKey::P256,
            )
            .unwrap()
            .expose(),
        );
        let orgs = [
            ("local key file", "key_file = \"acme.pem\"".to_owned()),
            (
                "one-shot sign_command",
                format!(
                    "sign_command = {:?}\npublic_key_file = \"kms.pub.pem\"",
                    signer_argv(&[&alias])
                ),
            ),
            (
                "sign_persistent",
                format!(
                    "sign_command = {:?}\npublic_key_file = \"kms.pub.pem\"\nsign_persistent = true",
                    signer_argv(&["--persistent", &alias])
                ),
            ),
        ];
        let broker_program = fresh_copy(Path::new(HELPER), home, "broker");
        let mut brokers = Vec::new();
        let mut cases = Vec::new();
        for (n, (name, key)) in orgs.iter().enumerate() {
            let socket = home.join(format!("s{n}.sock"));
            let config = home.join(format!("broker-{n}.toml"));
            write_private(
                &config,
                &format!("[org.acme]\n{key}\n{}", sandbox("bench", &socket)),
            );
            brokers.push(Broker::start_with(&broker_program, &config, &moto.env()));
            let mut command =
                Command::new(fresh_copy(Path::new(HELPER), home, &format!("get-{n}")));
            command
                .arg("get")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", home)
                .env("CODESTORAGE_CONFIG", home.join("absent.toml"))
                .env("CODESTORAGE_BROKER", &socket);
            cases.push((*name, command, Vec::<Duration>::new()));
        }
        let request = |round: usize| {
            format!("protocol=https\nhost=acme.code.storage\npath=agents/r{round}.git\n\n")
        };
        for (_, command, _) in &mut cases {
            run_once(command, request(0).as_bytes());
        }
        for round in 0..rounds {
            for (_, command, times) in &mut cases {
                times.push(run_once(command, request(round).as_bytes()));
            }
        }
        let medians: Vec<Duration> = cases.iter_mut().map(|(_, _, t)| median(t)).collect();
        println!("{rounds} interleaved brokered gets each (no token reuse), medians:\n");
        println!("| broker signs with | median get | signing cost (minus local key) |");
        println!("| --- | --- | --- |");
        for ((name, _, _), m) in cases.iter().zip(&medians) {
            let cost = m.saturating_sub(medians[0]);
            println!(
                "| {name} | {:.2} ms | {:.2} ms |",
                m.as_secs_f64() * 1e3,
                cost.as_secs_f64() * 1e3
            );
        }
        // Requests to one kept-running signer are serialised: how 4 sandboxes at once fare.
        let socket = home.join("s2.sock");
        let started = std::time::Instant::now();
        let threads: Vec<_> = (0..CONCURRENT)
            .map(|t| {
                let (socket, home) = (socket.clone(), home.to_owned());
                std::thread::spawn(move || {
                    let mut command = Command::new(HELPER);
                    command
                        .arg("get")
                        .env_clear()
                        .env("PATH", std::env::var("PATH").unwrap_or_default())
                        .env("HOME", &home)
                        .env("CODESTORAGE_CONFIG", home.join("absent.toml"))
                        .env("CODESTORAGE_BROKER", &socket);
                    for round in 0..rounds {
                        let request = format!(
                            "protocol=https\nhost=acme.code.storage\npath=agents/t{t}/r{round}.git\n\n"
                        );
                        run_once(&mut command, request.as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let per_token = started.elapsed().as_secs_f64() / (CONCURRENT * rounds) as f64;
        println!(
            "\nsign_persistent, {CONCURRENT} sandboxes at once: {:.2} ms of wall time per token ({:.0} tokens/s; one at a time: {:.2} ms each)",
            per_token * 1e3,
            1.0 / per_token,
            medians[2].as_secs_f64() * 1e3
        );
        let one_shot = medians[1].saturating_sub(medians[0]).as_secs_f64();
        let kept = medians[2]
            .saturating_sub(medians[0])
            .as_secs_f64()
            .max(1e-6);
        let ratio = one_shot / kept;
        println!(
            "\nper-token signing cost, one-shot / kept running: {ratio:.1}x (target at least {TARGET:.0}x: {})",
            if ratio >= TARGET { "met" } else { "NOT met" }
        );
    }
}

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("kms bench: the broker serves Unix sockets, which this system lacks");
}
