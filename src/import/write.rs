//! The imported scenario as YAML text: the connects, sends and receives of the timeline with
//! think times from the recorded gaps, proposed matchers, HTTP steps, and comments where a
//! recorded value should become a parameter.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::convert::{Event, Frame, Options, Payload, Think, Timeline};
use super::correlate::{correlate_request, correlation, hint_comments, leaves, Seen};
use super::emit::{binary, comment_text, escapes, json_flow, scalar, shorten, template};
use super::har::{self, Entry};
use super::hints::{self, Hint};

/// Handshake headers the agent writes itself, or that only describe the browser.
const HANDSHAKE_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "origin",
    "user-agent",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "content-length",
    "cookie",
    "authorization",
];

/// Request headers of HTTP steps left out: the client writes them (the hop-by-hop ones
/// included), or they describe the browser.
const HTTP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-type",
    "user-agent",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "referer",
    "cookie",
    "authorization",
    "priority",
];

/// JSON fields that usually say what kind of message this is, in the order they are tried.
const DISCRIMINATORS: &[&str] = &[
    "type", "event", "op", "action", "kind", "method", "cmd", "command", "t", "topic",
];

/// Counts for the closing line.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub connections: usize,
    pub sends: usize,
    pub receives: usize,
    pub http: usize,
    pub thinks: usize,
    pub hints: usize,
}

/// A step as written: comment lines, then the step's lines (without the list indentation).
struct Step {
    comments: Vec<String>,
    lines: Vec<String>,
}

/// Unique step names: `join`, `join_2`, ...
#[derive(Default)]
struct Names {
    used: HashSet<String>,
    /// The last number given to each base, so a recording of many alike messages stays linear.
    last: HashMap<String, usize>,
}

impl Names {
    fn unique(&mut self, base: &str) -> String {
        let base = sanitize(base);
        let number = self.last.entry(base.clone()).or_insert(0);
        loop {
            *number += 1;
            let name = if *number == 1 {
                base.clone()
            } else {
                format!("{base}_{number}")
            };
            if self.used.insert(name.clone()) {
                return name;
            }
        }
    }
}

/// A name of letters, digits and `_`, at most 40 long.
pub(super) fn sanitize(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = name.trim_matches('_').to_owned();
    if name.is_empty() {
        "step".to_owned()
    } else {
        name
    }
}

/// Recorded values sent as variables (cookies, authorization), one variable per distinct value.
#[derive(Default)]
struct Variables {
    values: BTreeMap<String, (String, String)>,
    by_value: HashMap<String, String>,
}

impl Variables {
    /// `${NAME}` for `value`, with `why` as the variable's comment.
    fn reference(&mut self, base: &str, value: &str, why: &str) -> String {
        if value.contains("${") {
            // Scenario variables are plain values that cannot hold a template: keep it inline.
            return value.replace("${", "$${");
        }
        if let Some(name) = self.by_value.get(value) {
            return format!("${{{name}}}");
        }
        let mut name = base.to_owned();
        let mut number = 1;
        while self.values.contains_key(&name) {
            number += 1;
            name = format!("{base}_{number}");
        }
        self.values.insert(name.clone(), (value.to_owned(), why.to_owned()));
        self.by_value.insert(value.to_owned(), name.clone());
        format!("${{{name}}}")
    }
}

