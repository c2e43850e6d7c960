//! The alphabet: 63 printable ASCII symbols, code 0 reserved as padding.
//!
//! Codes are assigned in ASCII order, which is what makes integer order equal byte order:
//!
//! | codes | symbols |
//! |---|---|
//! | 0 | padding (never a character) |
//! | 1-11 | `! # $ % & ( ) * + - .` |
//! | 12 | `/` |
//! | 13-22 | `0`-`9` |
//! | 23-28 | `: < = > ? @` |
//! | 29-33 | `[ \ ] ^ _` |
//! | 34-59 | `a`-`z` |
//! | 60-63 | `{ \| } ~` |
//!
//! Left out of printable ASCII: the space, the quotes `"` `'` `` ` ``, and the separators `,`
//! and `;` (names travel through logs, CSV and shell commands), and uppercase `A`-`Z`, which
//! is rejected unless a folding constructor maps it to lowercase.
//!
//! Several symbols (`.`, `/`, `\`) are meaningful in paths: a packed name must never be used as
//! a path component as it is. Use its integer (for example as hex) instead.

/// Number of bits one character takes.
pub const BITS_PER_CHAR: u32 = 6;

/// The symbols, in code order: `SYMBOLS[code - 1]` is the character of `code`.
pub const SYMBOLS: &[u8; 63] = b"!#$%&()*+-./0123456789:<=>?@[\\]^_abcdefghijklmnopqrstuvwxyz{|}~";

/// Byte -> code (1..=63), or 0 for a byte outside the alphabet.
pub(crate) const ENCODE: [u8; 256] = build_encode(false);

/// Like [`ENCODE`], with `A`-`Z` mapped to the codes of `a`-`z`.
pub(crate) const ENCODE_FOLDING_CASE: [u8; 256] = build_encode(true);

/// Code -> byte; index 0 (padding) maps to 0.
pub(crate) const DECODE: [u8; 64] = build_decode();

const fn build_encode(fold_case: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < SYMBOLS.len() {
        table[SYMBOLS[code] as usize] = code as u8 + 1;
        code += 1;
    }
    if fold_case {
        let mut upper = b'A';
        while upper <= b'Z' {
            table[upper as usize] = table[upper.to_ascii_lowercase() as usize];
            upper += 1;
        }
    }
    table
}

const fn build_decode() -> [u8; 64] {
    let mut table = [0u8; 64];
    let mut code = 0;
    while code < SYMBOLS.len() {
        table[code + 1] = SYMBOLS[code];
        code += 1;
    }
    table
}

/// The code of `byte` (1..=63), or `None` when the byte is not in the alphabet.
///
/// ```
/// assert_eq!(packed_ascii::alphabet::code_of(b'!'), Some(1));
/// assert_eq!(packed_ascii::alphabet::code_of(b'~'), Some(63));
/// assert_eq!(packed_ascii::alphabet::code_of(b'A'), None);
/// ```
pub const fn code_of(byte: u8) -> Option<u8> {
    match ENCODE[byte as usize] {
        0 => None,
        code => Some(code),
    }
}

/// True when `byte` is in the alphabet.
pub const fn contains(byte: u8) -> bool {
    ENCODE[byte as usize] != 0
}

// The order-preservation argument rests on these: 63 distinct symbols, strictly increasing.
const _: () = {
    let mut index = 1;
    while index < SYMBOLS.len() {
        assert!(
            SYMBOLS[index - 1] < SYMBOLS[index],
            "symbols must be in ASCII order"
        );
        index += 1;
    }
    assert!(
        SYMBOLS[0] > b' ' && SYMBOLS[62] < 0x7f,
        "symbols must be printable ASCII"
    );
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_every_symbol() {
        for (index, &symbol) in SYMBOLS.iter().enumerate() {
            let code = ENCODE[symbol as usize];
            assert_eq!(usize::from(code), index + 1);
            assert_eq!(DECODE[usize::from(code)], symbol);
        }
        assert_eq!(DECODE[0], 0);
    }

    #[test]
    fn required_symbols_are_present_and_excluded_ones_absent() {
        for byte in (b'a'..=b'z').chain(b'0'..=b'9').chain(*b"-_.@/\\") {
            assert!(contains(byte), "{:?} must be in the alphabet", byte as char);
        }
        for byte in (b'A'..=b'Z').chain(*b" \"'`,;") {
            assert!(
                !contains(byte),
                "{:?} must not be in the alphabet",
                byte as char
            );
        }
        assert_eq!((0u16..=255).filter(|&b| contains(b as u8)).count(), 63);
    }

    #[test]
    fn folding_table_maps_only_uppercase_extra() {
        for byte in 0u8..=255 {
            let expected = if byte.is_ascii_uppercase() {
                ENCODE[byte.to_ascii_lowercase() as usize]
            } else {
                ENCODE[byte as usize]
            };
            assert_eq!(ENCODE_FOLDING_CASE[byte as usize], expected, "byte {byte}");
        }
    }
}
