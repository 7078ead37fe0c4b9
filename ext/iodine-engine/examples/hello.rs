//! The raw-Rust ceiling for `rake bench`: the engine's HTTP server answering "Hello World!"
//! straight from the IO thread, no Ruby involved.
//!
//! `cargo run --release --example hello -- PORT`

use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::http::{serve, Handler, HttpSettings, Reply, Request, Response};
use iodine_engine::server::{bind, Address, Shutdown};

fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let bound = bind(&Address::Tcp {
        host: Some("127.0.0.1".into()),
        port,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handler: Arc<dyn Handler> = Arc::new(|_req: Request, reply: Reply| {
        let headers = vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"text/plain"),
        )];
        reply.send(Response::new(
            200,
            headers,
            Bytes::from_static(b"Hello World!"),
        ));
    });
    runtime.block_on(async move {
        let listener = bound.into_async()?;
        eprintln!("raw hello listening on 127.0.0.1:{}", listener.port());
        serve(listener, HttpSettings::default(), handler, Shutdown::new()).await;
        Ok(())
    })
}
