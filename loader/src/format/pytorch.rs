//! PyTorch checkpoints. A zip (what `torch.save` writes) is read by our own zip walk wherever
//! it can place every tensor — through positional reads of a local file or byte ranges of a remote
//! one: the directory, `data.pkl` (walked by `torch_pickle.rs`), one local header per storage,
//! then each tensor is a byte range. Strided views and compressed storages of a local file,
//! and legacy, TAR and anything the walk does not follow, are read by `pytorch-reader`.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use pytorch_reader::PytorchReader;

use super::torch_pickle::storage_views;
use super::{DType, Format, TensorEntry};
use crate::error::{Cause, Error, Result, context};
use crate::source::bytes::{BlockReader, ByteSource, LocalFile, read_ranges};

pub(super) fn open(path: &Path, format: Format) -> Result<Vec<TensorEntry>> {
    let entries = open_entries(path, format)?;
    let file_len = std::fs::metadata(path)
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    not_a_bomb(path, format, file_len, &entries)?;
    Ok(entries)
}

/// How many times its own size a checkpoint's tensors may materialise, plus
/// [`BOMB_ALLOWANCE`]. Tensors sharing a storage (tied weights, a block repeated in a
/// `ModuleList`) each materialise it again, and a stride-0 view (`expand`) repeats its
/// elements; a real checkpoint stays within a few times its size, a bomb — 100,000 keys over
/// one storage, four bytes viewed as 8 GiB — goes far beyond and is refused at open, before
/// `convert` writes (or a load allocates) any of it.
const BOMB_FACTOR: u128 = 64;
/// What tensors may materialise beyond [`BOMB_FACTOR`] × the file (expanded buffers of small
/// files).
const BOMB_ALLOWANCE: u128 = 1 << 30;

/// Refuse a checkpoint whose tensors would materialise more than [`BOMB_FACTOR`] × its
/// `file_len` bytes + [`BOMB_ALLOWANCE`], naming the tensor that materialises most.
fn not_a_bomb(shown: &Path, format: Format, file_len: u64, entries: &[TensorEntry]) -> Result<()> {
    let bytes = |e: &TensorEntry| {
        e.shape()
            .iter()
            .try_fold(e.dtype().size() as u128, |n, &d| n.checked_mul(d as u128))
            .unwrap_or(u128::MAX)
    };
    let total = entries
        .iter()
        .fold(0u128, |sum, e| sum.saturating_add(bytes(e)));
    let limit = BOMB_FACTOR
        .saturating_mul(u128::from(file_len))
        .saturating_add(BOMB_ALLOWANCE);
    if total <= limit {
        return Ok(());
    }
    let largest = entries.iter().max_by_key(|e| bytes(e));
    let what = largest.map_or_else(String::new, |e| {
        format!(
            "; the largest, `{}` {:?} {}, alone {} bytes",
            e.key(),
            e.shape(),
            e.dtype(),
            bytes(e)
        )
    });
    Err(Error::Corrupt {
        path: shown.to_path_buf(),
        format,
        source: format!(
            "its {} tensors would materialise {total} bytes, more than {BOMB_FACTOR} times the file's {file_len} bytes (+ 1 GiB): views that repeat a storage far beyond its size{what}",
            entries.len()
        )
        .into(),
    })
}

fn open_entries(path: &Path, format: Format) -> Result<Vec<TensorEntry>> {
    let mut placed = Vec::new();
    let mut others: Option<Vec<String>> = None;
    if format == Format::PytorchZip {
        let map: Arc<dyn ByteSource> =
            Arc::new(LocalFile::open(path).map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })?);
        if let Some(read) = read_zip(path, map)? {
            if read.others.is_empty() {
                return Ok(read.entries);
            }
            placed = read.entries;
            others = Some(read.others);
        }
    }
    let reader = PytorchReader::new(path).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        format,
        source: e.into(),
    })?;
    let mut tensors = reader.into_tensors();
    let keys: Vec<String> = match others {
        // The walk placed most tensors; `pytorch-reader` gathers the ones it could not.
        Some(others) => others,
        None => tensors.keys().cloned().collect(),
    };
    for key in keys {
        let Some(tensor) = tensors.remove(&key) else {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                format,
                source: format!("tensor `{key}` of data.pkl is not one pytorch-reader reads")
                    .into(),
            });
        };
        let dtype = dtype(tensor.dtype());
        let shape = tensor.shape().to_vec();
        placed.push(TensorEntry::new(key, shape, dtype, move || tensor.read()));
    }
    Ok(placed)
}

