//! Files the tool writes (the config, its backups, private keys) and how it reads the config
//! it is about to edit: one atomic write, one advisory lock, one bounded read.
//!
//! Every write goes through [`write_atomic`]: a reader (`get`, run by git at any moment) sees
//! the old file or the new one, never half of one, and the mode is set explicitly so that a
//! permissive umask cannot leave a key or a config readable by others.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether [`write_atomic`] may replace a file that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (by rename, so the old file stays whole until the new one is complete).
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] if anything (even a dangling link) is there,
    /// decided by the kernel at the moment of creation, not by an earlier check.
    Refuse,
}

/// Writes `contents` to `path` as a whole or not at all, with permission bits `mode`.
///
/// The text goes to a new file in the same directory, which is given `mode` (whatever the
/// umask), flushed to disk, then renamed over `path` ([`Overwrite::Replace`]) or hard-linked
/// to it ([`Overwrite::Refuse`]: the link fails if `path` exists). The directory must exist.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let (temporary, mut file) = create_temporary(path)?;
    let guard = RemoveOnDrop(Some(temporary));
    set_mode(&file, mode)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    let temporary = guard.path();
    match overwrite {
        Overwrite::Replace => std::fs::rename(temporary, path)?,
        Overwrite::Refuse => std::fs::hard_link(temporary, path)?,
    }
    // After a rename the temporary name is gone; after a link it is a second name to remove.
    if overwrite == Overwrite::Refuse {
        drop(guard);
    } else {
        guard.disarm();
    }
    sync_dir(dir);
    Ok(())
}

/// Creates `dir` and its missing parents, each new one with mode 0700 (the config directory
/// holds private keys). Directories already there are left as they are.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // The mode passed to mkdir is masked by the umask; 0700 must not depend on it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An exclusive advisory lock, held until this value is dropped.
#[derive(Debug)]
pub struct Lock {
    // Closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file that guards `path`: `<path>.lock` beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the exclusive lock on `<path>.lock` (created with mode 0600 if missing), calling
/// `waiting` once first if another process holds it. The lock file is never removed: removing
/// it would let two processes lock two different files of the same name.
pub fn lock(path: &Path, waiting: impl FnOnce(&Path)) -> io::Result<Lock> {
    let lock_path = lock_path(path);
    let file = open_lock_file(&lock_path)?;
    lock_file(&file, || waiting(&lock_path))?;
    Ok(Lock {
        _file: file,
        path: lock_path,
    })
}

/// Why a file to be edited cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a regular file: reading a FIFO would block, a device would never end.
    #[error("it is {0}, not a regular file")]
    NotAFile(&'static str),
    /// Larger than any real file of its kind.
    #[error("it is larger than {} KiB", .0 / 1024)]
    TooLarge(u64),
    /// Not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
    /// The operating system refused.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Checks, without opening it, that `path` is missing or a regular file (following links), so
/// that nothing is created beside a device or a FIFO before [`read_regular`] refuses it.
pub fn check_regular(path: &Path) -> Result<(), ReadError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(ReadError::NotAFile(kind_of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Reads the text of the regular file at `path`, at most `limit` bytes; `None` if it does not
/// exist. The type is checked on the opened file, so a FIFO swapped in after a check is still
/// refused (it is opened without blocking) and never read.
pub fn read_regular(path: &Path, limit: u64) -> Result<Option<String>, ReadError> {
    let file = match open_for_reading(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile(kind_of(&meta)));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded again while reading: the file may grow between the stat and the read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ReadError::NotText)
}

/// Why a file that decides what runs or what signs is not trusted: another user could change
/// it or swap it, as OpenSSH's StrictModes refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// The file belongs to another user (root excepted).
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// Ours.
        you: u32,
    },
    /// A directory on the way to it may be written by group or others.
    Writable {
        /// The directory.
        dir: PathBuf,
        /// Its mode bits, with the sticky bit.
        mode: u32,
    },
    /// A directory on the way to it belongs to another user (root excepted).
    DirOwner {
        /// The directory.
        dir: PathBuf,
        /// Its owner's user id.
        owner: u32,
    },
}

impl Untrusted {
    /// The command or step that fixes it, with the real paths.
    pub fn fix(&self) -> String {
        match self {
            Self::Owner { path, you, .. } => format!(
                "check its contents, then run `chown {you} {}`",
                crate::shell::quote(&path.to_string_lossy())
            ),
            Self::Writable { dir, mode } if mode & 0o1000 == 0 => format!(
                "run `chmod go-w {}`",
                crate::shell::quote(&dir.to_string_lossy())
            ),
            Self::Writable { .. } | Self::DirOwner { .. } => {
                "move it into a directory only you can write (mode 700), such as ~/.config/codestorage".to_owned()
            }
        }
    }
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Owner { owner, you, .. } => {
                write!(
                    f,
                    "is owned by user {owner}, not by you (user {you}) or root"
                )
            }
            Self::Writable { dir, mode } => write!(
                f,
                "is in directory {}, which others may write (mode {mode:o})",
                dir.display()
            ),
            Self::DirOwner { dir, owner } => write!(
                f,
                "is in directory {}, owned by user {owner}, not by you or root",
                dir.display()
            ),
        }
    }
}

