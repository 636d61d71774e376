//! A `codestorage-emulator` process on loopback for one test, stopped when dropped (even when
//! the test fails), with its CA, its repositories and its logs in a temporary directory: the
//! human one (stderr) and the JSON request log, read back as [`Record`]s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde::Deserialize;

/// The emulator binary under test.
pub const EMULATOR: &str = env!("CARGO_BIN_EXE_codestorage-emulator");

/// A running emulator.
pub struct Emulator {
    child: Child,
    /// Its base URL, e.g. `https://127.0.0.1:43127`.
    pub url: String,
    /// `127.0.0.1:PORT`, as git names the host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The CA certificate git must trust.
    pub ca: PathBuf,
    /// Where its bare repositories live.
    pub root: PathBuf,
    log: PathBuf,
    requests: PathBuf,
    dir: tempfile::TempDir,
}

/// One request as the emulator's `--log` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// When, in seconds since the Unix epoch.
    pub time: i64,
    /// The method; empty when the head never came whole.
    pub method: String,
    /// The path as sent, without the query; empty when the head never came whole.
    pub path: String,
    /// The service asked for.
    pub service: Service,
    /// `v0` or `v2`; empty for LFS and when the head never came whole.
    pub protocol: String,
    /// The HTTP status sent.
    pub status: u16,
    /// What the emulator decided.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// Whether the token passed every check (signature, lifetime, repository).
    pub verified: bool,
    /// The claims of the token presented, if any (as claimed when not `verified`).
    pub claims: Option<Claims>,
}

/// A smart-HTTP service, as the request log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
    /// A Git LFS download (batch or object).
    LfsDownload,
    /// A Git LFS upload (batch or object).
    LfsUpload,
    /// A Git LFS lock request.
    LfsLocks,
    /// Refused before it was routed to any.
    None,
}

/// What the emulator did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Passed to http-backend.
    Allowed,
    /// Refused before http-backend.
    Refused,
    /// The client did not send its request head in time.
    Dropped,
}

/// A token's claims, as the server saw them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Organisation.
    pub iss: String,
    /// Agent identity.
    pub sub: String,
    /// Repository ID.
    pub repo: String,
    /// Scopes, in the token's order.
    pub scopes: Vec<String>,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Per-ref policies, when the token had them.
    #[serde(default)]
    pub refs: Option<Vec<(String, Vec<String>)>>,
    /// Repository-wide policies, when the token had them.
    #[serde(default)]
    pub ops: Option<Vec<String>>,
}

impl Emulator {
    /// Starts an emulator knowing `orgs` (name, public key PEM); repositories are created on
    /// their first push.
    pub fn start(orgs: &[(&str, &str)]) -> Self {
        Self::start_with(orgs, |command| {
            command.arg("--create-on-push");
        })
    }

    /// Starts an emulator knowing `orgs`, after `configure` has added its own arguments or
    /// environment (e.g. `--create-on-push`, or a `PATH` choosing the server's git).
    pub fn start_with(orgs: &[(&str, &str)], configure: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        let ca = dir.path().join("ca.pem");
        let log = dir.path().join("emulator.log");
        let requests = dir.path().join("requests.jsonl");
        let mut command = Command::new(EMULATOR);
        command
            .arg("--root")
            .arg(&root)
            .arg("--ca-out")
            .arg(&ca)
            .arg("--log")
            .arg(&requests);
        configure(&mut command);
        for (index, (org, public_pem)) in orgs.iter().enumerate() {
            let path = dir.path().join(format!("{org}-{index}.pub.pem"));
            std::fs::write(&path, public_pem).unwrap();
            command
                .arg("--org")
                .arg(format!("{org}={}", path.display()));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut url = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        let url = url.trim().to_owned();
        assert!(
            url.starts_with("https://"),
            "emulator did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let host = url.trim_start_matches("https://").to_owned();
        let port = host.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            url,
            host,
            port,
            ca,
            root,
            log,
            requests,
            dir,
        }
    }

    /// The URL of repository `repo`.
    pub fn repo_url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.url)
    }

    /// Everything the emulator logged so far on stderr, one line per request.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every request the emulator has recorded so far, in the order it decided them. A request
    /// is recorded before its client sees the end of the answer, so once git returns, its
    /// requests are here.
    pub fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(&self.requests).unwrap_or_default();
        text.split_inclusive('\n')
            // A line still being written has no newline yet.
            .filter(|line| line.ends_with('\n'))
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad request log line {line:?}: {e}"))
            })
            .collect()
    }

    /// The request log as written, for checking that no token is in it.
    pub fn records_text(&self) -> String {
        std::fs::read_to_string(&self.requests).unwrap_or_default()
    }

    /// The commit `refname` points at in the server's copy of `repo`, if any.
    pub fn rev(&self, repo: &str, refname: &str) -> Option<String> {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(self.root.join(format!("{repo}.git")))
            .args(["rev-parse", "--verify", "--quiet", refname])
            .output()
            .unwrap();
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// A TLS connection to the emulator (handshake still to come), trusting only its CA: for
    /// requests git would never send.
    pub fn tls_connect(&self) -> StreamOwned<ClientConnection, TcpStream> {
        let mut roots = RootCertStore::empty();
        let ca = pem::parse(std::fs::read(&self.ca).unwrap()).unwrap();
        roots.add(CertificateDer::from(ca.into_contents())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let address: SocketAddr = self.host.parse().unwrap();
        let name = ServerName::IpAddress(address.ip().into());
        let connection = ClientConnection::new(Arc::new(config), name).unwrap();
        StreamOwned::new(connection, TcpStream::connect(address).unwrap())
    }

    /// Sends `request` over HTTPS and returns the whole response (the emulator closes each
    /// connection after one response).
    pub fn https_exchange(&self, request: &[u8]) -> String {
        let mut stream = self.tls_connect();
        stream.write_all(request).unwrap();
        stream.flush().unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    /// The emulator's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A scratch directory that lives as long as the emulator.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the server hold `repo` with one commit on `main`, written straight into its
    /// repositories (no helper, no HTTP: for repositories a test's user may only read); the
    /// commit's ID.
    pub fn seed(&self, repo: &str) -> String {
        let bare = self.root.join(format!("{repo}.git"));
        let source = self
            .scratch()
            .join(format!("seed-{}", repo.replace('/', "-")));
        let git = |dir: &Path, args: &[&str]| {
            let output = Command::new(super::gits::new_git())
                .current_dir(dir)
                .args([
                    "-c",
                    "user.name=Seed",
                    "-c",
                    "user.email=seed@example.invalid",
                ])
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(output.status.success(), "{args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        std::fs::create_dir_all(&source).unwrap();
        git(&source, &["init", "-q", "-b", "main"]);
        git(&source, &["commit", "-q", "--allow-empty", "-m", "seed"]);
        git(&source, &["push", "-q", bare.to_str().unwrap(), "main"]);
        git(&source, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
