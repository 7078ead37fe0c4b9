//! Response heads the server writes itself, when a connection leaves HTTP (the WebSocket
//! 101 and the SSE 200): the application's headers, validated the way hyper would.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};

/// Appends the application's headers as `name: value\r\n` lines: names lower-cased, a value
/// with `\n` split into several lines (the Rack 2 convention), anything invalid dropped with
/// a log line (no header injection). Framing headers (`content-length`,
/// `transfer-encoding`) and the names in `skip` are the server's and are dropped.
pub fn put_app_headers(out: &mut BytesMut, headers: &[(Bytes, Bytes)], skip: &[&str]) {
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name) else {
            crate::error!(
                "invalid response header name {:?} dropped",
                String::from_utf8_lossy(name)
            );
            continue;
        };
        let n = name.as_str();
        if n == "content-length" || n == "transfer-encoding" || skip.contains(&n) {
            continue;
        }
        for line in value.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if HeaderValue::from_bytes(line).is_err() {
                crate::error!("invalid value for response header {n} dropped");
                continue;
            }
            out.put_slice(n.as_bytes());
            out.put_slice(b": ");
            out.put_slice(line);
            out.put_slice(b"\r\n");
        }
    }
}
