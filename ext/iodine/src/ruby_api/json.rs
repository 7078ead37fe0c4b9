//! `Iodine::JSON`: the engine's strict parser building Ruby objects directly (no tree in
//! between), and `generate` writing Ruby objects as the json gem does.
//!
//! A document of [`UNLOCKED_PARSE`] bytes or more is first read into a tape without the GVL,
//! so other Ruby threads run meanwhile; the objects are then built from the tape with it.
//!
//! The values being built wait on a stack the GC marks ([`Marked`]): arrays and hashes are made
//! when they close, from the top of that stack, in one call each.

use std::sync::OnceLock;

use iodine_engine::json::{self, ErrorKind, Options, ShortKey, Sink, Stop, Tape};
use magnus::exception::ExceptionClass;
use magnus::typed_data::Obj;
use magnus::value::{Opaque, ReprValue};
use magnus::{
    function, prelude::*, Error, Fixnum, Float, Integer, RArray, RHash, RModule, RString, Ruby,
    Symbol, Value,
};

use crate::errors::exception;
use crate::gvl;
use crate::marked::Marked;

/// Documents at least this long are tokenized without the GVL.
const UNLOCKED_PARSE: usize = 64 * 1024;

/// How deep `generate` goes when `max_nesting` is off (or higher): it recurses, and a Ruby thread's
/// native stack is 1 MiB.
const GENERATE_DEPTH_CAP: usize = 500;

/// The options `parse` accepts but does not implement (the C gem warned about them too).
const IGNORED: [&str; 4] = [
    "create_additions",
    "object_class",
    "array_class",
    "decimal_class",
];

/// The error classes, set by `init`.
struct Classes {
    parser: Opaque<ExceptionClass>,
    nesting: Opaque<ExceptionClass>,
    generator: Opaque<ExceptionClass>,
}

static CLASSES: OnceLock<Classes> = OnceLock::new();

fn classes() -> &'static Classes {
    // Set by `init` when the extension loads, before `Iodine::JSON` has a method.
    CLASSES
        .get()
        .expect("iodine: Iodine::JSON used before init")
}

fn keys() -> &'static Keys {
    // Set by `init` when the extension loads, before `Iodine::JSON` has a method.
    KEYS.get().expect("iodine: Iodine::JSON used before init")
}

fn parser_error(ruby: &Ruby, message: String) -> Error {
    exception(ruby.get_inner(classes().parser), message)
}

fn generator_error(ruby: &Ruby, message: impl AsRef<str>) -> Error {
    exception(ruby.get_inner(classes().generator), message)
}

/// Slots of a [`KeyCache`] (a power of two).
const KEY_SLOTS: usize = 512;

/// Object keys already made, by their text, shared by every parse: API payloads repeat the
/// same few keys, and finding one here is cheaper than Ruby's fstring (or symbol) table.
/// A slot holds the key's text (keys up to [`json::SHORT_KEY_LEN`] bytes are cached); its
/// Ruby value is at the same index of `values`, a [`Marked`] registered with the GC for good:
/// a cached key is never collected, and (marked with `rb_gc_mark`) never moved by
/// compaction. The cache is bounded: a new key replaces the one in its slot.
struct KeyCache {
    texts: parking_lot::Mutex<Box<[ShortKey]>>,
    values: Opaque<Obj<Marked>>,
}

impl KeyCache {
    fn new(ruby: &Ruby) -> Self {
        let values = Marked::new(ruby, KEY_SLOTS);
        values
            .0
            .borrow_mut()
            .resize(KEY_SLOTS, Opaque::from(ruby.qnil().as_value()));
        ruby.gc_register_mark_object(values);
        KeyCache {
            texts: parking_lot::Mutex::new(vec![ShortKey::EMPTY; KEY_SLOTS].into_boxed_slice()),
            values: values.into(),
        }
    }

    /// The cache for one parse, or None when another parse holds it (parses run with the
    /// GVL, one at a time: not expected, but never waited for).
    fn take(&self) -> Option<HeldKeys<'_>> {
        Some(HeldKeys {
            texts: self.texts.try_lock()?,
            values: self.values,
        })
    }
}

/// A [`KeyCache`] held by one parse (one lock per parse, not per key).
struct HeldKeys<'a> {
    texts: parking_lot::MutexGuard<'a, Box<[ShortKey]>>,
    values: Opaque<Obj<Marked>>,
}

