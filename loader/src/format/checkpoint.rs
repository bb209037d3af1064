//! The inspection API: a [`Checkpoint`] as stored (format, convention, ordered
//! [`TensorEntry`]s with lazy bytes), opened by content from a file or a byte source.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Convention, DType, Format, burnpack, pytorch, safetensors, sharded, sniff};
use crate::error::{Error, Result};
use crate::source::bytes::ByteSource;

type ReadFn = dyn Fn() -> io::Result<Vec<u8>> + Send + Sync;

/// One tensor of a checkpoint: its metadata now, its bytes on demand.
#[derive(Clone)]
pub struct TensorEntry {
    pub(super) key: String,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) file: Arc<Path>,
    pub(super) read: Arc<ReadFn>,
    /// Where the bytes lie, when they are one byte range of a [`ByteSource`] (safetensors):
    /// lets [`batch::read_many`] read neighbours in one go.
    pub(super) span: Option<Span>,
}

/// One byte range of a [`ByteSource`].
#[derive(Clone)]
pub(crate) struct Span {
    pub source: Arc<dyn ByteSource>,
    pub offset: u64,
    pub len: usize,
    /// The CRC-32 the range must have, when the file records one for exactly these bytes
    /// (a PyTorch zip storage that one tensor spans whole).
    pub crc32: Option<u32>,
}

impl Span {
    /// `Ok` if `bytes` (this range's) match the recorded CRC-32, or none is recorded.
    pub(crate) fn verify(&self, bytes: &[u8]) -> io::Result<()> {
        match self.crc32 {
            Some(expected) => crc32_matches(bytes, expected),
            None => Ok(()),
        }
    }
}

/// The CRC-32 of consecutive pieces, each hashed on its own (in parallel), in order.
pub(crate) fn combined_crc32(pieces: impl IntoIterator<Item = crc32fast::Hasher>) -> u32 {
    let mut whole = crc32fast::Hasher::new();
    for piece in pieces {
        whole.combine(&piece);
    }
    whole.finalize()
}

/// `Ok` if `found` is the CRC-32 the archive records, else the damaged-file error.
pub(crate) fn crc32_is(found: u32, expected: u32) -> io::Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "checksum mismatch: the storage's bytes have CRC-32 {found:#010x}, the archive records {expected:#010x} (damaged file)"
        ),
    ))
}

/// Check that `bytes` have the CRC-32 `expected`, computed in parallel 4 MiB pieces.
pub(crate) fn crc32_matches(bytes: &[u8], expected: u32) -> io::Result<()> {
    use rayon::prelude::*;
    let pieces: Vec<crc32fast::Hasher> = bytes
        .par_chunks(4 << 20)
        .map(|piece| {
            let mut h = crc32fast::Hasher::new();
            h.update(piece);
            h
        })
        .collect();
    crc32_is(combined_crc32(pieces), expected)
}

