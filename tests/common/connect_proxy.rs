//! A minimal HTTP CONNECT proxy for the tests of `proxy:` (connect and http steps): it checks
//! Basic credentials, counts the tunnels it opens, then relays bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A minimal HTTP CONNECT proxy for the tests: checks Basic credentials, then relays bytes.
pub async fn connect_proxy(listener: tokio::net::TcpListener, expected_auth: String, tunnels: Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let expected_auth = expected_auth.clone();
        let tunnels = tunnels.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let authorized = head
                .lines()
                .any(|line| line.eq_ignore_ascii_case(&format!("proxy-authorization: basic {expected_auth}")));
            if !head.starts_with("CONNECT ") || !authorized {
                let _ = client
                    .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
            let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            tunnels.fetch_add(1, Ordering::SeqCst);
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
