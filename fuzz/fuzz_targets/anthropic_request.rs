#![no_main]
//! See llm_gateway::fuzzing::anthropic_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::anthropic_request(data));
