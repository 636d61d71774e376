//! From resolved settings to a signed token: load the signer, stamp the lifetime, sign.

use crate::env::Env;
use crate::host::OrgName;
use crate::key::KeyError;
use crate::resolve::Settings;
use crate::secret::Secret;
use crate::signer::{self, SignError, Signer};
use crate::token::{self, Claims, TokenError};

/// A freshly signed token and what it says.
#[derive(Debug)]
pub struct Minted {
    /// The compact JWT.
    pub token: Secret<String>,
    /// Its claims.
    pub claims: Claims,
}

/// Why no token was made.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The organisation's key could not be loaded.
    #[error("organisation \"{org}\": {source}")]
    Key {
        /// The organisation.
        org: OrgName,
        /// Why.
        source: KeyError,
    },
    /// The signer (an agent, a sign_command) gave no usable signature.
    #[error("organisation \"{org}\": {source}")]
    Sign {
        /// The organisation.
        org: OrgName,
        /// Why.
        source: SignError,
    },
    /// The token could not be made (clock, ttl).
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Loads the signer `settings` name and signs a token issued at `now`.
pub fn mint(settings: &Settings, env: &dyn Env, now: i64) -> Result<Minted, MintError> {
    let signer = signer::open(&settings.key, env, settings.load_options).map_err(|source| {
        MintError::Key {
            org: settings.org.clone(),
            source: source.for_org(settings.org.as_str()),
        }
    })?;
    sign(settings, &*signer, now)
}

/// Signs the token `settings` describe with `signer`, issued at `now`.
pub fn sign(settings: &Settings, signer: &dyn Signer, now: i64) -> Result<Minted, MintError> {
    let (iat, exp) = token::lifetime(now, settings.ttl.seconds())?;
    let claims = Claims {
        iss: settings.org.to_string(),
        sub: settings.subject.clone(),
        repo: settings.repo.clone(),
        scopes: settings.scopes.clone(),
        iat,
        exp,
        refs: settings.refs.clone(),
        ops: settings.ops.clone(),
    };
    let token = token::sign(&claims, signer).map_err(|e| match e {
        TokenError::Sign(source) => MintError::Sign {
            org: settings.org.clone(),
            source,
        },
        other => MintError::Token(other),
    })?;
    Ok(Minted { token, claims })
}
