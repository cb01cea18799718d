//! Incremental decoding for token-by-token output.

use crate::Tokenizer;

/// Turns ids into text as they are generated. Byte-level tokens can end in the
/// middle of a UTF-8 character (emoji, CJK), so bytes of an incomplete character
/// are held back until the rest arrives. The concatenation of everything
/// returned equals [`Tokenizer::decode`] of all ids pushed.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tok: &'a Tokenizer) -> Self {
        StreamDecoder {
            tok,
            pending: Vec::new(),
        }
    }

    /// Adds one token and returns the text completed by it (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(self.tok.output_bytes(id));
        let mut out = String::new();
        let mut consumed = 0;
        // Same chunking as `String::from_utf8_lossy`, so invalid bytes become
        // U+FFFD exactly where a one-shot decode would put them; only a truncated
        // sequence at the very end is kept for later.
        for chunk in self.pending.utf8_chunks() {
            out.push_str(chunk.valid());
            consumed += chunk.valid().len();
            let invalid = chunk.invalid();
            if invalid.is_empty() {
                continue;
            }
            let at_end = consumed + invalid.len() == self.pending.len();
            if at_end && could_continue(invalid) {
                break;
            }
            out.push(char::REPLACEMENT_CHARACTER);
            consumed += invalid.len();
        }
        self.pending.drain(..consumed);
        out
    }

    /// Bytes received but not yet returned (an unfinished character).
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    /// Returns whatever is still held back, replacing an unfinished character
    /// with U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// Whether `tail` is a proper prefix of some valid UTF-8 sequence, i.e. more bytes
/// could still complete it.
fn could_continue(tail: &[u8]) -> bool {
    let Some(&lead) = tail.first() else {
        return false;
    };
    let need = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return false,
    };
    // Utf8Chunks already reports a maximal invalid prefix, so a tail shorter than
    // the sequence it starts is exactly the "incomplete, not wrong" case.
    tail.len() < need
}

#[cfg(test)]
mod tests {
    use super::could_continue;

    #[test]
    fn incomplete_vs_invalid_tails() {
        assert!(could_continue(&[0xF0, 0x9F]));
        assert!(could_continue(&[0xE4]));
        assert!(!could_continue(&[0x80]));
        assert!(!could_continue(&[0xFF]));
        assert!(!could_continue(&[]));
    }
}
