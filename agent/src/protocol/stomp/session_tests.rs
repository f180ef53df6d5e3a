use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use bytes::Bytes;

use super::frame::Frame;
use super::*;

fn options() -> ConnectOptions {
    ConnectOptions {
        host: "/".into(),
        login: Some("guest".into()),
        passcode: Some("gu:est".into()),
        send_heartbeat: Some(Duration::from_millis(1000)),
        want_heartbeat: Some(Duration::from_millis(2000)),
        headers: vec![("client-id".into(), "vu-1".into())],
    }
}

fn all(session: &mut Session) -> Vec<Received> {
    std::iter::from_fn(|| session.next_received()).collect()
}

#[test]
fn connect_offers_versions_credentials_and_heart_beats() {
    let mut session = Session::new(options());
    let message = session.connect_message();
    assert_eq!(
        message.into_text().unwrap().as_str(),
        "CONNECT\naccept-version:1.2,1.1\nhost:/\nheart-beat:1000,2000\nlogin:guest\npasscode:gu:est\nclient-id:vu-1\n\n\0"
    );
    assert_eq!(session.state(), State::Connecting);
}

#[test]
fn heart_beats_agree_on_the_larger_interval_or_none() {
    let mut session = Session::new(options());
    session.connect_message();
    session
        .feed(&Message::text("CONNECTED\nversion:1.2\nheart-beat:5000,500\n\n\0\n"))
        .unwrap();
    assert_eq!(all(&mut session), vec![Received::Connected, Received::Heartbeat]);
    assert!(session.ready());
    assert_eq!(session.version(), Some("1.2"));
    // We send at least every 1000 ms, the server wants every 500: 1000.
    assert_eq!(session.send_every(), Some(Duration::from_millis(1000)));
    // We want every 2000, the server can send every 5000: 5000.
    assert_eq!(session.expect_every(), Some(Duration::from_millis(5000)));
    let start = Instant::now();
    assert!(!session.heartbeat_due(start, start + Duration::from_millis(999)));
    assert!(session.heartbeat_due(start, start + Duration::from_millis(1000)));
    assert!(!session.server_silent(start, start + Duration::from_millis(9999)));
    assert!(session.server_silent(start, start + Duration::from_millis(10_000)));

    let mut session = Session::new(options());
    session.connect_message();
    session.feed(&Message::text("CONNECTED\nheart-beat:0,0\n\n\0")).unwrap();
    assert_eq!(session.send_every(), None);
    assert_eq!(session.expect_every(), None);
    assert!(!session.server_silent(start, start + Duration::from_secs(3600)));
}

#[test]
fn frames_split_and_shared_across_messages_come_out_in_order() {
    let mut session = Session::new(options());
    session.connect_message();
    session.feed(&Message::text("CONNECTED\nversion:1.2\n")).unwrap();
    assert_eq!(session.next_received(), None);
    session
        .feed(&Message::text(
            "\n\0\nMESSAGE\ndestination:/queue/a\nsubscription:sub-0\n\nfirst\0\nRECEIPT\nrec",
        ))
        .unwrap();
    session.feed(&Message::binary(&b"eipt-id:r-0\n\n\0\n"[..])).unwrap();
    session.feed(&Message::text("\n")).unwrap();
    let received = all(&mut session);
    assert_eq!(received.len(), 7, "{received:?}");
    assert_eq!(received[0], Received::Connected);
    assert_eq!(received[1], Received::Heartbeat);
    let Received::Message(message) = &received[2] else {
        panic!("{received:?}")
    };
    assert_eq!(message.get("destination"), Some("/queue/a"));
    assert_eq!(&message.body[..], b"first");
    assert_eq!(received[3], Received::Heartbeat);
    assert_eq!(received[4], Received::Receipt("r-0".into()));
    assert_eq!(received[5], Received::Heartbeat);
    assert_eq!(received[6], Received::Heartbeat);
}

