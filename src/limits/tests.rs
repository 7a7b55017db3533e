use super::*;

use super::slot::{Slot, SLOT_LEN};
use super::test_store::MemStore;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn scope(name: &str, spec: Spec) -> Scope {
    Scope {
        name: name.into(),
        spec,
    }
}

fn limiter(store: &MemStore, slots: u32) -> Limiter {
    let l = Limiter::new("t.", slots);
    l.init(store);
    l
}

const ONE: Cost = Cost {
    requests: 1,
    tokens: 0,
    pico_usd: 0,
};

#[test]
fn rpm_admits_exactly_the_limit_then_refills() {
    let store = MemStore::default();
    let mut l = limiter(&store, 16);
    let s = [scope(
        "a",
        Spec {
            rpm: Some(10),
            ..Spec::default()
        },
    )];
    let ok = (0..50)
        .filter(|_| l.admit(&store, &s, ONE, T0).unwrap().is_ok())
        .count();
    assert_eq!(ok, 10);
    let r = l.admit(&store, &s, ONE, T0).unwrap().unwrap_err();
    assert_eq!(r.retry_after, Some(Duration::from_secs(6)));
    let e = r.error();
    assert_eq!(
        (e.status, e.kind, e.code),
        (429, "requests", "rate_limit_exceeded")
    );
    assert_eq!(
        e.message,
        "Rate limit reached for a on requests per minute (RPM): Limit 10, Remaining 0, \
         Requested 1. Please try again in 6s."
    );
    assert_eq!(r.snapshot.requests.unwrap().remaining, 0);
    // One request's worth refills every 6 s.
    assert!(l.admit(&store, &s, ONE, T0 + 6 * SEC).unwrap().is_ok());
    assert!(l.admit(&store, &s, ONE, T0 + 6 * SEC).unwrap().is_err());
}

