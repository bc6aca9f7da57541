//! Fuzz target `schema`: see `custodian_fuzz::schema`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::schema(data));