impl HeldKeys<'_> {
    /// The key made for `text` before, if it is still cached.
    fn get(&self, ruby: &Ruby, text: &ShortKey) -> Option<Value> {
        let slot = text.slot(KEY_SLOTS.trailing_zeros());
        if self.texts.get(slot) != Some(text) {
            return None;
        }
        let values = ruby.get_inner(self.values);
        let value = values.0.borrow().get(slot).copied();
        value.map(|v| ruby.get_inner(v))
    }

    /// Caches `value` as the key for `text`.
    fn put(&mut self, ruby: &Ruby, text: ShortKey, value: Value) {
        let slot = text.slot(KEY_SLOTS.trailing_zeros());
        let values = ruby.get_inner(self.values);
        // No Ruby call while borrowed (a GC could start there and read the values).
        let mut held = values.0.borrow_mut();
        if let (Some(entry), Some(cached)) = (held.get_mut(slot), self.texts.get_mut(slot)) {
            *entry = Opaque::from(value);
            *cached = text;
        }
    }
}

/// The caches of String keys and of Symbol keys, made by `init`.
struct Keys {
    strings: KeyCache,
    symbols: KeyCache,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

/// Builds Ruby objects from the parser's calls.
struct Builder<'r> {
    ruby: &'r Ruby,
    /// The values not in a container yet.
    stack: Obj<Marked>,
    keys: Option<HeldKeys<'static>>,
    symbolize: bool,
    freeze: bool,
    /// The Ruby error that stopped the parse.
    failed: Option<Error>,
}

impl Builder<'_> {
    fn push(&mut self, v: Value) -> Result<(), Stop> {
        self.stack.0.borrow_mut().push(Opaque::from(v));
        Ok(())
    }

    /// The container made of the last `n` values replaces them.
    fn close(
        &mut self,
        n: usize,
        make: impl FnOnce(&[Value]) -> Result<Value, Error>,
    ) -> Result<(), Stop> {
        let from = self.stack.0.borrow().len().saturating_sub(n);
        // Borrowed shared while `make` allocates (a GC reads the stack meanwhile).
        let made = make(gvl::opaque_values(&self.stack.0.borrow()[from..]));
        match made {
            Ok(container) => {
                self.stack.0.borrow_mut().truncate(from);
                if self.freeze {
                    container.freeze();
                }
                self.push(container)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(Stop)
            }
        }
    }

    fn string_value(&self, s: &[u8]) -> Value {
        if self.freeze {
            gvl::interned_str(s)
        } else {
            gvl::utf8_str(s)
        }
    }
}

impl Sink for Builder<'_> {
    fn end_array(&mut self, len: usize) -> Result<(), Stop> {
        let ruby = self.ruby;
        self.close(len, |values| {
            Ok(ruby.ary_new_from_values(values).as_value())
        })
    }

    fn end_object(&mut self, pairs: usize) -> Result<(), Stop> {
        let ruby = self.ruby;
        self.close(2 * pairs, |values| {
            let hash = gvl::hash_with_capacity(ruby, pairs);
            hash.bulk_insert(values)?;
            Ok(hash.as_value())
        })
    }

    fn key(&mut self, key: &[u8]) -> Result<(), Stop> {
        let text = self.keys.as_ref().and_then(|_| ShortKey::of(key));
        if let (Some(keys), Some(text)) = (self.keys.as_ref(), text.as_ref()) {
            if let Some(v) = keys.get(self.ruby, text) {
                return self.push(v);
            }
        }
        let v = if self.symbolize {
            gvl::dynamic_symbol(key)
        } else {
            gvl::interned_str(key)
        };
        if let (Some(keys), Some(text)) = (self.keys.as_mut(), text) {
            keys.put(self.ruby, text, v);
        }
        self.push(v)
    }

    fn string(&mut self, value: &[u8]) -> Result<(), Stop> {
        let v = self.string_value(value);
        self.push(v)
    }

    fn integer(&mut self, value: i64) -> Result<(), Stop> {
        let v = self.ruby.integer_from_i64(value).as_value();
        self.push(v)
    }

    fn big_integer(&mut self, digits: &str) -> Result<(), Stop> {
        let v = gvl::integer_from_digits(self.ruby, digits);
        self.push(v)
    }

    fn float(&mut self, value: f64) -> Result<(), Stop> {
        let v = self.ruby.float_from_f64(value).as_value();
        self.push(v)
    }

    fn boolean(&mut self, value: bool) -> Result<(), Stop> {
        let v = if value {
            self.ruby.qtrue().as_value()
        } else {
            self.ruby.qfalse().as_value()
        };
        self.push(v)
    }

    fn null(&mut self) -> Result<(), Stop> {
        let v = self.ruby.qnil().as_value();
        self.push(v)
    }
}

