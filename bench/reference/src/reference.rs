//! The reference client: the smallest correct tokio-tungstenite program doing a benchmark
//! workload, with no scenario, metrics or gRPC, so the report can state wsfleet's overhead as
//! a ratio measured in the same run. Prints one JSON line.
//!
//! It is built to be hard to beat, so that a ratio above 1 means wsfleet is fast rather than
//! the reference slow: one thread (a current-thread runtime), a 4 KiB read buffer like the
//! agent's, and every batch of frames written at once: the frames of a round (echo) or of a
//! batch (fire) are fed into tungstenite's write buffer and leave in one write at the flush.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Cli {
    /// WebSocket URL of the echo server, e.g. ws://127.0.0.1:9001/echo
    #[arg(long)]
    url: String,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Open, handshake and close connections as fast as possible.
    ConnectRate {
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Open exactly this many connections in all, instead of running for `duration`:
        /// a fixed count, for counting instructions and system calls per connection.
        #[arg(long, conflicts_with = "duration")]
        connections: Option<u64>,
    },
    /// Hold idle connections; prints when they are all open, then holds.
    Idle {
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// Each connection sends 64-byte text messages and awaits the echoes, `in_flight` at a time.
    Echo {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Play exactly this many rounds on each connection, instead of running for
        /// `duration`: a fixed count, for counting instructions and system calls per message.
        #[arg(long, conflicts_with = "duration")]
        rounds: Option<u64>,
    },
    /// Each connection sends 64-byte text messages without waiting for the echoes, and counts
    /// the echoes as they come (fire-and-count); after `duration` it closes and counts the rest.
    Fire {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Messages fed before each flush (one write each batch).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

/// Frames wait in tungstenite's write buffer until the flush, or until it holds this many
/// bytes: a round of 16 echoes (16 x 70 bytes) or a fire batch of 64 leaves in one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(WRITE_BUFFER_BYTES)
}

async fn open(url: &str, address: &str) -> anyhow::Result<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config())).await?;
    Ok(socket)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let address = cli
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("bad url"))?
        .to_owned();
    let url: Arc<str> = Arc::from(cli.url.as_str());
    let address: Arc<str> = Arc::from(address.as_str());
    match cli.workload {
        Workload::ConnectRate {
            concurrency,
            duration,
            connections,
        } => {
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            // Connections begun so far, against the fixed count when one is given.
            let begun = Arc::new(AtomicU64::new(0));
            let limit = connections.unwrap_or(u64::MAX);
            let started = Instant::now();
            let deadline = deadline_after(started, duration, connections.is_some());
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (url, address, done, failed, begun) = (
                    url.clone(),
                    address.clone(),
                    done.clone(),
                    failed.clone(),
                    begun.clone(),
                );
                tasks.push(tokio::task::spawn_local(async move {
                    while Instant::now() < deadline && begun.fetch_add(1, Ordering::Relaxed) < limit {
                        match open(&url, &address).await {
                            Ok(mut socket) => {
                                let _ = socket.close(None).await;
                                while let Some(Ok(_)) = socket.next().await {}
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let count = done.load(Ordering::Relaxed);
            println!(
                "{}",
                serde_json::json!({"workload": "connect_rate", "connections": count, "failed": failed.load(Ordering::Relaxed), "seconds": seconds, "rate": count as f64 / seconds})
            );
        }
        Workload::Idle { connections, hold } => {
            let mut sockets = Vec::with_capacity(connections);
            for _ in 0..connections {
                sockets.push(open(&url, &address).await?);
            }
            eprintln!("holding {connections} connections");
            println!(
                "{}",
                serde_json::json!({"workload": "idle", "connections": sockets.len()})
            );
            tokio::time::sleep(hold).await;
        }
        Workload::Echo {
            connections,
            in_flight,
            duration,
            rounds,
        } => {
            let echoed = Arc::new(AtomicU64::new(0));
            let payload = Message::text("x".repeat(64));
            let mut sockets = Vec::with_capacity(connections);
            for _ in 0..connections {
                sockets.push(open(&url, &address).await?);
            }
            let started = Instant::now();
            let deadline = deadline_after(started, duration, rounds.is_some());
            let rounds = rounds.unwrap_or(u64::MAX);
            let mut tasks = Vec::new();
            for mut socket in sockets {
                let (echoed, payload) = (echoed.clone(), payload.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let mut played = 0;
                    while Instant::now() < deadline && played < rounds {
                        played += 1;
                        for _ in 0..in_flight {
                            if socket.feed(payload.clone()).await.is_err() {
                                return;
                            }
                        }
                        if socket.flush().await.is_err() {
                            return;
                        }
                        let mut received = 0;
                        while received < in_flight {
                            match socket.next().await {
                                Some(Ok(Message::Text(_))) => received += 1,
                                Some(Ok(_)) => {}
                                _ => return,
                            }
                        }
                        echoed.fetch_add(in_flight as u64, Ordering::Relaxed);
                    }
                    let _ = socket.close(None).await;
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let count = echoed.load(Ordering::Relaxed);
            println!(
                "{}",
                serde_json::json!({"workload": "echo", "in_flight": in_flight, "messages": count, "seconds": seconds, "rate": count as f64 / seconds})
            );
        }
        Workload::Fire {
            connections,
            batch,
            duration,
        } => {
            let sent = Rc::new(Cell::new(0u64));
            let echoed = Rc::new(Cell::new(0u64));
            let payload = Message::text("x".repeat(64));
            let mut sockets = Vec::with_capacity(connections);
            for _ in 0..connections {
                sockets.push(open(&url, &address).await?);
            }
            let started = Instant::now();
            let deadline = started + duration;
            let mut tasks = Vec::new();
            for socket in sockets {
                let (sent, echoed, payload) = (sent.clone(), echoed.clone(), payload.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let counts = fire(socket, payload, batch.max(1), deadline).await;
                    sent.set(sent.get() + counts.sent);
                    echoed.set(echoed.get() + counts.echoed);
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let count = echoed.get();
            println!(
                "{}",
                serde_json::json!({"workload": "fire", "sent": sent.get(), "batch": batch, "messages": count, "seconds": seconds, "rate": count as f64 / seconds})
            );
        }
    }
    Ok(())
}

/// When a timed workload stops: `duration` after `started`, or never when the workload plays a
/// fixed count instead (the clock is still read each round, so a counted run does the same work
/// per round as a timed one).
fn deadline_after(started: Instant, duration: Duration, counted: bool) -> Instant {
    if counted {
        // A year: far beyond any run, and safe from overflow on every platform.
        started + Duration::from_secs(365 * 24 * 3600)
    } else {
        started + duration
    }
}

#[derive(Default)]
struct FireCounts {
    sent: u64,
    echoed: u64,
}

/// What a fire connection is doing besides reading.
enum FirePhase {
    /// Feeding batches and flushing them, until the deadline.
    Sending,
    /// Sending the close frame.
    Closing,
    /// Reading the last echoes until the server's close.
    Draining,
}

/// One fire-and-count connection as one task, with no lock between reader and writer: each
/// poll first reads every frame that is readable (counting the echoes), then, while sending,
/// feeds `batch` messages and flushes them in one write. It yields after each batch so the
/// other connections get their turn, and reads while a write waits for the socket (the server
/// blocks writing echoes to a client that does not read, and then stops reading).
async fn fire(
    mut socket: tokio_tungstenite::WebSocketStream<TcpStream>,
    payload: Message,
    batch: usize,
    deadline: Instant,
) -> FireCounts {
    let mut counts = FireCounts::default();
    let mut phase = FirePhase::Sending;
    let mut unflushed = false;
    std::future::poll_fn(|cx| loop {
        loop {
            match socket.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    if message.is_text() {
                        counts.echoed += 1;
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        match phase {
            FirePhase::Sending => {
                if unflushed {
                    match socket.poll_flush_unpin(cx) {
                        Poll::Ready(Ok(())) => unflushed = false,
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                if Instant::now() >= deadline {
                    phase = FirePhase::Closing;
                    continue;
                }
                for _ in 0..batch {
                    match socket.poll_ready_unpin(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                    if socket.start_send_unpin(payload.clone()).is_err() {
                        return Poll::Ready(());
                    }
                    counts.sent += 1;
                }
                unflushed = true;
                match socket.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => {
                        unflushed = false;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            FirePhase::Closing => match socket.poll_close_unpin(cx) {
                Poll::Ready(Ok(())) => phase = FirePhase::Draining,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            },
            // The reads above end the task at the server's close.
            FirePhase::Draining => return Poll::Pending,
        }
    })
    .await;
    counts
}
