//! HTTP/1.1 and HTTP/2 (see `h2.rs`) on hyper: requests become owned [`Request`]s handed to a [`Handler`]; the handler
//! answers with an owned [`Response`] through a [`Reply`].
//!
//! Everything the network can get wrong is settled here, before an app sees it: a missing or
//! repeated `Host` → 400, `Upgrade: h2c` → 400, a body over `max_body` → 413, an oversized
//! head → 431, malformed syntax → 400 and close. Date, Content-Length, keep-alive and
//! `Expect: 100-continue` follow RFC 9110/9112.

mod access_log;
mod body;
mod connection;
mod errors;
mod h2;
mod handler;
mod head;
mod hijack;
mod idle;
mod request;
mod response;
mod sendfile;
mod settings;
mod stream_body;
mod takeover;

pub use body::RequestBody;
pub use connection::{serve, serve_connection};
pub use errors::{error_response, server_error};
pub use handler::{Handler, Reply};
pub use head::put_app_headers;
pub use hijack::Hijack;
pub use request::{env_key, forwarded_https, Request};
pub(crate) use response::server_made;
pub use response::{stream_channel, Body, Response, ResponseBody};
pub use settings::HttpSettings;
pub use stream_body::{BodySender, StreamReceiver};
pub use takeover::Resumed;
