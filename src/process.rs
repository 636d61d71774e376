//! Running a configured program (`key_command`, and later signers) with a deadline: no shell, no
//! program found relative to git's working directory, and on timeout the whole process group ends.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::secret::Secret;

/// Why a program did not give its output.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No program named.
    #[error("the command is empty")]
    Empty,
    /// A program path relative to the current directory, which for git is the repository.
    #[error(
        "the program {0:?} is a relative path, which would be looked up in the repository git is working in; use an absolute path or a name on PATH"
    )]
    Relative(String),
    /// A bare name not found on PATH.
    #[error("the program {0:?} is not on PATH")]
    NotOnPath(String),
    /// The program could not be started.
    #[error("cannot start {}: {source}", .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("it exited with {0}; run it by hand to see why")]
    Exit(ExitStatus),
    /// It ran past its deadline and was stopped with its whole process group.
    #[error(
        "it did not finish within {}s and was stopped; check that it does not wait for input",
        .0.as_secs_f32()
    )]
    Timeout(Duration),
    /// It exited but left a process holding its output open.
    #[error(
        "it exited, but a process it left in the background still held its output open after {}s; redirect that process's output",
        .0.as_secs_f32()
    )]
    OutputHeld(Duration),
    /// Talking to it failed.
    #[error("reading its output failed: {0}")]
    Io(std::io::Error),
}

/// Finds the program to run for `name`: an absolute path as is, a bare name on the absolute
/// entries of `path_var`. A relative path with a `/` is refused: git runs helpers inside the
/// repository it fetches, where a cloned file could stand in for the program.
pub fn find_program(name: &str, path_var: Option<&OsStr>) -> Result<PathBuf, ProcessError> {
    let path = Path::new(name);
    if name.is_empty() {
        return Err(ProcessError::Empty);
    }
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    if path.components().count() > 1 || name.contains('/') || name.contains('\\') {
        return Err(ProcessError::Relative(name.to_owned()));
    }
    let candidates = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .iter()
        .filter(|dir| dir.is_absolute())
        .flat_map(|dir| executable_names(name).map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ProcessError::NotOnPath(name.to_owned()))
}

fn executable_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let windows = cfg!(windows) && Path::new(name).extension().is_none();
    std::iter::once(name.to_owned()).chain(windows.then(|| format!("{name}.exe")))
}

/// Runs `argv` (program found by [`find_program`]), gives it `input` on stdin, and returns at most
/// `max_output` bytes of its stdout, all within `timeout`. Its stderr is the user's.
pub fn run(
    argv: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
    max_output: u64,
) -> Result<Secret<Vec<u8>>, ProcessError> {
    let (name, args) = argv.split_first().ok_or(ProcessError::Empty)?;
    let program = find_program(name, std::env::var_os("PATH").as_deref())?;
    let mut command = Command::new(&program);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Its own process group, so that a timeout ends what it started too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|source| ProcessError::Spawn { program, source })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that does not read its input must not make us block: write on a thread.
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().ok_or(ProcessError::Empty)?;
    let (sender, output) = mpsc::channel();
    // Read on a thread so that a program that prints more than a pipe holds cannot stall us.
    std::thread::spawn(move || {
        let mut text = Secret::new(Vec::new());
        let result = (&mut stdout)
            .take(max_output)
            .read_to_end(text.expose_mut());
        let _ = sender.send(result.map(|_| text));
    });
    let deadline = Instant::now() + timeout;
    let status = match wait(&mut child, deadline) {
        Ok(Some(status)) => status,
        Ok(None) => {
            end(&mut child);
            return Err(ProcessError::Timeout(timeout));
        }
        Err(e) => {
            end(&mut child);
            return Err(ProcessError::Io(e));
        }
    };
    if !status.success() {
        end(&mut child);
        return Err(ProcessError::Exit(status));
    }
    // A program can exit and leave a background process holding its stdout open (`cmd &`).
    let left = deadline.saturating_duration_since(Instant::now());
    match output.recv_timeout(left.max(Duration::from_millis(100))) {
        Ok(result) => result.map_err(ProcessError::Io),
        Err(RecvTimeoutError::Timeout) => {
            end(&mut child);
            Err(ProcessError::OutputHeld(timeout))
        }
        Err(RecvTimeoutError::Disconnected) => Err(ProcessError::Io(std::io::Error::other(
            "the reader stopped",
        ))),
    }
}

/// Waits for `child` until `deadline` (`None` once it passes), polling with a short backoff:
/// std has no wait with a timeout.
fn wait(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Ends the child's whole process group (on Unix), then reaps the child.
pub(crate) fn end(child: &mut Child) {
    #[cfg(unix)]
    if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
        // The group was made for this child, so it holds only what the child started.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn gives_stdout_and_feeds_stdin() {
        let out = run(&argv(&["cat"]), Some(b"signing input"), 5 * SECOND, 1024).unwrap();
        assert_eq!(out.expose().as_slice(), b"signing input");
        let out = run(&argv(&["printf", "%s", "pem"]), None, 5 * SECOND, 2).unwrap();
        assert_eq!(out.expose().as_slice(), b"pe", "bounded by max_output");
    }

    #[test]
    fn failures_are_typed() {
        assert!(matches!(
            run(&argv(&["false"]), None, 5 * SECOND, 10),
            Err(ProcessError::Exit(_))
        ));
        assert!(matches!(
            run(&[], None, SECOND, 10),
            Err(ProcessError::Empty)
        ));
        assert!(matches!(
            run(&argv(&["/nonexistent/program"]), None, SECOND, 10),
            Err(ProcessError::Spawn { .. })
        ));
        assert!(matches!(
            run(&argv(&["no-such-program-anywhere"]), None, SECOND, 10),
            Err(ProcessError::NotOnPath(_))
        ));
    }

    #[test]
    fn relative_programs_are_refused_and_names_found_on_absolute_path_entries() {
        assert!(matches!(
            find_program("bin/print-key", Some(OsStr::new("/usr/bin"))),
            Err(ProcessError::Relative(_))
        ));
        assert!(matches!(
            find_program("./print-key", Some(OsStr::new("/usr/bin"))),
            Err(ProcessError::Relative(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("planted"), "").unwrap();
        // A relative PATH entry (`.` or empty) would find a planted program in the repository.
        let cwd_path = format!(".:{}", dir.path().display());
        assert_eq!(
            find_program("planted", Some(OsStr::new(&cwd_path))).unwrap(),
            dir.path().join("planted")
        );
        assert!(find_program("planted", Some(OsStr::new("."))).is_err());
    }

    #[test]
    fn a_timeout_ends_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        // The grandchild keeps stdout open; only a group kill ends it.
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let result = run(
            &argv(&["sh", "-c", &script]),
            None,
            Duration::from_millis(300),
            10,
        );
        assert!(
            matches!(result, Err(ProcessError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < 10 * SECOND);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // SIGKILL lands asynchronously: wait (bounded) until the grandchild is gone or a zombie.
        let alive = || {
            std::fs::read_to_string(&stat)
                .is_ok_and(|s| !s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
        };
        let deadline = Instant::now() + 10 * SECOND;
        while alive() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!alive(), "grandchild {pid} survived the timeout");
    }

    #[test]
    fn output_held_by_a_background_process_is_bounded() {
        let started = Instant::now();
        let result = run(
            &argv(&["sh", "-c", "echo key; sleep 30 &"]),
            None,
            Duration::from_millis(300),
            100,
        );
        assert!(
            matches!(result, Err(ProcessError::OutputHeld(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < 10 * SECOND);
    }
}