impl TensorEntry {
    pub(crate) fn new(
        key: String,
        shape: Vec<usize>,
        dtype: DType,
        read: impl Fn() -> io::Result<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            key,
            shape,
            dtype,
            file: Arc::from(Path::new("")),
            read: Arc::new(read),
            span: None,
        }
    }

    /// A tensor the view computes from stored ones (a folded weight norm): `read` makes its
    /// bytes; `file` is the file its inputs are in, for messages and the unchanged check.
    pub(crate) fn derived(
        key: String,
        shape: Vec<usize>,
        dtype: DType,
        file: &Path,
        read: impl Fn() -> io::Result<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        let mut entry = Self::new(key, shape, dtype, read);
        entry.file = Arc::from(file);
        entry
    }

    /// A tensor whose bytes are `len` bytes at `offset` of `source`, with the CRC-32 they
    /// must have when the file records one for exactly them.
    pub(crate) fn in_span(
        key: String,
        shape: Vec<usize>,
        dtype: DType,
        source: Arc<dyn ByteSource>,
        (offset, len): (u64, usize),
        crc32: Option<u32>,
    ) -> Self {
        let span = Span {
            source,
            offset,
            len,
            crc32,
        };
        let read_span = span.clone();
        let mut entry = Self::new(key, shape, dtype, move || {
            let bytes = read_span.source.read_at(read_span.offset, read_span.len)?;
            read_span.verify(&bytes)?;
            Ok(bytes)
        });
        entry.span = Some(span);
        entry
    }

    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_ref()
    }

    /// Where the tensor's bytes lie in [`file`](Self::file), when they are one contiguous
    /// run read as stored: every safetensors tensor, and a PyTorch zip tensor that is a
    /// contiguous view of an uncompressed storage. `None` where reading gathers or
    /// decompresses (a transposed view, a legacy or TAR checkpoint, burnpack).
    pub fn byte_range(&self) -> Option<std::ops::Range<u64>> {
        self.span
            .as_ref()
            .map(|s| s.offset..s.offset + s.len as u64)
    }

    /// The file the bytes are in (a shard's, for a sharded checkpoint).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The key as stored in the file.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Extents, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The bytes the tensor's shape and dtype add up to, or an error where that overflows
    /// (a damaged header: the loaders size their buffers and transposes from the shape).
    pub(crate) fn byte_len(&self) -> io::Result<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a shape of {:?} {} elements overflows memory",
                        self.shape, self.dtype
                    ),
                )
            })
    }

    /// Read the tensor's bytes: contiguous, row-major, little-endian.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        self.checked((self.read)()?)
    }

    /// `bytes` if they are as many as the tensor needs and, for a bool tensor, each 0 or 1
    /// (burn's conversion panics on anything else, and a "bool" of 7 is a damaged file).
    pub(crate) fn checked(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        self.check(&bytes)?;
        Ok(bytes)
    }

    /// [`checked`](Self::checked) for bytes the caller keeps.
    pub(crate) fn check(&self, bytes: &[u8]) -> io::Result<()> {
        let expected = self.byte_len()?;
        if bytes.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected {expected} bytes, got {}", bytes.len()),
            ));
        }
        if self.dtype == DType::Bool
            && let Some((at, byte)) = bytes.iter().enumerate().find(|(_, b)| **b > 1)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a bool tensor holds byte {byte:#04x} at element {at}; booleans are 0 or 1"
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for TensorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorEntry")
            .field("key", &self.key)
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

/// A checkpoint as stored: its format and its tensors, keys exactly as in the file.
#[derive(Clone)]
pub struct Checkpoint {
    pub(super) path: PathBuf,
    pub(super) format: Format,
    pub(super) convention: Convention,
    pub(super) entries: Vec<TensorEntry>,
    /// Key → position in `entries`.
    pub(super) by_key: std::collections::HashMap<String, usize>,
    /// The shard files, for a checkpoint opened from an `*.index.json`; empty otherwise.
    pub(super) shards: Vec<PathBuf>,
    /// What the file says about itself (a burn record's metadata).
    pub(super) metadata: Vec<(String, String)>,
    /// Keys are positions (`#0`, `#1`, …), named by a model at load time (a bincode record).
    pub(super) positional: bool,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("convention", &self.convention)
            .field("entries", &self.entries)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// What a local file turned out to be.
#[derive(Debug)]
pub(crate) enum Opened {
    /// A checkpoint file.
    Tensors(Checkpoint),
    /// A shard index, whose shards are still to be opened.
    Index(sharded::ShardIndex),
}

impl Checkpoint {
    /// Open a local file, recognising its format from its first bytes. Reads headers only.
    ///
    /// A shard index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) opens
    /// the shards beside it as one checkpoint.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match Self::open_file(path)? {
            Opened::Tensors(checkpoint) => Ok(checkpoint),
            Opened::Index(index) => sharded::merge(path, &index, |name| {
                Self::open_file(&sharded::local_shard(path, name))?.into_shard(path, name)
            }),
        }
    }

    /// Open one local file: a checkpoint, or a shard index left for the caller to resolve.
    pub(crate) fn open_file(path: &Path) -> Result<Opened> {
        let format = match sniff::detect(path)? {
            sniff::Sniffed::Format(format) => format,
            sniff::Sniffed::Json => {
                let text = std::fs::read(path).map_err(|source| Error::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
                return sharded::ShardIndex::parse(&text, path).map(Opened::Index);
            }
        };
        let (entries, convention) = match format {
            Format::PytorchZip | Format::PytorchLegacy | Format::PytorchTar => {
                (pytorch::open(path, format)?, Convention::Pytorch)
            }
            Format::Safetensors => safetensors::open(path)?,
            Format::Burnpack => burnpack::open(path)?,
            Format::BurnRecord => {
                let record = super::burn_record::open(path)?;
                let mut checkpoint =
                    Self::from_parts(path, format, Convention::Burn, record.entries)?;
                checkpoint.metadata = record.metadata;
                checkpoint.positional = record.positional;
                return Ok(Opened::Tensors(checkpoint));
            }
        };
        Self::from_parts(path, format, convention, entries).map(Opened::Tensors)
    }

    /// Open a file through `source` (a remote file read by byte ranges; `shown` names it):
    /// a safetensors checkpoint, a PyTorch zip checkpoint of stored contiguous tensors, or a
    /// shard index. `Ok(None)` for what needs the whole file on disk (legacy and TAR
    /// PyTorch files, a zip with compressed or strided storages, burnpack).
    pub(crate) fn open_source(shown: &Path, source: Arc<dyn ByteSource>) -> Result<Option<Opened>> {
        /// An index larger than this is not an index.
        const MAX_INDEX: u64 = 64 << 20;
        let read_err = |e: io::Error| Error::Open {
            path: shown.to_path_buf(),
            source: e,
        };
        let len = source.len();
        if len == 0 {
            return Err(Error::Empty {
                path: shown.to_path_buf(),
            });
        }
        let head = source
            .read_at(0, len.min(sniff::HEAD) as usize)
            .map_err(read_err)?;
        match sniff::classify(&head) {
            Ok(Format::Safetensors) => {
                let (entries, convention) = safetensors::open_source(shown, source)?;
                Self::from_parts(shown, Format::Safetensors, convention, entries)
                    .map(|c| Some(Opened::Tensors(c)))
            }
            Ok(Format::PytorchZip) => match pytorch::open_source(shown, source)? {
                Some(entries) => {
                    Self::from_parts(shown, Format::PytorchZip, Convention::Pytorch, entries)
                        .map(|c| Some(Opened::Tensors(c)))
                }
                None => Ok(None),
            },
            Ok(_) => Ok(None),
            Err(_) if head.trim_ascii_start().starts_with(b"{") && len <= MAX_INDEX => {
                let text = source.read_at(0, len as usize).map_err(read_err)?;
                sharded::ShardIndex::parse(&text, shown).map(|i| Some(Opened::Index(i)))
            }
            Err(found) => Err(Error::UnknownFormat {
                path: shown.to_path_buf(),
                found,
            }),
        }
    }

    /// The checkpoint of `path` from its parsed entries.
    fn from_parts(
        path: &Path,
        format: Format,
        convention: Convention,
        mut entries: Vec<TensorEntry>,
    ) -> Result<Self> {
        if entries.is_empty() {
            return Err(Error::NoTensors {
                path: path.to_path_buf(),
            });
        }
        if !matches!(format, Format::Safetensors) {
            // pytorch-reader and burn-pack hand tensors back unordered or alphabetical;
            // a natural order (layer2 before layer10) reads best in reports.
            entries.sort_by(|a, b| natural_cmp(&a.key, &b.key));
        }
        let file: Arc<Path> = Arc::from(path);
        for entry in &mut entries {
            entry.file = file.clone();
        }
        Ok(Self::assemble(
            path.to_path_buf(),
            format,
            convention,
            entries,
            Vec::new(),
        ))
    }

    /// The checkpoint of these parts, with its key index.
    pub(crate) fn assemble(
        path: PathBuf,
        format: Format,
        convention: Convention,
        entries: Vec<TensorEntry>,
        shards: Vec<PathBuf>,
    ) -> Self {
        let by_key = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        Self {
            path,
            format,
            convention,
            entries,
            by_key,
            shards,
            metadata: Vec::new(),
            positional: false,
        }
    }

    /// A checkpoint from entries already in hand (tests, other sources).
    #[cfg(test)]
    pub(crate) fn from_entries(path: &str, format: Format, entries: Vec<TensorEntry>) -> Self {
        let file: Arc<Path> = Arc::from(Path::new(path));
        let entries = entries
            .into_iter()
            .map(|mut e| {
                e.file = file.clone();
                e
            })
            .collect();
        Self::assemble(
            path.into(),
            format,
            format.convention(),
            entries,
            Vec::new(),
        )
    }

    /// What the file says about itself besides its tensors: a burn record's `float`, `int`,
    /// `format`, `version` and `settings`; empty for other formats.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Whether the tensors have no names, only positions (`#0`, `#1`, …, in the order they
    /// were written): a bincode burn record. A load names them by the model's parameters.
    pub fn is_positional(&self) -> bool {
        self.positional
    }

    /// Name a positional checkpoint's tensors by `names` (each with its shape), in order: the
    /// `i`-th tensor becomes `names[i]`. The counts and every shape must agree, or nothing is
    /// renamed and the error names the first difference.
    pub(crate) fn name_by_position(&mut self, names: &[(String, Vec<usize>)]) -> Result<()> {
        let fail = |detail: String| Error::Positional {
            path: self.path.clone(),
            detail,
        };
        let mut renamed = self.entries.clone();
        renamed.sort_by_key(|e| {
            e.key
                .strip_prefix('#')
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        if renamed.len() != names.len() {
            return Err(fail(format!(
                "it holds {} tensors where the model has {}",
                renamed.len(),
                names.len()
            )));
        }
        for (entry, (name, shape)) in renamed.iter_mut().zip(names) {
            if &entry.shape != shape {
                return Err(fail(format!(
                    "tensor {} {:?} is not the model's `{name}` {shape:?}",
                    entry.key, entry.shape
                )));
            }
            entry.key = name.clone();
        }
        let by_key = renamed
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        self.entries = renamed;
        self.by_key = by_key;
        self.positional = false;
        Ok(())
    }

    /// The file this checkpoint was read from (the index, for a sharded checkpoint).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shard files of a checkpoint opened from an `*.index.json`, in index order; empty
    /// for a single-file checkpoint.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// The detected format (the shards', for a sharded checkpoint).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The naming convention the tensors follow (burnpack and burn-written safetensors:
    /// [`Convention::Burn`]; everything else [`Convention::Pytorch`]).
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// The tensors, in file order (safetensors) or natural key order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    /// Look a tensor up by its stored key.
    pub fn get(&self, key: &str) -> Option<&TensorEntry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    /// `Ok` when every local file this checkpoint reads by positional reads still has the size
    /// and modification time it had when opened; else [`Error::Changed`] naming it. Ask it
    /// after reading tensors and before using them: a file truncated or rewritten in place
    /// meanwhile may have handed out a mix of old and new bytes.
    pub fn unchanged(&self) -> crate::error::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.entries {
            if let Some(file) = entry.span().and_then(|s| s.source.local())
                && seen.insert(std::ptr::from_ref(file) as usize)
            {
                file.unchanged()
                    .map_err(|source| crate::error::Error::Changed {
                        path: file.path().to_path_buf(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}

/// Compare keys so that numeric segments sort by value: `layer2` < `layer10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let mut a = a.as_bytes();
    let mut b = b.as_bytes();
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros.min(digits.len().saturating_sub(1))..]
}

#[cfg(test)]
mod tests {
    use super::{DType, TensorEntry, natural_cmp};

    #[test]
    fn a_shape_whose_size_overflows_is_an_error_not_a_wrapped_length() {
        // 2^62 × 8 f32 elements wrap to 0 bytes in `usize`: empty data must not pass for them
        // (the loaders size buffers and transposes from the shape).
        let entry = TensorEntry::new("w".into(), vec![1 << 62, 8], DType::F32, || Ok(vec![]));
        let err = entry.check(&[]).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        assert!(entry.read().is_err());
        let fine = TensorEntry::new("w".into(), vec![2, 3], DType::F32, || Ok(vec![0; 24]));
        assert_eq!(fine.byte_len().unwrap(), 24);
        assert_eq!(fine.read().unwrap().len(), 24);
    }

    #[test]
    fn natural_order_sorts_numbers_by_value() {
        let mut keys = vec!["layer10.w", "layer2.w", "layer1.w", "fc.b", "layer2.b"];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            keys,
            ["fc.b", "layer1.w", "layer2.b", "layer2.w", "layer10.w"]
        );
    }
}
