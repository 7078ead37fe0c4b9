//! WebSocket frames on the wire, written by hand to the real server: every length form,
//! masks, fragments with control frames between them, UTF-8 across fragments, limits, close
//! codes, and peers that send a frame a byte at a time or a hundred in one segment.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use iodine_engine::http::HttpSettings;
use iodine_engine::link::Protocol;
use support::ws::{
    close_code, closed_after, fragment, frame, frame_with, open, read_frame, read_frame_head,
    server, wait_for, Len,
};
use support::TestServer;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn echo_server() -> TestServer {
    server(Protocol::WebSocket, HttpSettings::default()).0
}

fn opened(server: &TestServer) -> TcpStream {
    let (s, head) = open(server);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Sends `bytes` on a fresh connection; the code of the Close the server answers with, once
/// it also closed the connection.
fn close_for(server: &TestServer, bytes: &[u8]) -> Option<u16> {
    let mut s = opened(server);
    s.write_all(bytes).unwrap();
    let (op, payload) = read_frame(&mut s)?;
    assert_eq!(op, CLOSE, "a Close, not {op:#x}");
    assert!(
        closed_after(&mut s),
        "the connection stays open after the Close"
    );
    close_code(&payload)
}

#[test]
fn every_length_form_at_its_boundaries_echoes_exactly() {
    let server = echo_server();
    let mut s = opened(&server);
    for n in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        for form in [Len::Minimal, Len::Wide16, Len::Wide64] {
            if matches!(form, Len::Wide16) && n > 65535 {
                continue;
            }
            s.write_all(&frame_with(
                0x80 | BINARY,
                &payload,
                Some([9, 8, 7, 6]),
                form,
            ))
            .unwrap();
            let (first, len_field, echoed) = read_frame_head(&mut s).expect("the echo");
            assert_eq!(first, 0x80 | BINARY, "{n} bytes, {form:?}");
            assert!(echoed == payload, "{n} bytes, {form:?}: the echo differs");
            // Ours always take the minimal form.
            let minimal = match n {
                0..=125 => n as u8,
                126..=65535 => 126,
                _ => 127,
            };
            assert_eq!(len_field, minimal, "{n} bytes");
        }
    }
}

#[test]
fn every_mask_unmasks_including_the_zero_mask() {
    let server = echo_server();
    let mut s = opened(&server);
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for key in [[0, 0, 0, 0], [0xff; 4], [0x80, 0, 0, 1], [1, 2, 3, 4]] {
        s.write_all(&frame_with(
            0x80 | BINARY,
            &payload,
            Some(key),
            Len::Minimal,
        ))
        .unwrap();
        assert_eq!(
            read_frame(&mut s),
            Some((BINARY, payload.clone())),
            "{key:?}"
        );
    }
}

#[test]
fn fragments_with_pings_between_come_back_whole_after_the_pongs() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let mut s = opened(&server);
    let mut bytes = fragment(TEXT, "Hé".as_bytes());
    bytes.extend(frame(PING, b"one", true));
    bytes.extend(fragment(0x0, b"ll"));
    bytes.extend(frame(PING, b"two", true));
    bytes.extend(frame(PONG, b"unasked", true)); // ignored
    bytes.extend(frame(0x0, b"o", true));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut s), Some((PONG, b"one".to_vec())));
    assert_eq!(read_frame(&mut s), Some((PONG, b"two".to_vec())));
    assert_eq!(
        read_frame(&mut s),
        Some((TEXT, "Héllo".as_bytes().to_vec()))
    );
    // A Close in the middle of a fragmented message: answered, the message never delivered.
    s.write_all(&fragment(BINARY, b"never")).unwrap();
    s.write_all(&frame(CLOSE, &1000u16.to_be_bytes(), true))
        .unwrap();
    let (op, payload) = read_frame(&mut s).expect("the Close answer");
    assert_eq!((op, close_code(&payload)), (CLOSE, Some(1000)));
    assert!(closed_after(&mut s));
    let events = wait_for(&seen, "close");
    assert_eq!(events, ["open", "message 6", "close"]);
}