/// Checks, as OpenSSH's StrictModes does, that nobody but us and root can change `path`: it and
/// every directory above it belong to us or root, the directory holding it may be written by
/// nobody else (sticky or not: in `/tmp` another user chose the name first), and no directory
/// further up may be written by others unless it is sticky. A directory on a read-only mount
/// (a Kubernetes secret) is written by nobody. A missing file is left to the reader to report, as is anything but a regular file.
#[cfg(unix)]
pub fn check_trusted(path: &Path) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    let you = rustix::process::geteuid().as_raw();
    // Missing, or not a file (a directory, a FIFO): the reader says so more plainly.
    let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) else {
        return Ok(());
    };
    if !trusted_owner(meta.uid(), you) {
        return Err(Untrusted::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            you,
        });
    }
    // The name as given (it may be a link) and the file it leads to both count.
    let given = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    check_dir(parent_dir(&given), you, true)?;
    let real = std::fs::canonicalize(path).unwrap_or(given);
    for (depth, dir) in real.ancestors().skip(1).enumerate() {
        check_dir(dir, you, depth == 0)?;
    }
    Ok(())
}

/// Outside Unix, ownership and modes are ACLs this tool does not read: nothing is checked.
#[cfg(not(unix))]
pub fn check_trusted(_path: &Path) -> Result<(), Untrusted> {
    Ok(())
}

