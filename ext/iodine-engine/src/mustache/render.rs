//! Walks compiled nodes against a context stack and writes the output.

use super::context::{Context, Kind};
use super::escape::escape_html;
use super::node::{Compiled, Node};
use super::{MAX_PARTIAL_DEPTH, MAX_PARTIAL_RECURSIONS, MAX_RENDER_DEPTH};

/// The state of one render call.
pub(crate) struct Renderer<'t, 'c, 'o, C: Context> {
    parts: &'t [Compiled],
    ctx: &'c C,
    out: &'o mut Vec<u8>,
    /// The context stack; the innermost value is last.
    stack: Vec<C::Value>,
    /// Reused buffer for values that must be escaped before reaching `out`.
    scratch: Vec<u8>,
    /// Indentation of enclosing stand-alone partials; the active part is `indent[indent_from..]`
    /// (an inline partial resets it without losing what outer partials need back).
    indent: Vec<u8>,
    indent_from: usize,
    /// Combined section and partial nesting, bounded by `MAX_RENDER_DEPTH`.
    depth: usize,
    /// Table indexes of the templates being rendered, outermost (the root, 0) first.
    active: Vec<usize>,
    /// How many times a partial was entered while already active (recursion).
    recursions: usize,
    whole_dotted_keys: bool,
}

impl<'t, 'c, 'o, C: Context> Renderer<'t, 'c, 'o, C> {
    /// Prepare to render with `data` as the bottom of the context stack.
    pub(crate) fn new(
        parts: &'t [Compiled],
        ctx: &'c C,
        data: &C::Value,
        out: &'o mut Vec<u8>,
        whole_dotted_keys: bool,
    ) -> Self {
        Renderer {
            parts,
            ctx,
            out,
            stack: vec![data.clone()],
            scratch: Vec::new(),
            indent: Vec::new(),
            indent_from: 0,
            depth: 0,
            active: vec![0],
            recursions: 0,
            whole_dotted_keys,
        }
    }

    /// Render `nodes`, whose text spans point into `src`.
    pub(crate) fn render_nodes(&mut self, nodes: &'t [Node], src: &'t str) -> Result<(), C::Error> {
        for node in nodes {
            match node {
                Node::Text { span, starts_line } => {
                    let text = src.as_bytes().get(span.clone()).unwrap_or_default();
                    self.write_text(text, *starts_line);
                }
                Node::Indent => {
                    let indent = &self.indent[self.indent_from..];
                    self.out.extend_from_slice(indent);
                }
                Node::Var { name, escape } => self.variable(name, *escape)?,
                Node::Section {
                    name,
                    inverted,
                    raw,
                    children,
                } => {
                    let raw = src.get(raw.clone()).unwrap_or_default();
                    self.section(name, *inverted, raw, children, src)?;
                }
                Node::Partial {
                    target: Some(index),
                    indent,
                    ..
                } => self.partial(*index, indent.as_deref())?,
                // A partial the loader did not find renders as nothing.
                Node::Partial { target: None, .. } => {}
            }
        }
        Ok(())
    }

    /// Write template text, indenting each of its source lines inside an indented partial.
    fn write_text(&mut self, text: &[u8], starts_line: bool) {
        let indent = &self.indent[self.indent_from..];
        if indent.is_empty() {
            self.out.extend_from_slice(text);
            return;
        }
        if starts_line {
            self.out.extend_from_slice(indent);
        }
        let mut run_start = 0;
        for (i, &byte) in text.iter().enumerate() {
            // A newline ending the node is left alone: whatever follows marks its own line start.
            if byte == b'\n' && i + 1 < text.len() {
                self.out.extend_from_slice(&text[run_start..=i]);
                self.out.extend_from_slice(indent);
                run_start = i + 1;
            }
        }
        self.out.extend_from_slice(&text[run_start..]);
    }

    /// `{{name}}`, `{{{name}}}` and `{{&name}}`.
    fn variable(&mut self, name: &str, escape: bool) -> Result<(), C::Error> {
        let Some(value) = self.resolve(name)? else {
            return Ok(());
        };
        if self.ctx.kind(&value)? == Kind::Lambda {
            let text = self.ctx.call(&value, None)?;
            if escape {
                escape_html(&text, self.out);
            } else {
                self.out.extend_from_slice(&text);
            }
        } else if escape {
            self.scratch.clear();
            self.ctx.write_str(&value, &mut self.scratch)?;
            escape_html(&self.scratch, self.out);
        } else {
            self.ctx.write_str(&value, self.out)?;
        }
        Ok(())
    }