#[test]
fn an_error_frame_fails_the_session_with_its_message() {
    let mut session = Session::new(options());
    session.connect_message();
    session
        .feed(&Message::text(
            "ERROR\nmessage:Access refused for user 'guest'\ncontent-type:text/plain\n\nLogin failed\0\n",
        ))
        .unwrap();
    let Some(Received::Error(why, frame)) = session.next_received() else {
        panic!("no error")
    };
    assert_eq!(why, "Access refused for user 'guest'");
    assert_eq!(&frame.body[..], b"Login failed");
    assert_eq!(session.state(), State::Failed);

    let mut session = Session::new(options());
    session.connect_message();
    session.feed(&Message::text("ERROR\n\nno header\0")).unwrap();
    assert!(matches!(session.next_received(), Some(Received::Error(why, _)) if why == "no header"));
}

#[test]
fn frames_that_break_the_session_are_errors() {
    let cases = [
        "CONNECTED\n\n\0CONNECTED\n\n\0",
        "CONNECTED\nheart-beat:1\n\n\0",
        "CONNECTED\nheart-beat:a,b\n\n\0",
        "MESSAGE\n\nno destination\0",
        "RECEIPT\n\n\0",
        "SEND\ndestination:/a\n\n\0",
        "BOGUS\n\n\0",
        "lower\n\n\0",
    ];
    for case in cases {
        let mut session = Session::new(options());
        session.connect_message();
        assert!(session.feed(&Message::text(case)).is_err(), "{case:?}");
    }
}

#[test]
fn ids_disconnect_and_outgoing_frames() {
    let mut session = Session::new(options());
    assert_eq!(session.receipt_id(), "r-0");
    assert_eq!(session.receipt_id(), "r-1");
    assert_eq!(session.subscription_id(), "sub-0");
    let goodbye = session.disconnect_message(Some("r-2"));
    assert_eq!(goodbye.into_text().unwrap().as_str(), "DISCONNECT\nreceipt:r-2\n\n\0");
    assert_eq!(session.state(), State::Disconnecting);
    assert_eq!(heartbeat_message(), Message::text("\n"));
    let binary = to_message(&Frame::new("SEND").header("destination", "/a").with_body(vec![0xff, 0]));
    assert!(matches!(binary, Message::Binary(_)));
}

