#![no_main]
//! See llm_gateway::fuzzing::split.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::split(data));