/// Writes the scenario; `name` is the scenario's name, `source` the HAR file as the user named it.
pub fn scenario(
    timeline: &Timeline<'_>,
    options: &Options,
    name: &str,
    source: &str,
    creator: &str,
) -> (String, Counts) {
    let mut names = Names::default();
    let mut variables = Variables::default();
    let mut counts = Counts::default();
    let mut steps: Vec<Step> = Vec::new();
    let several = timeline.sockets.len() > 1;
    let connection_names: Vec<Option<String>> = {
        let mut taken = Names::default();
        timeline
            .sockets
            .iter()
            .map(|socket| {
                several.then(|| {
                    let path = socket.url.split('?').next().unwrap_or("");
                    let last = path
                        .rsplit('/')
                        .find(|segment| !segment.is_empty() && !segment.contains(':'));
                    taken.unique(last.unwrap_or("ws"))
                })
            })
            .collect()
    };
    let target = origin_of(&timeline.sockets[0].url);
    // Cookies the HTTP steps' responses set: the VU's cookie jar sends them, as a browser does.
    let mut jar = Jar::default();
    // The last recorded instant the VU was busy, for think times.
    let mut last: Option<f64> = None;
    // Per socket: when its last message went out (or its handshake), for receive timeouts.
    let mut last_send: Vec<f64> = timeline.sockets.iter().map(|socket| socket.start).collect();
    let mut seen: Seen = HashMap::new();
    let mut sent_values: HashSet<String> = HashSet::new();

    for event in &timeline.events {
        match *event {
            Event::Http(position) => {
                let request = &timeline.requests[position];
                think(&mut steps, &mut counts, options.think, last, request.start);
                last = Some(request.end);
                let (step, name) = http_step(
                    request.entry,
                    request.index,
                    &mut names,
                    &mut variables,
                    &jar,
                    &seen,
                    &mut sent_values,
                );
                steps.push(step);
                if let Some(json) = request.entry.response_json() {
                    for (pointer, value) in leaves(&json) {
                        if !sent_values.contains(&value) {
                            seen.entry(value).or_insert_with(|| (name.clone(), pointer));
                        }
                    }
                }
                for header in response_headers(request.entry) {
                    if header.name.eq_ignore_ascii_case("set-cookie") {
                        for line in header.value.as_deref().unwrap_or("").lines() {
                            jar.set(&request.entry.request.url, line);
                        }
                    }
                }
                counts.http += 1;
            }
            Event::Connect(position) => {
                let socket = &timeline.sockets[position];
                think(&mut steps, &mut counts, options.think, last, socket.start);
                last = Some(socket.start);
                let connection = connection_names[position].as_deref();
                steps.push(connect_step(
                    socket.entry,
                    socket.index,
                    &socket.url,
                    &target,
                    connection,
                    &mut names,
                    &mut variables,
                    &jar,
                    (&seen, &sent_values),
                ));
                counts.connections += 1;
            }
            Event::Frame(position, frame) => {
                let socket = &timeline.sockets[position];
                let frame = &socket.frames[frame];
                let connection = connection_names[position].as_deref();
                if frame.sent {
                    think(&mut steps, &mut counts, options.think, last, frame.time);
                    last_send[position] = frame.time;
                    let step = send_step(frame, connection, &mut names, &seen, &mut sent_values);
                    steps.push(step);
                    counts.sends += 1;
                } else {
                    let waited = (frame.time - last_send[position]).max(0.0);
                    let step = receive_step(frame, connection, waited, &mut names, &mut seen, &sent_values);
                    steps.push(step);
                    counts.receives += 1;
                }
                last = Some(last.map_or(frame.time, |last| last.max(frame.time)));
            }
        }
    }
    for (position, _) in timeline.sockets.iter().enumerate() {
        let connection = connection_names[position].as_deref();
        let name = names.unique(&match connection {
            Some(connection) => format!("close_{connection}"),
            None => "close".to_owned(),
        });
        let mut fields = vec![format!("name: {name}")];
        if let Some(connection) = connection {
            fields.push(format!("connection: {connection}"));
        }
        fields.push("code: 1000".to_owned());
        steps.push(Step {
            comments: Vec::new(),
            lines: vec![format!("close: {{ {} }}", fields.join(", "))],
        });
    }

    counts.hints = steps
        .iter()
        .flat_map(|step| &step.comments)
        .filter(|comment| comment.starts_with("parameterize?"))
        .count();
    let mut out = String::new();
    let socket_list: Vec<String> = timeline
        .sockets
        .iter()
        .map(|socket| format!("{} (entry {})", shorten(&socket.url, 100), socket.index))
        .collect();
    out.push_str(&format!(
        "# Imported by `wsfleet import` from {} (recorded by {}).\n",
        comment_text(source),
        comment_text(creator)
    ));
    out.push_str(&format!(
        "# {} WebSocket connection(s): {}.\n",
        timeline.sockets.len(),
        comment_text(&socket_list.join(", "))
    ));
    out.push_str(&format!(
        "# {} message(s) sent and {} received{}; think times {}.\n",
        counts.sends,
        counts.receives,
        if options.http_steps {
            format!(", {} HTTP request(s) before the upgrade", counts.http)
        } else {
            String::new()
        },
        match options.think {
            Think::Keep => "as recorded (--think keep)".to_owned(),
            Think::Scale(factor) => format!("the recorded gaps times {factor} (--think scale={factor})"),
            Think::None => "left out (--think none)".to_owned(),
        }
    ));
    out.push_str("# Receives match what the recorded reply looked like; review the `parameterize?` comments\n");
    out.push_str("# before running this at scale: a recorded id, token or time rarely works twice.\n");
    out.push_str(&format!("name: {}\n", scalar(name)));
    out.push_str(&format!("target: {}\n", scalar(&target.replace("${", "$${"))));
    if !variables.values.is_empty() {
        out.push_str("variables:\n");
        for (variable, (value, why)) in &variables.values {
            out.push_str(&format!("  # {}\n", comment_text(why)));
            out.push_str(&format!("  {variable}: {}\n", scalar(value)));
        }
    }
    out.push_str("load:                 # one VU plays the recording once; raise these for load\n");
    out.push_str("  vus: 1\n  iterations: 1\nsteps:\n");
    for step in &steps {
        for comment in &step.comments {
            out.push_str(&format!("  # {}\n", comment_text(comment)));
        }
        let mut lines = step.lines.iter();
        if let Some(first) = lines.next() {
            out.push_str(&format!("  - {first}\n"));
        }
        for line in lines {
            out.push_str(&format!("    {line}\n"));
        }
    }
    (out, counts)
}

