//! The reference client: the smallest correct tokio-tungstenite program doing a benchmark
//! workload, with no scenario, metrics or gRPC, so the report can state wsfleet's overhead as
//! a ratio measured in the same run. It uses the same buffer sizes as the agent (4 KiB read
//! buffer) and a single-threaded runtime, like one agent worker. Prints one JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    },
    /// Each connection sends 64-byte text messages without waiting for the echoes, and counts
    /// the echoes as they come (fire-and-count); after `duration` it closes and counts the rest.
    Fire {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
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
        Workload::ConnectRate { concurrency, duration } => {
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let deadline = started + duration;
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (url, address, done, failed) = (url.clone(), address.clone(), done.clone(), failed.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    while Instant::now() < deadline {
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
        } => {
            let echoed = Arc::new(AtomicU64::new(0));
            let payload = Message::text("x".repeat(64));
            let mut sockets = Vec::with_capacity(connections);
            for _ in 0..connections {
                sockets.push(open(&url, &address).await?);
            }
            let started = Instant::now();
            let deadline = started + duration;
            let mut tasks = Vec::new();
            for mut socket in sockets {
                let (echoed, payload) = (echoed.clone(), payload.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    while Instant::now() < deadline {
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
        Workload::Fire { connections, duration } => {
            let sent = Arc::new(AtomicU64::new(0));
            let echoed = Arc::new(AtomicU64::new(0));
            let payload = Message::text("x".repeat(64));
            let mut sockets = Vec::with_capacity(connections);
            for _ in 0..connections {
                sockets.push(open(&url, &address).await?);
            }
            let started = Instant::now();
            let deadline = started + duration;
            let mut tasks = Vec::new();
            for socket in sockets {
                let (mut write, mut read) = socket.split();
                let (sent, payload) = (sent.clone(), payload.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    while Instant::now() < deadline {
                        if write.send(payload.clone()).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = write.close().await;
                }));
                let echoed = echoed.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    while let Some(Ok(message)) = read.next().await {
                        if message.is_text() {
                            echoed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let count = echoed.load(Ordering::Relaxed);
            println!(
                "{}",
                serde_json::json!({"workload": "fire", "sent": sent.load(Ordering::Relaxed), "messages": count, "seconds": seconds, "rate": count as f64 / seconds})
            );
        }
    }
    Ok(())
}
