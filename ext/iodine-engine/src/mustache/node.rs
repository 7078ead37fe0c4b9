//! The compiled form of one template file, shared by the parser, the linker and the renderer.

use std::ops::Range;

/// One element of a compiled template; text is kept as byte ranges into the file's source.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Literal text. `starts_line` marks text that begins a line of the source, which
    /// matters only when the template is rendered as an indented stand-alone partial.
    Text {
        span: Range<usize>,
        starts_line: bool,
    },
    /// A line of the source starts here with a tag; emits the current partial indentation.
    Indent,
    /// `{{name}}` (escaped) or `{{{name}}}` / `{{&name}}` (raw).
    Var { name: Box<str>, escape: bool },
    /// `{{#name}}` or `{{^name}}` with its children; `raw` is the unrendered body for lambdas.
    Section {
        name: Box<str>,
        inverted: bool,
        raw: Range<usize>,
        children: Vec<Node>,
    },
    /// `{{>name}}`. `target` indexes the template's partial table once linked (None = missing);
    /// `indent` is the whitespace before a stand-alone partial tag.
    Partial {
        name: Box<str>,
        target: Option<usize>,
        indent: Option<Box<str>>,
    },
}

/// One compiled template file: its source text and the nodes pointing into it.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub source: String,
    pub nodes: Vec<Node>,
}
