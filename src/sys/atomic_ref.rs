//! [`AtomicRef`]: an atomic, nullable `&'static T`.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// An atomic, nullable reference to a `'static` value: the building block
/// of the lock-free counter registry and of the switch from one week's
/// file (or one mapping of it) to the next.
///
/// It can only ever hold references that live for the whole program, so a
/// reference loaded from it is valid forever.
pub(crate) struct AtomicRef<T: 'static> {
    ptr: AtomicPtr<T>,
    _marker: PhantomData<&'static T>,
}

impl<T: Sync + 'static> AtomicRef<T> {
    /// An empty reference.
    pub(crate) const fn new() -> Self {
        AtomicRef {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _marker: PhantomData,
        }
    }

    /// The current reference, if any (acquire).
    #[inline(always)]
    pub(crate) fn load(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: the only values ever stored are null or pointers made from
        // `&'static T` (see `store` and `set_if_empty`), so a non-null pointer
        // is valid, aligned and shared-borrowable for 'static.
        unsafe { p.as_ref() }
    }

    /// Replaces the reference (release).
    pub(crate) fn store(&self, value: Option<&'static T>) {
        let p = value.map_or(ptr::null_mut(), |r| ptr::from_ref(r).cast_mut());
        self.ptr.store(p, Ordering::Release);
    }

    /// Sets the reference if it is empty; returns the reference now held.
    pub(crate) fn set_if_empty(&self, value: &'static T) -> &'static T {
        let new = ptr::from_ref(value).cast_mut();
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => value,
            // SAFETY: a non-null value was stored by `store` or `set_if_empty`
            // from a `&'static T`.
            Err(current) => unsafe { &*current },
        }
    }
}

impl<T: Sync + 'static> std::fmt::Debug for AtomicRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicRef")
            .field("set", &!self.ptr.load(Ordering::Relaxed).is_null())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_ref() {
        static A: u32 = 1;
        static B: u32 = 2;
        let r = AtomicRef::<u32>::new();
        assert!(r.load().is_none());
        assert_eq!(*r.set_if_empty(&A), 1);
        assert_eq!(*r.set_if_empty(&B), 1);
        r.store(Some(&B));
        assert_eq!(*r.load().unwrap(), 2);
        r.store(None);
        assert!(r.load().is_none());
    }
}
