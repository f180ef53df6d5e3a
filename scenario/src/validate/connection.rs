//! Connection steps: `connect` (URL, headers, TLS, proxy, the expected handshake), `ping` and
//! `close`.

use crate::error::Problems;
use crate::raw::{RawClose, RawConnect, RawPing, RawTls};
use crate::steps::{
    parse_proxy, valid_client_close_code, Action, Close, ConnId, Connect, Expect, Ping, Step, TlsOptions,
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECTION, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RECEIVE_TIMEOUT,
};
use crate::template::Template;

use super::builder::{At, StepBuilder};
use super::fields::{compile_template, duration_field};

impl StepBuilder<'_> {
    /// A `connect` step: its connection is open for the steps after it.
    pub(super) fn connect_step(
        &mut self,
        connect: &RawConnect,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let (id, name) = self.name(connect.name.as_ref(), at.kind, field, problems);
        let conn = self
            .connections
            .iter()
            .position(|known| known == connect.connection.as_deref().unwrap_or(DEFAULT_CONNECTION))
            .unwrap_or(0);
        let action = self.connect(connect, conn, field, problems);
        if let Some(slot) = connected.get_mut(conn) {
            *slot = true;
        }
        Step {
            id,
            name,
            action: Action::Connect(Box::new(action)),
        }
    }

    /// A `ping` step: a ping on an open connection, answered by a pong within its timeout.
    pub(super) fn ping_step(
        &mut self,
        ping: &RawPing,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, ping.name.as_ref(), ping.connection.as_ref(), connected, problems);
        let field = at.field;
        let text = ping.body.clone().unwrap_or_default();
        let body = compile_template(&text, &format!("{field}.body"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        if body.as_literal().is_some_and(|literal| literal.len() > 125) {
            problems.add(
                &format!("{field}.body"),
                format!(
                    "a ping body is at most 125 bytes (RFC 6455), this one is {}",
                    text.len()
                ),
                None,
            );
        }
        let timeout = duration_field(
            ping.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_RECEIVE_TIMEOUT,
            problems,
        );
        Step {
            id,
            name,
            action: Action::Ping(Ping { conn, body, timeout }),
        }
    }

    /// A `close` step: its connection is closed for the steps after it.
    pub(super) fn close_step(
        &mut self,
        close: &RawClose,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, close.name.as_ref(), close.connection.as_ref(), connected, problems);
        let field = at.field;
        let action = self.close(close, conn, field, problems);
        if let Some(slot) = connected.get_mut(conn) {
            *slot = false;
        }
        Step {
            id,
            name,
            action: Action::Close(action),
        }
    }

    fn connect(&mut self, connect: &RawConnect, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Connect {
        let url = compile_template(&connect.url, &format!("{field}.url"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        let protocol = self.protocol(connect, field, problems);
        let speaks = self.connection_protocols.get(conn).cloned().flatten();
        if connect.protocol != speaks {
            problems.add(
                &format!("{field}.protocol"),
                "connect steps of one connection speak one protocol",
                Some(
                    "give every connect step of this connection the same `protocol`, or name another `connection`"
                        .into(),
                ),
            );
        }
        let socketio = matches!(protocol, Some(crate::protocol::Protocol::SocketIo(_)));
        if let (Some(literal), true) = (url.as_literal(), socketio) {
            let after_scheme = literal.split_once("://").map_or("", |(_, rest)| rest);
            if after_scheme.split_once('/').is_some_and(|(_, path)| !path.is_empty()) {
                problems.add(
                    &format!("{field}.url"),
                    format!("`{literal}` has a path, and a Socket.IO URL is the server's origin"),
                    Some("write `ws://host:port`; the Engine.IO path is `socketio.path` and namespaces go in `socketio.namespaces`".into()),
                );
            }
        }
        // Socket.IO URLs are the server's origin, often written as http(s)://.
        let http_allowed = socketio;
        if let Some(literal) = url.as_literal() {
            let http = http_allowed && (literal.starts_with("http://") || literal.starts_with("https://"));
            if !(literal.starts_with("ws://") || literal.starts_with("wss://") || http) {
                problems.add(
                    &format!("{field}.url"),
                    format!("`{literal}` is not a WebSocket URL"),
                    Some("URLs start with ws:// or wss://".into()),
                );
            }
        }
        let headers = self.request_headers(connect, field, problems);
        let timeout = duration_field(
            connect.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_CONNECT_TIMEOUT,
            problems,
        );
        let tls = self.tls_options(connect.tls.as_ref(), field, problems);
        let proxy = connect.proxy.as_deref().and_then(|text| match parse_proxy(text) {
            Ok(proxy) => Some(proxy),
            Err(message) => {
                problems.add(
                    &format!("{field}.proxy"),
                    message,
                    Some("write `http://host:port` or `http://user:password@host:port`".into()),
                );
                None
            }
        });
        let compression = super::compression::compression(connect.compression.as_ref(), field, problems);
        let mut expect = self.expectation(connect, field, problems);
        expect.extensions = super::compression::expected_extensions(
            connect.expect.as_ref().and_then(|expect| expect.extensions.as_deref()),
            &compression,
            field,
            problems,
        );
        let extract = self.extractions(&connect.extract, &format!("{field}.extract"), &["header"], problems);
        let mut subprotocols: Vec<Template> = connect
            .subprotocols
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                compile_template(name, &format!("{field}.subprotocols[{index}]"), &self.known, problems)
            })
            .collect();
        // MQTT over WebSocket is offered as the `mqtt` subprotocol (brokers insist on it).
        if matches!(protocol, Some(crate::protocol::Protocol::Mqtt(_))) && subprotocols.is_empty() {
            subprotocols.push(Template::literal(crate::protocol::mqtt::SUBPROTOCOL));
        }
        let mut keep_headers = connect
            .expect
            .as_ref()
            .is_some_and(|expect| expect.subprotocol.is_some() || !expect.headers.is_empty())
            || !extract.is_empty();
        if let Some(crate::protocol::Protocol::GraphQl(options)) = &protocol {
            // The GraphQL protocol is negotiated by subprotocol: offered alone, and the server
            // must agree to it.
            if !connect.subprotocols.is_empty() {
                problems.add(
                    &format!("{field}.subprotocols"),
                    "a GraphQL connection offers its `graphql.subprotocol` alone",
                    Some(format!(
                        "drop `subprotocols`; `graphql.subprotocol` is `{}`",
                        options.subprotocol
                    )),
                );
            }
            if expect
                .subprotocol
                .as_deref()
                .is_some_and(|wanted| wanted != options.subprotocol)
            {
                problems.add(
                    &format!("{field}.expect.subprotocol"),
                    format!("the connection speaks `{}`", options.subprotocol),
                    Some("drop `expect.subprotocol`: the server must agree to `graphql.subprotocol`".into()),
                );
            }
            subprotocols = vec![Template::literal(options.subprotocol)];
            expect.subprotocol = Some(options.subprotocol.to_owned());
            keep_headers = true;
        }
        // STOMP over WebSocket names its versions as subprotocols (stomp.js offers them too).
        if connect.subprotocols.is_empty() && matches!(protocol, Some(crate::protocol::Protocol::Stomp(_))) {
            subprotocols = crate::protocol::stomp::SUBPROTOCOLS
                .iter()
                .map(|name| Template::literal(*name))
                .collect();
        }
        Connect {
            conn,
            url,
            headers,
            subprotocols,
            timeout,
            tls,
            proxy,
            expect,
            keep_headers,
            extract,
            keep_open: connect.keep_open,
            compression,
            protocol,
        }
    }

    /// The upgrade request's extra headers, `Origin` last when `origin` is given.
    fn request_headers(
        &self,
        connect: &RawConnect,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Vec<(String, Template)> {
        let mut headers: Vec<(String, Template)> = connect
            .headers
            .iter()
            .filter_map(|(header, value)| {
                if header_name_ok(header) {
                    compile_template(value, &format!("{field}.headers.{header}"), &self.known, problems)
                        .map(|template| (header.clone(), template))
                } else {
                    problems.add(
                        &format!("{field}.headers.{header}"),
                        format!("`{header}` is not a valid header name"),
                        None,
                    );
                    None
                }
            })
            .collect();
        if let Some(origin) = &connect.origin {
            if let Some(template) = compile_template(origin, &format!("{field}.origin"), &self.known, problems) {
                headers.push(("Origin".to_owned(), template));
            }
        }
        headers
    }

    pub(super) fn tls_options(&self, tls: Option<&RawTls>, field: &str, problems: &mut Problems<'_>) -> TlsOptions {
        match tls {
            None => TlsOptions::default(),
            Some(tls) => {
                if tls.ca.is_some() && tls.insecure_skip_verify {
                    problems.add(
                        &format!("{field}.tls"),
                        "`ca` and `insecure_skip_verify` exclude each other",
                        Some("trust the CA, or skip verification, not both".into()),
                    );
                }
                let ca_pem = tls.ca.as_deref().map(|name| {
                    let bytes = self.file(name, &format!("{field}.tls.ca"), problems);
                    if !bytes.is_empty() && !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
                        problems.add(
                            &format!("{field}.tls.ca"),
                            format!("`{name}` holds no PEM certificate"),
                            Some("give a file with `-----BEGIN CERTIFICATE-----` blocks".into()),
                        );
                    }
                    bytes
                });
                TlsOptions {
                    ca_pem,
                    insecure_skip_verify: tls.insecure_skip_verify,
                    server_name: tls.server_name.clone(),
                }
            }
        }
    }

    /// What the handshake response must be: 101 unless `expect` says otherwise.
    fn expectation(&self, connect: &RawConnect, field: &str, problems: &mut Problems<'_>) -> Expect {
        match &connect.expect {
            None => Expect {
                status: 101,
                subprotocol: None,
                headers: Vec::new(),
                extensions: None,
            },
            Some(expect) => {
                let status = expect.status.unwrap_or(101);
                if !(100..=599).contains(&status) {
                    problems.add(
                        &format!("{field}.expect.status"),
                        format!("{status} is not an HTTP status"),
                        None,
                    );
                }
                if let Some(wanted) = &expect.subprotocol {
                    if !wanted.is_empty() && !connect.subprotocols.contains(wanted) {
                        problems.add(
                            &format!("{field}.expect.subprotocol"),
                            format!("`{wanted}` is not among the subprotocols this step offers"),
                            Some(format!("add it to `subprotocols` (now: {:?})", connect.subprotocols)),
                        );
                    }
                }
                Expect {
                    status,
                    subprotocol: expect.subprotocol.clone(),
                    headers: expect
                        .headers
                        .iter()
                        .filter_map(|(header, value)| {
                            compile_template(
                                value,
                                &format!("{field}.expect.headers.{header}"),
                                &self.known,
                                problems,
                            )
                            .map(|template| (header.clone(), template))
                        })
                        .collect(),
                    extensions: None,
                }
            }
        }
    }

    fn close(&mut self, close: &RawClose, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Close {
        let code = close.code.unwrap_or(1000);
        if !valid_client_close_code(code) {
            problems.add(
                &format!("{field}.code"),
                format!("{code} is not a close code a client may send"),
                Some("use 1000 (normal), 1001-1003, 1007-1011, or 3000-4999".into()),
            );
        }
        let text = close.reason.clone().unwrap_or_default();
        let reason = compile_template(&text, &format!("{field}.reason"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        if reason.as_literal().is_some_and(|literal| literal.len() > 123) {
            problems.add(
                &format!("{field}.reason"),
                "a close reason is at most 123 bytes (RFC 6455)",
                None,
            );
        }
        let timeout = duration_field(
            close.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_CLOSE_TIMEOUT,
            problems,
        );
        Close {
            conn,
            code,
            reason,
            timeout,
            expect_codes: close.expect_codes.clone(),
            extract: self.extractions(&close.extract, &format!("{field}.extract"), &["close"], problems),
        }
    }
}

/// An HTTP token: a header name (or a method).
pub(super) fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}
