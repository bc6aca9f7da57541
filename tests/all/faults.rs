//! faults tests
