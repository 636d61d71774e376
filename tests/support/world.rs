//! One emulator and one git user wired together, as a user configures them once: the helper's
//! config names the organisation, its key and the emulator's host, and git routes that host to
//! the helper. Tests read back what the server saw with [`World::since`].

use std::path::Path;

use super::emulator::{Emulator, Record};
use super::git::User;
use super::jwt::TestKey;

/// An emulator knowing `acme`'s public key, and a user whose helper signs with `acme`'s key.
pub struct World {
    /// The user, with git, a home and the helper configured.
    pub user: User,
    /// The server.
    pub emulator: Emulator,
}

impl World {
    /// A world for `git` whose helper signs with `key`; `config_extra` is appended to the
    /// helper's config (after `[org.acme]`).
    pub fn new(git: &Path, key: &TestKey, config_extra: &str) -> Self {
        Self::signing_with(git, key, key, config_extra)
    }

    /// [`World::new`] where the server knows `registered` and the helper signs with `key`,
    /// which may differ, to play an unregistered key.
    pub fn signing_with(
        git: &Path,
        registered: &TestKey,
        key: &TestKey,
        config_extra: &str,
    ) -> Self {
        let emulator = Emulator::start(&[("acme", &registered.public_pem)]);
        let user = User::new(git).trust(&emulator);
        user.home.write_key("acme.pem", &key.pem);
        user.home.write_config(&format!(
            "[org.acme]\nkey_file = \"acme.pem\"\nhosts = [\"{}\"]\n{config_extra}",
            emulator.host
        ));
        user.use_helper_for(&emulator.url);
        Self { user, emulator }
    }

    /// The same world, with `name=value` in the environment of every git the user runs.
    pub fn env(self, name: &str, value: &str) -> Self {
        Self {
            user: self.user.env(name, value),
            emulator: self.emulator,
        }
    }

    /// How many requests the server has recorded so far: a mark for [`World::since`].
    pub fn mark(&self) -> usize {
        self.emulator.records().len()
    }

    /// The requests recorded after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Record> {
        self.emulator.records().split_off(mark)
    }

    /// Pushes a new repository `repo` with one commit from a fresh work tree `~/name`, whose
    /// `origin` it becomes; returns the work tree.
    pub fn publish(&self, repo: &str, name: &str) -> std::path::PathBuf {
        let work = self.user.init(name);
        self.user
            .commit(&work, "README", format!("{repo}\n").as_bytes());
        self.user.git_ok(
            &work,
            &["remote", "add", "origin", &self.emulator.repo_url(repo)],
        );
        self.user
            .git_ok(&work, &["push", "-q", "--set-upstream", "origin", "main"]);
        work
    }
}

/// The scopes of every token among `records`, in order (requests without one are left out).
pub fn scopes_seen(records: &[Record]) -> Vec<Vec<String>> {
    records
        .iter()
        .filter_map(|record| record.claims.as_ref())
        .map(|claims| claims.scopes.clone())
        .collect()
}
