//! `Iodine::Rack::Utils`: URL decoding and HTTP dates from the engine (`iodine_engine::util`),
//! and `Iodine::Base::MonkeyPatch::RackUtils`, the Rack-shaped versions `Iodine.patch_rack`
//! puts in `Rack::Utils`.
//!
//! Encodings: `decode_url`/`decode_path` return new UTF-8 Strings (as `Rack::Utils.unescape`
//! does); the bang forms replace the contents and keep the String's own encoding (a binary
//! String stays binary). Dates are UTF-8 (ASCII-only), like `Time#httpdate`.
//!
//! Every function copies the bytes out of its argument before working on them and holds no
//! Ruby value across the work; errors come back as `Err`, never as a panic or a longjmp.

use iodine_engine::util::date::{self, HttpDate, Style};
use iodine_engine::util::url;
use magnus::encoding::{EncodingCapable, RbEncoding};
use magnus::value::{LazyId, ReprValue};
use magnus::{function, prelude::*, Error, Integer, RModule, RString, Ruby, TryConvert, Value};

static TO_I: LazyId = LazyId::new("to_i");

/// The message of the RuntimeError raised on a malformed `%` escape (the C gem's).
const MALFORMED: &str = "Malformed URL string - couldn't decode.";

/// `value` as a String, or TypeError (no implicit `to_str`, as the C gem's `Check_Type`).
fn string_arg(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    RString::from_value(value).ok_or_else(|| {
        let class = crate::gvl::class_name(value);
        crate::errors::exception(
            ruby.exception_type_error(),
            format!("wrong argument type {class} (expected String)"),
        )
    })
}

/// Decodes the bytes of `s` (`plus`: `+` is a space), in a copy: the only allocation
/// besides the resulting Ruby String.
fn decode(ruby: &Ruby, s: RString, plus: bool) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::from(s.to_bytes());
    url::decode_in_place(&mut buf, plus)
        // jump-safe: the URL decoder's error (Rust), no Ruby call.
        .map_err(|_| crate::errors::exception(ruby.exception_runtime_error(), MALFORMED))?;
    Ok(buf)
}

/// A new String of `value` decoded, in `encoding`.
fn decode_new(
    ruby: &Ruby,
    value: Value,
    plus: bool,
    encoding: RbEncoding,
) -> Result<RString, Error> {
    let s = string_arg(ruby, value)?;
    let out = decode(ruby, s, plus)?;
    Ok(ruby.enc_str_new(out, encoding))
}

/// Replaces the contents of `value` by their decoding (its encoding is kept); returns it.
/// On a malformed escape the String is left as it was.
fn decode_in_place(ruby: &Ruby, value: Value, plus: bool) -> Result<RString, Error> {
    let s = string_arg(ruby, value)?;
    s.check_frozen()?;
    let out = decode(ruby, s, plus)?;
    s.replace(ruby.enc_str_new(out, RbEncoding::from(s.enc_get())))?;
    Ok(s)
}

/// `Iodine::Rack::Utils.decode_url(str)`: `+` → space, `%XX` decoded; a new UTF-8 String.
fn decode_url(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    decode_new(ruby, value, true, ruby.utf8_encoding())
}

/// `Iodine::Rack::Utils.decode_url!(str)`: `decode_url` in place; returns `str`.
fn decode_url_bang(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    decode_in_place(ruby, value, true)
}

/// `Iodine::Rack::Utils.decode_path(str)`: `%XX` decoded (`+` kept); a new UTF-8 String.
fn decode_path(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    decode_new(ruby, value, false, ruby.utf8_encoding())
}

/// `Iodine::Rack::Utils.decode_path!(str)`: `decode_path` in place; returns `str`.
fn decode_path_bang(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    decode_in_place(ruby, value, false)
}

/// The unix time of `value`: nil → 0, an Integer as is, anything else by its `to_i`
/// (TypeError when it has none).
fn unix_time(ruby: &Ruby, value: Value) -> Result<i64, Error> {
    if value.is_nil() {
        return Ok(0);
    }
    if let Some(i) = Integer::from_value(value) {
        return i.to_i64();
    }
    match value.funcall::<_, _, Value>(LazyId::get_inner_with(&TO_I, ruby), ()) {
        Ok(v) => i64::try_convert(v),
        Err(e) if !crate::errors::is_jump(&e) && !value.respond_to("to_i", false)? => {
            Err(crate::errors::exception(
                ruby.exception_type_error(),
                "time must be an Integer or respond to to_i",
            ))
        }
        Err(e) => Err(e),
    }
}

/// `unix` (0: now) in `style`, as a String.
fn date_string(ruby: &Ruby, unix: i64, style: Style) -> RString {
    let unix = if unix == 0 { date::now() } else { unix };
    ruby.enc_str_new(HttpDate::new(unix, style).as_bytes(), ruby.utf8_encoding())
}