/// `args` checked as `(source, opts = {})` (TypeError otherwise, as the C gem): the source
/// and the options Hash, if any.
fn arguments(ruby: &Ruby, args: &[Value]) -> Result<(Value, Option<RHash>), Error> {
    if args.is_empty() || args.len() > 2 {
        return Err(exception(
            ruby.exception_type_error(),
            format!(
                "wrong number of arguments (given {}, expected 1..2)",
                args.len()
            ),
        ));
    }
    let opts =
        match args.get(1) {
            Some(v) if !v.is_nil() => Some(RHash::from_value(*v).ok_or_else(|| {
                exception(ruby.exception_type_error(), "the options must be a Hash")
            })?),
            _ => None,
        };
    Ok((args[0], opts))
}

/// The option `name` of `opts` (nil when absent).
fn option(ruby: &Ruby, opts: RHash, name: &str) -> Value {
    let value = opts.get(ruby.to_symbol(name));
    // jump-safe: an Option (an absent key), no Ruby call.
    value.unwrap_or_else(|| ruby.qnil().as_value())
}

/// `max_nesting:` as a depth limit: an Integer (0 or less: none), or false/nil for none.
fn max_nesting(ruby: &Ruby, opts: RHash, default: usize) -> Result<usize, Error> {
    let Some(v) = opts.get(ruby.to_symbol("max_nesting")) else {
        return Ok(default);
    };
    if !v.to_bool() {
        return Ok(0);
    }
    let n = Integer::from_value(v).ok_or_else(|| {
        exception(
            ruby.exception_type_error(),
            "max_nesting must be an Integer, false or nil",
        )
    })?;
    Ok(n.to_i64()?.max(0) as usize)
}

