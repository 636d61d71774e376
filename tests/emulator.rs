//! `codestorage-emulator` on its own: real git against it with no credential helper at all, the
//! token signed by hand with ring and put straight into the remote URL, so that these tests
//! check the emulator and nothing of the helper.

use crate::support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::emulator::{Decision, EMULATOR, Emulator, Record, Service};
use support::git::{User, describe, each_git, new_git, path_with};
use support::jwt::{TestKey, now};

/// A token for `repo` signed by `key` for organisation `org`; `extra` is appended to the claims
/// (e.g. `,"refs":[...]`).
fn token_for(key: &TestKey, org: &str, repo: &str, scopes: &[&str], extra: &str) -> String {
    let scopes = scopes
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let now = now();
    key.sign(&format!(
        r#"{{"iss":"{org}","sub":"emulator-test","repo":"{repo}","scopes":[{scopes}],"iat":{now},"exp":{}{extra}}}"#,
        now + 300
    ))
}

/// `repo`'s URL with `token` as the password, as the official SDK builds remote URLs.
fn url_with(emulator: &Emulator, token: &str, repo: &str) -> String {
    format!("https://t:{token}@{}/{repo}.git", emulator.host)
}

/// An emulator for `acme` whose server-side git (`git http-backend`) is `git`, creating
/// repositories on push.
fn emulator_with_git(key: &TestKey, git: &Path) -> Emulator {
    Emulator::start_with(&[("acme", &key.public_pem)], |command| {
        command.arg("--create-on-push").env("PATH", path_with(git));
    })
}

/// Makes an empty bare repository on the server, as an admin would.
fn create_bare(emulator: &Emulator, repo: &str) {
    let status = Command::new(new_git())
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(emulator.root.join(format!("{repo}.git")))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Fails the test if the emulator ever logged `token`, on stderr or in its request log.
fn assert_log_keeps_secret(emulator: &Emulator, token: &str) {
    for log in [emulator.log(), emulator.records_text()] {
        assert!(!log.is_empty());
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token) && !log.contains(signature),
            "the log holds a token: {log}"
        );
        assert!(!log.to_ascii_lowercase().contains("basic "), "{log}");
    }
}

/// Children of `pid` that have exited but were never waited for.
fn zombies_of(pid: u32) -> Vec<String> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == pid.to_string() {
            zombies.push(stat);
        }
    }
    zombies
}

#[test]
fn clone_empty_push_and_fresh_clone_with_each_git_on_each_side() {
    let key = TestKey::p256();
    for server_git in each_git() {
        for client_git in each_git() {
            let emulator = emulator_with_git(&key, server_git);
            let user = User::new(client_git).trust(&emulator);
            let home = user.home.path();
            let repo = "team/project-alpha";
            create_bare(&emulator, repo);
            let token = token_for(&key, "acme", repo, &["git:write", "git:read"], "");
            let url = url_with(&emulator, &token, repo);
            let versions = format!(
                "server {}, client {}",
                describe(server_git),
                describe(client_git)
            );

            // Clone of an empty repository, then a first push from it.
            let work = home.join("work");
            let clone = user.git(home, &["clone", &url, work.to_str().unwrap()]);
            assert_eq!(clone.code, Some(0), "{versions}: {}", clone.stderr);
            assert!(
                clone.stderr.contains("empty repository"),
                "{}",
                clone.stderr
            );
            let first = user.commit(&work, "a.txt", b"one\n");
            user.git_ok(&work, &["push", "-q", "origin", "HEAD:main"]);
            assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(first.clone()));

            // A fresh clone sees it, over protocol v2 and v0 alike.
            for (name, protocol) in [("v2", "2"), ("v0", "0")] {
                let fresh = home.join(format!("fresh-{name}"));
                user.git_ok(
                    home,
                    &[
                        "-c",
                        &format!("protocol.version={protocol}"),
                        "clone",
                        "-q",
                        &url,
                        fresh.to_str().unwrap(),
                    ],
                );
                assert_eq!(user.head(&fresh), first, "{versions}, protocol {name}");
            }
            let log = emulator.log();
            assert!(
                log.contains("proto=v2") && log.contains("proto=v0"),
                "{log}"
            );
            assert!(log.contains("org=acme sub=emulator-test"), "{log}");

            // The ephemeral and import remotes use the base repository's token.
            for suffix in ["+ephemeral", "+import"] {
                let other = url_with(&emulator, &token, &format!("{repo}{suffix}"));
                user.git_ok(home, &["ls-remote", &other]);
            }
            assert_log_keeps_secret(&emulator, &token);
            assert!(
                zombies_of(emulator.pid()).is_empty(),
                "{versions}: unreaped children"
            );
        }
    }
}

