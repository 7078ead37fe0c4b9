//! Responses the server makes itself (400, 413, 500, …): `"<code> <Reason>"` as text/plain.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use super::response::{Body, Response, ResponseBody};

/// Marks a response the server made itself (a public folder's `<code>.html` may replace it).
#[derive(Clone, Copy, Debug)]
pub struct ServerMade;

/// The body of [`server_error`]: its address (not its text) tells a 500 the server made for
/// an application that failed from one an application sent.
static SERVER_ERROR_TEXT: &[u8] = b"500 Internal Server Error";

/// The 500 answered for an application that raised or gave a broken response (a public
/// folder's `500.html` replaces it).
pub fn server_error() -> Response {
    Response::new(
        500,
        vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"text/plain"),
        )],
        Bytes::from_static(SERVER_ERROR_TEXT),
    )
}

/// Whether `response` is [`server_error`]'s.
pub(crate) fn is_server_error(response: &Response) -> bool {
    matches!(&response.body, Body::Full(b) if b.as_ptr() == SERVER_ERROR_TEXT.as_ptr())
}

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
