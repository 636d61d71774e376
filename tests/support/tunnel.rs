//! An HTTP `CONNECT` proxy on loopback that tunnels every connection to one address, so that
//! git (with `http.proxy`) reaches `https://acme.code.storage/` on the default port while the
//! emulator listens on a port of its own: the URL, and so git's URL-matched config, stay
//! exactly as a user's. It records each `CONNECT` target and stops when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running tunnel.
pub struct Tunnel {
    /// The proxy's URL, for `http.proxy`, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    address: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Tunnel {
    /// Starts a proxy that sends every tunnel to `to`, whatever target the client names.
    pub fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (targets, stop) = (Arc::clone(&targets), Arc::clone(&stop));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let targets = Arc::clone(&targets);
                    std::thread::spawn(move || {
                        let _ = serve(client, to, &targets);
                    });
                }
            })
        };
        Self {
            url: format!("http://{address}"),
            address,
            targets,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Every `CONNECT` target asked for so far, e.g. `acme.code.storage:443`.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one `CONNECT` head from `client`, answers 200, and copies bytes both ways to `to`.
fn serve(client: TcpStream, to: SocketAddr, targets: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut client = client;
    let mut words = first.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    targets.lock().unwrap().push(target.to_owned());
    let server = TcpStream::connect(to)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    // Copying from the reader sends first what the client sent after the head (already
    // buffered), then the rest.
    let mut upstream = server.try_clone()?;
    let mut downstream = client.try_clone()?;
    let mut server_reader = server.try_clone()?;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server_reader, &mut downstream);
    let _ = downstream.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
