//! The client side: `Iodine.connect` over TLS (`wss://`, or `tls:`), the server's name sent
//! (SNI) and its certificate checked.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::server::Stream;

/// A client configuration, shared by the connections made with it.
#[derive(Clone)]
pub struct Connector(Arc<ClientConfig>);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    pub(super) fn new(config: Arc<ClientConfig>) -> Connector {
        Connector(config)
    }

    /// The handshake over a connected `stream` to `host` (a name, sent as SNI and checked
    /// against the certificate, or an IP address, checked the same way).
    pub async fn connect(&self, host: &str, stream: Stream) -> io::Result<Stream> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a server name"),
                )
            })?
            .to_owned();
        let tls = tokio_rustls::TlsConnector::from(self.0.clone())
            .connect(name, stream)
            .await?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
    }
}
