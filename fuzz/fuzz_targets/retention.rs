//! Fuzz target `retention`: see `custodian_fuzz::retention`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::retention(data));
