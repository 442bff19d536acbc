//! The verbs' output, as pure functions from the libraries' typed answers to text: each is
//! tested by the exact text it writes.

pub(crate) mod mesh;
pub(crate) mod ops;
pub(crate) mod rm;
pub(crate) mod store;
pub(crate) mod trust;