#[test]
fn as_a_layer_frames_become_items_and_heart_beats_keep_their_period() {
    use crate::protocol::{Decoded, Tick};
    let second = Duration::from_secs(1);
    let mut session = Session::new(options());
    session.connect_message();
    let start = Instant::now();
    let mut out = Vec::new();
    session.decode_into(
        &Message::text("CONNECTED\nversion:1.2\nheart-beat:1000,1000\n\n\0\n"),
        start,
        &mut out,
    );
    assert_eq!(out, vec![Decoded::Connected("1.2".into())]);
    // We send every 1000 ms; the server every 2000, silent after twice that.
    assert_eq!(session.next_due(), Some(start + second));
    let mut ticks = Vec::new();
    session.tick(start + second, &mut ticks);
    assert_eq!(ticks, vec![Tick::Heartbeat(Message::text("\n"))]);
    assert_eq!(session.next_due(), Some(start + 2 * second));

    // A subscription with client acks; a message, a receipt and padding share one WebSocket
    // message, a heart-beat comes alone.
    let (receipt, header) = session.next_receipt();
    session.subscribe("/queue/a", None, AckMode::ClientIndividual, Some(7), &[], Some(&header));
    out.clear();
    session.decode_into(
        &Message::text(format!(
            "MESSAGE\ndestination:/queue/a\nsubscription:sub-0\nmessage-id:m1\nack:a1\n\nhello\0\nRECEIPT\nreceipt-id:{header}\n\n\0\n"
        )),
        start + second,
        &mut out,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let Decoded::Event(event) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!((event.name.as_str(), event.namespace.as_str()), ("/queue/a", "sub-0"));
    assert_eq!(event.reply_to.as_deref(), Some("a1"));
    // The delivery counts in its subscription's set.
    assert_eq!(event.set, Some(7));
    assert_eq!(&event.body[..], b"hello");
    assert_eq!(event.header("message-id"), Some("m1"));
    let Decoded::Ack(ack) = &out[1] else { panic!("{out:?}") };
    assert_eq!(ack.id, receipt);
    out.clear();
    session.decode_into(&Message::text("\n"), start + 2 * second, &mut out);
    assert_eq!(out, vec![Decoded::Heartbeat(None)]);

    // Silence past twice the server's period: the layer says so.
    let silent = start + 6 * second;
    ticks.clear();
    session.tick(silent, &mut ticks);
    assert!(matches!(ticks.as_slice(), [Tick::Silent(_)]), "{ticks:?}");

    // A RECEIPT for an id never asked for, and an ERROR once connected.
    out.clear();
    session.decode_into(&Message::text("RECEIPT\nreceipt-id:x\n\n\0"), silent, &mut out);
    assert!(matches!(out.as_slice(), [Decoded::Violation(_)]), "{out:?}");
    out.clear();
    session.decode_into(&Message::text("ERROR\nmessage:bad destination\n\n\0"), silent, &mut out);
    assert_eq!(
        out,
        vec![Decoded::Failed {
            kind: wsfleet_metrics::ErrorKind::StompError,
            message: "bad destination".into()
        }]
    );
    assert!(session.ended());
}

#[test]
fn an_error_before_connected_is_a_refused_login() {
    use crate::protocol::Decoded;
    let mut session = Session::new(options());
    session.connect_message();
    let mut out = Vec::new();
    session.decode_into(
        &Message::text("ERROR\nmessage:Access refused for user 'guest'\n\n\0"),
        Instant::now(),
        &mut out,
    );
    assert_eq!(
        out,
        vec![Decoded::Refused {
            kind: wsfleet_metrics::ErrorKind::ConnectError,
            namespace: String::new(),
            message: "Access refused for user 'guest'".into()
        }]
    );
}

/// BEGIN takes `tx-N` unless named and opens the transaction; SEND carries it; COMMIT and ABORT
/// close it, the latest open one being the connection's open transaction.
#[test]
fn transactions_open_and_close_in_order() {
    let mut session = Session::new(options());
    let text = |message: Message| message.into_text().expect("a text frame").to_string();
    let (first, begin) = session.begin(None, None);
    assert_eq!(
        (first.as_str(), text(begin).as_str()),
        ("tx-0", "BEGIN\ntransaction:tx-0\n\n\0")
    );
    let (named, begin) = session.begin(Some("pay-7".into()), Some("r-3"));
    assert_eq!(
        (named.as_str(), text(begin).as_str()),
        ("pay-7", "BEGIN\ntransaction:pay-7\nreceipt:r-3\n\n\0")
    );
    assert_eq!(session.open_transaction(), Some("pay-7"));
    let send = session.send("/queue/pay", &[], Bytes::from_static(b"1"), Some("pay-7"), None);
    assert_eq!(
        text(send),
        "SEND\ndestination:/queue/pay\ntransaction:pay-7\ncontent-length:1\n\n1\0"
    );
    assert_eq!(
        text(session.end_transaction(false, "pay-7", None)),
        "ABORT\ntransaction:pay-7\n\n\0"
    );
    assert_eq!(session.open_transaction(), Some("tx-0"));
    assert_eq!(
        text(session.end_transaction(true, "tx-0", Some("r-4"))),
        "COMMIT\ntransaction:tx-0\nreceipt:r-4\n\n\0"
    );
    assert_eq!(session.open_transaction(), None);
    let (next, _) = session.begin(None, None);
    assert_eq!(next, "tx-1");
}
