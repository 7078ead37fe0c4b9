//! From a request path to a file under the public folder, or nothing.
//!
//! The path is percent-decoded exactly once. Anything that could leave the folder or mean
//! something else once decoded is refused (the request then goes to the application):
//! a `%` not followed by two hex digits, an encoded `/` (`%2F`), NUL, a backslash, `.` or
//! `..` segments, empty segments (`//`). The file found is then resolved with every
//! symlink followed, and served only if it is still inside the (resolved) folder: a symlink
//! pointing outside is never served.

use std::path::{Path, PathBuf};

/// The request path's segments, decoded; None when the path is refused.
pub fn segments(raw: &str) -> Option<(Vec<String>, bool)> {
    let rest = raw.strip_prefix('/')?;
    let directory = rest.is_empty() || rest.ends_with('/');
    let mut out = Vec::new();
    for segment in rest.split('/') {
        if segment.is_empty() {
            continue; // only the last one (a trailing slash) is allowed
        }
        let decoded = decode(segment)?;
        if decoded.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\', '\0'])
        {
            return None;
        }
        out.push(decoded);
    }
    // An empty segment anywhere but at the end: `//` or a leading `//`.
    if rest.split('/').rev().skip(1).any(str::is_empty) {
        return None;
    }
    Some((out, directory))
}

/// Percent-decodes once; None for a malformed escape or bytes that are not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The regular file for `raw` under `root` (already canonical): `index.html` for a path that
/// ends with `/`. None when the path is refused, nothing is there, it is not a regular file,
/// or it resolves outside `root`.
pub fn resolve(root: &Path, raw: &str) -> Option<PathBuf> {
    let (segments, directory) = segments(raw)?;
    let mut path = root.to_path_buf();
    path.extend(&segments);
    if directory {
        path.push("index.html");
    }
    inside(root, &path)
}

/// `path`, resolved, if it is a regular file inside `root`.
pub fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    if !real.starts_with(root) || !real.metadata().ok()?.is_file() {
        return None;
    }
    Some(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_happens_once_and_tricks_are_refused() {
        assert_eq!(
            segments("/a/b%20c.txt"),
            Some((vec!["a".into(), "b c.txt".into()], false))
        );
        assert_eq!(segments("/"), Some((vec![], true)));
        assert_eq!(segments("/docs/"), Some((vec!["docs".into()], true)));
        // %252e decodes once to "%2e", a harmless name (never decoded a second time).
        assert_eq!(
            segments("/%252e%252e/x"),
            Some((vec!["%2e%2e".into(), "x".into()], false))
        );
        for bad in [
            "/../etc/passwd",
            "/a/../../etc",
            "/%2e%2e/etc/passwd",
            "/.%2e/x",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a%5c..%5cb",
            "/a\\..\\b",
            "/a%00.txt",
            "/a//b",
            "//etc/passwd",
            "/a/./b",
            "/%zz",
            "/%4",
            "/%ff",
            "relative",
        ] {
            assert_eq!(segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn symlinks_out_of_the_folder_and_non_files_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias")).unwrap();
        assert_eq!(resolve(&root, "/a.txt"), Some(root.join("a.txt")));
        assert_eq!(resolve(&root, "/sub/"), Some(root.join("sub/index.html")));
        assert_eq!(resolve(&root, "/alias"), Some(root.join("a.txt")));
        assert_eq!(resolve(&root, "/leak"), None);
        assert_eq!(resolve(&root, "/sub"), None, "a directory without a slash");
        assert_eq!(resolve(&root, "/missing"), None);
    }
}
