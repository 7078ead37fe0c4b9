//! File-system tests: `FsLoader` lookup rules, path-traversal rejection and `from_file`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::json::JsonContext;
use crate::mustache::{ErrorKind, FsLoader, Template};

/// A scratch folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A fresh folder unique to this process and `tag` (tests run in parallel threads).
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mustache-dev-{tag}-{}", std::process::id()));
        // Leftovers from an aborted earlier run would make the test see stale files.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// Write `text` to the file `relative` inside the folder, creating sub-folders.
    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compile `path` with `from_file` and render it with `data`.
fn render_file(path: &Path, data: &Value) -> String {
    let template = Template::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    if let Err(e) = template.render(&JsonContext::new(), &data, &mut out) {
        panic!("render: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn fs_loader_finds_name_then_name_mustache() {
    let dir = TempDir::new("names");
    dir.write("root/plain", "P");
    dir.write("root/ext.mustache", "E");
    dir.write("root/both", "bare");
    dir.write("root/both.mustache", "with extension");
    dir.write("root/sub/deep.mustache", "D");
    let main = dir.write(
        "root/main.mustache",
        "{{>plain}}|{{> ext }}|{{>both}}|{{>sub/deep}}|{{>./plain}}|{{>nope}}",
    );
    assert_eq!(render_file(&main, &json!({})), "P|E|bare|D|P|");
}

#[test]
fn fs_loader_walks_back_through_including_folders() {
    let dir = TempDir::new("walk");
    dir.write("root/sub/a.mustache", "{{>b}} {{>c}} {{>sub2/d}}");
    dir.write("root/sub/b.mustache", "sub-b");
    dir.write("root/b.mustache", "root-b");
    dir.write("root/c.mustache", "root-c");
    dir.write("root/sub2/d.mustache", "[{{>c}}]");
    let main = dir.write("root/main.mustache", "{{>sub/a}} {{>b}}");
    assert_eq!(
        render_file(&main, &json!({})),
        "sub-b root-c [root-c] root-b"
    );
}

#[test]
fn fs_loader_rejects_paths_outside_root() {
    let dir = TempDir::new("escape");
    let secret = dir.write("secret.mustache", "SECRET");
    dir.write("secret", "SECRET");
    dir.write("root/ok.mustache", "OK");
    // A partial inside the root may not climb out either.
    dir.write("root/sub/inner.mustache", "<{{>../../secret}}>");
    let template = format!(
        "[{{{{> ../secret}}}}][{{{{> /etc/passwd}}}}][{{{{>{}}}}}][{{{{>sub/../../secret}}}}]\
         [{{{{>..\\secret}}}}][{{{{>sub/inner}}}}][{{{{>ok}}}}]",
        secret.display()
    );
    let main = dir.write("root/main.mustache", &template);
    assert_eq!(render_file(&main, &json!({})), "[][][][][][<>][OK]");
}

#[cfg(unix)]
#[test]
fn fs_loader_rejects_symlink_out_of_root() {
    let dir = TempDir::new("symlink");
    let secret = dir.write("secret.mustache", "SECRET");
    let main = dir.write("root/main.mustache", "[{{>link}}]");
    let link = dir.0.join("root/link.mustache");
    std::os::unix::fs::symlink(&secret, &link).unwrap_or_else(|e| panic!("symlink: {e}"));
    assert_eq!(render_file(&main, &json!({})), "[]");
}

#[test]
fn recursive_file_partial_reuses_root_and_terminates() {
    let dir = TempDir::new("recursive");
    let tree = dir.write("tree.mustache", "{{name}}{{#kids}}({{>tree}}){{/kids}}");
    let data = json!({"name": "a", "kids": [
        {"name": "b", "kids": [{"name": "c", "kids": []}]},
        {"name": "d", "kids": []}
    ]});
    assert_eq!(render_file(&tree, &data), "a(b(c))(d)");
    let template = Template::from_file(&tree).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(template.template_count(), 1);
    // A partial that includes the root with no stopping data still terminates.
    let main = dir.write("main.mustache", "m{{>loop}}");
    dir.write("loop.mustache", "l{{>main}}");
    let out = render_file(&main, &json!({}));
    assert!(out.starts_with("mlml") && out.len() < 200, "{out}");
}

#[test]
fn from_file_reports_missing_file_and_partial_errors() {
    let dir = TempDir::new("errors");
    let missing = dir.0.join("missing.mustache");
    let error = match Template::from_file(&missing) {
        Ok(_) => panic!("missing file compiled"),
        Err(error) => error,
    };
    assert!(matches!(error.kind(), ErrorKind::Io { .. }));
    assert!(error.to_string().contains("missing.mustache"), "{error}");

    let bad = dir.write("bad.mustache", "line 1\n{{#open}}\n");
    let main = dir.write("main.mustache", "{{>bad}}");
    let error = match Template::from_file(&main) {
        Ok(_) => panic!("bad partial compiled"),
        Err(error) => error,
    };
    assert_eq!(error.line(), Some(2));
    let canonical = bad.canonicalize().unwrap_or(bad);
    assert_eq!(
        error.origin(),
        Some(canonical.display().to_string().as_str())
    );
}

#[test]
fn fs_loader_with_root_serves_text_templates() {
    let dir = TempDir::new("withroot");
    dir.write("part.mustache", "{{x}}");
    let loader = FsLoader::with_root(&dir.0);
    let template = Template::compile("<{{>part}}>", None, &loader);
    let template = template.unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let data = json!({"x": "y"});
    if let Err(e) = template.render(&JsonContext::new(), &&data, &mut out) {
        panic!("{e}");
    }
    assert_eq!(out, b"<y>");
    // Without a root or a path, the file-system loader finds nothing.
    let template = Template::compile("<{{>part}}>", None, &FsLoader::new());
    assert_eq!(template.map(|t| t.template_count()).ok(), Some(1));
}
