//! The owned request handed to a [`Handler`](super::Handler).

use http::{HeaderMap, Method, Uri, Version};

use super::body::RequestBody;
use crate::server::Peer;

/// A complete request: head and fully received body.
#[derive(Debug)]
pub struct Request {
    /// The method, as received (any token).
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// HTTP/1.0, HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// Header fields in arrival order (names lower-case).
    pub headers: HeaderMap,
    /// The body (already de-chunked and within limits).
    pub body: RequestBody,
    /// The peer.
    pub peer: Peer,
    /// The listening port, for `SERVER_PORT` when `Host` has none.
    pub local_port: u16,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The way to take over the socket (`rack.hijack`); None where that isn't possible.
    pub hijack: Option<super::Hijack>,
}

impl Request {
    /// The raw path (not percent-decoded), without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw query string, "" when absent.
    pub fn query(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    /// "HTTP/1.1", "HTTP/1.0" or "HTTP/2".
    pub fn version_str(&self) -> &'static str {
        version_str(self.version)
    }

    /// The `Host` header value (validated to exist once before a handler sees the request).
    pub fn host(&self) -> &[u8] {
        self.headers
            .get(http::header::HOST)
            .map(|v| v.as_bytes())
            .unwrap_or(b"")
    }

    /// Host name and port parsed from the `Host` header (port falls back to the listener's).
    pub fn server_name_and_port(&self) -> (&[u8], u16) {
        split_host(self.host(), self.local_port)
    }
}

/// The version token as written in the request line.
pub(crate) fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `default_port` when there is no valid port.
pub(crate) fn split_host(host: &[u8], default_port: u16) -> (&[u8], u16) {
    let (name, port) = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => {
                let rest = &host[end + 1..];
                (&host[..end + 1], rest.strip_prefix(b":"))
            }
            None => (host, None),
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let port = port
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(default_port);
    (name, port)
}

/// The Rack/CGI env key of a header: `content-type` → `HTTP_CONTENT_TYPE`.
pub fn env_key(name: &str) -> String {
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    key
}

/// The scheme a proxy says the client used: `Some(true)` for https, `Some(false)` for http, from `X-Forwarded-Proto` or `Forwarded`.
pub fn forwarded_https(headers: &HeaderMap) -> Option<bool> {
    if let Some(v) = headers.get("x-forwarded-proto") {
        let v = v.as_bytes();
        let first = v.split(|&b| b == b',').next().unwrap_or(b"");
        let first = first.trim_ascii();
        if first.eq_ignore_ascii_case(b"https") {
            return Some(true);
        }
        if first.eq_ignore_ascii_case(b"http") {
            return Some(false);
        }
    }
    let v = headers
        .get(http::header::FORWARDED)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let proto = v
        .split([';', ','])
        .find_map(|p| p.trim().strip_prefix("proto="))?;
    match proto.trim_matches('"') {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys() {
        assert_eq!(env_key("x-forwarded-for"), "HTTP_X_FORWARDED_FOR");
    }

    #[test]
    fn forwarded_schemes() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https, http".parse().expect("v"));
        assert_eq!(forwarded_https(&h), Some(true));
        let mut h = HeaderMap::new();
        h.insert("forwarded", "for=1.2.3.4;proto=https".parse().expect("v"));
        assert_eq!(forwarded_https(&h), Some(true));
        assert_eq!(forwarded_https(&HeaderMap::new()), None);
    }

    #[test]
    fn host_splitting() {
        assert_eq!(
            split_host(b"example.com:8080", 1),
            (&b"example.com"[..], 8080)
        );
        assert_eq!(
            split_host(b"example.com", 3000),
            (&b"example.com"[..], 3000)
        );
        assert_eq!(split_host(b"[::1]:9", 1), (&b"[::1]"[..], 9));
        assert_eq!(split_host(b"[::1]", 7), (&b"[::1]"[..], 7));
        assert_eq!(split_host(b"h:bad", 5), (&b"h"[..], 5));
    }
}
