//! Listening sockets, the accept loop, and graceful shutdown.
//!
//! Sockets are bound with std (before any tokio runtime exists, so a forking master can bind
//! and its workers inherit them) and turned into tokio listeners inside the runtime. A
//! cluster's master spreads each TCP listener over its workers ([`Spread`]: one
//! `SO_REUSEPORT` socket per worker) before it forks.

mod accept;
pub mod activation;
mod listener;
mod shutdown;
mod spread;
mod stream;

pub use accept::{accept_loop, Ticket};
pub use listener::{bind, bind_with_mode, Address, BoundListener, Listener, UNIX_MODE};
pub use shutdown::{ConnectionGuard, Shutdown};
pub use spread::{Rescue, Spread, RESCUE_EVERY};
pub use stream::{write_through, Moved, Peer, PeerReset, ReadReady, Stream};