#[test]
fn a_chunked_push_of_incompressible_data_comes_back_byte_for_byte() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let data = support::git::incompressible(3 * 1024 * 1024, 0x2545_f491_4f6c_dd1d);
    for (index, git) in each_git().into_iter().enumerate() {
        let label = describe(git);
        let repo = format!("team/big-{index}");
        let url = url_with(
            &emulator,
            &token_for(&key, "acme", &repo, &["git:write"], ""),
            &repo,
        );
        let user = User::new(git)
            .trust(&emulator)
            .env("GIT_TRACE_CURL", "1")
            .env("GIT_TRACE_CURL_NO_DATA", "1");
        let work = user.init("work");
        let head = user.commit(&work, "blob.bin", &data);
        // A post buffer smaller than the pack makes git send the body chunked.
        let push = user.git(
            &work,
            &["-c", "http.postBuffer=65536", "push", &url, "main"],
        );
        assert_eq!(push.code, Some(0), "{label}: {}", push.stderr);
        assert!(
            push.stderr.contains("Transfer-Encoding: chunked"),
            "{label} did not send the push chunked"
        );
        assert_eq!(emulator.rev(&repo, "refs/heads/main"), Some(head.clone()));
        let clone = user.home.path().join("clone");
        user.git_ok(
            user.home.path(),
            &["clone", "-q", &url, clone.to_str().unwrap()],
        );
        assert_eq!(user.head(&clone), head);
        assert!(std::fs::read(clone.join("blob.bin")).unwrap() == data);
    }
}

#[test]
fn a_push_with_git_read_only_is_forbidden_and_changes_nothing() {
    let key = TestKey::ed25519();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    for (index, git) in each_git().into_iter().enumerate() {
        let label = describe(git);
        let repo = &format!("team/read-only-{index}");
        let writer = token_for(&key, "acme", repo, &["git:write"], "");
        let reader = token_for(&key, "acme", repo, &["git:read"], "");
        let user = User::new(git).trust(&emulator);
        let work = user.init("work");
        let seeded = user.commit(&work, "a.txt", b"seed\n");
        user.git_ok(
            &work,
            &["push", "-q", &url_with(&emulator, &writer, repo), "main"],
        );
        let clone = user.home.path().join("clone");
        user.git_ok(
            user.home.path(),
            &[
                "clone",
                "-q",
                &url_with(&emulator, &reader, repo),
                clone.to_str().unwrap(),
            ],
        );
        assert_eq!(user.head(&clone), seeded);
        user.commit(&clone, "b.txt", b"change\n");
        let push = user.git(&clone, &["push", "origin", "main"]);
        assert_ne!(push.code, Some(0), "{label}");
        assert!(push.stderr.contains("403"), "{label}: {}", push.stderr);
        assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(seeded));
        assert_log_keeps_secret(&emulator, &reader);
    }
    assert!(
        emulator
            .log()
            .contains("scopes=git:read -> 403 git-receive-pack needs git:write"),
        "{}",
        emulator.log()
    );
}