/// `scheme://host:port` of a URL.
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{authority}")
}

/// A think step for the gap from `last` to `now`, as the options say.
fn think(steps: &mut Vec<Step>, counts: &mut Counts, mode: Think, last: Option<f64>, now: f64) {
    let Some(last) = last else { return };
    let factor = match mode {
        Think::Keep => 1.0,
        Think::Scale(factor) => factor,
        Think::None => return,
    };
    let millis = ((now - last).max(0.0) * 1000.0 * factor).round();
    if millis < 1.0 {
        return;
    }
    counts.thinks += 1;
    steps.push(Step {
        comments: Vec::new(),
        lines: vec![format!("think: {}ms", millis as u64)],
    });
}

fn response_headers(entry: &Entry) -> &[har::Header] {
    entry
        .response
        .as_ref()
        .map_or(&[], |response| response.headers.as_slice())
}

/// The cookies imported `http` steps' responses set, by name and domain, to leave out of later
/// `Cookie` headers that the VU's jar fills in (RFC 6265 domain matching; ports do not count).
#[derive(Default)]
struct Jar {
    /// (name, domain, host only)
    cookies: Vec<(String, String, bool)>,
}

impl Jar {
    /// Stores a `Set-Cookie` line of a response to `url`.
    fn set(&mut self, url: &str, line: &str) {
        let mut parts = line.split(';');
        let Some((name, _)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let domain = parts
            .filter_map(|attribute| attribute.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("domain"))
            .map(|(_, value)| value.trim().trim_start_matches('.').to_ascii_lowercase());
        let host_only = domain.is_none();
        self.cookies.push((
            name.trim().to_owned(),
            domain.unwrap_or_else(|| host_of(url)),
            host_only,
        ));
    }

    /// Whether the jar sends a cookie named `name` with a request to `url`.
    fn holds(&self, url: &str, name: &str) -> bool {
        let host = host_of(url);
        self.cookies.iter().any(|(cookie, domain, host_only)| {
            cookie == name && (host == *domain || (!host_only && host.ends_with(&format!(".{domain}"))))
        })
    }
}

/// The host of a URL, lowercase, without user, port or brackets.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.to_ascii_lowercase()
}

/// A `Cookie` header of a request to `url` without the cookies the jar sends; `None` when
/// nothing is left.
fn cookies_left(value: &str, url: &str, jar: &Jar) -> Option<String> {
    let left: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !jar.holds(url, pair.split('=').next().unwrap_or("").trim()))
        .collect();
    (!left.is_empty()).then(|| left.join("; "))
}