/// `Iodine::Rack::Utils.time2str(time = nil)`: `Sun, 06 Nov 1994 08:49:37 GMT`; nil or 0:
/// now.
fn time2str(ruby: &Ruby, args: &[Value]) -> Result<RString, Error> {
    let unix = match args {
        [] => 0,
        [time] => unix_time(ruby, *time)?,
        _ => {
            return Err(crate::errors::exception(
                ruby.exception_arg_error(),
                format!(
                    "wrong number of arguments (given {}, expected 0..1)",
                    args.len()
                ),
            ))
        }
    };
    Ok(date_string(ruby, unix, Style::Http))
}

/// `Iodine::Rack::Utils.rfc2109(time)`: `Sun, 06-Nov-1994 08:49:37 GMT`; nil or 0: now.
fn rfc2109(ruby: &Ruby, time: Value) -> Result<RString, Error> {
    Ok(date_string(ruby, unix_time(ruby, time)?, Style::Cookie))
}

/// `Iodine::Rack::Utils.rfc2822(time)`: `Sun, 06 Nov 1994 08:49:37 -0000`; nil or 0: now.
fn rfc2822(ruby: &Ruby, time: Value) -> Result<RString, Error> {
    Ok(date_string(ruby, unix_time(ruby, time)?, Style::Rfc2822))
}

/// `MonkeyPatch::RackUtils.unescape(str, encoding = nil)`: `decode_url` with the result in
/// `encoding` (an Encoding or its name; nil: UTF-8), as `Rack::Utils.unescape`.
fn rack_unescape(ruby: &Ruby, args: &[Value]) -> Result<RString, Error> {
    let (value, encoding) = match args {
        [value] => (*value, None),
        [value, encoding] => (*value, Some(*encoding).filter(|e| !e.is_nil())),
        _ => {
            return Err(crate::errors::exception(
                ruby.exception_arg_error(),
                format!(
                    "wrong number of arguments (given {}, expected 1..2)",
                    args.len()
                ),
            ))
        }
    };
    let encoding = match encoding {
        Some(e) => RbEncoding::try_convert(e)?,
        None => ruby.utf8_encoding(),
    };
    decode_new(ruby, value, true, encoding)
}

/// `MonkeyPatch::RackUtils.unescape_path(str)`: `decode_path` in the encoding of `str`
/// (US-ASCII becomes UTF-8), as `Rack::Utils.unescape_path`.
fn rack_unescape_path(ruby: &Ruby, value: Value) -> Result<RString, Error> {
    let s = string_arg(ruby, value)?;
    let out = decode(ruby, s, false)?;
    let encoding = match s.enc_get() {
        e if e == ruby.usascii_encindex() => ruby.utf8_encoding(),
        e => RbEncoding::from(e),
    };
    Ok(ruby.enc_str_new(out, encoding))
}

/// `MonkeyPatch::RackUtils.rfc2109(time)`: Rack's contract (a Time; 0 is 1970, not now).
fn rack_rfc2109(ruby: &Ruby, time: Value) -> Result<RString, Error> {
    let unix = unix_time(ruby, time)?;
    Ok(ruby.enc_str_new(
        HttpDate::new(unix, Style::Cookie).as_bytes(),
        ruby.utf8_encoding(),
    ))
}

/// `MonkeyPatch::RackUtils.rfc2822(time)`: Rack's contract (a Time; 0 is 1970, not now),
/// always in UTC (`-0000`).
fn rack_rfc2822(ruby: &Ruby, time: Value) -> Result<RString, Error> {
    let unix = unix_time(ruby, time)?;
    Ok(ruby.enc_str_new(
        HttpDate::new(unix, Style::Rfc2822).as_bytes(),
        ruby.utf8_encoding(),
    ))
}

/// Defines `Iodine::Rack::Utils` (reusing `Iodine::Rack` if it exists) and
/// `Iodine::Base::MonkeyPatch::RackUtils`.
pub fn init(_ruby: &Ruby, iodine: RModule, base: RModule) -> Result<(), Error> {
    let utils = iodine.define_module("Rack")?.define_module("Utils")?;
    utils.define_module_function("decode_url", function!(decode_url, 1))?;
    utils.define_module_function("decode_url!", function!(decode_url_bang, 1))?;
    utils.define_module_function("decode_path", function!(decode_path, 1))?;
    utils.define_module_function("decode_path!", function!(decode_path_bang, 1))?;
    utils.define_module_function("time2str", function!(time2str, -1))?;
    utils.define_module_function("rfc2109", function!(rfc2109, 1))?;
    utils.define_module_function("rfc2822", function!(rfc2822, 1))?;

    let patch = base
        .define_module("MonkeyPatch")?
        .define_module("RackUtils")?;
    patch.define_module_function("unescape", function!(rack_unescape, -1))?;
    patch.define_module_function("unescape_path", function!(rack_unescape_path, 1))?;
    patch.define_module_function("rfc2109", function!(rack_rfc2109, 1))?;
    patch.define_module_function("rfc2822", function!(rack_rfc2822, 1))?;
    Ok(())
}
