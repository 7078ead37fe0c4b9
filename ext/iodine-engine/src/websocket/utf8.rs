//! UTF-8 checked once, piece by piece: a text message's fragments are validated as they
//! arrive, and a character may be cut between two of them.

/// The state of a text that arrives in pieces: the bytes of a character the last piece
/// began but did not finish (at most three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    carry: [u8; 4],
    len: u8,
}

/// The text can't be valid UTF-8, whatever follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

impl Utf8Stream {
    /// Checks the next piece. An error as soon as it is certain: a piece that ends inside a
    /// character is fine as long as its bytes can still begin one.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            // Finish the character the last piece began.
            let have = usize::from(self.len);
            let take = (width(self.carry[0]) - have).min(piece.len());
            self.carry[have..have + take].copy_from_slice(&piece[..take]);
            self.len += take as u8; // take <= 3
            piece = &piece[take..];
            match std::str::from_utf8(&self.carry[..usize::from(self.len)]) {
                Ok(_) => self.len = 0,
                // Still the start of a valid character (and the piece is used up).
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            // Cut inside a character whose first bytes are valid: keep them for the next piece.
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8; // at most 3
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// Whether the text so far ends on a whole character (a message must).
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }
}

/// The length of the character a valid lead byte begins (a carried character always starts
/// with one).
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` cut at `cuts`; the result of each feed, then whether it ended whole.
    fn feed_cut(text: &[u8], cuts: &[usize]) -> (Vec<bool>, bool) {
        let mut stream = Utf8Stream::default();
        let mut results = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&text.len())) {
            results.push(stream.feed(&text[at..cut]).is_ok());
            at = cut;
        }
        (results, stream.is_complete())
    }

    #[test]
    fn valid_text_cut_anywhere_is_valid() {
        let text = "aé€😀z".as_bytes(); // 1, 2, 3 and 4-byte characters
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let (results, complete) = feed_cut(text, &[a, b]);
                assert!(results.iter().all(|ok| *ok), "cut at {a}, {b}");
                assert!(complete, "cut at {a}, {b}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_works() {
        let text = "€😀".as_bytes();
        let cuts: Vec<usize> = (1..text.len()).collect();
        let (results, complete) = feed_cut(text, &cuts);
        assert!(results.iter().all(|ok| *ok) && complete);
    }

    #[test]
    fn an_invalid_sequence_split_between_pieces_is_found_in_the_piece_that_breaks_it() {
        // "€" is E2 82 AC: the first piece ends with E2 82, the next starts with 'A'.
        let (results, _) = feed_cut(b"x\xE2\x82Ay", &[3]);
        assert_eq!(results, [true, false]);
        // A lead byte followed by a non-continuation, across pieces one byte long.
        let (results, _) = feed_cut(b"\xF0\x9F\x41", &[1, 2]);
        assert_eq!(results, [true, true, false]);
    }

    #[test]
    fn errors_are_found_as_soon_as_they_are_certain() {
        // 0xFF can never appear: the first piece already fails.
        assert_eq!(feed_cut(b"ab\xFF", &[]).0, [false]);
        // E0 80 can't begin a character (overlong): known without the third byte.
        let (results, _) = feed_cut(b"a\xE0\x80\x80", &[3]);
        assert!(!results[0]);
        // ED A0 is a surrogate: known at once too.
        assert_eq!(feed_cut(b"\xED\xA0", &[]).0, [false]);
        // A carried prefix broken by the next piece's second byte.
        let (results, _) = feed_cut(b"\xF0\x9F\x98\x41", &[2]);
        assert_eq!(results, [true, false]);
    }

    #[test]
    fn a_text_that_ends_inside_a_character_is_not_complete() {
        let (results, complete) = feed_cut(b"ok\xE2\x82", &[]);
        assert_eq!(results, [true]);
        assert!(!complete);
    }
}
