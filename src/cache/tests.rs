use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::entries::{
    decode_dir, encode_dir, entry_header, DirRef, Index, IndexRecord, DIR_RECORD, ENTRY_HEADER,
    INDEX_RECORD,
};
use super::vectors::{decode_segment, encode_segment, VecEntry};
use super::*;
use crate::limits::test_store::MemStore;
use crate::limits::Store;

fn k(body: Value, consumer: Option<&str>) -> Keys {
    keys(
        body.to_string().as_bytes(),
        "openai",
        "gpt-4o-mini",
        consumer,
        Some(&RouteSemantic {
            threshold: 0.9,
            multi_turn: false,
        }),
    )
    .unwrap()
}

fn chat() -> Value {
    json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"}
    ], "temperature": 0.2})
}

#[test]
fn every_parameter_changes_the_exact_key_but_stream_does_not() {
    let base = k(chat(), Some("a")).exact;
    let mut streamed = chat();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    assert_eq!(k(streamed, Some("a")).exact, base);
    // Key order and number spelling do not matter.
    let reordered: Value = serde_json::from_str(
        r#"{"temperature": 0.20, "messages": [{"content": "Be brief.", "role": "system"},
            {"role": "user", "content": "What is the capital of France?"}], "model": "m"}"#,
    )
    .unwrap();
    assert_eq!(k(reordered, Some("a")).exact, base);
    for (field, value) in [
        ("temperature", json!(0.3)),
        ("top_p", json!(0.5)),
        ("seed", json!(1)),
        ("n", json!(2)),
        ("max_tokens", json!(10)),
        ("max_completion_tokens", json!(10)),
        ("stop", json!(["x"])),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        ("tool_choice", json!("none")),
        ("response_format", json!({"type": "json_object"})),
        ("user", json!("u")),
    ] {
        let mut b = chat();
        b[field] = value;
        assert_ne!(k(b, Some("a")).exact, base, "{field}");
    }
    assert_ne!(k(chat(), Some("b")).exact, base);
    assert_ne!(k(chat(), None).exact, base);
    let other_model = keys(
        chat().to_string().as_bytes(),
        "openai",
        "gpt-4o",
        Some("a"),
        None,
    )
    .unwrap();
    assert_ne!(other_model.exact, base);
    let other_provider = keys(
        chat().to_string().as_bytes(),
        "azure",
        "gpt-4o-mini",
        Some("a"),
        None,
    )
    .unwrap();
    assert_ne!(other_provider.exact, base);
}

#[test]
fn the_partition_leaves_out_only_the_question() {
    let (p, text) = k(chat(), Some("a")).semantic.unwrap();
    assert_eq!(text, "What is the capital of France?");
    let mut para = chat();
    para["messages"][1]["content"] = json!("Tell me France's capital city");
    assert_eq!(k(para, Some("a")).semantic.unwrap().0, p);
    let mut sys = chat();
    sys["messages"][0]["content"] = json!("Be verbose.");
    assert_ne!(k(sys, Some("a")).semantic.unwrap().0, p);
    let mut temp = chat();
    temp["temperature"] = json!(1.0);
    assert_ne!(k(temp, Some("a")).semantic.unwrap().0, p);
    assert_ne!(k(chat(), Some("b")).semantic.unwrap().0, p);
    // Text parts count as text; an image does not.
    let mut parts = chat();
    parts["messages"][1]["content"] = json!([{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]);
    assert_eq!(
        k(parts, Some("a")).semantic.unwrap().1,
        "What is the capital\nof France?"
    );
    let mut image = chat();
    image["messages"][1]["content"] = json!([{"type": "image_url", "image_url": {"url": "data:"}}]);
    assert!(k(image, Some("a")).semantic.is_none());
}

#[test]
fn multi_turn_is_eligible_only_when_asked() {
    let conv = json!({"model": "m", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "What is the capital of France?"}
    ]});
    assert!(k(conv.clone(), None).semantic.is_none());
    let multi = RouteSemantic {
        threshold: 0.9,
        multi_turn: true,
    };
    let a = keys(conv.to_string().as_bytes(), "p", "m", None, Some(&multi)).unwrap();
    let mut other = conv.clone();
    other["messages"][1]["content"] = json!("Hey there");
    let b = keys(other.to_string().as_bytes(), "p", "m", None, Some(&multi)).unwrap();
    // Earlier turns must match exactly.
    assert_ne!(a.semantic.unwrap().0, b.semantic.unwrap().0);
    // An assistant message last is not a question.
    let mut last = conv;
    last["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": "x"}));
    assert!(
        keys(last.to_string().as_bytes(), "p", "m", None, Some(&multi))
            .unwrap()
            .semantic
            .is_none()
    );
    assert!(keys(b"[1]", "p", "m", None, None).is_none());
    assert!(keys(b"not json", "p", "m", None, None).is_none());
}

