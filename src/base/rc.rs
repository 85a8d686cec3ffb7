//! A thread-safe reference-counted box whose allocation can fail without aborting.
//!
//! `std::sync::Arc::new` calls `handle_alloc_error` when memory cannot be had, which aborts the
//! process, and stable Rust has no `Arc::try_new`. The library must return NULL /
//! `STOPPER_ENOMEM` instead (SPEC: "Out of memory and bad peers"), and its stoppers and channels
//! are reference counted, so this module is the small part of `Arc` the library uses — strong
//! and weak counts, `clone`, `downgrade`/`upgrade`, `into_raw`/`from_raw`, `into_inner` —
//! allocated with `std::alloc::alloc`, whose null return is checked.
//!
//! The counting follows `Arc`'s published algorithm: a relaxed increment (aborting past
//! `isize::MAX`, as `Arc` does, which needs that many leaked clones), a release decrement and
//! an acquire load of the count before the value is dropped; all strong references together hold one weak
//! reference, so the memory is freed when the last weak one goes. `upgrade` is a compare-and-swap
//! loop that never resurrects a count of zero. No `get_mut` is offered, so the weak count needs no
//! lock.

use std::alloc::{alloc, dealloc, Layout};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

const MAX_REFCOUNT: usize = isize::MAX as usize;

#[repr(C)]
struct RcBox<T> {
    strong: AtomicUsize,
    weak: AtomicUsize,
    value: T,
}

/// A strong reference (see the module documentation).
pub struct Arc<T> {
    ptr: NonNull<RcBox<T>>,
    _owns: PhantomData<RcBox<T>>,
}

/// A weak reference: keeps the memory, not the value.
pub struct Weak<T> {
    ptr: NonNull<RcBox<T>>,
}

// SAFETY: as for std's Arc: the value is shared between threads (Sync) and may be dropped on
// any thread (Send).
unsafe impl<T: Send + Sync> Send for Arc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Arc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for Weak<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Weak<T> {}

impl<T> Arc<T> {
    /// A new box holding `value`, or `Err(value)` when memory cannot be had.
    pub fn try_new(value: T) -> Result<Arc<T>, T> {
        let layout = Layout::new::<RcBox<T>>();
        // SAFETY: `RcBox` holds two counts, so its layout is never zero-sized.
        let raw = unsafe { alloc(layout) } as *mut RcBox<T>;
        let Some(ptr) = NonNull::new(raw) else {
            return Err(value);
        };
        // SAFETY: freshly allocated with this layout, and not yet shared.
        unsafe {
            ptr.as_ptr().write(RcBox {
                strong: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
                value,
            })
        };
        Ok(Arc {
            ptr,
            _owns: PhantomData,
        })
    }

    fn strong(&self) -> &AtomicUsize {
        strong_count_of(self.ptr)
    }

    /// A weak reference to the same box.
    pub fn downgrade(this: &Arc<T>) -> Weak<T> {
        increment(weak_count_of(this.ptr));
        Weak { ptr: this.ptr }
    }

    /// Whether both point to the same box.
    pub fn ptr_eq(a: &Arc<T>, b: &Arc<T>) -> bool {
        a.ptr == b.ptr
    }

    /// The value's address (valid while a strong reference lives).
    pub fn as_ptr(this: &Arc<T>) -> *const T {
        // SAFETY: in bounds of the live allocation; no reference is created.
        unsafe { std::ptr::addr_of!((*this.ptr.as_ptr()).value) }
    }

    /// Gives up this reference as the value's address (see [`Arc::from_raw`]).
    pub fn into_raw(this: Arc<T>) -> *const T {
        let p = Arc::as_ptr(&this);
        std::mem::forget(this);
        p
    }

    /// Takes back a reference given up by [`Arc::into_raw`].
    ///
    /// # Safety
    /// `p` comes from `Arc::<T>::into_raw` and that reference was not taken back already.
    pub unsafe fn from_raw(p: *const T) -> Arc<T> {
        let offset = std::mem::offset_of!(RcBox<T>, value);
        // SAFETY: `p` points `offset` bytes into a live `RcBox<T>` (the caller's contract).
        let boxp = unsafe { (p as *const u8).sub(offset) } as *mut RcBox<T>;
        Arc {
            // SAFETY: derived from a non-null box pointer.
            ptr: unsafe { NonNull::new_unchecked(boxp) },
            _owns: PhantomData,
        }
    }

    /// Adds a strong reference to the box behind `p` (see [`Arc::into_raw`]).
    ///
    /// # Safety
    /// `p` comes from `Arc::<T>::into_raw` and a reference behind it is alive.
    pub unsafe fn increment_strong_count(p: *const T) {
        // SAFETY: forwarded; `ManuallyDrop` keeps the borrowed reference.
        let a = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
        std::mem::forget(Arc::clone(&a));
    }

