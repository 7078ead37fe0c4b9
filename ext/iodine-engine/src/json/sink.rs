//! Where a parse goes: the [`Sink`] the parser calls for each value, and the [`Tape`] that
//! records those calls to replay them into another sink later.

/// A sink's request to end the parse early (it keeps the reason itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// What the parser calls, in document order. Values arrive before the container that holds
/// them is closed: a sink that builds values keeps a stack, and `end_array(n)` /
/// `end_object(n)` say how many of the latest values (for an object: `n` key/value pairs,
/// each key given to [`Sink::key`] right before its value) the container takes.
pub trait Sink {
    /// An array opens (its values and then `end_array` follow).
    fn begin_array(&mut self) -> Result<(), Stop> {
        Ok(())
    }
    /// The open array closes, holding the last `len` values.
    fn end_array(&mut self, len: usize) -> Result<(), Stop>;
    /// An object opens.
    fn begin_object(&mut self) -> Result<(), Stop> {
        Ok(())
    }
    /// The open object closes, holding the last `pairs` key/value pairs.
    fn end_object(&mut self, pairs: usize) -> Result<(), Stop>;
    /// An object key (its value comes next): its text, escapes resolved, valid UTF-8 (the
    /// parser checked it).
    fn key(&mut self, key: &[u8]) -> Result<(), Stop>;
    /// A string value: its text, escapes resolved, valid UTF-8 (the parser checked it).
    fn string(&mut self, value: &[u8]) -> Result<(), Stop>;
    /// An integer that fits `i64`.
    fn integer(&mut self, value: i64) -> Result<(), Stop>;
    /// An integer too large for `i64`: its decimal text (an optional `-`, then digits).
    fn big_integer(&mut self, digits: &str) -> Result<(), Stop>;
    /// A number with a fraction or an exponent (or NaN/±Infinity when allowed).
    fn float(&mut self, value: f64) -> Result<(), Stop>;
    /// `true` or `false`.
    fn boolean(&mut self, value: bool) -> Result<(), Stop>;
    /// `null`.
    fn null(&mut self) -> Result<(), Stop>;
}

/// One recorded call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    BeginArray,
    EndArray(usize),
    BeginObject,
    EndObject(usize),
    /// A key copied to `text`: its end offset there (it starts where the previous copied
    /// text ended).
    Key(usize),
    /// A key that is a piece of the input: its start and end offsets.
    InputKey(usize, usize),
    String(usize),
    InputString(usize, usize),
    BigInteger(usize),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Null,
}

/// A parse recorded: the calls and their text, replayed with [`Tape::replay`]. Strings
/// without escapes are recorded as places in the input (the parser hands them over as
/// slices of it), so only escaped text is copied.
#[derive(Debug, Default)]
pub struct Tape {
    events: Vec<Event>,
    text: Vec<u8>,
    /// The address and length of the input being recorded (0 and 0: none, copy everything).
    input: (usize, usize),
}

impl Tape {
    /// An empty tape for a parse of `input` (sizes its buffers from it).
    pub fn for_input(input: &[u8]) -> Self {
        Tape {
            events: Vec::with_capacity(input.len() / 8),
            text: Vec::new(),
            input: (input.as_ptr() as usize, input.len()),
        }
    }

    /// Where `piece` lies in the recorded input, if it is a slice of it.
    fn in_input(&self, piece: &[u8]) -> Option<(usize, usize)> {
        let (base, len) = self.input;
        let at = (piece.as_ptr() as usize).checked_sub(base)?;
        (at + piece.len() <= len).then_some((at, at + piece.len()))
    }

    /// Plays the recorded calls into `sink`, in order; stops at the sink's first `Stop`.
    /// `input` is the input the tape recorded (its strings are read from there).
    pub fn replay<S: Sink>(&self, input: &[u8], sink: &mut S) -> Result<(), Stop> {
        let mut start = 0;
        let mut text = |end: usize| {
            let piece = self.text.get(start..end).ok_or(Stop);
            start = end;
            piece
        };
        let piece = |from: usize, to: usize| input.get(from..to).ok_or(Stop);
        for event in &self.events {
            match *event {
                Event::BeginArray => sink.begin_array()?,
                Event::EndArray(len) => sink.end_array(len)?,
                Event::BeginObject => sink.begin_object()?,
                Event::EndObject(pairs) => sink.end_object(pairs)?,
                Event::Key(end) => sink.key(text(end)?)?,
                Event::InputKey(from, to) => sink.key(piece(from, to)?)?,
                Event::String(end) => sink.string(text(end)?)?,
                Event::InputString(from, to) => sink.string(piece(from, to)?)?,
                Event::BigInteger(end) => {
                    // Digits the parser checked: ASCII.
                    let digits = std::str::from_utf8(text(end)?).map_err(|_| Stop)?;
                    sink.big_integer(digits)?
                }
                Event::Integer(value) => sink.integer(value)?,
                Event::Float(value) => sink.float(value)?,
                Event::Boolean(value) => sink.boolean(value)?,
                Event::Null => sink.null()?,
            }
        }
        Ok(())
    }

    fn push_text(&mut self, text: &[u8]) -> usize {
        self.text.extend_from_slice(text);
        self.text.len()
    }
}

impl Sink for Tape {
    fn begin_array(&mut self) -> Result<(), Stop> {
        self.events.push(Event::BeginArray);
        Ok(())
    }
    fn end_array(&mut self, len: usize) -> Result<(), Stop> {
        self.events.push(Event::EndArray(len));
        Ok(())
    }
    fn begin_object(&mut self) -> Result<(), Stop> {
        self.events.push(Event::BeginObject);
        Ok(())
    }
    fn end_object(&mut self, pairs: usize) -> Result<(), Stop> {
        self.events.push(Event::EndObject(pairs));
        Ok(())
    }
    fn key(&mut self, key: &[u8]) -> Result<(), Stop> {
        let event = match self.in_input(key) {
            Some((from, to)) => Event::InputKey(from, to),
            None => Event::Key(self.push_text(key)),
        };
        self.events.push(event);
        Ok(())
    }
    fn string(&mut self, value: &[u8]) -> Result<(), Stop> {
        let event = match self.in_input(value) {
            Some((from, to)) => Event::InputString(from, to),
            None => Event::String(self.push_text(value)),
        };
        self.events.push(event);
        Ok(())
    }
    fn integer(&mut self, value: i64) -> Result<(), Stop> {
        self.events.push(Event::Integer(value));
        Ok(())
    }
    fn big_integer(&mut self, digits: &str) -> Result<(), Stop> {
        let end = self.push_text(digits.as_bytes());
        self.events.push(Event::BigInteger(end));
        Ok(())
    }
    fn float(&mut self, value: f64) -> Result<(), Stop> {
        self.events.push(Event::Float(value));
        Ok(())
    }
    fn boolean(&mut self, value: bool) -> Result<(), Stop> {
        self.events.push(Event::Boolean(value));
        Ok(())
    }
    fn null(&mut self) -> Result<(), Stop> {
        self.events.push(Event::Null);
        Ok(())
    }
}
