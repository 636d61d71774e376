//! The I/O half: a process's ancestors as the kernel reports them, bounded reads, nothing
//! spawned. On Linux, `/proc/<pid>/stat` for the parent and `/proc/<pid>/cmdline` for the
//! arguments; on macOS, the kernel's process table (`proc_pidinfo` for the parent, the
//! `KERN_PROCARGS2` sysctl for the arguments) through the `sysinfo` crate. Elsewhere detection
//! is unavailable and git's trace2 is the signal.

#[cfg(any(target_os = "linux", target_os = "macos"))]
use super::MAX_ANCESTORS;
use super::classify::{Chain, basename, needs_arguments};
use super::{Detection, Evidence, Operation};

/// The most bytes of one `cmdline` read: git's command line is short, a huge one is cut here.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) const CMDLINE_CAP: usize = 64 * 1024;

/// Why there is no ancestry on this system.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
const UNSUPPORTED: &str = "process ancestry is read only on Linux and macOS; turn on git's \
     trace2 (e.g. `git config --global trace2.normalTarget /dev/null`) so that git names its \
     command";

/// `stat` for `/proc` is gone or unreadable.
#[cfg(target_os = "linux")]
const NO_PROC: &str = "/proc is not mounted or not readable";

/// The process is gone, or `/proc` hides other users' processes (`hidepid`).
#[cfg(target_os = "linux")]
const GONE: &str = "the process has exited or /proc hides it (hidepid)";

/// The process is gone, or the kernel does not show its arguments to this user.
#[cfg(target_os = "macos")]
const HIDDEN: &str = "the process has exited or the kernel does not show its arguments";

/// Detection unavailable for `why`.
fn unavailable(why: &'static str) -> Detection {
    Detection {
        operation: Operation::Unknown,
        evidence: Evidence::Unavailable(why),
        command: None,
    }
}

/// What the system tells about a process: its arguments and its parent.
#[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
trait ProcessTable {
    /// The arguments of `pid` (or only its name, where they cannot matter) and its parent;
    /// `None` when it is gone or hidden.
    fn read(&mut self, pid: u32) -> Option<(Vec<String>, Option<u32>)>;
    /// Why the first process could not be read.
    fn unreadable(&mut self) -> &'static str;
}

/// Classifies `first` and its ancestors, `count` processes at most, stopping at the first that
/// decides.
#[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
fn walk(table: &mut impl ProcessTable, first: u32, count: usize) -> Detection {
    let mut chain = Chain::default();
    let mut pid = first;
    for level in 0..count {
        let Some((argv, parent)) = table.read(pid) else {
            if level == 0 {
                return unavailable(table.unreadable());
            }
            // An ancestor exited meanwhile: judge by what was seen.
            break;
        };
        if let Some(detection) = chain.push(&argv) {
            return detection;
        }
        // git runs helpers through shells and its own programs only: past any other process
        // (a CI runner, an IDE, a bench), no git command above it is the one asking, and the
        // walk ends with one small read instead of six. (A helper wrapped in, say, a Python
        // script is therefore not narrowed: it keeps the configured scopes.)
        if !argv
            .first()
            .is_some_and(|program| needs_arguments(basename(program)))
        {
            break;
        }
        match parent {
            Some(next) if next != 0 => pid = next,
            _ => break,
        }
    }
    chain.finish()
}

/// The parent pid in the text of `/proc/<pid>/stat`: `pid (comm) state ppid ...`. The command
/// name may hold spaces and `)`, but nothing after it does, so the last `)` ends it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parent_in_stat(stat: &[u8]) -> Option<u32> {
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(end + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// The command name (`comm`) in the text of `/proc/<pid>/stat`: from the first `(` to the last
/// `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn comm_in_stat(stat: &[u8]) -> Option<String> {
    let start = stat.iter().position(|&b| b == b'(')? + 1;
    let end = stat.iter().rposition(|&b| b == b')')?;
    Some(String::from_utf8_lossy(stat.get(start..end)?).into_owned())
}

