//! Cross-crate integration tests live in `tests/tests/`; this library holds what they share.
//!
//! It also compiles and runs the code blocks of the top-level README as doctests, so the README
//! cannot drift from the API.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
