//! The `/json` request/response protocol: every text message is a json object
//! and gets one json reply, so scenarios can match replies by `id` or `type`.
//!
//! - `{"id":1,"type":"ping"}` -> `{"id":1,"type":"ping_ok","request":{...}}`
//! - an object without a string `type` -> `"type":"reply"`
//! - `{"type":"join","room":"r","id":2}` -> `{"type":"joined","room":"r","id":2}`
//! - anything else -> `{"type":"error","error":"..."}`

use serde_json::{json, Value};

/// The reply to one text message.
pub(crate) fn reply_to_text(text: &str) -> String {
    let request = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(request)) => request,
        Ok(_) => return error_reply("expected a json object, e.g. {\"id\":1,\"type\":\"ping\"}"),
        Err(error) => return error_reply(&format!("invalid json: {error}")),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let reply = match request.get("type").and_then(Value::as_str) {
        Some("join") => json!({
            "type": "joined",
            "room": request.get("room").cloned().unwrap_or(Value::Null),
            "id": id,
        }),
        Some(request_type) => json!({
            "id": id,
            "type": format!("{request_type}_ok"),
            "request": request,
        }),
        None => json!({ "id": id, "type": "reply", "request": request }),
    };
    reply.to_string()
}

/// The reply to a binary message, which this protocol does not use.
pub(crate) fn reply_to_binary() -> String {
    error_reply("binary messages are not part of the /json protocol; send json objects as text messages")
}

fn error_reply(error: &str) -> String {
    json!({ "type": "error", "error": error }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Value {
        match serde_json::from_str(&reply_to_text(text)) {
            Ok(value) => value,
            Err(error) => panic!("reply is not json: {error}"),
        }
    }

    #[test]
    fn typed_request_gets_type_ok_with_id_and_request() {
        assert_eq!(
            reply(r#"{"id":7,"type":"ping","body":"hi"}"#),
            json!({"id": 7, "type": "ping_ok", "request": {"id": 7, "type": "ping", "body": "hi"}})
        );
    }

    #[test]
    fn untyped_request_gets_reply_and_null_id() {
        assert_eq!(
            reply(r#"{"body":"hi"}"#),
            json!({"id": null, "type": "reply", "request": {"body": "hi"}})
        );
        assert_eq!(
            reply(r#"{"id":"a","type":3}"#),
            json!({"id": "a", "type": "reply", "request": {"id": "a", "type": 3}})
        );
    }

    #[test]
    fn join_gets_joined_with_room() {
        assert_eq!(
            reply(r#"{"type":"join","room":"4","id":1}"#),
            json!({"type": "joined", "room": "4", "id": 1})
        );
    }

    #[test]
    fn non_objects_get_errors() {
        let not_json = reply("hello");
        assert_eq!(not_json["type"], "error");
        assert!(not_json["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("invalid json: ")));
        assert_eq!(
            reply("[1,2]"),
            json!({"type": "error", "error": "expected a json object, e.g. {\"id\":1,\"type\":\"ping\"}"})
        );
    }
}
