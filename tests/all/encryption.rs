//! encryption tests
