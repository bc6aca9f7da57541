//! Fuzz target `policy_pack`: see `custodian_fuzz::policy_pack`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::policy_pack(data));