const COOKIE_WHY: &str = "the recorded Cookie header: one browser session's, and it expires; give each VU its own (a data feed, `data:`) or log in with an `http` step";
const AUTH_WHY: &str = "the recorded Authorization header: one user's credential; give each VU its own (a data feed, `data:`) or take it from a login reply";

/// The headers worth keeping of a request to `url`, as flow mapping entries, and their hints.
fn kept_headers(
    url: &str,
    headers: &[har::Header],
    dropped: &[&str],
    variables: &mut Variables,
    jar: &Jar,
    hints: &mut Vec<Hint>,
) -> Vec<String> {
    let mut kept = Vec::new();
    let mut seen = HashSet::new();
    for header in headers {
        let lower = header.name.to_ascii_lowercase();
        let value = header.value.as_deref().unwrap_or("");
        // HTTP/2 pseudo-headers, the browser's fetch metadata and client hints.
        if lower.starts_with(':') || lower.starts_with("sec-fetch-") || lower.starts_with("sec-ch-") {
            continue;
        }
        if !seen.insert(lower.clone()) {
            continue;
        }
        let written = match lower.as_str() {
            "cookie" => match cookies_left(value, url, jar) {
                Some(left) => variables.reference("cookie", &left, COOKIE_WHY),
                None => continue,
            },
            "authorization" => variables.reference("authorization", value, AUTH_WHY),
            _ if dropped.contains(&lower.as_str()) => continue,
            _ => {
                hints.extend(hints::in_value(&header.name, &lower, value));
                value.replace("${", "$${")
            }
        };
        kept.push(format!("{}: {}", scalar(&header.name), scalar(&written)));
    }
    kept
}

