//! Headless Chromium driven over the DevTools protocol: Debian's `chromium` package (`.ci/run`
//! installs it). Without it a test fails under CI and is skipped, with a message, elsewhere.

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The browser's executable, if this machine has one.
pub fn chromium() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|path| path.exists())
}

/// The browser, or `None` (with a message) when a test should be skipped; under CI a missing
/// browser fails the test.
pub fn chromium_or_skip() -> Option<std::path::PathBuf> {
    let browser = chromium();
    if browser.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required under CI: .ci/run installs Debian's chromium"
        );
        eprintln!("skipping: no chromium on this machine (apt-get install chromium)");
    }
    browser
}

/// A headless Chromium with its own profile, killed when dropped.
pub struct Browser {
    child: std::process::Child,
    /// The DevTools HTTP port.
    pub port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `executable` headless with a `width,height` window.
    pub fn launch(executable: &std::path::Path, window: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut child = std::process::Command::new(executable)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
            ])
            .args([
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={window}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium prints its DevTools address on stderr.
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        let browser_url = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium started");
        let port = browser_url
            .split(':')
            .nth(2)
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .expect("a DevTools port");
        Browser {
            child,
            port,
            _profile: profile,
        }
    }

    /// Opens a new tab on `url`; returns its DevTools WebSocket URL.
    pub fn new_tab(&self, url: &str) -> String {
        let (code, target) = super::http("PUT", self.port, &format!("/json/new?{url}"), None, None);
        assert_eq!(code, 200, "{target}");
        let target: serde_json::Value = serde_json::from_str(&target).expect("json");
        // Chromium names itself `localhost`, which may resolve to ::1 first; it listens on 127.0.0.1.
        target["webSocketDebuggerUrl"]
            .as_str()
            .expect("a debugger URL")
            .replace("ws://localhost:", "ws://127.0.0.1:")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page in the browser, driven by DevTools commands; the events it sends meanwhile are kept.
pub struct Page {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    /// Every event (a message without an `id`) received so far, in order.
    pub events: Vec<serde_json::Value>,
}

impl Page {
    pub async fn connect(url: &str) -> Page {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the page's DevTools socket");
        Page {
            socket,
            next_id: 0,
            events: Vec::new(),
        }
    }

    pub async fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("send a DevTools command");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("DevTools answer")
                .expect("the DevTools socket is open")
                .expect("a DevTools message");
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                if value["id"] == id {
                    assert!(value.get("error").is_none(), "{method}: {value}");
                    return value["result"].clone();
                }
                if value.get("method").is_some() {
                    self.events.push(value);
                }
            }
        }
    }

    pub async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self
            .command(
                "Runtime.evaluate",
                serde_json::json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }
}
