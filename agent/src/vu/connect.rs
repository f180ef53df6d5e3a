//! The connect step: renders the URL, headers and subprotocols, reuses the worker's upgrade
//! request for them, waits for a handshake slot, opens the connection and checks what the step
//! expects of the handshake (status, subprotocol, headers). The VU's cookies for the URL's
//! origin (from its http steps) go into the upgrade request.

use std::borrow::Cow;
use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsfleet_metrics::catalog::{extensions_counter, ACTIVE_CONNECTIONS};
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::matcher::Origin;
use wsfleet_scenario::protocol::Protocol;
use wsfleet_scenario::{Agreed, Compression, Step, StepId};

use super::conn::Conn;
use super::flow::extract_into;
use super::outcome::{Failure, StepResult, Stop};
use super::protocol::speaking;
use super::socketio::socketio_url;
use super::state::Vu;
use crate::clock;
use crate::connection::ConnectRequest;
use crate::failure::ConnectError;
use crate::http::HttpSession;

impl Vu {
    /// Counts a connection that could not be opened; the step fails with the error's kind.
    pub(super) fn connect_failed(&self, set: SetId, step: StepId, url: &str, error: ConnectError) -> Stop {
        tracing::debug!(vu = self.number, url = %url, kind = %error.kind, detail = %error.detail, "connect failed");
        self.env
            .recorder
            .borrow_mut()
            .add(clock::now(), set, Counter::ConnectionsFailed, 1);
        Failure::new(step, error.kind).into()
    }

