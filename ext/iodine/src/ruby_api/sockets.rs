//! `Iodine::Base.listen_raw`, `.connect` and `.attach_fd`: raw listeners, client connections
//! and adopted sockets (lib/iodine builds `Iodine.listen`, `Iodine.connect` and
//! `Iodine.attach_fd` on them). Their connections are `Iodine::Connection`s like WebSocket
//! ones, with the same per-connection ordering of callbacks.

use std::sync::Arc;
use std::time::Duration;

use iodine_engine::client::{self, Target, WsRequest};
use iodine_engine::link::{Link, Protocol, Upgrade};
use iodine_engine::raw::{self, RawSettings};
use iodine_engine::server::{Address, BoundListener, Peer, Stream, Ticket};
use iodine_engine::websocket::WsSettings;
use magnus::{function, prelude::*, Error, RArray, RHash, RModule, Ruby, TryConvert, Value};

use crate::connection::Conn;
use crate::errors::exception;
use crate::ruby_api::connection::Connection;
use crate::server;

/// `Iodine::Base.listen_raw(factory, options)`: binds now, serves at start. Each connection
/// calls `factory.call` (on a worker, when it opens) for its handler. Options: `:address`,
/// `:port`, `:unix`, `:max_clients`, `:tls` (an `Iodine::TLS` or nil) and `:protocols`
/// (`[[name, block], …]` of its `on_protocol`: a connection that agreed on `name` in ALPN
/// calls that block instead of the factory; the first is used when none was agreed).
/// Returns the port.
fn listen_raw(ruby: &Ruby, factory: Value, opts: RHash) -> Result<u16, Error> {
    let defaults = RawSettings::default();
    let settings = RawSettings {
        max_clients: super::option(ruby, opts, "max_clients", defaults.max_clients)?,
        ..defaults
    };
    let host = super::option(ruby, opts, "address", "localhost".to_string())?;
    let tls = super::tls::acceptor(
        ruby,
        opts.lookup(ruby.to_symbol("tls"))?,
        &[],
        TLS_HANDSHAKE,
        &host,
        false,
    )?;
    // Kept for the life of the process, like the listener.
    let mut protocols = Vec::new();
    if tls.is_some() {
        if let Some(list) = opts.lookup::<_, Option<RArray>>(ruby.to_symbol("protocols"))? {
            for pair in list.into_iter() {
                let (name, block): (String, Value) = TryConvert::try_convert(pair)?;
                protocols.push((name.into_bytes(), crate::blocks::keep(ruby, block)?));
            }
        }
    }
    let factory = crate::blocks::keep(ruby, factory)?;
    let bound = bind_listener(ruby, opts)?;
    let port = bound.port();
    let accept = move |_peer: Peer, agreed: Option<&[u8]>| {
        let chosen = match agreed {
            Some(name) => protocols.iter().find(|(n, _)| n == name),
            None => protocols.first(),
        };
        let factory = chosen.map_or(factory, |(_, block)| *block);
        let link = Link::new(Protocol::Raw);
        let conn = Conn::with_factory(link.clone(), factory);
        Upgrade::new(link, conn)
    };
    server::add_raw(bound, settings, tls, Arc::new(accept)).map_err(|e| {
        exception(
            ruby.exception_runtime_error(),
            format!("Couldn't open listening socket. {e}"),
        )
    })?;
    Ok(port)
}

/// How long a raw listener's TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// `Iodine::Base.connect(handler, options)`: a client connection, opened at start (or now
/// when running); every failure ends in the handler's `on_close` without `on_open`.
/// Options: `:kind` (`"raw"` / `"websocket"`), `:address` and `:port` or `:unix`, `:timeout`
/// (seconds to connect and, for WebSocket, to finish the handshake); WebSocket: `:host`
/// (the Host header), `:path`, `:headers` (an Array of `[name, value]` Strings), `:ping`
/// (seconds), `:max_msg` (bytes); `:tls` (an `Iodine::TLS`: TLS, the server checked against
/// its trusted CAs or the system's).
fn connect(ruby: &Ruby, handler: Value, opts: RHash) -> Result<(), Error> {
    let tls = super::tls::connector(ruby, opts.lookup(ruby.to_symbol("tls"))?)?;
    let target = match opts.lookup::<_, Option<String>>(ruby.to_symbol("unix"))? {
        Some(path) => Target::Unix(path.into()),
        None => Target::Tcp {
            host: super::option(ruby, opts, "address", "127.0.0.1".into())?,
            port: opts.lookup::<_, u16>(ruby.to_symbol("port"))?,
        },
    };
    let timeout = match super::option(ruby, opts, "timeout", 30.0)? {
        t if t > 0.0 => super::seconds(ruby, t)?,
        _ => Duration::from_secs(30),
    };
    let kind: String = opts.lookup(ruby.to_symbol("kind"))?;
    if kind == "raw" {
        let upgrade = attached(ruby, Protocol::Raw, handler)?;
        let settings = RawSettings::default();
        return started(ruby, move |shutdown| {
            let shutdown = shutdown.clone();
            Ok(Box::pin(client::run_raw(
                target, tls, upgrade, settings, timeout, shutdown,
            )) as _)
        });
    }
    let defaults = WsSettings::default();
    let settings = WsSettings {
        ping: Some(super::option(ruby, opts, "ping", 0u64)?)
            .filter(|p| *p > 0)
            .map_or(defaults.ping, Duration::from_secs),
        max_msg: super::option(ruby, opts, "max_msg", defaults.max_msg)?,
        ..defaults
    };
    let mut headers = Vec::new();
    if let Some(list) = opts.lookup::<_, Option<RArray>>(ruby.to_symbol("headers"))? {
        for pair in list.into_iter() {
            let (name, value): (String, String) = TryConvert::try_convert(pair)?;
            headers.push((name, value));
        }
    }
    let request = WsRequest {
        host: opts.lookup(ruby.to_symbol("host"))?,
        path: super::option(ruby, opts, "path", "/".into())?,
        headers,
    };
    let upgrade = attached(ruby, Protocol::WebSocket, handler)?;
    started(ruby, move |shutdown| {
        let shutdown = shutdown.clone();
        Ok(Box::pin(client::run_websocket(
            target, tls, request, upgrade, settings, timeout, shutdown,
        )) as _)
    })
}