#[test]
fn ref_policies_refuse_force_pushes_and_protected_refs_with_each_git() {
    let key = TestKey::p256();
    let policy = r#","refs":[["refs/heads/release/*",["no-push"]],["refs/heads/main",["no-force-push"]],["refs/heads/**",[]]],"ops":["verify-sig"]"#;
    for server_git in each_git() {
        for client_git in each_git() {
            let versions = format!(
                "server {}, client {}",
                describe(server_git),
                describe(client_git)
            );
            let emulator = emulator_with_git(&key, server_git);
            let user = User::new(client_git).trust(&emulator);
            let repo = "agents/bot-7/sandbox";
            let open = url_with(
                &emulator,
                &token_for(&key, "acme", repo, &["git:write"], ""),
                repo,
            );
            let guarded_token = token_for(&key, "acme", repo, &["git:write"], policy);
            let guarded = url_with(&emulator, &guarded_token, repo);
            let work = user.init("work");
            user.commit(&work, "a.txt", b"1\n");
            user.git_ok(&work, &["push", "-q", &open, "main"]);

            // A fast-forward passes the policy.
            let fast_forward = user.commit(&work, "a.txt", b"2\n");
            user.git_ok(&work, &["push", "-q", &guarded, "main", "main:topic"]);
            assert_eq!(
                emulator.rev(repo, "refs/heads/main"),
                Some(fast_forward.clone())
            );

            // A rewrite of main is refused with the op as git's reason; in the same push, a
            // force push of a ref without the op succeeds and a protected ref is refused.
            user.git_ok(&work, &["commit", "-q", "--amend", "-m", "rewritten"]);
            let rewritten = user.head(&work);
            let forced = user.git(
                &work,
                &[
                    "push",
                    "--force",
                    &guarded,
                    "main",
                    "main:topic",
                    "main:release/v1",
                ],
            );
            assert_ne!(forced.code, Some(0), "{versions}");
            for expected in [
                "! [remote rejected] main -> main (no-force-push)",
                "! [remote rejected] main -> release/v1 (no-push)",
                "main -> topic (forced update)",
                "remote: refs/heads/main: refused by the token's ref policy (no-force-push)",
                "verify-sig is not checked by the emulator",
            ] {
                assert!(
                    forced.stderr.contains(expected),
                    "{versions}: no {expected:?} in {}",
                    forced.stderr
                );
            }
            assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(fast_forward));
            assert_eq!(emulator.rev(repo, "refs/heads/topic"), Some(rewritten));
            assert_eq!(emulator.rev(repo, "refs/heads/release/v1"), None);

            // Deleting main is a force push too; deleting topic is not guarded.
            let delete = user.git(&work, &["push", &guarded, ":main", ":topic"]);
            assert!(
                delete
                    .stderr
                    .contains("! [remote rejected] main (no-force-push)"),
                "{versions}: {}",
                delete.stderr
            );
            assert!(emulator.rev(repo, "refs/heads/main").is_some());
            assert_eq!(emulator.rev(repo, "refs/heads/topic"), None);
            assert_log_keeps_secret(&emulator, &guarded_token);
        }
    }
}

