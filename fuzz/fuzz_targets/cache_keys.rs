#![no_main]
//! See llm_gateway::fuzzing::cache_keys.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::cache_keys(data));
