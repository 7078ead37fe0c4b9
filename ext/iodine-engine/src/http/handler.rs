//! The seam between the HTTP engine and whoever runs the application.

use tokio::sync::oneshot;

use super::request::Request;
use super::response::Response;

/// Runs the application for a request.
///
/// `call` runs on an IO thread and must not block: hand the request to a worker and answer
/// later through the [`Reply`]. Dropping the reply unanswered makes the client get a 500.
pub trait Handler: Send + Sync + 'static {
    /// Starts handling `request`; the response goes through `reply`.
    fn call(&self, request: Request, reply: Reply);
}

/// The one-time answer channel for a request.
#[derive(Debug)]
pub struct Reply(oneshot::Sender<Response>);

impl Reply {
    pub(crate) fn new() -> (Reply, oneshot::Receiver<Response>) {
        let (tx, rx) = oneshot::channel();
        (Reply(tx), rx)
    }

    /// Sends the response; false when the connection is already gone.
    pub fn send(self, response: Response) -> bool {
        self.0.send(response).is_ok()
    }

    /// Whether the client went away (the response would be dropped).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl<F> Handler for F
where
    F: Fn(Request, Reply) + Send + Sync + 'static,
{
    fn call(&self, request: Request, reply: Reply) {
        self(request, reply)
    }
}