/// The arguments in the bytes of `/proc/<pid>/cmdline` (NUL-terminated strings). When the read
/// stopped at [`CMDLINE_CAP`], an unterminated last argument may be cut short and is dropped, so
/// that `fetch-pack` cut to `fetch` can never be seen.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn split_cmdline(bytes: &[u8], capped: bool) -> Vec<String> {
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    // After a final NUL, `split` yields one empty tail; without one, the tail is unterminated.
    if let Some(tail) = parts.pop()
        && !tail.is_empty()
        && !capped
    {
        parts.push(tail);
    }
    parts
        .into_iter()
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io::Read;

    use super::super::classify::needs_arguments;
    use super::{
        CMDLINE_CAP, GONE, NO_PROC, ProcessTable, comm_in_stat, parent_in_stat, split_cmdline,
    };

    /// `/proc`, read through one reused buffer.
    pub(super) struct Proc {
        pub(super) buf: Vec<u8>,
    }

    impl Proc {
        /// A reader whose buffer holds a usual `stat` or command line in one read.
        pub(super) fn new() -> Self {
            Self {
                buf: Vec::with_capacity(4096),
            }
        }

        /// The first `cap` bytes of `path`, into the buffer (cleared first).
        fn read_capped(&mut self, path: &str, cap: usize) -> std::io::Result<()> {
            self.buf.clear();
            File::open(path)?
                .take(cap as u64)
                .read_to_end(&mut self.buf)?;
            Ok(())
        }

        /// A process's arguments.
        pub(super) fn read_argv(&mut self, pid: u32) -> std::io::Result<Vec<String>> {
            self.read_capped(&format!("/proc/{pid}/cmdline"), CMDLINE_CAP)?;
            Ok(split_cmdline(&self.buf, self.buf.len() >= CMDLINE_CAP))
        }
    }

    impl ProcessTable for Proc {
        /// `stat` first (name and parent in one read); the command line only for a process
        /// whose name says it may matter, so that a walk through a CI runner's or an IDE's
        /// processes costs one small read each.
        fn read(&mut self, pid: u32) -> Option<(Vec<String>, Option<u32>)> {
            // pid, the command name (15 bytes at most), state and ppid fit in this.
            self.read_capped(&format!("/proc/{pid}/stat"), 256).ok()?;
            let parent = parent_in_stat(&self.buf);
            let comm = comm_in_stat(&self.buf)?;
            let argv = if needs_arguments(&comm) {
                self.read_argv(pid).ok()?
            } else {
                vec![comm]
            };
            Some((argv, parent))
        }

        fn unreadable(&mut self) -> &'static str {
            if available().is_ok() { GONE } else { NO_PROC }
        }
    }

    /// Whether `/proc` answers for this process.
    pub(super) fn available() -> Result<(), &'static str> {
        let mut proc = Proc::new();
        let me = std::process::id();
        match proc.read(me) {
            Some(_) if proc.read_argv(me).is_ok_and(|a| !a.is_empty()) => Ok(()),
            _ => Err(NO_PROC),
        }
    }
}

#[cfg(target_os = "macos")]
mod macos {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

    use super::{HIDDEN, ProcessTable};

    /// The kernel's process table, asked one process at a time (never the whole table).
    pub(super) struct Kernel {
        system: System,
    }

    impl Kernel {
        /// A table that has read nothing yet.
        pub(super) fn new() -> Self {
            Self {
                system: System::new(),
            }
        }

