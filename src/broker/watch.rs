//! What the accept loop waits on: the signal pipes, the control socket and every sandbox's
//! socket, each known by a token. On Linux an `epoll` set kept across turns of the loop, so a
//! turn costs what is ready, not what is served: rebuilding and scanning a `poll` set of
//! 10,000 sockets each turn was most of the broker's time at that scale (see
//! docs/performance.md). Elsewhere `poll`, over the descriptors the loop lists each turn.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::event::Timespec;

/// The descriptors the loop waits on.
pub(super) struct Watch {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    epoll: std::os::fd::OwnedFd,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Watch {
    /// An empty set.
    pub(super) fn new() -> io::Result<Self> {
        use rustix::event::epoll;
        Ok(Self {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` for reading, reported as `token`, until it is closed.
    pub(super) fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        use rustix::event::epoll;
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::add(&self.epoll, fd, data, epoll::EventFlags::IN)?)
    }

    /// Waits up to `timeout` (none: for ever) and returns the tokens ready. `_all` is what the
    /// `poll` fallback waits on; here the kernel keeps the set, and closed descriptors leave it
    /// by themselves.
    pub(super) fn wait<'a>(
        &self,
        _all: impl Iterator<Item = (BorrowedFd<'a>, u64)>,
        timeout: Option<&Timespec>,
    ) -> io::Result<Vec<u64>> {
        use rustix::event::epoll;
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        loop {
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout,
            ) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(events.iter().map(|e| e.data.u64()).collect())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Watch {
    /// An empty set.
    pub(super) fn new() -> io::Result<Self> {
        Ok(Self {})
    }

    /// Nothing to keep: `wait` is given every descriptor.
    pub(super) fn add(&self, _fd: impl AsFd, _token: u64) -> io::Result<()> {
        Ok(())
    }

    /// Polls every descriptor of `all` up to `timeout` and returns the tokens ready.
    pub(super) fn wait<'a>(
        &self,
        all: impl Iterator<Item = (BorrowedFd<'a>, u64)>,
        timeout: Option<&Timespec>,
    ) -> io::Result<Vec<u64>> {
        use rustix::event::{PollFd, PollFlags};
        let (fds, tokens): (Vec<BorrowedFd<'a>>, Vec<u64>) = all.unzip();
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        loop {
            match rustix::event::poll(&mut polled, timeout) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(polled
            .iter()
            .zip(tokens)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, token)| token)
            .collect())
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_the_token_of_what_is_readable_and_forgets_what_is_closed() {
        let watch = Watch::new().unwrap();
        let (a, mut a_writer) = UnixStream::pair().unwrap();
        let (b, _b_writer) = UnixStream::pair().unwrap();
        watch.add(&a, 7).unwrap();
        watch.add(&b, 9).unwrap();
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert!(
            watch
                .wait(std::iter::empty(), Some(&now))
                .unwrap()
                .is_empty()
        );
        a_writer.write_all(b"x").unwrap();
        assert_eq!(watch.wait(std::iter::empty(), Some(&now)).unwrap(), [7]);
        drop(a);
        assert!(
            watch
                .wait(std::iter::empty(), Some(&now))
                .unwrap()
                .is_empty()
        );
    }
}
