//! The token broker, whole: the real binary as `broker` on the host beside the emulator, and
//! "sandboxes" made with `unshare` (mount and PID namespaces, `/proc` of their own, a fresh
//! tmpfs HOME holding no key and no config, the broker's socket bind-mounted in and
//! `CODESTORAGE_BROKER` pointing at it) in which real git clones, commits and pushes. Every
//! token is checked by the emulator (signature, lifetime, repository, scopes) and its claims
//! read back from the emulator's request log. Nothing here sleeps for a fixed time: the tests
//! wait for the broker's own log lines.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::emulator::{Emulator, Record, Service};
use support::git::new_git;
use support::home::{HELPER, Home, Run, run, set_mode};
use support::jwt::{TestKey, verify};
use support::kms::{Moto, signer_argv};
use support::signers::{openssl_key, persistent_signer, script};
use support::ssh_agent::SshAgent;

/// How long any awaited event may take before the test fails (never a wait in itself).
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `git-credential-codestorage broker`, its stderr collected line by line.
struct Broker {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Broker {
    /// Starts the broker on `config`, appending audit lines to `audit`; returns once it says it
    /// is ready (or fails the test with what it said).
    fn start(config: &Path, audit: &Path) -> Self {
        Self::start_with(config, audit, &[])
    }

