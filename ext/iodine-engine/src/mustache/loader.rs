//! Where partial sources come from: the file system (with path-safety rules) or a map.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Supplies partial sources by name while a template is compiled.
pub trait PartialLoader {
    /// Find the partial `name` for a template whose folder is `including_dirs[0]`.
    ///
    /// `including_dirs` lists the including template's folder, then the folders of the
    /// templates that included it, ending with the root template's folder (it may be empty
    /// when the root template has no path). Returns the source and, when it came from a
    /// file, that file's canonical path: templates are compiled once per path (or once per
    /// name when no path is given), and a partial's folder is searched first for its own partials.
    fn load(&self, name: &str, including_dirs: &[PathBuf]) -> Option<(String, Option<PathBuf>)>;
}

/// Loads partials from disk, never from outside the root template's folder.
///
/// A name is tried as `name` then `name.mustache` in each folder of `including_dirs`, in
/// order. Absolute names, names with `..` components and files whose canonical path (after
/// following symlinks) lies outside the root folder are treated as missing.
#[derive(Debug, Clone, Default)]
pub struct FsLoader {
    root: Option<PathBuf>,
}

impl FsLoader {
    /// A loader whose root folder is the root template's folder (the last of `including_dirs`).
    pub fn new() -> FsLoader {
        FsLoader { root: None }
    }

    /// A loader confined to `root`, which is also searched last; useful for templates compiled
    /// from text with no path of their own.
    pub fn with_root(root: impl Into<PathBuf>) -> FsLoader {
        FsLoader {
            root: Some(root.into()),
        }
    }
}

impl PartialLoader for FsLoader {
    fn load(&self, name: &str, including_dirs: &[PathBuf]) -> Option<(String, Option<PathBuf>)> {
        if !is_safe_name(name) {
            return None;
        }
        let root = match &self.root {
            Some(root) => root.as_path(),
            None => including_dirs.last()?.as_path(),
        };
        // Compare canonical paths so symlinks and `.` components cannot smuggle a file out.
        let root = root.canonicalize().ok()?;
        let extra = match including_dirs.last() {
            Some(last) if *last == root => None,
            _ => Some(&root),
        };
        let with_ext = format!("{name}.mustache");
        for dir in including_dirs.iter().chain(extra) {
            for candidate in [dir.join(name), dir.join(&with_ext)] {
                let Ok(canonical) = candidate.canonicalize() else {
                    continue;
                };
                if !canonical.starts_with(&root) || !canonical.is_file() {
                    continue;
                }
                if let Ok(text) = std::fs::read_to_string(&canonical) {
                    return Some((text, Some(canonical)));
                }
            }
        }
        None
    }
}

/// Whether `name` is a plain relative path that cannot climb out of a folder.
fn is_safe_name(name: &str) -> bool {
    if name.is_empty() || name.contains('\0') || name.starts_with(['/', '\\']) {
        return false;
    }
    // Check both separators ourselves: `Path` only knows the host's, and a template
    // written on one system may be served on another.
    if name.split(['/', '\\']).any(|part| part == "..") {
        return false;
    }
    Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Serves partials from memory, by exact name; used by the spec tests and for inline templates.
#[derive(Debug, Clone, Default)]
pub struct MapLoader {
    partials: HashMap<String, String>,
}

impl MapLoader {
    /// An empty loader (every partial is missing).
    pub fn new() -> MapLoader {
        MapLoader::default()
    }

    /// Add (or replace) the partial `name`.
    pub fn insert(&mut self, name: impl Into<String>, source: impl Into<String>) {
        self.partials.insert(name.into(), source.into());
    }
}

impl From<HashMap<String, String>> for MapLoader {
    fn from(partials: HashMap<String, String>) -> MapLoader {
        MapLoader { partials }
    }
}

impl PartialLoader for MapLoader {
    fn load(&self, name: &str, _including_dirs: &[PathBuf]) -> Option<(String, Option<PathBuf>)> {
        self.partials.get(name).map(|source| (source.clone(), None))
    }
}
