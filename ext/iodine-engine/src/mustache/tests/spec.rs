//! Runs every case of the official Mustache spec files, read from disk at test time.

use std::path::PathBuf;

use serde_json::Value;

use super::json::JsonContext;
use crate::mustache::{MapLoader, Template};

/// The spec files this engine implements (the optional `~lambdas` and others are not required).
const SPEC_FILES: [&str; 6] = [
    "comments",
    "delimiters",
    "interpolation",
    "inverted",
    "partials",
    "sections",
];

/// The folder holding the spec JSON files: `$MUSTACHE_SPEC_DIR`, else `shared/` beside the
/// repository (`../shared/data/mustache-spec` from the repository root).
fn spec_dir() -> PathBuf {
    std::env::var_os("MUSTACHE_SPEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mustache-spec")
        })
}

/// Run one spec file; returns the number of cases and a description of each failure,
/// or None when the spec folder is absent (the caller then skips).
fn run_file(file: &str, whole_dotted_keys: bool) -> Option<(usize, Vec<String>)> {
    let dir = spec_dir();
    if !dir.is_dir() {
        println!(
            "skipped: mustache spec folder not found at {}",
            dir.display()
        );
        return None;
    }
    let path = dir.join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let cases = spec["tests"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "{} has no tests", path.display());
    let failures = cases
        .iter()
        .filter_map(|case| run_case(file, case, whole_dotted_keys).err())
        .collect();
    Some((cases.len(), failures))
}

/// Run one case; Err describes how it failed.
fn run_case(file: &str, case: &Value, whole_dotted_keys: bool) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or("?");
    let template = case["template"].as_str().unwrap_or_default();
    let expected = case["expected"].as_str().unwrap_or_default();
    let mut loader = MapLoader::new();
    if let Some(partials) = case["partials"].as_object() {
        for (partial, source) in partials {
            loader.insert(partial.as_str(), source.as_str().unwrap_or_default());
        }
    }
    let mut compiled = Template::compile(template, None, &loader)
        .map_err(|e| format!("{file}: {name}: compile error: {e}"))?;
    compiled.set_whole_dotted_keys(whole_dotted_keys);
    let mut out = Vec::new();
    compiled
        .render(&JsonContext::new(), &&case["data"], &mut out)
        .map_err(|e| format!("{file}: {name}: render error: {e}"))?;
    let got = String::from_utf8_lossy(&out);
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "{file}: {name}: expected {expected:?}, got {got:?}"
        ))
    }
}

/// Run one file in strict spec mode and require every case to pass.
fn check_file(file: &str) {
    let Some((total, failures)) = run_file(file, false) else {
        return;
    };
    println!(
        "spec {file}: {} of {total} cases passed",
        total - failures.len()
    );
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn spec_comments() {
    check_file("comments");
}

#[test]
fn spec_delimiters() {
    check_file("delimiters");
}

#[test]
fn spec_interpolation() {
    check_file("interpolation");
}

#[test]
fn spec_inverted() {
    check_file("inverted");
}

#[test]
fn spec_partials() {
    check_file("partials");
}

#[test]
fn spec_sections() {
    check_file("sections");
}

/// With iodine's whole-dotted-key lookup (the default), the only cases that differ are the
/// two asserting that a key containing dots is never matched whole.
#[test]
fn spec_with_whole_dotted_keys_differs_only_where_expected() {
    let mut failures = Vec::new();
    for file in SPEC_FILES {
        let Some((_, mut file_failures)) = run_file(file, true) else {
            return;
        };
        failures.append(&mut file_failures);
    }
    let names: Vec<&str> = failures
        .iter()
        .map(|f| f.split(": expected").next().unwrap_or(f))
        .collect();
    assert_eq!(
        names,
        [
            "interpolation: Dotted Names are never single keys",
            "interpolation: Dotted Names - No Masking",
        ],
        "failures:\n{}",
        failures.join("\n")
    );
}