/// A PyTorch zip checkpoint behind `source` (a remote file read by ranges; `shown` names it),
/// read without downloading it. `Ok(None)` when the archive holds what only `pytorch-reader`
/// reads from a whole local file (a strided view, a compressed storage, a pickle the walk
/// does not follow, a big-endian file); the caller downloads it instead.
pub(super) fn open_source(
    shown: &Path,
    source: Arc<dyn ByteSource>,
) -> Result<Option<Vec<TensorEntry>>> {
    let file_len = source.len();
    let Some(read) = read_zip(shown, source)?.filter(|read| read.others.is_empty()) else {
        return Ok(None);
    };
    not_a_bomb(shown, Format::PytorchZip, file_len, &read.entries)?;
    Ok(Some(read.entries))
}

/// What the zip walk made of an archive.
struct ZipRead {
    /// Tensors placed as byte ranges of the source.
    entries: Vec<TensorEntry>,
    /// Keys of tensors it could not place: strided views, compressed storages.
    others: Vec<String>,
}

/// Walk the zip behind `source`: `Ok(None)` when `data.pkl` holds what the walk does not
/// follow or the file is big-endian, so `pytorch-reader` must read all of it.
fn read_zip(shown: &Path, source: Arc<dyn ByteSource>) -> Result<Option<ZipRead>> {
    let corrupt = |e: Cause| Error::Corrupt {
        path: shown.to_path_buf(),
        format: Format::PytorchZip,
        source: e,
    };
    let facts = facts(shown, BlockReader::new(source.as_ref()))?;
    let Some(ArchiveFacts { pickle, storages }) = facts else {
        return Ok(None);
    };
    let Some(views) = storage_views(&pickle) else {
        return Ok(None);
    };
    // Each stored storage's local header (30 bytes, the name, an extra field PyTorch pads
    // with so that data starts 64-byte aligned): 30 + name + 256 bytes read, several remote
    // requests at a time.
    let file_len = source.len();
    let stored: Vec<(&String, &Storage)> = storages.iter().filter(|(_, s)| s.stored).collect();
    let ranges: Vec<(u64, usize)> = stored
        .iter()
        .map(|(_, s)| {
            let want = (30 + s.name_len + 256) as u64;
            (
                s.header,
                want.min(file_len.saturating_sub(s.header)) as usize,
            )
        })
        .collect();
    let headers = read_ranges(source.as_ref(), &ranges);
    let mut data_start: HashMap<&str, u64> = HashMap::new();
    for ((key, storage), header) in stored.iter().zip(headers) {
        let header =
            header.map_err(|e| corrupt(context(&format!("local header of storage {key}"), e)))?;
        let bad = || {
            corrupt(
                format!(
                    "storage {key}: damaged local header at byte {}",
                    storage.header
                )
                .into(),
            )
        };
        if header.len() < 30 || header[..4] != *b"PK\x03\x04" {
            return Err(bad());
        }
        let name_len = u64::from(u16::from_le_bytes([header[26], header[27]]));
        let extra_len = u64::from(u16::from_le_bytes([header[28], header[29]]));
        let data = storage.header + 30 + name_len + extra_len;
        if data
            .checked_add(storage.size)
            .is_none_or(|end| end > file_len)
        {
            return Err(bad());
        }
        data_start.insert(key.as_str(), data);
    }
    let mut read = ZipRead {
        entries: Vec::with_capacity(views.len()),
        others: Vec::new(),
    };
    for (key, view) in views {
        let Some(storage) = storages.get(&view.storage) else {
            return Err(corrupt(
                format!(
                    "tensor `{key}`: storage {} is not in the archive",
                    view.storage
                )
                .into(),
            ));
        };
        let Some(&data) = data_start.get(view.storage.as_str()) else {
            read.others.push(key);
            continue;
        };
        if !view.is_contiguous() {
            read.others.push(key);
            continue;
        }
        let size_of = view.dtype.size() as u64;
        let range = view
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| {
                let len = n.checked_mul(size_of)?;
                let from = (view.offset as u64).checked_mul(size_of)?;
                (from.checked_add(len)? <= storage.size).then_some((from, len))
            });
        let Some((from, len)) = range else {
            return Err(corrupt(
                format!(
                    "tensor `{key}` ({:?}, {}) does not fit its storage of {} bytes",
                    view.shape, view.dtype, storage.size
                )
                .into(),
            ));
        };
        // The CRC-32 covers the whole storage: checked when the tensor spans it (as
        // `pytorch-reader` does); `torch.save(..., compute_crc32=False)` records 0.
        let whole = from == 0 && len == storage.size && storage.crc32 != 0;
        read.entries.push(TensorEntry::in_span(
            key,
            view.shape,
            view.dtype,
            source.clone(),
            (data + from, len as usize),
            whole.then_some(storage.crc32),
        ));
    }
    Ok(Some(read))
}

