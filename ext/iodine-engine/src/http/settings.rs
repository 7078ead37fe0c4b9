//! Per-listener HTTP settings and their defaults (the C gem's, where it had one).

use std::time::Duration;

/// Limits and switches of one HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 beyond). Default 50 MiB.
    pub max_body: u64,
    /// Largest request head (request line + headers), in bytes (431 beyond). Default 32 KiB.
    /// At most 100 header lines are accepted (hyper's stack-allocated parser limit; setting
    /// a different count costs a heap-initialised table per request).
    pub max_head: usize,
    /// Longest single header line (name, `: `, value) in bytes: 431 beyond; a longer request
    /// line gets 414. Default 8 KiB, the C gem's `HTTP_MAX_HEADER_LENGTH`.
    pub max_line: usize,
    /// Keep-alive idle timeout: a connection with no request in flight is closed after this.
    /// Default 40 s.
    pub timeout: Duration,
    /// Deadline for receiving a request head once its first byte arrived (Slowloris guard);
    /// the connection is closed past it. Default 20 s.
    pub head_timeout: Duration,
    /// Base deadline for receiving a request body; each byte received extends it by
    /// 1 / `min_upload_rate` s, so an upload slower than that rate ends with 408. Also the
    /// longest pause between two pieces of a body. Default 30 s.
    pub body_timeout: Duration,
    /// Slowest sustained upload accepted, in bytes per second (see `body_timeout`). Default
    /// 4 KiB/s.
    pub min_upload_rate: u64,
    /// Most connections this listener serves at once; past it a new connection gets a 503
    /// and is closed. Default: no limit here (the binding sets the open-files limit minus a
    /// margin).
    pub max_clients: usize,
    /// Writes one access-log line per request to stderr.
    pub log: bool,
    /// TLS: every connection's handshake, before its first request (`rack.url_scheme` is
    /// then https). The handshake must end within `head_timeout`.
    pub tls: Option<crate::tls::Acceptor>,
    /// How long shutdown lets a busy connection finish before closing it. Default 8 s.
    pub shutdown_grace: Duration,
    /// WebSocket and SSE connections upgraded from this listener.
    pub websocket: crate::websocket::WsSettings,
    /// The public folder served before the application (`public:` / `-www`), if any.
    pub public: Option<std::sync::Arc<crate::public::Public>>,
    /// Serves HTTP/2 too: h2 by ALPN on TLS, h2c with prior knowledge on cleartext.
    /// Default true.
    pub http2: bool,
    /// The path of the metrics page (`-metrics`): Prometheus text of [`crate::stats`],
    /// answered before static files and the application, for GET and HEAD. None: no page.
    pub metrics: Option<std::sync::Arc<str>>,
    /// Most streams an HTTP/2 client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    /// Default 100.
    pub max_streams: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body: 50 * 1024 * 1024,
            max_head: 32 * 1024,
            max_line: 8 * 1024,
            timeout: Duration::from_secs(40),
            head_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(30),
            min_upload_rate: 4 * 1024,
            max_clients: usize::MAX,
            log: false,
            tls: None,
            shutdown_grace: Duration::from_secs(8),
            websocket: crate::websocket::WsSettings::default(),
            public: None,
            http2: true,
            metrics: None,
            max_streams: 100,
        }
    }
}
