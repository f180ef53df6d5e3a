//! A fault-injecting TCP proxy for tests: it forwards every connection made to its 127.0.0.1
//! port to a target, and can be told to cut the network and to heal it.
//!
//! A cut is a partition as both ends see it: no byte gets through, yet no socket is closed or
//! reset, so each end only learns of it by its own silence timeouts. [`Cut::Drop`] loses what
//! is sent during the cut (a later byte may arrive after a hole, so a stream that outlives the
//! cut is damaged, as when TCP gave up retransmitting); [`Cut::Hold`] delivers it after the
//! heal (as TCP retransmission does). Connections opened during a cut are cut too. A cut can
//! take one direction only (e.g. what the target answers).
//!
//! Plain threads and blocking sockets, so it works whatever runtime the test uses; every wait
//! is bounded by a short read timeout that lets the threads notice a heal or the proxy's end.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a cut treats the bytes sent while it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Read and thrown away.
    Drop,
    /// Left unread (the senders' buffers fill), delivered after the heal.
    Hold,
}

/// Which way a cut applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to target and back.
    Both,
    /// Only what the target sends back to the client.
    Replies,
}

const OPEN: u8 = 0;
const DROP: u8 = 1;
const HOLD: u8 = 2;

/// How often a blocked thread looks at the proxy's state.
const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    /// Per direction (0: to the target, 1: to the client): OPEN, DROP or HOLD.
    state: [AtomicU8; 2],
    closing: AtomicBool,
    dropped_bytes: AtomicU64,
    accepted: AtomicU64,
    /// Every socket, to unblock its threads when the proxy ends.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn state(&self, direction: usize) -> u8 {
        self.state[direction].load(Ordering::SeqCst)
    }
}

/// The proxy; it stops (closing every connection) when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 with a port the kernel picks, forwarding to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.closing.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) {
                        let mut sockets = shared.sockets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        sockets.push(client_copy);
                        sockets.push(server_copy);
                    }
                    for (from, to, direction) in [(&client, &server, 0), (&server, &client, 1)] {
                        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                            continue;
                        };
                        let shared = shared.clone();
                        std::thread::spawn(move || pump(from, to, direction, &shared));
                    }
                }
            })
        };
        FaultProxy {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's own address, to give clients instead of the target's.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts the network: from now on nothing gets through in `direction`.
    pub fn cut(&self, how: Cut, direction: Direction) {
        let state = match how {
            Cut::Drop => DROP,
            Cut::Hold => HOLD,
        };
        if direction == Direction::Both {
            self.shared.state[0].store(state, Ordering::SeqCst);
        }
        self.shared.state[1].store(state, Ordering::SeqCst);
    }

    /// Heals the network: bytes flow again both ways.
    pub fn heal(&self) {
        for state in &self.shared.state {
            state.store(OPEN, Ordering::SeqCst);
        }
    }

    /// Bytes thrown away by `Cut::Drop` cuts so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.shared.dropped_bytes.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        let sockets = std::mem::take(
            &mut *self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies `from` to `to` while the direction is open; see the module documentation for cuts.
fn pump(mut from: TcpStream, mut to: TcpStream, direction: usize, shared: &Shared) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            break;
        }
        if shared.state(direction) == HOLD {
            std::thread::sleep(POLL);
            continue;
        }
        let read = match from.read(&mut buffer) {
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => 0,
        };
        if read == 0 {
            // The sender closed. A partition would not carry that either: pass it on once
            // healed.
            while shared.state(direction) != OPEN && !shared.closing.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            let _ = to.shutdown(Shutdown::Write);
            break;
        }
        match shared.state(direction) {
            DROP => {
                shared.dropped_bytes.fetch_add(read as u64, Ordering::SeqCst);
            }
            // Read just before a hold began: deliver it after the heal, in order.
            HOLD => {
                while shared.state(direction) == HOLD && !shared.closing.load(Ordering::SeqCst) {
                    std::thread::sleep(POLL);
                }
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            _ => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Read);
}