    /// [`Broker::start`] with extra environment (an ssh-agent's `SSH_AUTH_SOCK`, say).
    fn start_with(config: &Path, audit: &Path, env: &[(&str, &Path)]) -> Self {
        let mut command = Command::new(HELPER);
        command
            .arg("broker")
            .arg("--config")
            .arg(config)
            .arg("--audit-log")
            .arg(audit)
            .env_remove("CODESTORAGE_CONFIG")
            .env_remove("CODESTORAGE_BROKER")
            .env_remove("SSH_AUTH_SOCK");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (list, ready) = &*collected;
                list.lock().unwrap().push(line);
                ready.notify_all();
            }
            // The end of the stream is an event too: waiters must stop waiting.
            collected.0.lock().unwrap().push("<stderr closed>".into());
            collected.1.notify_all();
        });
        let broker = Self { child, lines };
        broker.wait_for("ready", |line| line.contains("broker: ready:"));
        broker
    }

    /// Waits until a stderr line satisfies `found` (counting lines already there), failing the
    /// test after [`PATIENCE`] or when the broker's stderr ends first.
    fn wait_for(&self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let (list, ready) = &*self.lines;
        let deadline = Instant::now() + PATIENCE;
        let mut lines = list.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| found(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !lines.iter().any(|l| l == "<stderr closed>"),
                "the broker never said {what}; it said:\n{}",
                lines.join("\n")
            );
            lines = ready.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// How many stderr lines satisfy `found` so far.
    fn count(&self, found: impl Fn(&str) -> bool) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| found(l))
            .count()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Sends SIGHUP and waits for the broker to say how the reload went (the `n`th such line).
    fn reload(&self, n: usize) -> String {
        self.signal(rustix::process::Signal::HUP);
        let outcome = |l: &str| l.contains("broker: reloaded ") || l.contains("reload failed");
        let (list, ready) = &*self.lines;
        let deadline = Instant::now() + PATIENCE;
        let mut lines = list.lock().unwrap();
        loop {
            let seen: Vec<&String> = lines.iter().filter(|l| outcome(l)).collect();
            if seen.len() >= n {
                return seen[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no reload outcome:\n{}", lines.join("\n"));
            lines = ready.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Whether the broker process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host side of the tests: a key, the emulator knowing its public half, a config with
/// sandbox tables, a socket directory, an audit log, and an empty directory to mount each
/// sandbox's HOME on.
struct World {
    key: TestKey,
    emulator: Emulator,
    dir: tempfile::TempDir,
}

const AGENT_42: &str = r#"
[sandbox.agent-42]
socket = "run/agent-42.sock"
orgs = ["acme"]
repos = ["agents/42/**", "shared/*"]
scopes = ["git:read", "git:write"]
ttl = "15m"
refs = [{ pattern = "refs/heads/release", ops = ["no-push"] }]
"#;

const AGENT_7: &str = r#"
[sandbox.agent-7]
socket = "run/agent-7.sock"
orgs = ["acme"]
repos = ["agents/7/**", "shared/*"]
scopes = ["git:read"]
ttl = "5m"
subject = "bot-7"
"#;

impl World {
    fn new() -> Self {
        Self::with_key(TestKey::p256())
    }

    /// A world whose organisation key is `key` (its private half may be empty: a KMS holds it).
    fn with_key(key: TestKey) -> Self {
        let emulator = Emulator::start(&[("acme", &key.public_pem)]);
        let dir = tempfile::tempdir().unwrap();
        for sub in ["etc", "run", "box"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        set_mode(&dir.path().join("run"), 0o755);
        let key_file = dir.path().join("etc/acme.pem");
        std::fs::write(&key_file, &key.pem).unwrap();
        set_mode(&key_file, 0o600);
        Self { key, emulator, dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn config_path(&self) -> PathBuf {
        self.path("etc/config.toml")
    }

    /// The config's organisation (the emulator's host) followed by `sandboxes`.
    fn config_text(&self, sandboxes: &str) -> String {
        self.config_text_with_key("key_file = \"acme.pem\"", sandboxes)
    }

    /// [`World::config_text`] with `key` (one or more TOML lines) as the organisation's key.
    fn config_text_with_key(&self, key: &str, sandboxes: &str) -> String {
        format!(
            "ttl = \"1h\"\n[org.acme]\n{key}\nhosts = [\"{}\"]\n{sandboxes}",
            self.emulator.host
        )
        .replace("\"run/", &format!("\"{}/", self.path("run").display()))
    }

    /// Replaces the config as an operator would: a whole new file, renamed into place.
    fn write_config(&self, text: &str) {
        let temporary = self.path("etc/config.toml.new");
        std::fs::write(&temporary, text).unwrap();
        set_mode(&temporary, 0o600);
        std::fs::rename(&temporary, self.config_path()).unwrap();
    }

    fn start(&self, sandboxes: &str) -> Broker {
        self.write_config(&self.config_text(sandboxes));
        Broker::start(&self.config_path(), &self.path("audit.jsonl"))
    }

    fn socket(&self, sandbox: &str) -> PathBuf {
        self.path(&format!("run/{sandbox}.sock"))
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn request(&self, repo: &str) -> String {
        format!(
            "capability[]=authtype\nprotocol=https\nhost={}\npath={repo}.git\n\n",
            self.emulator.host
        )
    }

    /// `get` on the host through `sandbox`'s socket, in a HOME with no config and no key.
    fn get_via(&self, sandbox: &str, repo: &str) -> Run {
        let home = Home::new();
        home.get(
            self.request(repo),
            &[("CODESTORAGE_BROKER", self.socket(sandbox).to_str().unwrap())],
        )
    }

    /// Runs `script` with `sh` in a new sandbox served by `sandbox`'s socket. Inside: a tmpfs
    /// HOME with only git's config and the socket in it, the host's config and key directory
    /// and the other sockets hidden under empty tmpfs, an environment of a few variables.
    fn in_sandbox(&self, sandbox: &str, script: &str) -> Run {
        self.in_sandbox_hiding(sandbox, &[], script)
    }

    /// [`World::in_sandbox`] with the directories `hidden` (an ssh-agent's, say) also under
    /// empty tmpfs, as a platform mounts nothing of the host's but the one socket.
    fn in_sandbox_hiding(&self, sandbox: &str, hidden: &[&Path], script: &str) -> Run {
        self.in_sandbox_on(&self.socket(sandbox), hidden, script)
    }

    /// Runs `script` in a new sandbox given `mount`: a socket, or a registered sandbox's
    /// directory (`sandbox_dir/NAME`), bind-mounted in as an orchestrator does.
    fn in_sandbox_on(&self, mount: &Path, hidden: &[&Path], script: &str) -> Run {
        let git = new_git();
        let hide: String = hidden
            .iter()
            .map(|dir| format!("mount -t tmpfs -o mode=0700 tmpfs '{}'\n", dir.display()))
            .collect();
        // A registered sandbox's directory is mounted whole, as a platform does; a file-defined
        // sandbox's socket alone.
        let prelude = format!(
            r#"set -e
mount -t tmpfs -o mode=0700 tmpfs "$BOX"
if [ -d "$SOCK" ]; then
  mkdir "$BOX/broker" && mount --bind "$SOCK" "$BOX/broker" && B="$BOX/broker/git.sock"
else
  touch "$BOX/broker.sock" && mount --bind "$SOCK" "$BOX/broker.sock" && B="$BOX/broker.sock"
fi
mount -t tmpfs -o mode=0700 tmpfs "$HIDE_ETC"
mount -t tmpfs -o mode=0700 tmpfs "$HIDE_RUN"
{hide}export HOME="$BOX" CODESTORAGE_BROKER="$B"
unset SOCK HIDE_ETC HIDE_RUN BOX B
cd "$HOME"
git config --global user.name Agent
git config --global user.email agent@example.invalid
git config --global init.defaultBranch main
git config --global credential.{url}.helper ""
git config --global --add credential.{url}.helper "{helper}"
git config --global credential.{url}.useHttpPath true
set +e
"#,
            url = self.emulator.url,
            helper = HELPER,
        );
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(format!("{prelude}{script}"))
            .env_clear()
            .env("PATH", support::git::path_with(git))
            .env("BOX", self.path("box"))
            .env("SOCK", mount)
            .env("HIDE_ETC", self.path("etc"))
            .env("HIDE_RUN", self.path("run"))
            .env("KEY_FILE", self.path("etc/acme.pem"))
            .env("GIT_SSL_CAINFO", &self.emulator.ca)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("REMOTE", format!("{}/", self.emulator.url));
        run(command, "")
    }

    /// The requests the emulator saw for `repo` with `service`, with the claims they carried.
    fn claims_for(&self, repo: &str, service: Service) -> Vec<support::emulator::Claims> {
        self.emulator
            .records()
            .into_iter()
            .filter(|r: &Record| r.service == service && r.path.contains(&format!("/{repo}.git")))
            .filter_map(|r| r.claims.filter(|_| r.verified))
            .collect()
    }
}

fn require_namespaces() {
    let status = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--mount-proc", "true"])
        .status()
        .unwrap_or_else(|e| support::missing("unshare", e));
    assert!(
        status.success(),
        "unshare --mount --pid needs root (or CAP_SYS_ADMIN); run these tests as root"
    );
}

#[test]
fn a_sandbox_without_a_key_clones_commits_and_pushes_and_is_refused_outside_its_repos() {
    require_namespaces();
    let world = World::new();
    let broker = world.start(AGENT_42);
    let socket = world.socket("agent-42");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the socket is the broker's user's"
    );

    let run = world.in_sandbox(
        "agent-42",
        r#"
git init -q work && cd work
echo one > a.txt && git add a.txt && git commit -q -m one
git push -q "${REMOTE}agents/42/demo.git" main || exit 11
cd "$HOME"
git clone -q "${REMOTE}agents/42/demo.git" copy || exit 12
test "$(git -C copy rev-parse HEAD)" = "$(git -C work rev-parse HEAD)" || exit 13
echo two > copy/b.txt && git -C copy add b.txt && git -C copy commit -q -m two
git -C copy push -q || exit 14
git -C work pull -q --ff-only "${REMOTE}agents/42/demo.git" main || exit 15
if git clone -q "${REMOTE}secret/plans.git" nope 2> refused.txt; then exit 16; fi
echo "== refused"; cat refused.txt
echo "== key file"; if cat "$KEY_FILE" 2>/dev/null; then exit 17; fi
echo "== env"; env
echo "== files"; grep -rl "PRIVATE KEY" "$HOME" /proc/self/environ || true
echo "== contents"; find "$HOME" -type f -not -path "*/objects/*" -not -name index -exec cat {} +
echo "== sandbox pid of this shell: $$"
"#,
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let section = |name: &str| {
        let header = format!("== {name}");
        run.stdout
            .lines()
            .skip_while(|line| *line != header)
            .skip(1)
            .take_while(|line| !line.starts_with("== "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let refused = section("refused");
    assert!(
        refused.contains(
            "sandbox agent-42 may not get a token for repository \"secret/plans\" of acme"
        ) && refused.contains("agents/42/**, shared/*"),
        "{refused}"
    );
    assert!(!refused.contains("Username for"), "no prompt: {refused}");
    // Nothing in the sandbox holds key material: no key file, variable or file under HOME.
    let env = section("env");
    assert!(env.contains("CODESTORAGE_BROKER="), "{env}");
    let key_body: String = world.key.pem.lines().nth(1).unwrap().to_owned();
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_body),
            "{text}"
        );
    }
    assert!(
        !env.contains("CODESTORAGE_CONFIG") && !env.contains("PRIVATE_KEY"),
        "{env}"
    );
    assert_eq!(section("files").trim(), "", "files holding key material");

    // What the server saw: pushes with write, clones and pulls with read only (least
    // privilege from the sandboxed git's own processes), all as the sandbox, 15 minutes.
    let pushes = world.claims_for("agents/42/demo", Service::ReceivePack);
    let reads = world.claims_for("agents/42/demo", Service::UploadPack);
    assert!(
        pushes.len() >= 2 && reads.len() >= 2,
        "{pushes:?} {reads:?}"
    );
    for claims in pushes.iter().chain(&reads) {
        assert_eq!(
            (claims.iss.as_str(), claims.sub.as_str()),
            ("acme", "sandbox:agent-42")
        );
        assert_eq!(claims.repo, "agents/42/demo");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(
            claims.refs,
            Some(vec![("refs/heads/release".into(), vec!["no-push".into()])])
        );
    }
    assert!(
        pushes.iter().all(|c| c.scopes == ["git:read", "git:write"]),
        "{pushes:?}"
    );
    assert!(reads.iter().all(|c| c.scopes == ["git:read"]), "{reads:?}");
    assert!(
        world
            .claims_for("secret/plans", Service::UploadPack)
            .is_empty()
    );

    // The audit log: every get, with the peer's host pid, the operation and the decision.
    let audit = world.audit();
    let gets: Vec<&serde_json::Value> = audit.iter().filter(|r| r["action"] == "get").collect();
    assert!(gets.len() >= 5, "{audit:#?}");
    for record in &gets {
        assert_eq!(record["sandbox"], "agent-42");
        assert_eq!(record["peer_uid"], 0);
        assert!(record["peer_pid"].as_u64().unwrap() > 1, "{record}");
        assert_eq!(record["host"], world.emulator.host.as_str());
    }
    let granted_ops: Vec<&str> = gets
        .iter()
        .filter(|r| r["decision"] == "granted")
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert!(
        granted_ops.contains(&"read") && granted_ops.contains(&"write"),
        "{granted_ops:?}"
    );
    // git's `store` after a successful request is forwarded too, and noted.
    assert!(
        audit.iter().any(|r| r["action"] == "store"
            && r["decision"] == "noted"
            && r["sandbox"] == "agent-42"),
        "{audit:#?}"
    );
    let refusal = gets.iter().find(|r| r["decision"] == "refused").unwrap();
    assert_eq!(refusal["repo"], "secret/plans");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("sandbox agent-42")
    );
    assert!(refusal["expires"].is_null() && refusal["scopes"] == serde_json::json!([]));
    let audit_text = std::fs::read_to_string(world.path("audit.jsonl")).unwrap();
    assert!(!audit_text.contains("eyJ"), "no token in the audit log");
    drop(broker);
}

#[test]
fn two_sandboxes_with_different_policies_are_told_apart() {
    require_namespaces();
    let world = World::new();
    world.emulator.seed("agents/42/a");
    world.emulator.seed("agents/7/b");
    world.emulator.seed("shared/docs");
    let _broker = world.start(&format!("{AGENT_42}{AGENT_7}"));

    let seven = world.in_sandbox(
        "agent-7",
        r#"
git clone -q "${REMOTE}agents/7/b.git" b || exit 21
git clone -q "${REMOTE}shared/docs.git" docs || exit 22
echo x > b/x && git -C b add x && git -C b commit -q -m x
if git -C b push -q 2> push.txt; then exit 23; fi
if git clone -q "${REMOTE}agents/42/a.git" a 2> other.txt; then exit 24; fi
echo "== push"; cat push.txt
echo "== other"; cat other.txt
"#,
    );
    assert_eq!(seven.code, Some(0), "{}\n{}", seven.stdout, seven.stderr);
    assert!(
        seven
            .stdout
            .contains("sandbox agent-7 may not get a token for repository \"agents/42/a\""),
        "{}",
        seven.stdout
    );
    let forty_two = world.in_sandbox(
        "agent-42",
        r#"
git clone -q "${REMOTE}agents/42/a.git" a || exit 31
git clone -q "${REMOTE}shared/docs.git" docs || exit 32
echo y > a/y && git -C a add y && git -C a commit -q -m y && git -C a push -q || exit 33
if git clone -q "${REMOTE}agents/7/b.git" b 2> other.txt; then exit 34; fi
cat other.txt
"#,
    );
    assert_eq!(
        forty_two.code,
        Some(0),
        "{}\n{}",
        forty_two.stdout,
        forty_two.stderr
    );
    assert!(
        forty_two
            .stdout
            .contains("sandbox agent-42 may not get a token for repository \"agents/7/b\""),
        "{}",
        forty_two.stdout
    );

    // Subject, scopes and lifetime in the tokens the server checked tell the two apart.
    for claims in world.claims_for("agents/7/b", Service::UploadPack) {
        assert_eq!(
            (claims.sub.as_str(), claims.exp - claims.iat),
            ("bot-7", 300)
        );
        assert_eq!(claims.scopes, ["git:read"]);
        assert_eq!(claims.refs, None);
    }
    // Its push carried a read-only token, which the server refused for receive-pack.
    let seven_pushes: Vec<Record> = world
        .emulator
        .records()
        .into_iter()
        .filter(|r| r.service == Service::ReceivePack && r.path.contains("/agents/7/b.git"))
        .collect();
    assert!(!seven_pushes.is_empty());
    assert!(
        seven_pushes
            .iter()
            .all(|r| r.status != 200 || r.claims.is_none())
    );
    assert!(
        seven_pushes
            .iter()
            .filter_map(|r| r.claims.as_ref())
            .all(|c| c.scopes == ["git:read"] && c.sub == "bot-7")
    );
    let shared = world.claims_for("shared/docs", Service::UploadPack);
    let subjects: Vec<&str> = shared.iter().map(|c| c.sub.as_str()).collect();
    assert!(
        subjects.contains(&"bot-7") && subjects.contains(&"sandbox:agent-42"),
        "{subjects:?}"
    );
    for claims in world.claims_for("agents/42/a", Service::ReceivePack) {
        assert_eq!(
            (claims.sub.as_str(), claims.exp - claims.iat),
            ("sandbox:agent-42", 900)
        );
        assert_eq!(claims.scopes, ["git:read", "git:write"]);
    }
    assert!(
        !world
            .claims_for("agents/42/a", Service::ReceivePack)
            .is_empty()
    );
}

#[test]
fn sighup_revokes_a_removed_sandbox_at_once_adds_new_ones_and_survives_a_broken_config() {
    let world = World::new();
    let broker = world.start(&format!("{AGENT_42}{AGENT_7}"));
    let before = world.get_via("agent-7", "agents/7/x");
    let claims = verify(&before.password(), &world.key).claims;
    assert_eq!(claims["sub"], "bot-7");

    // agent-7 removed, agent-9 added.
    let agent_9 = AGENT_7
        .replace("agent-7", "agent-9")
        .replace("bot-7", "bot-9");
    world.write_config(&world.config_text(&format!("{AGENT_42}{agent_9}")));
    let outcome = broker.reload(1);
    assert!(outcome.contains("reloaded"), "{outcome}");
    broker.wait_for("agent-7's removal", |l| {
        l.contains("removed sandbox agent-7")
    });
    assert!(
        !world.socket("agent-7").exists(),
        "the removed sandbox's socket is gone"
    );
    let started = Instant::now();
    let after = world.get_via("agent-7", "agents/7/x");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a removed sandbox fails at once"
    );
    assert_eq!(after.stdout, "quit=1\n");
    assert!(
        after.stderr.contains("cannot reach the token broker"),
        "{}",
        after.stderr
    );
    assert_eq!(after.stderr.lines().count(), 1, "{}", after.stderr);
    let nine = world.get_via("agent-9", "agents/7/x");
    assert_eq!(verify(&nine.password(), &world.key).claims["sub"], "bot-9");

    // A broken config: the broker says where, and the previous config keeps serving.
    world.write_config(&format!(
        "{}\n[sandbox.agent-1]\nsocket = \"/x\"\norgs = [\"acme\"]\nrepos = [\"**\"]\nscopes = [\"git:admin\"]\n",
        world.config_text(AGENT_42)
    ));
    let outcome = broker.reload(2);
    assert!(
        outcome.contains("reload failed, still serving the previous config")
            && outcome.contains(&format!("{}:", world.config_path().display()))
            && outcome.contains("git:admin"),
        "{outcome}"
    );
    let still = world.get_via("agent-9", "agents/7/x");
    assert_eq!(verify(&still.password(), &world.key).claims["sub"], "bot-9");
    let also = world.get_via("agent-42", "agents/42/x");
    assert_eq!(
        verify(&also.password(), &world.key).claims["sub"],
        "sandbox:agent-42"
    );
    assert!(world.socket("agent-9").exists() && world.socket("agent-42").exists());

    // A config whose socket directory others may write is refused the same way.
    let open = world.path("open");
    std::fs::create_dir(&open).unwrap();
    set_mode(&open, 0o777);
    world.write_config(&world.config_text(&AGENT_7.replace(
        "run/agent-7.sock",
        &format!("{}/agent-7.sock", open.display()),
    )));
    let outcome = broker.reload(3);
    assert!(
        outcome.contains("group or others may write it"),
        "{outcome}"
    );
    assert!(
        world
            .get_via("agent-42", "agents/42/x")
            .stdout
            .contains("password_expiry_utc=")
    );

    // SIGTERM: a clean exit that takes every socket with it.
    let mut broker = broker;
    broker.signal(rustix::process::Signal::TERM);
    let status = broker.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    broker.wait_for("its stop", |l| {
        l.contains("broker: stopped; sockets removed")
    });
    assert!(!world.socket("agent-42").exists() && !world.socket("agent-9").exists());
}

#[test]
fn oversized_garbage_silent_and_many_concurrent_clients_leave_the_broker_serving() {
    let world = World::new();
    let mut broker = world.start(AGENT_42);
    let socket = world.socket("agent-42");

    // A client that connects and sends nothing holds only its own connection.
    let silent = UnixStream::connect(&socket).unwrap();
    let ok = world.get_via("agent-42", "agents/42/x");
    assert!(ok.stdout.contains("password_expiry_utc="), "{}", ok.stderr);

    let exchange = |bytes: &[u8]| {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // The broker may stop reading early and close: a broken pipe is expected then.
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    // Twice what git may send (1 MiB), so over the broker's limit whatever it is.
    let big = vec![b'a'; 2 * 1024 * 1024];
    let answer = exchange(&big);
    assert!(
        answer.contains("larger than") && answer.ends_with("quit=1\n\n"),
        "{answer}"
    );
    let answer = exchange(b"\x00\xff\x01garbage\n\n");
    assert!(answer.contains("does not start with get"), "{answer}");
    let answer = exchange(b"get\nprotocol=https\nhost=a\rb\n\n");
    assert!(answer.contains("carriage return"), "{answer}");
    let answer = exchange(b"get\nprotocol=https\nhost=github.com\npath=a/b.git\n\n");
    // Every answer ends with a blank line, so a client tells a whole answer from a cut one.
    assert_eq!(
        answer, "\n",
        "not ours: nothing for git, so it asks its next helper"
    );

    // Many clients at once, each a whole `get` process: every one gets its own token.
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let world = &world;
                scope.spawn(move || world.get_via("agent-42", &format!("agents/42/r{i}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .map(|run| run.password())
            .collect()
    });
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(
            verify(token, &world.key).claims["repo"],
            format!("agents/42/r{i}")
        );
    }
    assert!(broker.alive(), "the broker is still running");

    // The silent client is answered after the request timeout, not left hanging forever.
    let mut silent = silent;
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = String::new();
    silent.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("no whole request within 5s"), "{answer}");
    let audit = world.audit();
    assert!(
        audit.iter().any(|r| r["decision"] == "error"
            && r["reason"].as_str().unwrap().contains("no whole request")),
        "{audit:#?}"
    );
    let audit_text = std::fs::read_to_string(world.path("audit.jsonl")).unwrap();
    for token in &tokens {
        assert!(!audit_text.contains(token.as_str()));
    }
    assert_eq!(broker.count(|l| l.contains("panicked")), 0);
}

#[test]
fn check_validates_the_config_keys_and_socket_directories() {
    let world = World::new();
    world.write_config(&world.config_text(&format!("{AGENT_42}{AGENT_7}")));
    let check = |config: &Path| {
        let mut command = Command::new(HELPER);
        command.args(["broker", "--check", "--config"]).arg(config);
        run(command, "")
    };
    let good = check(&world.config_path());
    assert_eq!(good.code, Some(0), "{}", good.stderr);
    assert!(
        good.stdout.contains("sandbox agent-42 on ")
            && good.stdout.contains("repos agents/42/**, shared/*")
            && good.stdout.contains("sub bot-7"),
        "{}",
        good.stdout
    );
    assert!(
        !world.socket("agent-42").exists(),
        "--check creates nothing"
    );

    world.write_config(
        &world.config_text("[sandbox.a]\nsocket = \"/s\"\norgs = [\"beta\"]\nrepos = [\"**\"]\n"),
    );
    let bad = check(&world.config_path());
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr
            .contains(&format!("{}:7:", world.config_path().display()))
            && bad.stderr.contains("no [org.beta] table"),
        "{}",
        bad.stderr
    );
    world.write_config(&world.config_text(""));
    let empty = check(&world.config_path());
    assert!(
        empty.stderr.contains("has no [sandbox.NAME] table"),
        "{}",
        empty.stderr
    );

    std::fs::remove_file(world.path("etc/acme.pem")).unwrap();
    world.write_config(&world.config_text(AGENT_42));
    let no_key = check(&world.config_path());
    assert_eq!(no_key.code, Some(1));
    assert!(
        no_key.stderr.contains("organisation \"acme\"") && no_key.stderr.contains("does not exist"),
        "{}",
        no_key.stderr
    );
    let missing = check(&world.path("etc/none.toml"));
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_sandbox_config_with_only_broker_forwards_and_a_down_broker_quits() {
    let world = World::new();
    let _broker = world.start(AGENT_42);
    let home = Home::new();
    home.write_config(&format!(
        "broker = \"{}\"\n",
        world.socket("agent-42").display()
    ));
    let run = home.get(world.request("agents/42/x"), &[]);
    let token = verify(&run.password(), &world.key);
    assert_eq!(token.claims["sub"], "sandbox:agent-42");
    assert_eq!(run.field("username"), Some("t"), "{}", run.stdout);

    home.write_config(&format!(
        "broker = \"{}\"\n",
        world.path("run/absent.sock").display()
    ));
    let down = home.get(world.request("agents/42/x"), &[]);
    assert_eq!(down.stdout, "quit=1\n");
    assert!(
        down.stderr.contains("cannot reach the token broker at")
            && down
                .stderr
                .contains(&format!("broker in {}", home.config_path().display())),
        "{}",
        down.stderr
    );
}

/// `broker --check` on `config`, with the ssh-agent at `agent` or none.
fn check_with_agent(config: &Path, agent: Option<&Path>) -> Run {
    let mut command = Command::new(HELPER);
    command
        .args(["broker", "--check", "--config"])
        .arg(config)
        .env_remove("SSH_AUTH_SOCK");
    if let Some(socket) = agent {
        command.env("SSH_AUTH_SOCK", socket);
    }
    run(command, "")
}

/// A shell line that asks the helper inside the sandbox for a token for `repo` and prints its
/// answer between `== get` and `== end`.
fn sandbox_get(world: &World, repo: &str) -> String {
    format!(
        "echo '== get'; printf 'protocol=https\\nhost={}\\npath={repo}.git\\n\\n' | '{HELPER}' get || exit 51; echo '== end'\n",
        world.emulator.host
    )
}

/// The password in what [`sandbox_get`] printed.
fn sandbox_token(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|line| *line != "== get")
        .take_while(|line| *line != "== end")
        .find_map(|line| line.strip_prefix("password="))
        .unwrap_or_else(|| panic!("no token from the sandbox's get:\n{stdout}"))
        .to_owned()
}

#[test]
fn a_broker_whose_key_lives_only_in_ssh_agent_serves_a_sandbox_that_clones_and_pushes() {
    require_namespaces();
    let world = World::new();
    world.emulator.seed("agents/42/held");
    // The organisation's key goes into a real agent and its file is deleted: from here on the
    // broker reads no private key anywhere, and asks the agent for every signature.
    let agent = SshAgent::start();
    let fingerprint = agent.add_and_delete(&world.path("etc/acme.pem"));
    world.write_config(
        &world.config_text_with_key(&format!("key_agent = \"{fingerprint}\""), AGENT_42),
    );

    // --check probes the agent: a signature that verifies, or one line that says what to do.
    let good = check_with_agent(&world.config_path(), Some(agent.socket()));
    assert_eq!(good.code, Some(0), "{good:?}");
    assert!(good.stdout.contains("sandbox agent-42 on "), "{good:?}");
    let no_agent = check_with_agent(&world.config_path(), None);
    assert_eq!(no_agent.code, Some(1), "{no_agent:?}");
    assert_eq!(no_agent.stderr.lines().count(), 1, "{}", no_agent.stderr);
    assert!(
        no_agent.stderr.contains(&format!(
            "organisation \"acme\": ssh-agent key {fingerprint}: SSH_AUTH_SOCK is not set"
        )),
        "{}",
        no_agent.stderr
    );

    let broker = Broker::start_with(
        &world.config_path(),
        &world.path("audit.jsonl"),
        &[("SSH_AUTH_SOCK", agent.socket())],
    );
    // The agent's directory is hidden from the sandbox too: only the broker's socket is there.
    let socket = agent.socket().display().to_string();
    let run = world.in_sandbox_hiding(
        "agent-42",
        &[agent.dir()],
        &format!(
            r#"
if [ -e '{socket}' ]; then exit 41; fi
git clone -q "${{REMOTE}}agents/42/held.git" work || exit 42
echo two > work/b.txt && git -C work add b.txt && git -C work commit -q -m two
git -C work push -q || exit 43
echo "pushed $(git -C work rev-parse HEAD)"
{get}"#,
            get = sandbox_get(&world, "agents/42/held")
        ),
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    // The token the sandbox got verifies with the public key, checked by ring in the test.
    let token = sandbox_token(&run.stdout);
    let claims = verify(&token, &world.key).claims;
    assert_eq!(
        (&claims["sub"], &claims["repo"]),
        (
            &serde_json::json!("sandbox:agent-42"),
            &serde_json::json!("agents/42/held")
        )
    );
    // And the server took the agent's signatures for the clone and the push.
    let reads = world.claims_for("agents/42/held", Service::UploadPack);
    let pushes = world.claims_for("agents/42/held", Service::ReceivePack);
    assert!(
        !reads.is_empty() && !pushes.is_empty(),
        "{reads:?} {pushes:?}"
    );
    assert!(
        reads
            .iter()
            .chain(&pushes)
            .all(|c| c.sub == "sandbox:agent-42")
    );
    let pushed = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("pushed "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert_eq!(
        world
            .emulator
            .rev("agents/42/held", "refs/heads/main")
            .as_deref(),
        Some(pushed),
        "the push landed"
    );

    // The key taken out of the agent: the sandbox gets one line saying the broker could not
    // sign, and no token; the broker keeps serving.
    assert!(agent.ssh_add(&["-D"], b"").status.success());
    // (Another repository: the broker would hand out the token it kept for agents/42/held.)
    let refused = world.get_via("agent-42", "agents/42/held-too");
    assert_eq!(refused.stdout, "quit=1\n", "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "the token broker could not sign: organisation \"acme\": the ssh-agent refused to sign"
        ),
        "{}",
        refused.stderr
    );
    assert!(
        world.audit().iter().any(|r| r["decision"] == "error"
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("the ssh-agent refused to sign")),
        "{:#?}",
        world.audit()
    );
    // Added back (from memory, no file): the running broker signs with it again, no reload.
    agent.add(&[], "-", world.key.pem.as_bytes());
    let again = world.get_via("agent-42", "agents/42/held");
    verify(&again.password(), &world.key);
    assert_eq!(
        broker.count(|l| l.contains("broker: reload")),
        0,
        "no reload was needed"
    );
}

#[test]
fn a_broker_with_a_sign_command_runs_it_for_every_token_and_refuses_a_wrong_signer() {
    require_namespaces();
    let world = World::new();
    // A KMS stand-in on the host, counting its calls; the sandbox sees neither it nor the key.
    let (key, calls) = counting_signer(&world);
    let count = || lines_in(&calls);
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    let good = check_with_agent(&world.config_path(), None);
    assert_eq!(good.code, Some(0), "{good:?}");
    assert_eq!(count(), 1, "--check signs one probe");

    let broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    assert_eq!(count(), 2, "the broker probes its signer once at start");
    let run = world.in_sandbox(
        "agent-42",
        &format!(
            "if [ -e '{}' ]; then exit 41; fi\n{}",
            world.path("etc/kms-sign").display(),
            sandbox_get(&world, "agents/42/kms")
        ),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let claims = verify(&sandbox_token(&run.stdout), &world.key).claims;
    assert_eq!(claims["sub"], "sandbox:agent-42");
    assert_eq!(claims["repo"], "agents/42/kms");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(count(), 3, "one signature per token");

    // A signer that signs with another key than public_key_file holds: --check says so in one
    // line, and a reload to it keeps the working signer serving.
    let other = world.path("etc/other.pem");
    openssl_key(&other, "EC");
    let wrong_key = format!(
        "sign_command = [\"openssl\", \"dgst\", \"-sha256\", \"-sign\", \"{}\"]\npublic_key_file = \"acme.pub.pem\"",
        other.display()
    );
    world.write_config(&world.config_text_with_key(&wrong_key, AGENT_42));
    let wrong = check_with_agent(&world.config_path(), None);
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert_eq!(wrong.stderr.lines().count(), 1, "{}", wrong.stderr);
    assert!(
        wrong
            .stderr
            .contains("broker: organisation \"acme\": sign_command `openssl dgst -sha256 -sign")
            && wrong
                .stderr
                .contains("signature that does not verify with public_key_file"),
        "{}",
        wrong.stderr
    );
    let outcome = broker.reload(1);
    assert!(
        outcome.contains("reload failed, still serving the previous config")
            && outcome.contains("does not verify"),
        "{outcome}"
    );
    // Another repository than before, so that the working signer signs (not a kept token).
    let still = world.get_via("agent-42", "agents/42/kms-still");
    verify(&still.password(), &world.key);
    assert_eq!(count(), 4);
}

#[test]
fn a_token_the_server_refuses_is_explained_inside_the_sandbox_through_the_broker() {
    require_namespaces();
    let world = World::new();
    world.emulator.seed("agents/42/x");
    // The broker signs with a key Code Storage does not have: every token is refused with a
    // 401, after which git sends the refused credential back to the helper with `erase`.
    let unregistered = world.path("etc/unregistered.pem");
    std::fs::write(&unregistered, TestKey::p256().pem).unwrap();
    set_mode(&unregistered, 0o600);
    world.write_config(&world.config_text_with_key("key_file = \"unregistered.pem\"", AGENT_42));
    let _broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));

    let refused = world.in_sandbox(
        "agent-42",
        r#"
if git clone -q "${REMOTE}agents/42/x.git" x 2> clone.txt; then exit 41; fi
cat clone.txt
"#,
    );
    assert_eq!(
        refused.code,
        Some(0),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    // The explanation is the broker's (the sandbox holds no key and no config), relayed to git's
    // stderr by the sandbox's helper.
    assert!(
        refused
            .stdout
            .contains("refused the token for org \"acme\", repo \"agents/42/x\"")
            && refused.stdout.contains("the public key is not registered"),
        "{}",
        refused.stdout
    );
    assert!(
        !refused.stdout.contains("eyJ"),
        "a token was printed: {}",
        refused.stdout
    );
    // The audit line is written before the answer is sent, so it is there once git is done.
    let audit = world.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "erase" && r["sandbox"] == "agent-42"),
        "{audit:?}"
    );
    let audit_text = std::fs::read_to_string(world.path("audit.jsonl")).unwrap();
    assert!(!audit_text.contains("eyJ"), "no token in the audit log");
}

/// The control API's lines of a config: its socket and the directory of registered sandboxes'.
const CONTROL: &str = "control_socket = \"run/control.sock\"\nsandbox_dir = \"run/sandboxes\"\n";

impl World {
    /// Starts a broker with the control API and `sandboxes` (file-defined tables, maybe none).
    fn start_with_control(&self, sandboxes: &str) -> Broker {
        self.start_with_settings(CONTROL, sandboxes)
    }

    /// [`World::start_with_control`] with top-level `settings` (which set the control API).
    fn start_with_settings(&self, settings: &str, sandboxes: &str) -> Broker {
        std::fs::create_dir_all(self.path("run/sandboxes")).unwrap();
        set_mode(&self.path("run/sandboxes"), 0o755);
        let text = format!("{settings}{}", self.config_text(sandboxes))
            .replace("\"run/", &format!("\"{}/", self.path("run").display()));
        self.write_config(&text);
        Broker::start(&self.config_path(), &self.path("audit.jsonl"))
    }

    /// One control API request with curl, as an orchestrator sends it: the status and body.
    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.curl_as(&[], method, path, body)
    }

    /// [`World::curl`] run by `setpriv` with `ids` (say `--reuid=65534`), as another user;
    /// none: as this one.
    fn curl_as(&self, ids: &[&str], method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut command = Command::new(if ids.is_empty() { "curl" } else { "setpriv" });
        if !ids.is_empty() {
            command.args(ids).arg("curl");
        }
        command
            .args(["-sS", "--path-as-is", "--max-time", "30", "--unix-socket"])
            .arg(self.path("run/control.sock"))
            .args(["-X", method, "-w", "\n%{http_code}"])
            .arg(format!("http://broker{path}"));
        if let Some(body) = body {
            command.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        let out = command
            .output()
            .expect("curl must be installed: run scripts/install-test-deps.sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// `broker sandbox ARGS` against this world's config.
    fn cli(&self, args: &[&str]) -> Run {
        let mut command = Command::new(HELPER);
        command
            .args(["broker", "--config"])
            .arg(self.config_path())
            .arg("sandbox")
            .args(args)
            .env_remove("CODESTORAGE_CONFIG");
        run(command, "")
    }

    /// A registered sandbox's directory, which the orchestrator mounts.
    fn sandbox_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("run/sandboxes/{name}"))
    }

    /// `get` on the host through a registered sandbox's socket.
    fn get_registered(&self, name: &str, repo: &str) -> Run {
        let socket = self.sandbox_dir(name).join("git.sock");
        Home::new().get(
            self.request(repo),
            &[("CODESTORAGE_BROKER", socket.to_str().unwrap())],
        )
    }
}

#[test]
fn the_control_api_registers_serves_replaces_and_deletes_sandboxes() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start_with_control(AGENT_7);
    assert_eq!(world.curl("GET", "/v1/health", None).0, 200);

    let body = r#"{"orgs": ["acme"], "repos": ["agents/9/**"], "ttl": "10m", "lease": "1h"}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(body));
    assert_eq!(status, 201, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let socket = world.sandbox_dir("agent-9").join("git.sock");
    assert_eq!(answer["socket"], socket.to_str().unwrap());
    assert!(answer["expires_at"].as_i64().unwrap() > 0);
    // When the answer is sent, the socket serves.
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
    let dir_mode = std::fs::metadata(world.sandbox_dir("agent-9"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o755);

    let run = world.in_sandbox_on(
        &world.sandbox_dir("agent-9"),
        &[],
        r#"
git init -q work && cd work
echo one > a.txt && git add a.txt && git commit -q -m one
git push -q "${REMOTE}agents/9/demo.git" main || exit 11
if git clone -q "${REMOTE}agents/7/x.git" nope 2> refused.txt; then exit 12; fi
cat refused.txt
"#,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("sandbox agent-9 may not get a token"),
        "{}",
        run.stdout
    );
    let pushed = world.claims_for("agents/9/demo", Service::ReceivePack);
    assert_eq!(pushed.last().unwrap().sub, "sandbox:agent-9");

    // Every mistake is a 400 naming the field and the fix, and changes nothing.
    for (name, body, words) in [
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": ["x"], "repo": ["y"]}"#,
            "unknown field `repo`",
        ),
        (
            "agent-9",
            r#"{"orgs": ["gamma"], "repos": ["x"]}"#,
            "no [org.gamma] table",
        ),
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": []}"#,
            "repos is empty",
        ),
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": ["/x"]}"#,
            "write it as",
        ),
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": ["x"], "mode": "0660"}"#,
            "add group",
        ),
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": ["x"], "socket": "/tmp/s"}"#,
            "socket is chosen by the broker",
        ),
        (
            "agent-9",
            r#"{"orgs": ["acme"], "repos": ["x"], "lease": "forever"}"#,
            "lease",
        ),
        ("agent-9", "{not json", "not a JSON object"),
        (
            "a%20b",
            r#"{"orgs": ["acme"], "repos": ["x"]}"#,
            "a registered sandbox's name is",
        ),
        (
            "..",
            r#"{"orgs": ["acme"], "repos": ["x"]}"#,
            "a registered sandbox's name is",
        ),
    ] {
        let (status, answer) = world.curl("PUT", &format!("/v1/sandboxes/{name}"), Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(
            error.contains(words) && !error.contains('\n'),
            "{body}: {error}"
        );
    }
    let still = world.get_registered("agent-9", "agents/9/demo");
    assert!(
        still.stdout.contains("password="),
        "the registration is unchanged: {}",
        still.stderr
    );

    // The file's sandboxes are the file's.
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-7", Some(body));
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("[sandbox.agent-7] table of"), "{answer}");
    assert_eq!(world.curl("DELETE", "/v1/sandboxes/agent-7", None).0, 409);

    // A replace narrows at once: no token for the old repositories afterwards.
    let narrower = r#"{"orgs": ["acme"], "repos": ["agents/9/only-this"]}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(narrower));
    assert_eq!(status, 200, "{answer}");
    let refused = world.get_registered("agent-9", "agents/9/demo");
    assert!(
        refused.stdout.contains("quit=1") && !refused.stdout.contains("password="),
        "{}",
        refused.stdout
    );

    let (status, list) = world.curl("GET", "/v1/sandboxes", None);
    assert_eq!(status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let nine = list.iter().find(|s| s["name"] == "agent-9").unwrap();
    assert_eq!(nine["origin"], "api");
    assert_eq!(nine["policy"]["repos"][0], "agents/9/only-this");
    assert!(nine["tokens_issued"].as_u64().unwrap() >= 2, "{nine}");
    assert!(nine["refused"].as_u64().unwrap() >= 1, "{nine}");
    assert!(
        list.iter()
            .any(|s| s["name"] == "agent-7" && s["origin"] == "file")
    );
    let (_, metrics) = world.curl("GET", "/metrics", None);
    assert!(
        metrics.contains("codestorage_broker_tokens_issued_total{sandbox=\"agent-9\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("codestorage_broker_sandboxes 2"),
        "{metrics}"
    );
    // The organisation's signer is counted: it signed every token not handed out again.
    let signed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("codestorage_signer_calls_total{org=\"acme\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no signer counter: {metrics}"));
    assert!(signed >= 1, "{metrics}");
    assert!(
        metrics.contains("# TYPE codestorage_signer_calls_total counter")
            && metrics.contains("codestorage_signer_errors_total{org=\"acme\"} 0"),
        "{metrics}"
    );

    // When DELETE answers, the socket and directory are gone and nothing more is served.
    assert_eq!(world.curl("DELETE", "/v1/sandboxes/agent-9", None).0, 204);
    assert!(!socket.exists() && !world.sandbox_dir("agent-9").exists());
    let gone = world.get_registered("agent-9", "agents/9/only-this");
    assert!(
        gone.stdout.contains("quit=1") && gone.stderr.contains("cannot reach the token broker"),
        "{}",
        gone.stderr
    );
    assert_eq!(world.curl("DELETE", "/v1/sandboxes/agent-9", None).0, 404);
    assert_eq!(world.curl("GET", "/v1/sandboxes/agent-9", None).0, 404);
    assert_eq!(
        world.curl("POST", "/v1/sandboxes/agent-9", Some("{}")).0,
        405
    );
}

#[test]
fn the_control_api_answers_another_user_403_and_lets_control_group_s_members_in() {
    require_namespaces();
    let world = World::new();
    // Another user must be able to walk to the socket for its mode and the peer check to matter.
    set_mode(&world.path(""), 0o755);
    let _broker =
        world.start_with_settings(&format!("{CONTROL}control_group = \"users\"\n"), AGENT_7);
    let socket = world.path("run/control.sock");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&meta),
        100,
        "group users"
    );
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let member = ["--reuid=65534", "--regid=65534", "--groups=100"];
    // A member of control_group, by a supplementary group, is served.
    let (status, answer) = world.curl_as(&member, "GET", "/v1/health", None);
    assert_eq!(status, 200, "{answer}");
    // Anyone else cannot even connect; and where the socket's mode was loosened by hand, the
    // broker's own check of the peer's kernel-reported uid and groups turns them away.
    assert_eq!(world.curl_as(&nobody, "GET", "/v1/health", None).0, 0);
    set_mode(&socket, 0o666);
    let body = r#"{"orgs": ["acme"], "repos": ["agents/**"]}"#;
    let (status, answer) = world.curl_as(&nobody, "PUT", "/v1/sandboxes/stolen", Some(body));
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("members of control_group"), "{answer}");
    let (status, answer) = world.curl_as(&nobody, "GET", "/v1/sandboxes", None);
    assert_eq!(status, 403, "{answer}");
    assert!(!world.sandbox_dir("stolen").exists());
    assert_eq!(world.curl("GET", "/v1/sandboxes/stolen", None).0, 404);
}