#[test]
fn directives() {
    assert_eq!(Directives::parse(None), Directives::default());
    let nc = Directives::parse(Some("max-age=0, No-Cache"));
    assert!(nc.no_cache && !nc.no_store);
    let ns = Directives::parse(Some("no-store"));
    assert!(ns.no_cache && ns.no_store);
}

fn key(i: u8) -> Key {
    Sha256::digest([i]).into()
}

fn entries(max_entries: u32, max_bytes: u64) -> Entries {
    Entries::new(
        "t.",
        &CacheConfig {
            max_entries,
            max_bytes,
            ..CacheConfig::default()
        },
    )
}

#[test]
fn entries_expire_and_are_bounded_by_size_oldest_first() {
    let s = MemStore::default();
    let e = entries(64, 3 * (ENTRY_HEADER as u64 + 100));
    let body = [b'x'; 100];
    assert!(e.put(&s, &key(1), &body, 1000, 0).stored);
    assert_eq!(e.get(&s, &key(1), 999).as_deref(), Some(&body[..]));
    assert_eq!(e.get(&s, &key(1), 1000), None, "expired");
    assert_eq!(e.get(&s, &key(2), 0), None);
    for i in 2..=4 {
        assert!(e.put(&s, &key(i), &body, 10_000, 1).stored);
    }
    // Key 1 (expired) left without counting as an eviction; 2, 3, 4 fit.
    assert!(e.total_bytes(&s) <= 3 * (ENTRY_HEADER as u64 + 100));
    let r = e.put(&s, &key(5), &body, 10_000, 2);
    assert_eq!(r.evicted, 1);
    assert_eq!(e.get(&s, &key(2), 3), None, "the oldest was evicted");
    for i in 3..=5 {
        assert!(e.get(&s, &key(i), 3).is_some(), "{i}");
    }
    // Too large for the whole cache: not stored.
    assert!(!e.put(&s, &key(6), &[0; 1000], 10_000, 2).stored);
}

#[test]
fn every_slot_is_used_before_the_oldest_is_evicted() {
    let s = MemStore::default();
    let e = entries(16, 1 << 20);
    let mut evicted = 0;
    for i in 0..16 {
        evicted += e.put(&s, &key(i), b"v", 10_000, 0).evicted;
    }
    assert_eq!(evicted, 0);
    for i in 0..16 {
        assert!(e.get(&s, &key(i), 1).is_some(), "{i}");
    }
    assert_eq!(e.put(&s, &key(16), b"v", 10_000, 0).evicted, 1);
    assert!(e.get(&s, &key(0), 1).is_none(), "the oldest went");
    for i in 1..=16 {
        assert!(e.get(&s, &key(i), 1).is_some(), "{i}");
    }
}

