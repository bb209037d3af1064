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
//!
//! [`Mapping::of_file`] maps a whole checkpoint file instead (the `mmap` option), once per file: a
//! private, copy-on-write mapping of its pages, shared by the tensors taken from it as
//! [`MappedRange`]s (one mapping per file, not per tensor: a process has some 65,000 mappings in
//! all). A tensor *is* the page cache's copy until burn writes to it (then only the written
//! pages become the process's own); the file is never written, and the mapping goes with the
//! last of its tensors.

use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use burn_std::{AccessError, AccessPolicy, AllocationController, AllocationProperty, Bytes};

/// Buffers of at least this many bytes get a mapping of their own (glibc's own threshold before
/// it raises it); smaller ones stay with the allocator. With 1 MiB, ResNet-50's smaller tensors
/// still left 1.06–1.13× after 8 loads; with 128 KiB, 1.06–1.07× (a single load: 1.06×).
pub(crate) const MAPPED_AT_LEAST: usize = 128 << 10;

/// The alignment a mapping is reported with: every element type's, and the most burn's `Bytes`
/// allows, `u128`'s (a clone is allocated with it; a page-aligned mapping has far more).
const ALIGN: usize = align_of::<u128>();

/// A private mapping of `len` bytes from `ptr`, unmapped on drop: anonymous (zero-filled by
/// the kernel) or of a whole file.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned memory reached only through `&self` / `&mut self`, like a `Vec`.
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access (`&self`) only reads, except through the `MappedRange`s of
// one `Arc<Mapping>`, which write only their own, never overlapping, bytes (and nothing then
// takes `bytes()` of the whole mapping: it is reached through its ranges only).
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

    /// The whole of `file` (`len` > 0 bytes, its size), mapped copy-on-write: reading it reads
    /// the file's pages from the page cache, writing one gives the process its own copy of that
    /// page and never reaches the file. `None` where the system refuses (the caller reads
    /// instead). The file must then keep its size while the mapping lives (a page past a
    /// truncated end is a SIGBUS on access, as with every mapped file, PyTorch's `mmap=True`
    /// included).
    pub(crate) fn of_file(file: &std::fs::File, len: usize) -> Option<Self> {
        if len == 0 || cfg!(any(miri, not(unix))) {
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a private mapping of a file we hold open, at an address of the kernel's
            // choosing, touches no existing memory; the result is checked before use.
            #[allow(unsafe_code)]
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
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
        match MappedRange::new(Arc::new(self), 0, len) {
            Some(whole) => whole.into_bytes(),
            // `zeroed` and `of_file` make no empty mapping.
            None => Bytes::from_elems(Vec::<u8>::new()),
        }
    }
}