#[test]
fn tokens_for_another_repository_organisation_or_key_are_refused() {
    let key = TestKey::p256();
    let stranger = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let repo = "team/demo";
    create_bare(&emulator, repo);
    let user = User::new(new_git()).trust(&emulator);
    let home = user.home.path();
    let now = now();
    let expired = key.sign(&format!(
        r#"{{"iss":"acme","sub":"s","repo":"{repo}","scopes":["git:read"],"iat":{},"exp":{}}}"#,
        now - 600,
        now - 60
    ));
    let future = key.sign(&format!(
        r#"{{"iss":"acme","sub":"s","repo":"{repo}","scopes":["git:read"],"iat":{},"exp":{}}}"#,
        now + 600,
        now + 900
    ));
    for (token, logged) in [
        (
            token_for(&key, "acme", "team/other", &["git:read"], ""),
            "token is for repository \"team/other\", not \"team/demo\"",
        ),
        (
            token_for(&key, "beta", repo, &["git:read"], ""),
            "unknown organisation \"beta\"",
        ),
        (
            token_for(&stranger, "acme", repo, &["git:read"], ""),
            "signature does not verify with any key of \"acme\"",
        ),
        (expired, "token expired "),
        (future, "token issued "),
        ("not-a-jwt".to_owned(), "not a JWT"),
    ] {
        let run = user.git(home, &["ls-remote", &url_with(&emulator, &token, repo)]);
        assert_ne!(run.code, Some(0), "{logged}");
        assert!(
            run.stderr.contains("Authentication failed"),
            "{logged}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains(&token));
        assert!(
            emulator.log().contains(&format!("-> 401 {logged}")),
            "{logged}: {}",
            emulator.log()
        );
        assert_log_keeps_secret(&emulator, &token);
    }
}

#[test]
fn without_credentials_git_gets_a_401_and_no_prompt() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    create_bare(&emulator, "team/demo");
    for git in each_git() {
        let label = describe(git);
        let user = User::new(git).trust(&emulator);
        let run = user
            .env("GIT_TRACE_CURL", "1")
            .env("GIT_TRACE_CURL_NO_DATA", "1");
        let ls = run.git(
            run.home.path(),
            &["ls-remote", &emulator.repo_url("team/demo")],
        );
        assert_ne!(ls.code, Some(0));
        assert!(ls.stderr.contains("401"), "{label}: {}", ls.stderr);
        assert!(
            ls.stderr
                .contains("WWW-Authenticate: Basic realm=\"Code Storage\""),
            "{label}: {}",
            ls.stderr
        );
        // GIT_TERMINAL_PROMPT=0: git gives up at once instead of asking for a username.
        assert!(
            ls.stderr.contains("could not read Username"),
            "{label}: {}",
            ls.stderr
        );
    }
    assert!(
        emulator
            .log()
            .lines()
            .all(|l| l.contains("-> 401 no credentials")),
        "{}",
        emulator.log()
    );
}

#[test]
fn unknown_repositories_are_404_and_created_on_push_only_when_asked() {
    let key = TestKey::p256();
    let repo = "team/new";
    let token = token_for(&key, "acme", repo, &["git:write"], "");
    let reader = token_for(&key, "acme", repo, &["git:read"], "");

    let strict = Emulator::start_with(&[("acme", &key.public_pem)], |_| {});
    let user = User::new(new_git()).trust(&strict);
    let work = user.init("work");
    user.commit(&work, "a.txt", b"1\n");
    let push = user.git(&work, &["push", &url_with(&strict, &token, repo), "main"]);
    assert_ne!(push.code, Some(0));
    assert!(push.stderr.contains("not found"), "{}", push.stderr);
    assert!(!strict.root.join("team/new.git").exists());
    assert!(strict.log().contains("-> 404 no repository \"team/new\""));

    let creating = Emulator::start(&[("acme", &key.public_pem)]);
    let user = User::new(new_git()).trust(&creating);
    // Reading never creates.
    let ls = user.git(
        user.home.path(),
        &["ls-remote", &url_with(&creating, &token, repo)],
    );
    assert_ne!(ls.code, Some(0));
    assert!(!creating.root.join("team/new.git").exists());
    // Pushing with git:read only does not either.
    let work = user.init("work");
    let head = user.commit(&work, "a.txt", b"1\n");
    let push = user.git(
        &work,
        &["push", &url_with(&creating, &reader, repo), "main"],
    );
    assert!(push.stderr.contains("403"), "{}", push.stderr);
    assert!(!creating.root.join("team/new.git").exists());
    user.git_ok(
        &work,
        &["push", "-q", &url_with(&creating, &token, repo), "main"],
    );
    assert_eq!(creating.rev(repo, "refs/heads/main"), Some(head));
}

/// A raw `GET .../info/refs?{query}` for `repo` with `token`, over HTTPS.
fn info_refs(emulator: &Emulator, repo: &str, token: &str, query: &str) -> String {
    let credentials = base64_encode(format!("t:{token}").as_bytes());
    emulator.https_exchange(
        format!(
            "GET /{repo}.git/info/refs?{query} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\n\r\n",
            emulator.host
        )
        .as_bytes(),
    )
}

