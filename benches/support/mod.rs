//! What the whole-process benches share: how many rounds to run, fresh copies of the binaries
//! they time, one timed run of a credential helper as git runs it, medians, and a broker.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many rounds to time: BENCH_ROUNDS, else 300 under `cargo bench` (which passes
/// `--bench`), else 3, for `cargo test --benches` to run the bench quickly.
pub fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            300
        } else {
            3
        })
}

/// Copies `from` to `dir/name` (executable): a fresh file the kernel has not yet aged, since an
/// executable long in the page cache starts with 6-8 more page faults than a new copy.
pub fn fresh_copy(from: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to
}

/// Runs `command` once with `stdin` as git would, and how long it took from spawn to exit;
/// fails unless it answered with a credential.
pub fn run_once(command: &mut Command, stdin: &[u8]) -> Duration {
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
    let answered = |field: &[u8]| output.stdout.windows(field.len()).any(|w| w == field);
    assert!(
        answered(b"password=") || answered(b"credential="),
        "no credential from {:?}: {}",
        command.get_program(),
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// The median of `times` (which it sorts).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Writes `text` to `path`, readable by its owner only (a key, or a config naming programs).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The broker on a config, once it says it is ready, and the lines it writes after that;
/// killed when dropped.
pub struct Broker(pub Child, pub std::sync::mpsc::Receiver<String>);

impl Broker {
    /// Starts `program broker` on `config`.
    pub fn start(program: &Path, config: &Path) -> Self {
        Self::start_with(program, config, &[])
    }

    /// [`Broker::start`] with extra environment (a KMS's endpoint and credentials, say).
    pub fn start_with(program: &Path, config: &Path, env: &[(&str, String)]) -> Self {
        let mut child = Command::new(program)
            .args(["broker", "--audit-log", "/dev/null", "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
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
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(|line| {
                let _ = sender.send(line);
            })
        });
        Self(child, receiver)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
