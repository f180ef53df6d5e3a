//! The raw form of an `http` step: a request made over HTTP/1.1 before, between or after the
//! WebSocket steps (a login, a token, a REST call), as written in the file.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{RawExtract, RawTls};

/// `- http: { name, method, url, headers, body, timeout, connect_timeout, tls, proxy, expect,
/// extract }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub name: Option<String>,
    /// `GET` (the default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` or another token.
    pub method: Option<String>,
    /// `http://` or `https://`.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<RawHttpBody>,
    /// The whole request: connecting, sending, the response and its body.
    pub timeout: Option<String>,
    /// DNS, TCP, proxy tunnel and TLS of a new connection (the `timeout` when absent).
    pub connect_timeout: Option<String>,
    pub tls: Option<RawTls>,
    /// An HTTP proxy reached with CONNECT: `http://[user:password@]host:port`.
    pub proxy: Option<String>,
    pub expect: Option<RawHttpExpect>,
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
}

/// One of `{ text: ... }`, `{ json: <any YAML value> }`, `{ file: path }`, `{ form: { k: v } }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpBody {
    pub text: Option<String>,
    /// A JSON value written as YAML; string values (not keys) may hold templates, rendered
    /// and escaped as JSON strings.
    pub json: Option<serde_json::Value>,
    /// A file sent as it is, relative to the scenario file.
    pub file: Option<String>,
    /// Fields sent as `application/x-www-form-urlencoded`.
    pub form: Option<BTreeMap<String, String>>,
}

/// What the response must be.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpExpect {
    /// One status or a list (any of them); without it, 200-399.
    pub status: Option<RawStatuses>,
    /// Response headers that must have these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `status: 200` or `status: [200, 204]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatuses {
    One(u16),
    Many(Vec<u16>),
}