#[test]
fn a_second_service_parameter_is_refused_and_never_reaches_receive_pack() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let repo = "team/demo";
    create_bare(&emulator, repo);
    let reader = token_for(&key, "acme", repo, &["git:read"], "");
    let writer = token_for(&key, "acme", repo, &["git:write"], "");
    let receive_pack = "# service=git-receive-pack";

    // Controls: one service each, as git asks; the raw client sees what git would.
    let read = info_refs(&emulator, repo, &reader, "service=git-upload-pack");
    assert!(read.starts_with("HTTP/1.1 200 "), "{read}");
    assert!(read.contains("# service=git-upload-pack"), "{read}");
    let denied = info_refs(&emulator, repo, &reader, "service=git-receive-pack");
    assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
    let write = info_refs(&emulator, repo, &writer, "service=git-receive-pack");
    assert!(write.starts_with("HTTP/1.1 200 "), "{write}");
    assert!(write.contains(receive_pack), "{write}");

    // http-backend serves the last service=; the emulator would have authorised the first.
    for query in [
        "service=git-upload-pack&service=git-receive-pack",
        "service=git-receive-pack&service=git-upload-pack",
        "service=git-upload-pack&%73ervice=git-receive-pack",
        "service=git-upload-pack&x=1&service=git-receive-pack",
    ] {
        for token in [&reader, &writer] {
            let response = info_refs(&emulator, repo, token, query);
            assert!(response.starts_with("HTTP/1.1 400 "), "{query}: {response}");
            assert!(!response.contains(receive_pack), "{query}: {response}");
            assert!(response.contains("service= parameters"), "{response}");
        }
    }
    let records = emulator.records();
    let refused: Vec<&Record> = records.iter().filter(|r| r.status == 400).collect();
    assert_eq!(refused.len(), 8, "{records:#?}");
    for record in refused {
        assert_eq!(
            (record.service, record.decision, &record.claims),
            (Service::None, Decision::Refused, &None)
        );
    }
    // receive-pack ran once: for the control with the write token.
    let receive_packs: Vec<&Record> = records
        .iter()
        .filter(|r| r.service == Service::ReceivePack && r.decision == Decision::Allowed)
        .collect();
    assert_eq!(receive_packs.len(), 1, "{records:#?}");
    assert_eq!(
        receive_packs[0].claims.as_ref().unwrap().scopes,
        ["git:write"]
    );
    assert_log_keeps_secret(&emulator, &reader);
}

