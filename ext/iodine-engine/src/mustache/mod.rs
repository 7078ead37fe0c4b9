//! A Mustache template engine that knows nothing about where its data comes from.
//!
//! Templates are compiled once (partials included) into a [`Template`], then rendered
//! any number of times against data reached through the [`Context`] trait, so the same
//! engine can serve JSON values in tests and Ruby objects in the extension.
//!
//! It follows the official spec exactly (iodine 0.7's whole-dotted-key lookup is available
//! through [`Template::set_whole_dotted_keys`], off by default). Missing partials render as
//! nothing, partials are
//! read from disk only at compile time and never from outside the root template's folder,
//! and nesting is bounded so hostile templates or data cannot exhaust the stack.
#![forbid(unsafe_code)]

mod context;
mod error;
mod escape;
mod loader;
mod node;
mod parser;
mod render;
mod template;

#[cfg(test)]
mod tests;

pub use context::{Context, Kind};
pub use error::{Error, ErrorKind};
pub use escape::escape_html;
pub use loader::{FsLoader, MapLoader, PartialLoader};
pub use template::Template;

/// Deepest section nesting the parser accepts in one template file; deeper input is a compile error.
pub const MAX_SECTION_DEPTH: usize = 128;

/// Deepest chain of partials expanded while rendering; deeper partials render as nothing.
pub const MAX_PARTIAL_DEPTH: usize = 64;

/// Most times one render may enter a partial that is already being rendered (recursion);
/// further recursive partials render as nothing.
///
/// This bounds the work of a partial that includes itself more than once without data
/// running out, which the depth limit alone would let grow as 2 to the power of the depth.
pub const MAX_PARTIAL_RECURSIONS: usize = 1_000_000;

/// Deepest combined section and partial nesting while rendering; deeper content renders as nothing.
///
/// The per-file and per-partial limits alone would still allow thousands of nested calls,
/// which could overflow the small stacks of interpreter threads.
pub const MAX_RENDER_DEPTH: usize = 512;
