use std::string::{String, ToString};
use std::vec::Vec;

use super::*;

#[test]
fn empty_is_rejected() {
    assert_eq!(Packed64::new(""), Err(PackError::Empty));
    assert_eq!(Packed128::new(""), Err(PackError::Empty));
    assert_eq!(Packed64::new_folding_case(""), Err(PackError::Empty));
}

#[test]
fn exactly_max_len_fits_and_one_more_does_not() {
    let ten = "abcdefghij";
    let packed = Packed64::new(ten).unwrap();
    assert_eq!(packed.len(), 10);
    assert_eq!(packed.to_string(), ten);
    assert_eq!(packed.to_bits() & 0xf, 0, "spare bits stay zero");
    assert_eq!(
        Packed64::new("abcdefghijk"),
        Err(PackError::TooLong {
            max: 10,
            actual: 11
        })
    );

    let twenty_one = "abcdefghijklmnopqrstu";
    let long = Packed128::new(twenty_one).unwrap();
    assert_eq!(long.len(), 21);
    assert_eq!(long.to_string(), twenty_one);
    assert_eq!(long.to_bits() & 0b11, 0);
    assert_eq!(Packed128::new(&"a".repeat(20)).unwrap().len(), 20);
    assert_eq!(
        Packed128::new("abcdefghijklmnopqrstuv"),
        Err(PackError::TooLong {
            max: 21,
            actual: 22
        })
    );
}

#[test]
fn too_long_is_reported_in_bytes_for_non_ascii() {
    // 4 characters, 12 bytes: the limit is on bytes, and no byte of it is valid anyway.
    assert_eq!(
        Packed64::new("日本語X"),
        Err(PackError::InvalidByte {
            index: 0,
            byte: 0xe6
        })
    );
    assert_eq!(
        Packed64::new("日本語日本語"),
        Err(PackError::TooLong {
            max: 10,
            actual: 18
        })
    );
}

#[test]
fn every_byte_value_alone_and_inside_a_name() {
    for byte in 0u8..=255 {
        let alone = Packed64::from_bytes(&[byte]);
        let inside = Packed128::from_bytes(&[b'a', byte, b'z']);
        if crate::alphabet::contains(byte) {
            let packed = alone.unwrap();
            assert_eq!(packed.unpack().as_bytes(), &[byte]);
            assert_eq!(inside.unwrap().unpack().as_bytes(), &[b'a', byte, b'z']);
        } else {
            assert_eq!(alone, Err(PackError::InvalidByte { index: 0, byte }));
            assert_eq!(inside, Err(PackError::InvalidByte { index: 1, byte }));
        }
    }
}

#[test]
fn uppercase_only_with_folding() {
    assert_eq!(
        Packed64::new("Bank"),
        Err(PackError::InvalidByte {
            index: 0,
            byte: b'B'
        })
    );
    assert_eq!(
        Packed64::new_folding_case("BaNK").unwrap(),
        Packed64::new("bank").unwrap()
    );
    assert_eq!(
        Packed64::new_folding_case("ba k"),
        Err(PackError::InvalidByte {
            index: 2,
            byte: b' '
        })
    );
    let message = PackError::InvalidByte {
        index: 0,
        byte: b'B',
    }
    .to_string();
    assert!(
        message.contains("0x42") && message.contains("uppercase"),
        "{message}"
    );
}

#[test]
fn first_and_last_symbols_round_trip_in_every_position() {
    for len in 1..=Packed64::MAX_LEN {
        for symbol in [b'!', b'~', b'a', b'0'] {
            let text: String = core::iter::repeat_n(symbol as char, len).collect();
            let packed = Packed64::new(&text).unwrap();
            assert_eq!(packed.len(), len);
            assert_eq!(packed.to_string(), text);
            assert_eq!(Packed64::from_bits(packed.to_bits()), Ok(packed));
        }
    }
}

#[test]
fn order_follows_bytes_and_prefixes_sort_first() {
    let mut names = [
        "b",
        "a",
        "ab",
        "a-",
        "a~",
        "z",
        "0",
        "~~~~~~~~~~",
        "!",
        "aa",
        "a!",
    ];
    let mut packed: Vec<Packed64> = names.iter().map(|n| Packed64::new(n).unwrap()).collect();
    names.sort_unstable();
    packed.sort_unstable();
    let decoded: Vec<String> = packed.iter().map(|p| p.to_string()).collect();
    assert_eq!(decoded, names);
}

#[test]
fn widening_preserves_text_and_order() {
    let short = Packed64::new("bank").unwrap();
    let wide = Packed128::from(short);
    assert_eq!(wide, Packed128::new("bank").unwrap());
    assert!(
        Packed128::from(Packed64::new("abcdefghij").unwrap())
            < Packed128::new("abcdefghija").unwrap()
    );
}

#[test]
fn invalid_bits_are_rejected() {
    assert!(matches!(
        Packed64::from_bits(0),
        Err(PackError::InvalidEncoding { bits: 0 })
    ));
    // A spare bit set.
    let valid = Packed64::new("abc").unwrap().to_bits();
    assert!(Packed64::from_bits(valid | 1).is_err());
    // A character after padding: code at position 0, padding at 1, code at 2.
    let gap = (1u64 << 58) | (1u64 << 46);
    assert!(Packed64::from_bits(gap).is_err());
    assert!(Packed128::from_bits(1).is_err());
    assert!(Packed64::from_be_bytes([0xff; 8]).is_err());
}

#[test]
fn decoded_bytes_are_ascii() {
    for code in 1..64 {
        assert!(crate::alphabet::DECODE[code].is_ascii_graphic());
    }
}

#[test]
fn traits_agree_with_constructors() {
    let parsed: Packed64 = "orders".parse().unwrap();
    assert_eq!(Packed64::try_from("orders"), Ok(parsed));
    assert_eq!(Packed64::try_from(parsed.to_bits()), Ok(parsed));
    assert_eq!(u64::from(parsed), parsed.to_bits());
    assert_eq!(std::format!("{parsed:?}"), "Packed64(\"orders\")");
    assert_eq!(std::format!("{:?}", parsed.unpack()), "\"orders\"");
    assert_eq!(&*parsed.unpack(), "orders");
}

#[test]
fn const_construction_and_macro() {
    const NAME: Packed64 = crate::packed64!("bank");
    const LONG: Packed128 = crate::packed128!("aggregate-type-name");
    const BAD: Result<Packed64, PackError> = Packed64::new("no space");
    assert_eq!(NAME.to_string(), "bank");
    assert_eq!(LONG.len(), 19);
    assert_eq!(
        BAD,
        Err(PackError::InvalidByte {
            index: 2,
            byte: b' '
        })
    );
}