#[test]
fn the_request_log_holds_each_requests_service_decision_and_claims() {
    let key = TestKey::p256();
    let emulator = Emulator::start(&[("acme", &key.public_pem)]);
    let repo = "agents/bot-42/sandbox";
    let now = now();
    let token = |scopes: &str, extra: &str| {
        key.sign(&format!(
            r#"{{"iss":"acme","sub":"sandbox:agent-42","repo":"{repo}","scopes":{scopes},"iat":{now},"exp":{}{extra}}}"#,
            now + 900
        ))
    };
    let writer = token(
        r#"["git:write"]"#,
        r#","refs":[["refs/heads/main",["no-force-push"]]]"#,
    );
    let reader = token(r#"["git:read"]"#, "");
    let user = User::new(new_git()).trust(&emulator);
    let home = user.home.path();

    // A push: receive-pack only, every token it showed had git:write and its ref policy.
    let work = user.init("work");
    user.commit(&work, "a.txt", b"1\n");
    user.git_ok(
        &work,
        &["push", "-q", &url_with(&emulator, &writer, repo), "main"],
    );
    let pushed = emulator.records();
    let with_token = |records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .filter(|r| r.claims.is_some())
            .cloned()
            .collect()
    };
    let signed = with_token(&pushed);
    assert!(!signed.is_empty(), "{pushed:#?}");
    assert!(
        pushed.iter().all(|r| r.service == Service::ReceivePack),
        "{pushed:#?}"
    );
    for record in &signed {
        let claims = record.claims.as_ref().unwrap();
        assert_eq!(claims.scopes, ["git:write"]);
        assert_eq!(
            (claims.iss.as_str(), claims.sub.as_str()),
            ("acme", "sandbox:agent-42")
        );
        assert_eq!(claims.repo, repo);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(
            claims.refs,
            Some(vec![(
                "refs/heads/main".to_owned(),
                vec!["no-force-push".to_owned()]
            )])
        );
        assert!(record.verified);
        assert_eq!((record.decision, record.status), (Decision::Allowed, 200));
    }
    assert!(
        signed
            .iter()
            .any(|r| r.method == "POST" && r.path == format!("/{repo}.git/git-receive-pack")),
        "{signed:#?}"
    );

    // A clone: upload-pack only, every token it showed had exactly git:read.
    let clone = home.join("clone");
    user.git_ok(
        home,
        &[
            "clone",
            "-q",
            &url_with(&emulator, &reader, repo),
            clone.to_str().unwrap(),
        ],
    );
    let all = emulator.records();
    let cloned = &all[pushed.len()..];
    assert!(
        cloned.iter().all(|r| r.service == Service::UploadPack),
        "{cloned:#?}"
    );
    let signed = with_token(cloned);
    assert!(
        signed
            .iter()
            .any(|r| r.method == "POST" && r.path == format!("/{repo}.git/git-upload-pack")),
        "{cloned:#?}"
    );
    for record in &signed {
        assert_eq!(record.claims.as_ref().unwrap().scopes, ["git:read"]);
        assert_eq!(record.protocol, "v2");
        assert_eq!((record.decision, record.status), (Decision::Allowed, 200));
    }

    // A push with the read token: receive-pack refused, with the token's claims.
    user.commit(&clone, "b.txt", b"2\n");
    assert_ne!(user.git(&clone, &["push", "origin", "main"]).code, Some(0));
    let all_now = emulator.records();
    let refused: Vec<&Record> = all_now[all.len()..]
        .iter()
        .filter(|r| r.status == 403)
        .collect();
    assert_eq!(refused.len(), 1, "{all_now:#?}");
    let refused = refused[0];
    assert_eq!(
        (refused.service, refused.decision, refused.reason.as_str()),
        (
            Service::ReceivePack,
            Decision::Refused,
            "git-receive-pack needs git:write"
        )
    );
    assert!(refused.verified);
    assert_eq!(refused.claims.as_ref().unwrap().scopes, ["git:read"]);

    // A token for another repository: refused, logged as it claimed, not verified.
    let stranger = token_for(&key, "acme", "team/other", &["git:read"], "");
    let ls = user.git(home, &["ls-remote", &url_with(&emulator, &stranger, repo)]);
    assert_ne!(ls.code, Some(0));
    let last = emulator.records().pop().unwrap();
    assert_eq!((last.status, last.decision), (401, Decision::Refused));
    assert!(!last.verified);
    assert_eq!(last.claims.unwrap().repo, "team/other");
    for token in [&writer, &reader, &stranger] {
        assert_log_keeps_secret(&emulator, token);
    }
}

/// How long a test waits for the server to drop a slow client before calling it a hang.
const HANG: Duration = Duration::from_secs(60);

/// A client that connects and sends nothing; the thread returns how long after `started` the
/// server closed the connection.
fn silent_client(emulator: &Emulator, started: Instant) -> JoinHandle<Duration> {
    let mut stream = TcpStream::connect(&emulator.host).unwrap();
    thread::spawn(move || {
        stream.set_read_timeout(Some(HANG)).unwrap();
        // Waits for the server's close (EOF, or a reset): a timeout here means it never came.
        let mut sink = Vec::new();
        match stream.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server never dropped a silent client: {e}"),
        }
        started.elapsed()
    })
}

/// What became of a client that sent its request head a byte at a time.
struct Dribbled {
    /// When the server ended the connection, after the client's start.
    ended: Duration,
    /// Head bytes the client got to send.
    sent: usize,
    /// The length of the whole head.
    whole: usize,
    /// What the server said before closing.
    response: String,
}

