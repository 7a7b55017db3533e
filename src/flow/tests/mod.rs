//! The flow driven natively through the `FakeHost`, stage by stage: each test asserts what the
//! flow asked the host to do (headers set and removed, bodies replaced, callouts, replies,
//! resumes, metrics and properties).

mod admit;
mod attempt;
mod budgets;
mod cache;
mod cooldown;
mod credentials;
mod finish;
mod inbound;
mod limits;
mod outbound;
mod responses;
mod support;
mod trace;
mod vm;