/// How many sandbox connections the broker is serving, from its metrics.
fn open_connections(world: &World) -> usize {
    let (status, text) = world.curl("GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("codestorage_broker_open_connections "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no open_connections gauge in:\n{text}"))
}

#[test]
fn a_request_open_when_a_narrowing_put_lands_gets_no_token_under_the_old_policy() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start_with_control("");
    let wide = r#"{"orgs": ["acme"], "repos": ["agents/9/**"]}"#;
    assert_eq!(
        world.curl("PUT", "/v1/sandboxes/agent-9", Some(wide)).0,
        201
    );
    // A request for a repository both policies allow, held open before its last line.
    let request = world.request("agents/9/docs");
    let (head, last) = request.split_at(request.len() - 1);
    let mut open = UnixStream::connect(world.sandbox_dir("agent-9").join("git.sock")).unwrap();
    open.write_all(format!("get\n{head}").as_bytes()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while open_connections(&world) < 1 {
        assert!(
            Instant::now() < deadline,
            "the broker never took the request"
        );
        std::thread::yield_now();
    }
    let narrow = r#"{"orgs": ["acme"], "repos": ["agents/9/docs"], "scopes": ["git:read"]}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(narrow));
    assert_eq!(status, 200, "{answer}");
    open.write_all(last.as_bytes()).unwrap();
    let mut answer = String::new();
    open.read_to_string(&mut answer).unwrap();
    assert!(
        !answer.contains("password="),
        "a token under the old policy: {answer}"
    );
    assert!(
        answer.contains("policy was replaced while this request waited; run the git command again"),
        "{answer}"
    );
    // Asked again, it is decided under the new policy alone.
    let again = world.get_registered("agent-9", "agents/9/docs");
    let claims = verify(&again.password(), &world.key).claims;
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["git:read"]),
        "{claims}"
    );
    let outside = world.get_registered("agent-9", "agents/9/other");
    assert!(!outside.stdout.contains("password="), "{}", outside.stdout);
}