#[test]
fn a_replaced_answer_is_served_and_slots_bound_the_count() {
    let s = MemStore::default();
    let e = entries(4, 1 << 20);
    e.put(&s, &key(1), b"old", 10_000, 0);
    e.put(&s, &key(1), b"new", 10_000, 1);
    assert_eq!(e.get(&s, &key(1), 2).as_deref(), Some(&b"new"[..]));
    for i in 2..50 {
        e.put(&s, &key(i), b"v", 10_000, 3);
    }
    let idx = Index::decode(&s.get("t.index").unwrap().0);
    assert!(idx.records.len() <= 4);
    // Every record's slot holds exactly that entry, and nothing else is stored.
    let live: Vec<u32> = idx.records.iter().map(|r| r.slot).collect();
    for slot in 0..4 {
        let (v, _) = s.get(&format!("t.e.{slot}")).unwrap_or_default();
        assert_eq!(!v.is_empty(), live.contains(&slot), "slot {slot}");
    }
}

#[test]
fn concurrent_writers_keep_the_bound() {
    let s = MemStore::default();
    let e = entries(32, 10 * (ENTRY_HEADER as u64 + 50));
    std::thread::scope(|t| {
        for w in 0..4u8 {
            let (s, e) = (s.clone(), e.clone());
            t.spawn(move || {
                for i in 0..50u8 {
                    e.put(&s, &key(w * 50 + i), &[w; 50], 10_000, 0);
                }
            });
        }
    });
    let stored: u64 = (0..32)
        .filter_map(|i| s.get(&format!("t.e.{i}")))
        .map(|(v, _)| v.len() as u64)
        .sum();
    assert!(stored <= 10 * (ENTRY_HEADER as u64 + 50), "{stored}");
    assert_eq!(stored, e.total_bytes(&s));
}

fn unit(v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    assert!(normalise(&mut v));
    v
}

#[test]
fn vectors_nearest_within_partition_and_mirrors_follow_writers() {
    let s = MemStore::default();
    let mut writer = VectorIndex::new("v.", 130);
    let mut reader = VectorIndex::new("v.", 130);
    let (p, q) = (key(100), key(101));
    assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).is_none());
    writer.insert(&s, &p, &key(1), 1000, &unit(&[1.0, 0.1]));
    writer.insert(&s, &p, &key(2), 1000, &unit(&[0.0, 1.0]));
    writer.insert(&s, &q, &key(3), 1000, &unit(&[1.0, 0.0]));
    let n = reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap();
    assert_eq!(n.key, key(1));
    assert!(n.similarity > 0.99 && n.similarity <= 1.0001);
    // A new vector written after the reader mirrored the segment is seen.
    writer.insert(&s, &p, &key(4), 1000, &unit(&[1.0, 0.0]));
    assert_eq!(
        reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap().key,
        key(4)
    );
    // Expired vectors are not neighbours.
    assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 1000).is_none());
    // A ring of exactly max_vectors: the third vector of a ring of two overwrites the first.
    let mut two = VectorIndex::new("w.", 2);
    for (i, v) in [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]].iter().enumerate() {
        two.insert(&s, &p, &key(10 + i as u8), 1000, &unit(v));
    }
    assert_ne!(
        two.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap().key,
        key(10)
    );
    // The ring overwrites the oldest.
    for i in 0..200u32 {
        writer.insert(&s, &q, &key((i % 250) as u8), 5000, &unit(&[0.5, 0.5]));
    }
    assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).is_none());
    assert!(!normalise(&mut []));
    assert!(!normalise(&mut [0.0, 0.0]));
    assert!(!normalise(&mut [f32::NAN]));
}

