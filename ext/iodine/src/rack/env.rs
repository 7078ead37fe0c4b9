//! Building the Rack `env` Hash: a dup of a per-listener frozen template, with interned
//! frozen keys, filled with the request's values (all binary Strings).

use std::collections::HashMap;
use std::sync::OnceLock;

use http::HeaderMap;
use iodine_engine::http::{
    env_key as http_key, forwarded_https as forwarded_scheme, Request, RequestBody,
};
use iodine_engine::server::Peer;
use magnus::typed_data::Obj;
use magnus::value::Opaque;
use magnus::{prelude::*, Error, RHash, RString, Ruby, Value};
use parking_lot::Mutex;

use super::input::RackIO;

/// Interned, frozen, GC-registered key and value strings used for every request.
struct Keys {
    request_method: Opaque<RString>,
    path_info: Opaque<RString>,
    query_string: Opaque<RString>,
    server_name: Opaque<RString>,
    server_port: Opaque<RString>,
    server_protocol: Opaque<RString>,
    http_version: Opaque<RString>,
    remote_addr: Opaque<RString>,
    content_length: Opaque<RString>,
    content_type: Opaque<RString>,
    rack_input: Opaque<RString>,
    url_scheme: Opaque<RString>,
    https: Opaque<RString>,
    empty: Opaque<RString>,
    http_1_1: Opaque<RString>,
    http_1_0: Opaque<RString>,
    http_2: Opaque<RString>,
    hijack_p: Opaque<RString>,
    hijack_key: Opaque<RString>,
    get: Opaque<RString>,
    /// `Iodine::Base::Hijack`, the `rack.hijack` callable.
    hijack: Opaque<Value>,
    /// Known methods as frozen values.
    methods: HashMap<&'static str, Opaque<RString>>,
    /// `HTTP_*` keys of common headers.
    headers: HashMap<&'static str, Opaque<RString>>,
}

const COMMON_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
const COMMON_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-charset",
    "connection",
    "cookie",
    "referer",
    "cache-control",
    "pragma",
    "upgrade",
    "origin",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "x-requested-with",
    "if-none-match",
    "if-modified-since",
    "range",
    "dnt",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "upgrade-insecure-requests",
    "te",
    "expect",
    "forwarded",
    "last-event-id",
    "keep-alive",
];

static KEYS: OnceLock<Keys> = OnceLock::new();

fn interned(ruby: &Ruby, s: &str) -> Opaque<RString> {
    let v = ruby.str_new(s).to_interned_str();
    ruby.gc_register_mark_object(v);
    Opaque::from(v)
}

/// Creates the interned strings; called once from `init`.
pub fn init(ruby: &Ruby, hijacker: Value) {
    KEYS.get_or_init(|| Keys {
        hijack: Opaque::from(hijacker),
        request_method: interned(ruby, "REQUEST_METHOD"),
        path_info: interned(ruby, "PATH_INFO"),
        query_string: interned(ruby, "QUERY_STRING"),
        server_name: interned(ruby, "SERVER_NAME"),
        server_port: interned(ruby, "SERVER_PORT"),
        server_protocol: interned(ruby, "SERVER_PROTOCOL"),
        http_version: interned(ruby, "HTTP_VERSION"),
        remote_addr: interned(ruby, "REMOTE_ADDR"),
        content_length: interned(ruby, "CONTENT_LENGTH"),
        content_type: interned(ruby, "CONTENT_TYPE"),
        rack_input: interned(ruby, "rack.input"),
        url_scheme: interned(ruby, "rack.url_scheme"),
        https: interned(ruby, "https"),
        empty: interned(ruby, ""),
        http_1_1: interned(ruby, "HTTP/1.1"),
        http_1_0: interned(ruby, "HTTP/1.0"),
        http_2: interned(ruby, "HTTP/2"),
        hijack_p: interned(ruby, "rack.hijack?"),
        hijack_key: interned(ruby, "rack.hijack"),
        get: interned(ruby, "GET"),
        methods: COMMON_METHODS
            .iter()
            .map(|m| (*m, interned(ruby, m)))
            .collect(),
        headers: COMMON_HEADERS
            .iter()
            .map(|h| (*h, interned(ruby, &http_key(h))))
            .collect(),
    });
}

fn keys() -> &'static Keys {
    // `init` runs in the extension's Init function, before any request can exist.
    KEYS.get().expect("iodine: env keys used before init")
}

