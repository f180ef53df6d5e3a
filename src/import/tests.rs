//! The import against the checked-in Chrome recording (tests/data/har/chrome-session.har) and
//! against hostile files: every imported scenario validates, every bad file gets an error that
//! names the entry and field.

use super::convert::{Options, Think};
use super::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/har/chrome-session.har");

fn fixture() -> Vec<u8> {
    std::fs::read(FIXTURE).expect("the fixture is checked in")
}

fn options() -> Options {
    Options {
        filter: None,
        think: Think::Keep,
        http_steps: false,
    }
}

/// Imports, checks that the scenario validates, and returns it parsed.
fn imported(bytes: &[u8], options: &Options) -> (Imported, serde_norway::Value) {
    let imported = import(bytes, "session.har", "session", options).unwrap_or_else(|error| panic!("{error}"));
    let problems = problems(&imported.yaml, "imported.yaml");
    assert!(problems.is_empty(), "{problems:#?}\n{}", imported.yaml);
    let value = serde_norway::from_str(&imported.yaml).expect("yaml");
    (imported, value)
}

/// Each step as `kind` or `kind:name`, and a think as `think:DURATION`.
fn outline(scenario: &serde_norway::Value) -> Vec<String> {
    scenario["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .map(|step| {
            let (kind, body) = step.as_mapping().and_then(|map| map.iter().next()).expect("one key");
            let kind = kind.as_str().expect("kind");
            match body {
                serde_norway::Value::String(duration) => format!("{kind}:{duration}"),
                body => match body["name"].as_str() {
                    Some(name) => format!("{kind}:{name}"),
                    None => kind.to_owned(),
                },
            }
        })
        .collect()
}

fn error_of(bytes: &[u8], options: &Options) -> String {
    match import(bytes, "session.har", "session", options) {
        Ok(imported) => panic!("imported:\n{}", imported.yaml),
        Err(error) => error,
    }
}

#[test]
fn chrome_recording_becomes_a_valid_scenario_in_recorded_order() {
    let (imported, scenario) = imported(&fixture(), &options());
    assert_eq!(
        outline(&scenario),
        [
            "connect:connect_json",
            "receive:hello",
            "think:240ms",
            "send:join",
            "receive:joined",
            "think:240ms",
            "connect:connect_ticker",
            "think:250ms",
            "send:send",
            "receive:receive",
            "think:700ms",
            "send:ping",
            "receive:ping_ok",
            "think:496ms",
            "send:send_binary",
            "receive:receive_binary",
            "close:close_json",
            "close:close_ticker",
        ]
    );
    let steps = scenario["steps"].as_sequence().expect("steps");
    let connect = &steps[0]["connect"];
    assert_eq!(
        connect["url"],
        "${target}/json?room=lobby&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl"
    );
    assert_eq!(scenario["target"], "ws://app.test");
    assert_eq!(connect["origin"], "http://app.test");
    assert_eq!(connect["subprotocols"][0], "chat.v1");
    assert_eq!(connect["subprotocols"][1], "chat.v2");
    assert_eq!(connect["expect"]["subprotocol"], "chat.v1");
    // The cookie became a variable; the browser's own headers are gone; a custom one stays.
    assert_eq!(connect["headers"]["Cookie"], "${cookie}");
    assert_eq!(
        scenario["variables"]["cookie"],
        "sid=Q2x1c3RlcjpBQkNERUZHSElKS0xNTk9Q; theme=dark"
    );
    assert_eq!(connect["headers"]["X-Client"], "web 1.4");
    assert_eq!(connect["headers"].as_mapping().map(|headers| headers.len()), Some(2));
    // Sends as recorded (a recorded `${` is kept literal); binary bytes as escapes.
    assert_eq!(
        steps[11]["send"]["text"],
        r#"{"type":"ping","id":2,"trace":"0f8fad5b-d9cb-469f-a165-70867728950e","sent":1796025602000,"session":"sess-8c1f2e","note":"costs $${price}"}"#
    );
    assert_eq!(steps[14]["send"]["binary"], r"\x00\x01\x02\xff\\\\");
    // Matchers proposed from the replies.
    assert_eq!(steps[4]["receive"]["match"]["json"], "/type");
    assert_eq!(steps[4]["receive"]["match"]["equals"], "joined");
    assert_eq!(steps[9]["receive"]["match"]["equals"], "subscribed EURUSD");
    assert_eq!(steps[15]["receive"]["match"]["type"], "binary");
    assert_eq!(steps[8]["send"]["connection"], "ticker");
    // Comments where a value should be a parameter, correlation first.
    for expected in [
        "# parameterize? ?token `eyJhbGciOiJIUzI1NiJ9",
        "# parameterize? /session `sess-8c1f2e` came in `joined` at /session: add `extract: { session: { json: /session } }` to that step",
        "# parameterize? /trace `0f8fad5b-d9cb-469f-a165-70867728950e` looks like a UUID",
        "# parameterize? /sent `1796025602000` looks like a timestamp in milliseconds",
        "# the browser offered permessage-deflate",
    ] {
        assert!(imported.yaml.contains(expected), "{expected}\n{}", imported.yaml);
    }
    assert_eq!(
        imported.yaml.matches("looks like a credential").count(),
        0,
        "the correlation replaces it"
    );
    assert_eq!(imported.counts.sends, 4);
    assert_eq!(imported.counts.receives, 5);
    assert_eq!(imported.counts.connections, 2);
    assert_eq!(imported.counts.thinks, 5);
    assert_eq!(imported.counts.hints, 6);
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
    assert!(imported.warnings[0]
        .contains("_webSocketMessages[7]: the browser reported a WebSocket error: net::ERR_CONNECTION_CLOSED"));
}

