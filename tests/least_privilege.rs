//! Least privilege with no configuration, proven with every git found here against the
//! emulator: reading commands are given `git:read` tokens only, pushes `git:write` ones, the
//! switch turns it off, no credential helper configured after this one keeps a read token, and
//! git 2.46+'s `proactiveAuth` (written by `setup`) saves the 401 round trip.

use crate::support;

use support::emulator::{Record, Service};
use support::git::{AUTHTYPE, User, describe, each_git, new_git_at_least};
use support::gits::{Version, version_of};
use support::jwt::{TestKey, verify};
use support::world::{World, scopes_seen};

/// What every token of a reading command carries.
const READ: &[&str] = &["git:read"];

/// Checks that the requests since `mark` carried tokens, all verified, all `git:read` only,
/// all for fetching; `what` names the command in failures.
fn read_only(world: &World, mark: usize, what: &str) -> Vec<Record> {
    let records = world.since(mark);
    let scopes = scopes_seen(&records);
    assert!(!scopes.is_empty(), "{what}: the server saw no token");
    assert!(
        scopes.iter().all(|s| s == READ),
        "{what}: tokens with {scopes:?}"
    );
    for record in &records {
        assert_eq!(record.service, Service::UploadPack, "{what}: {record:?}");
        assert!(
            record.claims.is_none() || record.verified && record.status == 200,
            "{what}: {record:?}"
        );
    }
    records
}

/// Checks that the requests since `mark` carried tokens, all verified and able to push, and
/// that some went to receive-pack; `what` names the command in failures.
fn wrote(world: &World, mark: usize, what: &str) -> Vec<Record> {
    let records = world.since(mark);
    let scopes = scopes_seen(&records);
    assert!(!scopes.is_empty(), "{what}: the server saw no token");
    assert!(
        scopes.iter().all(|s| s.iter().any(|s| s == "git:write")),
        "{what}: tokens with {scopes:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.service == Service::ReceivePack && r.verified && r.status == 200),
        "{what}: nothing reached receive-pack: {records:?}"
    );
    records
}

/// The scopes of every token since `mark`, each sorted, for comparing with a configured set.
fn sorted_scopes(world: &World, mark: usize) -> Vec<Vec<String>> {
    scopes_seen(&world.since(mark))
        .into_iter()
        .map(|mut scopes| {
            scopes.sort();
            scopes
        })
        .collect()
}

#[test]
fn reading_commands_get_read_only_tokens() {
    for git in each_git() {
        let world = World::new(git, &TestKey::p256(), "");
        let (user, emulator) = (&world.user, &world.emulator);
        let home = user.home.path();
        let work = world.publish("team/app", "work");
        world.publish("team/lib", "lib-src");
        let clone = home.join("clone");
        let on = describe(git);

        let mark = world.mark();
        user.git_ok(
            home,
            &[
                "clone",
                "-q",
                &emulator.repo_url("team/app"),
                clone.to_str().unwrap(),
            ],
        );
        read_only(&world, mark, &format!("clone with {on}"));

        let second = user.commit(&work, "b.txt", b"2\n");
        user.git_ok(&work, &["push", "-q"]);
        let mark = world.mark();
        user.git_ok(&clone, &["fetch", "-q"]);
        read_only(&world, mark, &format!("fetch with {on}"));
        let fetched = user.git_ok(&clone, &["rev-parse", "origin/main"]);
        assert_eq!(fetched.stdout.trim(), second);

        let third = user.commit(&work, "c.txt", b"3\n");
        user.git_ok(&work, &["push", "-q"]);
        let mark = world.mark();
        user.git_ok(&clone, &["pull", "-q", "--ff-only"]);
        read_only(&world, mark, &format!("pull with {on}"));
        assert_eq!(user.head(&clone), third);

        let mark = world.mark();
        let listed = user.git_ok(&clone, &["ls-remote", "origin"]);
        read_only(&world, mark, &format!("ls-remote with {on}"));
        assert!(listed.stdout.contains(&third), "{}", listed.stdout);

        // Two remotes: `fetch --all` runs one `git fetch` per remote.
        user.git_ok(
            &clone,
            &["remote", "add", "lib", &emulator.repo_url("team/lib")],
        );
        let mark = world.mark();
        user.git_ok(&clone, &["fetch", "-q", "--all"]);
        let records = read_only(&world, mark, &format!("fetch --all with {on}"));
        for repo in ["team/app", "team/lib"] {
            assert!(
                records
                    .iter()
                    .any(|r| r.claims.as_ref().is_some_and(|c| c.repo == repo)),
                "fetch --all with {on} did not fetch {repo}: {records:?}"
            );
        }

        // A superproject whose submodule lives on the server too.
        user.git_ok(
            &work,
            &[
                "submodule",
                "add",
                "-q",
                &emulator.repo_url("team/lib"),
                "lib",
            ],
        );
        user.git_ok(&work, &["commit", "-q", "-m", "add lib"]);
        user.git_ok(&work, &["push", "-q"]);
        user.git_ok(&clone, &["pull", "-q", "--ff-only"]);
        let mark = world.mark();
        user.git_ok(&clone, &["submodule", "update", "--init", "-q"]);
        let records = read_only(&world, mark, &format!("submodule update --init with {on}"));
        assert!(
            records
                .iter()
                .any(|r| r.claims.as_ref().is_some_and(|c| c.repo == "team/lib")),
            "{records:?}"
        );
        assert_eq!(
            std::fs::read_to_string(clone.join("lib/README")).unwrap(),
            "team/lib\n"
        );
    }
}

