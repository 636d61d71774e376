//! Every git client against the emulator, configured only by `setup`: git's command line, cargo
//! with libgit2 and with the git CLI, git-lfs, and the glue for clients that never ask helpers
//! (docs/clients.md), each with the scopes the server logged for its requests asserted.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::emulator::{Decision, Emulator, Record, Service};
use support::git::{User, new_git};
use support::home::{HELPER, Run, run};
use support::jwt::TestKey;

/// A user configured by `setup` alone, for an emulator reached as `localhost:PORT` (libgit2
/// takes no host from an IP address).
struct Clients {
    user: User,
    emulator: Emulator,
    /// `https://localhost:PORT`.
    base: String,
}

impl Clients {
    fn new(git: &Path) -> Self {
        let key = TestKey::p256();
        let emulator = Emulator::start(&[("acme", &key.public_pem)]);
        let user = User::new(git).trust(&emulator);
        let key_file = user.home.write_key("acme.pem", &key.pem);
        let host = format!("localhost:{}", emulator.port);
        let mut setup = user.command(HELPER);
        setup.args(["setup", "--org", "acme", "--key-file"]);
        setup.arg(&key_file).args(["--host", &host]);
        let done = run(setup, "");
        assert_eq!(done.code, Some(0), "setup: {done:?}");
        Self {
            user,
            emulator,
            base: format!("https://{host}"),
        }
    }

    fn url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.base)
    }

    /// How many requests the server has recorded so far.
    fn mark(&self) -> usize {
        self.emulator.records().len()
    }

    /// The requests recorded after `mark`.
    fn since(&self, mark: usize) -> Vec<Record> {
        self.emulator.records().split_off(mark)
    }

    /// Publishes a crate `name` as repository `repo`, pushed with git's command line.
    fn publish_crate(&self, repo: &str, name: &str) {
        let work = self.user.init(&format!("src-{name}"));
        std::fs::write(
            work.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        )
        .unwrap();
        std::fs::create_dir_all(work.join("src")).unwrap();
        self.user
            .commit(&work, "src/lib.rs", b"pub fn answer() -> u32 { 42 }\n");
        self.user.git_ok(&work, &["add", "Cargo.toml"]);
        self.user.git_ok(&work, &["commit", "-q", "-m", "crate"]);
        self.user
            .git_ok(&work, &["push", "-q", &self.url(repo), "main"]);
    }

    /// Cargo (the toolchain's own binary, not rustup's proxy: HOME is the test's) in a project
    /// depending on `repo` by git, with a CARGO_HOME of its own and nothing but the emulator to
    /// reach.
    fn cargo(&self, repo: &str, fetch_with_cli: bool) -> Run {
        let project = self.user.home.path().join(format!("app-{fetch_with_cli}"));
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(
            project.join("Cargo.toml"),
            format!(
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ndep = {{ git = \"{}\" }}\n",
                self.url(repo)
            ),
        )
        .unwrap();
        std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
        let mut cargo = self.user.command(cargo_binary());
        let ca = &self.emulator.ca;
        cargo
            .current_dir(&project)
            .args(["generate-lockfile"])
            .env("CARGO_HOME", project.join("cargo-home"))
            .env(
                "CARGO_NET_GIT_FETCH_WITH_CLI",
                if fetch_with_cli { "true" } else { "false" },
            )
            // Not CARGO_HTTP_CAINFO: any http.* setting makes cargo fetch through its own curl
            // transport, which never asks for credentials. libgit2's OpenSSL reads this.
            .env("SSL_CERT_FILE", ca)
            .env("CARGO_NET_RETRY", "0")
            .env("PATH", support::git::path_with(self.user.git_path()));
        run(cargo, "")
    }
}

/// The cargo that runs these tests: cargo sets `CARGO` to itself.
fn cargo_binary() -> PathBuf {
    match std::env::var_os("CARGO") {
        Some(cargo) => PathBuf::from(cargo),
        None => support::missing("cargo", "CARGO is not set; run the tests with cargo test"),
    }
}

/// Asserts that every request in `records` was for `repo`, allowed, with a verified token, and
/// returns the services and scopes logged, one entry per request that carried a token.
fn served(records: &[Record], repo: &str) -> Vec<(Service, Vec<String>)> {
    assert!(!records.is_empty(), "no request reached the server");
    let mut seen = Vec::new();
    for record in records {
        let Some(claims) = &record.claims else {
            // A client's first, unauthenticated probe: refused with 401, then it asks.
            assert_eq!(record.status, 401, "{record:?}");
            continue;
        };
        assert!(record.verified, "{record:?}");
        assert_eq!(record.decision, Decision::Allowed, "{record:?}");
        assert_eq!(claims.repo, repo, "{record:?}");
        seen.push((record.service, claims.scopes.clone()));
    }
    assert!(!seen.is_empty(), "no request carried a token: {records:?}");
    seen
}

#[test]
fn cargo_with_libgit2_and_with_the_git_cli_fetches_a_git_dependency_with_setups_config() {
    let clients = Clients::new(new_git());
    clients.publish_crate("team/dep", "dep");
    // libgit2 reads $HOME/.gitconfig: setup wrote exactly what it needs there.
    let gitconfig = std::fs::read_to_string(clients.user.home.path().join(".gitconfig")).unwrap();
    assert!(
        gitconfig.contains("[credential \"https://localhost\"]"),
        "{gitconfig}"
    );
    for fetch_with_cli in [false, true] {
        let mark = clients.mark();
        let fetched = clients.cargo("team/dep", fetch_with_cli);
        assert_eq!(
            fetched.code,
            Some(0),
            "cargo (git-fetch-with-cli = {fetch_with_cli}): {}\nserver: {}",
            fetched.stderr,
            clients.emulator.log()
        );
        let seen = served(&clients.since(mark), "team/dep");
        assert!(
            seen.iter()
                .all(|(service, _)| *service == Service::UploadPack),
            "{seen:?}"
        );
    }
    // Without the exact section, libgit2 neither runs the helper nor sends the path.
    clients.user.git_ok(
        clients.user.home.path(),
        &[
            "config",
            "--global",
            "--remove-section",
            "credential.https://localhost",
        ],
    );
    let mark = clients.mark();
    let unrouted = clients.cargo("team/dep", false);
    assert_ne!(unrouted.code, Some(0));
    let refused = clients.since(mark);
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|r| r.status == 401 && r.claims.is_none()),
        "{refused:?}"
    );
}

