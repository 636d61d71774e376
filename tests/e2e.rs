//! End to end: real git, configured once as a user would, cloning, fetching, pulling and
//! pushing through the helper against `codestorage-emulator`, a local HTTPS smart-HTTP server
//! that checks every token as Code Storage does.

use crate::support;

use support::emulator::Emulator;
use support::git::{AUTHTYPE, User, new_git, new_git_at_least, old_git};
use support::jwt::{TestKey, now};
use support::world::World;

/// The newest git's world whose helper signs with `key`, the key the server knows.
fn world(key: &TestKey, config_extra: &str) -> World {
    World::new(new_git(), key, config_extra)
}

/// The everyday flow: push a new repository, clone it, push again, fetch and pull it.
fn clone_fetch_pull_push(world: &World, repo: &str) {
    let (user, emulator) = (&world.user, &world.emulator);
    let url = emulator.repo_url(repo);
    let work = user.init("work");
    let first = user.commit(&work, "a.txt", b"one\n");
    user.git_ok(&work, &["remote", "add", "origin", &url]);
    user.git_ok(&work, &["push", "-q", "--set-upstream", "origin", "main"]);
    assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(first.clone()));

    let clone = user.home.path().join("clone");
    user.git_ok(
        user.home.path(),
        &["clone", "-q", &url, clone.to_str().unwrap()],
    );
    assert_eq!(user.head(&clone), first);

    let second = user.commit(&work, "b.txt", b"two\n");
    user.git_ok(&work, &["push", "-q"]);
    user.git_ok(&clone, &["fetch", "-q"]);
    let fetched = user.git_ok(&clone, &["rev-parse", "origin/main"]);
    assert_eq!(fetched.stdout.trim(), second);
    user.git_ok(&clone, &["pull", "-q", "--ff-only"]);
    assert_eq!(user.head(&clone), second);

    // No token was written anywhere git keeps state.
    let remote = user.git_ok(&clone, &["remote", "get-url", "origin"]);
    assert_eq!(remote.stdout.trim(), url);
    assert!(!user.home.path().join(".git-credentials").exists());
    assert!(
        emulator.log().contains("org=acme"),
        "the emulator saw no signed request: {}",
        emulator.log()
    );
}

#[test]
fn es256_clone_fetch_pull_and_push() {
    clone_fetch_pull_push(&world(&TestKey::p256(), ""), "team/project-alpha");
}

#[test]
fn every_key_type_and_format_works_end_to_end() {
    for key in [
        TestKey::fixture("rsa2048.pkcs8.pem", "rsa2048.pub.pem", "RS256"),
        TestKey::ed25519(),
        TestKey::fixture("p256.sec1-params.pem", "p256.pub.pem", "ES256"),
        TestKey::fixture("rsa2048.pkcs1.pem", "rsa2048.pub.pem", "RS256"),
    ] {
        clone_fetch_pull_push(&world(&key, ""), "team/x");
    }
}

/// Debian's git 2.39, say, which knows neither `password_expiry_utc` nor `authtype`.
#[test]
fn the_oldest_git_found_works_too() {
    let key = TestKey::p256();
    clone_fetch_pull_push(&World::new(old_git(), &key, ""), "team/old-git");
}

#[test]
fn a_read_only_rule_clones_but_its_push_is_refused_and_refs_stay() {
    let world = world(
        &TestKey::p256(),
        "[[org.acme.repo]]\nmatch = \"mirrors/*\"\nscopes = [\"git:read\"]\n",
    );
    let (user, emulator) = (&world.user, &world.emulator);
    let seeded = emulator.seed("mirrors/linux");
    let clone = user.home.path().join("mirror");
    let url = emulator.repo_url("mirrors/linux");
    user.git_ok(
        user.home.path(),
        &["clone", "-q", &url, clone.to_str().unwrap()],
    );
    assert_eq!(user.head(&clone), seeded);
    user.commit(&clone, "c.txt", b"local change\n");
    let push = user.git(&clone, &["push", "origin", "main"]);
    assert_ne!(push.code, Some(0));
    assert!(push.stderr.contains("403"), "{}", push.stderr);
    assert_eq!(
        emulator.rev("mirrors/linux", "refs/heads/main"),
        Some(seeded)
    );
    assert!(
        emulator
            .log()
            .contains("-> 403 git-receive-pack needs git:write")
    );
}

