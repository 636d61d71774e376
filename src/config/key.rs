//! Which key an organisation uses: exactly one of `key_file`, `key_env`, `key_command`,
//! `key_agent` (with `agent_socket`) and `sign_command` (with `public_key_file`), each checked
//! for the mistakes people make with it.

use std::path::Path;

use super::{FieldError, RawOrg, expand_path};
use crate::key::{AgentKeyId, KeySource};

/// The organisation's one key source; an error carries the offset of the field at fault (the
/// table's, `at`, when no one field is).
pub(super) fn key_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
    at: usize,
) -> Result<KeySource, (usize, FieldError)> {
    let mut sources = Vec::with_capacity(1);
    for (field, value) in [("key_file", &org.key_file), ("key_env", &org.key_env)] {
        if value
            .as_deref()
            .is_some_and(crate::key::pem::looks_like_pem)
        {
            return Err((
                at,
                FieldError::PemText {
                    org: name.to_owned(),
                    field,
                },
            ));
        }
    }
    if let Some(file) = &org.key_file {
        sources.push(KeySource::File(expand_path(file, base)));
    }
    if let Some(var) = &org.key_env {
        if var.is_empty() {
            return Err((
                at,
                FieldError::KeyEnvEmpty {
                    org: name.to_owned(),
                },
            ));
        }
        sources.push(KeySource::Env(var.clone()));
    }
    if let Some(argv) = &org.key_command {
        if argv.first().is_none_or(String::is_empty) {
            return Err((
                at,
                FieldError::KeyCommandEmpty {
                    org: name.to_owned(),
                },
            ));
        }
        sources.push(KeySource::Command(argv.clone()));
    }
    if let Some(agent) = agent_source(org, name, base)? {
        sources.push(agent);
    }
    if let Some(signer) = sign_command_source(org, name, base)? {
        sources.push(signer);
    }
    match sources.len() {
        1 => Ok(sources.remove(0)),
        0 => Err((
            at,
            FieldError::NoKey {
                org: name.to_owned(),
            },
        )),
        _ => Err((
            at,
            FieldError::SeveralKeys {
                org: name.to_owned(),
            },
        )),
    }
}

/// `key_agent` (a fingerprint, or a public key file relative to the config) with its optional
/// `agent_socket`.
fn agent_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
) -> Result<Option<KeySource>, (usize, FieldError)> {
    let owner = || name.to_owned();
    let socket = match &org.agent_socket {
        None => None,
        Some(socket) if org.key_agent.is_none() => {
            return Err((
                socket.span().start,
                FieldError::SocketWithoutAgent { org: owner() },
            ));
        }
        Some(socket) if socket.get_ref().trim().is_empty() => {
            return Err((
                socket.span().start,
                FieldError::SocketEmpty { org: owner() },
            ));
        }
        Some(socket) => Some(expand_path(socket.get_ref(), base)),
    };
    let Some(agent) = &org.key_agent else {
        return Ok(None);
    };
    let at = agent.span().start;
    let value = agent.get_ref().trim();
    if value.is_empty() {
        return Err((at, FieldError::AgentEmpty { org: owner() }));
    }
    if crate::key::pem::looks_like_pem(value) {
        return Err((at, FieldError::AgentPem { org: owner() }));
    }
    let key = match value.split_once(':') {
        Some((prefix, _)) if prefix.eq_ignore_ascii_case("SHA256") => {
            let fingerprint = crate::sshagent::Fingerprint::parse(value).map_err(|reason| {
                (
                    at,
                    FieldError::AgentFingerprint {
                        org: owner(),
                        reason,
                    },
                )
            })?;
            AgentKeyId::Fingerprint(fingerprint)
        }
        Some((prefix, _)) if prefix.eq_ignore_ascii_case("MD5") => {
            return Err((at, FieldError::AgentMd5 { org: owner() }));
        }
        _ => AgentKeyId::PublicKeyFile(expand_path(value, base)),
    };
    Ok(Some(KeySource::agent(key, socket)))
}

/// `sign_command` with its required `public_key_file` (relative to the config).
fn sign_command_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
) -> Result<Option<KeySource>, (usize, FieldError)> {
    let owner = || name.to_owned();
    let Some(argv) = &org.sign_command else {
        if let Some(persistent) = &org.sign_persistent {
            return Err((
                persistent.span().start,
                FieldError::PersistentWithoutSignCommand { org: owner() },
            ));
        }
        return match &org.public_key_file {
            Some(file) => Err((
                file.span().start,
                FieldError::PublicKeyWithoutSignCommand {
                    org: owner(),
                    file: file.get_ref().clone(),
                },
            )),
            None => Ok(None),
        };
    };
    let at = argv.span().start;
    if argv.get_ref().first().is_none_or(String::is_empty) {
        return Err((at, FieldError::SignCommandEmpty { org: owner() }));
    }
    let public_key_file = match &org.public_key_file {
        Some(file) if !file.get_ref().trim().is_empty() => expand_path(file.get_ref(), base),
        Some(file) => {
            return Err((
                file.span().start,
                FieldError::PublicKeyFileEmpty { org: owner() },
            ));
        }
        None => {
            return Err((at, FieldError::PublicKeyFileMissing { org: owner() }));
        }
    };
    Ok(Some(KeySource::SignCommand(Box::new(
        crate::key::SignCommandSource {
            argv: argv.get_ref().clone(),
            public_key_file,
            persistent: org.sign_persistent.as_ref().is_some_and(|p| *p.get_ref()),
        },
    ))))
}
