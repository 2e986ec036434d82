//! Page-aligned I/O buffers: O_DIRECT needs the memory, offset and length aligned.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

pub use crate::file::ALIGN;

/// A heap buffer aligned to [`ALIGN`], with a capacity fixed at creation and a length of valid bytes.
///
/// The data path allocates a fixed number of these up front and moves them between the driver,
/// the disk engine and the network, so memory stays bounded whatever the file size.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads, through `&self`, like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `capacity` bytes, rounded up to a multiple of [`ALIGN`].
    pub fn new(capacity: usize) -> AlignedBuf {
        let capacity = round_up(capacity.max(1), ALIGN);
        let layout = Layout::from_size_align(capacity, ALIGN).expect("buffer size fits a Layout");
        // Zeroed so that no uninitialised memory is ever written to a disk or a socket.
        // SAFETY: the layout's size is at least ALIGN, never zero.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            capacity,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets how many bytes are valid; panics past the capacity (a programming error).
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "len {len} past capacity {}",
            self.capacity
        );
        self.len = len;
    }

    /// The valid bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.full()[..self.len]
    }

    /// The whole capacity, valid or not (always initialised memory).
    pub fn full(&self) -> &[u8] {
        // SAFETY: `ptr` holds `capacity` initialised (zeroed at allocation) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    /// The whole capacity, for filling.
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `capacity` initialised bytes we own, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout =
            Layout::from_size_align(self.capacity, ALIGN).expect("layout was valid at creation");
        // SAFETY: `ptr` came from alloc_zeroed with this same layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} of {})", self.len, self.capacity)
    }
}

pub fn round_up(value: usize, to: usize) -> usize {
    value.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_page_aligned_and_rounded_up() {
        let buf = AlignedBuf::new(5000);
        assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
        assert_eq!(buf.capacity(), 8192);
        assert!(buf.is_empty());
        assert!(buf.full().iter().all(|&b| b == 0));
    }
}
