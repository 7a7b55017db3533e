//! Reading records back from shared data.
//!
//! Everything read back from shared data is untrusted: another version of the filter, another
//! plugin with the same `vm_id`, or a worker that died mid-update may have written it. Decoders
//! read it through `get` and checked arithmetic only, and a record they cannot read is absent.

/// Compare-and-swap attempts before giving up on a store.
pub(super) const MAX_CAS: usize = 32;

pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