/// `Iodine::JSON.parse(source, opts = {})` (and `parse!`, the same).
fn parse(ruby: &Ruby, args: &[Value]) -> Result<Value, Error> {
    let (source, opts) = arguments(ruby, args)?;
    let source = RString::from_value(source).ok_or_else(|| {
        exception(
            ruby.exception_type_error(),
            format!(
                "no implicit conversion of {} into String",
                gvl::class_name(source)
            ),
        )
    })?;
    let mut options = Options::default();
    let (mut symbolize, mut freeze) = (false, false);
    if let Some(opts) = opts {
        symbolize = option(ruby, opts, "symbolize_names").to_bool();
        freeze = option(ruby, opts, "freeze").to_bool();
        options.allow_nan = option(ruby, opts, "allow_nan").to_bool();
        options.max_nesting = max_nesting(ruby, opts, options.max_nesting)?;
        for name in IGNORED {
            if !option(ruby, opts, name).is_nil() {
                iodine_engine::warning!("{name} ignored on this JSON implementation.");
            }
        }
    }
    // A copy: the parse calls Ruby (allocations, so the GC), which may move or change the
    // source String; and the large ones are read with no GVL, when any thread may.
    let mut bytes = Vec::with_capacity(source.len());
    gvl::append_str(&mut bytes, source);
    let mut builder = Builder {
        ruby,
        stack: Marked::new(ruby, 32),
        keys: None, // taken when the building starts
        symbolize,
        freeze,
        failed: None,
    };
    let parsed = if bytes.len() >= UNLOCKED_PARSE {
        let input = &bytes;
        let taped = gvl::without_gvl(
            ruby,
            || {
                let mut tape = Tape::for_input(input);
                json::parse(input, &options, &mut tape).map(|()| tape)
            },
            || {},
        )?;
        match taped {
            Ok(tape) => {
                builder.keys = key_cache(symbolize);
                // jump-safe: the Stop carries nothing; the builder kept the Ruby error (a jump included).
                if tape.replay(&bytes, &mut builder).is_err() {
                    return Err(stopped(ruby, &mut builder));
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    } else {
        builder.keys = key_cache(symbolize);
        json::parse(&bytes, &options, &mut builder)
    };
    let result = match parsed {
        Ok(()) => {
            let values = builder.stack.0.borrow();
            values.last().map(|v| ruby.get_inner(*v))
        }
        Err(e) => return Err(parse_error(ruby, e, &mut builder)),
    };
    // The stack must outlive the building: keep it visibly in use until here.
    std::hint::black_box(&builder.stack);
    result.ok_or_else(|| parser_error(ruby, "Malformed JSON format: no value.".into()))
}

/// The key cache for a parse that builds now (its keys Symbols or Strings).
fn key_cache(symbolize: bool) -> Option<HeldKeys<'static>> {
    if symbolize {
        keys().symbols.take()
    } else {
        keys().strings.take()
    }
}

/// The Ruby error for a failed parse.
fn parse_error(ruby: &Ruby, e: json::Error, builder: &mut Builder) -> Error {
    match e.kind() {
        ErrorKind::Stopped => stopped(ruby, builder),
        ErrorKind::TooDeep(depth) => exception(
            ruby.get_inner(classes().nesting),
            format!("nesting of {depth} is too deep (at byte {})", e.offset()),
        ),
        _ => parser_error(ruby, format!("Malformed JSON format: {e}.")),
    }
}

/// The Ruby error that made the builder stop the parse.
fn stopped(ruby: &Ruby, builder: &mut Builder) -> Error {
    match builder.failed.take() {
        Some(e) => e,
        None => parser_error(ruby, "Malformed JSON format.".into()),
    }
}

/// Writes Ruby objects as JSON text.
struct Generator<'r> {
    ruby: &'r Ruby,
    out: Vec<u8>,
    allow_nan: bool,
    /// The deepest nesting allowed (always bounded: see [`GENERATE_DEPTH_CAP`]).
    max_depth: usize,
    utf8: magnus::encoding::Index,
    usascii: magnus::encoding::Index,
    binary: magnus::encoding::Index,
}

impl Generator<'_> {
    fn value(&mut self, v: Value, depth: usize) -> Result<(), Error> {
        let ruby = self.ruby;
        if v.is_nil() {
            self.out.extend_from_slice(b"null");
        } else if let Some(n) = Fixnum::from_value(v) {
            self.out
                .extend_from_slice(n.to_i64().to_string().as_bytes());
        } else if let Some(s) = RString::from_value(v) {
            self.string(s)?;
        } else if let Some(f) = Float::from_value(v) {
            self.float(f.to_f64())?;
        } else if v.is_kind_of(ruby.class_true_class()) {
            self.out.extend_from_slice(b"true");
        } else if v.is_kind_of(ruby.class_false_class()) {
            self.out.extend_from_slice(b"false");
        } else if let Some(a) = RArray::from_value(v) {
            let depth = self.enter(depth)?;
            self.out.push(b'[');
            let mut i = 0;
            while i < a.len() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.value(a.entry(i as isize)?, depth)?;
                i += 1;
            }
            self.out.push(b']');
        } else if let Some(h) = RHash::from_value(v) {
            let depth = self.enter(depth)?;
            self.out.push(b'{');
            let mut first = true;
            h.foreach(|key: Value, value: Value| {
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.key(key)?;
                self.out.push(b':');
                self.value(value, depth)?;
                Ok(magnus::r_hash::ForEach::Continue)
            })?;
            self.out.push(b'}');
        } else if let Some(sym) = Symbol::from_value(v) {
            self.symbol(sym)?;
        } else if let Some(n) = Integer::from_value(v) {
            // A Bignum (Fixnums were written above).
            let text: RString = n.funcall("to_s", ())?;
            gvl::append_str(&mut self.out, text);
        } else if let Some(text) = v.check_funcall::<_, _, RString>("to_json", ()) {
            gvl::append_str(&mut self.out, text?);
        } else {
            let text: RString = v.funcall("to_s", ())?;
            self.string(text)?;
        }
        Ok(())
    }

    /// One level deeper, or the nesting error.
    fn enter(&self, depth: usize) -> Result<usize, Error> {
        let depth = depth + 1;
        if depth > self.max_depth {
            return Err(generator_error(
                self.ruby,
                format!("nesting of {depth} is too deep"),
            ));
        }
        Ok(depth)
    }

    fn key(&mut self, key: Value) -> Result<(), Error> {
        if let Some(s) = RString::from_value(key) {
            self.string(s)
        } else if let Some(sym) = Symbol::from_value(key) {
            self.symbol(sym)
        } else {
            let text: RString = key.funcall("to_s", ())?;
            self.string(text)
        }
    }

    /// A Symbol as the JSON string of its name.
    fn symbol(&mut self, sym: Symbol) -> Result<(), Error> {
        let name = sym.name()?;
        json::write_str(&mut self.out, &name);
        Ok(())
    }

    fn float(&mut self, f: f64) -> Result<(), Error> {
        if f.is_finite() {
            json::write_f64(&mut self.out, f);
            return Ok(());
        }
        let text = if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        if !self.allow_nan {
            return Err(generator_error(
                self.ruby,
                format!("{text} not allowed in JSON"),
            ));
        }
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// A String as JSON text: UTF-8 (or ASCII, or binary holding UTF-8) as it is, other
    /// encodings converted to UTF-8 first; bytes that are not UTF-8 are an error.
    fn string(&mut self, s: RString) -> Result<(), Error> {
        let encoding = s.enc_get();
        let s = if encoding == self.utf8 || encoding == self.usascii || encoding == self.binary {
            s
        } else {
            s.funcall("encode", ("UTF-8",))?
        };
        let out = &mut self.out;
        let written = gvl::with_str_bytes(s, |bytes| match std::str::from_utf8(bytes) {
            Ok(text) => {
                json::write_str(out, text);
                true
            }
            // jump-safe: a UTF-8 check (Rust), no Ruby call.
            Err(_) => false,
        });
        if written {
            Ok(())
        } else {
            Err(generator_error(
                self.ruby,
                "source sequence is illegal/malformed utf-8",
            ))
        }
    }
}

