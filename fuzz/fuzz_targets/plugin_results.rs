//! Fuzz target `plugin_results`: see `custodian_fuzz::plugin_results`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::plugin_results(data));