/// The per-listener template: everything that does not change between requests.
///
/// It also holds the most common per-request values (GET, HTTP/1.1, the listening port), so
/// `build` only stores those when a request differs.
pub fn template(ruby: &Ruby, tls: bool, port: u16) -> Result<RHash, Error> {
    let t = ruby.hash_new();
    let k = keys();
    t.aset(ruby.get_inner(k.request_method), ruby.get_inner(k.get))?;
    t.aset(
        ruby.get_inner(k.server_protocol),
        ruby.get_inner(k.http_1_1),
    )?;
    t.aset(ruby.get_inner(k.http_version), ruby.get_inner(k.http_1_1))?;
    t.aset(
        ruby.get_inner(k.server_port),
        recurring(ruby, port.to_string().as_bytes()),
    )?;
    // Requests without a body share one empty input: reading it always gives "" / nil, so
    // nothing a request does to it can be seen by another.
    t.aset(
        ruby.get_inner(k.rack_input),
        RackIO::new(RequestBody::Empty),
    )?;
    let version = ruby.ary_new_from_values(&[ruby.integer_from_i64(1), ruby.integer_from_i64(3)]);
    version.freeze();
    t.aset("rack.version", version)?;
    t.aset("rack.errors", ruby.eval::<Value>("$stderr")?)?;
    t.aset("rack.multithread", true)?;
    t.aset("rack.multiprocess", true)?;
    t.aset("rack.run_once", false)?;
    // Under TLS the socket carries encrypted bytes: no hijack (the app would read records).
    t.aset("rack.hijack?", !tls)?;
    if !tls {
        t.aset("rack.hijack", ruby.get_inner(keys().hijack))?;
    }
    t.aset("rack.upgrade?", ruby.qnil())?;
    t.aset("rack.upgrade", ruby.qnil())?;
    // Every String value of the template is frozen: each request's env is a shallow copy,
    // so an unfrozen one would be one object shared by all of them, and an app that appends
    // to it (`env["SCRIPT_NAME"] << "/mount"`) would change every later request.
    let frozen = |s: &str| ruby.str_new(s).to_interned_str();
    t.aset(
        "rack.url_scheme",
        frozen(if tls { "https" } else { "http" }),
    )?;
    // Rack::Sendfile then answers file bodies with `X-Sendfile`, served from Rust.
    t.aset("sendfile.type", frozen("X-Sendfile"))?;
    // jump-safe: an environment variable (Rust), no Ruby call.
    let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
    let script_name = if script_name == "/" {
        String::new()
    } else {
        script_name
    };
    t.aset("SCRIPT_NAME", frozen(&script_name))?;
    t.aset(
        "SERVER_SOFTWARE",
        frozen(concat!("iodine/", env!("CARGO_PKG_VERSION"))),
    )?;
    t.aset("QUERY_STRING", ruby.get_inner(keys().empty))?;
    Ok(t)
}

/// Values that repeat from request to request (host names, ports, peer addresses: behind a
/// proxy every request comes from the same address; the values of [`recurs`] headers), as
/// frozen interned Strings. Each long-lived connection keeps its env: shared values make
/// thousands of them cheaper.
static RECURRING: Mutex<Option<Interned>> = Mutex::new(None);
/// Frozen Strings by their bytes.
type Interned = HashMap<Box<[u8]>, Opaque<RString>>;
/// Most distinct values kept; later ones get fresh Strings (so hostile input can't grow it).
const RECURRING_MAX: usize = 256;
/// Longest value kept.
const RECURRING_LEN: usize = 256;

fn recurring(ruby: &Ruby, bytes: &[u8]) -> RString {
    let mut known = RECURRING.lock();
    let known = known.get_or_insert_with(HashMap::new);
    if let Some(s) = known.get(bytes) {
        return ruby.get_inner(*s);
    }
    let fresh = ruby.str_from_slice(bytes);
    if known.len() >= RECURRING_MAX || bytes.len() > RECURRING_LEN {
        return fresh;
    }
    let frozen = fresh.to_interned_str();
    ruby.gc_register_mark_object(frozen);
    known.insert(bytes.into(), Opaque::from(frozen));
    frozen
}

/// Headers whose values come from a small set (what a browser or a WebSocket client sends
/// every time), so they are shared frozen Strings. Values an application might edit (cookies,
/// paths, forwarded addresses) are never among them.
fn recurs(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "upgrade"
            | "sec-websocket-version"
            | "accept"
            | "accept-encoding"
            | "accept-language"
            | "user-agent"
            | "cache-control"
            | "pragma"
            | "dnt"
            | "te"
            | "upgrade-insecure-requests"
            | "sec-fetch-site"
            | "sec-fetch-mode"
            | "sec-fetch-dest"
            | "sec-fetch-user"
    )
}

