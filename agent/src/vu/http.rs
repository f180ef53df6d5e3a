//! The http step: renders the request (URL, headers, body, the jar's cookies), makes it over
//! the VU's HTTP session, records its outcome (`http_requests`, the status class,
//! `http_duration`, `http_requests_failed`), keeps the response's cookies, checks what the
//! step expects, and extracts values from the body, the headers and the jar.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, HOST, USER_AGENT};
use url::Url;
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::{Incoming, Origin};
use wsfleet_scenario::{FrameKind, Http, HttpBody, Scope, Step};

use super::connect::header;
use super::flow::extract_into;
use super::outcome::{Failure, StepResult};
use super::state::Vu;
use crate::clock;
use crate::failure::{ConnectError, FailureKind};
use crate::http::{HttpSession, HttpTarget};

/// The `User-Agent` of http steps that do not set one.
const USER_AGENT_VALUE: &str = concat!("wsfleet/", env!("CARGO_PKG_VERSION"));

impl Vu {
    pub(super) async fn http_step(&mut self, step: &Step, http: &Http, iteration: u64) -> StepResult {
        let set = SetId::Step(step.id);
        // A request waits for its response: what the sends before it hold leaves first.
        if self.holds_sends() {
            self.flush_held(step.id, iteration).await?;
        }
        let started = clock::now();
        let session = self.http.get_or_insert_with(Box::default);
        let scope_parts = super::state::ScopeParts {
            env: &self.env,
            number: self.number,
            vu_iteration: self.vu_iteration,
            vars: &self.vars,
        };
        let scope = scope_parts.scope(iteration);
        let rendered = render(http, &scope, session);
        let env = self.env.clone();
        let (url, request) = match rendered {
            Ok(rendered) => rendered,
            Err(error) => return Err(self.http_failed(step, set, &error)),
        };
        let target = HttpTarget {
            url: &url,
            tls: env.step_tls.get(&step.id).unwrap_or(&env.tls),
            server_name: http.tls.server_name.as_deref(),
            proxy: http.proxy.as_ref(),
            source: env.source_addresses.next(),
        };
        let deadline = started + http.timeout;
        let connect_deadline = started + http.connect_timeout.min(http.timeout);
        let session = self.http.get_or_insert_with(Box::default);
        let sent = session
            .send(
                &target,
                request,
                http.keep_body,
                deadline,
                connect_deadline,
                &env.recorder,
                set,
            )
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return Err(self.http_failed(step, set, &error)),
        };
        session.store_cookies(&response.headers, &url);
        // A later receive may time what this request caused (`latency_of`), from when it was due.
        self.note_request(step.id, super::protocol::due_at(started, self.lag));
        let now = clock::now();
        {
            let mut recorder = env.recorder.borrow_mut();
            recorder.add(now, set, Counter::HttpRequests, 1);
            if let Some(class) = Counter::http_status_class(response.status) {
                recorder.add(now, set, class, 1);
            }
            recorder.record(now, set, Hist::HttpDuration, now - started);
        }
        let expected_headers = {
            let scope_parts = self.parts();
            let scope = scope_parts.scope(iteration);
            http.expect
                .headers
                .iter()
                .find(|(name, value)| header(&response.headers, name) != Some(value.render(&scope).as_ref()))
                .map(|(name, _)| name.clone())
        };
        let failure = if !http.expect.status_ok(response.status) {
            Some(FailureKind::HttpStatus(response.status))
        } else if let Some(name) = expected_headers {
            tracing::debug!(vu = self.number, step = %step.name, header = %name, "unexpected response header");
            Some(FailureKind::Catalog(ErrorKind::Expectation))
        } else {
            None
        };
        if let Some(kind) = failure {
            tracing::debug!(vu = self.number, step = %step.name, status = response.status, %kind, "http request failed");
            env.recorder.borrow_mut().add(now, set, Counter::HttpRequestsFailed, 1);
            return Err(Failure::new(step.id, kind).into());
        }
        if !http.extract.is_empty() {
            let cookies = self
                .http
                .as_ref()
                .map(|session| session.cookies(&url))
                .unwrap_or_default();
            let origin = Origin {
                message: Some(Incoming::message(&response.body, FrameKind::Text)),
                headers: Some(&response.headers),
                cookies: Some(&cookies),
                ..Origin::default()
            };
            extract_into(&mut self.vars, &http.extract, origin, step.id)?;
        }
        Ok(())
    }

    /// Counts a request that got no response (or could not be made) and fails the step.
    fn http_failed(&self, step: &Step, set: SetId, error: &ConnectError) -> super::outcome::Stop {
        tracing::debug!(vu = self.number, step = %step.name, kind = %error.kind, detail = %error.detail, "http request failed");
        let now = clock::now();
        let mut recorder = self.env.recorder.borrow_mut();
        recorder.add(now, set, Counter::HttpRequests, 1);
        recorder.add(now, set, Counter::HttpRequestsFailed, 1);
        Failure::new(step.id, error.kind).into()
    }
}

