use core::fmt;

/// What was wrong with a name given to a packed-ascii constructor or decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PackError {
    /// The name has no characters.
    Empty,
    /// The name has more bytes than the type holds.
    TooLong {
        /// The most characters the type holds.
        max: usize,
        /// The length of the input, in bytes.
        actual: usize,
    },
    /// A byte outside the alphabet (see [`crate::alphabet`]).
    InvalidByte {
        /// Position of the byte in the input.
        index: usize,
        /// The byte itself.
        byte: u8,
    },
    /// Packed bits that no name encodes: spare bits set, or a character after padding.
    InvalidEncoding {
        /// The offending bits (a `u64` value is widened).
        bits: u128,
    },
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PackError::Empty => f.write_str("name is empty"),
            PackError::TooLong { max, actual } => {
                write!(f, "name is {actual} bytes long, at most {max} fit")
            }
            PackError::InvalidByte { index, byte } => {
                write!(
                    f,
                    "byte 0x{byte:02x} at index {index} is not in the packed-ascii alphabet"
                )?;
                if byte.is_ascii_graphic() || byte == b' ' {
                    write!(f, " ({:?})", byte as char)?;
                }
                if byte.is_ascii_uppercase() {
                    f.write_str(
                        "; uppercase is rejected unless the case-folding constructor is used",
                    )?;
                }
                Ok(())
            }
            PackError::InvalidEncoding { bits } => {
                write!(f, "0x{bits:x} is not a valid packed-ascii encoding")
            }
        }
    }
}

impl core::error::Error for PackError {}
