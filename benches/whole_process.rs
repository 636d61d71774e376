//! Whole-process `get`, as git runs it (spawn, read stdin, read config and key, sign, print),
//! side by side with git's own `credential-store get` on a one-line store file: the floor a
//! credential helper can reach, since it only reads a file.
//!
//! Three programs are timed: the helper as `cargo bench` builds it (linked dynamically), the
//! static binary `./install.sh` builds, and `git-credential-store` from `git --exec-path`. Every
//! one is copied fresh into a temporary directory first, because an executable that has sat in the
//! page cache for a while takes 6-8 more page faults per start than a fresh copy, which would
//! tilt the comparison towards whichever file is newer. Runs are interleaved (each round runs
//! every case once, from a rotating start) so that all cases share whatever else the machine is
//! doing, and medians are reported.
//!
//! The ES256 key is timed twice with each build: from a key file, and held by a real
//! `ssh-agent` the bench starts on a private socket (the key made, `ssh-add`ed and its file
//! deleted, `key_agent = "SHA256:…"` in the config), so the two rows show what the agent's socket
//! round trip and signature cost.
//!
//! `cargo bench --bench whole_process`; BENCH_ROUNDS=N changes the number of rounds (default
//! 300), BENCH_STATIC_HELPER=PATH times that binary instead of building one with install.sh.

// A real ssh-agent on a private socket, stopped when dropped: the tests' own fixture.
#[cfg(unix)]
#[path = "../tests/support/ssh_agent.rs"]
mod ssh_agent_support;
#[cfg(unix)]
mod support;

/// The helper runs through Unix shells, sockets and agents here: everything needs Unix.
#[cfg(unix)]
mod unix {
    use super::ssh_agent_support;
    use super::support::{fresh_copy, median, rounds, run_once};

    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");
    const REQUEST: &[u8] = b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\n\n";
    /// The name of the agent-held key's rows.
    const AGENT_ROW: &str = "ES256 (P-256) in ssh-agent";
    const STORE_REQUEST: &[u8] =
        b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=acme.code.storage\n\n";

    struct Case {
        name: String,
        command: Command,
        stdin: &'static [u8],
        times: Vec<Duration>,
    }

    /// Peak resident set in KiB, from GNU time when the machine has it.
    fn peak_rss_kib(command: &Command, stdin: &[u8]) -> Option<u64> {
        if !Path::new("/usr/bin/time").exists() {
            return None;
        }
        let mut timed = Command::new("/usr/bin/time");
        timed
            .arg("-f")
            .arg("%M")
            .arg(command.get_program())
            .args(command.get_args())
            .env_clear();
        for (name, value) in command.get_envs() {
            if let Some(value) = value {
                timed.env(name, value);
            }
        }
        let mut child = timed
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(stdin).ok()?;
        let output = child.wait_with_output().ok()?;
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()?
            .trim()
            .parse()
            .ok()
    }

