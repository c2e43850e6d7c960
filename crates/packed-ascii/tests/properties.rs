//! Property tests: round trip, order preservation, and no panic on any input.

use packed_ascii::{PackError, Packed64, Packed128, alphabet};
use proptest::prelude::*;

fn valid_name(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(alphabet::SYMBOLS.to_vec()),
        1..=max,
    )
    .prop_map(|bytes| String::from_utf8(bytes).expect("alphabet is ASCII"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip_64(name in valid_name(Packed64::MAX_LEN)) {
        let packed = Packed64::new(&name).unwrap();
        prop_assert_eq!(packed.to_string(), name.clone());
        prop_assert_eq!(packed.len(), name.len());
        prop_assert_eq!(Packed64::from_be_bytes(packed.to_be_bytes()), Ok(packed));
        prop_assert_eq!(Packed128::from(packed), Packed128::new(&name).unwrap());
    }

    #[test]
    fn round_trip_128(name in valid_name(Packed128::MAX_LEN)) {
        let packed = Packed128::new(&name).unwrap();
        prop_assert_eq!(packed.to_string(), name);
        prop_assert_eq!(Packed128::from_bits(packed.to_bits()), Ok(packed));
    }

    #[test]
    fn order_preserved(a in valid_name(10), b in valid_name(10)) {
        let (pa, pb) = (Packed64::new(&a).unwrap(), Packed64::new(&b).unwrap());
        prop_assert_eq!(pa.cmp(&pb), a.as_bytes().cmp(b.as_bytes()));
        prop_assert_eq!(pa.to_be_bytes().cmp(&pb.to_be_bytes()), a.cmp(&b));
        let (wa, wb) = (Packed128::new(&a).unwrap(), Packed128::new(&b).unwrap());
        prop_assert_eq!(wa.cmp(&wb), a.cmp(&b));
    }

    #[test]
    fn order_preserved_long(a in valid_name(21), b in valid_name(21)) {
        let (pa, pb) = (Packed128::new(&a).unwrap(), Packed128::new(&b).unwrap());
        prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
    }

    #[test]
    fn any_bytes_give_a_value_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        match Packed64::from_bytes(&bytes) {
            Ok(packed) => {
                let text = packed.unpack();
                prop_assert_eq!(text.as_bytes(), &bytes[..]);
            }
            Err(PackError::Empty) => prop_assert!(bytes.is_empty()),
            Err(PackError::TooLong { max, actual }) => {
                prop_assert_eq!(max, 10);
                prop_assert_eq!(actual, bytes.len());
            }
            Err(PackError::InvalidByte { index, byte }) => {
                prop_assert_eq!(bytes[index], byte);
                prop_assert!(!alphabet::contains(byte));
                prop_assert!(bytes[..index].iter().all(|&b| alphabet::contains(b)));
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        let _ = Packed128::from_bytes(&bytes);
    }

    #[test]
    fn invalid_strings_always_error(
        prefix in valid_name(4),
        bad in any::<u8>().prop_filter("outside the alphabet", |b| !alphabet::contains(*b)),
    ) {
        let mut bytes = prefix.into_bytes();
        let index = bytes.len();
        bytes.push(bad);
        prop_assert_eq!(Packed64::from_bytes(&bytes), Err(PackError::InvalidByte { index, byte: bad }));
    }

    #[test]
    fn any_bits_give_a_value_or_a_typed_error(bits in any::<u64>(), wide in any::<u128>()) {
        if let Ok(packed) = Packed64::from_bits(bits) {
            prop_assert_eq!(Packed64::new(&packed.to_string()), Ok(packed));
        }
        if let Ok(packed) = Packed128::from_bits(wide) {
            prop_assert_eq!(Packed128::new(&packed.to_string()), Ok(packed));
        }
    }
}
