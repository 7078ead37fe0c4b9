//! The server side: a listener's handshakes, each within a deadline.
//!
//! Before rustls sees a byte, the first one is peeked at: a TLS connection starts with a
//! handshake record (0x16). Plain HTTP sent to an HTTPS port gets a plain-text 400 (as nginx
//! answers it) and is closed; anything else that isn't TLS is closed at once.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio_rustls::LazyConfigAcceptor;

use crate::server::Stream;

/// A TLS record of type "handshake": how every TLS connection starts.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on a TLS port.
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
content-length: 51\r\nconnection: close\r\n\r\nThis port speaks HTTPS: the request was plain HTTP.";

/// What a listener's handshakes share: the configuration offering the context's protocols
/// (ALPN), the same without them (for clients that offer none of ours: the first protocol
/// then applies, as with the C gem), and the deadline.
#[derive(Clone)]
pub struct Acceptor(Arc<Inner>);

struct Inner {
    offered: Arc<ServerConfig>,
    plain: Arc<ServerConfig>,
    deadline: Duration,
    http: bool,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("deadline", &self.0.deadline)
            .field("http", &self.0.http)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    pub(super) fn new(
        offered: Arc<ServerConfig>,
        plain: Arc<ServerConfig>,
        deadline: Duration,
        http: bool,
    ) -> Acceptor {
        Acceptor(Arc::new(Inner {
            offered,
            plain,
            deadline,
            http,
        }))
    }

    /// The handshake on an accepted `stream`: the TLS stream, or None when the peer is not a
    /// TLS client, fails the handshake (logged at debug) or doesn't finish it within the
    /// deadline (a slowloris on TLS).
    pub async fn accept(&self, stream: Stream) -> Option<Stream> {
        match tokio::time::timeout(self.0.deadline, self.handshake(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(why)) => {
                crate::debug!("TLS handshake failed: {why}");
                None
            }
            Err(_) => {
                crate::debug!("TLS handshake not done within {:?}", self.0.deadline);
                None
            }
        }
    }

    async fn handshake(&self, stream: Stream) -> Result<Stream, String> {
        match stream.peek_first().await {
            Ok(Some(HANDSHAKE_RECORD)) => {}
            Ok(Some(byte)) if self.0.http && byte.is_ascii_alphabetic() => {
                stream.answer_and_close(PLAIN_HTTP).await;
                return Err("plain HTTP sent to a TLS port (answered 400)".into());
            }
            Ok(Some(_)) => return Err("not a TLS client".into()),
            Ok(None) => return Err("the peer left before its handshake".into()),
            Err(e) => return Err(e.to_string()),
        }
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
            .await
            .map_err(|e| e.to_string())?;
        let config = {
            let ours = &self.0.offered.alpn_protocols;
            let ok = match start.client_hello().alpn() {
                Some(mut theirs) => theirs.any(|p| ours.iter().any(|o| o == p)),
                None => true,
            };
            match ok {
                true => self.0.offered.clone(),
                false => self.0.plain.clone(),
            }
        };
        let tls = start.into_stream(config).await.map_err(|e| e.to_string())?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }
}
