//! `wsfleet ctl`: steers the run a controller is playing through its HTTP API
//! (`POST /api/runs/current/control`, docs/api.md), and says what changed or why nothing did.
//! Plain `http://` only, like the controller's dashboard; one request, bounded in time.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;

use crate::cli::{CtlArgs, CtlChange};
use crate::exit;

/// How long the controller has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the change; returns the exit code (docs/cli.md): 0 applied, 3 the request is wrong, 4
/// refused (or no run, or no controller there).
pub fn run(args: CtlArgs) -> u8 {
    let body = body_of(&args.change, args.part.as_deref());
    let (host, port) = match address_of(&args.controller) {
        Ok(address) => address,
        Err(message) => {
            tell!("error: {message}");
            return exit::USAGE;
        }
    };
    let response = post(
        &host,
        port,
        "/api/runs/current/control",
        args.api_token.as_deref(),
        &body,
    );
    let (status, text) = match response {
        Ok(response) => response,
        Err(error) => {
            tell!(
                "error: cannot reach the controller at {}: {error}; is it running, and is this its --http address?",
                args.controller
            );
            return exit::RUN_NOT_DONE;
        }
    };
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    match status {
        200 => {
            let applied = &answer["applied"];
            say!(
                "{} (from {:.1}s into the run)",
                applied["detail"].as_str().unwrap_or("changed"),
                applied["at_seconds"].as_f64().unwrap_or(0.0)
            );
            exit::OK
        }
        401 => {
            tell!("error: the controller requires its API token: give it with --api-token or WSFLEET_CONTROLLER__API_TOKEN");
            exit::USAGE
        }
        _ => {
            let message = answer["error"]
                .as_str()
                .map_or_else(|| text.trim().to_owned(), str::to_owned);
            tell!("error: {message}");
            if status == 400 {
                exit::INVALID_INPUT
            } else {
                exit::RUN_NOT_DONE
            }
        }
    }
}

/// The API's JSON for `change`.
fn body_of(change: &CtlChange, part: Option<&str>) -> String {
    let mut body = match change {
        CtlChange::SetVus { vus, ramp } => json!({ "action": "set_vus", "vus": vus, "ramp": ramp }),
        CtlChange::SetRate { rate, ramp } => json!({ "action": "set_rate", "rate": rate, "ramp": ramp }),
        CtlChange::Hold => json!({ "action": "hold" }),
        CtlChange::Resume => json!({ "action": "resume" }),
        CtlChange::Pause => json!({ "action": "pause" }),
        CtlChange::Unpause => json!({ "action": "unpause" }),
        CtlChange::Stop => json!({ "action": "stop" }),
        CtlChange::Drain { agent } => json!({ "action": "drain", "agent": agent }),
        CtlChange::AddAgent { agent } => json!({ "action": "add_agent", "agent": agent }),
    };
    if let Some(object) = body.as_object_mut() {
        object.retain(|_, value| !value.is_null());
        if let Some(part) = part {
            object.insert("part".into(), json!(part));
        }
    }
    body.to_string()
}

/// Host and port of an `http://HOST[:PORT][/]` address.
fn address_of(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("--controller `{url}` must be the controller's HTTP address, like http://127.0.0.1:7601")
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("--controller `{url}` names no host"));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port = port
                .parse()
                .map_err(|_| format!("--controller `{url}`: `{port}` is not a port"))?;
            Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
        }
        _ => Ok((authority.to_owned(), 80)),
    }
}

/// One HTTP/1.1 POST with a JSON body; the status and the body of the answer.
fn post(host: &str, port: u16, path: &str, token: Option<&str>, body: &str) -> std::io::Result<(u16, String)> {
    let address = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, rest) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer has no status"))?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_the_apis_json() {
        let set = CtlChange::SetVus {
            vus: 50,
            ramp: Some("10s".into()),
        };
        let body: serde_json::Value = serde_json::from_str(&body_of(&set, Some("chat"))).unwrap_or_default();
        assert_eq!(
            body,
            json!({ "action": "set_vus", "vus": 50, "ramp": "10s", "part": "chat" })
        );
        let rate = CtlChange::SetRate { rate: 2.5, ramp: None };
        let body: serde_json::Value = serde_json::from_str(&body_of(&rate, None)).unwrap_or_default();
        assert_eq!(body, json!({ "action": "set_rate", "rate": 2.5 }));
        assert_eq!(body_of(&CtlChange::Pause, None), r#"{"action":"pause"}"#);
    }

    #[test]
    fn the_controller_is_an_http_address() {
        assert_eq!(address_of("http://127.0.0.1:7601/"), Ok(("127.0.0.1".into(), 7601)));
        assert_eq!(address_of("http://lab-controller"), Ok(("lab-controller".into(), 80)));
        assert_eq!(address_of("http://[::1]:7601"), Ok(("::1".into(), 7601)));
        assert!(address_of("127.0.0.1:7601").is_err_and(|message| message.contains("like http://")));
        assert!(address_of("http://host:port").is_err_and(|message| message.contains("not a port")));
    }
}
