//! A `Context` over `serde_json::Value`, for tests only (the engine itself has no JSON dependency).

use std::marker::PhantomData;

use serde_json::Value;

use crate::mustache::{Context, Kind, MapLoader, Template};

/// Reads JSON data by reference, so pushing values on the context stack costs nothing.
///
/// Two object shapes are special, to exercise what JSON cannot express:
/// `{"$lambda": "wrap"}` is a lambda returning `<b>TEXT</b>` (or `<b>&</b>` when interpolated),
/// and `{"$error": "message"}` fails with that message when its kind is asked for.
pub(super) struct JsonContext<'v>(PhantomData<&'v Value>);

impl JsonContext<'_> {
    /// A context for data borrowed for the lifetime of the render.
    pub(super) fn new() -> Self {
        JsonContext(PhantomData)
    }
}

impl<'v> Context for JsonContext<'v> {
    type Value = &'v Value;
    type Error = String;

    fn lookup(&self, value: &&'v Value, key: &str) -> Result<Option<&'v Value>, String> {
        Ok(value.as_object().and_then(|map| map.get(key)))
    }

    fn kind(&self, value: &&'v Value) -> Result<Kind, String> {
        Ok(match value {
            Value::Null | Value::Bool(false) => Kind::Falsy,
            Value::Array(items) => Kind::List(items.len()),
            Value::Object(map) if map.contains_key("$lambda") => Kind::Lambda,
            Value::Object(map) => match map.get("$error") {
                Some(message) => return Err(message.as_str().unwrap_or("error").to_owned()),
                None => Kind::Map,
            },
            _ => Kind::Scalar,
        })
    }

    fn item(&self, value: &&'v Value, index: usize) -> Result<&'v Value, String> {
        value.get(index).ok_or_else(|| format!("no item {index}"))
    }

    fn write_str(&self, value: &&'v Value, out: &mut Vec<u8>) -> Result<(), String> {
        match value {
            Value::Null => {}
            Value::String(text) => out.extend_from_slice(text.as_bytes()),
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
        Ok(())
    }

    fn call(&self, _value: &&'v Value, section: Option<&str>) -> Result<Vec<u8>, String> {
        Ok(match section {
            Some(text) => format!("<b>{text}</b>").into_bytes(),
            None => b"<b>&</b>".to_vec(),
        })
    }
}

/// Render `template` with `data` through a `MapLoader` of `partials`.
pub(super) fn render_with(
    template: &str,
    data: &Value,
    partials: &[(&str, &str)],
    whole_dotted_keys: bool,
) -> String {
    let mut loader = MapLoader::new();
    for (name, source) in partials {
        loader.insert(*name, *source);
    }
    let mut compiled = match Template::compile(template, None, &loader) {
        Ok(compiled) => compiled,
        Err(error) => panic!("compile failed for {template:?}: {error}"),
    };
    compiled.set_whole_dotted_keys(whole_dotted_keys);
    let mut out = Vec::new();
    if let Err(error) = compiled.render(&JsonContext::new(), &data, &mut out) {
        panic!("render failed for {template:?}: {error}");
    }
    String::from_utf8_lossy(&out).into_owned()
}