/// A client that completes the TLS handshake, then sends a request head one byte per TLS
/// record, each after the server has had `pace` to answer; it stops when the server answers or
/// closes.
fn dribbling_client(emulator: &Emulator, started: Instant, pace: Duration) -> JoinHandle<Dribbled> {
    let mut stream = emulator.tls_connect();
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    let head = format!(
        "GET /team/demo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n\r\n",
        emulator.host,
        "slow".repeat(64)
    );
    thread::spawn(move || {
        let mut sent = 0;
        let mut response = Vec::new();
        for byte in head.bytes() {
            if stream
                .write_all(&[byte])
                .and_then(|()| stream.flush())
                .is_err()
            {
                break;
            }
            sent += 1;
            // Listening for the server's answer is what paces the dribble.
            stream.sock.set_read_timeout(Some(pace)).unwrap();
            let mut buffer = [0u8; 4096];
            match stream.read(&mut buffer) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buffer[..n]);
                    stream.sock.set_read_timeout(Some(HANG)).unwrap();
                    let _ = stream.read_to_end(&mut response);
                    break;
                }
            }
        }
        Dribbled {
            ended: started.elapsed(),
            sent,
            whole: head.len(),
            response: String::from_utf8_lossy(&response).into_owned(),
        }
    })
}

#[test]
fn slow_clients_are_dropped_at_the_head_timeout_while_git_is_served() {
    let key = TestKey::p256();
    let limit = Duration::from_secs(5);
    let emulator = Emulator::start_with(&[("acme", &key.public_pem)], |command| {
        command.args(["--head-timeout", "5", "--max-connections", "3"]);
    });
    let repo = "team/demo";
    create_bare(&emulator, repo);
    let started = Instant::now();
    let silent = silent_client(&emulator, started);
    let dribbler = dribbling_client(&emulator, started, Duration::from_millis(100));

    // Both hold a connection (the dribbler's finished handshake shows the server took both:
    // it accepts in connection order); git gets the third place and is served at once.
    let user = User::new(new_git()).trust(&emulator);
    let token = token_for(&key, "acme", repo, &["git:read"], "");
    user.git_ok(
        user.home.path(),
        &["ls-remote", &url_with(&emulator, &token, repo)],
    );
    let served = started.elapsed();
    assert!(
        served < limit,
        "git took {served:?}, longer than the head timeout"
    );

    let silent_ended = silent.join().unwrap();
    let dribbled = dribbler.join().unwrap();
    for ended in [silent_ended, dribbled.ended] {
        assert!(ended >= limit, "dropped after {ended:?}");
        assert!(ended < HANG, "dropped after {ended:?}");
    }
    assert!(dribbled.sent > 0, "the dribbler sent nothing");
    assert!(
        dribbled.sent < dribbled.whole,
        "the dribbler got its whole head in"
    );
    // A close racing the next byte may cut the answer off; what did arrive is a 408.
    assert!(
        dribbled.response.is_empty() || dribbled.response.starts_with("HTTP/1.1 408 "),
        "{}",
        dribbled.response
    );
    let records = emulator.records();
    let dropped: Vec<&Record> = records
        .iter()
        .filter(|r| r.decision == Decision::Dropped)
        .collect();
    assert_eq!(dropped.len(), 2, "{records:#?}");
    for record in dropped {
        assert_eq!((record.status, record.method.as_str()), (408, ""));
        assert!(
            record.reason.contains("no complete request head within 5s"),
            "{}",
            record.reason
        );
    }
    // git's requests were all served, none of them dropped.
    assert!(
        records
            .iter()
            .any(|r| r.decision == Decision::Allowed && r.service == Service::UploadPack),
        "{records:#?}"
    );
}

