//! Whole-process `get`, as git runs it (spawn, read stdin, read config and key, sign, print),
//! side by side with `git credential-store get` on a one-line store file: the floor a credential
//! helper can reach, since it only reads a file. Runs are interleaved so that both see the same
//! machine. `cargo bench --bench whole_process` (BENCH_ROUNDS=N to change the count).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git_credential_codestorage::key::{self, NewKey};

const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");
const REQUEST: &[u8] = b"capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\n\n";
const STORE_REQUEST: &[u8] = b"protocol=https\nhost=acme.code.storage\n\n";

struct Case {
    name: &'static str,
    command: Command,
    stdin: &'static [u8],
    times: Vec<Duration>,
}

fn case(name: &'static str, command: Command, stdin: &'static [u8]) -> Case {
    Case {
        name,
        command,
        stdin,
        times: Vec::new(),
    }
}

fn run_once(command: &mut Command, stdin: &[u8]) -> Duration {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.stdout.windows(9).any(|w| w == b"password="),
        "no credential: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
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
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(name, value),
            None => timed.env_remove(name),
        };
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

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run quickly.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            300
        } else {
            3
        });
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let keys = [
        (
            "es256.pem",
            key::generate(NewKey::P256)
                .unwrap()
                .expose()
                .as_bytes()
                .to_vec(),
        ),
        (
            "eddsa.pem",
            key::generate(NewKey::Ed25519)
                .unwrap()
                .expose()
                .as_bytes()
                .to_vec(),
        ),
        (
            "rs256.pem",
            std::fs::read(fixtures.join("rsa2048.pkcs8.pem")).unwrap(),
        ),
    ];
    for (file, pem) in &keys {
        let path = home.join(file);
        std::fs::write(&path, pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = format!(
            "subject = \"bench\"\n[org.acme]\nkey_file = \"{}\"\n",
            path.display()
        );
        std::fs::write(home.join(file.replace(".pem", ".toml")), config).unwrap();
    }
    // A token-sized password, as the store would hold one of ours.
    let store = home.join("store");
    std::fs::write(
        &store,
        format!("https://t:{}@acme.code.storage\n", "x".repeat(420)),
    )
    .unwrap();

    let base = |program: &str| {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1");
        command
    };
    let helper = |config: &str| {
        let mut command = base(HELPER);
        command
            .arg("get")
            .env("CODESTORAGE_CONFIG", home.join(config));
        command
    };
    let mut store_command = base("git");
    store_command
        .args(["credential-store", "--file"])
        .arg(&store)
        .arg("get");
    let mut cases = [
        case("git credential-store get", store_command, STORE_REQUEST),
        case("get, ES256 (P-256)", helper("es256.toml"), REQUEST),
        case("get, EdDSA (Ed25519)", helper("eddsa.toml"), REQUEST),
        case("get, RS256 (RSA-2048)", helper("rs256.toml"), REQUEST),
    ];
    for case in &mut cases {
        run_once(&mut case.command, case.stdin); // warm the page cache
    }
    for _ in 0..rounds {
        for case in &mut cases {
            let elapsed = run_once(&mut case.command, case.stdin);
            case.times.push(elapsed);
        }
    }
    let floor = median(&mut cases[0].times.clone());
    println!("{rounds} interleaved runs each, medians:\n");
    println!("| command | median | ratio to credential-store | peak RSS |");
    println!("| --- | --- | --- | --- |");
    for case in &mut cases {
        let m = median(&mut case.times);
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
}
