//! Reaching the server before the upgrade: the local source addresses handed out in turn, DNS,
//! TCP (from a chosen source address), the HTTP CONNECT tunnel through a proxy, and TLS, each
//! phase timed.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wsfleet_metrics::{ErrorKind, Hist, Recorder, SetId};

use super::{tls_or_io, ConnectRequest, Counted, Transport};
use crate::clock;
use crate::failure::{io_error, ConnectError};

/// Local source addresses, handed out in turn. Each (source, destination) pair has its own
/// ~28k ephemeral ports, so an agent spreading over N addresses can hold N times as many
/// connections to one target.
pub struct SourceAddresses {
    addresses: Arc<Vec<std::net::IpAddr>>,
    next: std::cell::Cell<usize>,
}

impl SourceAddresses {
    pub fn new(addresses: Arc<Vec<std::net::IpAddr>>, start: usize) -> Self {
        SourceAddresses {
            addresses,
            next: std::cell::Cell::new(start),
        }
    }

    pub fn next(&self) -> Option<std::net::IpAddr> {
        if self.addresses.is_empty() {
            return None;
        }
        let index = self.next.get();
        self.next.set(index.wrapping_add(1));
        Some(self.addresses[index % self.addresses.len()])
    }
}

/// Resolves, connects, tunnels through the proxy and runs TLS: the transport the upgrade goes
/// over.
pub(super) async fn dial(
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<Transport, ConnectError> {
    let upgrade = request.upgrade;
    let (host, port) = (&upgrade.host, upgrade.port);
    // With a proxy, the TCP connection goes to the proxy and a CONNECT opens the tunnel.
    let (dial_host, dial_port): (&str, u16) = match request.proxy {
        Some(proxy) => (&proxy.host, proxy.port),
        None => (host, port),
    };
    let address = resolve(dial_host, dial_port, recorder, step).await?;
    let tcp_started = clock::now();
    let tcp = match request.source {
        None => TcpStream::connect(address).await,
        Some(source) => connect_from(source, address).await,
    }
    .map_err(|error| io_error(&error, &format!("connect to {address}")))?;
    let _ = tcp.set_nodelay(true);
    let mut counted = Counted::new(tcp, recorder.clone());
    if let Some(proxy) = request.proxy {
        tunnel(&mut counted, proxy, host, port).await?;
    }
    let now = clock::now();
    recorder
        .borrow_mut()
        .record(now, step, Hist::TcpConnect, now - tcp_started);

    let transport = if upgrade.secure {
        let tls_started = clock::now();
        let name = request.server_name.unwrap_or(host).to_owned();
        let server_name = rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|_| ConnectError::new(ErrorKind::Tls, format!("`{name}` is not a valid TLS server name")))?;
        let stream = tokio_rustls::TlsConnector::from(request.tls.clone())
            .connect(server_name, counted)
            .await
            .map_err(|error| tls_or_io(&error))?;
        let now = clock::now();
        recorder
            .borrow_mut()
            .record(now, step, Hist::TlsHandshake, now - tls_started);
        Transport::Tls(Box::new(stream))
    } else {
        Transport::Plain(counted)
    };
    Ok(transport)
}

/// Resolves a host name (timed as `dns`); an IP address is used as it is.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<SocketAddr, ConnectError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let lookup_started = clock::now();
    let mut addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| ConnectError::new(ErrorKind::Dns, format!("cannot resolve `{host}`: {error}")))?;
    let now = clock::now();
    recorder.borrow_mut().record(now, step, Hist::Dns, now - lookup_started);
    addresses
        .next()
        .ok_or_else(|| ConnectError::new(ErrorKind::Dns, format!("`{host}` resolved to no address")))
}

/// Opens an HTTP CONNECT tunnel to `host:port` through a proxy (for connect and http steps).
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &wsfleet_scenario::Proxy,
    host: &str,
    port: u16,
) -> Result<(), ConnectError> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    let failed = |detail: String| ConnectError::new(ErrorKind::Proxy, detail);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| failed(format!("cannot send CONNECT to the proxy: {error}")))?;
    // Byte by byte: nothing past the response's blank line may be consumed, it belongs to
    // the tunnel.
    let mut response = Vec::with_capacity(128);
    while !response.ends_with(b"\r\n\r\n") {
        if response.len() > 8 * 1024 {
            return Err(failed("the proxy's response header is over 8 KiB".into()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|error| failed(format!("the proxy closed or failed before answering CONNECT: {error}")))?;
        response.push(byte);
    }
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| failed(format!("the proxy answered `{status_line}`, not an HTTP status line")))?;
    if !(200..300).contains(&status) {
        return Err(failed(format!(
            "the proxy refused the tunnel to {authority}: `{status_line}`"
        )));
    }
    Ok(())
}

/// Connects from a chosen local address (port chosen by the kernel).
pub(crate) async fn connect_from(source: std::net::IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}
