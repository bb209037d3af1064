//! Formats: a file's bytes → an ordered list of tensors (key, shape, dtype, lazy bytes).
//!
//! The format is recognised from the content, never from the extension. Parsing itself is
//! left to the crates made for it: `pytorch-reader` (zip, legacy pickle, TAR), `safetensors`
//! and `burn-pack`. Opening reads headers only; a tensor's bytes are read when
//! [`TensorEntry::read`] is called. A sharded checkpoint (an `*.index.json` and its shard
//! files, see [`sharded`]) opens as one checkpoint.

pub(crate) mod batch;
mod burnpack;
mod pytorch;
mod safetensors;
pub(crate) mod sharded;
pub(crate) use safetensors::safetensors_dtype;
mod sniff;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};

/// The container a checkpoint was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// `torch.save` since PyTorch 1.6: a zip archive with `data.pkl`.
    PytorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: the pickle stream of PyTorch ≤ 1.5.
    PytorchLegacy,
    /// The TAR layout of PyTorch before 0.1.10.
    PytorchTar,
    /// Hugging Face safetensors.
    Safetensors,
    /// burn's own burnpack.
    Burnpack,
}

impl Format {
    /// The naming convention tensors of this format follow unless told otherwise.
    pub fn convention(self) -> Convention {
        match self {
            Format::Burnpack => Convention::Burn,
            _ => Convention::Pytorch,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::PytorchZip => "PyTorch zip",
            Format::PytorchLegacy => "PyTorch legacy",
            Format::PytorchTar => "PyTorch TAR",
            Format::Safetensors => "safetensors",
            Format::Burnpack => "burnpack",
        })
    }
}

/// How a checkpoint names and lays out layer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// PyTorch: Linear weight `[out, in]`, norms `weight`/`bias`, BatchNorm `num_batches_tracked`.
    Pytorch,
    /// burn: Linear weight `[in, out]`, norms `gamma`/`beta`.
    Burn,
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The same type as burn names it.
    pub fn to_burn_dtype(self) -> burn::tensor::DType {
        use burn::tensor::DType as B;
        match self {
            DType::F64 => B::F64,
            DType::F32 => B::F32,
            DType::F16 => B::F16,
            DType::BF16 => B::BF16,
            DType::I64 => B::I64,
            DType::I32 => B::I32,
            DType::I16 => B::I16,
            DType::I8 => B::I8,
            DType::U64 => B::U64,
            DType::U32 => B::U32,
            DType::U16 => B::U16,
            DType::U8 => B::U8,
            DType::Bool => B::Bool(burn::tensor::BoolStore::Native),
        }
    }

    pub(crate) fn from_burn(dtype: burn::tensor::DType) -> Option<Self> {
        use burn::tensor::DType as B;
        Some(match dtype {
            B::F64 => DType::F64,
            B::F32 | B::Flex32 => DType::F32,
            B::F16 => DType::F16,
            B::BF16 => DType::BF16,
            B::I64 => DType::I64,
            B::I32 => DType::I32,
            B::I16 => DType::I16,
            B::I8 => DType::I8,
            B::U64 => DType::U64,
            B::U32 => DType::U32,
            B::U16 => DType::U16,
            B::U8 => DType::U8,
            B::Bool(_) => DType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U64 => "u64",
            DType::U32 => "u32",
            DType::U16 => "u16",
            DType::U8 => "u8",
            DType::Bool => "bool",
        })
    }
}

type ReadFn = dyn Fn() -> io::Result<Vec<u8>> + Send + Sync;

/// Random access to a checkpoint's bytes: a local file, or a remote one read by byte ranges
/// (see [`Pretrain::with_ranged`](crate::Pretrain::with_ranged)).
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

/// One tensor of a checkpoint: its metadata now, its bytes on demand.
#[derive(Clone)]
pub struct TensorEntry {
    key: String,
    shape: Vec<usize>,
    dtype: DType,
    file: Arc<Path>,
    read: Arc<ReadFn>,
    /// Where the bytes lie, when they are one byte range of a [`ByteSource`] (safetensors):
    /// lets [`batch::read_many`] read neighbours in one go.
    span: Option<Span>,
}

/// One byte range of a [`ByteSource`].
#[derive(Clone)]
pub(crate) struct Span {
    pub source: Arc<dyn ByteSource>,
    pub offset: u64,
    pub len: usize,
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

    /// A tensor whose bytes are `len` bytes at `offset` of `source`.
    pub(crate) fn in_span(
        key: String,
        shape: Vec<usize>,
        dtype: DType,
        source: Arc<dyn ByteSource>,
        offset: u64,
        len: usize,
    ) -> Self {
        let span = Span {
            source: source.clone(),
            offset,
            len,
        };
        let mut entry = Self::new(key, shape, dtype, move || source.read_at(offset, len));
        entry.span = Some(span);
        entry
    }

    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_ref()
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

    /// Read the tensor's bytes: contiguous, row-major, little-endian.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        self.checked((self.read)()?)
    }

    /// `bytes` if they are as many as the tensor needs.
    pub(crate) fn checked(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let expected = self.num_elements() * self.dtype.size();
        if bytes.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected {expected} bytes, got {}", bytes.len()),
            ));
        }
        Ok(bytes)
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
    path: PathBuf,
    format: Format,
    convention: Convention,
    entries: Vec<TensorEntry>,
    /// Key → position in `entries`.
    by_key: std::collections::HashMap<String, usize>,
    /// The shard files, for a checkpoint opened from an `*.index.json`; empty otherwise.
    shards: Vec<PathBuf>,
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
        };
        Self::from_parts(path, format, convention, entries).map(Opened::Tensors)
    }

    /// Open a file through `source` (a remote file read by byte ranges; `shown` names it):
    /// a safetensors checkpoint, or a shard index. `Ok(None)` for the formats that need the
    /// whole file on disk (PyTorch's, burnpack).
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
    use super::natural_cmp;

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