/// The largest power of two dividing `at`, up to [`ALIGN`]: the alignment burn is told bytes
/// start at (a page-aligned mapping has [`ALIGN`]; a file's tensor may start anywhere in a
/// page).
fn align_of_address(at: *const u8) -> usize {
    1 << (at as usize).trailing_zeros().min(ALIGN.trailing_zeros())
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping `zeroed` or `of_file` made, unmapped only here,
        // once.
        #[cfg(unix)]
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A tensor's bytes as burn holds them: a whole anonymous [`Mapping`], or a range of a file's
/// mapping shared with the other tensors of that file. Ranges handed out of one mapping never
/// overlap (the caller sees to it), so each is the only way to its bytes, as an owned buffer
/// is.
pub(crate) struct MappedRange {
    map: Arc<Mapping>,
    start: usize,
    len: usize,
}

impl MappedRange {
    /// `len` (> 0) bytes of `map` from `start`, `None` past its end.
    pub(crate) fn new(map: Arc<Mapping>, start: usize, len: usize) -> Option<Self> {
        (len > 0 && start.checked_add(len)? <= map.len).then_some(Self { map, start, len })
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: `start + len` ≤ the mapping's length (checked in `new`).
        #[allow(unsafe_code)]
        unsafe {
            self.map.ptr.as_ptr().add(self.start)
        }
    }

    /// The alignment the bytes start at (see [`align_of_address`]).
    pub(crate) fn align(&self) -> usize {
        align_of_address(self.ptr())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` mapped, readable bytes from `ptr` (a file's pages are initialised).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr(), self.len)
        }
    }

    /// The range as burn's tensor bytes, without a copy; the file's mapping goes when the last
    /// tensor of it is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        let len = self.len;
        // SAFETY: every one of the `len` bytes is initialised (a file's pages).
        #[allow(unsafe_code)]
        unsafe {
            Bytes::from_controller(Box::new(self), len)
        }
    }
}

impl std::fmt::Debug for MappedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MappedRange({}..{} of {:?})",
            self.start,
            self.start + self.len,
            self.map
        )
    }
}

impl AllocationController for MappedRange {
    fn alloc_align(&self) -> usize {
        self.align()
    }

    fn property(&self) -> AllocationProperty {
        AllocationProperty::Native
    }

    fn memory(&self, _policy: AccessPolicy) -> Result<&[MaybeUninit<u8>], AccessError> {
        // SAFETY: `len` mapped, readable bytes; initialised bytes viewed as `MaybeUninit`.
        #[allow(unsafe_code)]
        Ok(unsafe { std::slice::from_raw_parts(self.ptr().cast(), self.len) })
    }

    #[allow(unsafe_code)]
    unsafe fn memory_mut(
        &mut self,
        _policy: AccessPolicy,
    ) -> Result<&mut [MaybeUninit<u8>], AccessError> {
        // SAFETY: the mapping is writable (private, copy-on-write), no other range overlaps
        // this one, and `&mut self` makes this the only reference to it; the caller writes only
        // initialised bytes (the trait's contract).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr().cast(), self.len) })
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

    #[test]
    #[cfg_attr(any(miri, not(unix)), ignore = "no mappings there")]
    fn a_file_range_is_mapped_copy_on_write_and_the_file_never_changes() {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        file.write_all(&content).unwrap();
        let opened = std::fs::File::open(file.path()).unwrap();
        // A range starting inside a page, 4-byte aligned there, and one at a page boundary.
        for (offset, len, align) in [(4100usize, 8000usize, 4), (4096, 4096, 16), (1, 3, 1)] {
            let map = Arc::new(Mapping::of_file(&opened, content.len()).unwrap());
            let range = MappedRange::new(map, offset, len).unwrap();
            assert_eq!(range.bytes(), &content[offset..offset + len]);
            assert_eq!(range.align(), align);
            let mut bytes = range.into_bytes();
            bytes[0] ^= 0xff;
            assert_eq!(bytes[0], content[offset] ^ 0xff, "written in the process");
            assert_eq!(bytes.len(), len);
            drop(bytes);
        }
        assert_eq!(
            std::fs::read(file.path()).unwrap(),
            content,
            "the file is unchanged"
        );
    }

    #[test]
    #[cfg_attr(any(miri, not(unix)), ignore = "no mappings there")]
    fn ranges_share_one_file_mapping_that_goes_with_the_last() {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..10_000).map(|i| (i % 253) as u8).collect();
        file.write_all(&content).unwrap();
        let opened = std::fs::File::open(file.path()).unwrap();
        let map = Arc::new(Mapping::of_file(&opened, content.len()).unwrap());
        let weak = Arc::downgrade(&map);
        assert!(
            MappedRange::new(map.clone(), 9_000, 1_001).is_none(),
            "past the end"
        );
        let a = MappedRange::new(map.clone(), 8, 4_000).unwrap();
        let b = MappedRange::new(map, 4_008, 5_992).unwrap();
        assert_eq!(
            (a.bytes(), b.bytes()),
            (&content[8..4008], &content[4008..])
        );
        assert_eq!((a.align(), b.align()), (8, 8));
        let (mut a, b) = (a.into_bytes(), b.into_bytes());
        assert_eq!((&a[..], &b[..]), (&content[8..4008], &content[4008..]));
        // burn writing into a tensor's bytes: its own copy of the page, not the file's, and
        // not the neighbouring range's bytes in that page.
        a[3_999] ^= 0xff;
        assert_eq!(a[3_999], content[4_007] ^ 0xff);
        assert_eq!(&b[..], &content[4008..]);
        assert_eq!(
            std::fs::read(file.path()).unwrap(),
            content,
            "the file is unchanged"
        );
        drop(a);
        assert!(weak.upgrade().is_some(), "held by the other range");
        drop(b);
        assert!(weak.upgrade().is_none(), "unmapped with the last range");
    }
}
