//! `key_agent`: tokens signed by keys that live only in a real `ssh-agent` on a private socket.
//! Keys are made in the test, loaded into the agent and their files deleted; every token is
//! checked with ring against a public key OpenSSL or ring derived in the test, and real git
//! clones and pushes through the agent against the emulator.

use crate::support;

use std::path::Path;

use git_credential_codestorage::sshagent::Agent;
use support::emulator::Emulator;
use support::git::{User, each_git, new_git};
use support::home::{HELPER, Home, Run, run};
use support::jwt::{TestKey, verify};
use support::signers::{openssl_key, request};
use support::ssh_agent::SshAgent;

/// Runs `get` for `host` in `home`, with SSH_AUTH_SOCK set to `socket` or unset.
fn get(home: &Home, host: &str, socket: Option<&Path>) -> Run {
    let mut command = home.command(HELPER);
    command.arg("get");
    match socket {
        Some(socket) => command.env("SSH_AUTH_SOCK", socket),
        None => command.env_remove("SSH_AUTH_SOCK"),
    };
    run(command, request(host, "team/x.git"))
}

/// Fails the test unless `run` told git to stop with one line on stderr and no credential.
fn assert_quit_with_one_line(run: &Run) {
    assert_eq!(run.stdout, "quit=1\n", "{run:?}");
    assert!(!run.stdout.contains("password"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
}

/// Loads `key` (ring-made PKCS#8) into the agent through the crate's `add_key`, the route for
/// Ed25519, whose PKCS#8 PEM OpenSSH 9.2's ssh-add cannot read.
fn add_with_client(agent: &SshAgent, key: &TestKey, comment: &str) {
    let der = pem::parse(&key.pem).unwrap();
    Agent::at(agent.socket())
        .add_key(der.contents(), comment)
        .unwrap();
}

/// A running agent holding a new P-256 key (added from memory: `ssh-add -` reads it on stdin),
/// the key, and its SHA256 fingerprint.
fn agent_with_p256() -> (SshAgent, TestKey, String) {
    let agent = SshAgent::start();
    let key = TestKey::p256();
    agent.add(&[], "-", key.pem.as_bytes());
    let fingerprint = agent.fingerprint("(stdin)");
    (agent, key, fingerprint)
}

/// A home whose organisation `acme` signs with the agent key `fingerprint`.
fn acme_by_fingerprint(fingerprint: &str) -> Home {
    let home = Home::new();
    home.write_config(&format!("[org.acme]\nkey_agent = \"{fingerprint}\"\n"));
    home
}

#[test]
fn get_signs_with_p256_ed25519_and_rsa_keys_that_live_only_in_the_agent() {
    let agent = SshAgent::start();
    let home = Home::new();
    let config_dir = home.config_path().parent().unwrap().to_owned();

    // P-256 and RSA-2048 made by OpenSSL, added from files that are then deleted; the public
    // keys to check with are OpenSSL's, kept beside the config (key_agent may name them).
    let p256_file = agent.dir().join("p256.pem");
    let p256_public = openssl_key(&p256_file, "EC");
    let rsa_file = agent.dir().join("rsa.pem");
    let rsa_public = openssl_key(&rsa_file, "RSA");
    agent.add_and_delete(&p256_file);
    let rsa_fingerprint = agent.add_and_delete(&rsa_file);
    std::fs::write(config_dir.join("p256.pub.pem"), &p256_public).unwrap();

    // Ed25519 made by ring, never written anywhere.
    let ed25519 = TestKey::ed25519();
    add_with_client(&agent, &ed25519, "ed25519-from-ring");
    let ed25519_fingerprint = agent.fingerprint("ed25519-from-ring");

    // A relative public key path is relative to the config file; the Ed25519 key is found
    // through agent_socket, not SSH_AUTH_SOCK.
    home.write_config(&format!(
        "[org.alpha]\nkey_agent = \"p256.pub.pem\"\n\n[org.beta]\nkey_agent = \"{ed25519_fingerprint}\"\nagent_socket = \"{}\"\n\n[org.gamma]\nkey_agent = \"{rsa_fingerprint}\"\n",
        agent.socket().display()
    ));
    let cases = [
        (
            "alpha",
            Some(agent.socket()),
            TestKey::from_pems(String::new(), p256_public, "ES256"),
        ),
        ("beta", None, ed25519),
        (
            "gamma",
            Some(agent.socket()),
            TestKey::from_pems(String::new(), rsa_public, "RS256"),
        ),
    ];
    for (org, socket, public) in cases {
        let run = get(&home, &format!("{org}.code.storage"), socket);
        assert_eq!(run.code, Some(0), "{run:?}");
        let token = run.password();
        let verified = verify(&token, &public);
        assert_eq!(verified.claims["iss"], org);
        assert_eq!(verified.claims["repo"], "team/x");
        assert!(!run.stderr.contains(&token));
    }
    // Nothing but the public keys and the config is on disk.
    let mut left: Vec<String> = std::fs::read_dir(agent.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["agent.sock"]);
}

#[test]
fn real_git_clones_and_pushes_through_an_agent_key() {
    let (agent, key, fingerprint) = agent_with_p256();
    for git in each_git() {
        let emulator = Emulator::start(&[("acme", &key.public_pem)]);
        let user = User::new(git)
            .trust(&emulator)
            .env("SSH_AUTH_SOCK", agent.socket().to_str().unwrap());
        user.home.write_config(&format!(
            "[org.acme]\nkey_agent = \"{fingerprint}\"\nhosts = [\"{}\"]\n",
            emulator.host
        ));
        user.use_helper_for(&emulator.url);
        let url = emulator.repo_url("team/agent");
        let work = user.init("work");
        let commit = user.commit(&work, "a.txt", b"signed by the agent\n");
        user.git_ok(&work, &["remote", "add", "origin", &url]);
        user.git_ok(&work, &["push", "-q", "origin", "main"]);
        assert_eq!(
            emulator.rev("team/agent", "refs/heads/main"),
            Some(commit.clone())
        );
        let clone = user.home.path().join("clone");
        user.git_ok(
            user.home.path(),
            &["clone", "-q", &url, clone.to_str().unwrap()],
        );
        assert_eq!(user.head(&clone), commit);
        let records = emulator.records();
        assert!(
            records.iter().any(|r| r.verified)
                && records
                    .iter()
                    .all(|r| r.status != 401 || r.claims.is_none()),
            "{records:?}"
        );
    }
}

#[test]
fn a_key_removed_from_the_agent_is_one_clear_line_and_quit() {
    let (agent, key, fingerprint) = agent_with_p256();
    let home = acme_by_fingerprint(&fingerprint);
    let signed = get(&home, "acme.code.storage", Some(agent.socket()));
    verify(&signed.password(), &key);

    let removed = agent.ssh_add(&["-D"], b"");
    assert!(removed.status.success(), "{removed:?}");
    let run = get(&home, "acme.code.storage", Some(agent.socket()));
    assert_quit_with_one_line(&run);
    let socket = agent.socket().display().to_string();
    for part in [
        "organisation \"acme\"",
        "holds no key",
        &fingerprint,
        "ssh-add -l -E sha256",
        &socket,
    ] {
        assert!(
            run.stderr.contains(part),
            "{part:?} missing: {}",
            run.stderr
        );
    }
}

#[test]
fn no_agent_unset_or_dead_is_one_clear_line_and_quit() {
    let (mut agent, _, fingerprint) = agent_with_p256();
    let home = acme_by_fingerprint(&fingerprint);

    let unset = get(&home, "acme.code.storage", None);
    assert_quit_with_one_line(&unset);
    assert!(
        unset.stderr.contains("SSH_AUTH_SOCK is not set")
            && unset.stderr.contains("eval \"$(ssh-agent)\""),
        "{}",
        unset.stderr
    );

    // A crashed agent leaves its socket behind.
    agent.kill();
    let dead = get(&home, "acme.code.storage", Some(agent.socket()));
    assert_quit_with_one_line(&dead);
    assert!(
        dead.stderr.contains(&format!(
            "cannot reach the ssh-agent at {}",
            agent.socket().display()
        )) && dead.stderr.contains("ssh-add -l"),
        "{}",
        dead.stderr
    );
}

#[test]
fn a_declined_confirmation_is_one_clear_line_and_quit() {
    // The agent asks /bin/false to confirm each use of a key added with `ssh-add -c`: declined.
    let agent = SshAgent::start();
    let private = agent.keygen("confirm", "ed25519", "256", &[]);
    agent.add(&["-c"], private.to_str().unwrap(), b"");
    std::fs::remove_file(&private).unwrap();
    let public = private.with_extension("pub");
    let home = Home::new();
    home.write_config(&format!(
        "[org.acme]\nkey_agent = \"{}\"\n",
        public.display()
    ));
    let run = get(&home, "acme.code.storage", Some(agent.socket()));
    assert_quit_with_one_line(&run);
    assert!(
        run.stderr.contains("refused to sign")
            && run.stderr.contains("ssh-add -c")
            && run.stderr.contains(&agent.socket().display().to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn doctor_names_the_agent_socket_when_the_key_signs_and_the_fix_when_it_does_not() {
    let (agent, _, fingerprint) = agent_with_p256();
    let home = acme_by_fingerprint(&fingerprint);
    let socket = agent.socket().display().to_string();
    let doctor = |home: &Home| {
        let mut command = home.command(HELPER);
        command.arg("doctor").env("SSH_AUTH_SOCK", agent.socket());
        run(command, "")
    };
    let healthy = doctor(&home);
    let line = healthy
        .stdout
        .lines()
        .find(|l| l.contains("key of organisation acme"))
        .unwrap_or_else(|| panic!("{healthy:?}"));
    assert!(
        line.starts_with("ok")
            && line.contains(&format!(
                "ssh-agent key {fingerprint} in the ssh-agent at {socket}"
            ))
            && line.contains("(ES256)"),
        "{line}"
    );

    assert!(agent.ssh_add(&["-D"], b"").status.success());
    let broken = doctor(&home);
    assert_ne!(broken.code, Some(0));
    let line = broken
        .stdout
        .lines()
        .find(|l| l.contains("key of organisation acme"))
        .unwrap_or_else(|| panic!("{broken:?}"));
    assert!(
        line.starts_with("FAIL")
            && line.contains("holds no key")
            && line.contains("ssh-add -l -E sha256")
            && line.contains(&socket),
        "{line}"
    );
}

/// Runs the helper as `user` would from a terminal, with the agent at `socket`; fails the test
/// unless it succeeds.
fn helper(user: &User, socket: &str, args: &[&str]) -> Run {
    let mut command = user.home.command(HELPER);
    command
        .args(args)
        .current_dir(user.home.path())
        .env("SSH_AUTH_SOCK", socket)
        .env("GIT_CONFIG_GLOBAL", user.home.path().join(".gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1");
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{args:?}: {result:?}");
    result
}

#[test]
fn keygen_into_the_agent_then_setup_then_git_clone() {
    let agent = SshAgent::start();
    let socket = agent.socket().to_str().unwrap();
    let user = User::new(new_git()).env("SSH_AUTH_SOCK", socket);

    let made = helper(&user, socket, &["keygen", "--org", "acme", "--ssh-agent"]);
    assert!(
        made.stdout.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{made:?}"
    );
    let fingerprint = made
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint: {}", made.stderr))
        .to_owned();
    assert!(
        agent
            .listed()
            .contains(&format!("{fingerprint} codestorage acme (ECDSA)")),
        "{}",
        agent.listed()
    );
    assert!(
        made.stderr
            .contains(&format!("setup --org acme --ssh-agent {fingerprint}")),
        "{}",
        made.stderr
    );
    // No private key was written: the config directory is as empty as it was.
    let written: Vec<_> = std::fs::read_dir(user.home.config_path().parent().unwrap())
        .unwrap()
        .collect();
    assert!(written.is_empty(), "{written:?}");

    // The server knows the public key keygen printed, and nothing else.
    let emulator = Emulator::start(&[("acme", &made.stdout)]);
    let user = user.trust(&emulator);

    // A key the agent does not hold: setup refuses before writing anything.
    let absent = TestKey::p256();
    let absent_public = user.home.path().join("absent.pub.pem");
    std::fs::write(&absent_public, &absent.public_pem).unwrap();
    let mut command = user.home.command(HELPER);
    command
        .args(["setup", "--org", "acme", "--ssh-agent"])
        .arg(&absent_public)
        .current_dir(user.home.path())
        .env("SSH_AUTH_SOCK", socket)
        .env("GIT_CONFIG_GLOBAL", user.home.path().join(".gitconfig"));
    let refused = run(command, "");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("holds no key") && refused.stderr.contains(&fingerprint),
        "{}",
        refused.stderr
    );
    assert!(!user.home.config_path().exists());

    let setup = helper(
        &user,
        socket,
        &[
            "setup",
            "--org",
            "acme",
            "--ssh-agent",
            &fingerprint,
            "--host",
            &emulator.host,
        ],
    );
    assert!(
        setup
            .stdout
            .contains(&format!("ok: ssh-agent key {fingerprint} signs (ES256)")),
        "{}",
        setup.stdout
    );
    let config = std::fs::read_to_string(user.home.config_path()).unwrap();
    assert!(
        config.contains(&format!("key_agent = \"{fingerprint}\"")),
        "{config}"
    );

    let url = emulator.repo_url("team/from-agent");
    user.push_and_clone_back(&url);
}

#[test]
fn keygen_ed25519_into_the_agent_then_setup_by_public_key_file_then_git_push() {
    let agent = SshAgent::start();
    let socket = agent.socket().to_str().unwrap();
    let user = User::new(new_git()).env("SSH_AUTH_SOCK", socket);
    let made = helper(
        &user,
        socket,
        &["keygen", "--org", "acme", "--ssh-agent", "--ed25519"],
    );
    assert!(
        agent.listed().contains("codestorage acme (ED25519)"),
        "{}",
        agent.listed()
    );
    // The public key keygen printed is what the server knows and what setup is pointed at.
    let public = user.home.path().join("acme.pub.pem");
    std::fs::write(&public, &made.stdout).unwrap();
    let emulator = Emulator::start(&[("acme", &made.stdout)]);
    let user = user.trust(&emulator);
    let setup = helper(
        &user,
        socket,
        &[
            "setup",
            "--org",
            "acme",
            "--ssh-agent",
            public.to_str().unwrap(),
            "--host",
            &emulator.host,
        ],
    );
    assert!(setup.stdout.contains("signs (EdDSA)"), "{}", setup.stdout);
    let config = std::fs::read_to_string(user.home.config_path()).unwrap();
    assert!(config.contains("key_agent = "), "{config}");
    assert!(config.contains("acme.pub.pem"), "{config}");

    let url = emulator.repo_url("team/ed25519-agent");
    let work = user.init("work");
    let commit = user.commit(&work, "a.txt", b"one\n");
    user.git_ok(&work, &["push", "-q", &url, "main"]);
    assert_eq!(
        emulator.rev("team/ed25519-agent", "refs/heads/main"),
        Some(commit)
    );
    // Checked by ring with the printed public key, not by the helper's code.
    let token = get(&user.home, &emulator.host, Some(agent.socket())).password();
    let verified = verify(
        &token,
        &TestKey::from_pems(String::new(), made.stdout.clone(), "EdDSA"),
    );
    assert_eq!(verified.claims["iss"], "acme");
}
