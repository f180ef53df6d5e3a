//! A connect step's upgrade request, laid out once: [`UpgradeRequest`] holds the request head as
//! bytes around the `Sec-WebSocket-Key` value, where to dial, and what the response must say
//! (the subprotocols and permessage-deflate offers).

use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::{Compression, Deflate};

use crate::failure::ConnectError;

/// A connect step's upgrade request, rendered: built once per distinct (URL, headers,
/// subprotocols) and shared by every connection that asks for the same.
#[derive(Debug)]
pub struct UpgradeRequest {
    /// What it was built from, to tell whether the next connection asks for the same.
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    /// `wss://`.
    pub secure: bool,
    /// The URL's host (IPv6 without brackets) and port, the scheme's default when absent.
    pub host: String,
    pub port: u16,
    /// The request head up to the key's value, and from after it to the blank line.
    before_key: Vec<u8>,
    after_key: Vec<u8>,
    /// A key the scenario set itself (a `Sec-WebSocket-Key` header); otherwise each
    /// connection draws its own.
    pub(super) fixed_key: Option<String>,
    /// The subprotocols offered, when the request offers any: a subprotocol in the response
    /// must be one of them.
    pub(super) offered: Option<Vec<String>>,
    /// The permessage-deflate offers, when the step asks for compression.
    pub deflate: Option<Deflate>,
}

impl UpgradeRequest {
    /// Lays out the request for `url` with the step's extra headers and offered subprotocols.
    /// Headers replace the defaults of the same name (so `Host` or `Origin` can be set).
    pub fn new(url: &str, headers: &[(&str, &str)], subprotocols: &[&str]) -> Result<UpgradeRequest, ConnectError> {
        let bad_url =
            |why: &dyn std::fmt::Display| ConnectError::new(ErrorKind::Protocol, format!("bad URL `{url}`: {why}"));
        let uri: Uri = url.parse().map_err(|error| bad_url(&error))?;
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => {
                return Err(ConnectError::new(
                    ErrorKind::Protocol,
                    format!("`{url}` is not a ws:// or wss:// URL"),
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| bad_url(&"no host"))?.as_str();
        // The Host header leaves out any user:password@.
        let host_header = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad_url(&"empty host"));
        }
        // `http` parses `:99999` and then reports no port; an out-of-range port is an error
        // rather than a silent fallback to the default.
        let written_port = host_header
            .rsplit_once(':')
            .filter(|_| !host_header.ends_with(']'))
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty());
        let port = match (uri.port_u16(), written_port) {
            (Some(port), _) => port,
            (None, Some(port)) => return Err(bad_url(&format_args!("port `{port}` is not a number from 0 to 65535"))),
            (None, None) => {
                if secure {
                    443
                } else {
                    80
                }
            }
        };
        let target = match uri.path_and_query().map(|path| path.as_str()) {
            Some(path) if !path.is_empty() => path,
            _ => "/",
        };