#[test]
fn every_kind_of_push_gets_a_write_token_and_succeeds() {
    // A rule with a policy on another branch: forcing main is what the rules allow.
    let rules = "[[org.acme.repo]]\nmatch = \"team/**\"\nrefs = [{ pattern = \"refs/heads/release\", ops = [\"no-force-push\"] }]\n";
    for git in each_git() {
        let world = World::new(git, &TestKey::p256(), rules);
        let (user, emulator) = (&world.user, &world.emulator);
        let on = describe(git);
        let repo = "team/app";

        let mark = world.mark();
        let work = world.publish(repo, "work");
        wrote(&world, mark, &format!("the first push with {on}"));

        let pushes: [&[&str]; 3] = [
            &["push", "-q", "origin", "main"],
            &["-c", "alias.p=push", "p", "-q", "origin", "main"],
            &["-C", "work", "-c", "core.quotePath=false", "push", "-q"],
        ];
        for (index, args) in pushes.iter().enumerate() {
            let head = user.commit(&work, "n.txt", format!("{index}\n").as_bytes());
            let dir = if args[0] == "-C" {
                user.home.path()
            } else {
                &work
            };
            let mark = world.mark();
            user.git_ok(dir, args);
            wrote(&world, mark, &format!("git {args:?} with {on}"));
            assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(head));
        }

        user.git_ok(&work, &["tag", "-a", "v1", "-m", "first release"]);
        let mark = world.mark();
        user.git_ok(&work, &["push", "-q", "origin", "v1"]);
        wrote(&world, mark, &format!("a tag push with {on}"));
        let tag = user.git_ok(&work, &["rev-parse", "v1"]);
        assert_eq!(
            emulator.rev(repo, "refs/tags/v1").as_deref(),
            Some(tag.stdout.trim())
        );

        user.git_ok(&work, &["commit", "-q", "--amend", "-m", "rewritten"]);
        let rewritten = user.head(&work);
        let mark = world.mark();
        user.git_ok(&work, &["push", "-q", "--force", "origin", "main"]);
        let records = wrote(&world, mark, &format!("a force push with {on}"));
        assert_eq!(emulator.rev(repo, "refs/heads/main"), Some(rewritten));
        // The token carried the rule's policy, and the server applied it to another branch.
        let claims = records.iter().find_map(|r| r.claims.as_ref()).unwrap();
        assert_eq!(
            claims.refs,
            Some(vec![(
                "refs/heads/release".to_owned(),
                vec!["no-force-push".to_owned()]
            )])
        );
    }
}

