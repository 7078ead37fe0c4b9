//! `Iodine::Mustache`: compiled templates from the engine, rendered over Ruby data.
//!
//! Lookup follows the C gem: a Hash is asked for the Symbol key, then the String key, then a
//! public zero-argument method of that name; other objects only by public method.
//!
//! The renderer holds Ruby values in Rust memory the GC does not scan (its context stack, the
//! key Symbol cache). Every such value is also pushed to a [`Marked`] object on this stack
//! frame, which marks them (pinned, so compaction can't move them either) until the render
//! ends: the key Symbols (`to_symbol` makes collectable dynamic Symbols), values found in
//! Hashes and Arrays (a lambda or method may delete them from their container meanwhile),
//! and the results of methods and lambdas.

use std::cell::RefCell;
use std::path::Path;

use crate::marked::Marked;
use iodine_engine::mustache::{Context, Error as TemplateError, FsLoader, Kind, Template};
use magnus::typed_data::Obj;
use magnus::value::Opaque;
use magnus::{
    function, method, prelude::*, Error, RArray, RClass, RHash, RModule, RString, Ruby, Symbol,
    Value,
};

/// A compiled template (partials included).
#[magnus::wrap(class = "Iodine::Mustache", free_immediately, size)]
pub struct Mustache(Template);

/// `Iodine::Mustache.__load(filename, template)`: compiles `template` (or the file's
/// contents when nil); the file name anchors partial lookups.
fn load(
    ruby: &Ruby,
    filename: Option<String>,
    template: Option<String>,
) -> Result<Mustache, Error> {
    let compiled = match (filename, template) {
        (None, None) => {
            return Err(crate::errors::exception(
                ruby.exception_arg_error(),
                "need either template contents or file name.",
            ))
        }
        (Some(f), None) => Template::from_file(Path::new(&f)),
        (f, Some(text)) => {
            let path = f.as_deref().map(Path::new);
            let loader = match path.and_then(Path::parent) {
                Some(dir) => FsLoader::with_root(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                }),
                None => FsLoader::with_root("."),
            };
            Template::compile(&text, path, &loader)
        }
    };
    compiled.map(Mustache).map_err(|e| template_error(ruby, e))
}

fn template_error(ruby: &Ruby, e: TemplateError) -> Error {
    let class = match e.kind() {
        iodine_engine::mustache::ErrorKind::Io { .. } if e.line().is_none() => {
            ruby.exception_load_error()
        }
        _ => ruby.exception_runtime_error(),
    };
    crate::errors::exception(class, e.to_string())
}

impl Mustache {
    /// `render(data)`: the rendered String (UTF-8).
    fn render(ruby: &Ruby, rb_self: &Self, data: Value) -> Result<RString, Error> {
        let ctx = RubyContext {
            ruby,
            pins: Marked::new(ruby, 64),
            symbols: RefCell::new(Vec::with_capacity(32)),
        };
        let mut out = Vec::with_capacity(4096);
        let rendered = rb_self.0.render(&ctx, &data, &mut out);
        // The pins must outlive the render: keep them visibly in use until here.
        std::hint::black_box(&ctx.pins);
        rendered?;
        let s = ruby.str_from_slice(&out);
        s.funcall::<_, _, Value>("force_encoding", ("UTF-8",))?;
        Ok(s)
    }
}

/// Ruby data as a Mustache context.
struct RubyContext<'a> {
    ruby: &'a Ruby,
    /// Every value the renderer may hold; itself reachable from the (scanned) native stack.
    pins: Obj<Marked>,
    /// Symbols of the template's keys, by the key's address: the keys live in the compiled
    /// template for the whole render, and interning each lookup's key dominated the cost.
    symbols: RefCell<Vec<(usize, usize, Symbol)>>,
}

