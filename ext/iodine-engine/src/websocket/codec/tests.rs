use std::collections::VecDeque;
use std::pin::Pin;

use futures_util::task::noop_waker_ref;
use tokio::io::ReadBuf;

use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How a test frame writes its length.
#[derive(Clone, Copy)]
enum Len {
    /// The minimal form.
    Minimal,
    /// The 16-bit form, whatever the length.
    Wide16,
    /// The 64-bit form, whatever the length.
    Wide64,
}

/// A frame as a peer would send it: `first` is the first byte (FIN, RSV, opcode).
fn raw_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match (len, payload.len()) {
        (Len::Minimal, n) if n < 126 => out.push(bit | n as u8),
        (Len::Minimal | Len::Wide16, n) if n < 65536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        (_, n) => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A whole masked client frame.
fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload, Some(KEY), Len::Minimal)
}

/// A masked client frame without FIN.
fn client_part(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(opcode, payload, Some(KEY), Len::Minimal)
}

fn server_decoder() -> Decoder {
    Decoder::new(Role::Server, 1 << 20)
}

/// Everything `bytes` decode to, up to the first violation (its code then ends the list).
fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> (Vec<Incoming>, Option<u16>) {
    decoder.push(bytes);
    let mut out = Vec::new();
    loop {
        match decoder.decode() {
            Ok(Some(incoming)) => out.push(incoming),
            Ok(None) => return (out, None),
            Err(v) => return (out, Some(v.code)),
        }
    }
}

/// The Close code `bytes` end with on a fresh server decoder (None: no violation).
fn violation(bytes: &[u8]) -> Option<u16> {
    decode_all(&mut server_decoder(), bytes).1
}

/// A text message, of the kind its characters make it (ASCII only or not).
fn text(s: &str) -> Incoming {
    Incoming::Message {
        data: Bytes::copy_from_slice(s.as_bytes()),
        kind: if s.is_ascii() {
            Kind::Ascii
        } else {
            Kind::Text
        },
    }
}

fn binary(b: &[u8]) -> Incoming {
    Incoming::Message {
        data: Bytes::copy_from_slice(b),
        kind: Kind::Binary,
    }
}

#[test]
fn a_masked_text_frame_decodes() {
    let (got, err) = decode_all(&mut server_decoder(), &client(TEXT, b"hello"));
    assert_eq!((got, err), (vec![text("hello")], None));
}

#[test]
fn a_whole_message_is_split_off_the_read_buffer_not_copied() {
    let mut decoder = server_decoder();
    let frame = client(BINARY, &[7u8; 300]);
    decoder.push(&frame);
    let start = decoder.buf.as_ptr() as usize;
    let Ok(Some(Incoming::Message { data, .. })) = decoder.decode() else {
        panic!("no message");
    };
    // The payload sits where it was read, right after the 8-byte head (2 + 2 + mask).
    assert_eq!(data.as_ptr() as usize, start + 8);
    assert_eq!(&data[..], &[7u8; 300][..]);
}

#[test]
fn the_roles_are_held_to_their_masking() {
    // A server refuses an unmasked frame; a client refuses a masked one.
    let plain = raw_frame(0x80 | TEXT, b"hi", None, Len::Minimal);
    assert_eq!(violation(&plain), Some(1002));
    let mut client_side = Decoder::new(Role::Client, 1024);
    assert_eq!(
        decode_all(&mut client_side, &client(TEXT, b"hi")).1,
        Some(1002)
    );
    let mut client_side = Decoder::new(Role::Client, 1024);
    assert_eq!(
        decode_all(&mut client_side, &plain),
        (vec![text("hi")], None)
    );
}

#[test]
fn masks_of_every_kind_unmask_including_zero() {
    for key in [[0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4], KEY] {
        let payload: Vec<u8> = (0..=255u8).collect();
        let frame = raw_frame(0x80 | BINARY, &payload, Some(key), Len::Minimal);
        let (got, err) = decode_all(&mut server_decoder(), &frame);
        assert_eq!((got, err), (vec![binary(&payload)], None), "key {key:?}");
    }
}

#[test]
fn reserved_bits_and_unknown_opcodes_are_protocol_errors() {
    for rsv in [0x40, 0x20, 0x10] {
        let mut frame = client(TEXT, b"x");
        frame[0] |= rsv;
        assert_eq!(violation(&frame), Some(1002), "rsv {rsv:#x}");
    }
    for opcode in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_eq!(violation(&client(opcode, b"")), Some(1002), "op {opcode}");
    }
    // Known from the first two bytes alone.
    let mut head_only = client(0x3, b"abc");
    head_only.truncate(2);
    assert_eq!(violation(&head_only), Some(1002));
}

