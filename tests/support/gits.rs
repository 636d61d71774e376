//! Which git binaries the tests run: found on this machine, not assumed. `CODESTORAGE_TEST_GIT`
//! and `CODESTORAGE_TEST_OLD_GIT` name them outright; otherwise every `git` on PATH and in the
//! usual places is asked `--version`. "New git" is the newest version found, "old git" the oldest
//! distinct one. A test that needs either fails, saying what to install, when this machine lacks
//! it: the new git must offer `capability[]=authtype` (2.46), the old one must predate
//! `password_expiry_utc` (2.41), as Debian 12's git 2.39 does.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Names the git the tests treat as new (the one that must offer `capability[]=authtype`).
pub const NEW_GIT_VAR: &str = "CODESTORAGE_TEST_GIT";
/// Names the git the tests treat as old.
pub const OLD_GIT_VAR: &str = "CODESTORAGE_TEST_OLD_GIT";

/// Where git lives when it is not on PATH: distribution, hand-built, Homebrew and MacPorts.
pub const USUAL_PLACES: &[&str] = &[
    "/usr/local/bin/git",
    "/usr/bin/git",
    "/bin/git",
    "/opt/homebrew/bin/git",
    "/opt/local/bin/git",
];

/// The first git that offers `capability[]=authtype` and answers `ephemeral` (git 2.46).
pub const AUTHTYPE: Version = Version([2, 46, 0]);

/// An old git is older than this: before 2.41 git ignores `password_expiry_utc` and sends no
/// `wwwauth[]`, the oldest protocol the helper answers.
pub const OLD_GIT_BELOW: Version = Version([2, 41, 0]);

/// How a machine gets the old git the tests need.
const OLD_GIT_FIX: &str = "install Debian 12's git (2.39, /usr/bin/git: `apt-get install git` on \
     Debian 12), or set CODESTORAGE_TEST_OLD_GIT to a git older than 2.41";

/// A git version as `git --version` reports it, e.g. 2.47.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub [u32; 3]);

impl Version {
    /// Reads `git version 2.47.3` (also `2.45.0.windows.1`, `2.39.5 (Apple Git-154)`).
    pub fn parse(output: &str) -> Option<Self> {
        let number = output.trim().strip_prefix("git version ")?;
        let number = number.split_whitespace().next()?;
        let mut parts = number.split('.').map(|part| {
            let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            part[..digits].parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self([major, minor, patch]))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        write!(f, "{major}.{minor}.{patch}")
    }
}

/// A git binary and the version it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    /// The path it was found at (as found, not resolved: git may find its helpers beside it).
    pub path: PathBuf,
    /// What `--version` said.
    pub version: Version,
}

impl Git {
    /// Asks the binary at `path` for its version; `None` if it does not run or is not git.
    pub fn probe(path: &Path) -> Option<Self> {
        let output = Command::new(path)
            .arg("--version")
            .env_remove("GIT_EXEC_PATH")
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let version = Version::parse(&String::from_utf8_lossy(&output.stdout))?;
        Some(Self {
            path: path.to_owned(),
            version,
        })
    }
}

impl fmt::Display for Git {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "git {} at {}", self.version, self.path.display())
    }
}

/// Why no git could be chosen.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// An override names something that is not a working git.
    #[error(
        "{var}={path} does not answer `git --version`; point {var} at a git binary, or unset it to search PATH"
    )]
    BadOverride {
        /// The variable that was set.
        var: &'static str,
        /// What it was set to.
        path: String,
    },
    /// No git anywhere.
    #[error(
        "no git found on PATH or in {places}; install git, or set {NEW_GIT_VAR} to a git binary"
    )]
    NoGit {
        /// The places searched besides PATH.
        places: String,
    },
}

/// The gits chosen for the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gits {
    /// The newest version found, or the one [`NEW_GIT_VAR`] names.
    pub new: Git,
    /// The oldest distinct version found, or the one [`OLD_GIT_VAR`] names; `None` when only one
    /// version exists here.
    pub old: Option<Git>,
}

impl Gits {
    /// Chooses from `candidates` (PATH entries first) after the overrides; each is asked
    /// `--version`, and a path seen twice (`/bin` linked to `/usr/bin`) counts once.
    pub fn find(
        new_override: Option<PathBuf>,
        old_override: Option<PathBuf>,
        candidates: impl IntoIterator<Item = PathBuf>,
    ) -> Result<Self, FindError> {
        let pinned = |var: &'static str, path: Option<PathBuf>| {
            path.map(|path| {
                Git::probe(&path).ok_or_else(|| FindError::BadOverride {
                    var,
                    path: path.display().to_string(),
                })
            })
            .transpose()
        };
        let new_pinned = pinned(NEW_GIT_VAR, new_override)?;
        let old_pinned = pinned(OLD_GIT_VAR, old_override)?;

