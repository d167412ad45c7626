//! A map whose values are made once per key, on first use, by a fallible (and slow) function:
//! concurrent first calls for one key make it once and share it, calls for other keys are not
//! blocked meanwhile, and a failure leaves nothing behind.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

type Slot<V> = Arc<Mutex<Option<V>>>;

/// Values by key, each made once.
pub struct OnceMap<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> OnceMap<K, V> {
    /// The value of `key`, made by `make` if there is none yet.
    pub fn get_or_try_init<E>(&self, key: &K, make: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let slot: Slot<V> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = guard.as_ref() {
            return Ok(v.clone());
        }
        match make() {
            Ok(v) => {
                *guard = Some(v.clone());
                Ok(v)
            }
            Err(e) => {
                drop(guard);
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(s) = slots.get(key) {
                    let empty = s.try_lock().map(|g| g.is_none()).unwrap_or(false);
                    if Arc::ptr_eq(s, &slot) && empty {
                        slots.remove(key);
                    }
                }
                Err(e)
            }
        }
    }

    /// The values made so far (keys still being made are left out).
    pub fn made(&self) -> Vec<(K, V)> {
        let slots: Vec<(K, Slot<V>)> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        slots
            .into_iter()
            .filter_map(|(k, s)| Some((k, s.try_lock().ok()?.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn made_once_under_concurrency_and_failures_leave_nothing() {
        let m: Arc<OnceMap<String, usize>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (m, calls) = (m.clone(), calls.clone());
                std::thread::spawn(move || {
                    m.get_or_try_init(&"a".to_string(), || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, ()>(7)
                    })
                    .unwrap()
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(m.get_or_try_init(&"b".to_string(), || Err("no")), Err("no"));
        assert_eq!(m.made(), vec![("a".to_string(), 7)]);
        assert_eq!(
            m.slots.lock().unwrap().len(),
            1,
            "the failed key left no slot"
        );
    }
}