#[test]
fn no_force_push_refuses_a_rewrite_and_accepts_a_fast_forward() {
    let world = world(
        &TestKey::p256(),
        "[[org.acme.repo]]\nmatch = \"agents/**\"\nops = [\"no-force-push\"]\nrefs = [{ pattern = \"refs/heads/release\", ops = [\"no-push\"] }]\n",
    );
    let (user, emulator) = (&world.user, &world.emulator);
    let repo = "agents/bot-7/sandbox";
    let work = user.init("work");
    user.commit(&work, "a.txt", b"1\n");
    user.git_ok(
        &work,
        &["remote", "add", "origin", &emulator.repo_url(repo)],
    );
    user.git_ok(&work, &["push", "-q", "origin", "main"]);
    let fast_forward = user.commit(&work, "a.txt", b"2\n");
    user.git_ok(&work, &["push", "-q", "origin", "main"]);
    assert_eq!(
        emulator.rev(repo, "refs/heads/main"),
        Some(fast_forward.clone())
    );

    user.git_ok(&work, &["commit", "-q", "--amend", "-m", "rewritten"]);
    let forced = user.git(&work, &["push", "--force", "origin", "main"]);
    assert_ne!(forced.code, Some(0));
    assert!(
        forced
            .stderr
            .contains("[remote rejected] main -> main (no-force-push)"),
        "{}",
        forced.stderr
    );
    assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(fast_forward));

    let release = user.git(&work, &["push", "origin", "main:release"]);
    assert!(
        release
            .stderr
            .contains("[remote rejected] main -> release (no-push)"),
        "{}",
        release.stderr
    );
    assert_eq!(emulator.rev(repo, "refs/heads/release"), None);
}

#[test]
fn environment_only_mode_clones_and_pushes_a_code_storage_host() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let user = User::new(new_git()).trust(&emulator);
    let key_path = user.home.write_key("ci.pem", &key.pem);
    let user = user.env("PIERRE_PRIVATE_KEY_FILE", key_path.to_str().unwrap());
    // acme.code.storage, resolved to the emulator: the real name, no config file at all.
    let host = format!("acme.code.storage:{}", emulator.port);
    let home = user.home.path();
    user.git_ok(
        home,
        &[
            "config",
            "--global",
            "http.curloptResolve",
            &format!("{host}:127.0.0.1"),
        ],
    );
    user.use_helper_for(&format!("https://{host}"));
    assert!(!user.home.config_path().exists());

    let url = format!("https://{host}/team/env-only.git");
    user.push_and_clone_back(&url);
    assert!(emulator.log().contains("org=acme"), "{}", emulator.log());
}

#[test]
fn two_organisations_on_two_servers_each_get_their_own_token() {
    let (acme_key, beta_key) = (TestKey::p256(), TestKey::ed25519());
    let acme = Emulator::start(&[("acme", &acme_key.public_pem)]);
    let beta = Emulator::start(&[("beta", &beta_key.public_pem)]);
    let user = User::new(new_git()).trust(&acme);
    // Both emulators' CAs, in one bundle.
    let bundle = user.home.path().join("cas.pem");
    let cas = [&acme.ca, &beta.ca].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&bundle, cas.concat()).unwrap();
    let user = user.env("GIT_SSL_CAINFO", bundle.to_str().unwrap());
    user.home.write_key("acme.pem", &acme_key.pem);
    user.home.write_key("beta.pem", &beta_key.pem);
    user.home.write_config(&format!(
        "[org.acme]\nkey_file = \"acme.pem\"\nhosts = [\"{}\"]\n\n[org.beta]\nkey_file = \"beta.pem\"\nhosts = [\"{}\"]\n",
        acme.host, beta.host
    ));
    user.use_helper_for(&acme.url);
    user.use_helper_for(&beta.url);
    let work = user.init("work");
    user.commit(&work, "a.txt", b"both\n");
    user.git_ok(&work, &["push", "-q", &acme.repo_url("shared/x"), "main"]);
    user.git_ok(&work, &["push", "-q", &beta.repo_url("shared/x"), "main"]);
    assert!(acme.log().contains("org=acme") && !acme.log().contains("org=beta"));
    assert!(beta.log().contains("org=beta") && !beta.log().contains("org=acme"));
}

