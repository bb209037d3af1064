//! Random access to a checkpoint's bytes, wherever they are: the trait the format readers read
//! through, and its local-file implementation (remote ones live beside their scheme).

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
}

/// A local file, opened once; each read seeks then reads.
pub(crate) struct LocalFile {
    file: std::sync::Mutex<std::fs::File>,
    len: u64,
}

impl LocalFile {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file: std::sync::Mutex::new(file),
            len,
        })
    }
}

impl ByteSource for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("a reader of this file panicked"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }
}