#[test]
fn requests_before_the_upgrade_become_http_steps() {
    let with_http = Options {
        http_steps: true,
        ..options()
    };
    let (result, scenario) = imported(&fixture(), &with_http);
    // The page's document is the browser's business; its login fetch is the test's.
    assert_eq!(
        outline(&scenario)[..3],
        ["http:login", "think:380ms", "connect:connect_json"]
    );
    let login = &scenario["steps"][0]["http"];
    assert_eq!(login["method"], "POST");
    assert_eq!(login["url"], "http://app.test/login");
    assert_eq!(login["headers"]["Accept"], "application/json");
    assert_eq!(login["headers"]["Origin"], "http://app.test");
    assert_eq!(login["headers"].as_mapping().map(|headers| headers.len()), Some(2));
    assert_eq!(login["body"]["json"]["user"], "ann");
    assert_eq!(login["body"]["json"]["password"], "s3cret");
    assert_eq!(login["expect"]["status"], 200);
    // The login set `sid` for app.test: the VU's cookie jar sends it there, the variable keeps
    // the rest; feed.test gets its own.
    assert_eq!(scenario["variables"]["cookie"], "theme=dark");
    let ticker = scenario["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|step| step["connect"]["name"] == "connect_ticker")
        .expect("the ticker's connect");
    assert_eq!(ticker["connect"]["headers"]["Cookie"], "${cookie_2}");
    assert_eq!(
        scenario["variables"]["cookie_2"],
        "sid=Q2x1c3RlcjpBQkNERUZHSElKS0xNTk9Q"
    );
    for expected in [
        "# parameterize? /password `s3cret` looks like a credential or session value",
        "# parameterize? ?token `eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ....` came in `login` at /token: add `extract: { token: { json: /token } }` to that step and write `${token}` here",
    ] {
        assert!(result.yaml.contains(expected), "{expected}\n{}", result.yaml);
    }
    assert_eq!(result.counts.http, 1);

    // Headers the HTTP client owns are left out, so the scenario validates whatever was recorded.
    let hop_by_hop = changed(|har| {
        let headers = har["log"]["entries"][1]["request"]["headers"]
            .as_array_mut()
            .expect("headers");
        for (name, value) in [
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            (":authority", "app.test"),
        ] {
            headers.push(serde_json::json!({ "name": name, "value": value }));
        }
    });
    let (_, scenario) = imported(&hop_by_hop, &with_http);
    assert_eq!(
        scenario["steps"][0]["http"]["headers"]
            .as_mapping()
            .map(|headers| headers.len()),
        Some(2)
    );
}

#[test]
fn the_filter_picks_entries_and_lists_them_when_none_match() {
    let only_ticker = Options {
        filter: Some("feed.test".to_owned()),
        ..options()
    };
    let (_, scenario) = imported(&fixture(), &only_ticker);
    // One connection: no connection names.
    assert_eq!(
        outline(&scenario),
        [
            "connect:connect",
            "think:250ms",
            "send:send",
            "receive:receive",
            "close:close"
        ]
    );
    assert_eq!(scenario["target"], "wss://feed.test");
    let none = Options {
        filter: Some("nowhere".to_owned()),
        ..options()
    };
    assert_eq!(
        error_of(&fixture(), &none),
        "no WebSocket entry of `session.har` has `nowhere` in its URL; the file holds: entry 2: \
         ws://app.test/json?room=lobby&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl, entry 3: wss://feed.test/ticker"
    );
}

#[test]
fn think_times_scale_or_go() {
    let thinks = |think| {
        let (_, scenario) = imported(&fixture(), &Options { think, ..options() });
        outline(&scenario)
            .into_iter()
            .filter(|step| step.starts_with("think"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        thinks(Think::Scale(0.5)),
        [
            "think:120ms",
            "think:120ms",
            "think:125ms",
            "think:350ms",
            "think:248ms"
        ]
    );
    assert_eq!(thinks(Think::None), Vec::<String>::new());
    assert_eq!("scale=2".parse::<Think>(), Ok(Think::Scale(2.0)));
    assert!("scale=0".parse::<Think>().unwrap_err().contains("not a factor above 0"));
    assert!("scale=-1".parse::<Think>().is_err());
    assert!("fast"
        .parse::<Think>()
        .unwrap_err()
        .contains("write `keep`, `none` or `scale=F`"));
}

#[test]
fn firefox_recordings_have_the_handshake_only() {
    // Firefox writes the upgrade as an http:// request answered 101, and no messages.
    let har = serde_json::json!({"log": {"version": "1.2", "creator": {"name": "Firefox", "version": "133.0"}, "entries": [{
        "startedDateTime": "2026-11-30T09:00:00.000+01:00",
        "time": 3.0,
        "request": {"method": "GET", "url": "http://app.test/json", "headers": [
            {"name": "Upgrade", "value": "websocket"}, {"name": "Origin", "value": "http://app.test"}]},
        "response": {"status": 101, "headers": []}
    }]}});
    let (imported, scenario) = imported(har.to_string().as_bytes(), &options());
    assert_eq!(outline(&scenario), ["connect:connect", "close:close"]);
    assert_eq!(scenario["target"], "ws://app.test");
    assert_eq!(imported.warnings.len(), 1);
    assert!(
        imported.warnings[0]
            .contains("has no `_webSocketMessages`: Firefox exported the handshake but not the messages"),
        "{}",
        imported.warnings[0]
    );
}

#[test]
fn playwright_recordings_read_like_chrome() {
    let har = serde_json::json!({"log": {"version": "1.2", "creator": {"name": "Playwright", "version": "1.49.0"}, "entries": [{
        "startedDateTime": "2026-11-30T08:00:00.000Z",
        "time": 5,
        "_resourceType": "websocket",
        "request": {"method": "GET", "url": "ws://app.test/echo", "headers": []},
        "response": {"status": 101, "headers": []},
        "_webSocketMessages": [
            {"type": "send", "time": 1_796_025_600.25_f64, "opcode": 1, "data": "hi"},
            {"type": "receive", "time": 1_796_025_600.5_f64, "opcode": 1, "data": "hi"}
        ]
    }]}});
    let (imported, scenario) = imported(har.to_string().as_bytes(), &options());
    assert_eq!(
        outline(&scenario),
        [
            "connect:connect",
            "think:250ms",
            "send:send",
            "receive:receive",
            "close:close"
        ]
    );
    assert!(imported.yaml.contains("(recorded by Playwright 1.49.0)"));
}

/// The fixture as JSON, changed by `change`.
fn changed(change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&fixture()).expect("json");
    change(&mut value);
    value.to_string().into_bytes()
}

#[test]
fn hostile_files_get_errors_that_say_where_and_what_to_do() {
    let bytes = fixture();
    let entry = "entry 2 (ws://app.test/json?room=lobby&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl)";
    let cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![
        (
            "truncated",
            bytes[..bytes.len() / 2].to_vec(),
            vec!["`session.har` ends early (line".into(), "export the HAR again and let the export finish".into()],
        ),
        (
            "not json",
            b"<html>not a har</html>".to_vec(),
            vec!["`session.har` is not valid JSON (line 1, column 1)".into(), "\"Export HAR\"".into()],
        ),
        ("empty", Vec::new(), vec!["`session.har` ends early".into()]),
        (
            "an array",
            b"[]".to_vec(),
            vec!["`session.har` holds a JSON list; a HAR file holds `{\"log\": {\"entries\": [...]}}`".into()],
        ),
        ("no entries", br#"{"log":{}}"#.to_vec(), vec!["field `log`: missing field `entries`".into()]),
        ("entries not a list", br#"{"log":{"entries":{}}}"#.to_vec(), vec!["field `log.entries`: invalid type: map".into()]),
        (
            "time as text",
            changed(|har| har["log"]["entries"][2]["_webSocketMessages"][1]["time"] = "soon".into()),
            vec![format!("{entry}, field `_webSocketMessages[1].time`: invalid type: string \"soon\", expected f64"), "fix or remove that entry".into()],
        ),
        (
            "data as a number",
            changed(|har| har["log"]["entries"][2]["_webSocketMessages"][3]["data"] = 7.into()),
            vec![format!("{entry}, field `_webSocketMessages[3].data`: invalid type: integer `7`, expected a string")],
        ),
        (
            "no url",
            changed(|har| {
                har["log"]["entries"][3]["request"]
                    .as_object_mut()
                    .expect("request")
                    .remove("url");
            }),
            vec!["entry 3, field `request`: missing field `url`".into()],
        ),
        (
            "headers as a map",
            changed(|har| har["log"]["entries"][2]["request"]["headers"] = serde_json::json!({"Origin": "x"})),
            vec![format!("{entry}, field `request.headers`: invalid type: map, expected a sequence")],
        ),
        (
            "bad base64",
            changed(|har| har["log"]["entries"][2]["_webSocketMessages"][5]["data"] = "not base64!".into()),
            vec![format!("`session.har`: {entry}, field `_webSocketMessages[5].data`: not base64 (Invalid"), "remove that message".into()],
        ),
        (
            "unknown message type",
            changed(|har| har["log"]["entries"][2]["_webSocketMessages"][1]["type"] = "sent".into()),
            vec![format!("{entry}, field `_webSocketMessages[1].type`: `sent` is not a message type; Chrome, Edge and Playwright write `send`, `receive` or `error`")],
        ),
        (
            "unknown opcode",
            changed(|har| har["log"]["entries"][2]["_webSocketMessages"][1]["opcode"] = 3.into()),
            vec![format!("{entry}, field `_webSocketMessages[1].opcode`: 3 is not a data opcode (1 text, 2 binary)")],
        ),
        (
            "bad start time",
            changed(|har| har["log"]["entries"][3]["startedDateTime"] = "yesterday".into()),
            vec!["entry 3 (wss://feed.test/ticker), field `startedDateTime`: `yesterday` is not an RFC 3339 time".into()],
        ),
        (
            "no websocket",
            changed(|har| {
                har["log"]["entries"].as_array_mut().expect("entries").truncate(2);
            }),
            vec!["`session.har` holds no WebSocket connection among its 2 entries".into(), "record again with the Network panel open".into()],
        ),
        (
            "nested too deep",
            format!("{{\"log\":{{\"pages\":{}{},\"entries\":[]}}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            vec!["`session.har` holds no WebSocket connection among its 0 entries".into()],
        ),
        (
            "trailing garbage",
            [bytes.as_slice(), b"}}"].concat(),
            vec!["`session.har` is not valid JSON".into(), "trailing characters".into()],
        ),
    ];
    for (case, bytes, expected) in cases {
        let error = error_of(&bytes, &options());
        for part in expected {
            assert!(error.contains(&part), "{case}: {error:?} should say {part:?}");
        }
    }
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let bytes = [b"\xef\xbb\xbf".as_slice(), &fixture()].concat();
    imported(&bytes, &options());
}
