//! Limits that keep one client from holding the server: a cap on connections served at once,
//! and a deadline for a request's head (TLS handshake included) that a client sending one byte
//! at a time cannot stretch.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A counting semaphore for connections.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One connection's place among [`Slots`]; given back when dropped, even by a panicking thread.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    /// Room for `max` connections at once (at least one).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Waits until fewer than `max` connections are being served, and takes a place.
    pub fn acquire(self: &Arc<Self>) -> Slot {
        // A poisoned count is still a count: the guard that poisoned it gave its place back.
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= self.max {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        Slot(Arc::clone(self))
    }

    /// How many places are taken.
    #[cfg(test)]
    fn busy(&self) -> usize {
        *self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// A TCP stream whose reads fail once a deadline has passed, however the bytes trickle in;
/// without a deadline, a read may wait `idle` at most (with one, the deadline alone counts). The deadline is shared, so that the
/// server can lift it once the head is in, from outside the TLS layer that owns the stream.
#[derive(Debug)]
pub struct Deadline {
    tcp: TcpStream,
    until: Rc<Cell<Option<Instant>>>,
    idle: Duration,
    /// The read timeout the socket has now, to skip needless system calls.
    current: Option<Duration>,
}

impl Deadline {
    /// Wraps `tcp`; reads fail after `until`, while it is set.
    pub fn new(tcp: TcpStream, until: Rc<Cell<Option<Instant>>>, idle: Duration) -> Self {
        Self {
            tcp,
            until,
            idle,
            current: None,
        }
    }
}

/// Whether `error` is a read that ran out of time (a socket timeout reports `WouldBlock` on
/// Unix and `TimedOut` elsewhere).
pub fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.until.get() {
            None => self.idle,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head deadline passed",
                    ));
                }
                left
            }
        };
        if self.current != Some(timeout) {
            self.tcp.set_read_timeout(Some(timeout))?;
            self.current = Some(timeout);
        }
        self.tcp.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn slots_cap_holders_and_free_on_drop() {
        let slots = Slots::new(2);
        let first = slots.acquire();
        let second = slots.acquire();
        assert_eq!(slots.busy(), 2);
        let (sender, receiver) = mpsc::channel();
        let waiting = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || {
                let third = slots.acquire();
                sender.send(()).unwrap();
                drop(third);
            })
        };
        // The third holder cannot get in while two hold their places...
        assert!(receiver.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(slots.busy(), 2);
        // ...and gets in as soon as one leaves.
        drop(first);
        receiver.recv().unwrap();
        waiting.join().unwrap();
        drop(second);
        assert_eq!(slots.busy(), 0);
        assert_eq!(Slots::new(0).max, 1);
    }

    #[test]
    fn a_panicking_holder_gives_its_slot_back() {
        let slots = Slots::new(1);
        let holder = Arc::clone(&slots);
        let result = std::thread::spawn(move || {
            let _slot = holder.acquire();
            panic!("connection handler failed");
        })
        .join();
        assert!(result.is_err());
        drop(slots.acquire());
        assert_eq!(slots.busy(), 0);
    }

    #[test]
    fn reads_fail_at_the_deadline_however_the_bytes_trickle_and_not_after_it_is_lifted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let until = Rc::new(Cell::new(Some(Instant::now() + Duration::from_millis(300))));
        let mut stream = Deadline::new(server, Rc::clone(&until), Duration::from_secs(30));
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let error = loop {
            // Each byte arrives well within the idle limit; only the deadline can stop this.
            client.write_all(b"x").unwrap();
            match stream.read(&mut byte) {
                Ok(n) => assert_eq!(n, 1),
                Err(e) => break e,
            }
        };
        assert!(timed_out(&error), "{error:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(30));
        // Lifted, the stream reads again: first the byte that was waiting when time ran out.
        until.set(None);
        client.write_all(b"y").unwrap();
        let mut rest = [0u8; 2];
        stream.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"xy");
    }
}
