//! crash tests