        let mut seen = Vec::new();
        let mut found: Vec<Git> = Vec::new();
        let pool = new_pinned
            .iter()
            .chain(&old_pinned)
            .map(|git| git.path.clone());
        for path in pool.chain(candidates) {
            let Ok(real) = path.canonicalize() else {
                continue;
            };
            if seen.contains(&real) {
                continue;
            }
            seen.push(real);
            if let Some(git) = Git::probe(&path) {
                found.push(git);
            }
        }
        // min_by_key and max_by_key keep the first and last of equals: prefer the first found.
        let newest = found.iter().rev().max_by_key(|git| git.version).cloned();
        let oldest = found.iter().min_by_key(|git| git.version).cloned();
        let new = new_pinned.or(newest).ok_or_else(|| FindError::NoGit {
            places: USUAL_PLACES.join(", "),
        })?;
        let old = match old_pinned {
            // Named outright: trusted, unless it is the new git itself.
            Some(old) => Some(old).filter(|old| old.path != new.path),
            None => oldest.filter(|old| old.version < new.version),
        };
        Ok(Self { new, old })
    }

    /// What this machine has: the overrides from the environment, then `git` in each PATH
    /// directory, then [`USUAL_PLACES`].
    pub fn from_environment() -> Result<Self, FindError> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let path = std::env::var_os("PATH").unwrap_or_default();
        let on_path = std::env::split_paths(&path).map(|dir| dir.join("git"));
        let usual = USUAL_PLACES.iter().map(PathBuf::from);
        Self::find(var(NEW_GIT_VAR), var(OLD_GIT_VAR), on_path.chain(usual))
    }
}

/// The gits of this machine, found once per test process.
pub fn gits() -> &'static Gits {
    static GITS: OnceLock<Gits> = OnceLock::new();
    GITS.get_or_init(|| Gits::from_environment().unwrap_or_else(|e| panic!("{e}")))
}

/// The newest git here (or [`NEW_GIT_VAR`]'s).
pub fn new_git() -> &'static Path {
    &gits().new.path
}

/// The oldest git here (or [`OLD_GIT_VAR`]'s); the test fails, saying what to install, unless
/// it is older than [`OLD_GIT_BELOW`].
pub fn old_git() -> &'static Path {
    match &gits().old {
        Some(old) if old.version < OLD_GIT_BELOW => &old.path,
        Some(old) => panic!(
            "this test needs a git older than {OLD_GIT_BELOW} and the oldest here is {old}; \
             {OLD_GIT_FIX}"
        ),
        None => panic!(
            "this test needs a git older than {OLD_GIT_BELOW} and the only one here is {}; \
             {OLD_GIT_FIX}",
            gits().new
        ),
    }
}

/// The new git and then the old one, for tests that run with each (see [`old_git`]).
pub fn each_git() -> Vec<&'static Path> {
    vec![new_git(), old_git()]
}

/// The version of `git`, one of the gits found here.
pub fn version_of(git: &Path) -> Version {
    let gits = gits();
    std::iter::once(&gits.new)
        .chain(&gits.old)
        .find(|found| found.path == git)
        .unwrap_or_else(|| panic!("{} is not one of the gits found", git.display()))
        .version
}

/// `git 2.47.3 at /usr/local/bin/git`, for messages about `git`, one of the gits found here.
pub fn describe(git: &Path) -> String {
    format!("git {} at {}", version_of(git), git.display())
}

/// The new git; the test fails, saying that `what` needs git `version` and how to give the
/// tests one, when the new git is older.
pub fn new_git_at_least(version: Version, what: &str) -> &'static Path {
    let new = &gits().new;
    assert!(
        new.version >= version,
        "{what} needs git {version} or newer and the newest here is {new}; install git {version} \
         or newer (from git's own source: /usr/local/bin/git), or set {NEW_GIT_VAR} to one"
    );
    &new.path
}

/// A `PATH` on which `git` is `git`: its directory first, or, when the binary has another
/// name, a directory holding a link named `git` to it.
pub fn path_with(git: &Path) -> OsString {
    let dir = if git.file_name().is_some_and(|name| name == "git") {
        git.parent()
            .expect("a git binary's path has a directory")
            .to_owned()
    } else {
        let tag: String = git
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("git-bin")
            .join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        // The directory is named after the binary, so a link already there is the right one
        // (another test may have made it a moment ago).
        #[cfg(unix)]
        let linked = std::os::unix::fs::symlink(git, dir.join("git"));
        #[cfg(windows)]
        let linked = std::os::windows::fs::symlink_file(git, dir.join("git"));
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{}: {e}", dir.display()),
        }
        dir
    };
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&rest)))
        .expect("PATH entries hold no ':'")
}