/// `Iodine::JSON.generate(obj, opts = {})` (and `dump`, `stringify`).
fn generate(ruby: &Ruby, args: &[Value]) -> Result<RString, Error> {
    let (obj, opts) = arguments(ruby, args)?;
    let mut allow_nan = false;
    let mut max_depth = 100;
    if let Some(opts) = opts {
        allow_nan = option(ruby, opts, "allow_nan").to_bool();
        max_depth = max_nesting(ruby, opts, max_depth)?;
    }
    if max_depth == 0 || max_depth > GENERATE_DEPTH_CAP {
        max_depth = GENERATE_DEPTH_CAP;
    }
    let mut generator = Generator {
        ruby,
        out: Vec::with_capacity(256),
        allow_nan,
        max_depth,
        utf8: ruby.utf8_encindex(),
        usascii: ruby.usascii_encindex(),
        binary: ruby.ascii8bit_encindex(),
    };
    generator.value(obj, 0)?;
    Ok(ruby.enc_str_new(&generator.out, ruby.utf8_encoding()))
}

/// Defines `Iodine::JSON` with its methods and errors (`ParserError` and `GeneratorError`
/// are `EncodingError`s, as the C gem raised; `NestingError` is a `ParserError`).
pub fn init(ruby: &Ruby, iodine: RModule) -> Result<(), Error> {
    let module = iodine.define_module("JSON")?;
    let parser = module.define_error("ParserError", ruby.exception_encoding_error())?;
    let nesting = module.define_error("NestingError", parser)?;
    let generator = module.define_error("GeneratorError", ruby.exception_encoding_error())?;
    // Held in Rust: marked for good (and so never moved by compaction).
    for class in [parser, nesting, generator] {
        ruby.gc_register_mark_object(class);
    }
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = CLASSES.set(Classes {
        parser: parser.into(),
        nesting: nesting.into(),
        generator: generator.into(),
    });
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = KEYS.set(Keys {
        strings: KeyCache::new(ruby),
        symbols: KeyCache::new(ruby),
    });
    for name in ["parse", "parse!"] {
        module.define_module_function(name, function!(parse, -1))?;
    }
    for name in ["generate", "dump", "stringify"] {
        module.define_module_function(name, function!(generate, -1))?;
    }
    Ok(())
}