/// The request as the step renders it for this VU now: URL, method, headers (the defaults,
/// the step's, the jar's cookies) and body.
fn render(
    http: &Http,
    scope: &Scope<'_>,
    session: &HttpSession,
) -> Result<(Url, hyper::Request<Full<Bytes>>), ConnectError> {
    // A `${...}` script that fails fails the step with `script`.
    let script = |error: wsfleet_scenario::script::ScriptError| ConnectError::new(ErrorKind::Script, error.message);
    let text = http.url.try_render(scope).map_err(script)?;
    let bad = |what: String| ConnectError::new(ErrorKind::Protocol, what);
    let url = Url::parse(&text).map_err(|error| bad(format!("bad URL `{text}`: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("`{text}` is not an http:// or https:// URL")));
    }
    let host = url.host_str().ok_or_else(|| bad(format!("`{text}` has no host")))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let method = hyper::Method::from_bytes(http.method.as_bytes())
        .map_err(|_| bad(format!("`{}` is not an HTTP method", http.method)))?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(&url[url::Position::BeforePath..url::Position::AfterQuery]);
    let headers = request
        .headers_mut()
        .ok_or_else(|| bad(format!("`{text}` cannot be requested")))?;
    let value = |text: &str| HeaderValue::from_str(text).map_err(|_| bad(format!("`{text}` cannot be a header value")));
    headers.insert(HOST, value(&authority)?);
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    if let Some(content_type) = http.body.content_type() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, template) in &http.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(format!("`{name}` is not a header name")))?;
        headers.insert(name, value(&template.try_render(scope).map_err(script)?)?);
    }
    if let Some(jar) = session.cookie_header(&url) {
        // Cookies the step writes itself come first, the jar's after them.
        let cookie = match headers.get(COOKIE).and_then(|written| written.to_str().ok()) {
            Some(written) if !written.is_empty() => format!("{written}; {jar}"),
            _ => jar,
        };
        headers.insert(COOKIE, value(&cookie)?);
    }
    let body = match &http.body {
        HttpBody::Empty => Bytes::new(),
        HttpBody::Text(template) => Bytes::from(template.try_render(scope).map_err(script)?.into_owned()),
        HttpBody::Json(json) => {
            let mut text = String::new();
            json.render_into(scope, &mut text).map_err(script)?;
            Bytes::from(text)
        }
        HttpBody::Bytes(bytes) => Bytes::from(bytes.clone()),
        HttpBody::Form(fields) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, template) in fields {
                form.append_pair(name, &template.try_render(scope).map_err(script)?);
            }
            Bytes::from(form.finish())
        }
    };
    let request = request
        .body(Full::new(body))
        .map_err(|error| bad(format!("cannot build the request: {error}")))?;
    Ok((url, request))
}