/// `Iodine::Base.attach_fd(fd, handler)`: a duplicate of the socket `fd` becomes a raw
/// connection (the caller keeps the original). IOError "invalid fd." when it is no open,
/// connected stream socket.
fn attach_fd(ruby: &Ruby, fd: i32, handler: Value) -> Result<(), Error> {
    let invalid = |e: std::io::Error| {
        iodine_engine::debug!("attach_fd({fd}): {e}");
        exception(ruby.exception_io_error(), "invalid fd.")
    };
    let copy = crate::gvl::dup_fd(fd).map_err(invalid)?;
    // Checked now (the runtime may not exist yet): a socket, connected, of a stream type.
    let socket = Stream::check_fd(copy).map_err(invalid)?;
    let upgrade = attached(ruby, Protocol::Raw, handler)?;
    started(ruby, move |shutdown| {
        let stream = Stream::from_owned_fd(socket)?;
        let (link, events) = upgrade.start();
        let settings = RawSettings::default();
        let ticket = Ticket::uncounted(shutdown);
        Ok(Box::pin(raw::session(
            stream,
            link,
            events,
            settings,
            shutdown.clone(),
            ticket,
        )) as _)
    })
}

/// A connection for `handler` speaking `protocol`: its `Iodine::Connection` made and its Ruby
/// values kept now (no env: raw and client connections have none).
fn attached(ruby: &Ruby, protocol: Protocol, handler: Value) -> Result<Upgrade, Error> {
    let link = Link::new(protocol);
    let conn = Conn::new(link.clone());
    let object = ruby.obj_wrap(Connection::new(conn.clone()));
    conn.attach(ruby, object.as_value(), handler, ruby.qnil().as_value())?;
    Ok(Upgrade::new(link, conn))
}

/// Runs a connection's task (at start, or now).
fn started(
    ruby: &Ruby,
    start: impl FnOnce(&iodine_engine::server::Shutdown) -> std::io::Result<server::Task>
        + Send
        + 'static,
) -> Result<(), Error> {
    server::add_connection(start).map_err(|e| {
        exception(
            ruby.exception_runtime_error(),
            format!("Couldn't open client socket. {e}"),
        )
    })
}

/// Binds the listener `opts` names (`:unix`, or `:address` and `:port`); a failure is logged
/// with the address and raised as the C gem's RuntimeError.
pub(super) fn bind_listener(ruby: &Ruby, opts: RHash) -> Result<BoundListener, Error> {
    let address = address_of(ruby, opts)?;
    let unix_mode = super::option(ruby, opts, "unix_mode", iodine_engine::server::UNIX_MODE)?;
    iodine_engine::server::bind_with_mode(&address, unix_mode).map_err(|e| {
        iodine_engine::error!("couldn't listen on {}: {e}", describe(&address));
        exception(
            ruby.exception_runtime_error(),
            "Couldn't open listening socket.",
        )
    })
}

fn address_of(ruby: &Ruby, opts: RHash) -> Result<Address, Error> {
    Ok(
        match opts.lookup::<_, Option<String>>(ruby.to_symbol("unix"))? {
            Some(path) => Address::Unix(path.into()),
            None => Address::Tcp {
                host: opts.lookup(ruby.to_symbol("address"))?,
                port: super::option(ruby, opts, "port", 3000)?,
            },
        },
    )
}

/// `host:port` or the socket path, for log lines.
fn describe(address: &Address) -> String {
    match address {
        // jump-safe: an Option, no Ruby call.
        Address::Tcp { host, port } => format!("{}:{port}", host.as_deref().unwrap_or("*")),
        Address::Unix(path) => path.display().to_string(),
    }
}

/// Defines the helpers on `Iodine::Base`.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("listen_raw", function!(listen_raw, 2))?;
    base.define_module_function("connect", function!(connect, 2))?;
    base.define_module_function("attach_fd", function!(attach_fd, 2))?;
    Ok(())
}