impl RubyContext<'_> {
    fn symbol(&self, key: &str) -> Symbol {
        let id = (key.as_ptr() as usize, key.len());
        let mut cache = self.symbols.borrow_mut();
        if let Some(&(_, _, sym)) = cache.iter().find(|(p, l, _)| (*p, *l) == id) {
            return sym;
        }
        let sym = self.ruby.to_symbol(key);
        if cache.len() < 256 {
            self.pin(sym.as_value());
            cache.push((id.0, id.1, sym));
        }
        sym
    }

    /// Keeps `v` alive (and in place) until the render ends.
    fn pin(&self, v: Value) -> Value {
        self.pins.0.borrow_mut().push(Opaque::from(v));
        v
    }

    fn kept(&self, v: Value) -> Result<Value, Error> {
        Ok(self.pin(v))
    }

    fn call_method(&self, value: Value, key: &str) -> Result<Option<Value>, Error> {
        if value.respond_to(key, false)? {
            let v: Value = value.funcall(key, ())?;
            return Ok(Some(self.kept(v)?));
        }
        Ok(None)
    }
}

impl Context for RubyContext<'_> {
    type Value = Value;
    type Error = Error;

    fn lookup(&self, value: &Value, key: &str) -> Result<Option<Value>, Error> {
        if let Some(hash) = RHash::from_value(*value) {
            if let Some(v) = hash.get(self.symbol(key)) {
                return Ok(Some(self.pin(v)));
            }
            if let Some(v) = hash.get(key) {
                return Ok(Some(self.pin(v)));
            }
        }
        if value.is_nil() {
            return Ok(None);
        }
        self.call_method(*value, key)
    }

    fn kind(&self, value: &Value) -> Result<Kind, Error> {
        let v = *value;
        if !v.to_bool() {
            return Ok(Kind::Falsy);
        }
        if let Some(a) = RArray::from_value(v) {
            return Ok(Kind::List(a.len()));
        }
        if RHash::from_value(v).is_some() {
            return Ok(Kind::Map);
        }
        if RString::from_value(v).is_some()
            || Symbol::from_value(v).is_some()
            || v.is_kind_of(self.ruby.class_numeric())
        {
            return Ok(Kind::Scalar);
        }
        if v.respond_to("call", false)? {
            return Ok(Kind::Lambda);
        }
        Ok(Kind::Scalar)
    }

    fn item(&self, value: &Value, index: usize) -> Result<Value, Error> {
        match RArray::from_value(*value) {
            Some(a) => a.entry(index as isize).map(|v| self.pin(v)),
            None => Ok(self.ruby.qnil().as_value()),
        }
    }

    fn write_str(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
        let v = *value;
        if v.is_nil() {
            return Ok(());
        }
        let s = match RString::from_value(v) {
            Some(s) => s,
            None => v.funcall::<_, _, RString>("to_s", ())?,
        };
        crate::gvl::append_str(out, s);
        Ok(())
    }

    fn call(&self, value: &Value, section: Option<&str>) -> Result<Vec<u8>, Error> {
        // An object whose `call` comes from `method_missing` has no Method to ask: its
        // NameError means "any arity". Anything else (jumps included) is the caller's.
        let arity: i64 = match value
            .funcall::<_, _, Value>("method", ("call",))
            .and_then(|m| m.funcall("arity", ()))
        {
            Ok(arity) => arity,
            Err(e) if crate::errors::is_a(&e, self.ruby.exception_name_error()) => -1,
            Err(e) => return Err(e),
        };
        let result: Value = match section {
            Some(text) if arity != 0 => value.funcall("call", (text,))?,
            _ => value.funcall("call", ())?,
        };
        self.kept(result)?;
        let mut out = Vec::new();
        self.write_str(&result, &mut out)?;
        Ok(out)
    }
}

/// Defines `Iodine::Mustache` (the argument forms are handled in lib/iodine/mustache.rb).
pub fn init(ruby: &Ruby, iodine: RModule) -> Result<(), Error> {
    let class: RClass = iodine.define_class("Mustache", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("__load", function!(load, 2))?;
    class.define_method("render", method!(Mustache::render, 1))?;
    Ok(())
}
