//! Listening sockets, the accept loop, and graceful shutdown.
//!
//! Sockets are bound with std (before any tokio runtime exists, so a forking master can bind
//! and its workers inherit them) and turned into tokio listeners inside the runtime.

mod accept;
mod listener;
mod shutdown;
mod stream;

pub use accept::{accept_loop, Ticket};
pub use listener::{bind, bind_with_mode, Address, BoundListener, Listener, UNIX_MODE};
pub use shutdown::{ConnectionGuard, Shutdown};
pub use stream::{Peer, PeerReset, ReadReady, Stream};
