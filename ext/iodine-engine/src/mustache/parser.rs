//! Turns template text into a node tree, applying the spec's stand-alone line rules.
//!
//! A tag is "stand-alone" when it is the only thing on its line apart from spaces and
//! tabs; such lines vanish from the output entirely. Partial indentation is not applied
//! to the source here (it may differ per use of the partial), instead the parser marks
//! where lines begin so the renderer can indent them.

use super::error::{Error, ErrorKind};
use super::node::Node;
use super::MAX_SECTION_DEPTH;

/// Parse one template file's text.
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, Error> {
    let mut parser = Parser {
        src,
        pos: 0,
        at_line_start: true,
        nodes: Vec::new(),
        open: Vec::new(),
        delims: Delims::new("{{", "}}"),
    };
    while let Some(rel) = src[parser.pos..].find(parser.delims.open.as_str()) {
        parser.tag(parser.pos + rel)?;
    }
    parser.text(parser.pos, src.len());
    if let Some(open) = parser.open.last() {
        let name = open.name.to_string();
        return Err(Error::at(
            src,
            open.tag_pos,
            ErrorKind::UnclosedSection { name },
        ));
    }
    Ok(parser.nodes)
}

/// The tag types, decided by the sigil after the opening delimiter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Escaped,
    Ampersand,
    Triple,
    Section,
    Inverted,
    Close,
    Partial,
    Comment,
    Delimiters,
}

impl TagKind {
    /// Interpolation tags never stand alone (the spec keeps their lines intact).
    fn can_stand_alone(self) -> bool {
        !matches!(
            self,
            TagKind::Escaped | TagKind::Ampersand | TagKind::Triple
        )
    }
}

/// The current delimiters plus the closers derived from them, built once per change.
struct Delims {
    open: String,
    close: String,
    triple_close: String,
    delims_close: String,
}

impl Delims {
    fn new(open: &str, close: &str) -> Delims {
        Delims {
            open: open.to_owned(),
            close: close.to_owned(),
            triple_close: format!("}}{close}"),
            delims_close: format!("={close}"),
        }
    }
}

/// A section whose closing tag has not been seen yet.
struct OpenSection {
    name: Box<str>,
    inverted: bool,
    tag_pos: usize,
    body_start: usize,
    /// The enclosing node list, set aside while the section's children are collected.
    parent: Vec<Node>,
}

struct Parser<'s> {
    src: &'s str,
    /// Start of the text not yet turned into nodes.
    pos: usize,
    /// Whether `pos` is at the beginning of a source line.
    at_line_start: bool,
    /// The node list currently being filled (the innermost open section's children).
    nodes: Vec<Node>,
    open: Vec<OpenSection>,
    delims: Delims,
}

impl<'s> Parser<'s> {
    /// Handle the tag whose opening delimiter starts at `tag_start`.
    fn tag(&mut self, tag_start: usize) -> Result<(), Error> {
        let src = self.src;
        let bytes = src.as_bytes();
        let after_open = tag_start + self.delims.open.len();
        // Allow `{{ #name }}` as well as `{{#name}}`: the sigil is the first non-blank byte.
        let mut sigil_pos = after_open;
        while sigil_pos < bytes.len() && is_blank(bytes[sigil_pos]) {
            sigil_pos += 1;
        }
        let kind = match bytes.get(sigil_pos) {
            Some(b'{') => TagKind::Triple,
            Some(b'&') => TagKind::Ampersand,
            Some(b'#') => TagKind::Section,
            Some(b'^') => TagKind::Inverted,
            Some(b'/') => TagKind::Close,
            Some(b'>') => TagKind::Partial,
            Some(b'!') => TagKind::Comment,
            Some(b'=') => TagKind::Delimiters,
            _ => TagKind::Escaped,
        };
        let body = if kind == TagKind::Escaped {
            after_open
        } else {
            sigil_pos + 1
        };
        let closer = match kind {
            TagKind::Triple => &self.delims.triple_close,
            TagKind::Delimiters => &self.delims.delims_close,
            _ => &self.delims.close,
        };
        let Some(rel) = src[body..].find(closer.as_str()) else {
            let expected = closer.clone();
            return Err(Error::at(
                src,
                tag_start,
                ErrorKind::UnclosedTag { expected },
            ));
        };
        let content = &src[body..body + rel];
        let tag_end = body + rel + closer.len();

        let standalone = if kind.can_stand_alone() {
            self.standalone_span(tag_start, tag_end)
        } else {
            None
        };
        self.text(self.pos, standalone.map_or(tag_start, |(begin, _)| begin));
        if standalone.is_none() && self.at_line_start {
            // The tag begins a line, so an indented partial must indent it (even when
            // the tag itself prints nothing, as indenting the partial's source would).
            self.nodes.push(Node::Indent);
        }

        let name = content.trim();
        if name.is_empty() && !matches!(kind, TagKind::Comment | TagKind::Delimiters) {
            return Err(Error::at(src, tag_start, ErrorKind::EmptyTag));
        }
        match kind {
            TagKind::Escaped | TagKind::Ampersand | TagKind::Triple => self.nodes.push(Node::Var {
                name: name.into(),
                escape: kind == TagKind::Escaped,
            }),
            TagKind::Comment => {}
            TagKind::Delimiters => self.set_delimiters(content, tag_start)?,
            TagKind::Section | TagKind::Inverted => {
                if self.open.len() >= MAX_SECTION_DEPTH {
                    let limit = MAX_SECTION_DEPTH;
                    return Err(Error::at(src, tag_start, ErrorKind::TooDeep { limit }));
                }
                let parent = std::mem::take(&mut self.nodes);
                self.open.push(OpenSection {
                    name: name.into(),
                    inverted: kind == TagKind::Inverted,
                    tag_pos: tag_start,
                    body_start: tag_end,
                    parent,
                });
            }
            TagKind::Close => self.close_section(name, tag_start)?,
            TagKind::Partial => {
                let indent = standalone.map(|(begin, _)| src[begin..tag_start].into());
                self.nodes.push(Node::Partial {
                    name: name.into(),
                    target: None,
                    indent,
                });
            }
        }

        match standalone {
            Some((_, next_line)) => {
                self.pos = next_line;
                self.at_line_start = true;
            }
            None => {
                self.pos = tag_end;
                self.at_line_start = false;
            }
        }
        Ok(())
    }