#[test]
fn the_command_line_registers_lists_shows_and_removes_through_the_control_api() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start_with_control("");
    let added = world.cli(&[
        "add",
        "agent-8",
        "--org",
        "acme",
        "--repo",
        "agents/8/**",
        "--scope",
        "git:read",
        "--lease",
        "2h",
    ]);
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    assert!(
        added
            .stdout
            .starts_with("registered sandbox agent-8: socket ")
            && added.stdout.contains("lease ends"),
        "{}",
        added.stdout
    );
    let token = world.get_registered("agent-8", "agents/8/x");
    assert!(token.stdout.contains("password="), "{}", token.stderr);

    let listed = world.cli(&["list"]);
    assert!(
        listed.stdout.contains("agent-8 (api) on ") && listed.stdout.contains("1 token(s) issued"),
        "{}",
        listed.stdout
    );
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&world.cli(&["list", "--json"]).stdout).unwrap();
    assert_eq!(json.len(), 1);
    let shown: serde_json::Value =
        serde_json::from_str(&world.cli(&["show", "agent-8"]).stdout).unwrap();
    assert_eq!(shown["policy"]["scopes"][0], "git:read");

    let bad = world.cli(&["add", "agent-8", "--org", "gamma", "--repo", "x"]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr.contains("no [org.gamma] table") && bad.stderr.lines().count() == 1,
        "{}",
        bad.stderr
    );
    let removed = world.cli(&["remove", "agent-8"]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    let unknown = world.cli(&["show", "agent-8"]);
    assert!(
        unknown.code == Some(1) && unknown.stderr.contains("no sandbox \"agent-8\""),
        "{}",
        unknown.stderr
    );
    let elsewhere = world.cli(&["--control-socket", "/nonexistent/control.sock", "list"]);
    assert!(
        elsewhere
            .stderr
            .contains("cannot reach the broker's control API"),
        "{}",
        elsewhere.stderr
    );
}

