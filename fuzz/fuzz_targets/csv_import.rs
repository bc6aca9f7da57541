//! Fuzz target `csv_import`: see `custodian_fuzz::csv_import`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::csv_import(data));