#[test]
fn a_trace2_parent_name_set_by_hand_cannot_outvote_the_process_ancestry() {
    for git in each_git() {
        let on = describe(git);
        let world = World::new(git, &TestKey::p256(), "");
        let work = world.publish("team/app", "work");
        // Trace2 off, the variable set by hand to say the opposite of each command.
        let world = world.env("GIT_TRACE2_PARENT_NAME", "fetch/_run_dashed_/remote-curl");
        let user = &world.user;
        let head = user.commit(&work, "p.txt", b"pushed\n");
        let mark = world.mark();
        user.git_ok(&work, &["push", "-q", "origin", "main"]);
        wrote(
            &world,
            mark,
            &format!("a push told it was a fetch, with {on}"),
        );
        assert_eq!(
            world.emulator.rev("team/app", "refs/heads/main"),
            Some(head)
        );

        let world = world.env("GIT_TRACE2_PARENT_NAME", "push/_run_dashed_/remote-curl");
        let mark = world.mark();
        world.user.git_ok(&work, &["fetch", "-q"]);
        read_only(
            &world,
            mark,
            &format!("a fetch told it was a push, with {on}"),
        );
    }
}

#[test]
fn pull_then_push_in_one_shell_and_a_push_from_a_fresh_clone_both_work() {
    for git in each_git() {
        let world = World::new(git, &TestKey::p256(), "");
        let (user, emulator) = (&world.user, &world.emulator);
        let on = describe(git);
        let home = user.home.path();
        let url = emulator.repo_url("team/app");
        let work = world.publish("team/app", "work");

        // A clone, then a push from it.
        let mark = world.mark();
        user.git_ok(home, &["clone", "-q", &url, "clone"]);
        read_only(&world, mark, &format!("clone with {on}"));
        let clone = home.join("clone");
        let head = user.commit(&clone, "from-clone.txt", b"x\n");
        let mark = world.mark();
        user.git_ok(&clone, &["push", "-q", "origin", "main"]);
        wrote(&world, mark, &format!("the push from the clone with {on}"));
        assert_eq!(emulator.rev("team/app", "refs/heads/main"), Some(head));

        // Pull, commit and push, as one shell line.
        let mark = world.mark();
        let run = user.shell(
            &work,
            "git pull -q --ff-only && echo y > y.txt && git add y.txt && \
             git commit -q -m y && git push -q origin main",
        );
        assert_eq!(run.code, Some(0), "with {on}: {}", run.stderr);
        let records = world.since(mark);
        let (fetches, pushes): (Vec<Record>, Vec<Record>) = records
            .into_iter()
            .filter(|r| r.claims.is_some())
            .partition(|r| r.service == Service::UploadPack);
        assert!(
            !fetches.is_empty() && !pushes.is_empty(),
            "with {on}: {fetches:?} {pushes:?}"
        );
        assert!(
            fetches
                .iter()
                .all(|r| r.claims.as_ref().unwrap().scopes == READ),
            "the pull with {on}: {fetches:?}"
        );
        assert!(
            pushes.iter().all(|r| r.service == Service::ReceivePack
                && r.claims
                    .as_ref()
                    .unwrap()
                    .scopes
                    .contains(&"git:write".to_owned())),
            "the push with {on}: {pushes:?}"
        );
        assert_eq!(
            emulator.rev("team/app", "refs/heads/main"),
            Some(user.head(&work))
        );
    }
}

/// Clones, fetches, lists, pulls and pushes; every token must carry read and write.
fn every_command_gets_read_and_write(world: &World, what: &str) {
    let (user, emulator) = (&world.user, &world.emulator);
    let home = user.home.path();
    let both = ["git:read".to_owned(), "git:write".to_owned()];
    let work = world.publish("team/app", "work");
    let mark = world.mark();
    user.git_ok(home, &["clone", "-q", &emulator.repo_url("team/app"), "c"]);
    let clone = home.join("c");
    user.git_ok(&clone, &["fetch", "-q"]);
    user.git_ok(&clone, &["ls-remote", "-q", "origin"]);
    user.git_ok(&clone, &["pull", "-q", "--ff-only"]);
    user.commit(&work, "w.txt", b"w\n");
    user.git_ok(&work, &["push", "-q"]);
    let seen = sorted_scopes(world, mark);
    assert!(seen.len() >= 5, "{what}: {seen:?}");
    assert!(seen.iter().all(|s| *s == both), "{what}: {seen:?}");
}

