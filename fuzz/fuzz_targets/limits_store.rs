#![no_main]
//! See llm_gateway::fuzzing::limits_store.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::limits_store(data));
