//! The data side of rendering, abstracted so the renderer never sees JSON or Ruby types.

/// How a data value behaves in sections and interpolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Nil, false or anything else that hides a section and shows an inverted one.
    Falsy,
    /// A list with this many items; sections iterate over it, and an empty list is falsy.
    List(usize),
    /// A hash-like value that is pushed on the context stack by a section.
    Map,
    /// A callable value: sections pass it their raw text, interpolation passes nothing.
    Lambda,
    /// Any other truthy value (string, number, true, object); a section renders once with it on top.
    Scalar,
}

impl Kind {
    /// Whether a section over a value of this kind is skipped (and an inverted one shown).
    pub fn is_falsy(self) -> bool {
        matches!(self, Kind::Falsy | Kind::List(0))
    }
}

/// Gives the renderer access to one kind of data (JSON values, Ruby objects, ...).
///
/// Every method may fail; the error is returned from [`Template::render`](super::Template::render)
/// unchanged, so an exception raised by user code can travel back to its caller.
pub trait Context {
    /// A handle to one data value; cloned whenever it is pushed on the context stack, so keep it cheap.
    type Value: Clone;
    /// The error type that data access can produce.
    type Error;

    /// Look up one key (may contain dots when the whole-name attempt is made) in a value; None when absent.
    fn lookup(&self, value: &Self::Value, key: &str) -> Result<Option<Self::Value>, Self::Error>;

    /// What kind of value this is, for sections and interpolation.
    fn kind(&self, value: &Self::Value) -> Result<Kind, Self::Error>;

    /// Item `index` of a list value (one for which [`Context::kind`] returned `Kind::List(len)`).
    fn item(&self, value: &Self::Value, index: usize) -> Result<Self::Value, Self::Error>;

    /// Append the string form of a value (for interpolation) to `out`, unescaped.
    fn write_str(&self, value: &Self::Value, out: &mut Vec<u8>) -> Result<(), Self::Error>;

    /// Call a lambda value with the raw section text (sections) or None (interpolation); returns its text.
    fn call(&self, value: &Self::Value, section: Option<&str>) -> Result<Vec<u8>, Self::Error>;
}