#[test]
fn a_host_that_is_not_configured_never_receives_a_token() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let user = User::new(new_git()).trust(&emulator);
    user.home.write_key("acme.pem", &key.pem);
    user.home
        .write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    // The helper is asked for every host, as a careless global setup would do.
    let home = user.home.path();
    user.git_ok(
        home,
        &[
            "config",
            "--global",
            "credential.helper",
            support::home::HELPER,
        ],
    );
    user.git_ok(
        home,
        &["config", "--global", "credential.useHttpPath", "true"],
    );
    let clone = user.git(home, &["clone", &emulator.repo_url("team/x"), "x"]);
    assert_ne!(clone.code, Some(0));
    let log = emulator.log();
    assert!(!log.is_empty());
    assert!(
        log.lines()
            .all(|line| line.ends_with("-> 401 no credentials")),
        "a request carried credentials: {log}"
    );
}

#[test]
fn without_use_http_path_git_stops_at_once_with_the_fix() {
    let key = TestKey::p256();
    let world = world(&key, "");
    let (user, emulator) = (&world.user, &world.emulator);
    let section = format!("credential.{}.useHttpPath", emulator.url);
    user.git_ok(
        user.home.path(),
        &["config", "--global", "--unset", &section],
    );
    let clone = user.git(
        user.home.path(),
        &["clone", &emulator.repo_url("team/x"), "x"],
    );
    assert_ne!(clone.code, Some(0));
    assert!(
        clone.stderr.contains("useHttpPath true"),
        "{}",
        clone.stderr
    );
    assert!(clone.stderr.contains("told us to quit"), "{}", clone.stderr);
    assert!(
        !clone.stderr.contains("Username"),
        "git prompted: {}",
        clone.stderr
    );
}

#[test]
fn refused_tokens_fail_and_the_helper_explains_why() {
    let key = TestKey::p256();
    let world = world(&key, "");
    let (user, emulator) = (&world.user, &world.emulator);
    emulator.seed("team/x");
    let with_token = |token: &str| format!("https://t:{token}@{}/team/x.git", emulator.host);

    // A token for another repository, signed by the helper itself.
    let other = support::home::run(
        {
            let mut c = user.home.command(support::home::HELPER);
            c.args(["token", "--org", "acme", "team/other"]);
            c
        },
        "",
    );
    let clone = user.git(
        user.home.path(),
        &["clone", &with_token(other.stdout.trim()), "a"],
    );
    assert_ne!(clone.code, Some(0));
    assert!(
        clone.stderr.contains("Authentication failed"),
        "{}",
        clone.stderr
    );
    assert!(
        clone.stderr.contains("repo \"team/other\""),
        "{}",
        clone.stderr
    );
    assert!(emulator.log().contains("is for repository \"team/other\""));

    // An expired token, signed by hand.
    let expired = key.sign(&format!(
        r#"{{"iss":"acme","sub":"t","repo":"team/x","scopes":["git:read"],"iat":{},"exp":{}}}"#,
        now() - 600,
        now() - 60
    ));
    let clone = user.git(user.home.path(), &["clone", &with_token(&expired), "b"]);
    assert_ne!(clone.code, Some(0));
    assert!(clone.stderr.contains("expired"), "{}", clone.stderr);
    assert!(!clone.stderr.contains(&expired));

    // The helper's own key, not registered with the server.
    let stranger = World::signing_with(new_git(), &TestKey::p256(), &key, "");
    stranger.emulator.seed("team/x");
    let url = stranger.emulator.repo_url("team/x");
    let clone = stranger
        .user
        .git(stranger.user.home.path(), &["clone", &url, "c"]);
    assert_ne!(clone.code, Some(0));
    assert!(clone.stderr.contains("not registered"), "{}", clone.stderr);
    assert!(stranger.emulator.log().contains("does not verify"));
}