#[test]
fn control_frames_must_be_short_and_whole() {
    assert_eq!(violation(&client(PING, &[0u8; 126])), Some(1002));
    assert_eq!(violation(&client(PING, &[0u8; 125])), None);
    assert_eq!(violation(&client_part(PING, b"x")), Some(1002));
    assert_eq!(violation(&client_part(CLOSE, b"")), Some(1002));
}

#[test]
fn fragments_must_follow_a_start_and_not_overlap() {
    assert_eq!(violation(&client(CONTINUATION, b"x")), Some(1002));
    let mut bytes = client_part(TEXT, b"a");
    bytes.extend(client(TEXT, b"b"));
    assert_eq!(violation(&bytes), Some(1002));
    let mut bytes = client_part(BINARY, b"a");
    bytes.extend(client_part(BINARY, b"b"));
    assert_eq!(violation(&bytes), Some(1002));
}

#[test]
fn fragments_are_joined_and_control_frames_may_come_between() {
    let mut bytes = client_part(TEXT, b"Hel");
    bytes.extend(client(PING, b"p1"));
    bytes.extend(client_part(CONTINUATION, b"lo, "));
    bytes.extend(client(PONG, b""));
    bytes.extend(client_part(CONTINUATION, b""));
    bytes.extend(client(CONTINUATION, b"world"));
    bytes.extend(client(CLOSE, &1000u16.to_be_bytes()));
    let (got, err) = decode_all(&mut server_decoder(), &bytes);
    assert_eq!(err, None);
    assert_eq!(
        got,
        vec![
            Incoming::Ping(Bytes::from_static(b"p1")),
            Incoming::Pong(Bytes::new()),
            text("Hello, world"),
            Incoming::Close(Some(1000)),
        ]
    );
}

