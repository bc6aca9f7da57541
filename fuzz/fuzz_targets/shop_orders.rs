//! Fuzz target `shop_orders`: see `custodian_fuzz::shop_orders`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::shop_orders(data));
