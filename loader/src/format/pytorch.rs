//! PyTorch checkpoints (zip, legacy pickle, TAR) through `pytorch-reader`; the stored
//! (uncompressed) storages of a zip checkpoint are read straight from the memory-mapped file,
//! or by byte ranges from a remote one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use pytorch_reader::PytorchReader;

use super::torch_pickle::{StorageView, storage_views};
use super::{DType, Format, TensorEntry};
use crate::error::{Cause, Error, Result, context};
use crate::source::bytes::{BlockReader, ByteSource, Mapped, read_ranges};

pub(super) fn open(path: &Path, format: Format) -> Result<Vec<TensorEntry>> {
    let spans = if format == Format::PytorchZip {
        let mut archive = open_zip(path)?;
        reject_torchscript(path, &archive)?;
        zip_spans(path, &mut archive)
    } else {
        None
    };
    let reader = PytorchReader::new(path).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        format,
        source: e.into(),
    })?;
    Ok(reader
        .into_tensors()
        .into_iter()
        .map(|(key, tensor)| {
            let dtype = dtype(tensor.dtype());
            let shape = tensor.shape().to_vec();
            // The mapped range where `pytorch-reader` and the storage walk agree on the
            // tensor; `pytorch-reader`'s own read everywhere else.
            let span = spans.as_ref().and_then(|(map, spans)| {
                let span = spans.get(&key)?;
                (span.view.shape == shape && span.view.dtype == dtype).then(|| (map.clone(), span))
            });
            match span {
                Some((map, span)) => TensorEntry::in_span(
                    key,
                    shape,
                    dtype,
                    map,
                    (span.offset, span.len),
                    span.crc32,
                ),
                None => TensorEntry::new(key, shape, dtype, move || tensor.read()),
            }
        })
        .collect())
}

/// A PyTorch zip checkpoint behind `source` (a remote file read by ranges; `shown` names it),
/// read without downloading it: the directory at the end of the file, `data.pkl`, then one
/// local header per storage (a few requests at a time), so that each tensor reads exactly its
/// bytes later. `Ok(None)` when the archive holds what only a whole local file can be read
/// for — a compressed or non-contiguous storage, a pickle the storage walk does not follow —
/// and the caller downloads it instead.
pub(super) fn open_source(
    shown: &Path,
    source: Arc<dyn ByteSource>,
) -> Result<Option<Vec<TensorEntry>>> {
    let corrupt = |e: Cause| Error::Corrupt {
        path: shown.to_path_buf(),
        format: Format::PytorchZip,
        source: e,
    };
    let mut archive = zip::ZipArchive::new(BlockReader::new(source.as_ref()))
        .map_err(|e| corrupt(context("zip archive", e)))?;
    reject_torchscript(shown, &archive)?;
    let Some(root) = root(&archive) else {
        return Ok(None);
    };
    let pickle = {
        let entry = archive
            .by_name(&format!("{root}data.pkl"))
            .map_err(|e| corrupt(context("data.pkl", e)))?;
        let mut bytes = Vec::new();
        entry
            .take(pytorch_reader::MAX_PICKLE_SIZE)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(context("data.pkl", e)))?;
        bytes
    };
    let Some(views) = storage_views(&pickle) else {
        return Ok(None);
    };
    if views.values().any(|v| !v.is_contiguous()) {
        return Ok(None);
    }
    // Each storage's entry in the directory: where its local header starts, how long its
    // name is, its size and CRC-32 (stored entries only).
    let mut storages: Vec<String> = views.values().map(|v| v.storage.clone()).collect();
    storages.sort_unstable();
    storages.dedup();
    let mut entries = Vec::with_capacity(storages.len());
    for key in &storages {
        let name = format!("{root}data/{key}");
        let Some(index) = archive.index_for_name(&name) else {
            return Err(corrupt(
                format!("storage `{name}` is not in the archive").into(),
            ));
        };
        let entry = archive
            .by_index_data(index)
            .map_err(|e| corrupt(context(&name, e)))?;
        if entry.compression() != zip::CompressionMethod::Stored
            || entry.compressed_size() != entry.size()
        {
            return Ok(None);
        }
        entries.push((
            entry.header_start(),
            name.len(),
            entry.size(),
            entry.crc32(),
        ));
    }
    drop(archive);
    // A local header is 30 bytes, the name, then an extra field (PyTorch pads with it so that
    // data starts 64-byte aligned): read 30 + name + 256 bytes, more only if it is longer.
    let file_len = source.len();
    let ranges: Vec<(u64, usize)> = entries
        .iter()
        .map(|&(start, name, ..)| {
            let want = (30 + name + 256) as u64;
            (start, want.min(file_len.saturating_sub(start)) as usize)
        })
        .collect();
    let headers = read_ranges(source.as_ref(), &ranges);
    let mut data_start = std::collections::HashMap::new();
    for ((key, &(start, _, size, crc32)), header) in storages.iter().zip(&entries).zip(headers) {
        let header =
            header.map_err(|e| corrupt(context(&format!("local header of storage {key}"), e)))?;
        let bad = || corrupt(format!("storage {key}: damaged local header at byte {start}").into());
        if header.len() < 30 || header[..4] != *b"PK\x03\x04" {
            return Err(bad());
        }
        let name_len = u64::from(u16::from_le_bytes([header[26], header[27]]));
        let extra_len = u64::from(u16::from_le_bytes([header[28], header[29]]));
        let data = start + 30 + name_len + extra_len;
        if data.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(bad());
        }
        data_start.insert(key.as_str(), (data, size, crc32));
    }
    let mut out = Vec::with_capacity(views.len());
    for (key, view) in views {
        let Some(&(data, size, crc32)) = data_start.get(view.storage.as_str()) else {
            return Err(corrupt(
                format!("tensor `{key}`: no storage {}", view.storage).into(),
            ));
        };
        let size_of = view.dtype.size() as u64;
        let range = view
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| {
                let len = n.checked_mul(size_of)?;
                let from = (view.offset as u64).checked_mul(size_of)?;
                (from.checked_add(len)? <= size).then_some((from, len))
            });
        let Some((from, len)) = range else {
            return Err(corrupt(
                format!(
                    "tensor `{key}` ({:?}, {}) does not fit its storage of {size} bytes",
                    view.shape, view.dtype
                )
                .into(),
            ));
        };
        let whole = from == 0 && len == size && crc32 != 0;
        out.push(TensorEntry::in_span(
            key,
            view.shape,
            view.dtype,
            source.clone(),
            (data + from, len as usize),
            whole.then_some(crc32),
        ));
    }
    Ok(Some(out))
}

