//! The frames master and workers exchange over their Unix socket pair.
//!
//! Each frame is a 10-byte header — kind (1 byte), flags (1 byte), channel length and
//! message length (4 bytes each, big-endian) — followed by the channel and the message.
//! Lengths are bounded ([`MAX_CHANNEL`], [`MAX_MESSAGE`]): a peer that sends more is broken
//! and is disconnected, never trusted to allocate without limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest channel name (or pattern) carried.
pub const MAX_CHANNEL: usize = 64 * 1024;
/// Longest message carried: the master keeps twice a largest frame for each worker
/// ([`PEER_BACKLOG`]), so a message that fits the wire always fits an idle worker's backlog.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Frame header bytes.
pub const HEADER: usize = 10;

/// Unsent bytes the master keeps for one worker before it drops messages for it (a worker
/// that is not reading): two of the largest frames.
pub const PEER_BACKLOG: usize = 2 * (HEADER + MAX_CHANNEL + MAX_MESSAGE);

/// Which processes a published message is for (the engines of section 6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every process (`CLUSTER`).
    Cluster,
    /// Every process but the publisher's (`SIBLINGS`).
    Siblings,
    /// The master only (`PUBLISH2ROOT`).
    Root,
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The sender now has subscribers for `name` (a glob pattern when `pattern`).
    Subscribe {
        /// Channel name or pattern.
        name: Bytes,
        /// Whether `name` is a pattern.
        pattern: bool,
    },
    /// The sender no longer has subscribers for `name`.
    Unsubscribe {
        /// Channel name or pattern.
        name: Bytes,
        /// Whether `name` is a pattern.
        pattern: bool,
    },
    /// A message published to `channel`: from a worker, for the master to route (by
    /// `reach`); from the master, for the worker to deliver in its process.
    Publish {
        /// Which processes it is for.
        reach: Reach,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// A message from Redis (the Redis process → the master → the workers): for the
    /// subscribers of `pattern` when it came through one, else for those of `channel`.
    Message {
        /// The pattern it matched (None: the channel was subscribed to by name).
        pattern: Option<Bytes>,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// A publish through the Redis engine numbered `engine` (a worker → the master → that
    /// engine's Redis process).
    EnginePublish {
        /// The engine.
        engine: u8,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// A command for the Redis engine `engine` (a worker → the master → the Redis process);
    /// `id` names its reply. No arguments asks for the engine's stats.
    Command {
        /// The engine.
        engine: u8,
        /// The request's number (the sender's, then the master's).
        id: u64,
        /// The arguments, a RESP array of bulk strings.
        args: Bytes,
    },
    /// A command's reply (the Redis process → the master → the process that asked).
    Reply {
        /// The request's number.
        id: u64,
        /// The reply, in RESP.
        reply: Bytes,
    },
}

/// A frame that can't be read: the peer is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub String);

const SUBSCRIBE: u8 = 1;
const UNSUBSCRIBE: u8 = 2;
const PUBLISH: u8 = 3;
const MESSAGE: u8 = 4;
const ENGINE_PUBLISH: u8 = 5;
const COMMAND: u8 = 6;
const REPLY: u8 = 7;

const PATTERN: u8 = 1;
const SIBLINGS: u8 = 2;
const ROOT: u8 = 4;

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let id_bytes;
        let (kind, flags, channel, message): (u8, u8, &[u8], &[u8]) = match self {
            Frame::Subscribe { name, pattern } => (SUBSCRIBE, *pattern as u8 * PATTERN, name, b""),
            Frame::Unsubscribe { name, pattern } => {
                (UNSUBSCRIBE, *pattern as u8 * PATTERN, name, b"")
            }
            Frame::Publish {
                reach,
                channel,
                message,
            } => {
                let flags = match reach {
                    Reach::Cluster => 0,
                    Reach::Siblings => SIBLINGS,
                    Reach::Root => ROOT,
                };
                (PUBLISH, flags, channel, message)
            }
            Frame::Message {
                pattern: Some(pattern),
                channel,
                message,
            } => {
                // The pattern leads the message field, after its length.
                out.reserve(HEADER + channel.len() + 4 + pattern.len() + message.len());
                out.put_u8(MESSAGE);
                out.put_u8(PATTERN);
                out.put_u32(channel.len() as u32);
                out.put_u32((4 + pattern.len() + message.len()) as u32);
                out.put_slice(channel);
                out.put_u32(pattern.len() as u32);
                out.put_slice(pattern);
                out.put_slice(message);
                return;
            }
            Frame::Message {
                pattern: None,
                channel,
                message,
            } => (MESSAGE, 0, channel, message),
            Frame::EnginePublish {
                engine,
                channel,
                message,
            } => (ENGINE_PUBLISH, *engine, channel, message),
            Frame::Command { engine, id, args } => {
                id_bytes = id.to_be_bytes();
                (COMMAND, *engine, &id_bytes[..], args)
            }
            Frame::Reply { id, reply } => {
                id_bytes = id.to_be_bytes();
                (REPLY, 0, &id_bytes[..], reply)
            }
        };
        out.reserve(HEADER + channel.len() + message.len());
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(channel.len() as u32);
        out.put_u32(message.len() as u32);
        out.put_slice(channel);
        out.put_slice(message);
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Whether encoding it fits the limits (a longer channel or message is refused before
    /// it is sent, rather than break the link).
    pub fn fits(channel: &[u8], message: &[u8]) -> bool {
        channel.len() <= MAX_CHANNEL && message.len() <= MAX_MESSAGE
    }
}

/// Reads frames out of the bytes received so far.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read into directly (then [`Decoder::filled`]).
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete frame, None when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let flags = self.buf[1];
        let channel_len =
            u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]) as usize;
        let message_len =
            u32::from_be_bytes([self.buf[6], self.buf[7], self.buf[8], self.buf[9]]) as usize;
        if channel_len > MAX_CHANNEL || message_len > MAX_MESSAGE {
            return Err(WireError(format!(
                "a frame of {channel_len} + {message_len} bytes is over the limits"
            )));
        }
        if !(SUBSCRIBE..=REPLY).contains(&kind) {
            return Err(WireError(format!("unknown frame kind {kind}")));
        }
        if self.buf.len() < HEADER + channel_len + message_len {
            self.buf
                .reserve(HEADER + channel_len + message_len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let channel = self.buf.split_to(channel_len).freeze();
        let message = self.buf.split_to(message_len).freeze();
        let pattern = flags & PATTERN != 0;
        let id = || -> Result<u64, WireError> {
            <[u8; 8]>::try_from(&channel[..])
                .map(u64::from_be_bytes)
                .map_err(|_| WireError(format!("a request id of {} bytes", channel.len())))
        };
        Ok(Some(match kind {
            SUBSCRIBE => Frame::Subscribe {
                name: channel,
                pattern,
            },
            UNSUBSCRIBE => Frame::Unsubscribe {
                name: channel,
                pattern,
            },
            MESSAGE if pattern => {
                let mut rest = message;
                if rest.len() < 4 {
                    return Err(WireError("a pattern message without its pattern".into()));
                }
                let len = rest.get_u32() as usize;
                if len > rest.len() {
                    return Err(WireError("a pattern longer than its frame".into()));
                }
                let pattern = rest.split_to(len);
                Frame::Message {
                    pattern: Some(pattern),
                    channel,
                    message: rest,
                }
            }
            MESSAGE => Frame::Message {
                pattern: None,
                channel,
                message,
            },
            ENGINE_PUBLISH => Frame::EnginePublish {
                engine: flags,
                channel,
                message,
            },
            COMMAND => Frame::Command {
                engine: flags,
                id: id()?,
                args: message,
            },
            REPLY => Frame::Reply {
                id: id()?,
                reply: message,
            },
            _ => Frame::Publish {
                reach: if flags & ROOT != 0 {
                    Reach::Root
                } else if flags & SIBLINGS != 0 {
                    Reach::Siblings
                } else {
                    Reach::Cluster
                },
                channel,
                message,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Subscribe {
                name: Bytes::from("chat"),
                pattern: false,
            },
            Frame::Unsubscribe {
                name: Bytes::from("news.*"),
                pattern: true,
            },
            Frame::Publish {
                reach: Reach::Siblings,
                channel: Bytes::from("chat"),
                message: Bytes::from(vec![0u8, 255, 10, 13]),
            },
            Frame::Publish {
                reach: Reach::Root,
                channel: Bytes::new(),
                message: Bytes::new(),
            },
            Frame::Publish {
                reach: Reach::Cluster,
                channel: Bytes::from("x"),
                message: Bytes::from("y"),
            },
            Frame::Message {
                pattern: Some(Bytes::from("n*")),
                channel: Bytes::from(vec![b'n', 0, 200]),
                message: Bytes::from("m"),
            },
            Frame::Message {
                pattern: None,
                channel: Bytes::from("n"),
                message: Bytes::new(),
            },
            Frame::EnginePublish {
                engine: 3,
                channel: Bytes::from("c"),
                message: Bytes::from("m"),
            },
            Frame::Command {
                engine: 1,
                id: u64::MAX - 1,
                args: Bytes::from("*1\r\n$4\r\nPING\r\n"),
            },
            Frame::Reply {
                id: 7,
                reply: Bytes::from("+PONG\r\n"),
            },
        ]
    }

    #[test]
    fn frames_survive_any_split_of_the_stream() {
        let mut wire = BytesMut::new();
        for f in frames() {
            f.encode(&mut wire);
        }
        for chunk in [1, 3, 7, 64] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames(), "chunks of {chunk}");
        }
    }

    #[test]
    fn oversized_or_unknown_frames_are_refused() {
        let mut d = Decoder::new();
        d.push(&[PUBLISH, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
        let mut d = Decoder::new();
        d.push(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(d.next_frame().is_err());
        // A reply whose id is not 8 bytes, a pattern longer than its frame.
        let mut d = Decoder::new();
        d.push(&[REPLY, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1, 2, 3]);
        assert!(d.next_frame().is_err());
        let mut d = Decoder::new();
        d.push(&[MESSAGE, PATTERN, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 9]);
        assert!(d.next_frame().is_err());
    }
}
