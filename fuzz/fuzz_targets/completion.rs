#![no_main]
//! See llm_gateway::fuzzing::completion.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::completion(data));