/// The folder holding `data.pkl`, the root of every entry (as `pytorch-reader` finds it).
fn root<R: std::io::Read + std::io::Seek>(archive: &zip::ZipArchive<R>) -> Option<String> {
    archive
        .file_names()
        .filter_map(|name| name.ok())
        .filter_map(|name| name.strip_suffix("data.pkl").map(str::to_string))
        .filter(|root| root.is_empty() || root.ends_with('/'))
        .min_by_key(String::len)
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<File>> {
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    zip::ZipArchive::new(file).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::PytorchZip,
        source: context("zip archive", e),
    })
}

/// A TorchScript archive is a zip too, but holds code (`code/`, `constants.pkl`) and the
/// weights of a scripted module, which `pytorch-reader` cannot map to a state dict.
fn reject_torchscript<R: std::io::Read + std::io::Seek>(
    path: &Path,
    archive: &zip::ZipArchive<R>,
) -> Result<()> {
    let scripted = archive.file_names().any(|name| {
        name.is_ok_and(|name| {
            name.ends_with("/constants.pkl") || name.split('/').nth(1) == Some("code")
        })
    });
    if scripted {
        return Err(Error::TorchScript {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Per tensor key: its storage view and the byte range (offset in the file, length) of its
/// elements, for every contiguous tensor whose storage is a stored (uncompressed) entry lying
/// within the file. `None` when the pickle holds anything the walk does not follow, or the
/// file cannot be mapped: every tensor is then read through `pytorch-reader`.
type Spans = (Arc<Mapped>, HashMap<String, StoredSpan>);

/// Where one tensor's elements lie in the file.
struct StoredSpan {
    view: StorageView,
    offset: u64,
    len: usize,
    /// The storage entry's CRC-32, when the tensor spans all of it and the archive records one
    /// (`torch.save` does unless told `compute_crc32=False`, which writes 0).
    crc32: Option<u32>,
}

fn zip_spans(path: &Path, archive: &mut zip::ZipArchive<File>) -> Option<Spans> {
    let root = root(archive)?;
    let pickle = {
        let entry = archive.by_name(&format!("{root}data.pkl")).ok()?;
        let mut bytes = Vec::new();
        entry
            .take(pytorch_reader::MAX_PICKLE_SIZE)
            .read_to_end(&mut bytes)
            .ok()?;
        bytes
    };
    let views = storage_views(&pickle)?;
    let map = Arc::new(Mapped::open(path).ok()?);
    let file_len = crate::source::bytes::ByteSource::len(&*map);
    // Each storage's stored entry: (data start, size, CRC-32); `None` for a compressed one.
    let mut storages: HashMap<String, Option<(u64, u64, u32)>> = HashMap::new();
    let mut spans = HashMap::new();
    for (key, view) in views {
        if !view.is_contiguous() {
            continue;
        }
        let stored = *storages.entry(view.storage.clone()).or_insert_with(|| {
            let entry = archive
                .by_name(&format!("{root}data/{}", view.storage))
                .ok()?;
            let size = entry.size();
            let start = entry.data_start()?;
            (entry.compression() == zip::CompressionMethod::Stored
                && entry.compressed_size() == size
                && start.checked_add(size).is_some_and(|end| end <= file_len))
            .then_some((start, size, entry.crc32()))
        });
        let Some((start, size, crc32)) = stored else {
            continue;
        };
        let elements: Option<usize> = view.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let size_of = view.dtype.size() as u64;
        let range = elements.and_then(|n| {
            let len = (n as u64).checked_mul(size_of)?;
            let from = (view.offset as u64).checked_mul(size_of)?;
            (from.checked_add(len)? <= size).then_some((start + from, usize::try_from(len).ok()?))
        });
        if let Some((offset, len)) = range {
            let whole = offset == start && len as u64 == size;
            let crc32 = (whole && crc32 != 0).then_some(crc32);
            spans.insert(
                key,
                StoredSpan {
                    view,
                    offset,
                    len,
                    crc32,
                },
            );
        }
    }
    Some((map, spans))
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
