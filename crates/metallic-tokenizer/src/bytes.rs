//! GPT-2's reversible byte <-> printable-char mapping. GGUF byte-level vocabularies
//! store every token in this mapped form, so decoding needs the inverse table.

use std::sync::OnceLock;

/// `bytes_to_unicode()` from GPT-2's encoder.py: printable Latin-1 bytes map to
/// themselves, the rest are shifted to U+0100.. in byte order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            u32::from(b)
        } else {
            shifted += 1;
            255 + shifted
        };
        table[usize::from(b)] = char::from_u32(cp).expect("mapping stays below U+0200");
    }
    table
}

/// Inverse table indexed by code point; the mapped range is U+0021..=U+0143.
fn char_to_byte_table() -> &'static [Option<u8>; 0x144] {
    static TABLE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut inv = [None; 0x144];
        for (b, c) in byte_to_char_table().iter().enumerate() {
            inv[*c as usize] = Some(b as u8);
        }
        inv
    })
}

/// Raw bytes a byte-level token stands for. A token containing a char outside
/// the mapping is not byte-level text at all, so (like HF's ByteLevel decoder)
/// its UTF-8 is used verbatim.
pub(crate) fn token_bytes(token: &str) -> Vec<u8> {
    let table = char_to_byte_table();
    let mapped: Option<Vec<u8>> = token
        .chars()
        .map(|c| table.get(c as usize).copied().flatten())
        .collect();
    mapped.unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_matching_gpt2() {
        let fwd = byte_to_char_table();
        assert_eq!(fwd[b' ' as usize], 'Ġ');
        assert_eq!(fwd[b'\n' as usize], 'Ċ');
        assert_eq!(fwd[b'\t' as usize], 'ĉ');
        assert_eq!(fwd[b'A' as usize], 'A');
        for b in 0..=255u8 {
            let s = fwd[usize::from(b)].to_string();
            assert_eq!(token_bytes(&s), vec![b]);
        }
    }

    #[test]
    fn foreign_chars_fall_back_to_utf8() {
        assert_eq!(token_bytes("<|im_end|>"), b"<|im_end|>".to_vec());
        assert_eq!(token_bytes("a b"), b"a b".to_vec());
        assert_eq!(token_bytes("ĠhelloĊ"), b" hello\n".to_vec());
    }
}
