//! Random access to a checkpoint's bytes, wherever they are: the trait the format readers read
//! through, and its local-file implementation, positional reads of an open file (remote ones
//! live beside their scheme).
//!
//! A local file is read, never memory-mapped: a mapped file that another process truncates
//! while it is loaded turns the next read of a lost page into `SIGBUS`, which kills the process
//! (safetensors' `mmap` and `torch.load(mmap=True)` share the hazard). A positional read of a
//! shrunk file comes back short and becomes an error naming the range; a file rewritten in
//! place is caught by [`LocalFile::unchanged`], asked after every tensor is read and before
//! the model is touched.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::layout::{MappedRange, Mapping};

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
    /// The open local file, when the source is one: tensors are then read by positional reads
    /// straight into the buffers the model keeps (one copy), in parallel.
    fn local(&self) -> Option<&LocalFile> {
        None
    }
}

/// What identifies a file's content without reading it: its size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// A local file, open once for all its tensors and read by positional reads: the kernel copies
/// the bytes from its page cache straight into the caller's buffer, and no read can fault.
pub(crate) struct LocalFile {
    file: std::fs::File,
    path: PathBuf,
    /// Size and modification time when it was opened: every range is checked against that
    /// size, and [`unchanged`](Self::unchanged) against both.
    opened: Stamp,
    /// The file's mapping while tensors of it live (the `mmap` option), and the ranges handed out.
    mapping: Mutex<FileMapping>,
}

/// A file's one copy-on-write mapping, held by the tensors mapped from it (a weak reference
/// here: it goes with the last of them), and the ranges handed out of it, start → end, which
/// must never overlap: two tensors over the same bytes would write into each other.
#[derive(Default)]
struct FileMapping {
    map: Weak<Mapping>,
    ranges: BTreeMap<u64, u64>,
}

impl std::fmt::Debug for LocalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFile")
            .field("path", &self.path)
            .field("len", &self.opened.len)
            .finish()
    }
}

