//! Random access to a checkpoint's bytes, wherever they are: the trait the format readers read
//! through, and its local-file implementation, a read-only memory map (remote ones live beside
//! their scheme).

use std::io;
use std::path::Path;

/// Random access to a checkpoint's bytes: a local file, or a remote one read by byte ranges
/// (see [`Pretrain::with_ranged`](crate::spec::Pretrain::with_ranged)).
pub(crate) trait ByteSource: Send + Sync {
    /// The size in bytes.
    fn len(&self) -> u64;
    /// `len` bytes from `offset` on (all of them, or an error).
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// How many unwanted bytes between two wanted ranges are worth reading to save a read:
    /// a round trip's worth for a remote file; 0 (a local file) reads tensor by tensor.
    fn gap_worth_reading(&self) -> u64 {
        0
    }
    /// The whole source as one slice, when it is memory-mapped: tensors are then converted
    /// straight from the file's pages into the buffers the model keeps (one copy).
    fn mapped(&self) -> Option<&Mapped> {
        None
    }
}

/// A local file, memory-mapped read-only once for all its tensors.
///
/// Mapped pages that were read count in the process's resident set until they are
/// [released](Self::release); the reader releases each range as soon as it has copied it,
/// so a load holds about one copy of what it loads, not two.
pub(crate) struct Mapped {
    map: memmap2::Mmap,
    /// The same file, for positional reads straight into a buffer.
    file: std::fs::File,
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped")
            .field("len", &self.map.len())
            .finish()
    }
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and private to this reader; its bytes are only ever
        // read. The one hazard of every file mapping (safetensors' and `torch.load(mmap=True)`
        // share it) is another process truncating the file while it is mapped, which turns a
        // read of the lost pages into SIGBUS; the loader's own cache never rewrites a file in
        // place (it renames complete files into place).
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Self { map, file })
    }

    /// Fill `buffer` with the file's bytes from `offset` on by a positional read: the kernel
    /// copies them from its page cache straight into `buffer`, with no mapping to set up and
    /// tear down — the cheapest way for bytes that need no conversion.
    pub(crate) fn read_into(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .read_exact_at(buffer, offset)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "bytes {offset}..{} lie past the end of the file (it shrank?)",
                            offset + buffer.len() as u64
                        ),
                    ),
                    _ => e,
                })
        }
        #[cfg(not(unix))]
        {
            buffer.copy_from_slice(self.slice(offset, buffer.len())?);
            Ok(())
        }
    }

    /// [`read_into`](Self::read_into) for memory not yet written (a fresh allocation's spare
    /// capacity): the kernel's positional reads fill it, with no zeroing pass first. Returns
    /// the bytes, every one of them read from the file.
    pub(crate) fn read_into_uninit<'b>(
        &self,
        offset: u64,
        buffer: &'b mut [std::mem::MaybeUninit<u8>],
    ) -> io::Result<&'b mut [u8]> {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            let len = buffer.len();
            let past_end = || {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {offset}..{} lie past the end of the file (it shrank?)",
                        offset + len as u64
                    ),
                )
            };
            let mut done = 0;
            while done < len {
                let at = libc::off_t::try_from(offset + done as u64).map_err(|_| past_end())?;
                // SAFETY: `buffer[done..]` is memory this call borrows mutably and `pread`
                // writes at most `len - done` bytes into it; it never reads it, so its being
                // uninitialised is fine. The file descriptor is ours and open.
                #[allow(unsafe_code)]
                let n = unsafe {
                    libc::pread(
                        self.file.as_raw_fd(),
                        buffer[done..].as_mut_ptr().cast(),
                        len - done,
                        at,
                    )
                };
                match n {
                    0 => return Err(past_end()),
                    n if n < 0 => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                    n => done += n as usize,
                }
            }
            // SAFETY: the loop above wrote every byte of `buffer` (it only ends when `done`
            // reaches `len`), so all of it is initialised `u8`s.
            #[allow(unsafe_code)]
            Ok(unsafe { &mut *(std::ptr::from_mut(buffer) as *mut [u8]) })
        }
        #[cfg(not(unix))]
        {
            let bytes = self.slice(offset, buffer.len())?;
            for (dst, src) in buffer.iter_mut().zip(bytes) {
                dst.write(*src);
            }
            // SAFETY: every byte was written just above.
            #[allow(unsafe_code)]
            Ok(unsafe { &mut *(std::ptr::from_mut(buffer) as *mut [u8]) })
        }
    }

    /// The bytes `offset..offset + len`, or an error naming the range if the file is shorter.
    pub(crate) fn slice(&self, offset: u64, len: usize) -> io::Result<&[u8]> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .and_then(|range| self.map.get(range))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {offset}..{} lie past the end of the {}-byte file",
                        offset.saturating_add(len as u64),
                        self.map.len()
                    ),
                )
            })
    }

    /// Done with `offset..offset + len`: the whole pages inside it may leave this process's
    /// resident set (they stay in the page cache; reading them again maps them again). Pages
    /// shared with a neighbour stay, and so do ranges under 64 KiB: each release costs a TLB
    /// flush on every core the process runs on, which for small tensors costs more time than
    /// their pages are worth (their bytes are a sliver of a checkpoint's).
    pub(crate) fn release(&self, offset: u64, len: usize) {
        const PAGE: usize = 4096;
        const WORTH: usize = 64 << 10;
        #[cfg(target_os = "linux")]
        if let Ok(start) = usize::try_from(offset)
            && let Some(end) = start.checked_add(len)
            && end <= self.map.len()
            && len >= WORTH
        {
            let first = start.next_multiple_of(PAGE);
            let last = end / PAGE * PAGE;
            if last > first {
                // SAFETY: MADV_DONTNEED on a read-only shared file mapping only drops this
                // process's page table entries: a later read faults the same file bytes back
                // in, so no slice handed out can see other contents. Failure changes nothing.
                #[allow(unsafe_code)]
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len, PAGE, WORTH);
    }
}

