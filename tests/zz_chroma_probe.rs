//! TEMPORARY probe (helper session): removed right after running.
mod support;

use llm_gateway::chroma::{self, MetaValue, Request, DEFAULT_DATABASE as D, DEFAULT_TENANT as T};
use support::chroma::Chroma;

fn send(c: &Chroma, r: &Request) -> (u16, Vec<u8>) {
    let agent = support::agent();
    let mut resp = agent
        .post(&c.url(&r.path))
        .header("content-type", "application/json")
        .send(&r.body[..])
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_vec().unwrap())
}

#[test]
fn probe() {
    let t0 = std::time::Instant::now();
    let c = Chroma::start();
    let c2 = Chroma::start();
    eprintln!("two servers ready in {:?}, ports {} {}", t0.elapsed(), c.port(), c2.port());
    let (s, b) = send(&c, &chroma::collection_request(T, D, "gw_cache"));
    assert_eq!(s, 200);
    let col = chroma::collection(&b).unwrap();
    assert!(col.is_cosine());
    let meta = [(chroma::PARTITION, MetaValue::Str("abc")), (chroma::EXPIRES_MS, MetaValue::from(2_000_000_000_000u64))];
    let (s, _) = send(&c, &chroma::upsert_request(T, D, &col.id, "k1", &[1.0, 0.0, 0.0], &meta, "doc1").unwrap());
    assert_eq!(s, 200);
    let (s, _) = send(&c, &chroma::add_request(T, D, &col.id, "k2", &[0.0, 1.0, 0.0], &meta, "doc2").unwrap());
    assert_eq!(s, 201);
    let (s, b) = send(&c, &chroma::query_request(T, D, &col.id, &[0.6, 0.8, 0.0], 1, "abc", 1_900_000_000_000).unwrap());
    assert_eq!(s, 200);
    let n = chroma::nearest(&b).unwrap();
    eprintln!("{n:?}");
    assert_eq!(n.id, "k2");
    assert!((n.similarity - 0.8).abs() < 1e-5);
    let (s, b) = send(&c, &chroma::query_request(T, D, &col.id, &[0.6, 0.8, 0.0], 1, "abc", 2_000_000_000_000).unwrap());
    assert_eq!(s, 200);
    assert!(chroma::nearest(&b).is_none());
    let (s, b) = send(&c, &chroma::query_request(T, D, &col.id, &[0.6, 0.8], 1, "abc", 0).unwrap());
    assert_eq!(s, 400);
    eprintln!("{:?}", chroma::error(&b));
    let (s, b) = send(&c, &chroma::query_request(T, D, "00000000-0000-4000-8000-000000000000", &[1.0, 0.0, 0.0], 1, "abc", 0).unwrap());
    assert_eq!(s, 404);
    assert_eq!(chroma::error(&b).unwrap().error, "NotFoundError");
    // the other server is independent
    let (s, b) = send(&c2, &chroma::collection_request(T, D, "gw_cache"));
    assert_eq!(s, 200);
    assert_ne!(chroma::collection_id(&b).unwrap(), col.id);
    assert!(c.log().contains("Frontend server listening"));
}
