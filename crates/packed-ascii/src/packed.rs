//! The packed name types. Both widths come from one macro so that they cannot drift apart.

use core::fmt;
use core::str::FromStr;

use crate::PackError;
use crate::alphabet::{BITS_PER_CHAR, DECODE, ENCODE, ENCODE_FOLDING_CASE};

/// A decoded name on the stack: at most `N` ASCII bytes, no allocation.
///
/// ```
/// let name = packed_ascii::Packed64::new("orders")?;
/// let text = name.unpack();
/// assert_eq!(text.as_str(), "orders");
/// # Ok::<(), packed_ascii::PackError>(())
/// ```
#[derive(Clone, Copy)]
pub struct Unpacked<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Unpacked<N> {
    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..usize::from(self.len)];
        debug_assert!(bytes.is_ascii());
        // SAFETY: `Unpacked` is only built by `decode`, which writes bytes taken from the DECODE
        // table for nonzero codes; every such byte is printable ASCII (a const assertion in
        // `alphabet` and the `decoded_bytes_are_ascii` test check it), hence valid UTF-8.
        unsafe { core::str::from_utf8_unchecked(bytes) }
    }
}

impl<const N: usize> core::ops::Deref for Unpacked<N> {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for Unpacked<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for Unpacked<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! packed_name {
    (
        $(#[$doc:meta])*
        $name:ident, $int:ty, $max:expr, $bytes:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name($int);

        impl $name {
            /// The most characters a name of this type holds.
            pub const MAX_LEN: usize = $max;
            /// Low bits that no character uses; always zero in a valid value.
            pub const SPARE_BITS: u32 = <$int>::BITS - $max * BITS_PER_CHAR;
            const CODE_MASK: $int = (1 << BITS_PER_CHAR) - 1;

            /// Packs `name`; uppercase letters are rejected.
            #[inline]
            pub const fn new(name: &str) -> Result<Self, PackError> {
                Self::pack(name.as_bytes(), &ENCODE)
            }

            /// Packs `name`, folding `A`-`Z` to lowercase first.
            #[inline]
            pub const fn new_folding_case(name: &str) -> Result<Self, PackError> {
                Self::pack(name.as_bytes(), &ENCODE_FOLDING_CASE)
            }

            /// Packs raw bytes (which need not be UTF-8; any byte outside the alphabet is an error).
            #[inline]
            pub const fn from_bytes(name: &[u8]) -> Result<Self, PackError> {
                Self::pack(name, &ENCODE)
            }

            #[inline]
            const fn pack(name: &[u8], table: &[u8; 256]) -> Result<Self, PackError> {
                let len = name.len();
                if len == 0 {
                    return Err(PackError::Empty);
                }
                if len > Self::MAX_LEN {
                    return Err(PackError::TooLong { max: Self::MAX_LEN, actual: len });
                }
                // Branch-free over the input: a zero code (a byte outside the alphabet) is
                // remembered and located only on the error path.
                let mut bits: $int = 0;
                let mut all_valid = true;
                let mut index = 0;
                while index < len {
                    let code = table[name[index] as usize];
                    all_valid &= code != 0;
                    bits = (bits << BITS_PER_CHAR) | code as $int;
                    index += 1;
                }
                if !all_valid {
                    return Err(Self::first_invalid(name, table));
                }
                // Left-align: first character in the top bits, padding codes (0) and the spare
                // bits below the last character.
                let shift = (Self::MAX_LEN - len) as u32 * BITS_PER_CHAR + Self::SPARE_BITS;
                Ok(Self(bits << shift))
            }

            #[cold]
            const fn first_invalid(name: &[u8], table: &[u8; 256]) -> PackError {
                let mut index = 0;
                while index < name.len() {
                    if table[name[index] as usize] == 0 {
                        return PackError::InvalidByte { index, byte: name[index] };
                    }
                    index += 1;
                }
                // Only called after a zero code was seen, so the loop returns.
                PackError::Empty
            }

            /// Checks that `bits` is what some name packs to, and wraps it.
            ///
            /// Valid bits have a nonzero first code, no nonzero code after a padding code, and
            /// zero spare bits.
            pub const fn from_bits(bits: $int) -> Result<Self, PackError> {
                let spare_mask: $int = (1 << Self::SPARE_BITS) - 1;
                if bits == 0 || bits & spare_mask != 0 {
                    return Err(PackError::InvalidEncoding { bits: bits as u128 });
                }
                let mut seen_padding = false;
                let mut position = 0;
                while position < Self::MAX_LEN {
                    let code = Self::code_at(bits, position);
                    if code == 0 {
                        seen_padding = true;
                    } else if seen_padding {
                        return Err(PackError::InvalidEncoding { bits: bits as u128 });
                    }
                    position += 1;
                }
                Ok(Self(bits))
            }

            /// The packed integer. Integer order is name order.
            #[inline]
            pub const fn to_bits(self) -> $int {
                self.0
            }

            /// Big-endian bytes: comparing them with `memcmp` orders names as strings.
            #[inline]
            pub const fn to_be_bytes(self) -> [u8; $bytes] {
                self.0.to_be_bytes()
            }

            /// The inverse of [`Self::to_be_bytes`], validating like [`Self::from_bits`].
            #[inline]
            pub const fn from_be_bytes(bytes: [u8; $bytes]) -> Result<Self, PackError> {
                Self::from_bits(<$int>::from_be_bytes(bytes))
            }

            /// The number of characters (1..=`MAX_LEN`).
            #[inline]
            #[allow(clippy::len_without_is_empty)] // a packed name is never empty
            pub const fn len(self) -> usize {
                // A nonzero code has at most 5 trailing zero bits, so whole zero codes at the
                // end are exactly the padding.
                let padding = (self.0.trailing_zeros() - Self::SPARE_BITS) / BITS_PER_CHAR;
                Self::MAX_LEN - padding as usize
            }

            #[inline]
            const fn code_at(bits: $int, position: usize) -> usize {
                let shift = <$int>::BITS - (position as u32 + 1) * BITS_PER_CHAR;
                ((bits >> shift) & Self::CODE_MASK) as usize
            }

            /// The text, decoded onto the stack.
            #[inline]
            pub fn unpack(self) -> Unpacked<$max> {
                // Every position is decoded (padding decodes to 0 and is cut off by `len`):
                // a fixed trip count the compiler unrolls, with no data-dependent branch.
                let mut bytes = [0u8; $max];
                for (position, byte) in bytes.iter_mut().enumerate() {
                    *byte = DECODE[Self::code_at(self.0, position)];
                }
                Unpacked { bytes, len: self.len() as u8 }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.unpack().as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.unpack().as_str())
            }
        }

        impl FromStr for $name {
            type Err = PackError;
            fn from_str(name: &str) -> Result<Self, PackError> {
                Self::new(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = PackError;
            fn try_from(name: &str) -> Result<Self, PackError> {
                Self::new(name)
            }
        }

        impl TryFrom<$int> for $name {
            type Error = PackError;
            fn try_from(bits: $int) -> Result<Self, PackError> {
                Self::from_bits(bits)
            }
        }

        impl From<$name> for $int {
            fn from(name: $name) -> $int {
                name.0
            }
        }
    };
}

packed_name! {
    /// A name of 1 to 10 characters in one `u64`.
    ///
    /// Layout: character `i` (0-based) occupies bits `63 - 6i ..= 58 - 6i`, so the first
    /// character is most significant; positions past the end hold code 0; the low 4 bits are
    /// spare and always zero.
    ///
    /// ```
    /// use packed_ascii::Packed64;
    /// let name = Packed64::new("account")?;
    /// assert_eq!(name.len(), 7);
    /// assert_eq!(format!("{name} {name:?}"), "account Packed64(\"account\")");
    /// assert!(Packed64::new("a")? < Packed64::new("b")?);
    /// # Ok::<(), packed_ascii::PackError>(())
    /// ```
    Packed64, u64, 10, 8
}

packed_name! {
    /// A name of 1 to 21 characters in one `u128`.
    ///
    /// Layout: character `i` (0-based) occupies bits `127 - 6i ..= 122 - 6i`; positions past
    /// the end hold code 0; the low 2 bits are spare and always zero.
    ///
    /// ```
    /// use packed_ascii::Packed128;
    /// let name = Packed128::new("funds-transferred-v2")?;
    /// assert_eq!(name.len(), 20);
    /// assert_eq!(Packed128::from_be_bytes(name.to_be_bytes())?, name);
    /// # Ok::<(), packed_ascii::PackError>(())
    /// ```
    Packed128, u128, 21, 16
}

impl From<Packed64> for Packed128 {
    /// Widens a short name; order is preserved across the two types.
    fn from(name: Packed64) -> Self {
        // Both types left-align the same 6-bit codes, so widening is a shift.
        Packed128((name.0 as u128) << 64)
    }
}

// Compile-time size checks: the types are exactly their integers.
const _: () = assert!(core::mem::size_of::<Packed64>() == 8);
const _: () = assert!(core::mem::size_of::<Packed128>() == 16);
const _: () = assert!(Packed64::SPARE_BITS == 4 && Packed128::SPARE_BITS == 2);

#[cfg(test)]
mod tests;
