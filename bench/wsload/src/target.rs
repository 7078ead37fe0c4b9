//! Where to connect, from a `ws://`, `http://` or `tcp://` URL.

/// A parsed URL: the `host:port` to open a socket to, the request path, and the URL itself.
pub struct Target {
    /// `host:port` (port 80 when the URL names none).
    pub addr: String,
    /// The path and query, `/` when empty.
    pub path: String,
    /// The URL as given (the WebSocket handshake builds its request from it).
    pub url: String,
}

impl Target {
    /// Parses `url`, which must use `scheme` (`ws`, `http` or `tcp`; no TLS).
    pub fn parse(url: &str, scheme: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| format!("{url:?} is not a {scheme}:// URL"))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        if authority.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            addr,
            path: path.to_owned(),
            url: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_address_and_path() {
        let t = Target::parse("ws://127.0.0.1:3000/echo?x=1", "ws").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("127.0.0.1:3000", "/echo?x=1")
        );
        let t = Target::parse("http://localhost", "http").unwrap();
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("localhost:80", "/"));
        assert!(Target::parse("http://x/", "ws").is_err());
        assert!(Target::parse("ws:///x", "ws").is_err());
    }
}
