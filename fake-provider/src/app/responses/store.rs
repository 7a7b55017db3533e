//! The responses the fake stored (`store`, true unless the request says false): their JSON as
//! answered, their input items and what a request continuing them needs. Bounded: beyond
//! [`CAPACITY`] responses the oldest is forgotten, so a long benchmark does not grow the fake.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::responses::Prev;

/// Most responses kept.
pub const CAPACITY: usize = 10_000;

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The response object as `POST /responses` answered it (the final one of a stream).
    pub body: String,
    /// The request's input items, with ids.
    pub input_items: Vec<Value>,
    pub prev: Prev,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Stored>,
    order: VecDeque<String>,
}

/// Shared by every request of one fake (clones share it).
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<Mutex<Inner>>);

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, id: &str, stored: Stored) {
        let mut inner = self.lock();
        if inner.map.insert(id.to_owned(), stored).is_none() {
            inner.order.push_back(id.to_owned());
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Stored> {
        self.lock().map.get(id).cloned()
    }

    pub fn prev(&self, id: &str) -> Option<Prev> {
        self.lock().map.get(id).map(|s| s.prev.clone())
    }

    /// Forgets `id`; whether it was stored.
    pub fn remove(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let found = inner.map.remove(id).is_some();
        if found {
            inner.order.retain(|o| o != id);
        }
        found
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &str) -> Stored {
        Stored {
            body: body.to_owned(),
            input_items: Vec::new(),
            prev: Prev::default(),
        }
    }

    #[test]
    fn keeps_at_most_capacity_forgetting_the_oldest() {
        let store = Store::default();
        for i in 0..CAPACITY + 5 {
            store.insert(&format!("resp_{i}"), stored("{}"));
        }
        assert_eq!(store.len(), CAPACITY);
        assert!(store.get("resp_4").is_none());
        assert!(store.get("resp_5").is_some());
        // Storing an id again replaces it without a second place in the order.
        store.insert("resp_5", stored("{\"again\":1}"));
        assert_eq!(store.len(), CAPACITY);
        assert_eq!(store.get("resp_5").unwrap().body, "{\"again\":1}");
        assert!(store.remove("resp_5"));
        assert!(!store.remove("resp_5"));
        assert_eq!(store.len(), CAPACITY - 1);
    }
}
