//! The raw-Rust ceiling for the WebSocket benchmarks (`bench/ws.rb`): the engine echoing every
//! WebSocket message straight from the IO thread, no Ruby involved. Every request is upgraded.
//!
//! `cargo run --release --example ws_echo -- PORT`

use std::sync::Arc;

use bytes::Bytes;
use iodine_engine::http::{serve, Body, Handler, HttpSettings, Reply, Request, Response};
use iodine_engine::link::{Events, Kind, Link, Outgoing, Protocol, Upgrade};
use iodine_engine::server::{bind, Address, Shutdown};

/// Writes each message back as it came.
struct Echo(Arc<Link>);

impl Events for Echo {
    fn on_open(&self) {}
    fn on_message(&self, data: Bytes, kind: Kind) {
        let _ = self.0.write(match kind.is_text() {
            true => Outgoing::Text(data),
            false => Outgoing::Binary(data),
        });
    }
    fn on_drained(&self) {}
    fn on_shutdown(&self) {}
    fn on_close(&self) {}
}

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
        let link = Link::new(Protocol::WebSocket);
        let events = Arc::new(Echo(link.clone()));
        reply.send(Response {
            status: 200,
            headers: Vec::new(),
            body: Body::Upgrade(Upgrade::new(link, events)),
        });
    });
    runtime.block_on(async move {
        let listener = bound.into_async()?;
        eprintln!(
            "raw WebSocket echo listening on 127.0.0.1:{}",
            listener.port()
        );
        let settings = HttpSettings {
            max_clients: 1 << 20,
            ..HttpSettings::default()
        };
        serve(listener, settings, handler, Shutdown::new()).await;
        Ok(())
    })
}
