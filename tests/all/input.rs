//! input tests
