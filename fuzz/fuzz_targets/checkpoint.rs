//! Fuzz target `checkpoint`: see `custodian_fuzz::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::checkpoint(data));
