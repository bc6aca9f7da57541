//! Fuzz target `chat_sync`: see `custodian_fuzz::chat_sync`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::chat_sync(data));
