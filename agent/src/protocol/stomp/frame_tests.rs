use super::*;

fn drain(decoder: &mut Decoder) -> Vec<Item> {
    let mut items = Vec::new();
    while let Some(item) = decoder.next_item().expect("well formed") {
        items.push(item);
    }
    items
}

fn frame(item: &Item) -> &Frame {
    match item {
        Item::Frame(frame) => frame,
        Item::Heartbeat => panic!("a heart-beat, not a frame"),
    }
}

#[test]
fn encodes_a_send_with_escaped_headers_and_a_length() {
    let bytes = Frame::new("SEND")
        .header("destination", "/queue/a")
        .header("note", "a:b\\c\nd\re")
        .with_body(&b"hi\0there"[..])
        .encode();
    assert_eq!(
        bytes,
        b"SEND\ndestination:/queue/a\nnote:a\\cb\\\\c\\nd\\re\ncontent-length:8\n\nhi\0there\0".to_vec()
    );
}

#[test]
fn connect_headers_are_not_escaped() {
    let bytes = Frame::new("CONNECT").header("passcode", "a:b").encode();
    assert_eq!(bytes, b"CONNECT\npasscode:a:b\n\n\0".to_vec());
    let mut decoder = Decoder::new();
    decoder.push(b"CONNECTED\nserver:x\\y\n\n\0");
    let items = drain(&mut decoder);
    assert_eq!(frame(&items[0]).get("server"), Some("x\\y"));
}

#[test]
fn round_trips_escapes_and_nuls_in_a_body() {
    let sent = Frame::new("MESSAGE")
        .header("destination", "/topic/x")
        .header("weird\\name", "line\nbreak:colon\r\\")
        .with_body(&b"\0\0a\0"[..]);
    let mut decoder = Decoder::new();
    decoder.push(&sent.encode());
    let items = drain(&mut decoder);
    assert_eq!(items.len(), 1);
    let got = frame(&items[0]);
    assert_eq!(got.get("weird\\name"), Some("line\nbreak:colon\r\\"));
    assert_eq!(&got.body[..], b"\0\0a\0");
    assert_eq!(decoder.pending(), 0);
}

#[test]
fn a_frame_split_across_messages_completes_with_the_last_piece() {
    let bytes = Frame::new("MESSAGE")
        .header("destination", "/queue/a")
        .with_body(&b"payload with \0 inside"[..])
        .encode();
    // Every split point: nothing before the last byte, the frame after it.
    for split in 1..bytes.len() {
        let mut decoder = Decoder::new();
        decoder.push(&bytes[..split]);
        assert_eq!(decoder.next_item(), Ok(None), "split at {split}");
        decoder.push(&bytes[split..]);
        let items = drain(&mut decoder);
        assert_eq!(items.len(), 1, "split at {split}");
        assert_eq!(&frame(&items[0]).body[..], b"payload with \0 inside");
    }
}

#[test]
fn a_body_without_length_ends_at_the_first_nul() {
    let mut decoder = Decoder::new();
    decoder.push(b"MESSAGE\ndestination:/a\n\nhello");
    assert_eq!(decoder.next_item(), Ok(None));
    decoder.push(b" world\0");
    let items = drain(&mut decoder);
    assert_eq!(&frame(&items[0]).body[..], b"hello world");
}

#[test]
fn several_frames_and_rabbitmq_trailers_in_one_message() {
    let mut decoder = Decoder::new();
    decoder.push(b"RECEIPT\nreceipt-id:1\n\n\0\nMESSAGE\ndestination:/a\r\ncontent-length:2\r\n\r\nab\0\n\n");
    let items = drain(&mut decoder);
    assert_eq!(items.len(), 5);
    assert_eq!(frame(&items[0]).command, "RECEIPT");
    assert_eq!(frame(&items[0]).get("receipt-id"), Some("1"));
    assert_eq!(items[1], Item::Heartbeat);
    assert_eq!(frame(&items[2]).command, "MESSAGE");
    assert_eq!(frame(&items[2]).get("content-length"), Some("2"));
    assert_eq!(&frame(&items[2]).body[..], b"ab");
    assert_eq!(items[3], Item::Heartbeat);
    assert_eq!(items[4], Item::Heartbeat);
}

#[test]
fn heart_beats_as_their_own_messages() {
    let mut decoder = Decoder::new();
    decoder.push(b"\n");
    assert_eq!(decoder.next_item(), Ok(Some(Item::Heartbeat)));
    decoder.push(b"\r");
    assert_eq!(decoder.next_item(), Ok(None));
    decoder.push(b"\n");
    assert_eq!(decoder.next_item(), Ok(Some(Item::Heartbeat)));
    assert_eq!(decoder.next_item(), Ok(None));
}

#[test]
fn repeated_headers_keep_the_first() {
    let mut decoder = Decoder::new();
    decoder.push(b"MESSAGE\nfoo:first\nfoo:second\n\n\0");
    let items = drain(&mut decoder);
    assert_eq!(frame(&items[0]).get("foo"), Some("first"));
    assert_eq!(frame(&items[0]).headers.len(), 2);
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cases: &[&[u8]] = &[
        b"message\n\n\0",
        b"\x01BAD\n\n\0",
        b"SEND\nno colon here\n\n\0",
        b"SEND\nbad:esc\\t\n\n\0",
        b"SEND\ntrailing:back\\\n\n\0",
        b"SEND\ncontent-length:x\n\n\0",
        b"SEND\ncontent-length:2\n\nabc\0",
        b"SEND\n\xff:x\n\n\0",
        b"\rX",
    ];
    for case in cases {
        let mut decoder = Decoder::new();
        decoder.push(case);
        assert!(decoder.next_item().is_err(), "{:?}", String::from_utf8_lossy(case));
    }
}

#[test]
fn an_unended_frame_past_the_limit_is_an_error() {
    let mut decoder = Decoder::new();
    decoder.push(b"MESSAGE\n\n");
    decoder.push(&vec![b'a'; MAX_FRAME]);
    assert!(decoder.next_item().is_err());
    let mut decoder = Decoder::new();
    decoder.push(format!("MESSAGE\ncontent-length:{}\n\n", MAX_FRAME + 1).as_bytes());
    assert!(decoder.next_item().is_err());
}

#[test]
fn frames_fed_a_byte_at_a_time_come_out_whole_and_in_order() {
    let mut bytes = Frame::new("MESSAGE")
        .header("destination", "/a")
        .with_body(&b"x\0y"[..])
        .encode();
    bytes.extend_from_slice(b"\nRECEIPT\nreceipt-id:7\n\n\0\n");
    let mut decoder = Decoder::new();
    let mut items = Vec::new();
    for byte in &bytes {
        decoder.push(std::slice::from_ref(byte));
        items.extend(drain(&mut decoder));
    }
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(&frame(&items[0]).body[..], b"x\0y");
    assert_eq!(items[1], Item::Heartbeat);
    assert_eq!(frame(&items[2]).get("receipt-id"), Some("7"));
    assert_eq!(items[3], Item::Heartbeat);
    assert_eq!(decoder.pending(), 0);
}
