#![no_main]
//! See llm_gateway::fuzzing::anthropic_reverse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::anthropic_reverse(data));
