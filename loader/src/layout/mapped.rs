//! Large tensor buffers in memory of their own: an anonymous mapping per buffer, handed to
//! burn as the tensor's [`Bytes`] (through burn's `AllocationController`) and unmapped when the
//! tensor is dropped.
//!
//! Why not the global allocator: glibc serves a large `malloc` from the arena of the thread
//! that asks (our reads run on rayon's threads) and, once a chunk that large has been freed,
//! raises its mmap threshold so that later ones come from arenas too. A process that loads
//! model after model (each dropped before the next) then fills other arenas' chunks while
//! earlier models' memory sits free in theirs: 8 ResNet-50 loads in one process peaked at
//! 1.24–1.33× the bytes a model holds (measured, `bench_load ours resnet50 … 8`). A mapping is
//! returned to the system the moment its tensor goes, so every load costs what the first did:
//! 1.06–1.07× after 8 loads.
//! Fresh mappings are zero pages the kernel fills on first touch, so a zeroed buffer costs no
//! pass of ours, and a mapping is page-aligned (any element's alignment).

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use burn_std::{AccessError, AccessPolicy, AllocationController, AllocationProperty, Bytes};

/// Buffers of at least this many bytes get a mapping of their own (glibc's own threshold before
/// it raises it); smaller ones stay with the allocator. With 1 MiB, ResNet-50's smaller tensors
/// still left 1.06–1.13× after 8 loads; with 128 KiB, 1.06–1.07× (a single load: 1.06×).
pub(crate) const MAPPED_AT_LEAST: usize = 128 << 10;

/// The alignment a mapping is reported with: every element type's, and the most burn's `Bytes`
/// allows, `u128`'s (a clone is allocated with it; a page-aligned mapping has far more).
const ALIGN: usize = align_of::<u128>();

/// An anonymous private mapping of `len` bytes, zero-filled by the kernel, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned memory reached only through `&self` / `&mut self`, like a `Vec`.
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access only reads.
#[allow(unsafe_code)]
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes)", self.len)
    }
}

impl Mapping {
    /// A fresh zeroed mapping of `len` (> 0) bytes, or `None` where the system refuses one
    /// (the caller then uses the allocator).
    pub(crate) fn zeroed(len: usize) -> Option<Self> {
        // Miri runs no foreign functions; elsewhere than Unix the allocator serves.
        if len == 0 || cfg!(any(miri, not(unix))) {
            return None;
        }
        #[cfg(unix)]
        {
            // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
            // no existing memory; the result is checked before use.
            #[allow(unsafe_code)]
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return None;
            }
            let ptr = NonNull::new(ptr.cast::<u8>())?;
            Some(Self { ptr, len })
        }
        #[cfg(not(unix))]
        None
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes, all initialised (zero pages or written).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr(), self.len)
        }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len)
        }
    }

    /// The mapping as burn's tensor bytes, without a copy: burn drops it (and so unmaps it)
    /// with the tensor.
    pub(crate) fn into_bytes(self) -> Bytes {
        let len = self.len;
        // SAFETY: every one of the `len` bytes of the mapping is initialised.
        #[allow(unsafe_code)]
        unsafe {
            Bytes::from_controller(Box::new(self), len)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping `zeroed` made, unmapped only here, once.
        #[cfg(unix)]
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl AllocationController for Mapping {
    fn alloc_align(&self) -> usize {
        ALIGN
    }

    fn property(&self) -> AllocationProperty {
        AllocationProperty::Native
    }

    fn memory(&self, _policy: AccessPolicy) -> Result<&[MaybeUninit<u8>], AccessError> {
        // SAFETY: `len` bytes mapped and readable; viewing initialised bytes as `MaybeUninit`
        // is always valid.
        #[allow(unsafe_code)]
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) })
    }

    #[allow(unsafe_code)]
    unsafe fn memory_mut(
        &mut self,
        _policy: AccessPolicy,
    ) -> Result<&mut [MaybeUninit<u8>], AccessError> {
        // SAFETY: as in `memory`; `&mut self` makes this the only reference, and the caller
        // writes only initialised bytes (the trait's contract).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(any(miri, not(unix)), ignore = "no mappings there")]
    fn a_mapping_is_zeroed_aligned_and_becomes_burn_bytes_without_a_copy() {
        let mut m = Mapping::zeroed(3 << 20).unwrap();
        assert!(m.bytes().iter().all(|&b| b == 0));
        assert_eq!(m.bytes().as_ptr() as usize % 4096, 0);
        m.bytes_mut()[5] = 7;
        let at = m.bytes().as_ptr();
        let bytes = m.into_bytes();
        assert_eq!(bytes.len(), 3 << 20);
        assert_eq!(bytes[5], 7);
        assert_eq!(bytes.as_ptr(), at, "handed over, not copied");
        // A clone is the allocator's copy; the original still unmaps on drop.
        let copy = bytes.clone();
        assert_eq!(&copy[..], &bytes[..]);
        drop(bytes);
        assert_eq!(copy[5], 7);
        // burn's `try_into_vec` (which cannot take the mapping as a `Vec`) copies instead.
        let mut m = Mapping::zeroed(1 << 20).unwrap();
        m.bytes_mut()[..4].copy_from_slice(&1.5f32.to_le_bytes());
        let data = burn::tensor::TensorData::from_bytes(
            m.into_bytes(),
            vec![1 << 18],
            burn::tensor::DType::F32,
        );
        let values = data.try_into_vec::<f32>().unwrap();
        assert_eq!((values.len(), values[0], values[1]), (1 << 18, 1.5, 0.0));
    }
}
