//! The ssh-agent client against a real OpenSSH `ssh-agent`: keys made in the test, loaded with
//! `ssh-add` and then deleted from disk, tokens signed through the agent and checked with ring
//! against public keys that OpenSSH or OpenSSL derived, not this crate.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use git_credential_codestorage::key::Algorithm;
use git_credential_codestorage::sshagent::{
    Agent, AgentError, AgentKey, Fingerprint, KeySelector, read_public_key,
};
use support::jwt::{TestKey, now, verify};
use support::ssh_agent::{SshAgent, ssh_keygen_fingerprint};

/// A JWT's signing input for `alg`, as the helper would make it.
fn signing_input(alg: &str) -> String {
    let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
    let claims = format!(
        r#"{{"iss":"acme","sub":"agent-test","repo":"team/x","scopes":["git:read"],"iat":{},"exp":{}}}"#,
        now(),
        now() + 60
    );
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// Signs a token through the agent and checks it with ring against `public_pem`, which must
/// come from somewhere other than this crate.
fn sign_and_verify(agent: &Agent, key: &AgentKey, alg: &'static str, public_pem: &str) {
    let input = signing_input(alg);
    let signature = agent.sign(key, input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let checker = TestKey::from_pems(String::new(), public_pem.to_owned(), alg);
    let verified = verify(&token, &checker);
    assert_eq!(verified.claims["iss"], "acme");
}

/// `ssh-keygen -e -m PKCS8 -f KEY.pub`: OpenSSH's own SPKI export of an EC or RSA public key.
fn openssh_spki_pem(public: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .args(["-e", "-m", "PKCS8", "-f"])
        .arg(public)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The SPKI PEM of an OpenSSH Ed25519 `.pub` line, built here by hand (ssh-keygen cannot
/// export Ed25519 as PKCS#8): the RFC 8410 prefix and the blob's last 32 bytes.
fn ed25519_spki_pem(pub_line: &str) -> String {
    let blob = STANDARD
        .decode(pub_line.split_whitespace().nth(1).unwrap())
        .unwrap();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&blob[blob.len() - 32..]);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(spki)
    )
}

fn pub_path(private: &Path) -> std::path::PathBuf {
    private.with_extension("pub")
}

#[test]
fn every_accepted_key_type_signs_through_the_agent_and_verifies_independently() {
    let ssh_agent = SshAgent::start();
    let agent = Agent::at(ssh_agent.socket());

    // P-256 made by ring, fed to `ssh-add -` on stdin: it is never written to disk at all.
    let ring_p256 = TestKey::p256();
    ssh_agent.add(&[], "-", ring_p256.pem.as_bytes());

    // Keys made by ssh-keygen, added from files that are then deleted.
    let ed25519 = ssh_agent.keygen("ed25519", "ed25519", "256", &[]);
    let ecdsa = ssh_agent.keygen("ecdsa", "ecdsa", "256", &["-m", "PKCS8"]);
    let rsa = ssh_agent.keygen("rsa", "rsa", "2048", &[]);
    for private in [&ed25519, &ecdsa, &rsa] {
        ssh_agent.add(&[], private.to_str().unwrap(), b"");
        std::fs::remove_file(private).unwrap();
        assert!(!private.exists());
    }

    let listed = agent.identities().unwrap();
    let algorithms: Vec<Algorithm> = listed.iter().map(AgentKey::algorithm).collect();
    assert_eq!(
        algorithms,
        [
            Algorithm::Es256,
            Algorithm::EdDsa,
            Algorithm::Es256,
            Algorithm::Rs256
        ]
    );
    for key in &listed {
        assert!(
            ssh_agent.listed().contains(key.fingerprint().as_str()),
            "{key:?}"
        );
    }

    // By public key from a SPKI PEM (as Code Storage registers it).
    let wanted = KeySelector::PublicKey(read_public_key(ring_p256.public_pem.as_bytes()).unwrap());
    let key = agent.find(&wanted).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    sign_and_verify(&agent, &key, "ES256", &ring_p256.public_pem);

    // By the `.pub` file ssh-keygen wrote.
    let ed_pub = std::fs::read_to_string(pub_path(&ed25519)).unwrap();
    let key = agent
        .find(&KeySelector::PublicKey(
            read_public_key(ed_pub.as_bytes()).unwrap(),
        ))
        .unwrap();
    assert_eq!(key.comment(), "ed25519");
    sign_and_verify(&agent, &key, "EdDSA", &ed25519_spki_pem(&ed_pub));

    // By the fingerprint ssh-keygen prints.
    for (private, alg) in [(&ecdsa, "ES256"), (&rsa, "RS256")] {
        let public = pub_path(private);
        let fingerprint = Fingerprint::parse(&ssh_keygen_fingerprint(&public)).unwrap();
        let key = agent.find(&KeySelector::Fingerprint(fingerprint)).unwrap();
        assert_eq!(key.algorithm().as_str(), alg);
        sign_and_verify(&agent, &key, alg, &openssh_spki_pem(&public));
    }
}

#[test]
fn p256_signatures_stay_64_bytes_when_r_or_s_is_short() {
    // One ECDSA r or s in 128 has a leading zero byte, which the agent's mpint drops; many
    // signatures make it likely that the left-padding runs against the real agent too (the
    // unit tests pin it down deterministically).
    let ssh_agent = SshAgent::start();
    let key = TestKey::p256();
    ssh_agent.add(&[], "-", key.pem.as_bytes());
    let agent = Agent::at(ssh_agent.socket());
    let found = agent
        .find(&KeySelector::PublicKey(
            read_public_key(key.public_pem.as_bytes()).unwrap(),
        ))
        .unwrap();
    let input = signing_input("ES256");
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        key.public_raw(),
    );
    for _ in 0..300 {
        let signature = agent.sign(&found, input.as_bytes()).unwrap();
        assert_eq!(signature.len(), 64);
        public.verify(input.as_bytes(), &signature).unwrap();
    }
}

#[test]
fn a_key_not_in_the_agent_is_named_with_what_the_agent_holds() {
    let ssh_agent = SshAgent::start();
    let ed25519 = ssh_agent.keygen("held", "ed25519", "256", &[]);
    let p384 = ssh_agent.keygen("p384", "ecdsa", "384", &[]);
    ssh_agent.add(&[], ed25519.to_str().unwrap(), b"");
    ssh_agent.add(&[], p384.to_str().unwrap(), b"");
    let agent = Agent::at(ssh_agent.socket());

    let absent = TestKey::ed25519();
    let wanted = KeySelector::PublicKey(read_public_key(absent.public_pem.as_bytes()).unwrap());
    let error = agent.find(&wanted).unwrap_err();
    let AgentError::KeyNotFound {
        fingerprint,
        available,
    } = &error
    else {
        panic!("expected KeyNotFound, got {error:?}");
    };
    assert_eq!(fingerprint, wanted.fingerprint());
    let held = ssh_keygen_fingerprint(&pub_path(&ed25519));
    let p384_fingerprint = ssh_keygen_fingerprint(&pub_path(&p384));
    assert_eq!(available.len(), 2, "{available:?}");
    assert!(available[0].starts_with(&format!("{held} held")));
    assert!(available[1].contains(&p384_fingerprint));
    let message = error.to_string();
    assert!(
        message.contains(&held) && message.contains("ssh-add -l -E sha256"),
        "{message}"
    );

    // The P-384 key is there but refused by name, and not offered as a signing key.
    let error = agent
        .find(&KeySelector::Fingerprint(
            Fingerprint::parse(&p384_fingerprint).unwrap(),
        ))
        .unwrap_err();
    assert!(
        matches!(&error, AgentError::UnsupportedKey { kind, .. } if kind.contains("P-384")),
        "{error:?}"
    );
    let usable = agent.identities().unwrap();
    assert_eq!(usable.len(), 1);
    assert_eq!(usable[0].fingerprint().as_str(), held);
}

#[test]
fn no_socket_and_a_dead_agent_say_how_to_start_one() {
    let error = Agent::from_env(None).unwrap_err();
    assert!(matches!(error, AgentError::NoSocket));
    assert!(error.to_string().contains("ssh-agent"));
    assert!(matches!(
        Agent::from_env(Some("")),
        Err(AgentError::NoSocket)
    ));

    let mut ssh_agent = SshAgent::start();
    let agent = Agent::from_env(ssh_agent.socket().to_str()).unwrap();
    assert!(agent.identities().unwrap().is_empty());
    // A killed agent leaves its socket file behind: connecting is refused.
    ssh_agent.kill();
    assert!(ssh_agent.socket().exists());
    let error = agent.identities().unwrap_err();
    assert!(matches!(error, AgentError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&ssh_agent.socket().display().to_string())
            && message.contains("ssh-add -l"),
        "{message}"
    );

    let missing = Agent::at(ssh_agent.dir().join("no-such.sock"));
    assert!(matches!(
        missing.identities(),
        Err(AgentError::Connect { .. })
    ));
}

#[test]
fn add_key_loads_fresh_keys_that_ssh_add_lists_and_that_sign() {
    let ssh_agent = SshAgent::start();
    let agent = Agent::at(ssh_agent.socket());
    for (key, alg) in [(TestKey::p256(), "ES256"), (TestKey::ed25519(), "EdDSA")] {
        let pkcs8 = pem::parse(&key.pem).unwrap();
        let added = agent
            .add_key(pkcs8.contents(), &format!("fresh {alg}"))
            .unwrap();
        assert_eq!(added.algorithm().as_str(), alg);
        let listed = ssh_agent.listed();
        assert!(
            listed.contains(&format!("{} fresh {alg}", added.fingerprint())),
            "{listed}"
        );
        // The agent's own listing names the key we computed, and it signs as ring's key would.
        let wanted = KeySelector::PublicKey(read_public_key(key.public_pem.as_bytes()).unwrap());
        let found = agent.find(&wanted).unwrap();
        assert_eq!(found.fingerprint(), added.fingerprint());
        assert_eq!(found.comment(), format!("fresh {alg}"));
        sign_and_verify(&agent, &found, alg, &key.public_pem);
    }
}

#[test]
fn a_key_that_needs_confirmation_is_refused_when_no_one_can_confirm() {
    let ssh_agent = SshAgent::start();
    // OpenSSH 9.2 reads no PKCS#8 Ed25519 PEM, so this key comes from ssh-keygen.
    let private = ssh_agent.keygen("confirm", "ed25519", "256", &[]);
    ssh_agent.add(&["-c"], private.to_str().unwrap(), b"");
    let public = std::fs::read(pub_path(&private)).unwrap();
    let agent = Agent::at(ssh_agent.socket());
    let found = agent
        .find(&KeySelector::PublicKey(read_public_key(&public).unwrap()))
        .unwrap();
    let error = agent.sign(&found, b"input").unwrap_err();
    assert!(matches!(error, AgentError::Refused { .. }), "{error:?}");
    assert!(error.to_string().contains("ssh-add -c"), "{error}");
}

#[test]
fn an_agent_that_answers_too_late_times_out() {
    // The confirmation program takes 3 s, so the agent answers only then; the client stops
    // waiting long before.
    let dir = tempfile::tempdir().unwrap();
    let askpass = dir.path().join("slow-askpass");
    std::fs::write(&askpass, "#!/bin/sh\nexec sleep 3\n").unwrap();
    support::home::set_mode(&askpass, 0o700);
    let ssh_agent = SshAgent::start_with_askpass(&askpass);
    let key = TestKey::p256();
    ssh_agent.add(&["-c"], "-", key.pem.as_bytes());
    let agent = Agent::at(ssh_agent.socket()).with_timeout(Duration::from_millis(300));
    let found = agent
        .find(&KeySelector::PublicKey(
            read_public_key(key.public_pem.as_bytes()).unwrap(),
        ))
        .unwrap();
    let started = Instant::now();
    let error = agent.sign(&found, b"input").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(error, AgentError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("within 300ms"), "{error}");
}
