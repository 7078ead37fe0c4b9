//! Compiling a template together with every partial it can reach.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::context::Context;
use super::error::Error;
use super::loader::{FsLoader, PartialLoader};
use super::node::{Compiled, Node};
use super::parser::parse;
use super::render::Renderer;

/// A compiled template: the root file plus every partial it can reach, each compiled once.
///
/// Partials refer to each other by index, so recursive partials (including ones that
/// include the root template) cost nothing extra at compile time.
#[derive(Debug, Clone)]
pub struct Template {
    /// Index 0 is the root template; the rest are partials.
    parts: Vec<Compiled>,
    whole_dotted_keys: bool,
}

/// Identifies a partial so each one is compiled once.
#[derive(Hash, PartialEq, Eq)]
enum PartialKey {
    Path(PathBuf),
    Name(String),
}

impl Template {
    /// Compile template text; `path` (optional) is the file the text came from, used to resolve partials.
    pub fn compile(
        source: &str,
        path: Option<&Path>,
        loader: &dyn PartialLoader,
    ) -> Result<Template, Error> {
        let root_origin = path.map(|p| p.display().to_string());
        let root_nodes = parse(source).map_err(|e| e.with_origin(root_origin))?;
        let mut keys = HashMap::new();
        let mut root_dirs = Vec::new();
        if let Some(path) = path {
            let canonical = path.canonicalize().ok();
            let dir = match canonical.as_deref().and_then(Path::parent) {
                Some(dir) => dir.to_path_buf(),
                None => match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                    _ => PathBuf::from("."),
                },
            };
            root_dirs.push(dir);
            if let Some(canonical) = canonical {
                // A partial naming the root file reuses it instead of compiling a copy.
                keys.insert(PartialKey::Path(canonical), 0);
            }
        }
        let mut linker = Linker {
            loader,
            parts: vec![Compiled {
                source: source.to_owned(),
                nodes: root_nodes,
            }],
            dirs: vec![root_dirs],
            keys,
        };
        // Breadth-first over the growing table instead of recursion, so chains of
        // partials, however long or cyclic, never deepen the call stack.
        let mut next = 0;
        while next < linker.parts.len() {
            let mut nodes = std::mem::take(&mut linker.parts[next].nodes);
            let dirs = linker.dirs[next].clone();
            let linked = linker.link(&mut nodes, &dirs);
            linker.parts[next].nodes = nodes;
            linked?;
            next += 1;
        }
        Ok(Template {
            parts: linker.parts,
            whole_dotted_keys: false,
        })
    }

    /// Read and compile a file; partials resolve relative to its folder.
    pub fn from_file(path: &Path) -> Result<Template, Error> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read \"{}\": {e}", path.display())))?;
        Template::compile(&source, Some(path), &FsLoader::new())
    }

    /// Render with a data context, appending the output to `out`.
    ///
    /// Errors from the context are returned unchanged; `out` then holds the partial output.
    pub fn render<C: Context>(
        &self,
        ctx: &C,
        data: &C::Value,
        out: &mut Vec<u8>,
    ) -> Result<(), C::Error> {
        let Some(root) = self.parts.first() else {
            return Ok(());
        };
        let mut renderer = Renderer::new(&self.parts, ctx, data, out, self.whole_dotted_keys);
        renderer.render_nodes(&root.nodes, &root.source)
    }

    /// Choose whether `{{a.b}}` first looks for a key literally named `"a.b"` (as iodine 0.7
    /// did) before splitting on dots. Off by default: the official spec forbids it.
    pub fn set_whole_dotted_keys(&mut self, enabled: bool) {
        self.whole_dotted_keys = enabled;
    }

    /// Whether dotted names first try the whole name as a single key.
    pub fn whole_dotted_keys(&self) -> bool {
        self.whole_dotted_keys
    }

    /// How many template files were compiled: the root plus each distinct partial found.
    pub fn template_count(&self) -> usize {
        self.parts.len()
    }
}

/// State shared while resolving partial tags across all compiled files.
struct Linker<'l> {
    loader: &'l dyn PartialLoader,
    parts: Vec<Compiled>,
    /// For each entry of `parts`, the folders its partials are searched in.
    dirs: Vec<Vec<PathBuf>>,
    keys: HashMap<PartialKey, usize>,
}

impl Linker<'_> {
    /// Fill in the target of every partial tag in `nodes`, compiling newly found partials.
    fn link(&mut self, nodes: &mut [Node], dirs: &[PathBuf]) -> Result<(), Error> {
        for node in nodes {
            match node {
                // Recursion depth here is bounded by the parser's section nesting limit.
                Node::Section { children, .. } => self.link(children, dirs)?,
                Node::Partial { name, target, .. } => *target = self.resolve(name, dirs)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The table index of partial `name`, loading and compiling it if it is new.
    fn resolve(&mut self, name: &str, dirs: &[PathBuf]) -> Result<Option<usize>, Error> {
        let Some((source, file)) = self.loader.load(name, dirs) else {
            return Ok(None);
        };
        let key = match &file {
            Some(path) => PartialKey::Path(path.clone()),
            None => PartialKey::Name(name.to_owned()),
        };
        if let Some(&index) = self.keys.get(&key) {
            return Ok(Some(index));
        }
        let origin = match &file {
            Some(path) => path.display().to_string(),
            None => format!("partial \"{name}\""),
        };
        let nodes = parse(&source).map_err(|e| e.with_origin(Some(origin)))?;
        let index = self.parts.len();
        self.parts.push(Compiled { source, nodes });
        self.dirs.push(partial_dirs(file.as_deref(), dirs));
        self.keys.insert(key, index);
        Ok(Some(index))
    }
}

/// The search folders for a partial found at `file` and included from a template searching `dirs`:
/// its own folder first, then the includer's folders (without repeats, keeping the root last).
fn partial_dirs(file: Option<&Path>, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let Some(own) = file.and_then(Path::parent) else {
        return dirs.to_vec();
    };
    let last = dirs.len().saturating_sub(1);
    let mut result = Vec::with_capacity(dirs.len() + 1);
    result.push(own.to_path_buf());
    result.extend(
        dirs.iter()
            .enumerate()
            .filter(|&(i, dir)| dir != own || i == last)
            .map(|(_, dir)| dir.clone()),
    );
    result
}