#[test]
fn a_lease_ends_by_itself_and_registrations_survive_a_restart() {
    require_namespaces();
    let world = World::new();
    let mut broker = world.start_with_control("");
    let short = r#"{"orgs": ["acme"], "repos": ["agents/1/**"], "lease": "2s"}"#;
    let long = r#"{"orgs": ["acme"], "repos": ["agents/2/**"], "lease": "1h"}"#;
    assert_eq!(world.curl("PUT", "/v1/sandboxes/brief", Some(short)).0, 201);
    assert_eq!(world.curl("PUT", "/v1/sandboxes/kept", Some(long)).0, 201);
    // A new registration's file is not synced: a power cut may leave it torn, as this one.
    let torn = r#"{"orgs": ["acme"], "repos": ["agents/3/**"]}"#;
    assert_eq!(world.curl("PUT", "/v1/sandboxes/torn", Some(torn)).0, 201);
    broker.wait_for("the lease's end", |l| {
        l.contains("sandbox brief's lease ended")
    });
    assert!(!world.sandbox_dir("brief").exists());
    let ended = world.get_registered("brief", "agents/1/x");
    assert!(
        ended.stdout.contains("quit=1") && !ended.stdout.contains("password="),
        "{}",
        ended.stdout
    );
    assert_eq!(world.curl("GET", "/v1/sandboxes/brief", None).0, 404);

    broker.signal(rustix::process::Signal::TERM);
    broker.wait_for("stopping", |l| l.contains("stopped; sockets removed"));
    broker.child.wait().unwrap();
    // The platform's bind mount is of the directory, which stays; the socket comes back.
    assert!(world.sandbox_dir("kept").is_dir());
    let torn_file = world.path("run/sandboxes/.registrations/torn.json");
    std::fs::write(&torn_file, "").unwrap();
    let again = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    assert_eq!(again.count(|l| l.contains("restored sandbox kept")), 1);
    // The torn one is dropped and said so, never served, and the others are not held up by it.
    assert_eq!(
        again.count(|l| l.contains("registration torn from the last run is dropped")),
        1
    );
    assert!(!torn_file.exists());
    assert_eq!(world.curl("GET", "/v1/sandboxes/torn", None).0, 404);
    let token = world.get_registered("kept", "agents/2/x");
    assert!(token.stdout.contains("password="), "{}", token.stderr);
    let (_, shown) = world.curl("GET", "/v1/sandboxes/kept", None);
    assert!(shown.contains("\"expires_at\":"), "{shown}");
}

#[test]
fn check_works_beside_a_serving_broker_and_a_reload_is_whole_or_nothing() {
    require_namespaces();
    let world = World::new();
    let broker = world.start(AGENT_42);
    let check = |config: &Path| {
        let mut command = Command::new(HELPER);
        command
            .args(["broker", "--check", "--config"])
            .arg(config)
            .env_remove("CODESTORAGE_CONFIG");
        run(command, "")
    };
    let ok = check(&world.config_path());
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);

    // A second sandbox on a path no socket can have: --check and the reload both refuse it.
    let long_dir = world.path(&format!("run/{}", "d".repeat(100)));
    std::fs::create_dir(&long_dir).unwrap();
    set_mode(&long_dir, 0o755);
    let text = world.config_text(&format!(
        "{AGENT_42}[sandbox.agent-long]\nsocket = \"{}/s.sock\"\norgs = [\"acme\"]\nrepos = [\"x\"]\n",
        long_dir.display()
    ));
    world.write_config(&text);
    let refused = check(&world.config_path());
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .contains("a Unix socket's path is at most 107 bytes"),
        "{}",
        refused.stderr
    );
    let outcome = broker.reload(1);
    assert!(
        outcome.contains("reload failed") && outcome.contains("107 bytes"),
        "{outcome}"
    );
    assert!(
        world
            .get_via("agent-42", "agents/42/x")
            .stdout
            .contains("password=")
    );
    assert_eq!(
        broker.count(|l| l.contains("serving sandbox agent-long")),
        0
    );

    // A group mode needs its group; a parent others may write is refused.
    let open = world.path("open");
    std::fs::create_dir_all(open.join("inner")).unwrap();
    set_mode(&open, 0o777);
    set_mode(&open.join("inner"), 0o755);
    let text = world.config_text(&format!(
        "[sandbox.x]\nsocket = \"{}/inner/x.sock\"\norgs = [\"acme\"]\nrepos = [\"x\"]\n",
        open.display()
    ));
    world.write_config(&text);
    let unsafe_parent = check(&world.config_path());
    assert!(
        unsafe_parent
            .stderr
            .contains("group or others may write its parent"),
        "{}",
        unsafe_parent.stderr
    );
}

