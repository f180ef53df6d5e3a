//! The `http` step: method, URL, headers, body, timeouts, TLS, proxy, the expected response and
//! the values taken from it, each checked with its field's location.

use crate::error::Problems;
use crate::matcher::Source;
use crate::raw::{RawHttp, RawHttpBody, RawStatuses};
use crate::steps::{parse_proxy, Action, Http, HttpBody, HttpExpect, JsonTemplate, Step, DEFAULT_HTTP_TIMEOUT};
use crate::template::Template;

use super::builder::{At, StepBuilder};
use super::connection::header_name_ok;
use super::fields::{compile_template, duration_field};

/// Methods written in another case are refused with the upper-case spelling as the hint:
/// methods are case-sensitive and servers answer `get` with 400 or 501.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Where an http step's values may come from.
const HTTP_SOURCES: [&str; 5] = ["json", "regex", "body", "header", "cookie"];

impl StepBuilder<'_> {
    /// An `http` step: one request, independent of the WebSocket connections.
    pub(super) fn http_step(&mut self, http: &RawHttp, at: At<'_>, problems: &mut Problems<'_>) -> Step {
        let field = at.field;
        let (id, name) = self.name(http.name.as_ref(), at.kind, field, problems);
        // A later receive may time what the request caused (`latency_of`).
        self.send_names.push((name.clone(), id));
        let method = method(http.method.as_deref(), &format!("{field}.method"), problems);
        let url = compile_template(&http.url, &format!("{field}.url"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        let literal_url = url.as_literal().map(str::to_owned);
        if let Some(literal) = &literal_url {
            check_url(literal, &format!("{field}.url"), problems);
        }
        let headers = http
            .headers
            .iter()
            .filter_map(|(header, value)| {
                let at = format!("{field}.headers.{header}");
                if !header_name_ok(header) {
                    problems.add(&at, format!("`{header}` is not a valid header name"), None);
                    return None;
                }
                if ["content-length", "transfer-encoding", "connection", "host"]
                    .iter()
                    .any(|managed| header.eq_ignore_ascii_case(managed))
                {
                    problems.add(
                        &at,
                        format!("`{header}` is set by the HTTP client"),
                        Some("leave it out: it follows from the URL, the body and the kept-alive connection".into()),
                    );
                    return None;
                }
                compile_template(value, &at, &self.known, problems).map(|template| (header.clone(), template))
            })
            .collect();
        let body = match &http.body {
            None => HttpBody::Empty,
            Some(body) => self.http_body(body, &format!("{field}.body"), problems),
        };
        if matches!(method.as_str(), "GET" | "HEAD") && body != HttpBody::Empty {
            problems.add(
                &format!("{field}.body"),
                format!("a {method} request carries no body"),
                Some("use `method: POST` (or PUT, PATCH) to send one".into()),
            );
        }
        let timeout = duration_field(
            http.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_HTTP_TIMEOUT,
            problems,
        );
        let connect_timeout = duration_field(
            http.connect_timeout.as_deref(),
            &format!("{field}.connect_timeout"),
            timeout,
            problems,
        );
        for (given, duration, sub) in [
            (&http.timeout, timeout, "timeout"),
            (&http.connect_timeout, connect_timeout, "connect_timeout"),
        ] {
            if given.is_some() && duration.is_zero() {
                problems.add(
                    &format!("{field}.{sub}"),
                    "a timeout of 0 lets no request finish",
                    Some("give a positive duration, e.g. `5s`".into()),
                );
            }
        }
        if http.tls.is_some() && literal_url.as_deref().is_some_and(|url| url.starts_with("http://")) {
            problems.add(
                &format!("{field}.tls"),
                "`tls` applies to https:// URLs, and this one is http://",
                Some("use an https:// URL or leave `tls` out".into()),
            );
        }
        let tls = self.tls_options(http.tls.as_ref(), field, problems);
        let proxy = http.proxy.as_deref().and_then(|text| match parse_proxy(text) {
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
        let expect = self.http_expect(http, field, problems);
        let extract = self.extractions(&http.extract, &format!("{field}.extract"), &HTTP_SOURCES, problems);
        let keep_body = extract
            .iter()
            .any(|extraction| matches!(extraction.source, Source::Json(_) | Source::Regex | Source::Body));
        Step {
            id,
            name,
            action: Action::Http(Box::new(Http {
                method,
                url,
                headers,
                body,
                timeout,
                connect_timeout,
                tls,
                proxy,
                expect,
                extract,
                keep_body,
            })),
        }
    }

    /// One body of `text`, `json`, `file` or `form`.
    fn http_body(&self, body: &RawHttpBody, field: &str, problems: &mut Problems<'_>) -> HttpBody {
        let given = [
            body.text.is_some(),
            body.json.is_some(),
            body.file.is_some(),
            body.form.is_some(),
        ]
        .into_iter()
        .filter(|given| *given)
        .count();
        if given != 1 {
            problems.add(
                field,
                if given == 0 {
                    "a body needs its contents"
                } else {
                    "give only one kind of body"
                },
                Some("write one of `text: ...`, `json: {...}`, `file: path` or `form: { field: value }`".into()),
            );
        }
        if let Some(text) = &body.text {
            return compile_template(text, &format!("{field}.text"), &self.known, problems)
                .map_or(HttpBody::Empty, HttpBody::Text);
        }
        if let Some(json) = &body.json {
            let known = &self.known;
            return HttpBody::Json(JsonTemplate::build(json, &mut |text, path| {
                compile_template(text, &format!("{field}.json{path}"), known, problems)
            }));
        }
        if let Some(file) = &body.file {
            return HttpBody::Bytes(self.file(file, &format!("{field}.file"), problems));
        }
        if let Some(form) = &body.form {
            return HttpBody::Form(
                form.iter()
                    .filter_map(|(name, value)| {
                        compile_template(value, &format!("{field}.form.{name}"), &self.known, problems)
                            .map(|template| (name.clone(), template))
                    })
                    .collect(),
            );
        }
        HttpBody::Empty
    }

    /// The statuses (200-399 unless given) and headers the response must have.
    fn http_expect(&self, http: &RawHttp, field: &str, problems: &mut Problems<'_>) -> HttpExpect {
        let Some(expect) = &http.expect else {
            return HttpExpect {
                statuses: None,
                headers: Vec::new(),
            };
        };
        let statuses = expect.status.as_ref().map(|statuses| {
            let list = match statuses {
                RawStatuses::One(status) => vec![*status],
                RawStatuses::Many(list) => list.clone(),
            };
            if list.is_empty() {
                problems.add(
                    &format!("{field}.expect.status"),
                    "an empty list of statuses accepts no response",
                    Some("list at least one status, or leave `status` out for 200-399".into()),
                );
            }
            for status in &list {
                if !(200..=599).contains(status) {
                    problems.add(
                        &format!("{field}.expect.status"),
                        format!("{status} is not a final HTTP status"),
                        Some("statuses go from 200 to 599".into()),
                    );
                }
            }
            list
        });
        let headers = expect
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
            .collect();
        HttpExpect { statuses, headers }
    }
}

/// The method, `GET` when absent: an HTTP token, upper case for the standard ones.
fn method(text: Option<&str>, field: &str, problems: &mut Problems<'_>) -> String {
    let Some(text) = text else {
        return "GET".to_owned();
    };
    if text.is_empty() || !header_name_ok(text) {
        problems.add(
            field,
            format!("`{text}` is not an HTTP method"),
            Some(format!("use one of: {}", STANDARD_METHODS.join(", "))),
        );
    } else if let Some(standard) = STANDARD_METHODS
        .iter()
        .find(|standard| standard.eq_ignore_ascii_case(text) && **standard != text)
    {
        problems.add(
            field,
            format!("methods are case-sensitive; `{text}` is not `{standard}`"),
            Some(format!("write `{standard}`")),
        );
    } else if text == "CONNECT" {
        problems.add(
            field,
            "CONNECT opens a tunnel, not a request",
            Some("to go through a proxy, give `proxy:`".into()),
        );
    }
    text.to_owned()
}

/// A URL written without templates: `http://` or `https://` with a host.
fn check_url(url: &str, field: &str, problems: &mut Problems<'_>) {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        problems.add(
            field,
            format!("`{url}` is not an HTTP URL"),
            Some(if url.starts_with("ws://") || url.starts_with("wss://") {
                "a WebSocket URL belongs in a `connect` step; http steps take http:// or https://".into()
            } else {
                "URLs start with http:// or https://".into()
            }),
        );
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        problems.add(field, format!("`{url}` has no host"), None);
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        if port.parse::<u16>().is_err() {
            problems.add(field, format!("port `{port}` is not a number from 0 to 65535"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::steps::{Action, Http, HttpBody, JsonTemplate};
    use crate::{Bundle, Location, Problem, Scenario, ScenarioError};

    fn compile(steps: &str) -> Result<Scenario, ScenarioError> {
        let source = format!(
            "name: h\nvariables: {{ base: 'http://127.0.0.1:9' }}\nload: {{ vus: 1, iterations: 1 }}\nsteps:\n{steps}"
        );
        Bundle {
            path: "s.yaml".into(),
            source,
            files: BTreeMap::from([("body.bin".to_owned(), b"\x00\x01".to_vec())]),
        }
        .compile()
    }

    fn http(steps: &str) -> Http {
        let scenario = compile(steps).unwrap_or_else(|error| panic!("{error}"));
        let Action::Http(http) = &scenario.parts[0].steps[0].action else {
            panic!("not an http step")
        };
        (**http).clone()
    }

    fn problems(steps: &str) -> Vec<Problem> {
        compile(steps).expect_err("should be refused").problems().to_vec()
    }

    fn only(steps: &str) -> Problem {
        let found = problems(steps);
        assert_eq!(found.len(), 1, "{found:#?}");
        found[0].clone()
    }

    #[test]
    fn the_agreed_shape_compiles() {
        let scenario = compile(
            "  - http:
      name: login
      method: POST
      url: '${base}/login'
      headers: { Accept: application/json }
      body: { json: { user: 'u${vu}', remember: true } }
      timeout: 5s
      connect_timeout: 2s
      expect: { status: 200 }
      extract: { token: { json: /token }, sid: { cookie: sid }, loc: { header: Location } }
  - connect: { url: 'ws://127.0.0.1:9/ws?token=${token}', headers: { X-Sid: '${sid}' } }
",
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(scenario.step_names, vec!["login", "connect"]);
        let Action::Http(http) = &scenario.parts[0].steps[0].action else {
            panic!("not an http step")
        };
        assert_eq!(http.method, "POST");
        assert_eq!(http.timeout, std::time::Duration::from_secs(5));
        assert_eq!(http.connect_timeout, std::time::Duration::from_secs(2));
        assert!(http.expect.status_ok(200) && !http.expect.status_ok(204));
        assert_eq!(http.extract.len(), 3);
        assert!(http.keep_body);
        let HttpBody::Json(JsonTemplate::Object(fields)) = &http.body else {
            panic!("not a JSON object body: {:?}", http.body)
        };
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn defaults_and_other_bodies() {
        let get = http("  - http: { url: 'http://h/x' }\n");
        assert_eq!(get.method, "GET");
        assert_eq!(get.body, HttpBody::Empty);
        assert_eq!(get.timeout, crate::steps::DEFAULT_HTTP_TIMEOUT);
        assert_eq!(get.connect_timeout, get.timeout);
        assert!(get.expect.status_ok(302) && !get.expect.status_ok(404));
        assert!(!get.keep_body);
        let file = http("  - http: { method: PUT, url: 'http://h/x', body: { file: body.bin } }\n");
        assert_eq!(file.body, HttpBody::Bytes(vec![0, 1]));
        let form = http("  - http: { method: POST, url: 'http://h/x', body: { form: { a: '1', b: '${vu}' } } }\n");
        assert!(matches!(&form.body, HttpBody::Form(fields) if fields.len() == 2));
        let listed = http("  - http: { url: 'http://h/x', expect: { status: [401, 403] } }\n");
        assert!(listed.expect.status_ok(403) && !listed.expect.status_ok(200));
    }

    #[test]
    fn each_bad_field_is_located() {
        let problem = only("  - http: { url: 'ws://h/x' }\n");
        assert_eq!(problem.field, "steps[0].http.url");
        assert_eq!(problem.location, Some(Location { line: 5, column: 18 }));
        assert!(problem.hint.unwrap().contains("connect"));
        let problem = only("  - http: { method: post, url: 'http://h/x' }\n");
        assert_eq!(problem.field, "steps[0].http.method");
        assert_eq!(problem.hint.as_deref(), Some("write `POST`"));
        assert_eq!(
            only("  - http: { method: 'GE T', url: 'http://h/' }\n").field,
            "steps[0].http.method"
        );
        let problem = only("  - http: { method: POST, url: 'http://h/', body: { text: a, form: { b: c } } }\n");
        assert_eq!(problem.field, "steps[0].http.body");
        assert_eq!(
            only("  - http: { url: 'http://h/', body: { text: a } }\n").message,
            "a GET request carries no body"
        );
        assert_eq!(
            only("  - http: { method: POST, url: 'http://h/', body: { text: '${nope}' } }\n").field,
            "steps[0].http.body.text"
        );
        assert_eq!(
            only("  - http: { method: POST, url: 'http://h/', body: { json: { a: [1, '${nope}'] } } }\n").field,
            "steps[0].http.body.json.a[1]"
        );
        assert_eq!(
            only("  - http: { method: POST, url: 'http://h/', body: { file: missing.bin } }\n").field,
            "steps[0].http.body.file"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', timeout: 5 parsecs }\n").field,
            "steps[0].http.timeout"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', connect_timeout: 0s }\n").field,
            "steps[0].http.connect_timeout"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', proxy: 'socks5://p:1' }\n").field,
            "steps[0].http.proxy"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', tls: { insecure_skip_verify: true } }\n").field,
            "steps[0].http.tls"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', expect: { status: 99 } }\n").field,
            "steps[0].http.expect.status"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', expect: { status: [] } }\n").field,
            "steps[0].http.expect.status"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', headers: { Content-Length: '3' } }\n").field,
            "steps[0].http.headers.Content-Length"
        );
        assert_eq!(
            only("  - http: { url: 'http://h/', extract: { t: { close: code } } }\n").field,
            "steps[0].http.extract.t.close"
        );
        assert_eq!(
            only("  - http: { url: 'http://h:99999/' }\n").field,
            "steps[0].http.url"
        );
        let problem = only("  - http: { url: 'http://h/', methd: GET }\n");
        assert_eq!(problem.field, "steps[0].http.methd");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `method`?"));
    }

    #[test]
    fn cookies_are_extracted_only_where_a_jar_answers() {
        let problem = only("  - connect: { url: 'ws://h/', extract: { s: { cookie: sid } } }\n");
        assert_eq!(problem.field, "steps[0].connect.extract.s.cookie");
    }
}
