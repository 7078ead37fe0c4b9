//! Compile-time errors, each naming the line (and file, when known) where it was found.

use std::fmt;

/// What went wrong while compiling a template.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An opening delimiter without its closing one; `expected` is the missing closer.
    UnclosedTag {
        /// The closing text that was never found (e.g. `}}` or `}}}`).
        expected: String,
    },
    /// A section opened and never closed.
    UnclosedSection {
        /// The section's name.
        name: String,
    },
    /// A closing tag whose name differs from the innermost open section.
    MismatchedClose {
        /// The name of the innermost open section.
        open: String,
        /// The 1-based line where that section was opened.
        open_line: usize,
        /// The name in the closing tag.
        close: String,
    },
    /// A closing tag while no section is open.
    StrayClose {
        /// The name in the closing tag.
        name: String,
    },
    /// A `{{=… …=}}` tag that does not hold exactly two non-empty delimiters without `=` or spaces.
    BadDelimiter {
        /// The tag's content as written.
        text: String,
    },
    /// A tag with no name, such as `{{}}` or `{{# }}`.
    EmptyTag,
    /// Sections nested deeper than the limit.
    TooDeep {
        /// The maximum nesting accepted.
        limit: usize,
    },
    /// The template file could not be read.
    Io {
        /// The operating system's description, including the path.
        message: String,
    },
}

/// A compile error: its kind, the 1-based line it was found on and the template it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    line: Option<usize>,
    origin: Option<String>,
}

impl Error {
    /// Build an error found at byte `pos` of `source`; the line is computed here because
    /// errors are rare and tracking lines during parsing would slow down every compile.
    pub(crate) fn at(source: &str, pos: usize, kind: ErrorKind) -> Error {
        Error {
            kind,
            line: Some(line_of(source, pos)),
            origin: None,
        }
    }

    /// Build an I/O error, which has no line.
    pub(crate) fn io(message: String) -> Error {
        Error {
            kind: ErrorKind::Io { message },
            line: None,
            origin: None,
        }
    }

    /// Record which template the error belongs to, unless an inner one already did.
    pub(crate) fn with_origin(mut self, origin: Option<String>) -> Error {
        if self.origin.is_none() {
            self.origin = origin;
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The 1-based line of the offending tag, or None for I/O errors.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The file path (or `partial "name"` for in-memory partials) the error was found in, if known.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
}

/// The 1-based line number of byte `pos` in `source`.
pub(crate) fn line_of(source: &str, pos: usize) -> usize {
    let end = pos.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line.unwrap_or(0);
        match &self.kind {
            ErrorKind::UnclosedTag { expected } => write!(
                f,
                "mustache: unclosed tag on line {line} (missing \"{expected}\")"
            )?,
            ErrorKind::UnclosedSection { name } => write!(
                f,
                "mustache: unclosed section \"{name}\" opened on line {line}"
            )?,
            ErrorKind::MismatchedClose {
                open,
                open_line,
                close,
            } => write!(
                f,
                "mustache: closing tag \"{close}\" on line {line} does not match section \"{open}\" opened on line {open_line}"
            )?,
            ErrorKind::StrayClose { name } => write!(
                f,
                "mustache: closing tag \"{name}\" on line {line} has no open section"
            )?,
            ErrorKind::BadDelimiter { text } => write!(
                f,
                "mustache: bad delimiter change \"{text}\" on line {line}"
            )?,
            ErrorKind::EmptyTag => write!(f, "mustache: empty tag name on line {line}")?,
            ErrorKind::TooDeep { limit } => write!(
                f,
                "mustache: sections nested deeper than {limit} levels on line {line}"
            )?,
            ErrorKind::Io { message } => write!(f, "mustache: {message}")?,
        }
        if let Some(origin) = &self.origin {
            write!(f, " in {origin}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
