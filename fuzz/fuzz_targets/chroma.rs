#![no_main]
//! See llm_gateway::fuzzing::chroma.
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::chroma(data));
