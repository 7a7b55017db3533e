//! Fuzz targets for the answers of other services (Chroma, the rate limit service) and for
//! the failover state the filter reads back.

use super::Input;

/// Chroma's answers: a collection, a query's nearest record, an error.
pub fn chroma(data: &[u8]) {
    use crate::chroma;
    if let Some(c) = chroma::collection(data) {
        let _ = c.is_cosine();
    }
    let _ = chroma::collection_id(data);
    if let Some(n) = chroma::nearest(data) {
        assert!(n.distance.is_finite() && n.similarity.is_finite());
    }
    let _ = chroma::error(data);
}

/// The rate limit service's gRPC answer, read against up to four descriptors.
pub fn rls(data: &[u8]) {
    use crate::rls::{verdict, Described};
    let mut input = Input::new(data);
    let shape = input.byte();
    let described: Vec<Described> = (0..shape % 5)
        .map(|i| Described {
            tokens: shape & (8 << i) != 0,
            model: (i % 2 == 1).then(|| "gpt-4o".to_string()),
            // The last may be a dollar budget's.
            budget: (i == 3 && shape & 128 != 0).then(|| {
                let reset = std::time::Duration::from_secs(u64::from(shape));
                ("team eng".to_string(), "USD per month", reset)
            }),
        })
        .collect();
    if let Some(v) = verdict(input.rest(), &described) {
        if let Some(o) = v.over_limit {
            let e = o.error("team-a", u64::from(shape) * 1_000_000);
            let _ = e.body();
        }
    }
}

/// The failover plan and journal as read back from the request's filter state, and each
/// attempt's adaptation of a request body (the input's part after the first `\n\n`).
pub fn failover(data: &[u8]) {
    use crate::failover::{Journal, Outcome, Plan};
    let split = data.windows(2).position(|w| w == b"\n\n");
    let parts = split.and_then(|i| Some((data.get(..i)?, data.get(i + 2..)?)));
    let (state, body) = parts.unwrap_or((
        data,
        &br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#[..],
    ));
    if let Some(plan) = Plan::decode(state) {
        let len = plan.attempts.len() as u64;
        for n in [0, 1, 2, len, len + 1, u64::MAX] {
            if let Some(a) = plan.attempt(n) {
                let _ = a.credential_header("sk-key");
                let _ = a.body(body, plan.default_max_tokens);
            }
        }
        assert_eq!(Plan::decode(plan.encode().as_bytes()).as_ref(), Some(&plan));
    }
    let mut j = Journal::decode(state);
    let _ = (j.served(), j.failovers(), j.summary());
    let _ = j.all_failed(j.0.len());
    let _ = j.all_failed(0);
    j.record(u64::MAX, "p", &Outcome::Status(503));
    j.record(0, "p", &Outcome::Timeout);
    let back = Journal::decode(j.encode().as_bytes());
    assert_eq!(back, j, "the journal does not read back");
}