#[test]
fn least_privilege_off_in_the_config_or_the_environment_signs_read_and_write_for_all() {
    for git in each_git() {
        let on = describe(git);
        let world = World::new(git, &TestKey::p256(), "least_privilege = false\n");
        every_command_gets_read_and_write(&world, &format!("config off, {on}"));

        let world = World::new(git, &TestKey::p256(), "").env("CODESTORAGE_LEAST_PRIVILEGE", "0");
        every_command_gets_read_and_write(&world, &format!("environment off, {on}"));
    }
}

/// A credential-cache daemon's socket in a 0700 directory of the user's home; the daemon
/// (started by git on its first `store`) is told to exit when this is dropped.
struct Cache<'a> {
    user: &'a User,
    socket: std::path::PathBuf,
}

impl<'a> Cache<'a> {
    fn new(user: &'a User) -> Self {
        let dir = user.home.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        support::home::set_mode(&dir, 0o700);
        Self {
            user,
            socket: dir.join("socket"),
        }
    }

    /// The helper value that uses this cache.
    fn helper(&self) -> String {
        format!("cache --timeout=600 --socket {}", self.socket.display())
    }

    /// What the cache answers for `path` on `host` (empty when it holds nothing).
    fn get(&self, host: &str, path: &str) -> String {
        let mut command = self.user.command(self.user.git_path());
        command.args(["credential-cache", "--socket"]);
        command.arg(&self.socket).arg("get");
        let run = support::home::run(
            command,
            format!("protocol=https\nhost={host}\npath={path}\n\n"),
        );
        assert_eq!(run.code, Some(0), "{run:?}");
        run.stdout
    }
}

impl Drop for Cache<'_> {
    fn drop(&mut self) {
        if self.socket.exists() {
            let mut command = self.user.command(self.user.git_path());
            command.args(["credential-cache", "--socket"]);
            command.arg(&self.socket).arg("exit");
            let _ = support::home::run(command, "");
        }
    }
}

/// Adds `helper` after this one for the emulator, as a user who keeps other credentials might.
fn add_helper_after(world: &World, helper: &str) {
    let key = format!("credential.{}.helper", world.emulator.url);
    world.user.git_ok(
        world.user.home.path(),
        &["config", "--global", "--add", &key, helper],
    );
}

/// The tokens in a `~/.git-credentials` file (`https://t:TOKEN@host/path` lines).
fn stored_tokens(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("https://t:")?.split_once('@'))
        .map(|(token, _)| token.to_owned())
        .collect()
}

#[test]
fn credential_store_after_this_helper_keeps_no_read_token_but_the_push_token() {
    let git = new_git_at_least(AUTHTYPE, "ephemeral read credentials");
    let key = TestKey::p256();
    let world = World::new(git, &key, "");
    let (user, emulator) = (&world.user, &world.emulator);
    add_helper_after(&world, "store");
    let home = user.home.path();
    let stored = home.join(".git-credentials");

    // A push is answered with username and password (see the 3 MiB push test), which git
    // hands to every helper after it succeeds: credential-store writes it down.
    let work = world.publish("team/app", "work");
    let text = std::fs::read_to_string(&stored).expect("the push token is stored");
    let tokens = stored_tokens(&text);
    assert_eq!(tokens.len(), 1, "{text}");
    let pushed = verify(&tokens[0], &key);
    assert_eq!(
        pushed.claims["scopes"],
        serde_json::json!(["git:read", "git:write"])
    );
    std::fs::remove_file(&stored).unwrap();

    // Reads are answered with an ephemeral authtype credential, which it never sees.
    let url = emulator.repo_url("team/app");
    user.git_ok(home, &["clone", "-q", &url, "clone"]);
    user.commit(&work, "b.txt", b"b\n");
    user.git_ok(&work, &["push", "-q"]);
    std::fs::remove_file(&stored).unwrap();
    let mark = world.mark();
    user.git_ok(&home.join("clone"), &["fetch", "-q"]);
    user.git_ok(&home.join("clone"), &["pull", "-q", "--ff-only"]);
    user.git_ok(home, &["ls-remote", "-q", &url]);
    read_only(
        &world,
        mark,
        "reads with credential-store after this helper",
    );
    assert!(
        !stored.exists(),
        "a read token was stored: {}",
        std::fs::read_to_string(&stored).unwrap_or_default()
    );
}

