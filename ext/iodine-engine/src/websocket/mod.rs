//! WebSocket (RFC 6455): the opening handshake, our own framing ([`codec`]), and the
//! session that carries a [`Link`](crate::link::Link)'s messages both ways.
//!
//! The policy the C gem got wrong is fixed here: a peer's Close is answered with a Close
//! echoing its code; unmasked client frames, RSV bits and other broken rules close with 1002,
//! invalid UTF-8 in a text message with 1007, a message over `max_msg` with 1009; a ping gets
//! a pong with the same payload; shutdown sends 1001 after the application's `on_shutdown`.

pub mod codec;
mod handshake;
mod mask;
mod session;
mod utf8;

pub use codec::Role;
pub use handshake::{
    accept_key, client_handshake, is_upgrade_request, response_head, HandshakeError,
};
#[cfg(test)]
pub(crate) use session::WsCodec;
pub use session::{open, session, WebSocket};

/// Settings of a listener's WebSocket connections.
#[derive(Clone, Copy, Debug)]
pub struct WsSettings {
    /// Largest incoming message (and frame) in bytes; larger closes with 1009.
    pub max_msg: usize,
    /// Ping interval when the connection is quiet (a peer silent for two intervals is dead).
    pub ping: std::time::Duration,
    /// How long `on_shutdown` gets before the server sends Close 1001 itself.
    pub shutdown_grace: std::time::Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            max_msg: 256 * 1024,
            ping: std::time::Duration::from_secs(40),
            shutdown_grace: std::time::Duration::from_secs(8),
        }
    }
}