#[test]
fn an_expired_token_in_a_remote_url_is_traced_to_it_with_the_set_url_fix() {
    let key = TestKey::p256();
    let expired = key.sign(&format!(
        r#"{{"iss":"acme","sub":"t","repo":"team/x","scopes":["git:read"],"iat":{},"exp":{}}}"#,
        now() - 600,
        now() - 60
    ));
    for (git, new) in [(new_git(), true), (old_git(), false)] {
        let world = World::new(git, &key, "");
        let (user, emulator) = (&world.user, &world.emulator);
        emulator.seed("team/x");
        let work = user.init("work");
        let with_token = format!("https://t:{expired}@{}/team/x.git", emulator.host);
        user.git_ok(&work, &["remote", "add", "origin", &with_token]);
        let fetch = user.git(&work, &["fetch", "-q", "origin"]);
        assert_ne!(fetch.code, Some(0));
        let said = &fetch.stderr;
        assert!(!said.contains(&expired), "the token was shown: {said}");
        if new {
            assert!(
                said.contains("git 2.41 or later never uses a token this helper reported expired, so it came from the remote URL")
                    && said.contains(&format!(
                        "fix: git remote set-url origin {}",
                        emulator.repo_url("team/x")
                    ))
                    && !said.contains("upgrade git"),
                "{said}"
            );
        } else {
            assert!(said.contains("upgrade git to 2.41 or later"), "{said}");
        }
    }
}

#[test]
fn a_20_mb_binary_file_goes_up_and_comes_back_byte_for_byte() {
    let world = world(&TestKey::p256(), "");
    let (user, emulator) = (&world.user, &world.emulator);
    let data = support::git::incompressible(20 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
    let work = user.init("work");
    user.commit(&work, "big.bin", &data);
    user.git_ok(
        &work,
        &["push", "-q", &emulator.repo_url("team/big"), "main"],
    );
    let clone = user.home.path().join("clone");
    user.git_ok(
        user.home.path(),
        &[
            "clone",
            "-q",
            &emulator.repo_url("team/big"),
            clone.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(clone.join("big.bin")).unwrap() == data,
        "contents differ"
    );
}

#[test]
fn protocol_v2_and_v0_both_fetch() {
    let world = world(&TestKey::p256(), "");
    let (user, emulator) = (&world.user, &world.emulator);
    let head = emulator.seed("team/proto");
    for version in ["2", "0"] {
        let dir = user.home.path().join(format!("v{version}"));
        let protocol = format!("protocol.version={version}");
        let url = emulator.repo_url("team/proto");
        user.git_ok(
            user.home.path(),
            &["-c", &protocol, "clone", "-q", &url, dir.to_str().unwrap()],
        );
        assert_eq!(user.head(&dir), head);
        user.git_ok(&dir, &["-c", &protocol, "fetch", "-q"]);
    }
    let log = emulator.log();
    assert!(log.contains("proto=v2"), "{log}");
    assert!(log.contains("proto=v0"), "{log}");
}

#[test]
fn git_offering_authtype_still_authenticates_with_an_ephemeral_credential() {
    let git = new_git_at_least(AUTHTYPE, "git's capability[]=authtype offer");
    let key = TestKey::p256();
    let world = World::new(git, &key, "");
    let (user, emulator) = (&world.user, &world.emulator);
    // A helper before ours that records what git sends, so the test sees git 2.46+'s offer.
    let spy_log = user.home.path().join("spy.log");
    let spy = user.home.path().join("spy.sh");
    std::fs::write(
        &spy,
        format!(
            "#!/bin/sh\n{{ echo \"== $1\"; cat; }} >> '{}'\n",
            spy_log.display()
        ),
    )
    .unwrap();
    support::home::set_mode(&spy, 0o755);
    let section = format!("credential.{}.helper", emulator.url);
    let home = user.home.path();
    user.git_ok(home, &["config", "--global", "--unset-all", &section]);
    user.git_ok(
        home,
        &[
            "config",
            "--global",
            "--add",
            &section,
            spy.to_str().unwrap(),
        ],
    );
    user.git_ok(
        home,
        &[
            "config",
            "--global",
            "--add",
            &section,
            support::home::HELPER,
        ],
    );
    clone_fetch_pull_push(&world, "team/ephemeral");
    let seen = std::fs::read_to_string(&spy_log).unwrap();
    assert!(seen.contains("== get\ncapability[]=authtype\n"), "{seen}");
    // git 2.47 answers `store` without the capability, hence without `ephemeral`: what
    // keeps caches out is the helper reset above, not the marker.
    assert!(seen.contains("== store\n"), "{seen}");
}