#[test]
fn credential_cache_after_this_helper_keeps_no_read_token_but_the_push_token() {
    let git = new_git_at_least(AUTHTYPE, "ephemeral read credentials");
    let key = TestKey::p256();
    let world = World::new(git, &key, "");
    let (user, emulator) = (&world.user, &world.emulator);
    // Pushed before the cache is configured: the cache is to see only the reads of it.
    world.publish("team/other", "other");
    let cache = Cache::new(user);
    add_helper_after(&world, &cache.helper());
    let home = user.home.path();
    let url = emulator.repo_url("team/app");

    // The push's username/password goes to the cache, as to any helper after this one.
    world.publish("team/app", "work");
    let held = cache.get(&emulator.host, "team/app.git");
    let password = held
        .lines()
        .find_map(|line| line.strip_prefix("password="))
        .unwrap_or_else(|| panic!("the cache holds no push token: {held:?}"));
    let pushed = verify(password, &key);
    assert_eq!(
        pushed.claims["scopes"],
        serde_json::json!(["git:read", "git:write"])
    );

    // Reads of the other repository: the cache is asked to keep nothing.
    let other = emulator.repo_url("team/other");
    let mark = world.mark();
    user.git_ok(home, &["clone", "-q", &other, "clone"]);
    user.git_ok(&home.join("clone"), &["fetch", "-q"]);
    user.git_ok(home, &["ls-remote", "-q", &url]);
    read_only(
        &world,
        mark,
        "reads with credential-cache after this helper",
    );
    assert_eq!(cache.get(&emulator.host, "team/other.git"), "");
    // The push token is still the only one: ls-remote of team/app did not replace it.
    assert!(
        cache.get(&emulator.host, "team/app.git").contains(password),
        "a read token replaced the push token"
    );
}

#[test]
fn debug_output_names_the_signal_the_command_and_the_scopes_but_no_token() {
    for git in each_git() {
        let on = describe(git);
        let world = World::new(git, &TestKey::p256(), "");
        let work = world.publish("team/app", "work");
        let world = world.env("CODESTORAGE_DEBUG", "1");
        let (user, emulator) = (&world.user, &world.emulator);
        let home = user.home.path();
        let url = emulator.repo_url("team/app");

        let clone = user.git_ok(home, &["clone", "-q", &url, "clone"]);
        let said = &clone.stderr;
        assert!(
            said.contains("least privilege: read (git clone), from the process ancestry: ")
                && said.contains("< git clone")
                && said.contains(", scopes git:read, "),
            "with {on}: {said}"
        );

        user.commit(&work, "d.txt", b"d\n");
        let push = user.git_ok(&work, &["push", "-q"]);
        let said = &push.stderr;
        assert!(
            said.contains("least privilege: write (git push), from the process ancestry: ")
                && said.contains(", scopes git:read+git:write, "),
            "with {on}: {said}"
        );

        // With trace2 on, git names the command itself (trace2 is read from the environment
        // or the global config only, not from `-c`), but the process ancestry, readable here,
        // still decides: anyone can set the variable.
        let traced = home.join("trace2.txt");
        let mut command = user.command(git);
        command
            .current_dir(home.join("clone"))
            .args(["fetch", "-q"])
            .env("GIT_TRACE2", &traced);
        let fetch = support::home::run(command, "");
        assert_eq!(fetch.code, Some(0), "with {on}: {}", fetch.stderr);
        let said = &fetch.stderr;
        assert!(
            said.contains("least privilege: read (git fetch), from the process ancestry: ")
                && said.contains(", scopes git:read, "),
            "with {on}: {said}"
        );
        for output in [&clone.stderr, &push.stderr, &fetch.stderr] {
            assert!(
                !output.contains("eyJ"),
                "a token in the debug output: {output}"
            );
        }
    }
}