#[test]
fn every_length_form_decodes_at_its_boundaries() {
    for n in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        for form in [Len::Minimal, Len::Wide16, Len::Wide64] {
            if matches!(form, Len::Wide16) && n > 65535 {
                continue;
            }
            let frame = raw_frame(0x80 | BINARY, &payload, Some(KEY), form);
            let (got, err) = decode_all(&mut server_decoder(), &frame);
            assert_eq!(err, None, "{n}");
            assert_eq!(got, vec![binary(&payload)], "{n}");
        }
    }
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_is_refused() {
    let mut frame = vec![0x80 | BINARY, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    frame.extend_from_slice(&KEY);
    assert_eq!(violation(&frame), Some(1002));
}

#[test]
fn too_big_is_known_from_the_header_before_the_payload() {
    let mut decoder = Decoder::new(Role::Server, 1000);
    // Only the 8-byte head of a 1001-byte frame: refused already.
    let frame = client(BINARY, &[0u8; 1001]);
    assert_eq!(decode_all(&mut decoder, &frame[..8]).1, Some(1009));
    // Exactly at the limit is fine.
    let mut decoder = Decoder::new(Role::Server, 1000);
    assert_eq!(
        decode_all(&mut decoder, &client(BINARY, &[0u8; 1000])).1,
        None
    );
    // A huge 64-bit length, too.
    let mut decoder = Decoder::new(Role::Server, 1000);
    let mut huge = vec![0x80 | BINARY, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&KEY);
    assert_eq!(decode_all(&mut decoder, &huge).1, Some(1009));
}

#[test]
fn fragments_that_add_up_past_the_limit_are_refused_at_the_header_that_crosses_it() {
    let mut decoder = Decoder::new(Role::Server, 1000);
    let (_, err) = decode_all(&mut decoder, &client_part(BINARY, &[0u8; 600]));
    assert_eq!(err, None);
    let next = client(CONTINUATION, &[0u8; 401]);
    assert_eq!(decode_all(&mut decoder, &next[..8]).1, Some(1009));
    // 400 more would have been fine.
    let mut decoder = Decoder::new(Role::Server, 1000);
    let mut bytes = client_part(BINARY, &[0u8; 600]);
    bytes.extend(client(CONTINUATION, &[0u8; 400]));
    let (got, err) = decode_all(&mut decoder, &bytes);
    assert_eq!((got.len(), err), (1, None));
}

#[test]
fn control_frames_are_not_held_to_a_small_message_limit() {
    let mut decoder = Decoder::new(Role::Server, 10);
    let (got, err) = decode_all(&mut decoder, &client(PING, &[1u8; 100]));
    assert_eq!((got.len(), err), (1, None));
}

#[test]
fn text_says_whether_it_is_all_ascii_whole_and_fragmented() {
    let kinds = |bytes: &[u8]| -> Vec<Kind> {
        let (got, err) = decode_all(&mut server_decoder(), bytes);
        assert_eq!(err, None);
        got.into_iter()
            .filter_map(|m| match m {
                Incoming::Message { kind, .. } => Some(kind),
                _ => None,
            })
            .collect()
    };
    // The high byte at every place of a word, and past 16 bytes.
    for at in 0..40 {
        let mut s = "a".repeat(40);
        s.replace_range(at..at + 1, "é");
        assert_eq!(
            kinds(&client(TEXT, s.as_bytes())),
            vec![Kind::Text],
            "é at {at}"
        );
    }
    assert_eq!(kinds(&client(TEXT, &[b'x'; 4096])), vec![Kind::Ascii]);
    assert_eq!(kinds(&client(TEXT, b"")), vec![Kind::Ascii]);
    assert_eq!(kinds(&client(BINARY, b"plain")), vec![Kind::Binary]);
    // Fragments: ASCII only when every fragment is.
    let mut bytes = client_part(TEXT, b"abc");
    bytes.extend(client(CONTINUATION, b"def"));
    assert_eq!(kinds(&bytes), vec![Kind::Ascii]);
    let mut bytes = client_part(TEXT, b"abc");
    bytes.extend(client(CONTINUATION, "dé".as_bytes()));
    assert_eq!(kinds(&bytes), vec![Kind::Text]);
}

#[test]
fn text_is_checked_whole_and_across_fragments() {
    assert_eq!(violation(&client(TEXT, b"ok \xff")), Some(1007));
    // Binary is never checked.
    assert_eq!(violation(&client(BINARY, b"\xff")), None);
    // A character cut between fragments is fine...
    let euro = "€".as_bytes();
    let mut bytes = client_part(TEXT, &euro[..1]);
    bytes.extend(client_part(CONTINUATION, &euro[1..2]));
    bytes.extend(client(CONTINUATION, &euro[2..]));
    assert_eq!(
        decode_all(&mut server_decoder(), &bytes),
        (vec![text("€")], None)
    );
    // ... a sequence broken across them is not, and is found in the fragment that breaks it.
    let mut decoder = server_decoder();
    let (_, err) = decode_all(&mut decoder, &client_part(TEXT, b"a\xe2\x82"));
    assert_eq!(err, None);
    let (_, err) = decode_all(&mut decoder, &client_part(CONTINUATION, b"A"));
    assert_eq!(err, Some(1007));
    // Known before the message ends: the first fragment already can't be UTF-8.
    assert_eq!(violation(&client_part(TEXT, b"\xc0")), Some(1007));
    // A message that ends inside a character.
    let mut bytes = client_part(TEXT, b"a");
    bytes.extend(client(CONTINUATION, b"\xe2\x82"));
    assert_eq!(violation(&bytes), Some(1007));
}

#[test]
fn close_frames_are_checked() {
    let close = |payload: &[u8]| decode_all(&mut server_decoder(), &client(CLOSE, payload));
    assert_eq!(close(b""), (vec![Incoming::Close(None)], None));
    assert_eq!(close(b"\x03").1, Some(1002));
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        assert_eq!(
            close(&code.to_be_bytes()),
            (vec![Incoming::Close(Some(code))], None),
            "{code}"
        );
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert_eq!(close(&code.to_be_bytes()).1, Some(1002), "{code}");
    }
    let mut with_reason = 1000u16.to_be_bytes().to_vec();
    with_reason.extend_from_slice("bye ✓".as_bytes());
    assert_eq!(close(&with_reason).1, None);
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(b"\xff");
    assert_eq!(close(&bad_reason).1, Some(1007));
}

#[test]
fn many_frames_in_one_read_all_decode_and_one_byte_at_a_time_works_too() {
    let mut bytes = Vec::new();
    for i in 0..100u32 {
        bytes.extend(client(BINARY, &i.to_be_bytes()));
    }
    let (got, err) = decode_all(&mut server_decoder(), &bytes);
    assert_eq!(err, None);
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], binary(&99u32.to_be_bytes()));
    let mut decoder = server_decoder();
    let mut got = Vec::new();
    for byte in &bytes[..] {
        got.extend(decode_all(&mut decoder, std::slice::from_ref(byte)).0);
    }
    assert_eq!(got.len(), 100);
    assert_eq!(got[42], binary(&42u32.to_be_bytes()));
}

#[test]
fn non_minimal_lengths_are_accepted() {
    let frame = raw_frame(0x80 | TEXT, b"short", Some(KEY), Len::Wide64);
    assert_eq!(
        decode_all(&mut server_decoder(), &frame),
        (vec![text("short")], None)
    );
    let ping = raw_frame(0x80 | PING, b"p", Some(KEY), Len::Wide16);
    assert_eq!(
        decode_all(&mut server_decoder(), &ping),
        (vec![Incoming::Ping(Bytes::from_static(b"p"))], None)
    );
}