#[cfg(unix)]
fn check_dir(dir: &Path, you: u32, holds_file: bool) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if !trusted_owner(meta.uid(), you) {
        return Err(Untrusted::DirOwner {
            dir: dir.to_owned(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if writable_by_others(mode, holds_file) && !read_only_mount(dir) {
        return Err(Untrusted::Writable {
            dir: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Ours or root's: root can change anything anyway.
#[cfg(unix)]
fn trusted_owner(owner: u32, you: u32) -> bool {
    owner == you || owner == 0
}

/// Whether group or others may replace entries of a directory of `mode`: the sticky bit stops
/// them renaming our entries, but not choosing the file's name before we do.
#[cfg(unix)]
fn writable_by_others(mode: u32, holds_file: bool) -> bool {
    mode & 0o022 != 0 && (holds_file || mode & 0o1000 == 0)
}

#[cfg(unix)]
fn read_only_mount(dir: &Path) -> bool {
    rustix::fs::statvfs(dir)
        .is_ok_and(|fs| fs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// What a non-regular file is, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary file's name beside `path`, unique within this process; the pid keeps it unique
/// between processes, and `create_new` turns a leftover of a crashed run into a retry.
fn temporary_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}-{count}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn create_temporary(path: &Path) -> io::Result<(PathBuf, File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never readable by others, not even for the moment before the explicit chmod.
        options.mode(0o600);
    }
    let mut attempts = 0;
    loop {
        let temporary = temporary_name(path);
        match options.open(&temporary) {
            Ok(file) => return Ok((temporary, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the rename itself durable. Best effort: some file systems refuse to sync a directory,
/// and the file's own contents are already on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes a temporary file unless it was renamed into place.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(unix)]
fn open_lock_file(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    // NOFOLLOW: a link planted in the config directory must not make us create files elsewhere.
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    Ok(File::from(fd))
}

#[cfg(unix)]
fn lock_file(file: &File, waiting: impl FnOnce()) -> io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    use rustix::io::Errno;
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(()),
        Err(e) if e == Errno::WOULDBLOCK || e == Errno::INTR => waiting(),
        Err(e) => return Err(e.into()),
    }
    loop {
        match flock(file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(unix)]
fn open_for_reading(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    // NONBLOCK: opening a FIFO would otherwise wait for a writer. It changes nothing for a
    // regular file, the only kind read past the type check.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

// Without flock the lock file only marks the place: concurrent setups are a Unix concern (a CI
// runner or an agent fleet starting at once).
#[cfg(not(unix))]
fn lock_file(_file: &File, _waiting: impl FnOnce()) -> io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn open_for_reading(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_whole_files_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"new", 0o600, Overwrite::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        write_atomic(&path, b"newer", 0o640, Overwrite::Replace).unwrap();
        assert_eq!(mode(&path), 0o640, "the mode is set, not only kept");
        assert_eq!(names(dir.path()), ["config.toml"], "no temporary file left");
    }

    #[test]
    fn refusing_to_overwrite_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"first", 0o600, Overwrite::Refuse).unwrap();
        let err = write_atomic(&path, b"second", 0o600, Overwrite::Refuse).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert_eq!(mode(&path), 0o600);
        // A dangling link counts as there: nothing is written through it.
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let err = write_atomic(&link, b"x", 0o600, Overwrite::Refuse).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(names(dir.path()), ["key.pem", "link.pem"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a-directory");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        assert!(write_atomic(&target, b"x", 0o600, Overwrite::Replace).is_err());
        assert_eq!(names(dir.path()), ["a-directory"]);
    }

    #[test]
    fn private_dirs_are_0700_and_existing_ones_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o755);
    }

    #[test]
    fn reads_only_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        assert!(read_regular(&path, 10).unwrap().is_none());
        std::fs::write(&path, "ttl = 60\n").unwrap();
        assert_eq!(read_regular(&path, 10).unwrap().unwrap(), "ttl = 60\n");
        assert!(matches!(
            read_regular(&path, 5),
            Err(ReadError::TooLarge(5))
        ));
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(ReadError::NotAFile("a directory"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotAFile("a character device"))
        ));
        assert!(matches!(
            check_regular(Path::new("/dev/null")),
            Err(ReadError::NotAFile("a character device"))
        ));
        check_regular(&path).unwrap();
        check_regular(&dir.path().join("absent")).unwrap();
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_regular(&path, 10), Err(ReadError::NotText)));
    }

    // rustix offers mknodat on Linux only; the refusal itself is the same on every Unix.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(ReadError::NotAFile("a FIFO (named pipe)"))
        ));
    }

    #[test]
    fn owners_and_writable_directories_are_judged_as_strict_modes_does() {
        assert!(trusted_owner(1000, 1000) && trusted_owner(0, 1000));
        assert!(!trusted_owner(1001, 1000) && !trusted_owner(1000, 0));
        // The directory holding the file: any write bit for group or others, sticky or not.
        assert!(writable_by_others(0o1777, true) && writable_by_others(0o775, true));
        assert!(!writable_by_others(0o755, true) && !writable_by_others(0o700, true));
        // Further up, a sticky directory (/tmp) cannot have our entries renamed.
        assert!(!writable_by_others(0o1777, false) && writable_by_others(0o777, false));
    }

    #[test]
    fn files_in_directories_others_may_write_are_untrusted_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let file = shared.join("config.toml");
        std::fs::write(&file, "").unwrap();
        check_trusted(&file).unwrap();
        for (mode, fix) in [(0o777, "chmod go-w"), (0o1777, "move it into a directory")] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_trusted(&file).unwrap_err();
            assert_eq!(
                err,
                Untrusted::Writable {
                    dir: shared.clone(),
                    mode
                }
            );
            assert!(err.fix().contains(fix), "{}", err.fix());
        }
        // A link from a private directory to the shared one is judged where the file is.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            check_trusted(&link),
            Err(Untrusted::Writable { .. })
        ));
        check_trusted(&dir.path().join("absent")).unwrap();
    }

    #[test]
    fn a_file_of_another_user_is_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, "").unwrap();
        // Only root can give a file away; the project's tests run as root.
        assert!(
            rustix::process::geteuid().is_root(),
            "giving a file to another user needs root; run these tests as root"
        );
        rustix::fs::chown(&file, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
        let err = check_trusted(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is owned by user 4242, not by you (user 0) or root"
        );
        assert_eq!(
            err.fix(),
            format!("check its contents, then run `chown 0 {}`", file.display())
        );
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let first = lock(&path, |_| panic!("nobody holds it yet")).unwrap();
        assert_eq!(first.path(), dir.path().join("config.toml.lock"));
        assert_eq!(mode(first.path()), 0o600);
        // A second open file description, as another process would have: it must wait.
        let other = open_lock_file(first.path()).unwrap();
        let busy = rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert_eq!(busy, Err(rustix::io::Errno::WOULDBLOCK));
        drop(first);
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