/// One storage entry (`<root>/data/<key>`) as the zip directory describes it.
struct Storage {
    /// Where its local header starts.
    header: u64,
    name_len: usize,
    size: u64,
    crc32: u32,
    /// Uncompressed (`torch.save` writes every storage so): readable as a byte range.
    stored: bool,
}

/// What the walk needs from the archive: `data.pkl` and the storage entries by key.
struct ArchiveFacts {
    pickle: Vec<u8>,
    storages: HashMap<String, Storage>,
}

/// The archive's facts, or `None` where `pytorch-reader` must have the file (no `data.pkl`
/// root, a big-endian file). A TorchScript archive is refused.
fn facts<R: Read + Seek>(shown: &Path, reader: R) -> Result<Option<ArchiveFacts>> {
    let corrupt = |e: Cause| Error::Corrupt {
        path: shown.to_path_buf(),
        format: Format::PytorchZip,
        source: e,
    };
    // The archive starts at byte 0, as PyTorch's own reader requires. The zip crate's
    // detection of prepended bytes is not asked: it takes a `torch.save` file whose stem has
    // 21 characters for one with 76 prepended bytes (its first directory entry is as long as
    // the zip64 records after the directory) and fails.
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    let mut archive = zip::ZipArchive::with_config(config, reader)
        .map_err(|e| corrupt(context("zip archive", e)))?;
    if scripted(&archive) {
        return Err(Error::TorchScript {
            path: shown.to_path_buf(),
        });
    }
    // The folder holding `data.pkl` is the root of every entry (as `pytorch-reader` finds it).
    let Some(root) = archive
        .file_names()
        .filter_map(|name| name.ok())
        .filter_map(|name| name.strip_suffix("data.pkl").map(str::to_string))
        .filter(|root| root.is_empty() || root.ends_with('/'))
        .min_by_key(String::len)
    else {
        return Ok(None);
    };
    let mut entry = |name: &str, limit: u64| -> Result<Option<Vec<u8>>> {
        let Some(index) = archive.index_for_name(&format!("{root}{name}")) else {
            return Ok(None);
        };
        // An archive saved with `compute_crc32=False` records 0: nothing to check against.
        let unchecked = archive
            .by_index_data(index)
            .is_ok_and(|entry| entry.crc32() == 0);
        let entry = archive
            .by_index_with_options(
                index,
                zip::read::ZipReadOptions::new().ignore_crc32(unchecked),
            )
            .map_err(|e| corrupt(context(name, e)))?;
        let mut bytes = Vec::new();
        entry
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(context(name, e)))?;
        Ok(Some(bytes))
    };
    if entry("byteorder", 16)?.is_some_and(|order| order.trim_ascii() == b"big") {
        return Ok(None);
    }
    let Some(pickle) = entry("data.pkl", pytorch_reader::MAX_PICKLE_SIZE)? else {
        return Ok(None);
    };
    let prefix = format!("{root}data/");
    let mut storages = HashMap::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(|e| corrupt(context("zip directory", e)))?;
        let Ok(name) = entry.name() else {
            continue;
        };
        let Some(key) = name.strip_prefix(&prefix) else {
            continue;
        };
        if key.is_empty() || key.contains('/') {
            continue;
        }
        storages.insert(
            key.to_string(),
            Storage {
                header: entry.header_start(),
                name_len: entry.name_raw().len(),
                size: entry.size(),
                crc32: entry.crc32(),
                stored: entry.compression() == zip::CompressionMethod::Stored
                    && entry.compressed_size() == entry.size(),
            },
        );
    }
    Ok(Some(ArchiveFacts { pickle, storages }))
}

/// A TorchScript archive is a zip too, but holds code (`code/`, `constants.pkl`) and the
/// weights of a scripted module, not a state dict.
fn scripted<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> bool {
    archive.file_names().any(|name| {
        name.is_ok_and(|name| {
            name.ends_with("/constants.pkl") || name.split('/').nth(1) == Some("code")
        })
    })
}

fn dtype(dtype: pytorch_reader::DType) -> DType {
    use pytorch_reader::DType as P;
    match dtype {
        P::F64 => DType::F64,
        P::F32 => DType::F32,
        P::F16 => DType::F16,
        P::BF16 => DType::BF16,
        P::I64 => DType::I64,
        P::I32 => DType::I32,
        P::I16 => DType::I16,
        P::I8 => DType::I8,
        P::U64 => DType::U64,
        P::U32 => DType::U32,
        P::U16 => DType::U16,
        P::U8 => DType::U8,
        P::Bool => DType::Bool,
    }
}