/// git 2.53 sends the authtype credential with the probe request before a large POST.
const PROBE_FIXED: Version = Version([2, 53, 0]);

/// Pushes a new 3 MiB commit from a fresh work tree `~/name` to `repo`; returns the run and
/// the receive-pack POSTs the server saw.
fn push_3_mib(world: &World, repo: &str, name: &str) -> (support::home::Run, Vec<Record>) {
    let user = &world.user;
    let work = user.init(name);
    user.commit(
        &work,
        "big.bin",
        &support::git::incompressible(3 * 1024 * 1024, 0x2545_f491_4f6c_dd1d),
    );
    let mark = world.mark();
    let run = user.git(
        &work,
        &["push", "-q", &world.emulator.repo_url(repo), "main"],
    );
    let posts = world
        .since(mark)
        .into_iter()
        .filter(|r| r.method == "POST" && r.service == Service::ReceivePack)
        .collect();
    (run, posts)
}

/// Pushes keep the username/password answer because git 2.46 to 2.52 leave an authtype
/// credential out of the probe they send before a POST larger than `http.postBuffer` (1 MiB).
/// With this helper, a 3 MiB push works with every git; with a helper that answers a push as
/// it answers a read (ephemeral authtype), the same push fails on those gits, though a small
/// push with that very answer succeeds.
#[test]
fn a_3_mib_push_works_because_pushes_are_answered_with_a_password() {
    for git in each_git() {
        let on = describe(git);
        let world = World::new(git, &TestKey::p256(), "");
        let mark = world.mark();
        let (run, posts) = push_3_mib(&world, "team/big", "big");
        assert_eq!(run.code, Some(0), "with {on}: {}", run.stderr);
        wrote(&world, mark, &format!("a 3 MiB push with {on}"));
        // The probe and the pack: two POSTs, both with the token.
        assert!(posts.len() >= 2, "with {on}, no probe: {posts:?}");
        assert!(
            posts.iter().all(|r| r.verified && r.status == 200),
            "{posts:?}"
        );
    }

    let git = new_git_at_least(AUTHTYPE, "the probe_rpc bug of git 2.46 to 2.52");
    let world = World::new(git, &TestKey::p256(), "");
    let (user, emulator) = (&world.user, &world.emulator);
    // A stand-in helper that answers a push with this helper's token, the ephemeral way.
    let mut answers = String::new();
    for repo in ["team/small", "team/big"] {
        let token = user.home.run(&["token", "--org", "acme", repo], "", &[]);
        assert_eq!(token.code, Some(0), "{}", token.stderr);
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("t:{}", token.stdout.trim()),
        );
        answers.push_str(&format!("# {repo}\ncredential={basic}\n"));
    }
    let script = user.home.path().join("ephemeral-helper.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Answers `get` for path P.git with the credential line after `# P`.\n\
             [ \"$1\" = get ] || exit 0\npath=$(sed -n 's/^path=//p' | sed 's/\\.git$//')\n\
             printf 'capability[]=authtype\\nauthtype=Basic\\nephemeral=1\\n'\n\
             grep -A1 \"^# $path\\$\" '{answers}' | grep '^credential='\n",
            answers = user.home.path().join("answers").display()
        ),
    )
    .unwrap();
    std::fs::write(user.home.path().join("answers"), &answers).unwrap();
    support::home::set_mode(&script, 0o755);
    let key = format!("credential.{}.helper", emulator.url);
    let home = user.home.path();
    user.git_ok(home, &["config", "--global", "--unset-all", &key]);
    user.git_ok(home, &["config", "--global", "--add", &key, ""]);
    user.git_ok(
        home,
        &[
            "config",
            "--global",
            "--add",
            &key,
            script.to_str().unwrap(),
        ],
    );

    let small = user.init("small");
    user.commit(&small, "a.txt", b"small\n");
    user.git_ok(
        &small,
        &["push", "-q", &emulator.repo_url("team/small"), "main"],
    );
    let (run, posts) = push_3_mib(&world, "team/big", "big-ephemeral");
    if version_of(git) < PROBE_FIXED {
        assert_ne!(run.code, Some(0), "{} fixed probe_rpc", describe(git));
        assert!(run.stderr.contains("401"), "{}", run.stderr);
        assert!(
            posts.iter().any(|r| r.status == 401 && r.claims.is_none()),
            "the probe went without the credential: {posts:?}"
        );
        assert_eq!(emulator.rev("team/big", "refs/heads/main"), None);
    } else {
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
}