/// A fresh env for `req`, starting from `template`, and the request's own `rack.input` (to be
/// released when the response is finished; None when the body was empty).
pub fn build(
    ruby: &Ruby,
    template: RHash,
    req: &mut Request,
) -> Result<(RHash, Option<Obj<RackIO>>), Error> {
    let k = keys();
    let env = crate::gvl::hash_dup(template);
    if req.method != http::Method::GET {
        let method = match k.methods.get(req.method.as_str()) {
            Some(m) => ruby.get_inner(*m),
            None => ruby.str_new(req.method.as_str()),
        };
        env.aset(ruby.get_inner(k.request_method), method)?;
    }
    env.aset(
        ruby.get_inner(k.path_info),
        ruby.str_from_slice(req.path().as_bytes()),
    )?;
    let query = req.query();
    if !query.is_empty() {
        env.aset(
            ruby.get_inner(k.query_string),
            ruby.str_from_slice(query.as_bytes()),
        )?;
    }
    if req.version == http::Version::HTTP_10 {
        let version = ruby.get_inner(k.http_1_0);
        env.aset(ruby.get_inner(k.server_protocol), version)?;
        env.aset(ruby.get_inner(k.http_version), version)?;
    } else if req.version == http::Version::HTTP_2 {
        let version = ruby.get_inner(k.http_2);
        env.aset(ruby.get_inner(k.server_protocol), version)?;
        env.aset(ruby.get_inner(k.http_version), version)?;
        // One socket carries every stream: there is nothing to hijack.
        env.aset(ruby.get_inner(k.hijack_p), false)?;
        env.delete::<_, Value>(ruby.get_inner(k.hijack_key))?;
    }
    let (name, port) = req.server_name_and_port();
    env.aset(ruby.get_inner(k.server_name), recurring(ruby, name))?;
    if port != req.local_port {
        env.aset(
            ruby.get_inner(k.server_port),
            recurring(ruby, port.to_string().as_bytes()),
        )?;
    }
    let addr = match req.peer {
        Peer::Ip(ip) => ip.to_string(),
        // Like puma: a Unix-socket peer is local.
        Peer::Unix => "127.0.0.1".to_string(),
    };
    env.aset(
        ruby.get_inner(k.remote_addr),
        recurring(ruby, addr.as_bytes()),
    )?;
    if let Some(scheme) = forwarded_scheme(&req.headers) {
        let scheme = if scheme {
            ruby.get_inner(k.https)
        } else {
            ruby.str_new("http")
        };
        env.aset(ruby.get_inner(k.url_scheme), scheme)?;
    }
    headers(ruby, k, env, &req.headers)?;
    let body = std::mem::take(&mut req.body);
    if !body.is_empty() || req.headers.contains_key(http::header::CONTENT_LENGTH) {
        env.aset(
            ruby.get_inner(k.content_length),
            ruby.str_new(&body.len().to_string()),
        )?;
    }
    let input = if body.is_empty() {
        None
    } else {
        let input = ruby.obj_wrap(RackIO::new(body));
        env.aset(ruby.get_inner(k.rack_input), input)?;
        Some(input)
    };
    Ok((env, input))
}

fn headers(ruby: &Ruby, k: &Keys, env: RHash, headers: &HeaderMap) -> Result<(), Error> {
    for name in headers.keys() {
        let key: Value = match name.as_str() {
            "content-length" => continue, // set from the received body
            "content-type" => ruby.get_inner(k.content_type).as_value(),
            n => match k.headers.get(n) {
                Some(key) => ruby.get_inner(*key).as_value(),
                None => ruby.str_new(&http_key(n)).as_value(),
            },
        };
        let mut values = headers.get_all(name).iter();
        // jump-safe: an Option of header values (Rust), no Ruby call.
        let first = values.next().map(|v| v.as_bytes()).unwrap_or(b"");
        let value = match values.next() {
            None if recurs(name) => recurring(ruby, first),
            None => ruby.str_from_slice(first),
            Some(second) => {
                // Repeated headers are joined (RFC 9110 §5.3); cookies with "; " (RFC 6265).
                let sep: &[u8] = if name == http::header::COOKIE {
                    b"; "
                } else {
                    b", "
                };
                let joined = ruby.str_from_slice(first);
                joined.cat(sep);
                joined.cat(second.as_bytes());
                for v in values {
                    joined.cat(sep);
                    joined.cat(v.as_bytes());
                }
                joined
            }
        };
        env.aset(key, value)?;
    }
    Ok(())
}