#[test]
fn the_ring_position_stays_inside_the_ring() {
    let s = MemStore::default();
    let mut ring = VectorIndex::new("r.", 130);
    let (p, v) = (key(1), unit(&[1.0, 0.0]));
    // Another writer left the largest position: the next insert goes where it points
    // (u64::MAX % 130 = 15) and the stored position is kept inside the ring.
    s.set("r.meta", &VectorIndex::encode_meta(u64::MAX, &[0, 0, 0]), 0)
        .unwrap();
    assert!(ring.insert(&s, &p, &key(2), 1000, &v));
    let (next, versions) = ring.decode_meta(&s.get("r.meta").unwrap().0);
    assert_eq!(next, u64::MAX % 130 + 1);
    assert_eq!(versions, [1, 0, 0], "position 15 is in the first segment");
    for _ in 0..200 {
        assert!(ring.insert(&s, &p, &key(3), 1000, &v));
    }
    let (next, _) = ring.decode_meta(&s.get("r.meta").unwrap().0);
    assert!(next < 130);
    // Versions at the largest value wrap (past 0, "never written") rather than overflow.
    s.set(
        "r.meta",
        &VectorIndex::encode_meta(129, &[0, 0, u32::MAX]),
        0,
    )
    .unwrap();
    assert!(ring.insert(&s, &p, &key(4), 1000, &v));
    let (next, versions) = ring.decode_meta(&s.get("r.meta").unwrap().0);
    assert_eq!((next, versions[2]), (0, 1));
    assert_eq!(ring.nearest(&s, &p, &v, 0).unwrap().similarity.round(), 1.0);
}

#[test]
fn the_largest_tables_work_with_a_few_entries() {
    let s = MemStore::default();
    let e = entries(MAX_ENTRIES, MAX_BYTES);
    for i in 0..5 {
        assert!(e.put(&s, &key(i), &[i; 10], 10_000, 0).stored);
    }
    for i in 0..5 {
        assert_eq!(e.get(&s, &key(i), 1).as_deref(), Some(&[i; 10][..]));
    }
    // Only what was stored exists: no per-slot records.
    assert!(s.len() <= 1 + 5 + 5, "{}", s.len());
    // The free slot search wraps round the table from where the sequence points.
    let small = entries(4, 1 << 20);
    let idx = Index {
        next_seq: 2,
        records: [3u32, 0]
            .iter()
            .map(|&slot| IndexRecord {
                slot,
                size: 61,
                seq: u64::from(slot) + 1,
                expires_ms: u64::MAX,
                key: u64::from(slot) + 100,
            })
            .collect(),
    };
    s.set("t.index", &idx.encode(), 0).unwrap();
    assert!(small.put(&s, &key(9), b"x", 10_000, 0).stored);
    let after = Index::decode(&s.get("t.index").unwrap().0);
    assert_eq!(
        after.records.last().map(|r| r.slot),
        Some(1),
        "seq 3 points at 3, taken"
    );
    let mut ring = VectorIndex::new("big.", MAX_VECTORS);
    assert_eq!(ring.mirror.len(), MAX_VECTORS.div_ceil(SEGMENT) as usize);
    let v = unit(&[1.0, 2.0]);
    assert!(ring.insert(&s, &key(1), &key(2), 100, &v));
    assert_eq!(ring.nearest(&s, &key(1), &v, 0).unwrap().key, key(2));
    // Embeddings longer than the largest kept are neither normalised nor stored.
    let mut long = vec![1.0; MAX_DIMENSIONS as usize + 1];
    assert!(!normalise(&mut long));
    assert!(!ring.insert(&s, &key(1), &key(3), 100, &long));
    let mut longest = vec![1.0; MAX_DIMENSIONS as usize];
    assert!(normalise(&mut longest));
    assert!(ring.insert(&s, &key(1), &key(3), 100, &longest));
}

#[test]
fn garbage_in_shared_data_is_not_a_panic() {
    let s = MemStore::default();
    for k in ["t.index", "t.e.0", "t.e.1", "v.meta", "v.s.0"] {
        s.set(k, &[0xff; 37], 0).unwrap();
    }
    let e = entries(2, 1 << 20);
    assert!(e.get(&s, &key(1), 0).is_none());
    assert!(e.put(&s, &key(1), b"x", 10, 0).stored);
    let mut v = VectorIndex::new("v.", 64);
    assert!(v.nearest(&s, &key(1), &[1.0], 0).is_none());
    assert!(decode_segment(&[5, 0, 0, 0, 3, 0, 0, 0]).is_empty());
}

