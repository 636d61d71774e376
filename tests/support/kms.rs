//! moto's AWS KMS server on a free loopback port, and the contrib AWS KMS signer run by the
//! Python of the virtual environment `scripts/install-test-deps.sh` makes (`target/kms-venv`,
//! or `CODESTORAGE_TEST_VENV`), where boto3 and moto are installed.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The virtual environment with boto3 and moto; fails the test with the fix when it is missing.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("CODESTORAGE_TEST_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kms-venv"),
        PathBuf::from,
    );
    assert!(
        dir.join("bin/moto_server").is_file(),
        "{} has no moto_server: run scripts/install-test-deps.sh (it installs moto[server] and boto3 there)",
        dir.display()
    );
    dir
}

/// The contrib AWS KMS signer, as `sign_command` names it: the venv's Python and the script.
pub fn signer_argv(args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        venv().join("bin/python").to_string_lossy().into_owned(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/aws-kms-sign.py")
            .to_string_lossy()
            .into_owned(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

/// A running `moto_server`, stopped when dropped.
pub struct Moto {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it accepts connections.
    pub fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto_server exited at start"
            );
            assert!(Instant::now() < deadline, "moto_server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        moto
    }

    /// The environment boto3 needs to reach this server with test credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Runs `argv` in this server's environment; its stdout.
    fn run(&self, argv: &[String]) -> String {
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(output.status.success(), "{argv:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Creates an `ECC_NIST_P256` signing key with an alias; returns the alias.
    pub fn create_p256_key(&self, alias: &str) -> String {
        let script = format!(
            "import boto3\nkms = boto3.client('kms')\nkey = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId']\nkms.create_alias(AliasName='alias/{alias}', TargetKeyId=key)\n"
        );
        let python = venv().join("bin/python").to_string_lossy().into_owned();
        self.run(&[python, "-c".to_owned(), script]);
        format!("alias/{alias}")
    }

    /// The key's public half as the contrib signer exports it (`--public-key`).
    pub fn public_key_pem(&self, key_id: &str) -> String {
        self.run(&signer_argv(&["--public-key", key_id]))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