#[test]
fn beyond_the_connection_cap_git_waits_for_a_place_and_is_then_served() {
    let key = TestKey::p256();
    let emulator = Emulator::start_with(&[("acme", &key.public_pem)], |command| {
        command.args(["--head-timeout", "2", "--max-connections", "2"]);
    });
    let repo = "team/demo";
    create_bare(&emulator, repo);
    let started = Instant::now();
    // Two silent clients take both places before git connects (the server accepts in
    // connection order).
    let silent = [
        silent_client(&emulator, started),
        silent_client(&emulator, started),
    ];
    let user = User::new(new_git()).trust(&emulator);
    let token = token_for(&key, "acme", repo, &["git:read"], "");
    user.git_ok(
        user.home.path(),
        &["ls-remote", &url_with(&emulator, &token, repo)],
    );
    for client in silent {
        assert!(client.join().unwrap() >= Duration::from_secs(2));
    }
    // git's first request was taken only once a silent client had been dropped.
    let log = emulator.log();
    let lines: Vec<&str> = log.lines().collect();
    let first_drop = lines.iter().position(|l| l.contains("-> 408 "));
    let first_git = lines
        .iter()
        .position(|l| l.contains("GET /team/demo.git/info/refs"));
    assert!(
        matches!((first_drop, first_git), (Some(d), Some(g)) if d < g),
        "{log}"
    );
}

/// Starts the binary by hand with `args`; returns it and its first stdout line.
fn spawn(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(EMULATOR)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// Sends `request` over plain HTTP and returns the whole response.
fn exchange(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn plain_http_speaks_raw_requests_including_chunked_bodies() {
    let key = TestKey::ed25519();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let public = dir.path().join("acme.pub.pem");
    std::fs::write(&public, &key.public_pem).unwrap();
    let (mut child, url) = spawn(&[
        "--plain-http",
        "--root",
        root.to_str().unwrap(),
        "--org",
        &format!("acme={}", public.display()),
    ]);
    let address = url.strip_prefix("http://").expect(&url).to_owned();
    Command::new(new_git())
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(root.join("team/demo.git"))
        .status()
        .unwrap();

    let anonymous = exchange(
        &address,
        b"GET /team/demo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(anonymous.starts_with("HTTP/1.1 401 "), "{anonymous}");
    assert!(
        anonymous.contains("\r\nWWW-Authenticate: Basic realm=\"Code Storage\"\r\n"),
        "{anonymous}"
    );

    for path in [
        "/../team/demo.git",
        "/team/../team/demo.git",
        "/team//demo.git",
    ] {
        let response = exchange(
            &address,
            format!("GET {path}/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n").as_bytes(),
        );
        assert!(response.starts_with("HTTP/1.1 404 "), "{path}: {response}");
    }

    // A protocol v2 ls-refs request, sent chunked in uneven pieces.
    let token = token_for(&key, "acme", "team/demo", &["git:read"], "");
    let credentials = base64_encode(format!("t:{token}").as_bytes());
    let body = b"0014command=ls-refs\n0001000csymrefs\n0000";
    let mut request = format!(
        "POST /team/demo.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/x-git-upload-pack-request\r\nGit-Protocol: version=2\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in [&body[..7], &body[7..30], &body[30..]] {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = exchange(&address, &request);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.contains("application/x-git-upload-pack-result"),
        "{response}"
    );
    // An empty repository has no refs: the answer is a bare flush packet.
    assert!(response.ends_with("\r\n\r\n0000"), "{response:?}");

    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("POST /team/demo.git/git-upload-pack proto=v2 org=acme"),
        "{log}"
    );
    assert!(
        !log.contains(&token) && !log.contains(&credentials),
        "{log}"
    );
}

#[test]
fn refuses_to_listen_beyond_loopback_and_bad_org_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let root = root.to_str().unwrap();
    let output = Command::new(EMULATOR)
        .args(["--root", root, "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");

    let private = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/p256.sec1.pem");
    let output = Command::new(EMULATOR)
        .args(["--root", root, "--org"])
        .arg(format!("acme={}", private.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PUBLIC KEY"), "{stderr}");
}

#[test]
fn listens_on_the_ipv6_loopback() {
    // ::1 is loopback too; a machine without it fails here, saying how to turn it on.
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "this machine has no IPv6 loopback ([::1]: {e}); turn it on with \
             `sysctl -w net.ipv6.conf.lo.disable_ipv6=0` (as root)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let root = root.to_str().unwrap();
    let (mut child, url) = spawn(&["--plain-http", "--root", root, "--listen", "[::1]:0"]);
    let _ = child.kill();
    child.wait().unwrap();
    assert!(url.starts_with("http://[::1]:"), "{url:?}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