#[test]
fn a_short_entry_is_absent_at_every_length_of_its_header() {
    // The issue's case: a slot whose magic, key and sequence match but whose header stops
    // anywhere short of its end (52-59 bytes split at 60 used to panic).
    let s = MemStore::default();
    let e = entries(4, 1 << 20);
    assert!(e.put(&s, &key(1), b"answer", 10_000, 0).stored);
    let slot = (0..4)
        .map(|i| format!("t.e.{i}"))
        .find(|k| s.get(k).is_some_and(|(v, _)| !v.is_empty()))
        .unwrap();
    let (full, _) = s.get(&slot).unwrap();
    assert_eq!(full.len(), ENTRY_HEADER + 6);
    for len in 0..ENTRY_HEADER {
        s.set(&slot, &full[..len], 0).unwrap();
        assert_eq!(e.get(&s, &key(1), 1), None, "{len} bytes");
        assert!(entry_header(&full[..len]).is_none(), "{len} bytes");
    }
    s.set(&slot, &full[..ENTRY_HEADER], 0).unwrap();
    assert_eq!(
        e.get(&s, &key(1), 1),
        Some(Vec::new()),
        "a header and no answer"
    );
    s.set(&slot, &full, 0).unwrap();
    assert_eq!(e.get(&s, &key(1), 1).as_deref(), Some(&b"answer"[..]));
    // A store over a short record of the same slot still works.
    s.set(&slot, &full[..55], 0).unwrap();
    assert!(e.put(&s, &key(1), b"again", 10_000, 2).stored);
    assert_eq!(e.get(&s, &key(1), 3).as_deref(), Some(&b"again"[..]));
}

#[test]
fn short_and_corrupt_index_and_directory_records_decode_without_panic() {
    let idx = Index {
        next_seq: 9,
        records: (0..3)
            .map(|i| IndexRecord {
                slot: i,
                size: 100 + i,
                seq: u64::from(i) + 1,
                expires_ms: u64::MAX,
                key: u64::MAX - u64::from(i),
            })
            .collect(),
    };
    let b = idx.encode();
    assert_eq!(Index::decode(&b), idx);
    for len in 0..=b.len() {
        let d = Index::decode(&b[..len]);
        assert_eq!(
            d.records.len(),
            len.saturating_sub(8) / INDEX_RECORD,
            "{len}"
        );
        assert_eq!(d.records[..], idx.records[..d.records.len()]);
    }
    let refs = [
        DirRef {
            key: 1,
            slot: u32::MAX,
            seq: u64::MAX,
        },
        DirRef {
            key: u64::MAX,
            slot: 0,
            seq: 0,
        },
    ];
    let b = encode_dir(&refs);
    for len in 0..=b.len() {
        assert_eq!(decode_dir(&b[..len])[..], refs[..len / DIR_RECORD], "{len}");
    }
    // Sizes that overflow a sum, slots beyond the table: the store reads past them.
    let s = MemStore::default();
    let mut bad = Index {
        next_seq: u64::MAX,
        records: Vec::new(),
    };
    for slot in [0, 7, u32::MAX] {
        bad.records.push(IndexRecord {
            slot,
            size: u32::MAX,
            seq: u64::MAX,
            expires_ms: u64::MAX,
            key: 5,
        });
    }
    s.set("t.index", &bad.encode(), 0).unwrap();
    s.set("t.d.0", &encode_dir(&refs), 0).unwrap();
    let e = entries(4, 1 << 20);
    assert!(bad.total() >= u64::from(u32::MAX));
    assert!(e.put(&s, &key(3), b"x", 10, 0).stored);
    assert_eq!(e.get(&s, &key(3), 1).as_deref(), Some(&b"x"[..]));
}