#[test]
fn tokens_are_reserved_then_refunded() {
    let store = MemStore::default();
    let mut l = limiter(&store, 16);
    let s = [scope(
        "a",
        Spec {
            tpm: Some(1000),
            ..Spec::default()
        },
    )];
    let cost = Cost {
        requests: 1,
        tokens: 400,
        pico_usd: 0,
    };
    let a = l.admit(&store, &s, cost, T0).unwrap().unwrap();
    assert_eq!(a.snapshot.tokens.unwrap().remaining, 600);
    let b = l.admit(&store, &s, cost, T0).unwrap().unwrap();
    let r = l.admit(&store, &s, cost, T0).unwrap().unwrap_err();
    assert_eq!(
        r.reason,
        Reason::Window {
            window: Window::TokensPerMinute,
            limit: 1000,
            remaining: 200,
            requested: 400
        }
    );
    // Both used 50: 700 come back.
    l.settle(&store, &a, 50, 0, T0).unwrap();
    l.settle(&store, &b, 50, 0, T0).unwrap();
    let c = l.admit(&store, &s, cost, T0).unwrap().unwrap();
    assert_eq!(c.snapshot.tokens.unwrap().remaining, 500);
    // Using more than reserved is charged too.
    l.settle(&store, &c, 900, 0, T0).unwrap();
    let r = l.admit(&store, &s, cost, T0).unwrap().unwrap_err();
    match r.reason {
        Reason::Window { remaining, .. } => assert_eq!(remaining, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn larger_than_the_limit_never_passes() {
    let store = MemStore::default();
    let mut l = limiter(&store, 16);
    let s = [scope(
        "a",
        Spec {
            tpm: Some(100),
            ..Spec::default()
        },
    )];
    let r = l
        .admit(
            &store,
            &s,
            Cost {
                requests: 1,
                tokens: 101,
                pico_usd: 0,
            },
            T0,
        )
        .unwrap()
        .unwrap_err();
    assert_eq!(r.retry_after, None);
}

#[test]
fn concurrency_is_released_on_settle() {
    let store = MemStore::default();
    let mut l = limiter(&store, 16);
    let s = [scope(
        "a",
        Spec {
            concurrent: Some(2),
            ..Spec::default()
        },
    )];
    let a = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
    let _b = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
    assert!(matches!(
        l.admit(&store, &s, ONE, T0).unwrap().unwrap_err().reason,
        Reason::Concurrency { limit: 2 }
    ));
    l.settle(&store, &a, 0, 0, T0).unwrap();
    let c = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
    // A cancelled admission gives its slot back too.
    l.cancel(&store, &c, T0).unwrap();
    assert!(l.admit(&store, &s, ONE, T0).unwrap().is_ok());
}

#[test]
fn a_rejection_in_a_later_scope_gives_back_the_earlier_ones() {
    let store = MemStore::default();
    let mut l = limiter(&store, 16);
    let consumer = scope(
        "a",
        Spec {
            rpm: Some(5),
            tpm: Some(1000),
            concurrent: Some(1),
            ..Spec::default()
        },
    );
    let model = scope(
        "a / gpt-4o",
        Spec {
            tpm: Some(100),
            ..Spec::default()
        },
    );
    let cost = Cost {
        requests: 1,
        tokens: 200,
        pico_usd: 0,
    };
    let r = l
        .admit(&store, &[consumer.clone(), model], cost, T0)
        .unwrap()
        .unwrap_err();
    assert_eq!(r.scope, "a / gpt-4o");
    // Nothing was kept in the consumer's windows.
    let ok = l.admit(&store, &[consumer], cost, T0).unwrap().unwrap();
    assert_eq!(ok.snapshot.tokens.unwrap().remaining, 800);
    assert_eq!(ok.snapshot.requests.unwrap().remaining, 4);
}

#[test]
fn consumers_do_not_share_and_the_table_is_bounded() {
    let store = MemStore::default();
    let mut l = limiter(&store, 8);
    let spec = Spec {
        rpm: Some(1),
        ..Spec::default()
    };
    for i in 0..8 {
        let s = [scope(&format!("c{i}"), spec)];
        assert!(l.admit(&store, &s, ONE, T0).unwrap().unwrap().untracked == 0);
    }
    // Every slot is busy (refilling): a ninth consumer is not tracked.
    let s = [scope("c8", spec)];
    assert_eq!(l.admit(&store, &s, ONE, T0).unwrap().unwrap().untracked, 1);
    // One minute later the slots are idle and can be reclaimed.
    let later = T0 + 61 * SEC;
    assert_eq!(
        l.admit(&store, &s, ONE, later).unwrap().unwrap().untracked,
        0
    );
    assert_eq!(store.len(), 9);
    // The eight come back while c8 is busy: this VM's cached indexes are stale for the one
    // whose slot c8 took (and for each it displaces in turn); nine busy scopes do not fit in
    // eight slots, so exactly one goes untracked, and c8's window is never touched.
    let untracked: usize = (0..8)
        .map(|i| {
            let s = [scope(&format!("c{i}"), spec)];
            l.admit(&store, &s, ONE, later).unwrap().unwrap().untracked
        })
        .sum();
    assert_eq!(untracked, 1);
    assert!(l.admit(&store, &s, ONE, later).unwrap().is_err());
}

#[test]
fn short_and_corrupt_slots_read_as_empty_and_limits_still_hold() {
    let mut slot = Slot {
        owner: [7; 16],
        in_flight: 3,
        tat: [1, u64::MAX, 2],
        ..Slot::empty()
    };
    slot.usd_tat = 9;
    slot.month.spent = u64::MAX;
    slot.day.alerted = 5;
    let b = slot.encode();
    assert_eq!(Slot::decode(&b), slot);
    for len in 0..SLOT_LEN {
        assert_eq!(Slot::decode(&b[..len]), Slot::empty(), "{len} bytes");
    }
    let mut long = b.to_vec();
    long.push(0);
    assert_eq!(Slot::decode(&long), Slot::empty());
    let mut other_version = b;
    other_version[0] = 1;
    assert_eq!(Slot::decode(&other_version), Slot::empty());
    // A table full of garbage (short records, the largest counts and times) is no panic,
    // and a consumer whose slot says "everything in flight, every window far ahead" is
    // refused, not wrapped round to admitted.
    let store = MemStore::default();
    let mut l = limiter(&store, 4);
    let spec = Spec {
        rpm: Some(5),
        tpm: Some(u64::MAX),
        tpd: Some(1),
        concurrent: Some(u32::MAX),
        ..Spec::default()
    };
    let owner = Limiter::owner("c");
    let home = l.home(&owner);
    for i in 0..4 {
        store
            .set(&format!("t.{i}"), &b[..i as usize * 9], 0)
            .unwrap();
    }
    let maxed = Slot {
        owner,
        in_flight: u32::MAX,
        tat: [u64::MAX; 3],
        ..Slot::empty()
    };
    store.set(&format!("t.{home}"), &maxed.encode(), 0).unwrap();
    let big = Cost {
        requests: u64::MAX,
        tokens: u64::MAX,
        pico_usd: 0,
    };
    let r = l.admit(&store, &[scope("c", spec)], big, T0).unwrap();
    assert!(matches!(
        r.unwrap_err().reason,
        Reason::Concurrency { limit: u32::MAX }
    ));
    let no_concurrency = Spec {
        concurrent: None,
        ..spec
    };
    let r = l
        .admit(&store, &[scope("c", no_concurrency)], big, T0)
        .unwrap();
    assert!(r.is_err());
    store.set("t.lock", &[1, 2, 3], 0).unwrap();
    let r = l
        .admit(&store, &[scope("d", no_concurrency)], ONE, T0)
        .unwrap();
    assert!(r.is_ok());
}

#[test]
fn the_largest_token_figures_saturate() {
    let store = MemStore::default();
    let mut l = limiter(&store, 4);
    let spec = Spec {
        tpm: Some(u64::MAX),
        ..Spec::default()
    };
    let s = [scope("c", spec)];
    let cost = Cost {
        requests: 1,
        tokens: u64::MAX - 1,
        pico_usd: 0,
    };
    let mut held = l.admit(&store, &s, cost, T0).unwrap().unwrap();
    // Headers-only mode adds the prompt it learns later: the reservation saturates.
    l.add_tokens(&store, &mut held, 5, T0).unwrap();
    assert_eq!(held.reserved_tokens, u64::MAX);
    l.add_tokens(&store, &mut held, u64::MAX, T0).unwrap();
    assert_eq!(held.reserved_tokens, u64::MAX);
    l.settle(&store, &held, u64::MAX, 0, T0).unwrap();
    l.settle(&store, &held, 0, 0, T0).unwrap();
}

#[test]
fn exact_across_threads() {
    // Eight "workers", each with its own Limiter over one store, hammer one consumer
    // and a few others: exactly the limit passes.
    let store = MemStore::default();
    limiter(&store, 64);
    let spec = Spec {
        rpm: Some(100),
        tpm: Some(10_000),
        ..Spec::default()
    };
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut l = Limiter::new("t.", 64);
                let mut ok = 0;
                for i in 0..100 {
                    let name = if i % 4 == 0 {
                        format!("other{w}")
                    } else {
                        "hot".into()
                    };
                    let s = [scope(&name, spec)];
                    let cost = Cost {
                        requests: 1,
                        tokens: 10,
                        pico_usd: 0,
                    };
                    if let Ok(h) = l.admit(&store, &s, cost, T0).unwrap() {
                        if name == "hot" {
                            ok += 1;
                        }
                        l.settle(&store, &h, 10, 0, T0).unwrap();
                    }
                }
                ok
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 100);
}

#[test]
fn reset_format() {
    assert_eq!(format_reset(Duration::from_millis(20)), "20ms");
    assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
    assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
    assert_eq!(format_reset(Duration::ZERO), "0ms");
}

#[test]
fn a_scope_moved_to_another_slot_is_settled_where_it_was_charged() {
    let store = MemStore::default();
    let mut vm1 = limiter(&store, 2);
    let mut vm2 = Limiter::new("t.", 2);
    let spec = Spec {
        rpm: Some(60),
        concurrent: Some(1),
        ..Spec::default()
    };
    let home = vm1.home(&Limiter::owner("x"));
    let y = (0..100)
        .map(|i| format!("y{i}"))
        .find(|n| vm1.home(&Limiter::owner(n)) == home)
        .unwrap();
    // x takes its home slot and gives it back; a minute on, the slot is idle.
    let held = vm1
        .admit(&store, &[scope("x", spec)], ONE, T0)
        .unwrap()
        .unwrap();
    vm1.settle(&store, &held, 0, 0, T0).unwrap();
    let later = T0 + 61 * SEC;
    // y, with the same home, reclaims it and stays in flight.
    let _y = vm2
        .admit(&store, &[scope(&y, spec)], ONE, later)
        .unwrap()
        .unwrap();
    // vm1 still has x at its home: it finds x another slot, charges it there...
    let held = vm1
        .admit(&store, &[scope("x", spec)], ONE, later)
        .unwrap()
        .unwrap();
    assert_eq!(held.untracked, 0);
    assert!(vm1
        .admit(&store, &[scope("x", spec)], ONE, later)
        .unwrap()
        .is_err());
    // ...and settles it there: x's one request in flight is free again.
    vm1.settle(&store, &held, 0, 0, later).unwrap();
    assert!(vm1
        .admit(&store, &[scope("x", spec)], ONE, later)
        .unwrap()
        .is_ok());
}