    /// The static binary, built exactly as a user's `./install.sh` builds it, into a target
    /// directory of its own under the test target directory (built once, then reused).
    fn static_helper(scratch: &Path) -> PathBuf {
        if let Some(path) = std::env::var_os("BENCH_STATIC_HELPER") {
            return PathBuf::from(path);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prefix = scratch.join("install");
        eprintln!("building the static helper with ./install.sh (minutes the first time)...");
        let output = Command::new("bash")
            .arg(root.join("install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist"),
            )
            .env_remove("CODESTORAGE_INSTALL_BINARY")
            .output()
            .expect("run install.sh");
        assert!(
            output.status.success(),
            "install.sh failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report = String::from_utf8_lossy(&output.stdout);
        if let Some(line) = report.lines().find(|l| l.starts_with("building")) {
            eprintln!("{line}");
        }
        prefix.join("bin/git-credential-codestorage")
    }

    fn git_exec_path() -> PathBuf {
        let output = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git");
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    }

    pub fn main() {
        let rounds = rounds();
        let scratch = tempfile::tempdir().unwrap();
        let home = scratch.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let static_built = static_helper(scratch.path());

        // Fresh copies of all three programs, made together just before measuring. git's
        // credential-store is the git executable itself, which dispatches on its name.
        let bin = scratch.path().join("bin");
        let store = fresh_copy(
            &git_exec_path().join("git-credential-store"),
            &bin.join("store"),
            "git-credential-store",
        );
        let dynamic = fresh_copy(
            Path::new(HELPER),
            &bin.join("dynamic"),
            "git-credential-codestorage",
        );
        let fixed = fresh_copy(
            &static_built,
            &bin.join("static"),
            "git-credential-codestorage",
        );

        // Keys as users make them (keygen), and an RSA key from the fixtures (keygen makes none).
        let keygen = |file: &str, extra: &[&str]| {
            let path = home.join(file);
            let status = Command::new(&dynamic)
                .args(["keygen", "--org", "acme", "--out"])
                .arg(&path)
                .args(extra)
                .env("HOME", &home)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "keygen {file}");
            path
        };
        let rsa = home.join("rs256.pem");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa2048.pkcs8.pem"),
            &rsa,
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rsa, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let keys = [
            ("ES256 (P-256)", keygen("es256.pem", &[])),
            ("EdDSA (Ed25519)", keygen("eddsa.pem", &["--ed25519"])),
            ("RS256 (RSA-2048)", rsa),
        ];
        // A P-256 key that lives only in the agent: made by keygen, added, its file deleted.
        let agent = ssh_agent_support::SshAgent::start();
        let agent_fingerprint = agent.add_and_delete(&keygen("agent.pem", &[]));

        // A token-sized password, as the store would hold one of ours.
        let store_file = home.join("store");
        std::fs::write(
            &store_file,
            format!("https://t:{}@acme.code.storage\n", "x".repeat(420)),
        )
        .unwrap();

        let base = |program: &Path| {
            let mut command = Command::new(program);
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("GIT_CONFIG_NOSYSTEM", "1");
            command
        };
        let mut cases = Vec::new();
        let mut store_command = base(&store);
        store_command.arg("--file").arg(&store_file).arg("get");
        cases.push(Case {
            name: "git credential-store get".to_owned(),
            command: store_command,
            stdin: STORE_REQUEST,
            times: Vec::new(),
        });
        let agent_config = home.join("agent.toml");
        std::fs::write(
            &agent_config,
            format!("subject = \"bench\"\n[org.acme]\nkey_agent = \"{agent_fingerprint}\"\n"),
        )
        .unwrap();
        let mut configs: Vec<(String, PathBuf)> = Vec::new();
        for (alg, key) in &keys {
            let config = home.join(key.file_name().unwrap()).with_extension("toml");
            std::fs::write(
                &config,
                format!(
                    "subject = \"bench\"\n[org.acme]\nkey_file = \"{}\"\n",
                    key.display()
                ),
            )
            .unwrap();
            configs.push(((*alg).to_owned(), config));
        }
        configs.push((AGENT_ROW.to_owned(), agent_config));
        for (alg, config) in &configs {
            for (linking, program) in [("static", &fixed), ("dynamic", &dynamic)] {
                let mut command = base(program);
                command
                    .arg("get")
                    .env("CODESTORAGE_CONFIG", config)
                    .env("SSH_AUTH_SOCK", agent.socket());
                cases.push(Case {
                    name: format!("get, {alg}, {linking}"),
                    command,
                    stdin: REQUEST,
                    times: Vec::new(),
                });
            }
        }

        for case in &mut cases {
            run_once(&mut case.command, case.stdin); // one start each before timing
        }
        let count = cases.len();
        for round in 0..rounds {
            for i in 0..count {
                let case = &mut cases[(round + i) % count];
                let elapsed = run_once(&mut case.command, case.stdin);
                case.times.push(elapsed);
            }
        }

        let floor = median(&mut cases[0].times.clone());
        println!("{rounds} interleaved rounds, fresh copies of every binary, medians:\n");
        println!("| command | median | ratio to credential-store | peak RSS |");
        println!("| --- | --- | --- | --- |");
        let mut medians = Vec::new();
        for case in &mut cases {
            let m = median(&mut case.times);
            medians.push(m);
            let rss = peak_rss_kib(&case.command, case.stdin).map_or("n/a".to_owned(), |kib| {
                format!("{:.1} MiB", kib as f64 / 1024.0)
            });
            println!(
                "| {} | {:.2} ms | {:.2} | {rss} |",
                case.name,
                m.as_secs_f64() * 1000.0,
                m.as_secs_f64() / floor.as_secs_f64(),
            );
        }
        // Cases after credential-store come in (static, dynamic) pairs, one pair per config.
        let pair = |i: usize| (medians[1 + 2 * i], medians[2 + 2 * i]);
        println!("\nstatic / dynamic:");
        for (i, (alg, _)) in configs.iter().enumerate() {
            let (fixed, dynamic) = pair(i);
            println!(
                "  {alg}: {:.2}",
                fixed.as_secs_f64() / dynamic.as_secs_f64()
            );
        }
        // The file-key ES256 rows are the first pair, the agent's the last: same key type, same
        // rounds, so their ratio is what the agent costs.
        let (file_static, file_dynamic) = pair(0);
        let (agent_static, agent_dynamic) = pair(configs.len() - 1);
        println!(
            "\nssh-agent / key file (ES256): {:.2} static, {:.2} dynamic",
            agent_static.as_secs_f64() / file_static.as_secs_f64(),
            agent_dynamic.as_secs_f64() / file_dynamic.as_secs_f64()
        );
    }
}

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("whole_process bench: runs on Unix only");
}
