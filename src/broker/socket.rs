//! The sockets the broker makes: a directory only its owner may write, a path that is free or
//! left by a dead broker, the sandbox's mode and group.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use super::error::BrokerError;
use super::load::Loaded;
use super::policy::{Group, Sandbox};

/// Checks what the broker would need to serve `loaded`: every socket's directories and path,
/// and every group. Nothing is created; a socket another process serves (the broker running
/// now, whose config this may be) passes.
pub fn check_sockets(loaded: &Loaded) -> Result<(), BrokerError> {
    for sandbox in &loaded.config.sandboxes {
        check(sandbox, &[], true)?;
    }
    if let Some(dir) = &loaded.config.broker_settings.sandbox_dir {
        check_dir(dir).map_err(|problem| BrokerError::SandboxDir {
            dir: dir.clone(),
            problem,
        })?;
    }
    Ok(())
}

/// The group ID `group` names.
pub fn group_id(group: &Group) -> Option<u32> {
    match group {
        Group::Id(id) => Some(*id),
        Group::Name(name) => std::fs::read_to_string("/etc/group").ok().and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                (fields.next() == Some(name.as_str()))
                    .then(|| fields.nth(1)?.parse().ok())
                    .flatten()
            })
        }),
    }
}

fn sandbox_group(sandbox: &Sandbox, group: &Group) -> Result<u32, BrokerError> {
    group_id(group).ok_or_else(|| BrokerError::Group {
        sandbox: sandbox.name.clone(),
        group: group.to_string(),
    })
}

/// What is wrong with `dir` as a socket's directory: it and every directory above it must
/// belong to root or the broker's user, and no other user may write them; who can write one
/// can swap what is below it and hand git a token of their choosing. A sticky directory
/// (`/tmp`) is the exception: there others may not rename what is not theirs.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "it does not exist; create it for the broker's user only: install -d -m 0755 {} (under systemd: RuntimeDirectory=)",
                dir.display()
            )
        } else {
            e.to_string()
        }
    })?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    let me = rustix::process::geteuid().as_raw();
    let absolute = std::path::absolute(dir).map_err(|e| e.to_string())?;
    for (depth, ancestor) in absolute.ancestors().enumerate() {
        let meta = std::fs::metadata(ancestor).map_err(|e| e.to_string())?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.uid() != me && meta.uid() != 0 {
            let uid = meta.uid();
            return Err(if depth == 0 {
                format!(
                    "it belongs to user {uid}, not to the broker's user ({me}) or root; use a directory of the broker's own"
                )
            } else {
                format!(
                    "its parent {} belongs to user {uid}, not to the broker's user ({me}) or root; use a directory whose parents are root's",
                    ancestor.display()
                )
            });
        }
        let sticky = mode & 0o1000 != 0 && depth > 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(if depth == 0 {
                format!(
                    "group or others may write it (mode {mode:04o}), so they could replace the socket; use a directory of the broker's own: install -d -m 0755 /run/codestorage"
                )
            } else {
                format!(
                    "group or others may write its parent {} (mode {mode:04o}), so they could replace the socket's directory; use a directory whose parents only root writes, such as /run/codestorage",
                    ancestor.display()
                )
            });
        }
    }
    Ok(())
}

/// What is wrong with `path` as a new socket: too long to bind, taken by a file, or served by
/// another process (unless `live_ok`, or it is one of `ours`).
pub fn check_path(path: &Path, ours: &[&Path], live_ok: bool) -> Result<(), String> {
    if let Err(e) = rustix::net::SocketAddrUnix::new(path) {
        return Err(format!(
            "it cannot be a socket ({e}): a Unix socket's path is at most 107 bytes and this is {}; choose a shorter path",
            path.as_os_str().len()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(_) if ours.contains(&path) => Ok(()),
        Ok(m) if !m.file_type().is_socket() => {
            Err("it exists and is not a socket; remove it or choose another path".into())
        }
        Ok(_) if !live_ok && UnixStream::connect(path).is_ok() => Err(
            "another process is serving it (another broker?); stop it or choose another path"
                .into(),
        ),
        // A socket nobody listens on: left by a broker that was killed.
        Ok(_) => Ok(()),
    }
}

/// Checks that `sandbox`'s socket can be made safely, in a directory [`check_dir`] accepts, at
/// a path that is free, a stale socket, or one of `ours` (served now).
pub fn precheck(sandbox: &Sandbox, ours: &[&Path]) -> Result<(), BrokerError> {
    check(sandbox, ours, false)
}

fn check(sandbox: &Sandbox, ours: &[&Path], live_ok: bool) -> Result<(), BrokerError> {
    let dir = sandbox
        .socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check_dir(dir).map_err(|problem| BrokerError::SocketDir {
        sandbox: sandbox.name.clone(),
        dir: dir.to_owned(),
        problem,
    })?;
    if let Some(group) = &sandbox.group {
        sandbox_group(sandbox, group)?;
    }
    check_path(&sandbox.socket, ours, live_ok).map_err(|problem| BrokerError::SocketPath {
        sandbox: sandbox.name.clone(),
        path: sandbox.socket.clone(),
        problem,
    })
}

/// Makes `sandbox`'s socket: checked, bound, given its mode and group, non-blocking.
pub fn bind(sandbox: &Sandbox) -> Result<UnixListener, BrokerError> {
    precheck(sandbox, &[])?;
    let failed = |source: io::Error| BrokerError::Bind {
        sandbox: sandbox.name.clone(),
        path: sandbox.socket.clone(),
        source,
    };
    match std::fs::remove_file(&sandbox.socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&sandbox.socket).map_err(failed)?;
    let finish = || -> io::Result<()> {
        set_owner_and_mode(sandbox)?;
        listener.set_nonblocking(true)
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(&sandbox.socket);
        return Err(failed(e));
    }
    Ok(listener)
}

/// Gives `sandbox`'s socket its group and mode.
pub fn set_owner_and_mode(sandbox: &Sandbox) -> io::Result<()> {
    if let Some(group) = &sandbox.group {
        let gid = sandbox_group(sandbox, group).map_err(|e| io::Error::other(e.to_string()))?;
        rustix::fs::chown(&sandbox.socket, None, Some(rustix::fs::Gid::from_raw(gid)))?;
    }
    std::fs::set_permissions(
        &sandbox.socket,
        std::fs::Permissions::from_mode(sandbox.mode),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::load::testing::fixture;

    #[test]
    fn sockets_refuse_unsafe_directories_and_foreign_files() {
        let f = fixture("");
        let mut sandbox = f.loaded.config.sandboxes[0].clone();
        let open = f.dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        sandbox.socket = open.join("s.sock");
        let e = bind(&sandbox).unwrap_err().to_string();
        assert!(
            e.contains("group or others may write it (mode 1777)"),
            "{e}"
        );
        sandbox.socket = f.dir.path().join("missing/s.sock");
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        sandbox.socket = f.dir.path().join("config.toml");
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );

        sandbox.socket = f.dir.path().join("s.sock");
        sandbox.mode = 0o660;
        sandbox.group = Some(Group::Id(0));
        let listener = bind(&sandbox).unwrap();
        let meta = std::fs::metadata(&sandbox.socket).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 0);
        let e = bind(&sandbox).unwrap_err().to_string();
        assert!(e.contains("another process is serving it"), "{e}");
        drop(listener);
        // Left behind by a broker that died: taken over.
        bind(&sandbox).unwrap();
        sandbox.group = Some(Group::Name("no-such-group-here".into()));
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("not in /etc/group")
        );
    }
}
