//! Responses the server makes itself (400, 413, 500, …): `"<code> <Reason>"` as text/plain.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use super::response::ResponseBody;

/// Marks a response the server made itself (a public folder's `<code>.html` may replace it).
#[derive(Clone, Copy, Debug)]
pub struct ServerMade;

/// A plain-text error response; `close` also asks the client to close the connection.
pub fn error_response(status: StatusCode, close: bool) -> hyper::Response<ResponseBody> {
    let text = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut res = hyper::Response::new(ResponseBody::full(Bytes::from(text)));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res.extensions_mut().insert(ServerMade);
    res
}
