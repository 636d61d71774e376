//! The I/O half: a process's ancestors as the kernel reports them. On Linux, `/proc/<pid>/stat`
//! for the parent and `/proc/<pid>/cmdline` for the arguments, bounded reads, nothing spawned.
//! Elsewhere there is no safe way to read another process's arguments (macOS has them only
//! behind the `KERN_PROCARGS2` sysctl, with no well-kept safe crate), so detection is unavailable.

use super::{Detection, Evidence, Operation};

/// The most bytes of one `cmdline` read: git's command line is short, a huge one is cut here.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) const CMDLINE_CAP: usize = 64 * 1024;

/// Why there is no ancestry on this system.
#[cfg(not(target_os = "linux"))]
const NOT_LINUX: &str = "process ancestry is read only on Linux; turn on git's trace2 \
     (e.g. `git config --global trace2.normalTarget /dev/null`) so that git names its command";

/// `stat` for `/proc` is gone or unreadable.
#[cfg(target_os = "linux")]
const NO_PROC: &str = "/proc is not mounted or not readable";

/// The process is gone, or `/proc` hides other users' processes (`hidepid`).
#[cfg(target_os = "linux")]
const GONE: &str = "the process has exited or /proc hides it (hidepid)";

/// Detection unavailable for `why`.
fn unavailable(why: &'static str) -> Detection {
    Detection {
        operation: Operation::Unknown,
        evidence: Evidence::Unavailable(why),
        command: None,
    }
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

    use super::super::classify::Chain;
    use super::super::{Detection, MAX_ANCESTORS};
    use super::{CMDLINE_CAP, GONE, NO_PROC, parent_in_stat, split_cmdline, unavailable};

    /// The first `cap` bytes of `path`, into `buf` (cleared first).
    fn read_capped(path: &str, cap: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        File::open(path)?.take(cap as u64).read_to_end(buf)?;
        Ok(())
    }

    /// A process's arguments, read with `buf`.
    pub(super) fn argv(pid: u32, buf: &mut Vec<u8>) -> std::io::Result<Vec<String>> {
        read_capped(&format!("/proc/{pid}/cmdline"), CMDLINE_CAP, buf)?;
        Ok(split_cmdline(buf, buf.len() >= CMDLINE_CAP))
    }

    /// A process's parent, read with `buf`.
    fn parent(pid: u32, buf: &mut Vec<u8>) -> Option<u32> {
        // pid, the command name (16 bytes at most for processes), state and ppid fit in this.
        read_capped(&format!("/proc/{pid}/stat"), 256, buf).ok()?;
        parent_in_stat(buf)
    }

    /// Classifies `first` and its ancestors, `count` processes at most, stopping at the first
    /// that decides.
    pub(super) fn walk(first: u32, count: usize) -> Detection {
        let mut chain = Chain::default();
        let mut buf = Vec::with_capacity(512);
        let mut pid = first;
        for level in 0..count {
            let argv = match argv(pid, &mut buf) {
                Ok(argv) => argv,
                Err(_) if level == 0 => {
                    return unavailable(if super::super::available().is_ok() {
                        GONE
                    } else {
                        NO_PROC
                    });
                }
                // An ancestor exited meanwhile: judge by what was seen.
                Err(_) => break,
            };
            if let Some(detection) = chain.push(&argv) {
                return detection;
            }
            match parent(pid, &mut buf) {
                Some(next) if next != 0 => pid = next,
                _ => break,
            }
        }
        chain.finish()
    }

    /// The walk `detect` makes: from this process's parent.
    pub(super) fn from_parent() -> Detection {
        walk(std::os::unix::process::parent_id(), MAX_ANCESTORS)
    }

    /// Whether `/proc` answers for this process.
    pub(super) fn available() -> Result<(), &'static str> {
        let mut buf = Vec::new();
        match parent(std::process::id(), &mut buf) {
            Some(_) if argv(std::process::id(), &mut buf).is_ok_and(|a| !a.is_empty()) => Ok(()),
            _ => Err(NO_PROC),
        }
    }
}

/// Classifies `pid` and up to [`MAX_ANCESTORS`](super::MAX_ANCESTORS) of its ancestors.
pub(super) fn from_pid(pid: u32) -> Detection {
    #[cfg(target_os = "linux")]
    {
        if pid == 0 {
            return unavailable(GONE);
        }
        linux::walk(pid, super::MAX_ANCESTORS + 1)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        unavailable(NOT_LINUX)
    }
}

/// Classifies this process's ancestors, from its parent.
pub(super) fn from_parent() -> Detection {
    #[cfg(target_os = "linux")]
    {
        linux::from_parent()
    }
    #[cfg(not(target_os = "linux"))]
    {
        unavailable(NOT_LINUX)
    }
}

/// Whether ancestry can be read here.
pub(super) fn available() -> Result<(), &'static str> {
    #[cfg(target_os = "linux")]
    {
        linux::available()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(NOT_LINUX)
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
        let mut buf = Vec::new();
        let result = linux::argv(child.id(), &mut buf).unwrap();
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(started, "started\n");
        assert_eq!(buf.len(), CMDLINE_CAP);
        assert_eq!(result, ["sh", "-c", "echo started; read x", "git"]);
    }
}