    pub(super) async fn connect_step(
        &mut self,
        step: &Step,
        connect: &wsfleet_scenario::Connect,
        iteration: u64,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        if connect.keep_open && self.conns.get(connect.conn).is_some_and(Option::is_some) {
            return Ok(());
        }
        // Opening a connection waits: what the sends before it hold leaves first.
        if self.holds_sends() {
            self.flush_held(step.id, iteration).await?;
        }
        let scope_parts = self.parts();
        let scope = scope_parts.scope(iteration);
        // A `${...}` script that fails fails the step (`script`) before anything is opened.
        let url = connect
            .url
            .try_render(&scope)
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        let url = match &connect.protocol {
            Some(Protocol::SocketIo(options)) => Cow::Owned(socketio_url(&url, options, &scope)),
            Some(Protocol::GraphQl(options)) => Cow::Owned(super::graphql::graphql_url(&url, options)),
            Some(Protocol::Mqtt(_)) | Some(Protocol::Stomp(_)) | None => url,
        };
        let upgrade = {
            let headers: Vec<(&str, Cow<'_, str>)> = connect
                .headers
                .iter()
                .map(|(name, value)| value.try_render(&scope).map(|value| (name.as_str(), value)))
                .collect::<Result<_, _>>()
                .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
            let mut headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_ref())).collect();
            // The jar's cookies for the URL's origin go into the upgrade, as a browser sends them.
            let cookie = self
                .http
                .as_ref()
                .and_then(|session| upgrade_cookie(session, &url, &headers));
            if let Some(cookie) = &cookie {
                headers.retain(|(name, _)| !name.eq_ignore_ascii_case("cookie"));
                headers.push(("Cookie", cookie));
            }
            let subprotocols: Vec<Cow<'_, str>> = connect
                .subprotocols
                .iter()
                .map(|name| name.try_render(&scope))
                .collect::<Result<_, _>>()
                .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
            let subprotocols: Vec<&str> = subprotocols.iter().map(AsRef::as_ref).collect();
            self.env
                .upgrades
                .get(step.id, &url, &headers, &subprotocols, &connect.compression)
        };
        let expected_headers: Vec<(String, String)> = connect
            .expect
            .headers
            .iter()
            .map(|(name, value)| value.try_render(&scope).map(|value| (name.clone(), value.into_owned())))
            .collect::<Result<_, _>>()
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        // A second connect replaces the connection (closing the old one first).
        Box::pin(self.close_conn(connect.conn, CloseCode::Normal)).await;
        let env = self.env.clone();
        let upgrade = match upgrade {
            Ok(upgrade) => upgrade,
            Err(error) => return Err(self.connect_failed(set, step.id, &url, error)),
        };
        let request = ConnectRequest {
            upgrade: &upgrade,
            timeout: connect.timeout,
            source: env.source_addresses.next(),
            tls: env.step_tls.get(&step.id).unwrap_or(&env.tls),
            server_name: connect.tls.server_name.as_deref(),
            proxy: connect.proxy.as_ref(),
            expect_status: connect.expect.status,
            keep_headers: connect.keep_headers,
        };
        let recorder = &env.recorder;
        // Waiting for a slot is the generator's own queueing, not the target's latency:
        // the handshake is timed from when it starts.
        let slot = env.handshake_slots.acquire().await;
        let started = clock::now();
        // The connector's future is boxed: the handshake's state is large and short-lived;
        // inline, it would size every VU's future for its whole life (a few KB per idle
        // connection).
        let opened = env.connector.open(&request, recorder, set).await;
        drop(slot);
        self.handshake = None;
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => return Err(self.connect_failed(set, step.id, &url, error)),
        };
        let info = &mut self.info[connect.conn];
        info.headers = opened.headers;
        info.last = None;
        if let Some(socket) = opened.socket {
            {
                let now = clock::now();
                let mut recorder_ref = recorder.borrow_mut();
                recorder_ref.add(now, set, Counter::ConnectionsOpened, 1);
                recorder_ref.gauge_add(now, ACTIVE_CONNECTIONS, 1);
                if connect.compression != Compression::Off {
                    let agreed = opened.agreed.as_ref().map(Agreed::canonical);
                    recorder_ref.add_labeled(now, set, extensions_counter(agreed.as_deref()), 1);
                }
            }
            self.conns[connect.conn] = Some(Conn {
                socket,
                recorder: recorder.clone(),
                pending: VecDeque::new(),
                send_times: Vec::new(),
                unanswered_send: None,
                keep_open: connect.keep_open,
                held: VecDeque::new(),
                protocol: None,
            });
            if let Some(protocol) = &connect.protocol {
                let speaking = {
                    let parts = self.parts();
                    speaking(protocol, &parts.scope(iteration), clock::now())
                };
                if let Some(conn) = self.conns[connect.conn].as_mut() {
                    conn.protocol = Some(speaking);
                }
                // The handshake shares the connect step's timeout. Boxed: only protocol
                // connections run it, and inline it would size every connect's future.
                let deadline = started + connect.timeout;
                Box::pin(self.protocol_handshake(connect.conn, protocol, deadline, step.id, iteration)).await?;
            }
        }
        if let Some(wanted) = &connect.expect.extensions {
            if opened.agreed != *wanted {
                tracing::debug!(
                    vu = self.number,
                    agreed = ?opened.agreed.as_ref().map(Agreed::canonical),
                    wanted = ?wanted.as_ref().map(Agreed::canonical),
                    "unexpected permessage-deflate agreement"
                );
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let info = &self.info[connect.conn];
        if let Some(wanted) = &connect.expect.subprotocol {
            let picked = header(&info.headers, "sec-websocket-protocol").unwrap_or("");
            if picked != wanted {
                tracing::debug!(vu = self.number, picked, wanted = %wanted, "unexpected subprotocol");
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        for (name, value) in &expected_headers {
            if header(&info.headers, name) != Some(value.as_str()) {
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            headers: Some(&self.info[connect.conn].headers),
            ..Origin::default()
        };
        extract_into(&mut self.vars, &connect.extract, origin, step.id)?;
        Ok(())
    }
}

/// The `Cookie` header of an upgrade to `url` when the VU's jar has cookies for its origin
/// (`ws://` as `http://`, `wss://` as `https://`): a written `Cookie` header first, the jar's after.
fn upgrade_cookie(session: &HttpSession, url: &str, headers: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    let jar = session.cookie_header(&url)?;
    match headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("cookie")) {
        Some((_, written)) if !written.is_empty() => Some(format!("{written}; {jar}")),
        _ => Some(jar),
    }
}

pub(super) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a browser: the jar's cookies for the origin, `Secure` ones only over `wss://`, after
    /// a `Cookie` header the step writes.
    #[test]
    fn upgrades_carry_the_jars_cookies_of_their_origin() {
        let mut session = HttpSession::default();
        session.store_cookies(
            &[
                ("set-cookie".to_owned(), "sid=1; Path=/; Secure".to_owned()),
                ("set-cookie".to_owned(), "t=2; Path=/".to_owned()),
            ],
            &url::Url::parse("https://app.test/login").unwrap(),
        );
        assert_eq!(
            upgrade_cookie(&session, "wss://app.test/ws", &[]).as_deref(),
            Some("sid=1; t=2")
        );
        assert_eq!(
            upgrade_cookie(&session, "ws://app.test/ws", &[]).as_deref(),
            Some("t=2")
        );
        assert_eq!(
            upgrade_cookie(&session, "ws://app.test/ws", &[("Cookie", "mine=0")]).as_deref(),
            Some("mine=0; t=2")
        );
        assert_eq!(upgrade_cookie(&session, "wss://other.test/ws", &[]), None);
    }
}
