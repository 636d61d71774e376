//! A `codestorage-emulator` process on loopback for one test, stopped when dropped (even when
//! the test fails), with its CA, its repositories and its log in a temporary directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

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
    dir: tempfile::TempDir,
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
        let mut command = Command::new(EMULATOR);
        command.arg("--root").arg(&root).arg("--ca-out").arg(&ca);
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
            dir,
        }
    }

    /// The URL of repository `repo`.
    pub fn repo_url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.url)
    }

    /// Everything the emulator logged so far, one line per request.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
