//! Nothing here: the classifier is the binary `src/main.rs`. This empty
//! library lets host-side tooling (`cargo test --workspace`, docs) treat
//! the crate like any other.
#![no_std]