#[test]
fn ten_thousand_sandboxes_start_under_a_soft_limit_of_1024() {
    require_namespaces();
    let world = World::new();
    let mut tables = String::new();
    for i in 0..10_000 {
        tables.push_str(&format!(
            "[sandbox.s{i}]\nsocket = \"run/s{i}.sock\"\norgs = [\"acme\"]\nrepos = [\"agents/{i}/**\"]\n"
        ));
    }
    world.write_config(&world.config_text(&tables));
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 20);
    assert!(
        hard >= 10_400,
        "this machine's hard open-file limit ({hard}) is below what 10,000 sockets need"
    );
    let start = |limit: &str| {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={limit}"))
            .arg("--")
            .arg(HELPER)
            .args(["broker", "--audit-log"])
            .arg(world.path("audit.jsonl"))
            .arg("--config")
            .arg(world.config_path())
            .env_remove("CODESTORAGE_CONFIG");
        command
    };
    // A hard limit too low: one line with the exact fix.
    let low = run(start("1024:1024"), "");
    assert_eq!(low.code, Some(1));
    assert!(
        low.stderr
            .contains("needs 10320 open files for 10000 sandbox socket(s)")
            && low.stderr.contains("LimitNOFILE=10320")
            && low.stderr.contains("ulimit -n 10320"),
        "{}",
        low.stderr
    );
    // Soft 1024 under a high hard limit: raised, and every socket served.
    let mut child = start(&format!("1024:{hard}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) must be installed: run scripts/install-test-deps.sh");
    let stderr = child.stderr.take().unwrap();
    let ready = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("broker: ready:") || !l.contains("broker: serving"));
    let ready = ready.unwrap_or_default();
    assert!(ready.contains("ready: 10000 sandbox(es)"), "{ready}");
    for i in [0, 4_999, 9_999] {
        let got = world.get_via(&format!("s{i}"), &format!("agents/{i}/x"));
        assert!(got.stdout.contains("password="), "s{i}: {}", got.stderr);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_sandbox_flooding_its_socket_neither_stalls_another_nor_fills_the_audit_log() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start(&format!("{AGENT_42}{AGENT_7}"));
    // agent-42 holds idle connections and connects in a loop with garbage, from 8 threads.
    let idle: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(world.socket("agent-42")).ok())
        .collect();
    let flood = Flood::start(&world.socket("agent-42"));
    // Meanwhile agent-7's gets are answered, each well within the client's own timeout.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let got = world.get_via("agent-7", "agents/7/x");
        slowest = slowest.max(started.elapsed());
        assert!(got.stdout.contains("password="), "{}", got.stderr);
    }
    let flooded = flood.stop();
    drop(idle);
    assert!(
        slowest < Duration::from_secs(2),
        "a get took {slowest:?} beside the flood"
    );
    // The lines held back are summed up once the flood's second is over.
    let deadline = Instant::now() + PATIENCE;
    let summed_up = |audit: &[serde_json::Value]| {
        audit
            .iter()
            .any(|l| l["sandbox"] == "agent-42" && l["decision"] == "summary")
    };
    while !summed_up(&world.audit()) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let audit = world.audit();
    let lines_42 = audit.iter().filter(|l| l["sandbox"] == "agent-42").count();
    let granted_7 = audit
        .iter()
        .filter(|l| l["sandbox"] == "agent-7" && l["decision"] == "granted")
        .count();
    assert_eq!(granted_7, 20, "every token has its own line");
    assert!(flooded > 200, "the flood made only {flooded} connections");
    assert!(
        lines_42 < flooded / 2,
        "{lines_42} audit lines for {flooded} flooding connections"
    );
    assert!(summed_up(&audit), "no summary line");
    eprintln!("flood: {flooded} connections, {lines_42} audit lines; slowest get {slowest:?}");
}

