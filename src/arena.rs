//! A bump allocator over a fixed block of zeroed static memory, falling back to the system's
//! allocator once the block is used up.
//!
//! The block lives in `.bss`: the kernel maps its pages on first touch with no system call, and
//! pages never touched cost nothing. A short-lived `get` fits in it many times over; a
//! long-running `broker` uses it up and then allocates from the system as any program does, the
//! block's memory staying with it (a bounded, one-time cost). Freeing the most recent block
//! gives its space back, which covers the many short-lived strings of parsing and formatting.
//!
//! This is the program's only `unsafe` code, here in the binary and not the library, because a
//! global allocator is a promise about memory that only `unsafe` can make: each `unsafe` below
//! says what it relies on.
//!
//! A file of its own that needs nothing but std, so that Miri checks it alone, without
//! building the crate's dependencies: `scripts/miri-arena.sh`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The block of `N` bytes, page-aligned so that it shares no page with other data.
#[repr(C, align(4096))]
struct Block<const N: usize>(UnsafeCell<[u8; N]>);

/// A bump allocator over `N` bytes: `next` is the offset of the block's first free byte.
pub struct Arena<const N: usize> {
    block: Block<N>,
    next: AtomicUsize,
}

// SAFETY: the block's bytes are only ever reached through pointers `alloc` hands out, and
// `alloc` hands out each byte range to one caller at a time (claimed with compare-exchange
// on `next`), so sharing the arena between threads shares no byte between them.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    /// An arena with the whole block free.
    pub const fn new() -> Self {
        Self {
            block: Block(UnsafeCell::new([0; N])),
            next: AtomicUsize::new(0),
        }
    }

    /// The block's first byte.
    fn base(&self) -> usize {
        self.block.0.get() as usize
    }

    /// Where `ptr` lies in the block, if it lies there.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize)
            .checked_sub(self.base())
            .filter(|&offset| offset < N)
    }

    /// Claims `layout` from the block, or `None` when the rest of the block is too small.
    fn claim(&self, layout: Layout) -> Option<*mut u8> {
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start =
                (self.base() + next).checked_next_multiple_of(layout.align())? - self.base();
            let end = start.checked_add(layout.size()).filter(|&end| end <= N)?;
            // Acquire pairs with the Release of a `dealloc` that gave these bytes back: the
            // freeing thread's last writes to them happen before this caller's first.
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Acquire, Ordering::Relaxed)
            {
                // `start` is within the block (start <= end <= N), so this pointer is
                // derived from the block's own and keeps its provenance.
                Ok(_) => return Some(self.block.0.get().cast::<u8>().wrapping_add(start)),
                Err(now) => next = now,
            }
        }
    }
}