/// The key `setup` writes for the Code Storage hosts.
const PROACTIVE_KEY: &str = "http.https://*.code.storage.proactiveAuth";

/// The requests of one clone of `url` by `user` into `~/dir`, after `mark`.
fn clone_records(world: &World, extra: &[&str], dir: &str) -> Vec<Record> {
    let (user, emulator) = (&world.user, &world.emulator);
    let mark = world.mark();
    let mut args = extra.to_vec();
    let url = emulator.repo_url("team/app");
    args.extend(["clone", "-q", url.as_str(), dir]);
    user.git_ok(user.home.path(), &args);
    read_only(world, mark, &format!("clone {extra:?}"))
}

#[test]
fn proactive_auth_saves_the_401_round_trip_and_older_gits_ignore_it() {
    for git in each_git() {
        let on = describe(git);
        let world = World::new(git, &TestKey::p256(), "");
        world.publish("team/app", "work");
        let proactive = format!("http.{}.proactiveAuth=auto", world.emulator.url);

        let plain = clone_records(&world, &[], "plain");
        assert_eq!(plain[0].status, 401, "with {on}: {plain:?}");
        assert!(plain[0].claims.is_none());
        let asked_first = clone_records(&world, &["-c", &proactive], "proactive");
        if version_of(git) >= AUTHTYPE {
            // The same requests, less the 401: every request carried the read token.
            assert_eq!(
                asked_first.len(),
                plain.len() - 1,
                "with {on}: {asked_first:?}"
            );
            assert!(
                asked_first.iter().all(|r| r.status == 200 && r.verified),
                "with {on}: {asked_first:?}"
            );
            let paths = |records: &[Record]| -> Vec<(String, String)> {
                records
                    .iter()
                    .filter(|r| r.status != 401)
                    .map(|r| (r.method.clone(), r.path.clone()))
                    .collect()
            };
            assert_eq!(paths(&asked_first), paths(&plain));
        } else {
            // An unknown key: git clones exactly as without it.
            assert_eq!(asked_first.len(), plain.len(), "with {on}: {asked_first:?}");
            assert_eq!(asked_first[0].status, 401);
        }
    }
}

#[test]
fn setup_writes_proactive_auth_and_remove_takes_it_and_its_section_away() {
    let user = support::cli::User::new();
    let (key, _) = user.keygen("acme");
    let before = user.gitconfig_text();
    user.setup("acme", &key);
    assert_eq!(user.git_values(PROACTIVE_KEY), ["auto"]);
    assert!(
        user.gitconfig_text()
            .contains("[http \"https://*.code.storage\"]\n\tproactiveAuth = auto\n"),
        "{}",
        user.gitconfig_text()
    );
    let removed = user.ok(&["setup", "--remove", "--org", "acme"]);
    assert!(
        removed
            .stdout
            .contains("removed http.https://*.code.storage.proactiveAuth"),
        "{}",
        removed.stdout
    );
    assert!(user.git_values(PROACTIVE_KEY).is_empty());
    assert_eq!(user.gitconfig_text(), before, "an empty section was left");
}

/// Runs this helper's `subcommand` as `user`, with `git` first on PATH (setup and doctor run
/// `git config`).
fn helper_as(user: &User, args: &[&str]) -> support::home::Run {
    let mut command = user.command(support::home::HELPER);
    command
        .current_dir(user.home.path())
        .args(args)
        .env("PATH", support::git::path_with(user.git_path()));
    support::home::run(command, "")
}