    /// If the tag spanning `tag_start..tag_end` is alone on its line, return the start of
    /// that line and the start of the next one (the whole range is dropped from output).
    fn standalone_span(&self, tag_start: usize, tag_end: usize) -> Option<(usize, usize)> {
        let bytes = self.src.as_bytes();
        let line_begin = match self.src[self.pos..tag_start].rfind('\n') {
            Some(i) => self.pos + i + 1,
            // No newline since the previous tag: only stand-alone if that tag ended a line.
            None if self.at_line_start => self.pos,
            None => return None,
        };
        if !bytes[line_begin..tag_start].iter().all(|&b| is_blank(b)) {
            return None;
        }
        let mut end = tag_end;
        while end < bytes.len() && is_blank(bytes[end]) {
            end += 1;
        }
        match bytes.get(end) {
            None => Some((line_begin, end)),
            Some(b'\n') => Some((line_begin, end + 1)),
            Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => Some((line_begin, end + 2)),
            Some(_) => None,
        }
    }

    /// Emit the literal text `start..end` as a node, if not empty.
    fn text(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        self.nodes.push(Node::Text {
            span: start..end,
            starts_line: self.at_line_start,
        });
        self.at_line_start = self.src.as_bytes()[end - 1] == b'\n';
    }

    /// Apply `{{=open close=}}`; both delimiters must be non-empty, blank-free and `=`-free.
    fn set_delimiters(&mut self, content: &str, tag_start: usize) -> Result<(), Error> {
        let mut parts = content.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(open), Some(close), None) if !open.contains('=') && !close.contains('=') => {
                self.delims = Delims::new(open, close);
                Ok(())
            }
            _ => {
                let text = content.to_owned();
                Err(Error::at(
                    self.src,
                    tag_start,
                    ErrorKind::BadDelimiter { text },
                ))
            }
        }
    }

    /// Close the innermost open section, which must carry the same name.
    fn close_section(&mut self, name: &str, tag_start: usize) -> Result<(), Error> {
        let Some(open) = self.open.pop() else {
            let name = name.to_owned();
            return Err(Error::at(
                self.src,
                tag_start,
                ErrorKind::StrayClose { name },
            ));
        };
        if &*open.name != name {
            let kind = ErrorKind::MismatchedClose {
                open: open.name.to_string(),
                open_line: super::error::line_of(self.src, open.tag_pos),
                close: name.to_owned(),
            };
            return Err(Error::at(self.src, tag_start, kind));
        }
        let children = std::mem::replace(&mut self.nodes, open.parent);
        self.nodes.push(Node::Section {
            name: open.name,
            inverted: open.inverted,
            raw: open.body_start..tag_start,
            children,
        });
        Ok(())
    }
}

/// Spaces and tabs: the only characters allowed around a stand-alone tag.
fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}
