//! Third-party brokers for the protocol tests, each started on 127.0.0.1 in a folder of its own
//! and stopped (with everything it started) when dropped:
//! - mosquitto (Debian): MQTT over WebSocket;
//! - RabbitMQ (Debian) with `rabbitmq_web_stomp` and `rabbitmq_web_mqtt`: STOMP and MQTT over
//!   WebSocket, every listener pinned to loopback;
//! - strawberry-graphql under uvicorn (PyPI, `tests/data/graphql_server.py`): GraphQL over
//!   WebSocket, both subprotocols, with its own counts.
//!
//! `.ci/run` installs the Debian packages; without them a test fails under CI (`CI` set) and is
//! skipped, with a message, elsewhere. The Python packages come from `python.rs`. Mosquitto
//! and RabbitMQ cannot report a port they picked, so they get ports that were free a moment
//! before (`free_ports`).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Whether `program` (from Debian's `package`) is here: under CI it must be.
fn installed(program: &str, package: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is required under CI: .ci/run installs Debian's {package}"
    );
    eprintln!("skipping: no {program} on this machine (apt-get install {package})");
    false
}

/// `count` distinct ports free on 127.0.0.1 now (all bound at once, then released).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

/// Waits until every port in `ports` accepts a TCP connection, or panics after `limit` with
/// `log`'s contents.
fn wait_listening(name: &str, ports: &[u16], limit: Duration, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + limit;
    let mut waiting: Vec<u16> = ports.to_vec();
    while !waiting.is_empty() {
        waiting.retain(|port| TcpStream::connect(("127.0.0.1", *port)).is_err());
        if waiting.is_empty() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited ({status}) before it listened on {waiting:?}:\n{}",
                read_log(log)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{name} did not listen on {waiting:?} within {limit:?}:\n{}",
                read_log(log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut start = text.len().saturating_sub(4000);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    text[start..].to_string()
}

/// Sends `signal` to the process group `group` (started with `process_group(0)`).
fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{group}"))
        .stderr(Stdio::null())
        .status();
}

/// Stops `child`'s process group: TERM, then KILL if it is still there after `grace`.
fn stop_group(child: &mut Child, grace: Duration) {
    signal_group(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_group(child.id(), "KILL");
    let _ = child.wait();
}

/// Mosquitto with a plain MQTT listener and a WebSocket one (any path; subprotocol `mqtt`).
pub struct Mosquitto {
    child: Child,
    /// The MQTT-over-WebSocket port.
    pub ws_port: u16,
    /// The plain MQTT port (mosquitto needs one; tests may use it to watch `$SYS` counts).
    pub tcp_port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    /// Starts one, or `None` (the test is skipped) where mosquitto is not installed.
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with(None)
    }

    /// Starts one that takes only `user` with `password` (a password file made with
    /// `mosquitto_passwd`) and refuses anonymous clients.
    pub fn start_with_login(user: &str, password: &str) -> Option<Mosquitto> {
        Mosquitto::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Option<Mosquitto> {
        if !installed("/usr/sbin/mosquitto", "mosquitto") {
            return None;
        }
        let dir = TempDir::new().expect("temporary folder");
        let ports = free_ports(2);
        let (tcp_port, ws_port) = (ports[0], ports[1]);
        let mut access = String::from("allow_anonymous true\n");
        if let Some((user, password)) = login {
            let file = dir.path().join("passwords");
            let made = Command::new("/usr/bin/mosquitto_passwd")
                .arg("-c")
                .arg("-b")
                .arg(&file)
                .args([user, password])
                .output()
                .expect("mosquitto_passwd (Debian's package `mosquitto`)");
            assert!(
                made.status.success(),
                "mosquitto_passwd: {}",
                String::from_utf8_lossy(&made.stderr)
            );
            access = format!("allow_anonymous false\npassword_file {}\n", file.display());
        }
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "persistence false\n\
                 sys_interval 1\n\
                 {access}\
                 listener {tcp_port} 127.0.0.1\n\
                 listener {ws_port} 127.0.0.1\n\
                 socket_domain ipv4\n\
                 protocol websockets\n"
            ),
        )
        .expect("write mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let mut child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("mosquitto is needed (Debian's package `mosquitto`; .ci/run installs it)");
        wait_listening(
            "mosquitto",
            &[tcp_port, ws_port],
            Duration::from_secs(20),
            &mut child,
            &log,
        );
        Some(Mosquitto {
            child,
            ws_port,
            tcp_port,
            _dir: dir,
        })
    }

    /// The MQTT-over-WebSocket address.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/mqtt", self.ws_port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(5));
    }
}

/// RabbitMQ with STOMP and MQTT over WebSocket, its own node folder, epmd on a port of its own.
/// User `guest`/`guest` may connect from loopback.
pub struct RabbitMq {
    child: Child,
    dir: TempDir,
    epmd_port: u16,
    /// STOMP over WebSocket: `ws://127.0.0.1:PORT/ws`, subprotocols `v12.stomp`, `v11.stomp`.
    pub web_stomp_port: u16,
    /// MQTT over WebSocket: `ws://127.0.0.1:PORT/ws`, subprotocol `mqtt`.
    pub web_mqtt_port: u16,
    /// The management plugin's HTTP API (`/api/overview`, `/api/exchanges/...`): the broker's
    /// own message statistics, refreshed every 500 ms.
    pub management_port: u16,
}

impl RabbitMq {
    /// Starts one, or `None` (the test is skipped) where RabbitMQ is not installed.
    pub fn start() -> Option<RabbitMq> {
        if !installed("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server") {
            return None;
        }
        let dir = TempDir::new().expect("temporary folder");
        let ports = free_ports(8);
        let [amqp, stomp, mqtt, web_stomp_port, web_mqtt_port, distribution, epmd_port, management_port] =
            ports[..].try_into().expect("eight ports");
        let base = dir.path();
        std::fs::write(
            base.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp}\n\
                 stomp.listeners.tcp.default = 127.0.0.1:{stomp}\n\
                 mqtt.listeners.tcp.default = 127.0.0.1:{mqtt}\n\
                 web_stomp.tcp.ip = 127.0.0.1\n\
                 web_stomp.tcp.port = {web_stomp_port}\n\
                 web_mqtt.tcp.ip = 127.0.0.1\n\
                 web_mqtt.tcp.port = {web_mqtt_port}\n\
                 distribution.listener.interface = 127.0.0.1\n\
                 distribution.listener.port_range.min = {distribution}\n\
                 distribution.listener.port_range.max = {distribution}\n\
                 management.tcp.ip = 127.0.0.1\n\
                 management.tcp.port = {management_port}\n\
                 collect_statistics_interval = 500\n"
            ),
        )
        .expect("write rabbitmq.conf");
        let enabled = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-plugins")
            .args([
                "enable",
                "--offline",
                "rabbitmq_web_stomp",
                "rabbitmq_web_mqtt",
                "rabbitmq_management",
            ])
            .envs(rabbit_env(base, epmd_port))
            .output()
            .expect("RabbitMQ is needed (Debian's package `rabbitmq-server`; .ci/run installs it)");
        assert!(
            enabled.status.success(),
            "rabbitmq-plugins enable: {}",
            String::from_utf8_lossy(&enabled.stderr)
        );
        let log = base.join("server.log");
        let mut child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .envs(rabbit_env(base, epmd_port))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server");
        wait_listening(
            "rabbitmq",
            &[web_stomp_port, web_mqtt_port, management_port],
            Duration::from_secs(90),
            &mut child,
            &log,
        );
        Some(RabbitMq {
            child,
            dir,
            epmd_port,
            web_stomp_port,
            web_mqtt_port,
            management_port,
        })
    }

    pub fn stomp_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.web_stomp_port)
    }

    pub fn mqtt_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.web_mqtt_port)
    }

    /// GETs `path` of the management API (as `guest`), as JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.management_port)).expect("connect to the management API");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        // `guest:guest`, which RabbitMQ accepts from loopback only.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write the request");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}\n{body}");
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            super::dechunk(body)
        } else {
            body.to_owned()
        };
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
    }

    /// Runs `rabbitmqctl ARGS` against this node (e.g. `list_queues name messages`): its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(args)
            .envs(rabbit_env(self.dir.path(), self.epmd_port))
            .output()
            .expect("run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The environment that keeps a RabbitMQ node in `base` and its epmd on `epmd_port`, on loopback.
fn rabbit_env(base: &Path, epmd_port: u16) -> Vec<(&'static str, String)> {
    let path = |name: &str| base.join(name).display().to_string();
    vec![
        ("HOME", base.display().to_string()),
        ("RABBITMQ_NODENAME", "rabbit@localhost".to_string()),
        ("RABBITMQ_CONFIG_FILE", path("rabbitmq")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
        ("RABBITMQ_MNESIA_BASE", path("mnesia")),
        ("RABBITMQ_LOG_BASE", path("log")),
        ("RABBITMQ_PID_FILE", path("rabbitmq.pid")),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".to_string()),
        ("ERL_EPMD_PORT", epmd_port.to_string()),
    ]
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(15));
        // epmd daemonizes out of the node's process group.
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `tests/data/graphql_server.py`: strawberry-graphql under uvicorn at `/graphql`.
pub struct GraphQl {
    child: Child,
    pub port: u16,
}

impl GraphQl {
    pub fn start() -> GraphQl {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/graphql_server.py");
        let mut child = Command::new(super::python::python())
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start the GraphQL server");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("port ") {
                    let _ = sender.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = receiver
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("the GraphQL server prints its port within 30 s");
        GraphQl { child, port }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/graphql", self.port)
    }

    /// The server's own counts (`queries`, `mutations`, `subscriptions`, `events`, `ended`,
    /// `errors`, `connections`, `refused`).
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = super::http(
            "POST",
            self.port,
            "/graphql",
            None,
            Some(
                r#"{"query":"{ stats { queries mutations subscriptions events ended errors connections refused } }"}"#,
            ),
        );
        assert_eq!(status, 200, "stats query: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("stats answer is JSON");
        answer["data"]["stats"].clone()
    }
}

impl Drop for GraphQl {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(5));
    }
}
