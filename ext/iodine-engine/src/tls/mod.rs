//! TLS on rustls, for every kind of connection: HTTP, WebSocket, SSE, raw, clients.
//!
//! - [`TlsContext`] is what `Iodine::TLS` holds: certificates chosen by server name (SNI),
//!   self-signed ones when only a name is given, trusted CAs (mTLS on a server, the server's
//!   check on a client), ALPN protocols, and the reload of the certificate files.
//! - [`Acceptor`]: a listener's handshakes (with a deadline; plain HTTP on a TLS port gets
//!   a 400). The handshaken connection is a [`Stream::Tls`](crate::server::Stream::Tls), so
//!   every session runs over it unchanged.
//! - [`Connector`]: a client's handshake.
//!
//! TLS 1.2 and 1.3 only, with rustls's defaults, on the `ring` provider (it builds with a C
//! compiler alone, where aws-lc-rs also wants cmake).

mod accept;
mod connect;
mod context;
mod keys;

pub use accept::Acceptor;
pub use connect::Connector;
pub use context::{reload_all, TlsContext};

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

/// A TLS setting that can't be used: a file that is missing or not PEM, a wrong password, a
/// certificate and key that don't match. The message says which and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The protocol versions spoken: TLS 1.3 and 1.2.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider (ring), made once. rustls 0.23.48 deprecates ring's provider because
/// it has no post-quantum key exchange (aws-lc-rs has); ring is kept because it builds with
/// a C compiler alone on a fresh machine, and X25519 / P-256 remain the clients' defaults.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