/// `git lfs version`, or the test fails naming the install script.
fn require_git_lfs(user: &User) {
    let version = user.git(user.home.path(), &["lfs", "version"]);
    if version.code != Some(0) {
        support::missing("git-lfs", version.stderr.trim());
    }
}

#[test]
fn git_lfs_pushes_and_clones_large_files_through_the_helper() {
    let clients = Clients::new(new_git());
    let user = &clients.user;
    require_git_lfs(user);
    user.git_ok(user.home.path(), &["lfs", "install", "--skip-repo"]);
    let repo = "team/media";
    let work = user.init("lfs-work");
    user.git_ok(&work, &["lfs", "track", "*.bin"]);
    let data = support::git::incompressible(200_000, 7);
    std::fs::write(work.join("big.bin"), &data).unwrap();
    user.git_ok(&work, &["add", ".gitattributes", "big.bin"]);
    user.git_ok(&work, &["commit", "-q", "-m", "large file"]);
    let mark = clients.mark();
    user.git_ok(&work, &["push", "-q", &clients.url(repo), "main"]);
    let pushed = clients.since(mark);
    let uploads: Vec<_> = pushed
        .iter()
        .filter(|r| r.service == Service::LfsUpload && r.claims.is_some())
        .collect();
    // The batch, then the object itself.
    assert!(uploads.len() >= 2, "{pushed:?}");
    assert!(
        uploads
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/info/lfs/objects/")),
        "{uploads:?}"
    );
    for record in &uploads {
        assert!(
            record.verified && record.decision == Decision::Allowed,
            "{record:?}"
        );
        let claims = record.claims.as_ref().unwrap();
        assert_eq!(claims.repo, repo);
        // git-lfs pre-push writes: the configured scopes.
        assert_eq!(claims.scopes, ["git:read", "git:write"], "{record:?}");
    }

    let mark = clients.mark();
    let fresh = user.home.path().join("lfs-clone");
    user.git_ok(
        user.home.path(),
        &["clone", "-q", &clients.url(repo), fresh.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(fresh.join("big.bin")).unwrap(), data);
    let cloned = clients.since(mark);
    let downloads: Vec<_> = cloned
        .iter()
        .filter(|r| r.service == Service::LfsDownload && r.claims.is_some())
        .collect();
    assert!(downloads.iter().any(|r| r.method == "GET"), "{cloned:?}");
    for record in &downloads {
        assert!(
            record.verified && record.decision == Decision::Allowed,
            "{record:?}"
        );
        assert_eq!(record.claims.as_ref().unwrap().repo, repo);
    }
}
