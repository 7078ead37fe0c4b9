//! `Iodine::TLS`: a TLS context from the engine. The argument forms, and the blocks of
//! `on_protocol` (kept in the object's `@protocols`, so Ruby marks them), are in
//! lib/iodine/tls.rb; this file holds the context and its checked operations.

use std::path::Path;
use std::sync::Arc;

use iodine_engine::tls::{Acceptor, Connector, TlsContext, TlsError};
use magnus::{method, prelude::*, Error, RModule, Ruby, TryConvert, Value};

use crate::errors::exception;

/// An `Iodine::TLS` object: its engine context.
#[magnus::wrap(class = "Iodine::TLS", free_immediately, size)]
#[derive(Default)]
pub struct Tls(Arc<TlsContext>);

/// A TLS setting that can't be used, as an ArgumentError (the command line prints it as
/// one `Error:` line).
fn tls_error(ruby: &Ruby, e: TlsError) -> Error {
    exception(ruby.exception_arg_error(), format!("TLS: {e}"))
}

impl Tls {
    /// `#__use_certificate(name, cert, key, password)` (each a String or nil).
    fn use_certificate(
        ruby: &Ruby,
        rb_self: &Self,
        name: Option<String>,
        cert: Option<String>,
        key: Option<String>,
        password: Option<String>,
    ) -> Result<(), Error> {
        rb_self
            .0
            .use_certificate(
                name.as_deref(),
                cert.as_deref().map(Path::new),
                key.as_deref().map(Path::new),
                password.as_deref(),
            )
            .map_err(|e| tls_error(ruby, e))
    }

    /// `#__trust(pem_path)`.
    fn trust(ruby: &Ruby, rb_self: &Self, pem: String) -> Result<(), Error> {
        rb_self
            .0
            .trust(Path::new(&pem))
            .map_err(|e| tls_error(ruby, e))
    }

    /// `#__add_protocol(name)`.
    fn add_protocol(ruby: &Ruby, rb_self: &Self, name: String) -> Result<(), Error> {
        rb_self
            .0
            .add_protocol(&name)
            .map_err(|e| tls_error(ruby, e))
    }

    /// `#__reload`: true when every file loaded (else the old certificates stay, and the
    /// error was logged).
    fn reload(rb_self: &Self) -> bool {
        // jump-safe: the engine's reload (Rust, files only), no Ruby call.
        rb_self.0.reload().is_ok()
    }

    /// `#__protocols`: the ALPN names, in order.
    fn protocols(rb_self: &Self) -> Vec<String> {
        rb_self.0.protocols()
    }
}

/// The `tls:` option of a listener or client: None for nil/false, the context of an
/// `Iodine::TLS`, a TypeError for anything else.
fn context(ruby: &Ruby, value: Option<Value>) -> Result<Option<Arc<TlsContext>>, Error> {
    match value {
        None => Ok(None),
        Some(v) if !v.to_bool() => Ok(None),
        Some(v) => match <&Tls>::try_convert(v) {
            Ok(tls) => Ok(Some(tls.0.clone())),
            Err(e) if crate::errors::is_jump(&e) => Err(e),
            // jump-safe: a jump left on the arm above; this is the class check's TypeError.
            Err(_) => Err(exception(
                ruby.exception_type_error(),
                "tls: must be an Iodine::TLS (or nil)",
            )),
        },
    }
}

/// The server side of a listener's `tls:` option; `also` are the listener's ALPN protocols
/// (offered after the context's), `host` the name of a self-signed certificate when it has
/// none.
pub fn acceptor(
    ruby: &Ruby,
    value: Option<Value>,
    also: &[&str],
    deadline: std::time::Duration,
    host: &str,
    http: bool,
) -> Result<Option<Acceptor>, Error> {
    let Some(context) = context(ruby, value)? else {
        return Ok(None);
    };
    context
        .acceptor(also, deadline, host, http)
        .map(Some)
        .map_err(|e| tls_error(ruby, e))
}

/// The client side of `Iodine.connect`'s `tls:` option.
pub fn connector(ruby: &Ruby, value: Option<Value>) -> Result<Option<Connector>, Error> {
    let Some(context) = context(ruby, value)? else {
        return Ok(None);
    };
    context
        .connector()
        .map(Some)
        .map_err(|e| tls_error(ruby, e))
}

/// `Iodine::Base.tls_reload_all`: SIGHUP's work (every serving context reads its files).
fn reload_all() {
    iodine_engine::tls::reload_all();
}

/// Defines `Iodine::TLS` (allocated empty; lib/iodine/tls.rb defines `initialize` and the
/// public methods on these).
pub fn init(ruby: &Ruby, iodine: RModule, base: RModule) -> Result<(), Error> {
    let class = iodine.define_class("TLS", ruby.class_object())?;
    class.define_alloc_func::<Tls>();
    class.define_private_method("__use_certificate", method!(Tls::use_certificate, 4))?;
    class.define_private_method("__trust", method!(Tls::trust, 1))?;
    class.define_private_method("__add_protocol", method!(Tls::add_protocol, 1))?;
    class.define_private_method("__reload", method!(Tls::reload, 0))?;
    class.define_private_method("__protocols", method!(Tls::protocols, 0))?;
    base.define_module_function("tls_reload_all", magnus::function!(reload_all, 0))?;
    Ok(())
}