#[test]
fn heads_take_the_minimal_form_and_a_client_mask() {
    let mut out = [0u8; MAX_HEAD];
    assert_eq!(write_head(&mut out, TEXT, 5, None), 2);
    assert_eq!(&out[..2], &[0x81, 5]);
    assert_eq!(write_head(&mut out, BINARY, 125, None), 2);
    assert_eq!(write_head(&mut out, BINARY, 126, None), 4);
    assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
    assert_eq!(write_head(&mut out, BINARY, 65535, None), 4);
    assert_eq!(write_head(&mut out, BINARY, 65536, None), 10);
    assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(write_head(&mut out, PONG, 3, Some([1, 2, 3, 4])), 6);
    assert_eq!(&out[..6], &[0x8a, 0x83, 1, 2, 3, 4]);
    // What we write, our own decoder (of the other role) reads back.
    let payload = vec![9u8; 70000];
    let size = write_head(&mut out, BINARY, payload.len(), None);
    let mut frame = out[..size].to_vec();
    frame.extend_from_slice(&payload);
    let mut client_side = Decoder::new(Role::Client, 1 << 20);
    assert_eq!(
        decode_all(&mut client_side, &frame),
        (vec![binary(&payload)], None)
    );
}

/// A peer whose bytes arrive in the chunks given, then nothing (Pending) or the end.
struct Peer {
    chunks: VecDeque<Vec<u8>>,
    then_eof: bool,
}

impl AsyncRead for Peer {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(mut chunk) = this.chunks.pop_front() else {
            return match this.then_eof {
                true => Poll::Ready(Ok(())),
                false => Poll::Pending,
            };
        };
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        if n < chunk.len() {
            this.chunks.push_front(chunk.split_off(n));
        }
        Poll::Ready(Ok(()))
    }
}

impl ReadReady for Peer {
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.chunks.is_empty() && !self.then_eof {
            true => Poll::Pending,
            false => Poll::Ready(Ok(())),
        }
    }
}

/// Reads and decodes until the peer has nothing more; what came out.
fn read_all(decoder: &mut Decoder, peer: &mut Peer) -> Vec<Incoming> {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut out = Vec::new();
    loop {
        while let Ok(Some(incoming)) = decoder.decode() {
            out.push(incoming);
        }
        match decoder.poll_read(peer, &mut cx) {
            Poll::Ready(Ok(n)) if n > 0 => {}
            _ => return out,
        }
    }
}

#[test]
fn an_idle_decoder_lets_its_buffer_go() {
    let mut decoder = server_decoder();
    assert_eq!(decoder.buffered_capacity(), 0);
    let mut peer = Peer {
        chunks: VecDeque::from([client(TEXT, b"one"), client(TEXT, b"two")]),
        then_eof: false,
    };
    let got = read_all(&mut decoder, &mut peer);
    assert_eq!(got, vec![text("one"), text("two")]);
    assert_eq!(decoder.buffered_capacity(), 0, "idle, yet holding a buffer");
}

#[test]
fn a_partial_frame_keeps_room_for_what_its_header_announced() {
    let mut decoder = server_decoder();
    let frame = client(BINARY, &[5u8; 200_000]);
    let mut peer = Peer {
        chunks: VecDeque::from([frame[..100].to_vec()]),
        then_eof: false,
    };
    assert!(read_all(&mut decoder, &mut peer).is_empty());
    // One read after the header, and the whole frame has room (not 16 reads of 64 KiB).
    peer.chunks.push_back(frame[100..].to_vec());
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(decoder.decode().unwrap().is_none());
    assert!(
        matches!(decoder.poll_read(&mut peer, &mut cx), Poll::Ready(Ok(n)) if n == frame.len() - 100)
    );
    assert_eq!(decoder.decode(), Ok(Some(binary(&[5u8; 200_000]))));
}

#[test]
fn reads_grow_while_they_come_full_and_shrink_back() {
    let mut decoder = server_decoder();
    let mut bytes = Vec::new();
    for _ in 0..2000 {
        bytes.extend(client(BINARY, b"0123456789"));
    }
    let mut peer = Peer {
        chunks: VecDeque::from([bytes]),
        then_eof: false,
    };
    assert_eq!(read_all(&mut decoder, &mut peer).len(), 2000);
    assert!(decoder.read_size > MIN_READ, "{}", decoder.read_size);
    for _ in 0..10 {
        peer.chunks.push_back(client(TEXT, b"x"));
        read_all(&mut decoder, &mut peer);
    }
    assert_eq!(decoder.read_size, MIN_READ);
}

#[test]
fn the_end_of_the_stream_reads_as_zero() {
    let mut decoder = server_decoder();
    let mut peer = Peer {
        chunks: VecDeque::new(),
        then_eof: true,
    };
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(matches!(
        decoder.poll_read(&mut peer, &mut cx),
        Poll::Ready(Ok(0))
    ));
}
