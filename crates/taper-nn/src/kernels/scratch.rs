//! Per-thread scratch buffers kept from one kernel call to the next.
//!
//! A convolution's im2col columns need a buffer of `k · rows · Wo` values per
//! worker, fully written before it is read. Allocated as `vec![0; n]` in every
//! call, its zero fill was a tenth of a batch-1 CNN inference (memset of 0.9 MB
//! per 3x3 layer on a 28x28 image) and was thrown away unread. A [`Scratch`] comes
//! from the calling thread's pool and goes back to it when dropped, so after the
//! first call no buffer is allocated or cleared.

use std::any::Any;
use std::cell::RefCell;

/// Buffers kept per thread; more are freed when given back.
const KEPT: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` values from this thread's pool, returned to it on drop.
/// Its contents are unspecified (what its last user left, `fill` where it grew):
/// callers write every value before reading it.
pub(crate) struct Scratch<T: 'static>(Vec<T>);

impl<T: Copy + 'static> Scratch<T> {
    /// `len` values, unspecified (see the type's docs).
    pub(crate) fn take(len: usize, fill: T) -> Self {
        let reused = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().position(|b| b.is::<Vec<T>>())?;
                p.swap_remove(i).downcast::<Vec<T>>().ok()
            })
            .ok()
            .flatten();
        let mut v = reused.map(|b| *b).unwrap_or_default();
        v.truncate(len);
        v.resize(len, fill);
        Scratch(v)
    }
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        // A thread being torn down has no pool left: the buffer is just freed.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEPT {
                p.push(Box::new(v));
            }
        });
    }
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_with_the_asked_length() {
        let p = {
            let mut a = Scratch::take(1000, 0f32);
            a[999] = 7.0;
            a.as_ptr()
        };
        let b = Scratch::take(10, 0f32);
        assert_eq!((b.len(), b.as_ptr()), (10, p));
        // Another type never gets it; growth fills with the value given.
        let c = Scratch::take(3, 1u8);
        assert_eq!(&c[..], &[1, 1, 1]);
        drop(b);
        let d = Scratch::take(2000, 5f32);
        assert_eq!((d.len(), d[1999]), (2000, 5.0));
    }
}
