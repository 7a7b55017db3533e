//! An in-memory `Store` with Envoy's shared-data semantics, for native tests and benches.

use super::{Conflict, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// CAS tokens per key; `cas == 0` writes unconditionally.
type Table = (HashMap<String, (Vec<u8>, u32)>, u32);

#[derive(Default, Clone)]
pub struct MemStore(Arc<Mutex<Table>>);

impl MemStore {
    /// Keys stored.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (map, next) = &mut *g;
        if cas != 0 && map.get(key).map(|(_, c)| *c) != Some(cas) {
            return Err(Conflict);
        }
        *next = next.wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), *next));
        Ok(())
    }
}