#[test]
fn a_character_cut_between_fragments_is_fine_and_a_broken_one_is_1007() {
    let server = echo_server();
    let mut s = opened(&server);
    let euro = "€".as_bytes(); // E2 82 AC
    s.write_all(&fragment(TEXT, &euro[..1])).unwrap();
    s.write_all(&fragment(0x0, &euro[1..2])).unwrap();
    s.write_all(&frame(0x0, &euro[2..], true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((TEXT, euro.to_vec())));
    // E2 82 then 'A': invalid, though each fragment alone could be the start of text.
    let mut bytes = fragment(TEXT, b"ok \xe2\x82");
    bytes.extend(frame(0x0, b"A", true));
    assert_eq!(close_for(&server, &bytes), Some(1007));
    // Known at the fragment that breaks it: the message's end never comes.
    let mut bytes = fragment(TEXT, b"ok \xe2\x82");
    bytes.extend(fragment(0x0, b"A"));
    assert_eq!(close_for(&server, &bytes), Some(1007));
    // A message that ends inside a character.
    let mut bytes = fragment(TEXT, b"ok");
    bytes.extend(frame(0x0, b"\xe2\x82", true));
    assert_eq!(close_for(&server, &bytes), Some(1007));
}

#[test]
fn too_big_is_refused_from_the_header_alone() {
    let mut settings = HttpSettings::default();
    settings.websocket.max_msg = 1000;
    let (server, _seen) = server(Protocol::WebSocket, settings);
    // The head of a 1 GiB frame, and not one byte of its payload.
    let mut head = vec![0x80 | BINARY, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 30).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(close_for(&server, &head), Some(1009));
    // At the limit it is fine.
    let mut s = opened(&server);
    s.write_all(&frame(BINARY, &[3u8; 1000], true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((BINARY, vec![3u8; 1000])));
}

#[test]
fn broken_rules_close_with_1002() {
    let server = echo_server();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown opcode", frame(0x3, b"", true)),
        ("unknown control opcode", frame(0xB, b"", true)),
        ("control over 125 bytes", frame(PING, &[0u8; 126], true)),
        ("fragmented control", fragment(PING, b"")),
        ("continuation of nothing", frame(0x0, b"x", true)),
    ];
    let mut overlap = fragment(TEXT, b"a");
    overlap.extend(frame(TEXT, b"b", true));
    cases.push(("a new message inside a fragmented one", overlap));
    let mut top_bit = vec![0x80 | BINARY, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63 | 3).to_be_bytes());
    top_bit.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0]);
    cases.push(("a 64-bit length with the top bit set", top_bit));
    for rsv in [0x40, 0x20, 0x10] {
        let mut f = frame(TEXT, b"x", true);
        f[0] |= rsv;
        cases.push(("a reserved bit", f));
    }
    for (what, bytes) in cases {
        assert_eq!(close_for(&server, &bytes), Some(1002), "{what}");
    }
}

#[test]
fn close_codes_are_echoed_when_valid_and_refused_when_not() {
    let server = echo_server();
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let close = frame(CLOSE, &code.to_be_bytes(), true);
        assert_eq!(close_for(&server, &close), Some(code), "{code}");
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let close = frame(CLOSE, &code.to_be_bytes(), true);
        assert_eq!(close_for(&server, &close), Some(1002), "{code}");
    }
    assert_eq!(close_for(&server, &frame(CLOSE, b"\x03", true)), Some(1002));
    // No code: an empty Close back.
    let mut s = opened(&server);
    s.write_all(&frame(CLOSE, b"", true)).unwrap();
    assert_eq!(read_frame(&mut s), Some((CLOSE, Vec::new())));
    // A reason that is not UTF-8.
    let mut bad = 1000u16.to_be_bytes().to_vec();
    bad.extend_from_slice(b"\xc3\x28");
    assert_eq!(close_for(&server, &frame(CLOSE, &bad, true)), Some(1007));
}

#[test]
fn a_frame_sent_one_byte_at_a_time_echoes_exactly() {
    let server = echo_server();
    let mut s = opened(&server);
    s.set_nodelay(true).unwrap();
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 256) as u8).collect();
    for byte in frame(BINARY, &payload, true) {
        s.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(read_frame(&mut s), Some((BINARY, payload)));
    // A text one with a ping trickled in the middle of its fragments.
    let mut bytes = fragment(TEXT, b"slow");
    bytes.extend(frame(PING, b"!", true));
    bytes.extend(frame(0x0, b"ly", true));
    for byte in bytes {
        s.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(read_frame(&mut s), Some((PONG, b"!".to_vec())));
    assert_eq!(read_frame(&mut s), Some((TEXT, b"slowly".to_vec())));
}

#[test]
fn a_hundred_frames_in_one_segment_all_echo_in_order() {
    let (server, seen) = server(Protocol::WebSocket, HttpSettings::default());
    let mut s = opened(&server);
    let mut burst = Vec::new();
    for i in 0..100u32 {
        let text = format!("message number {i}");
        burst.extend(frame(TEXT, text.as_bytes(), true));
    }
    s.write_all(&burst).unwrap(); // one write: one segment on loopback
    for i in 0..100u32 {
        let text = format!("message number {i}");
        assert_eq!(read_frame(&mut s), Some((TEXT, text.into_bytes())), "{i}");
    }
    drop(s);
    let events = wait_for(&seen, "close");
    assert_eq!(events.len(), 102, "{events:?}");
}