    /// `{{#name}}…{{/name}}` and `{{^name}}…{{/name}}`.
    fn section(
        &mut self,
        name: &str,
        inverted: bool,
        raw: &str,
        children: &'t [Node],
        src: &'t str,
    ) -> Result<(), C::Error> {
        let value = self.resolve(name)?;
        let kind = match &value {
            Some(value) => self.ctx.kind(value)?,
            None => Kind::Falsy,
        };
        let value = match value {
            Some(value) if !kind.is_falsy() => value,
            _ if inverted => return self.nested(children, src, None),
            _ => return Ok(()),
        };
        if inverted {
            return Ok(());
        }
        match kind {
            Kind::List(len) => {
                for index in 0..len {
                    let item = self.ctx.item(&value, index)?;
                    self.nested(children, src, Some(item))?;
                }
                Ok(())
            }
            Kind::Lambda => {
                // The lambda's text is final: written unescaped and never parsed as a template.
                let text = self.ctx.call(&value, Some(raw))?;
                self.out.extend_from_slice(&text);
                Ok(())
            }
            Kind::Map | Kind::Scalar | Kind::Falsy => self.nested(children, src, Some(value)),
        }
    }

    /// Render section children one level deeper, with `top` pushed on the context stack.
    fn nested(
        &mut self,
        children: &'t [Node],
        src: &'t str,
        top: Option<C::Value>,
    ) -> Result<(), C::Error> {
        if self.depth >= MAX_RENDER_DEPTH {
            return Ok(());
        }
        let pushed = top.is_some();
        if let Some(top) = top {
            self.stack.push(top);
        }
        self.depth += 1;
        let result = self.render_nodes(children, src);
        self.depth -= 1;
        if pushed {
            self.stack.pop();
        }
        result
    }

    /// `{{>name}}`: render a linked partial with the current context stack.
    fn partial(&mut self, index: usize, indent: Option<&str>) -> Result<(), C::Error> {
        let parts = self.parts;
        let Some(part) = parts.get(index) else {
            return Ok(());
        };
        let partial_depth = self.active.len().saturating_sub(1);
        if partial_depth >= MAX_PARTIAL_DEPTH || self.depth >= MAX_RENDER_DEPTH {
            return Ok(());
        }
        if self.active.contains(&index) {
            // The depth limit alone does not stop a partial that includes itself twice
            // from doing 2^depth work, so recursion also has an overall budget.
            if self.recursions >= MAX_PARTIAL_RECURSIONS {
                return Ok(());
            }
            self.recursions += 1;
        }
        let saved_len = self.indent.len();
        let saved_from = self.indent_from;
        match indent {
            // Stand-alone: the partial's lines get the enclosing indentation plus this tag's.
            Some(indent) => self.indent.extend_from_slice(indent.as_bytes()),
            // Inline: the partial's lines are not indented at all.
            None => self.indent_from = self.indent.len(),
        }
        self.depth += 1;
        self.active.push(index);
        let result = self.render_nodes(&part.nodes, &part.source);
        self.active.pop();
        self.depth -= 1;
        self.indent.truncate(saved_len);
        self.indent_from = saved_from;
        result
    }

    /// Find the value a tag name refers to, walking the context stack.
    fn resolve(&self, name: &str) -> Result<Option<C::Value>, C::Error> {
        if name == "." {
            return Ok(self.stack.last().cloned());
        }
        let Some((head, rest)) = name.split_once('.') else {
            return self.find_on_stack(name);
        };
        if self.whole_dotted_keys {
            if let Some(value) = self.find_on_stack(name)? {
                return Ok(Some(value));
            }
        }
        // Only the first part searches the stack; the rest must resolve inside it
        // (the spec's "broken chain" rule), never falling back to outer contexts.
        match self.find_on_stack(head)? {
            Some(value) => self.resolve_inside(value, rest),
            None => Ok(None),
        }
    }

    /// The first value on the stack (innermost first) that has `key`.
    fn find_on_stack(&self, key: &str) -> Result<Option<C::Value>, C::Error> {
        for value in self.stack.iter().rev() {
            if let Some(found) = self.ctx.lookup(value, key)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Resolve the dotted remainder `rest` inside `value`, trying the whole remainder as
    /// one key before splitting it further (when whole dotted keys are enabled).
    fn resolve_inside(
        &self,
        mut value: C::Value,
        mut rest: &str,
    ) -> Result<Option<C::Value>, C::Error> {
        loop {
            let Some((head, tail)) = rest.split_once('.') else {
                return self.ctx.lookup(&value, rest);
            };
            if self.whole_dotted_keys {
                if let Some(found) = self.ctx.lookup(&value, rest)? {
                    return Ok(Some(found));
                }
            }
            match self.ctx.lookup(&value, head)? {
                Some(found) => {
                    value = found;
                    rest = tail;
                }
                None => return Ok(None),
            }
        }
    }
}