/// A sandbox connecting to its socket in a loop with garbage, from 8 threads.
struct Flood {
    flooding: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(socket: &Path) -> Self {
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads = (0..8)
            .map(|_| {
                let (socket, flooding, connections) =
                    (socket.to_owned(), flooding.clone(), connections.clone());
                std::thread::spawn(move || {
                    while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok(mut s) = UnixStream::connect(&socket) {
                            let _ = s.write_all(b"\xff garbage\n\n");
                            let _ = s.read_to_end(&mut Vec::new());
                            connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            flooding,
            connections,
            threads,
        }
    }

    /// How many connections the flood made so far.
    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the flood; how many connections it made.
    fn stop(self) -> usize {
        self.flooding
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let made = self.connections();
        for thread in self.threads {
            thread.join().unwrap();
        }
        made.max(self.connections.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// How long a registration, a reload or a stop may take beside a flood: far above the 100 ms
/// the broker is held to (docs/performance.md has the measured figures), as the machine
/// running the tests is shared; a loop stuck behind the flood takes far longer.
const PROMPT: Duration = Duration::from_secs(2);

#[test]
fn while_a_sandbox_floods_its_socket_a_registration_a_reload_and_a_stop_are_each_prompt() {
    require_namespaces();
    let world = World::new();
    let mut broker = world.start_with_control(AGENT_42);
    let flood = Flood::start(&world.socket("agent-42"));
    let deadline = Instant::now() + PATIENCE;
    while flood.connections() < 200 {
        assert!(Instant::now() < deadline, "the flood never got going");
        std::thread::yield_now();
    }
    let started = Instant::now();
    let body = r#"{"orgs": ["acme"], "repos": ["agents/9/**"]}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(body));
    let registered = started.elapsed();
    assert_eq!(status, 201, "{answer}");
    assert!(registered < PROMPT, "a registration took {registered:?}");
    let got = world.get_registered("agent-9", "agents/9/x");
    assert!(got.stdout.contains("password="), "{}", got.stderr);

    let started = Instant::now();
    let outcome = broker.reload(1);
    let reloaded = started.elapsed();
    assert!(outcome.contains("reloaded"), "{outcome}");
    assert!(reloaded < PROMPT, "a reload took {reloaded:?}");

    let started = Instant::now();
    broker.signal(rustix::process::Signal::TERM);
    broker.wait_for("that it stopped", |l| l.contains("broker: stopped;"));
    let status = broker.child.wait().unwrap();
    let stopped = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(stopped < PROMPT, "stopping took {stopped:?}");
    assert!(!broker.alive());
    assert!(flood.stop() > 200);
    eprintln!("beside a flood: registration {registered:?}, reload {reloaded:?}, stop {stopped:?}");
}

/// A KMS stand-in on the host: a sign_command around openssl that signs what it reads with the
/// organisation's key and appends a line to a file per call. The `[org]` key lines naming it,
/// and that file.
fn counting_signer(world: &World) -> (String, PathBuf) {
    let calls = world.path("etc/signer-calls");
    let signer = script(
        &world.path("etc"),
        "kms-sign",
        &format!(
            "echo signed >> '{}'\nopenssl dgst -sha256 -sign '{}' | openssl base64 -A\n",
            calls.display(),
            world.path("etc/acme.pem").display()
        ),
    );
    std::fs::write(world.path("etc/acme.pub.pem"), &world.key.public_pem).unwrap();
    let key = format!(
        "sign_command = [\"{}\"]\npublic_key_file = \"acme.pub.pem\"",
        signer.display()
    );
    (key, calls)
}

/// How many lines `path` holds (none when it does not exist yet).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The lines of a kept-running signer's log that are `word`.
fn signer_log_count(log: &Path, word: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == word)
        .count()
}

/// `sign_command` lines for a kept-running signer over `world`'s key, in `mode`, logging to
/// `log`.
fn persistent_key(world: &World, mode: &str, log: &Path) -> String {
    let argv = persistent_signer(&world.path("etc"), &world.path("etc/acme.pem"), mode, log);
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    std::fs::write(world.path("etc/acme.pub.pem"), &world.key.public_pem).unwrap();
    format!(
        "sign_command = [{}]\npublic_key_file = \"acme.pub.pem\"\nsign_persistent = true",
        quoted.join(", ")
    )
}

#[test]
fn a_kept_running_signer_starts_once_and_a_crash_costs_one_request() {
    let world = World::new();
    let log = world.path("etc/signer.log");
    let key = persistent_key(&world, "crash-once", &log);
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    let _broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    assert_eq!(signer_log_count(&log, "start"), 1, "started for the probe");

    // The probe was its first request; its second kills it: that get fails in one line.
    let failed = world.get_via("agent-42", "agents/42/a");
    assert_eq!(failed.stdout, "quit=1\n", "{failed:?}");
    assert!(
        failed.stderr.contains("the token broker could not sign")
            && failed
                .stderr
                .contains("(sign_persistent): the kept-running signer exited"),
        "{}",
        failed.stderr
    );
    assert_eq!(failed.stderr.lines().count(), 1, "{}", failed.stderr);

    // The next request starts it again at once, and that one process signs the rest.
    for n in 0..4 {
        let run = world.get_via("agent-42", &format!("agents/42/r{n}"));
        verify(&run.password(), &world.key);
    }
    assert_eq!(signer_log_count(&log, "start"), 2);
    assert_eq!(signer_log_count(&log, "sign"), 5);
}

#[test]
fn a_hanging_signer_stalls_only_its_own_organisation() {
    let world = World::new();
    let log = world.path("etc/slow.log");
    let key = persistent_key(&world, "hang-after-1", &log);
    let config = format!(
        "ttl = \"1h\"\n[org.acme]\nkey_file = \"acme.pem\"\nhosts = [\"{host}\"]\n[org.slow]\n{key}\nhosts = [\"slow.code.storage\"]\n{AGENT_42}\n[sandbox.slow]\nsocket = \"run/slow.sock\"\norgs = [\"slow\"]\nrepos = [\"**\"]\n",
        host = world.emulator.host
    )
    .replace("\"run/", &format!("\"{}/", world.path("run").display()));
    world.write_config(&config);
    let _broker = Broker::start_with(
        &world.config_path(),
        &world.path("audit.jsonl"),
        &[("CODESTORAGE_KEY_COMMAND_TIMEOUT", Path::new("3"))],
    );
    let socket = world.path("run/slow.sock");
    let stalled = std::thread::spawn(move || {
        Home::new().get(
            "protocol=https\nhost=slow.code.storage\npath=x/y.git\n\n",
            &[("CODESTORAGE_BROKER", socket.to_str().unwrap())],
        )
    });
    let deadline = Instant::now() + PATIENCE;
    while signer_log_count(&log, "request") < 2 {
        assert!(Instant::now() < deadline, "the slow signer was never asked");
        std::thread::yield_now();
    }
    let started = Instant::now();
    let quick = world.get_via("agent-42", "agents/42/quick");
    verify(&quick.password(), &world.key);
    assert!(
        !stalled.is_finished(),
        "the other organisation's get finished while the slow signer hung ({:?})",
        started.elapsed()
    );
    let stalled = stalled.join().unwrap();
    assert_eq!(stalled.stdout, "quit=1\n", "{stalled:?}");
    assert!(
        stalled
            .stderr
            .contains("gave no answer within 3s and was stopped"),
        "{}",
        stalled.stderr
    );
}

#[test]
fn an_aws_kms_key_in_moto_signs_real_git_through_the_contrib_signer_in_both_modes() {
    require_namespaces();
    // From zero, as docs/keys.md tells it: a P-256 signing key, its public half exported by the
    // contrib signer and registered (with the emulator); no private key exists outside "KMS".
    let moto = Moto::start();
    let alias = moto.create_p256_key("codestorage-acme");
    let public = moto.public_key_pem(&alias);
    let world = World::with_key(TestKey::from_pems(String::new(), public.clone(), "ES256"));
    std::fs::write(world.path("etc/acme.pub.pem"), &public).unwrap();
    let env = moto.env();
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, Path::new(v))).collect();
    for persistent in [true, false] {
        let argv = if persistent {
            signer_argv(&["--persistent", &alias])
        } else {
            signer_argv(&[&alias])
        };
        let key = format!(
            "sign_command = {argv:?}\npublic_key_file = \"acme.pub.pem\"\nsign_persistent = {persistent}"
        );
        world.write_config(&world.config_text_with_key(&key, AGENT_42));
        let broker = Broker::start_with(&world.config_path(), &world.path("audit.jsonl"), &env);
        let repo = format!("agents/42/kms-{persistent}");
        let run = world.in_sandbox(
            "agent-42",
            &format!(
                r#"
git init -q work && cd work
echo one > a.txt && git add a.txt && git commit -q -m one
git push -q "${{REMOTE}}{repo}.git" main || exit 11
cd "$HOME"
git clone -q "${{REMOTE}}{repo}.git" copy || exit 12
test "$(git -C copy rev-parse HEAD)" = "$(git -C work rev-parse HEAD)" || exit 13
"#
            ),
        );
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        drop(broker);
    }
    let records = world.emulator.records();
    let signed: Vec<_> = records.iter().filter(|r| r.verified).collect();
    assert!(signed.len() >= 4, "{records:?}");
    let granted = world
        .audit()
        .iter()
        .filter(|r| r["decision"] == "granted")
        .count();
    assert!(
        granted >= 4,
        "each mode pushed and cloned with KMS-signed tokens"
    );
}

#[test]
fn a_token_is_signed_once_per_half_lifetime_and_a_reload_or_reuse_tokens_false_signs_again() {
    let world = World::new();
    let (key, calls) = counting_signer(&world);
    let count = || lines_in(&calls);
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    let broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    assert_eq!(count(), 1, "the probe");

    // 100 gets for 10 repositories: one signature per repository, the same token each time.
    let mut tokens = std::collections::HashMap::new();
    for n in 0..100 {
        let repo = format!("agents/42/r{}", n % 10);
        let token = world.get_via("agent-42", &repo).password();
        let first = tokens.entry(repo).or_insert_with(|| token.clone());
        assert_eq!(*first, token);
    }
    assert_eq!(count(), 1 + 10);
    for token in tokens.values() {
        verify(token, &world.key);
    }
    let granted: Vec<_> = world
        .audit()
        .into_iter()
        .filter(|r| r["decision"] == "granted")
        .collect();
    assert_eq!(granted.len(), 100, "one audit line per token handed out");
    let reused = granted.iter().filter(|r| r["reused"] == true).count();
    assert_eq!((reused, 100 - reused), (90, 10));

    // A reload drops every kept token: the next get is signed anew (after the reload's probe).
    broker.reload(1);
    let before = count();
    let again = world.get_via("agent-42", "agents/42/r0").password();
    assert_ne!(again, tokens["agents/42/r0"]);
    assert_eq!(count(), before + 1);

    // reuse_tokens = false in the sandbox's table: every token is signed.
    let no_reuse = AGENT_42.replace("ttl = \"15m\"", "ttl = \"15m\"\nreuse_tokens = false");
    world.write_config(&world.config_text_with_key(&key, &no_reuse));
    broker.reload(2);
    let before = count();
    for _ in 0..3 {
        world.get_via("agent-42", "agents/42/r0").password();
    }
    assert_eq!(count(), before + 3);
    let last = world.audit().pop().unwrap();
    assert_eq!(last["reused"], false);

    // ... and at the top, for every sandbox.
    let top = format!(
        "reuse_tokens = false\n{}",
        world.config_text_with_key(&key, AGENT_42)
    );
    world.write_config(&top);
    broker.reload(3);
    let before = count();
    world.get_via("agent-42", "agents/42/r1").password();
    world.get_via("agent-42", "agents/42/r1").password();
    assert_eq!(count(), before + 2);

    // A sandbox removed and registered again gets no token kept from before.
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    broker.reload(4);
    let kept = world.get_via("agent-42", "agents/42/r2").password();
    assert_eq!(kept, world.get_via("agent-42", "agents/42/r2").password());
    world.write_config(&world.config_text_with_key(&key, AGENT_7));
    broker.reload(5);
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    broker.reload(6);
    let fresh = world.get_via("agent-42", "agents/42/r2").password();
    assert_ne!(fresh, kept);
    verify(&fresh, &world.key);
}

const CONFINED: &str = r#"
[sandbox.agent-42]
socket = "run/agent-42.sock"
orgs = ["acme"]
repos = ["agents/42/**"]
refs = [{ pattern = "agents/42/frozen", ops = ["no-push"] }]
push_branches = ["agents/42/*", "fix-123"]
"#;

#[test]
fn push_branches_let_a_sandbox_push_its_branches_and_nothing_else() {
    require_namespaces();
    let world = World::new();
    let seeded = world.emulator.seed("agents/42/app");
    let _broker = world.start(CONFINED);
    let run = world.in_sandbox(
        "agent-42",
        r#"
git clone -q "${REMOTE}agents/42/app.git" app || exit 31
cd app && echo change > c.txt && git add c.txt && git commit -q -m change
for target in main agents/42/topic agents/42/deep/er fix-123 agents/42/frozen agents/7/x fix-1234 refs/tags/v1; do
  if git push -q origin "HEAD:$target" 2> push.txt; then echo "landed $target"; else echo "refused $target"; cat push.txt; fi
done
"#,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let head = |refname: &str| world.emulator.rev("agents/42/app", refname);
    let pushed = head("refs/heads/agents/42/topic").expect("the allowed branch landed");
    assert_ne!(pushed, seeded);
    for landed in ["agents/42/topic", "agents/42/deep/er", "fix-123"] {
        assert!(
            run.stdout.contains(&format!("landed {landed}")),
            "{}",
            run.stdout
        );
        assert_eq!(head(&format!("refs/heads/{landed}")), Some(pushed.clone()));
    }
    for refused in ["main", "agents/42/frozen", "agents/7/x", "fix-1234"] {
        assert!(
            run.stdout.contains(&format!("refused {refused}")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("! [remote rejected] HEAD -> {refused} (no-push)")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("refused refs/tags/v1"),
        "{}",
        run.stdout
    );
    assert_eq!(head("refs/heads/main"), Some(seeded), "main is untouched");
    for absent in [
        "refs/heads/agents/42/frozen",
        "refs/heads/agents/7/x",
        "refs/tags/v1",
    ] {
        assert_eq!(head(absent), None, "{absent}");
    }
    // Every push token carried the confinement, deny-by-default last.
    let pushes = world.claims_for("agents/42/app", Service::ReceivePack);
    assert!(!pushes.is_empty());
    for claims in pushes {
        let refs = claims.refs.expect("refs claim");
        assert_eq!(refs.last(), Some(&("*".into(), vec!["no-push".into()])));
        assert_eq!(
            refs[0],
            ("refs/heads/agents/42/frozen".into(), vec!["no-push".into()])
        );
    }
}

#[test]
fn a_push_from_a_sandbox_that_may_only_read_is_refused_in_one_line_before_the_server() {
    require_namespaces();
    let world = World::new();
    world.emulator.seed("agents/7/b");
    let _broker = world.start(AGENT_7);
    let run = world.in_sandbox(
        "agent-7",
        r#"
git clone -q "${REMOTE}agents/7/b.git" b || exit 31
cd b && echo change > c.txt && git add c.txt && git commit -q -m change
if git push -q origin HEAD:main 2> push.txt; then exit 32; fi
cat push.txt
"#,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ours: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("git-credential-codestorage:"))
        .collect();
    assert_eq!(
        ours,
        [
            "git-credential-codestorage: sandbox agent-7 may not push to repository \"agents/7/b\" of acme: its scopes are git:read; add \"git:write\" to [sandbox.agent-7] scopes in the broker's config to let it push"
        ],
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("403") && !run.stdout.contains("Username"),
        "{}",
        run.stdout
    );
    // No token went to the server for the push.
    assert!(
        world
            .claims_for("agents/7/b", Service::ReceivePack)
            .is_empty()
    );
    let audit = world.audit();
    assert!(
        audit.iter().any(|r| r["decision"] == "refused"
            && r["operation"].is_null()
            && r["reason"].as_str().unwrap().contains("may not push")),
        "{audit:#?}"
    );
}

#[test]
fn codestorage_operation_through_the_broker_narrows_a_push_and_never_widens_a_fetch() {
    require_namespaces();
    let world = World::new();
    let seeded = world.emulator.seed("agents/42/hint");
    let _broker = world.start(AGENT_42);
    let run = world.in_sandbox(
        "agent-42",
        r#"
git clone -q "${REMOTE}agents/42/hint.git" hint || exit 31
cd hint && echo change > c.txt && git add c.txt && git commit -q -m change
if CODESTORAGE_OPERATION=read git push -q origin HEAD:main 2> push.txt; then echo "hinted push landed"; else echo "hinted push refused"; fi
CODESTORAGE_OPERATION=write git fetch -q origin || exit 33
git push -q origin HEAD:main || exit 34
"#,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("hinted push refused"), "{}", run.stdout);
    // The hinted push reached the server with a read-only token, and was turned away; the
    // push without a hint came after, with write, and it alone landed.
    let pushes = world.claims_for("agents/42/hint", Service::ReceivePack);
    let read_only = |c: &&support::emulator::Claims| c.scopes == ["git:read"];
    let hinted = pushes.iter().take_while(read_only).count();
    assert!(
        hinted >= 1,
        "the hinted push sent no read token: {pushes:#?}"
    );
    assert!(
        pushes[hinted..]
            .iter()
            .all(|c| c.scopes.contains(&"git:write".to_owned())),
        "{pushes:#?}"
    );
    assert!(pushes.len() > hinted, "{pushes:#?}");
    for fetch in world.claims_for("agents/42/hint", Service::UploadPack) {
        assert_eq!(fetch.scopes, ["git:read"], "{fetch:?}");
    }
    let landed = world.emulator.rev("agents/42/hint", "refs/heads/main");
    assert!(landed.is_some_and(|rev| rev != seeded));
    // The broker's record: four gets (clone, hinted push, hinted fetch, push), only the last
    // for writing.
    let operations: Vec<String> = world
        .audit()
        .iter()
        .filter(|r| r["decision"] == "granted")
        .map(|r| r["operation"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        operations,
        ["read", "read", "read", "write"],
        "{operations:?}"
    );
}

#[test]
fn a_read_named_through_the_broker_narrows_even_with_least_privilege_off_and_a_bad_one_stops_git() {
    let world = World::new();
    world.write_config(&format!(
        "least_privilege = false\n{}",
        world.config_text(AGENT_42)
    ));
    let _broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    let socket = world.socket("agent-42");
    let get = |operation: Option<&str>| {
        let mut env = vec![("CODESTORAGE_BROKER", socket.to_str().unwrap())];
        env.extend(operation.map(|o| ("CODESTORAGE_OPERATION", o)));
        Home::new().get(world.request("agents/42/x"), &env)
    };
    let scopes = |run: &Run| verify(&run.password(), &world.key).claims["scopes"].clone();
    assert_eq!(
        scopes(&get(None)),
        serde_json::json!(["git:read", "git:write"])
    );
    assert_eq!(
        scopes(&get(Some("write"))),
        serde_json::json!(["git:read", "git:write"])
    );
    assert_eq!(scopes(&get(Some("READ"))), serde_json::json!(["git:read"]));
    let bad = get(Some("admin"));
    assert_eq!(bad.stdout, "quit=1\n");
    assert!(
        bad.stderr
            .contains("CODESTORAGE_OPERATION=\"admin\": not an operation; use read"),
        "{}",
        bad.stderr
    );
}

#[test]
fn store_and_erase_reach_the_broker_only_for_the_sandbox_s_hosts() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start(AGENT_42);
    // git itself calls every configured helper with store (approve) and erase (reject).
    let run = world.in_sandbox(
        "agent-42",
        &format!(
            r#"
git config --global credential.helper "{HELPER}"
for verb in approve reject; do
  printf 'protocol=https\nhost=github.com\nusername=someone\npassword=hunter2-secret\n\n' | git credential $verb || exit 31
  printf 'protocol=https\nhost={host}\nusername=t\npassword=not-a-token\n\n' | git credential $verb || exit 32
done
"#,
            host = world.emulator.host
        ),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let audit = world.audit();
    let text = std::fs::read_to_string(world.path("audit.jsonl")).unwrap();
    assert!(
        !text.contains("github.com") && !text.contains("hunter2"),
        "{text}"
    );
    for action in ["store", "erase"] {
        assert!(
            audit
                .iter()
                .any(|r| r["action"] == action && r["host"] == world.emulator.host.as_str()),
            "{action}: {audit:#?}"
        );
    }
    assert!(
        audit.iter().any(|r| r["action"] == "describe"),
        "{audit:#?}"
    );
}

#[test]
fn a_broker_killed_mid_request_gives_one_line_and_no_prompt() {
    require_namespaces();
    let world = World::new();
    world.emulator.seed("agents/42/x");
    // A signer that blocks once `block` exists, until its FIFO is written: the broker is then
    // killed while it waits for a signature.
    let fifo = world.path("etc/release");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (block, signing) = (world.path("etc/block"), world.path("etc/signing"));
    let signer = script(
        &world.path("etc"),
        "slow-sign",
        &format!(
            "if [ -e '{block}' ]; then touch '{signing}'; read x < '{fifo}'; fi\nopenssl dgst -sha256 -sign '{key}' | openssl base64 -A\n",
            block = block.display(),
            signing = signing.display(),
            fifo = fifo.display(),
            key = world.path("etc/acme.pem").display()
        ),
    );
    std::fs::write(world.path("etc/acme.pub.pem"), &world.key.public_pem).unwrap();
    let key = format!(
        "sign_command = [\"{}\"]\npublic_key_file = \"acme.pub.pem\"",
        signer.display()
    );
    world.write_config(&world.config_text_with_key(&key, AGENT_42));
    let mut broker = Broker::start(&world.config_path(), &world.path("audit.jsonl"));
    std::fs::write(&block, "").unwrap();
    let run = std::thread::scope(|scope| {
        let sandbox = scope.spawn(|| {
            world.in_sandbox(
                "agent-42",
                r#"
if git ls-remote "${REMOTE}agents/42/x.git" 2> ls.txt; then exit 31; fi
cat ls.txt
"#,
            )
        });
        let deadline = Instant::now() + PATIENCE;
        while !signing.exists() {
            assert!(Instant::now() < deadline, "the broker never ran its signer");
            std::thread::sleep(Duration::from_millis(10));
        }
        broker.signal(rustix::process::Signal::KILL);
        let run = sandbox.join().unwrap();
        // Let the orphaned signer finish.
        std::fs::write(&fifo, "\n").unwrap();
        run
    });
    assert!(!broker.alive());
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let ours: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("git-credential-codestorage:"))
        .collect();
    assert_eq!(ours.len(), 1, "{}", run.stdout);
    assert!(
        ours[0].contains("stopped before it answered (killed or restarted mid-request)"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("Username"),
        "no prompt: {}",
        run.stdout
    );
}

#[test]
fn inside_a_sandbox_doctor_checks_the_broker_and_token_goes_through_it() {
    require_namespaces();
    let world = World::new();
    let _broker = world.start(CONFINED);
    let run = world.in_sandbox(
        "agent-42",
        &format!(
            r#"
echo "== doctor"; '{HELPER}' doctor; echo "code=$?"
echo "== doctor url"; '{HELPER}' doctor "${{REMOTE}}agents/42/app.git"; echo "code=$?"
echo "== token"; '{HELPER}' token "${{REMOTE}}agents/42/app.git"; echo "code=$?"
echo "== json"; '{HELPER}' token --json "${{REMOTE}}agents/42/app.git"; echo "code=$?"
echo "== outside"; '{HELPER}' token "${{REMOTE}}secret/plans.git" 2>&1; echo "code=$?"
echo "== scopes"; '{HELPER}' token --scopes git:read "${{REMOTE}}agents/42/app.git" 2>&1; echo "code=$?"
echo "== end"
"#
        ),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let section = |name: &str| {
        let header = format!("== {name}");
        run.stdout
            .lines()
            .skip_while(|line| *line != header)
            .skip(1)
            .take_while(|line| !line.starts_with("== "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let doctor = section("doctor");
    assert!(doctor.ends_with("code=0"), "{doctor}\n{}", run.stderr);
    for expected in [
        "ok    inside a sandbox: the token broker at ",
        "(CODESTORAGE_BROKER) holds the key and answers for sandbox agent-42",
        "ok    sandbox agent-42 may get tokens for acme on ",
        "pushes only to refs/heads/agents/42/*, refs/heads/fix-123",
    ] {
        assert!(doctor.contains(expected), "no {expected:?} in\n{doctor}");
    }
    assert!(
        !doctor.contains("no config file") && !doctor.contains("setup --org"),
        "{doctor}"
    );
    let with_url = section("doctor url");
    assert!(
        with_url.contains("the broker grants a token that says: {\"iss\":\"acme\",\"sub\":\"sandbox:agent-42\",\"repo\":\"agents/42/app\"")
            && with_url.contains("[\"*\",[\"no-push\"]]")
            && with_url.ends_with("code=0"),
        "{with_url}"
    );
    assert!(
        !with_url.contains("eyJ"),
        "doctor printed a token: {with_url}"
    );

    let token = section("token");
    let token = token.lines().next().unwrap();
    let claims = verify(token, &world.key).claims;
    assert_eq!(claims["sub"], "sandbox:agent-42");
    assert_eq!(claims["repo"], "agents/42/app");
    let json: serde_json::Value =
        serde_json::from_str(section("json").lines().next().unwrap()).unwrap();
    assert_eq!(
        (&json["org"], &json["repo"]),
        (
            &serde_json::json!("acme"),
            &serde_json::json!("agents/42/app")
        )
    );
    verify(json["token"].as_str().unwrap(), &world.key);

    let outside = section("outside");
    assert!(
        outside.contains("sandbox agent-42 may not get a token for repository \"secret/plans\"")
            && outside.ends_with("code=1"),
        "{outside}"
    );
    let scopes = section("scopes");
    assert!(
        scopes.contains("inside a sandbox the token broker (CODESTORAGE_BROKER) decides")
            && scopes.ends_with("code=2")
            || scopes.ends_with("code=1"),
        "{scopes}"
    );
}

#[test]
fn doctor_and_token_with_a_broker_that_is_down_say_so_and_ask_for_no_key() {
    let world = World::new();
    let home = Home::new();
    let absent = world.path("run/absent.sock");
    let env = [("CODESTORAGE_BROKER", absent.to_str().unwrap())];
    let doctor = home.run(&["doctor"], "", &env);
    assert_eq!(doctor.code, Some(1), "{}\n{}", doctor.stdout, doctor.stderr);
    let fails: Vec<&str> = doctor
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(fails.len(), 1, "{}", doctor.stdout);
    assert!(
        fails[0].contains("cannot reach the token broker at")
            && fails[0].contains("(CODESTORAGE_BROKER)"),
        "{}",
        doctor.stdout
    );
    assert!(
        !doctor.stdout.contains("setup --org") && !doctor.stdout.contains("no config file"),
        "{}",
        doctor.stdout
    );
    let token = home.run(
        &["token", &format!("{}/agents/42/x.git", world.emulator.url)],
        "",
        &env,
    );
    assert_eq!(token.code, Some(1), "{token:?}");
    assert_eq!(token.stdout, "");
    assert_eq!(token.stderr.lines().count(), 1, "{}", token.stderr);
    assert!(
        token.stderr.contains("cannot reach the token broker at"),
        "{}",
        token.stderr
    );
}

#[test]
fn push_branches_registered_through_the_control_api_confine_real_pushes() {
    require_namespaces();
    let world = World::new();
    let seeded = world.emulator.seed("agents/9/app");
    let _broker = world.start_with_control("");
    let bad = r#"{"orgs": ["acme"], "repos": ["agents/9/**"], "push_branches": ["release-*"]}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(bad));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("push_branches entry"), "{answer}");
    let body = r#"{"orgs": ["acme"], "repos": ["agents/9/**"], "push_branches": ["agents/9/*"]}"#;
    let (status, answer) = world.curl("PUT", "/v1/sandboxes/agent-9", Some(body));
    assert_eq!(status, 201, "{answer}");
    let run = world.in_sandbox_on(
        &world.sandbox_dir("agent-9"),
        &[],
        r#"
git clone -q "${REMOTE}agents/9/app.git" app || exit 31
cd app && echo change > c.txt && git add c.txt && git commit -q -m change
git push -q origin HEAD:agents/9/topic || exit 32
if git push -q origin HEAD:main 2> main.txt; then exit 33; fi
cat main.txt
"#,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("! [remote rejected] HEAD -> main (no-push)"),
        "{}",
        run.stdout
    );
    let head = |refname: &str| world.emulator.rev("agents/9/app", refname);
    assert_eq!(head("refs/heads/main"), Some(seeded.clone()));
    let topic = head("refs/heads/agents/9/topic").expect("the allowed branch landed");
    assert_ne!(topic, seeded);
}

#[test]
fn doctor_with_a_config_that_names_the_broker_checks_the_broker_not_keys() {
    let world = World::new();
    let _broker = world.start(AGENT_42);
    let home = Home::new();
    home.write_config(&format!(
        "broker = \"{}\"\n",
        world.socket("agent-42").display()
    ));
    let doctor = home.run(&["doctor"], "", &[]);
    for expected in [
        "ok    config ",
        "parses: it names a token broker",
        &format!("(broker in {})", home.config_path().display()),
        "holds the key and answers for sandbox agent-42",
    ] {
        assert!(
            doctor.stdout.contains(expected),
            "no {expected:?} in\n{}",
            doctor.stdout
        );
    }
    assert!(
        !doctor.stdout.contains("setup --org") && !doctor.stdout.contains("key of"),
        "{}",
        doctor.stdout
    );
}