    /// The value, when this was the last strong reference (else `None`, and the reference is
    /// gone): exactly one of several racing callers gets it, as with `Arc::into_inner`.
    pub fn into_inner(this: Arc<T>) -> Option<T> {
        let this = std::mem::ManuallyDrop::new(this);
        if this.strong().fetch_sub(1, Ordering::Release) != 1 {
            return None;
        }
        acquire(this.strong());
        // SAFETY: the strong count reached zero: nobody else reads the value; it is moved out
        // once, and the box is not dropped again (`ManuallyDrop`).
        let value = unsafe { std::ptr::addr_of!((*this.ptr.as_ptr()).value).read() };
        // The strong references' weak reference.
        drop(Weak { ptr: this.ptr });
        Some(value)
    }
}

// The counts are reached through references to the count fields alone, never to the whole box:
// while the value is being dropped (`&mut` to it), the drop may release a `Weak` to its own box
// (a stopper's drop unlinks it from its parents, whose child lists hold weak references to it),
// and a reference covering the value would overlap that `&mut`.

/// The strong count of the box at `ptr`, which must be allocated for as long as it is used.
fn strong_count_of<'a, T>(ptr: NonNull<RcBox<T>>) -> &'a AtomicUsize {
    // SAFETY: the caller holds a reference (strong or weak) that keeps the box allocated; only
    // the count field is borrowed.
    unsafe { &*std::ptr::addr_of!((*ptr.as_ptr()).strong) }
}

/// The weak count of the box at `ptr` (as `strong_count_of`).
fn weak_count_of<'a, T>(ptr: NonNull<RcBox<T>>) -> &'a AtomicUsize {
    // SAFETY: as in `strong_count_of`.
    unsafe { &*std::ptr::addr_of!((*ptr.as_ptr()).weak) }
}

/// After the decrement that took `count` to zero: everything the other references did before
/// their decrements happens before what follows. An acquire load of the counter (whose
/// decrements all release) rather than an acquire fence, as std's `Arc` does under
/// ThreadSanitizer, which does not model fences; one load on the last drop only.
fn acquire(count: &AtomicUsize) {
    count.load(Ordering::Acquire);
}

fn increment(count: &AtomicUsize) {
    if count.fetch_add(1, Ordering::Relaxed) > MAX_REFCOUNT {
        std::process::abort(); // as std's Arc: only reachable by leaking isize::MAX clones
    }
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Arc<T> {
        increment(self.strong());
        Arc {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a strong reference keeps the value alive; only the value is borrowed.
        unsafe { &*std::ptr::addr_of!((*self.ptr.as_ptr()).value) }
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        if self.strong().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        acquire(self.strong());
        // SAFETY: the last strong reference: the value is dropped once, here.
        unsafe { std::ptr::drop_in_place(std::ptr::addr_of_mut!((*self.ptr.as_ptr()).value)) };
        drop(Weak { ptr: self.ptr });
    }
}

impl<T> Weak<T> {
    /// A strong reference, unless the value is gone.
    pub fn upgrade(&self) -> Option<Arc<T>> {
        // A weak reference keeps the box (and so its counts) allocated.
        let strong = strong_count_of(self.ptr);
        let mut n = strong.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return None;
            }
            if n > MAX_REFCOUNT {
                std::process::abort();
            }
            match strong.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(Arc {
                        ptr: self.ptr,
                        _owns: PhantomData,
                    })
                }
                Err(now) => n = now,
            }
        }
    }
}

impl<T> Weak<T> {
    /// The number of strong references now (0 once the value is gone).
    pub fn strong_count(&self) -> usize {
        strong_count_of(self.ptr).load(Ordering::Acquire)
    }
}

impl<T> Clone for Weak<T> {
    fn clone(&self) -> Weak<T> {
        increment(weak_count_of(self.ptr));
        Weak { ptr: self.ptr }
    }
}

impl<T> Drop for Weak<T> {
    fn drop(&mut self) {
        let weak = weak_count_of(self.ptr);
        if weak.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        acquire(weak);
        // SAFETY: the last reference of any kind; the value was dropped already (the strong
        // references' weak reference is given up only after that).
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, Layout::new::<RcBox<T>>()) };
    }
}

/// `Box::new`, except that it returns `Err(value)` when memory cannot be had.
pub fn try_box<T>(value: T) -> Result<Box<T>, T> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value)); // no allocation
    }
    // SAFETY: nonzero size.
    let raw = unsafe { alloc(layout) } as *mut T;
    if raw.is_null() {
        return Err(value);
    }
    // SAFETY: allocated by the global allocator with `T`'s layout, as `Box` requires.
    unsafe {
        raw.write(value);
        Ok(Box::from_raw(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_drop_once_and_free() {
        let a = Arc::try_new(String::from("x")).ok().unwrap();
        let w = Arc::downgrade(&a);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*w.upgrade().unwrap(), "x");
        drop(a);
        assert!(w.upgrade().is_some());
        let raw = Arc::into_raw(b);
        // SAFETY: from into_raw above.
        unsafe { Arc::increment_strong_count(raw) };
        // SAFETY: two references behind `raw` now.
        let (c, d) = unsafe { (Arc::from_raw(raw), Arc::from_raw(raw)) };
        assert!(Arc::into_inner(c).is_none());
        assert_eq!(Arc::into_inner(d).as_deref(), Some("x"));
        assert!(w.upgrade().is_none());
        assert_eq!(*try_box(5u8).unwrap(), 5);
    }
}