/// Hints for the query parameters of a URL.
fn query_hints(url: &str) -> Vec<Hint> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .flat_map(|(key, value)| hints::in_value(&format!("?{key}"), key, value))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn connect_step(
    entry: &Entry,
    index: usize,
    url: &str,
    target: &str,
    connection: Option<&str>,
    names: &mut Names,
    variables: &mut Variables,
    jar: &Jar,
    (seen, sent_values): (&Seen, &HashSet<String>),
) -> Step {
    let name = names.unique(&match connection {
        Some(connection) => format!("connect_{connection}"),
        None => "connect".to_owned(),
    });
    let mut comments = vec![format!("entry {index}: {}", shorten(url, 120))];
    let mut lines = vec!["connect:".to_owned(), format!("  name: {name}")];
    if let Some(connection) = connection {
        lines.push(format!("  connection: {connection}"));
    }
    let written_url = match url.strip_prefix(target) {
        Some(rest) => format!("${{target}}{}", rest.replace("${", "$${")),
        None => url.replace("${", "$${"),
    };
    lines.push(format!("  url: {}", scalar(&written_url)));
    if let Some(origin) = entry.request_header("origin") {
        lines.push(format!("  origin: {}", template(origin)));
    }
    let offered: Vec<String> = entry
        .request_header("sec-websocket-protocol")
        .map(|list| {
            list.split(',')
                .map(|protocol| protocol.trim().to_owned())
                .filter(|protocol| !protocol.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !offered.is_empty() {
        lines.push(format!(
            "  subprotocols: [{}]",
            offered
                .iter()
                .map(|protocol| template(protocol))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut hints = query_hints(url);
    let headers = kept_headers(
        url,
        &entry.request.headers,
        HANDSHAKE_HEADERS,
        variables,
        jar,
        &mut hints,
    );
    if !headers.is_empty() {
        lines.push(format!("  headers: {{ {} }}", headers.join(", ")));
    }
    if entry
        .request_header("sec-websocket-extensions")
        .is_some_and(|extensions| extensions.contains("permessage-deflate"))
    {
        comments.push("the browser offered permessage-deflate; this connect offers no compression".to_owned());
    }
    let picked = har::header(response_headers(entry), "sec-websocket-protocol").filter(|picked| !picked.is_empty());
    match picked {
        Some(picked) if offered.iter().any(|protocol| protocol == picked) => {
            lines.push(format!("  expect: {{ status: 101, subprotocol: {} }}", scalar(picked)));
        }
        _ => lines.push("  expect: { status: 101 }".to_owned()),
    }
    correlate_request(
        url,
        &entry.request.headers,
        seen,
        sent_values,
        &mut hints,
        &mut comments,
    );
    hint_comments(&hints, &mut comments);
    Step { comments, lines }
}

/// A JSON message's discriminator: the pointer and the value a matcher can test.
fn discriminator(value: &serde_json::Value) -> Option<(String, String)> {
    use serde_json::Value;
    let usable = |item: &Value| match item {
        Value::String(text) if !text.is_empty() && text.len() <= 64 && hints::in_value("", "", text).is_empty() => {
            Some(text.clone())
        }
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    };
    match value {
        Value::Object(fields) => DISCRIMINATORS.iter().find_map(|key| {
            fields
                .get(*key)
                .and_then(usable)
                .map(|found| (format!("/{key}"), found))
        }),
        // `["event", {...}]`, as Socket.IO-like protocols write events; a leading number is a
        // reference counter, not a kind.
        Value::Array(items) => match items.first() {
            Some(first @ Value::String(text)) if text.parse::<f64>().is_err() => {
                usable(first).map(|found| ("/0".to_owned(), found))
            }
            _ => None,
        },
        _ => None,
    }
}

fn send_step(
    frame: &Frame,
    connection: Option<&str>,
    names: &mut Names,
    seen: &Seen,
    sent_values: &mut HashSet<String>,
) -> Step {
    let mut comments = Vec::new();
    let (base, payload) = match &frame.payload {
        Payload::Text(text) => {
            let json = serde_json::from_str::<serde_json::Value>(text).ok();
            let base = json
                .as_ref()
                .and_then(discriminator)
                .map_or("send".to_owned(), |(_, kind)| kind);
            let mut hints = hints::in_message(text);
            // A value that first came in a reply: correlation, the classic load-test mistake.
            if let Some(json) = &json {
                for (pointer, value) in leaves(json) {
                    if let Some(comment) = correlation(&pointer, &value, seen, sent_values) {
                        hints.retain(|hint| hint.at != pointer);
                        comments.push(comment);
                    }
                }
                for (_, value) in leaves(json) {
                    sent_values.insert(value);
                }
            }
            hint_comments(&hints, &mut comments);
            (base, format!("text: {}", template(text)))
        }
        Payload::Binary(bytes) => ("send_binary".to_owned(), format!("binary: {}", binary(bytes))),
    };
    let name = names.unique(&base);
    let mut fields = vec![format!("name: {name}")];
    if let Some(connection) = connection {
        fields.push(format!("connection: {connection}"));
    }
    fields.push(payload);
    Step {
        comments,
        lines: vec![format!("send: {{ {} }}", fields.join(", "))],
    }
}

fn receive_step(
    frame: &Frame,
    connection: Option<&str>,
    waited: f64,
    names: &mut Names,
    seen: &mut Seen,
    sent_values: &HashSet<String>,
) -> Step {
    let mut comments = Vec::new();
    let (base, matcher) = match &frame.payload {
        Payload::Text(text) => {
            let json = serde_json::from_str::<serde_json::Value>(text).ok();
            match json.as_ref().and_then(discriminator) {
                Some((pointer, kind)) => {
                    comments.push(format!("recorded: {}", shorten(text, 100)));
                    (
                        kind.clone(),
                        format!("{{ json: {pointer}, equals: {} }}", template(&kind)),
                    )
                }
                None if text.chars().count() <= 80 && hints::in_message(text).is_empty() && json.is_none() => (
                    "receive".to_owned(),
                    format!("{{ type: text, equals: {} }}", template(text)),
                ),
                None => {
                    comments.push(format!("recorded: {}", shorten(text, 100)));
                    ("receive".to_owned(), "{ type: text }".to_owned())
                }
            }
        }
        Payload::Binary(bytes) => {
            comments.push(format!(
                "recorded {} byte(s): {}",
                bytes.len(),
                shorten(&escapes(bytes), 60)
            ));
            ("receive_binary".to_owned(), "{ type: binary }".to_owned())
        }
    };
    let name = names.unique(&base);
    if let Payload::Text(text) = &frame.payload {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
            for (pointer, value) in leaves(&json) {
                if !sent_values.contains(&value) {
                    seen.entry(value).or_insert_with(|| (name.clone(), pointer));
                }
            }
        }
    }
    // Room for a slower server than the recorded one: four times the recorded wait, 5 s at least.
    let timeout = ((waited * 4.0).ceil() as u64).max(5);
    let mut fields = vec![format!("name: {name}")];
    if let Some(connection) = connection {
        fields.push(format!("connection: {connection}"));
    }
    fields.push(format!("timeout: {timeout}s"));
    fields.push(format!("match: {matcher}"));
    Step {
        comments,
        lines: vec![format!("receive: {{ {} }}", fields.join(", "))],
    }
}

/// An `http` step for a request made before the upgrade, and its name.
#[allow(clippy::too_many_arguments)]
fn http_step(
    entry: &Entry,
    index: usize,
    names: &mut Names,
    variables: &mut Variables,
    jar: &Jar,
    seen: &Seen,
    sent_values: &mut HashSet<String>,
) -> (Step, String) {
    let method = entry.request.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let url = &entry.request.url;
    let path = url.split(['?', '#']).next().unwrap_or("");
    let base = path
        .rsplit('/')
        .find(|segment| !segment.is_empty() && !segment.contains(':'))
        .unwrap_or("http");
    let name = names.unique(base);
    let mut comments = vec![format!("entry {index}: {method} {}", shorten(url, 120))];
    let mut lines = vec!["http:".to_owned(), format!("  name: {name}")];
    lines.push(format!("  method: {method}"));
    lines.push(format!("  url: {}", template(url)));
    let mut hints = query_hints(url);
    let headers = kept_headers(url, &entry.request.headers, HTTP_HEADERS, variables, jar, &mut hints);
    let mut body_line = None;
    let mut content_type = None;
    if let Some(post) = &entry.request.post_data {
        let mime = post.mime_type.as_deref().unwrap_or("").to_ascii_lowercase();
        let text = post.text.as_deref().unwrap_or("");
        let json = mime
            .contains("json")
            .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
            .flatten();
        if let Some(json) = json {
            hints.extend(hints::in_message(text));
            for (pointer, value) in leaves(&json) {
                if let Some(comment) = correlation(&pointer, &value, seen, sent_values) {
                    hints.retain(|hint| hint.at != pointer);
                    comments.push(comment);
                }
                sent_values.insert(value);
            }
            body_line = Some(format!("  body: {{ json: {} }}", json_flow(&json, true)));
        } else if mime.starts_with("application/x-www-form-urlencoded") && !post.params.is_empty() {
            let fields: Vec<String> = post
                .params
                .iter()
                .map(|param| {
                    let value = param.value.as_deref().unwrap_or("");
                    hints.extend(hints::in_value(&param.name, &param.name, value));
                    format!("{}: {}", scalar(&param.name), template(value))
                })
                .collect();
            body_line = Some(format!("  body: {{ form: {{ {} }} }}", fields.join(", ")));
        } else if !text.is_empty() {
            hints.extend(hints::in_message(text));
            body_line = Some(format!("  body: {{ text: {} }}", template(text)));
            content_type = post.mime_type.clone().filter(|mime| !mime.is_empty());
        }
    }
    let mut headers = headers;
    if let Some(mime) = content_type {
        headers.push(format!("Content-Type: {}", template(&mime)));
    }
    if !headers.is_empty() {
        lines.push(format!("  headers: {{ {} }}", headers.join(", ")));
    }
    lines.extend(body_line);
    let status = entry.status();
    if (100..=599).contains(&status) {
        lines.push(format!("  expect: {{ status: {status} }}"));
    }
    correlate_request(
        url,
        &entry.request.headers,
        seen,
        sent_values,
        &mut hints,
        &mut comments,
    );
    hint_comments(&hints, &mut comments);
    (Step { comments, lines }, name)
}