// The methods are not inlined: an allocation site calls one function rather than carrying
// its body (inlined everywhere they added 300 KiB of code, pages every start maps).
//
// SAFETY: `alloc` returns either a range of the block claimed for this caller alone (aligned
// as asked, `layout.size()` bytes, all within the block) or what the system allocator
// returns; `dealloc` and `realloc` send system pointers back to the system allocator and
// only ever move `next` back over a range that is the last one claimed and is being freed.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.claim(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's promise (`layout` has a non-zero size) is passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset_of(ptr) {
            // The most recent block gives its space back; any other stays used.
            Some(offset) => {
                let _ = self.next.compare_exchange(
                    offset + layout.size(),
                    offset,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
            // SAFETY: a pointer outside the block came from `System.alloc` with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset_of(ptr) else {
            // SAFETY: a pointer outside the block came from `System.alloc` with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The most recent block grows or shrinks where it is while the block has room.
        if let Some(end) = offset.checked_add(new_size).filter(|&end| end <= N)
            && self
                .next
                .compare_exchange(
                    offset + layout.size(),
                    end,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `layout.align()` is a valid alignment and `new_size` is non-zero and, as
        // the caller promises, does not overflow when rounded up to it.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size, as above.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are live, distinct allocations at least `layout.size()`
            // bytes long, and `ptr` is freed only after the copy.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block size the tests use.
    const SIZE: usize = 64 << 10;

    /// A fresh arena, on the heap (64 KiB is much for a test thread's stack), freed at the end
    /// of the test so that Miri's leak check sees nothing left behind.
    fn arena() -> Box<Arena<SIZE>> {
        Box::new(Arena::new())
    }

    /// Allocates `size` bytes aligned to `align` from `arena`.
    fn alloc(arena: &Arena<SIZE>, size: usize, align: usize) -> *mut u8 {
        let ptr = unsafe { arena.alloc(Layout::from_size_align(size, align).unwrap()) };
        assert!(!ptr.is_null());
        assert_eq!(ptr as usize % align, 0, "misaligned");
        ptr
    }

    #[test]
    fn blocks_are_aligned_distinct_and_the_last_one_is_given_back() {
        let arena = &*arena();
        let a = alloc(arena, 3, 1);
        let b = alloc(arena, 16, 16);
        assert!(b as usize >= a as usize + 3);
        unsafe { arena.dealloc(b, Layout::from_size_align(16, 16).unwrap()) };
        assert_eq!(alloc(arena, 16, 16), b, "the freed last block is reused");
        // Freeing a block that is not the last keeps it claimed.
        unsafe { arena.dealloc(a, Layout::from_size_align(3, 1).unwrap()) };
        assert_ne!(alloc(arena, 1, 1), a);
    }

    #[test]
    fn realloc_grows_in_place_keeps_contents_and_falls_back_to_the_system() {
        let arena = &*arena();
        let layout = Layout::from_size_align(4, 1).unwrap();
        let a = alloc(arena, 4, 1);
        unsafe { a.copy_from_nonoverlapping(b"abcd".as_ptr(), 4) };
        let grown = unsafe { arena.realloc(a, layout, 64) };
        assert_eq!(grown, a, "the last block grows where it is");
        let _pin = alloc(arena, 1, 1);
        let moved = unsafe { arena.realloc(grown, Layout::from_size_align(64, 1).unwrap(), 128) };
        assert_ne!(moved, grown, "a block that is not the last moves");
        assert_eq!(unsafe { std::slice::from_raw_parts(moved, 4) }, b"abcd");

        // Bigger than the block: the system's memory, and back to the system when freed.
        let big = Layout::from_size_align(SIZE + 1, 8).unwrap();
        let ptr = unsafe { arena.alloc(big) };
        assert!(!ptr.is_null() && arena.offset_of(ptr).is_none());
        unsafe { arena.dealloc(ptr, big) };
        let moved_out =
            unsafe { arena.realloc(moved, Layout::from_size_align(128, 1).unwrap(), SIZE) };
        assert!(arena.offset_of(moved_out).is_none());
        assert_eq!(unsafe { std::slice::from_raw_parts(moved_out, 4) }, b"abcd");
        unsafe { arena.dealloc(moved_out, Layout::from_size_align(SIZE, 1).unwrap()) };
    }

    #[test]
    fn threads_never_share_a_byte() {
        // Miri interprets every step and explores thread interleavings: fewer rounds suffice.
        const ROUNDS: usize = if cfg!(miri) { 100 } else { 1000 };
        let arena = &*arena();
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                scope.spawn(move || {
                    let blocks: Vec<*mut u8> = (0..ROUNDS)
                        .map(|_| {
                            let ptr = alloc(arena, 24, 8);
                            unsafe { ptr.write_bytes(t, 24) };
                            ptr
                        })
                        .collect();
                    for &ptr in &blocks {
                        let bytes = unsafe { std::slice::from_raw_parts(ptr, 24) };
                        assert!(bytes.iter().all(|&b| b == t), "another thread wrote here");
                    }
                });
            }
        });
    }
}
