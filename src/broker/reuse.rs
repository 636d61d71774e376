//! Tokens the broker already signed, handed out again: with a KMS every signature is a network
//! call (and AWS KMS allows 300 a second per account), while an agent runs hundreds of git
//! commands a minute. A token is reused for the same sandbox, repository, scopes and policy
//! while at least half its lifetime is left, so git never gets one about to expire. Tokens live
//! in this process's memory only, never on disk; a reload, a registration change or a removal
//! drops a sandbox's entries at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::mint::{MintError, Minted};
use crate::resolve::Settings;
use crate::secret::Secret;
use crate::signer::Signer;
use crate::token::Claims;
use crate::token::Scope;

/// The most tokens kept; past it, tokens past half their lifetime go first, then none is added.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// What makes two requests deserve the same token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The sandbox asking.
    pub sandbox: String,
    /// The `repo` claim.
    pub repo: String,
    /// The `scopes` claim.
    pub scopes: Vec<Scope>,
    /// SHA-256 of everything else the token says or is signed with (organisation, subject,
    /// lifetime, ref policies, key), so a changed policy never meets an old token.
    pub policy: [u8; 32],
}

impl Key {
    /// The key of a token `settings` describe, for `sandbox`.
    pub fn new(sandbox: &str, settings: &Settings) -> Self {
        let policy = serde_json::json!({
            "iss": settings.org.as_str(),
            "sub": settings.subject,
            "ttl": settings.ttl.seconds(),
            "refs": settings.refs,
            "ops": settings.ops,
            "key": settings.key.to_string(),
        });
        let digest = ring::digest::digest(&ring::digest::SHA256, policy.to_string().as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        Self {
            sandbox: sandbox.to_owned(),
            repo: settings.repo.clone(),
            scopes: settings.scopes.clone(),
            policy: fingerprint,
        }
    }
}

/// A token and what it says.
#[derive(Clone)]
pub struct Entry {
    /// The compact JWT.
    pub token: Secret<String>,
    /// Its claims.
    pub claims: Claims,
}

impl Entry {
    /// Whether the token still has at least half its lifetime at `now`.
    pub fn fresh_at(&self, now: i64) -> bool {
        let lifetime = self.claims.exp - self.claims.iat;
        now >= self.claims.iat && 2 * (self.claims.exp - now) >= lifetime
    }
}

/// The tokens kept, shared by every connection.
#[derive(Default)]
pub struct Reuse {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Reuse {
    /// A token for `key` with at least half its lifetime left at `now`.
    pub fn get(&self, key: &Key, now: i64) -> Option<Entry> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|e| e.fresh_at(now)).cloned()
    }

    /// Keeps `entry` for `key`, making room by dropping tokens past half their lifetime.
    pub fn put(&self, key: Key, entry: Entry, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| e.fresh_at(now));
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key, entry);
    }

    /// Drops every token of `sandbox` (removed, re-registered, or its policy changed).
    pub fn drop_sandbox(&self, sandbox: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|key, _| key.sandbox != sandbox);
    }

    /// Drops every token (a reload).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The token `settings` describe at `now`: one kept in `reuse` for the sandbox named there,
/// else a new signature by `signer` (kept for next time). True when it was reused.
pub fn sign(
    reuse: Option<(&Reuse, &str)>,
    settings: &Settings,
    signer: &dyn Signer,
    now: i64,
) -> Result<(Minted, bool), MintError> {
    let Some((reuse, sandbox)) = reuse else {
        return crate::mint::sign(settings, signer, now).map(|minted| (minted, false));
    };
    let key = Key::new(sandbox, settings);
    if let Some(entry) = reuse.get(&key, now) {
        let minted = Minted {
            token: entry.token,
            claims: entry.claims,
        };
        return Ok((minted, true));
    }
    let minted = crate::mint::sign(settings, signer, now)?;
    let entry = Entry {
        token: minted.token.clone(),
        claims: minted.claims.clone(),
    };
    reuse.put(key, entry, now);
    Ok((minted, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sandbox: &str, repo: &str, scopes: &[Scope], policy: u8) -> Key {
        Key {
            sandbox: sandbox.into(),
            repo: repo.into(),
            scopes: scopes.to_vec(),
            policy: [policy; 32],
        }
    }

    fn entry(iat: i64, exp: i64, text: &str) -> Entry {
        Entry {
            token: Secret::new(text.to_owned()),
            claims: Claims {
                iss: "acme".into(),
                sub: "sandbox:a".into(),
                repo: "r".into(),
                scopes: vec![Scope::GitRead],
                iat,
                exp,
                refs: None,
                ops: None,
            },
        }
    }

    #[test]
    fn a_token_is_reused_while_half_its_lifetime_is_left() {
        let reuse = Reuse::default();
        let k = key("a", "r", &[Scope::GitRead], 1);
        reuse.put(k.clone(), entry(1000, 1600, "t1"), 1000);
        for now in [1000, 1200, 1300] {
            assert_eq!(reuse.get(&k, now).unwrap().token.expose(), "t1", "{now}");
        }
        assert!(reuse.get(&k, 1301).is_none(), "less than half is left");
        assert!(reuse.get(&k, 999).is_none(), "a clock that went back");
    }

    #[test]
    fn sandbox_repository_scopes_and_policy_each_tell_tokens_apart() {
        let reuse = Reuse::default();
        let k = key("a", "r", &[Scope::GitRead], 1);
        reuse.put(k.clone(), entry(1000, 1600, "t1"), 1000);
        for other in [
            key("b", "r", &[Scope::GitRead], 1),
            key("a", "s", &[Scope::GitRead], 1),
            key("a", "r", &[Scope::GitRead, Scope::GitWrite], 1),
            key("a", "r", &[Scope::GitRead], 2),
        ] {
            assert!(reuse.get(&other, 1000).is_none(), "{other:?}");
        }
    }

    #[test]
    fn dropping_a_sandbox_drops_only_its_tokens_and_clear_drops_all() {
        let reuse = Reuse::default();
        reuse.put(key("a", "r", &[], 1), entry(1000, 1600, "a1"), 1000);
        reuse.put(key("a", "s", &[], 1), entry(1000, 1600, "a2"), 1000);
        reuse.put(key("b", "r", &[], 1), entry(1000, 1600, "b1"), 1000);
        reuse.drop_sandbox("a");
        assert_eq!(reuse.len(), 1);
        assert!(reuse.get(&key("b", "r", &[], 1), 1000).is_some());
        reuse.clear();
        assert!(reuse.is_empty());
    }

    #[test]
    fn a_full_cache_makes_room_from_stale_tokens_only() {
        let reuse = Reuse::default();
        for n in 0..MAX_ENTRIES {
            reuse.put(key("a", &n.to_string(), &[], 1), entry(0, 100, "old"), 0);
        }
        // At 60 every token is past half its lifetime: all make room.
        reuse.put(key("a", "new", &[], 1), entry(60, 160, "new"), 60);
        assert_eq!(reuse.len(), 1);
        for n in 0..MAX_ENTRIES - 1 {
            reuse.put(key("b", &n.to_string(), &[], 1), entry(60, 160, "x"), 60);
        }
        // Full of fresh tokens: the new one is signed but not kept.
        reuse.put(key("c", "r", &[], 1), entry(60, 160, "c"), 60);
        assert_eq!(reuse.len(), MAX_ENTRIES);
        assert!(reuse.get(&key("c", "r", &[], 1), 60).is_none());
    }
}
