//! Every git client against the emulator, configured only by `setup`: git's command line, cargo
//! with libgit2 and with the git CLI, git-lfs, and the glue for clients that never ask helpers
//! (docs/clients.md), each with the scopes the server logged for its requests asserted.

use crate::support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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

/// The code block that follows `<!-- snippet: NAME -->` in docs/clients.md.
fn snippet(name: &str) -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/clients.md")).unwrap();
    let marker = format!("<!-- snippet: {name} -->\n");
    let after = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no {marker}")) + marker.len()..];
    let body = &after[after.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// Where scripts/install-test-deps.sh puts the clients that never run helpers.
fn client_deps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/client-deps")
}

/// Runs `program` with `args` as the user, with the test's git first on PATH.
fn run_glue(clients: &Clients, program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Run {
    let mut command = clients.user.command(program);
    command
        .current_dir(clients.user.home.path())
        .args(args)
        .env("PATH", support::git::path_with(clients.user.git_path()));
    for (name, value) in env {
        command.env(name, value);
    }
    run(command, "")
}

/// Asserts that a glue client's clone read with `git:read` tokens and its push wrote with the
/// configured scopes, then that the branch it pushed is on the server.
fn assert_glue(clients: &Clients, name: &str, repo: &str, records: &[Record]) {
    let seen = served(records, repo);
    assert!(
        seen.iter()
            .any(|(service, _)| *service == Service::ReceivePack),
        "{name}: no push: {seen:?}"
    );
    for (service, scopes) in &seen {
        match service {
            Service::UploadPack => assert_eq!(scopes, &["git:read"], "{name}: {seen:?}"),
            _ => assert_eq!(scopes, &["git:read", "git:write"], "{name}: {seen:?}"),
        }
    }
    assert!(
        clients
            .emulator
            .rev(repo, &format!("refs/heads/{name}"))
            .is_some(),
        "{name} pushed nothing"
    );
}

const PYGIT2_DRIVER: &str = r#"
import sys
ca, url, work = sys.argv[1:4]
pygit2.settings.set_ssl_cert_locations(ca, None)
repo = clone(url, work)
blob = repo.create_blob(b"from pygit2\n")
tree = repo.TreeBuilder(repo.head.peel().tree)
tree.insert("pygit2.txt", blob, pygit2.GIT_FILEMODE_BLOB)
me = pygit2.Signature("Test", "test@example.invalid")
repo.create_commit("refs/heads/main", me, me, "pygit2", tree.write(), [repo.head.target])
push(repo, url, "refs/heads/main:refs/heads/pygit2")
"#;

const DULWICH_DRIVER: &str = r#"
import sys
ca, url, work = sys.argv[1:4]
clone(url, work)
with open(work + "/dulwich.txt", "w") as f:
    f.write("from dulwich\n")
porcelain.add(work, [work + "/dulwich.txt"])
me = b"Test <test@example.invalid>"
porcelain.commit(work, message=b"dulwich", author=me, committer=me)
push(work, url, b"refs/heads/main:refs/heads/dulwich")
"#;

const ISOMORPHIC_GIT_DRIVER: &str = r#"
const [url, dir] = process.argv.slice(2);
(async () => {
  await clone(url, dir);
  fs.writeFileSync(`${dir}/iso.txt`, "from isomorphic-git\n");
  await git.add({ fs, dir, filepath: "iso.txt" });
  const author = { name: "Test", email: "test@example.invalid" };
  await git.commit({ fs, dir, message: "isomorphic-git", author });
  await push(dir, url, "main", "isomorphic-git");
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn pygit2_dulwich_and_isomorphic_git_clone_and_push_with_the_glue_of_the_docs() {
    let clients = Clients::new(new_git());
    let user = &clients.user;
    let deps = client_deps();
    let python = deps.join("venv/bin/python");
    let node_modules = deps.join("node_modules");
    if !python.exists() || !node_modules.join("isomorphic-git").exists() {
        support::missing(
            "pygit2, dulwich and isomorphic-git",
            format!("{} is incomplete", deps.display()),
        );
    }
    // dulwich trusts the CA named in git's config; pygit2 is told in the driver.
    user.git_ok(
        user.home.path(),
        &[
            "config",
            "--global",
            "http.sslCAInfo",
            clients.emulator.ca.to_str().unwrap(),
        ],
    );
    let ca = clients.emulator.ca.as_os_str();
    for (name, script, driver) in [
        (
            "pygit2",
            format!("{}\n{}", snippet("python-fill"), snippet("pygit2")),
            PYGIT2_DRIVER,
        ),
        (
            "dulwich",
            format!("{}\n{}", snippet("python-fill"), snippet("dulwich")),
            DULWICH_DRIVER,
        ),
    ] {
        let repo = format!("glue/{name}");
        clients.publish_crate(&repo, name);
        let file = user.home.path().join(format!("glue_{name}.py"));
        std::fs::write(&file, format!("{script}\n{driver}")).unwrap();
        let work = user.home.path().join(format!("{name}-work"));
        let mark = clients.mark();
        let ran = run_glue(
            &clients,
            &python,
            &[
                file.to_str().unwrap(),
                clients.emulator.ca.to_str().unwrap(),
                &clients.url(&repo),
                work.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(ran.code, Some(0), "{name}: {}{}", ran.stdout, ran.stderr);
        assert_glue(&clients, name, &repo, &clients.since(mark));
    }

    let name = "isomorphic-git";
    let repo = format!("glue/{name}");
    clients.publish_crate(&repo, "iso");
    let file = user.home.path().join("glue.js");
    std::fs::write(&file, format!("{}\n{ISOMORPHIC_GIT_DRIVER}", snippet(name))).unwrap();
    let work = user.home.path().join("iso-work");
    let mark = clients.mark();
    let node = Path::new("node");
    let ran = run_glue(
        &clients,
        node,
        &[
            file.to_str().unwrap(),
            &clients.url(&repo),
            work.to_str().unwrap(),
        ],
        &[
            ("NODE_PATH", node_modules.as_os_str()),
            ("NODE_EXTRA_CA_CERTS", ca),
        ],
    );
    assert_eq!(ran.code, Some(0), "{name}: {}{}", ran.stdout, ran.stderr);
    assert_glue(&clients, name, &repo, &clients.since(mark));
}

#[test]
fn each_git_pushes_with_the_configured_scopes_and_clones_with_read_tokens() {
    for git in support::git::each_git() {
        let label = support::git::describe(git);
        let clients = Clients::new(git);
        let user = &clients.user;
        let repo = "team/matrix";
        let mark = clients.mark();
        clients.publish_crate(repo, "matrix");
        let pushed = served(&clients.since(mark), repo);
        assert!(
            pushed
                .iter()
                .any(|(service, _)| *service == Service::ReceivePack),
            "{label}: {pushed:?}"
        );
        for (_, scopes) in &pushed {
            assert_eq!(scopes, &["git:read", "git:write"], "{label}: {pushed:?}");
        }
        let mark = clients.mark();
        let fresh = user.home.path().join("fresh");
        user.git_ok(
            user.home.path(),
            &["clone", "-q", &clients.url(repo), fresh.to_str().unwrap()],
        );
        let cloned = served(&clients.since(mark), repo);
        for (service, scopes) in &cloned {
            assert_eq!(*service, Service::UploadPack, "{label}");
            assert_eq!(scopes, &["git:read"], "{label}: {cloned:?}");
        }
    }
}
