//! packed-ascii used the way the store uses it: domain / aggregate type / event type names as
//! keys of an ordered on-disk index, compared by their big-endian bytes.

use std::collections::BTreeMap;

use packed_ascii::{PackError, Packed64, Packed128};

/// The store's index key: (domain, aggregate type, instance id), compared as raw bytes.
fn index_key(domain: Packed64, aggregate: Packed64, instance: u128) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&domain.to_be_bytes());
    key[8..16].copy_from_slice(&aggregate.to_be_bytes());
    key[16..].copy_from_slice(&instance.to_be_bytes());
    key
}

#[test]
fn byte_keys_group_streams_by_domain_then_aggregate_type() {
    let names = [
        ("bank", "account"),
        ("bank", "transfer"),
        ("shop", "order"),
        ("bank", "acc"),
    ];
    let mut index = BTreeMap::new();
    for (n, (domain, aggregate)) in names.iter().enumerate() {
        let key = index_key(
            domain.parse().unwrap(),
            aggregate.parse().unwrap(),
            n as u128,
        );
        index.insert(key, (*domain, *aggregate));
    }
    let order: Vec<_> = index.values().copied().collect();
    assert_eq!(
        order,
        [
            ("bank", "acc"),
            ("bank", "account"),
            ("bank", "transfer"),
            ("shop", "order")
        ]
    );

    // A range scan over one domain's keys finds exactly its streams.
    let bank = Packed64::new("bank").unwrap().to_be_bytes();
    let in_bank = index.keys().filter(|k| k[..8] == bank).count();
    assert_eq!(in_bank, 3);
}

#[test]
fn names_that_look_like_paths_never_become_paths() {
    // `.` `/` `\` are in the alphabet; the store derives file names from the bits.
    for hostile in ["..", "a/b", "\\", "/", "../../etc"] {
        let packed = Packed64::new(hostile).unwrap();
        let file_name = format!("{:016x}", packed.to_bits());
        assert!(
            file_name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{file_name}"
        );
        assert_eq!(packed.to_string(), hostile);
    }
}

#[test]
fn bad_names_are_typed_errors() {
    assert_eq!("".parse::<Packed64>(), Err(PackError::Empty));
    assert_eq!(
        "a-very-long-aggregate-type".parse::<Packed128>(),
        Err(PackError::TooLong {
            max: 21,
            actual: 26
        })
    );
    assert!(matches!(
        "bank acct".parse::<Packed64>(),
        Err(PackError::InvalidByte { index: 4, .. })
    ));
}