impl LocalFile {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let opened = Stamp::of(&file.metadata()?);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            opened,
            mapping: Mutex::default(),
        })
    }

    /// A file already open (a temporary one: a decompressed record), named `path` in errors.
    pub(crate) fn from_file(file: std::fs::File, path: &Path) -> io::Result<Self> {
        let opened = Stamp::of(&file.metadata()?);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            opened,
            mapping: Mutex::default(),
        })
    }

    /// Another handle of the open file, at its start, for reading it in order.
    pub(crate) fn reopen(&self) -> io::Result<std::fs::File> {
        use std::io::Seek;
        let mut file = self.file.try_clone()?;
        file.seek(io::SeekFrom::Start(0))?;
        Ok(file)
    }

    /// The file as opened.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` when the open file still has the size and modification time it had when opened;
    /// else an error saying what changed. A file replaced by a rename is not changed: the open
    /// descriptor still reads the file that was opened.
    pub(crate) fn unchanged(&self) -> io::Result<()> {
        let now = Stamp::of(&self.file.metadata()?);
        if now == self.opened {
            return Ok(());
        }
        let what = if now.len != self.opened.len {
            format!("{} bytes when opened, {} now", self.opened.len, now.len)
        } else {
            "its modification time moved".to_string()
        };
        Err(io::Error::other(format!(
            "the file changed while it was read ({what}); nothing read from it is used"
        )))
    }

    /// The error of a range that is not inside the file as opened, or that the file no longer
    /// holds (it shrank).
    fn past_end(&self, offset: u64, len: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "bytes {offset}..{} lie past the end of the file ({} bytes when opened; it shrank?)",
                offset.saturating_add(len as u64),
                self.opened.len
            ),
        )
    }

    /// Refuse a range outside the file as opened (a damaged header must not allocate).
    fn check_range(&self, offset: u64, len: usize) -> io::Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.opened.len => Ok(()),
            _ => Err(self.past_end(offset, len)),
        }
    }

    /// Fill `buffer` with the file's bytes from `offset` on by positional reads.
    pub(crate) fn read_into(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        let len = buffer.len();
        self.check_range(offset, len)?;
        let eof = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.past_end(offset, len),
            _ => e,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buffer, offset).map_err(eof)
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::FileExt;
            let mut done = 0;
            while done < buffer.len() {
                match self
                    .file
                    .seek_read(&mut buffer[done..], offset + done as u64)
                {
                    Ok(0) => return Err(eof(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }

    /// The range as a tensor's bytes inside the file's copy-on-write mapping (the `mmap`
    /// option: no read, no copy; the file's pages are the tensor's until it writes to them;
    /// the file is mapped once, when its first range is asked for), or `None` where it cannot
    /// be: the system refuses, the range's start is not aligned to `align` bytes, or it overlaps
    /// a range already handed out (a tensor sharing another's storage, or the same checkpoint
    /// loaded again while the first model lives). The caller then reads it. Refused, like a
    /// read, for a range outside the file or a file that changed since it was opened (mapping
    /// pages past a shrunk end would fault on access).
    pub(crate) fn mapped(
        &self,
        offset: u64,
        len: usize,
        align: usize,
    ) -> io::Result<Option<MappedRange>> {
        self.check_range(offset, len)?;
        let end = offset + len as u64;
        let Ok(mut state) = self.mapping.lock() else {
            return Ok(None);
        };
        let map = match state.map.upgrade() {
            Some(map) => map,
            None => {
                // Every tensor of an earlier mapping is gone, and its ranges with them. A file
                // that shrank since it was opened is refused before its pages are mapped; once
                // mapped, the size is asked again with every read's (`unchanged`, after all).
                state.ranges.clear();
                self.unchanged()?;
                let Some(map) = usize::try_from(self.opened.len)
                    .ok()
                    .and_then(|file_len| Mapping::of_file(&self.file, file_len))
                else {
                    return Ok(None);
                };
                let map = Arc::new(map);
                state.map = Arc::downgrade(&map);
                map
            }
        };
        // The range starting last before `end` is the only one that can overlap.
        if let Some((_, &taken_end)) = state.ranges.range(..end).next_back()
            && taken_end > offset
        {
            return Ok(None);
        }
        let Some(range) = usize::try_from(offset)
            .ok()
            .and_then(|start| MappedRange::new(map, start, len))
            .filter(|range| range.align() >= align)
        else {
            return Ok(None);
        };
        state.ranges.insert(offset, end);
        Ok(Some(range))
    }

    /// [`read_into`](Self::read_into) for memory not yet written (a fresh allocation's spare
    /// capacity): the kernel's positional reads fill it, with no zeroing pass first. Returns
    /// the bytes, every one of them read from the file.
    pub(crate) fn read_into_uninit<'b>(
        &self,
        offset: u64,
        buffer: &'b mut [std::mem::MaybeUninit<u8>],
    ) -> io::Result<&'b mut [u8]> {
        self.check_range(offset, buffer.len())?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            let len = buffer.len();
            let mut done = 0;
            while done < len {
                let at = libc::off_t::try_from(offset + done as u64)
                    .map_err(|_| self.past_end(offset, len))?;
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
                    0 => return Err(self.past_end(offset, len)),
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
            for byte in buffer.iter_mut() {
                byte.write(0);
            }
            // SAFETY: every byte was written just above.
            #[allow(unsafe_code)]
            let bytes = unsafe { &mut *(std::ptr::from_mut(buffer) as *mut [u8]) };
            self.read_into(offset, bytes)?;
            Ok(bytes)
        }
    }
}

impl ByteSource for LocalFile {
    fn len(&self) -> u64 {
        self.opened.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        // Bounds first (a damaged header must not allocate), then one positional read.
        self.check_range(offset, len)?;
        let mut bytes = vec![0; len];
        self.read_into(offset, &mut bytes)?;
        Ok(bytes)
    }

    fn local(&self) -> Option<&LocalFile> {
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

    #[test]
    #[cfg_attr(any(miri, not(unix)), ignore = "no mappings there")]
    fn mapped_ranges_never_overlap_and_a_new_mapping_starts_afresh() {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..8_192).map(|i| (i % 249) as u8).collect();
        tmp.write_all(&content).unwrap();
        let file = LocalFile::open(tmp.path()).unwrap();
        let a = file.mapped(0, 4_096, 4).unwrap().unwrap();
        assert_eq!(a.bytes(), &content[..4_096]);
        // A range over bytes already handed out (a tensor sharing a storage) is read instead:
        // two tensors over one memory would write into each other.
        assert!(
            file.mapped(4_092, 8, 4).unwrap().is_none(),
            "overlaps the end of `a`"
        );
        assert!(file.mapped(0, 4, 4).unwrap().is_none(), "inside `a`");
        // Misaligned for its element type: read.
        assert!(file.mapped(4_098, 8, 4).unwrap().is_none());
        let b = file.mapped(4_096, 4_096, 4).unwrap().unwrap();
        assert_eq!(b.bytes(), &content[4_096..]);
        // Outside the file: the error a read would give.
        assert!(file.mapped(8_000, 200, 1).is_err());
        // Once every range is dropped, so is the mapping, and its ranges with it.
        drop((a, b));
        let again = file.mapped(0, 8_192, 8).unwrap().unwrap();
        assert_eq!(again.bytes(), &content[..]);
    }
}