        let mut fields: Vec<(String, String)> = vec![
            ("Host".into(), host_header.into()),
            ("Connection".into(), "Upgrade".into()),
            ("Upgrade".into(), "websocket".into()),
            ("Sec-WebSocket-Version".into(), "13".into()),
            ("Sec-WebSocket-Key".into(), String::new()),
        ];
        let mut fixed_key = None;
        let mut set = |name: &str, value: &str| match fields
            .iter_mut()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = value.to_owned(),
            None => fields.push((name.to_owned(), value.to_owned())),
        };
        for (name, value) in headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, format!("bad header name `{name}`")))?;
            HeaderValue::from_str(value)
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, format!("bad value for header `{name}`")))?;
            set(name, value);
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                fixed_key = Some((*value).to_owned());
            }
        }
        if !subprotocols.is_empty() {
            let offered = subprotocols.join(", ");
            HeaderValue::from_str(&offered)
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, "bad subprotocol name"))?;
            set("Sec-WebSocket-Protocol", &offered);
        }
        let offered = fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, value)| value.split(',').map(|name| name.trim().to_owned()).collect());

        let mut before_key = format!("GET {target} HTTP/1.1\r\n").into_bytes();
        let mut after_key = Vec::new();
        let mut past_key = false;
        for (name, value) in &fields {
            let head = if past_key { &mut after_key } else { &mut before_key };
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                // The key itself goes in between, per connection.
                past_key = true;
                after_key.extend_from_slice(b"\r\n");
            } else {
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
        }
        after_key.extend_from_slice(b"\r\n");

        Ok(UpgradeRequest {
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            subprotocols: subprotocols.iter().map(|name| (*name).to_owned()).collect(),
            secure,
            host: host.to_owned(),
            port,
            before_key,
            after_key,
            fixed_key,
            offered,
            deflate: None,
        })
    }

    /// Offers permessage-deflate as `compression` says (`Sec-WebSocket-Extensions`, last).
    pub fn with_compression(mut self, compression: &Compression) -> UpgradeRequest {
        if let (Compression::Deflate(deflate), Some(value)) = (compression, compression.header_value()) {
            // The head ends with the blank line: the header goes before it.
            self.after_key.truncate(self.after_key.len() - 2);
            self.after_key
                .extend_from_slice(format!("Sec-WebSocket-Extensions: {value}\r\n\r\n").as_bytes());
            self.deflate = Some(deflate.clone());
        }
        self
    }

    /// Whether this request was built from these inputs.
    pub fn is_for(&self, url: &str, headers: &[(&str, &str)], subprotocols: &[&str]) -> bool {
        self.url == url
            && self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .eq(headers.iter().copied())
            && self
                .subprotocols
                .iter()
                .map(String::as_str)
                .eq(subprotocols.iter().copied())
    }

    /// The request head with `key` in place.
    pub(super) fn head(&self, key: &[u8]) -> Vec<u8> {
        let mut head = Vec::with_capacity(self.before_key.len() + key.len() + self.after_key.len());
        head.extend_from_slice(&self.before_key);
        head.extend_from_slice(key);
        head.extend_from_slice(&self.after_key);
        head
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn head_text(request: &UpgradeRequest, key: &str) -> String {
        String::from_utf8(request.head(key.as_bytes())).unwrap()
    }

    #[test]
    fn lays_out_the_request_once_with_the_key_in_between() {
        let request = UpgradeRequest::new("ws://user:pw@127.0.0.1:9001/chat?room=1", &[], &[]).unwrap();
        assert_eq!(
            head_text(&request, "dGhlIHNhbXBsZSBub25jZQ=="),
            "GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        assert_eq!(
            (request.host.as_str(), request.port, request.secure),
            ("127.0.0.1", 9001, false)
        );
    }

    #[test]
    fn defaults_path_and_port_and_unbrackets_ipv6() {
        let request = UpgradeRequest::new("wss://[::1]", &[], &[]).unwrap();
        assert!(head_text(&request, "k").starts_with("GET / HTTP/1.1\r\nHost: [::1]\r\n"));
        assert_eq!(
            (request.host.as_str(), request.port, request.secure),
            ("::1", 443, true)
        );
        let plain = UpgradeRequest::new("ws://example.test/", &[], &[]).unwrap();
        assert_eq!(plain.port, 80);
    }

    #[test]
    fn headers_replace_defaults_and_add_after_them() {
        let request = UpgradeRequest::new(
            "ws://127.0.0.1:1/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc"),
            ],
            &["v2", "v1"],
        )
        .unwrap();
        assert_eq!(
            head_text(&request, "KEY"),
            "GET / HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: KEY\r\nOrigin: http://front.test\r\n\
             X-Token: abc\r\nSec-WebSocket-Protocol: v2, v1\r\n\r\n"
        );
        assert_eq!(request.offered, Some(vec!["v2".to_owned(), "v1".to_owned()]));
        assert!(request.is_for(
            "ws://127.0.0.1:1/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc")
            ],
            &["v2", "v1"]
        ));
        assert!(!request.is_for("ws://127.0.0.1:1/", &[("host", "front.test")], &["v2", "v1"]));
        assert!(!request.is_for(
            "ws://127.0.0.1:2/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc")
            ],
            &["v2", "v1"]
        ));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let kind_and_detail = |result: Result<UpgradeRequest, ConnectError>| {
            let error = result.unwrap_err();
            (error.kind, error.detail)
        };
        let (kind, detail) = kind_and_detail(UpgradeRequest::new("http://127.0.0.1/", &[], &[]));
        assert_eq!(kind, "protocol");
        assert!(detail.contains("not a ws:// or wss:// URL"), "{detail}");
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1:99999/", &[], &[]));
        assert!(
            detail.starts_with("bad URL `ws://127.0.0.1:99999/`: port `99999`"),
            "{detail}"
        );
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1/", &[("bad name", "x")], &[]));
        assert_eq!(detail, "bad header name `bad name`");
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1/", &[("X-A", "line\r\nbreak")], &[]));
        assert_eq!(detail, "bad value for header `X-A`");
    }
}
