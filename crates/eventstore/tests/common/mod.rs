//! Helpers shared by the integration tests.

use eventstore::{Store, Stream};

/// Instance `id` of the aggregate type `t` in domain `d`.
pub fn stream_of(store: &Store, id: u128) -> Stream {
    store
        .domain("d")
        .unwrap()
        .aggregate("t")
        .unwrap()
        .instance(id)
}