/// With the entries `setup` really writes (`https://*.code.storage`, no port) and the real
/// name `acme.code.storage` on the default port (a CONNECT tunnel to the emulator): git 2.46+
/// asks before its first request, git 2.39 after the 401, both with read tokens for a clone;
/// `doctor` says so, shows both tokens, and warns with the fix once the key is gone.
#[test]
fn setups_wildcard_entries_work_for_a_real_code_storage_name() {
    for git in each_git() {
        let on = describe(git);
        let key = TestKey::p256();
        let emulator = support::emulator::Emulator::start(&[("acme", &key.public_pem)]);
        let tunnel = support::tunnel::Tunnel::start(emulator.host.parse().unwrap());
        let user = User::new(git).trust(&emulator);
        user.git_ok(
            user.home.path(),
            &["config", "--global", "http.proxy", &tunnel.url],
        );
        let key_path = user.home.write_key("acme.pem", &key.pem);
        let setup = helper_as(
            &user,
            &[
                "setup",
                "--org",
                "acme",
                "--key-file",
                key_path.to_str().unwrap(),
            ],
        );
        assert_eq!(setup.code, Some(0), "with {on}: {setup:?}");
        let world = World { user, emulator };
        let (user, emulator) = (&world.user, &world.emulator);
        let home = user.home.path();

        let url = "https://acme.code.storage/team/app.git";
        let work = user.init("work");
        user.commit(&work, "a.txt", b"a\n");
        let mark = world.mark();
        user.git_ok(&work, &["push", "-q", url, "main"]);
        wrote(&world, mark, &format!("a push to {url} with {on}"));
        let mark = world.mark();
        user.git_ok(home, &["clone", "-q", url, "clone"]);
        let records = read_only(&world, mark, &format!("a clone of {url} with {on}"));
        assert!(
            tunnel
                .targets()
                .iter()
                .all(|t| t == "acme.code.storage:443"),
            "{:?}",
            tunnel.targets()
        );
        assert_eq!(
            records.iter().any(|r| r.status == 401),
            version_of(git) < AUTHTYPE,
            "with {on}: {records:?}"
        );
        assert_eq!(
            emulator.rev("team/app", "refs/heads/main"),
            Some(user.head(&home.join("clone")))
        );

        let doctor = helper_as(user, &["doctor", url]);
        let said = &doctor.stdout;
        assert_eq!(doctor.code, Some(0), "with {on}: {said}");
        let ok = |text: &str| {
            said.lines()
                .any(|line| line.starts_with("ok ") && line.contains(text))
        };
        let proactive_ok = "git asks for the token before its first request to https://*.code.storage (proactiveAuth auto)";
        assert_eq!(
            ok(proactive_ok),
            version_of(git) >= AUTHTYPE,
            "with {on}: {said}"
        );
        assert!(!said.contains("proactiveAuth unset"), "with {on}: {said}");
        for text in [
            "fetches are told from pushes here (by the process ancestry)",
            r#"for a fetch (clone, pull, ls-remote), a token for it would say: {"iss":"acme","sub":"tester@vm","repo":"team/app","scopes":["git:read"],"iat":"#,
            r#"for a push, a token for it would say: {"iss":"acme","sub":"tester@vm","repo":"team/app","scopes":["git:read","git:write"],"iat":"#,
        ] {
            assert!(ok(text), "with {on}, no {text:?}: {said}");
        }
        assert!(!said.contains("eyJ"), "a token in doctor's output: {said}");

        if version_of(git) >= AUTHTYPE {
            user.git_ok(home, &["config", "--global", "--unset", PROACTIVE_KEY]);
            // The exact section setup writes for libgit2 sets it too, and would still apply.
            user.git_ok(
                home,
                &[
                    "config",
                    "--global",
                    "--unset",
                    "http.https://acme.code.storage.proactiveAuth",
                ],
            );
            let doctor = helper_as(user, &["doctor"]);
            let warn = doctor
                .stdout
                .lines()
                .find(|l| l.contains("proactiveAuth unset"))
                .unwrap_or_else(|| panic!("with {on}: {}", doctor.stdout));
            assert!(
                warn.starts_with("warn ")
                    && warn.contains(
                        "fix: git config --global 'http.https://*.code.storage.proactiveAuth' auto"
                    ),
                "{warn}"
            );
        }
    }
}