        /// Reads `pid`'s entry: its parent always, its arguments as asked.
        fn refresh(&mut self, pid: Pid) -> Option<&sysinfo::Process> {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
            );
            self.system.process(pid)
        }
    }

    impl ProcessTable for Kernel {
        fn read(&mut self, pid: u32) -> Option<(Vec<String>, Option<u32>)> {
            let process = self.refresh(Pid::from_u32(pid))?;
            let argv: Vec<String> = process
                .cmd()
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect();
            // The kernel hides other users' arguments: an empty list says nothing.
            if argv.is_empty() {
                return None;
            }
            Some((argv, process.parent().map(|p| p.as_u32())))
        }

        fn unreadable(&mut self) -> &'static str {
            HIDDEN
        }
    }

    /// Whether the kernel shows this process's own arguments.
    pub(super) fn available() -> Result<(), &'static str> {
        match Kernel::new().read(std::process::id()) {
            Some(_) => Ok(()),
            None => Err(HIDDEN),
        }
    }
}

/// This system's process table.
#[cfg(target_os = "linux")]
fn table() -> linux::Proc {
    linux::Proc::new()
}

/// This system's process table.
#[cfg(target_os = "macos")]
fn table() -> macos::Kernel {
    macos::Kernel::new()
}

/// Why no process 0 can be read on this system.
#[cfg(target_os = "linux")]
const NO_PID: &str = GONE;
/// Why no process 0 can be read on this system.
#[cfg(target_os = "macos")]
const NO_PID: &str = HIDDEN;

/// Classifies `pid` and up to [`MAX_ANCESTORS`] of its ancestors.
pub(super) fn from_pid(pid: u32) -> Detection {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        if pid == 0 {
            return unavailable(NO_PID);
        }
        walk(&mut table(), pid, MAX_ANCESTORS + 1)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        unavailable(UNSUPPORTED)
    }
}

/// Classifies this process's ancestors, from its parent.
pub(super) fn from_parent() -> Detection {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        walk(
            &mut table(),
            std::os::unix::process::parent_id(),
            MAX_ANCESTORS,
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        unavailable(UNSUPPORTED)
    }
}

