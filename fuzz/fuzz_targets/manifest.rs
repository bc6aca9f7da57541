//! Fuzz target `manifest`: see `custodian_fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::manifest(data));
