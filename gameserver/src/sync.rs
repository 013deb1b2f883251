//! The one lock helper for std mutexes guarding plain data.

use std::sync::{Mutex, MutexGuard};

/// A poisoned lock only means another task panicked mid-update of plain maps and sets; the
/// data is still usable, so recover it instead of propagating the panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