/// Whether ancestry can be read here.
pub(super) fn available() -> Result<(), &'static str> {
    #[cfg(target_os = "linux")]
    {
        linux::available()
    }
    #[cfg(target_os = "macos")]
    {
        macos::available()
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Err(UNSUPPORTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_found_after_any_command_name() {
        for (stat, parent) in [
            (&b"1234 (git) S 99 1234 1234 0 -1"[..], Some(99)),
            (b"1234 (a) b) c) R 7 1 1", Some(7)),
            (b"1234 (sh -c (x)) S 42 1", Some(42)),
            (b"1234 () S 5 1", Some(5)),
            (b"1 (init) S 0 1", Some(0)),
            (b"1234 (\xff\xfe) S 8 1", Some(8)),
            (b"", None),
            (b"1234 (git S 99", None),
            (b"1234 (git)", None),
            (b"1234 (git) S", None),
            (b"1234 (git) S x", None),
            (b"1234 (git) S -1", None),
            (b"1234 (git) S 99999999999", None),
        ] {
            assert_eq!(
                parent_in_stat(stat),
                parent,
                "{:?}",
                String::from_utf8_lossy(stat)
            );
        }
    }

    /// A process table given as argv lists, each process the parent of the one before.
    struct Listed {
        chain: Vec<Vec<String>>,
        reads: usize,
    }

    impl ProcessTable for Listed {
        fn read(&mut self, pid: u32) -> Option<(Vec<String>, Option<u32>)> {
            self.reads += 1;
            let argv = self.chain.get(pid as usize)?.clone();
            Some((argv, Some(pid + 1)))
        }
        fn unreadable(&mut self) -> &'static str {
            "gone"
        }
    }

    fn listed(chain: &[&str]) -> Listed {
        Listed {
            chain: chain
                .iter()
                .map(|p| p.split(' ').map(str::to_owned).collect())
                .collect(),
            reads: 0,
        }
    }

    #[test]
    fn the_walk_stops_at_the_first_process_that_is_neither_git_nor_a_shell() {
        let mut through_git = listed(&[
            "sh -c git-credential-codestorage get",
            "git-remote-https origin https://acme.code.storage/x",
            "git push origin main",
        ]);
        let found = walk(&mut through_git, 0, super::super::MAX_ANCESTORS);
        assert_eq!(found.operation, Operation::Write);
        assert_eq!(through_git.reads, 3);

        // A bench, a CI runner or a script calling the helper: one read, and unknown.
        let mut direct = listed(&["python3 bench.py", "bash", "git push origin main"]);
        let found = walk(&mut direct, 0, super::super::MAX_ANCESTORS);
        assert_eq!(found.operation, Operation::Unknown);
        assert_eq!(direct.reads, 1);

        // Shells pass without ending the walk, as git's aliases and scripts need.
        let mut alias = listed(&[
            "sh -c git-credential-codestorage get",
            "git-remote-https origin https://acme.code.storage/x",
            "git remote-https origin https://acme.code.storage/x",
            "git fetch",
            "sh -c git fetch && git merge",
            "git sync",
        ]);
        assert_eq!(
            walk(&mut alias, 0, super::super::MAX_ANCESTORS).operation,
            Operation::Read
        );
    }

    #[test]
    fn the_command_name_is_everything_between_the_first_and_last_parenthesis() {
        for (stat, comm) in [
            (
                &b"1234 (git-remote-http) S 99 1"[..],
                Some("git-remote-http"),
            ),
            (b"1234 (sh -c (x)) S 42 1", Some("sh -c (x)")),
            (b"1234 () S 5 1", Some("")),
            (b"1234 git S 5 1", None),
            (b"", None),
        ] {
            assert_eq!(comm_in_stat(stat).as_deref(), comm);
        }
    }

    #[test]
    fn only_git_and_shells_have_their_arguments_read() {
        use super::super::classify::needs_arguments;
        for comm in [
            "git",
            "git-remote-http",
            "git-submodule",
            "sh",
            "bash",
            "dash",
        ] {
            assert!(needs_arguments(comm), "{comm}");
        }
        for comm in ["python3", "cargo", "sshd", "node", "make", "", "agit"] {
            assert!(!needs_arguments(comm), "{comm}");
        }
    }

    #[test]
    fn cmdline_splits_on_nul_and_drops_a_cut_argument() {
        assert_eq!(
            split_cmdline(b"git\0push\0origin\0", false),
            ["git", "push", "origin"]
        );
        assert_eq!(split_cmdline(b"git\0\0push\0", false), ["git", "", "push"]);
        // A process that rewrote its title without a final NUL.
        assert_eq!(split_cmdline(b"sshd: runner", false), ["sshd: runner"]);
        assert_eq!(split_cmdline(b"", false), Vec::<String>::new());
        // Cut at the cap: the last argument may be partial.
        assert_eq!(split_cmdline(b"git\0fetch", true), ["git"]);
        assert_eq!(split_cmdline(b"git\0fetch\0", true), ["git", "fetch"]);
        assert_eq!(
            split_cmdline(b"git\0\xffpush\0", false),
            ["git", "\u{fffd}push"]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_huge_command_line_is_read_only_up_to_the_cap() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        // `sh -c '...' git <huge> fetch`: the argument that would decide lies past the cap. The
        // shell says when it runs: right after spawn, exec may not have set up its arguments yet.
        let huge = "x".repeat(CMDLINE_CAP);
        let mut child = Command::new("sh")
            .args(["-c", "echo started; read x", "git", &huge, "fetch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut started = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut started)
            .unwrap();
        let mut proc = linux::Proc::new();
        let result = proc.read_argv(child.id()).unwrap();
        let buf = proc.buf;
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(started, "started\n");
        assert_eq!(buf.len(), CMDLINE_CAP);
        assert_eq!(result, ["sh", "-c", "echo started; read x", "git"]);
    }
}