impl ByteSource for Mapped {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        // Bounds first (a damaged header must not allocate), then one positional read: the
        // mapping's pages are never touched, so there is nothing to release.
        self.slice(offset, len)?;
        let mut bytes = vec![0; len];
        self.read_into(offset, &mut bytes)?;
        Ok(bytes)
    }

    fn mapped(&self) -> Option<&Mapped> {
        Some(self)
    }
}

/// `Read + Seek` over a [`ByteSource`], for parsers that want a stream (the zip crate reading
/// a remote archive's directory): reads whole blocks and keeps them, so the many small reads
/// of a directory cost a few requests.
pub(crate) struct BlockReader<'a> {
    source: &'a dyn ByteSource,
    position: u64,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
}

impl<'a> BlockReader<'a> {
    /// Bytes per block: one request's worth (a zip directory has ~100 bytes per entry).
    const BLOCK: u64 = 16 << 10;
    /// Blocks kept at most (4 MiB); all are forgotten beyond.
    const KEPT: usize = 256;

    pub(crate) fn new(source: &'a dyn ByteSource) -> Self {
        Self {
            source,
            position: 0,
            blocks: std::collections::HashMap::new(),
        }
    }

    fn block(&mut self, index: u64) -> io::Result<&[u8]> {
        if !self.blocks.contains_key(&index) {
            if self.blocks.len() >= Self::KEPT {
                self.blocks.clear();
            }
            let start = index * Self::BLOCK;
            let len = Self::BLOCK.min(self.source.len().saturating_sub(start));
            let bytes = self.source.read_at(start, len as usize)?;
            self.blocks.insert(index, bytes);
        }
        Ok(self
            .blocks
            .get(&index)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }
}

impl io::Read for BlockReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.source.len() || buf.is_empty() {
            return Ok(0);
        }
        let index = self.position / Self::BLOCK;
        let within = (self.position % Self::BLOCK) as usize;
        let block = self.block(index)?;
        let n = buf.len().min(block.len().saturating_sub(within));
        buf[..n].copy_from_slice(&block[within..within + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl io::Seek for BlockReader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.source.len().checked_add_signed(d),
            io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

/// Requests in flight at once to one remote file: enough to hide round trips, few enough
/// not to be throttled.
pub(crate) const CONCURRENT_READS: usize = 8;

/// Read `ranges` (offset, length) of `source`, up to [`CONCURRENT_READS`] at a time for a remote
/// source (one at a time for a local one, which has nothing to wait for); results in the
/// order given.
pub(crate) fn read_ranges(
    source: &dyn ByteSource,
    ranges: &[(u64, usize)],
) -> Vec<io::Result<Vec<u8>>> {
    let workers = if source.gap_worth_reading() == 0 {
        1
    } else {
        CONCURRENT_READS
    };
    bounded_map(ranges, workers, |&(offset, len)| {
        source.read_at(offset, len)
    })
}

/// `f` of every item, on up to `workers` threads at once (items are taken in order as threads
/// free up); results in the order given. For waiting on many requests, not for computing.
pub(crate) fn bounded_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        break;
                    };
                    let result = f(item);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    // A worker that panicked has already propagated its panic out of the scope, so every
    // slot is filled here.
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| unreachable!("every item was mapped"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};
    use std::sync::Mutex;

    use super::*;

    /// An in-memory "remote" file that counts its reads.
    struct Memory {
        bytes: Vec<u8>,
        reads: Mutex<usize>,
    }

    impl ByteSource for Memory {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            *self.reads.lock().unwrap() += 1;
            let start = offset as usize;
            self.bytes
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
        }
        fn gap_worth_reading(&self) -> u64 {
            1
        }
    }

    fn memory(len: usize) -> Memory {
        Memory {
            bytes: (0..len).map(|i| (i * 7 % 253) as u8).collect(),
            reads: Mutex::new(0),
        }
    }

    #[test]
    fn block_reader_reads_and_seeks_across_blocks_with_few_requests() {
        let source = memory(40_000);
        let mut reader = BlockReader::new(&source);
        // From the end, as a zip reader starts, then across the first block boundary.
        reader.seek(SeekFrom::End(-100)).unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, source.bytes[39_900..]);
        reader.seek(SeekFrom::Start(16_000)).unwrap();
        let mut middle = vec![0; 1_000];
        reader.read_exact(&mut middle).unwrap();
        assert_eq!(middle, source.bytes[16_000..17_000]);
        // Blocks 2 (the tail), 0 and 1: three requests, none repeated.
        reader.seek(SeekFrom::Start(16_100)).unwrap();
        reader.read_exact(&mut middle).unwrap();
        assert_eq!(*source.reads.lock().unwrap(), 3);
        assert!(reader.seek(SeekFrom::Current(-20_000)).is_err());
    }

    #[test]
    fn ranges_come_back_in_order_whatever_finishes_first() {
        let source = memory(10_000);
        let ranges: Vec<(u64, usize)> = (0..50).map(|i| (i * 150, 100 + i as usize)).collect();
        let read = read_ranges(&source, &ranges);
        for ((offset, len), bytes) in ranges.iter().zip(read) {
            let start = *offset as usize;
            assert_eq!(bytes.unwrap(), source.bytes[start..start + len]);
        }
        assert_eq!(*source.reads.lock().unwrap(), 50);
        // A failing range fails alone.
        let read = read_ranges(&source, &[(9_990, 100), (0, 10)]);
        assert!(read[0].is_err() && read[1].is_ok());
    }
}
