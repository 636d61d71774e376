//! Whether a sandbox's policy still holds, checked by a connection under a read lock right up
//! to sending its token: closing the gate takes the write lock, so once a replace, a removal or
//! a lease's end has been answered, no token of the old policy is on its way.

use std::sync::RwLock;

/// Why a gate is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The sandbox was removed (from the config, or through the control API).
    Removed,
    /// The sandbox's policy was replaced; the connection was accepted under the old one.
    Replaced,
    /// The sandbox's lease ended.
    Expired,
}

impl Closed {
    /// The line the sandbox's git is told.
    pub fn reason(self, sandbox: &str) -> String {
        match self {
            Self::Removed => format!(
                "sandbox {sandbox} was removed from the broker's config; it gets no more tokens"
            ),
            Self::Replaced => format!(
                "sandbox {sandbox}'s policy was replaced while this request waited; run the git command again"
            ),
            Self::Expired => format!(
                "sandbox {sandbox}'s lease has ended; it gets no more tokens until it is registered again"
            ),
        }
    }
}

/// A sandbox's policy's state, shared by its connections.
#[derive(Debug)]
pub struct Gate {
    state: RwLock<Result<Option<i64>, Closed>>,
}

impl Gate {
    /// An open gate; with a lease, it closes by itself at `expires_at` (Unix seconds).
    pub fn open(expires_at: Option<i64>) -> Self {
        Self {
            state: RwLock::new(Ok(expires_at)),
        }
    }

    /// Closes the gate, waiting for connections that are sending a token now.
    pub fn close(&self, why: Closed) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.is_ok() {
            *state = Err(why);
        }
    }

    /// Whether the policy holds at `now`.
    pub fn check(&self, now: i64) -> Result<(), Closed> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Self::holds(&state, now)
    }

    /// Runs `send` while the gate cannot close, if the policy holds at `now`.
    pub fn while_open<T>(&self, now: i64, send: impl FnOnce() -> T) -> Result<T, Closed> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Self::holds(&state, now)?;
        Ok(send())
    }

    fn holds(state: &Result<Option<i64>, Closed>, now: i64) -> Result<(), Closed> {
        match state {
            Err(why) => Err(*why),
            Ok(Some(expires_at)) if now >= *expires_at => Err(Closed::Expired),
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_closes_once_and_a_lease_ends_by_itself() {
        let gate = Gate::open(Some(100));
        assert_eq!(gate.check(99), Ok(()));
        assert_eq!(gate.check(100), Err(Closed::Expired));
        assert_eq!(gate.while_open(50, || 7), Ok(7));
        gate.close(Closed::Replaced);
        gate.close(Closed::Removed);
        assert_eq!(gate.check(0), Err(Closed::Replaced));
        assert!(Closed::Expired.reason("a").contains("lease has ended"));
    }
}