#[test]
fn short_and_corrupt_vector_segments_decode_without_panic() {
    let v = |i: u8| VecEntry {
        partition: key(i),
        key: key(i + 1),
        expires_ms: 7,
        vector: vec![0.5, -0.25, 1.0],
    };
    let entries = vec![Some(v(1)), None, Some(v(2))];
    let b = encode_segment(&entries);
    assert_eq!(decode_segment(&b), entries);
    for len in 0..b.len() {
        let d = decode_segment(&b[..len]);
        assert!(d.len() < entries.len(), "{len}");
        assert_eq!(d[..], entries[..d.len()]);
    }
    // Lengths that would run past the record or wrap a 32-bit size.
    for dim in [u32::MAX, 0x4000_0001, 0x4000_0000, 4] {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&dim.to_le_bytes());
        b.extend_from_slice(&[0; 72 + 8]);
        assert!(decode_segment(&b).is_empty(), "{dim:#x}");
    }
    // A count beyond a segment, and meta of any length.
    let mut many = u32::MAX.to_le_bytes().to_vec();
    many.extend(std::iter::repeat_n(0, 400));
    assert_eq!(decode_segment(&many).len(), SEGMENT as usize);
    let index = VectorIndex::new("m.", 130);
    for len in 0..24 {
        let (next, versions) = index.decode_meta(&vec![0xff; len][..]);
        assert_eq!(versions.len(), 3);
        assert_eq!(next, if len >= 8 { u64::MAX } else { 0 });
    }
}

#[test]
fn config_validation_names_the_field() {
    let parse = |v: Value| {
        let raw: RawCache = serde_json::from_value(v).unwrap();
        CacheConfig::parse(raw, &|n| match n {
            "openai" => Some((0, true)),
            "claude" => Some((1, false)),
            _ => None,
        })
    };
    let ok = parse(
        json!({"semantic": {"embeddings": {"provider": "openai", "model": "e"},
        "store": {"chroma": {"cluster": "chroma"}}}}),
    )
    .unwrap();
    let s = ok.semantic.unwrap();
    assert_eq!(s.max_vectors, DEFAULT_MAX_VECTORS);
    assert!(
        matches!(s.store, VectorStore::Chroma(ref c) if c.collection == "llm-gateway-cache" && c.authority == "chroma")
    );
    let e = parse(json!({"semantic": {"embeddings": {"provider": "claude", "model": "e"}}}))
        .unwrap_err();
    assert_eq!(e.field, "cache.semantic.embeddings.provider");
    let e =
        parse(json!({"semantic": {"embeddings": {"provider": "x", "model": "e"}}})).unwrap_err();
    assert!(e.message.contains("unknown provider"));
    let e = parse(json!({"max_bytes": 0})).unwrap_err();
    assert_eq!(e.field, "cache.max_bytes");
    let e = parse(
        json!({"semantic": {"embeddings": {"provider": "openai", "model": "e"}, "store": "redis"}}),
    )
    .unwrap_err();
    assert_eq!(e.field, "cache.semantic.store");
    let route = |v: Value, sem: bool| {
        let raw: RawRouteCache = serde_json::from_value(v).unwrap();
        RouteCache::parse("routes[0].cache", raw, sem)
    };
    let r = route(json!({}), false).unwrap();
    assert_eq!(r.ttl_ms, DEFAULT_TTL_S * 1000);
    assert_eq!(r.scope, Scope::Consumer);
    let e = route(json!({"semantic": {"threshold": 0.9}}), false).unwrap_err();
    assert_eq!(e.field, "routes[0].cache.semantic");
    let e = route(json!({"semantic": {"threshold": 1.5}}), true).unwrap_err();
    assert_eq!(e.field, "routes[0].cache.semantic.threshold");
    let e = route(json!({"ttl_s": 0}), true).unwrap_err();
    assert_eq!(e.field, "routes[0].cache.ttl_s");
}
