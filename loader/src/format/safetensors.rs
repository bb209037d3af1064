//! safetensors files: the header is parsed by the `safetensors` crate's own `Metadata`; tensor
//! bytes are read with one positioned read each, when asked for.

use std::path::Path;
use std::sync::Arc;

use safetensors::tensor::Metadata;

use super::{Convention, DType, Format, TensorEntry};
use crate::error::{Cause, Error, Result, context};
use crate::source::bytes::{ByteSource, LocalFile};

pub(super) fn open(path: &Path) -> Result<(Vec<TensorEntry>, Convention)> {
    let file = LocalFile::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    open_source(path, Arc::new(file))
}

/// Parse the header of the safetensors file behind `source` (`path` names it in errors); each
/// tensor reads its own byte range when asked. Two reads in all: the length, the header.
pub(super) fn open_source(
    path: &Path,
    source: Arc<dyn ByteSource>,
) -> Result<(Vec<TensorEntry>, Convention)> {
    let corrupt = |source: Cause| Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::Safetensors,
        source,
    };
    let file_len = source.len();
    let len = source
        .read_at(0, 8)
        .map_err(|e| corrupt(context("header length", e)))?;
    let header_len = u64::from_le_bytes(len.try_into().map_err(|_| corrupt("short read".into()))?);
    if header_len.saturating_add(8) > file_len {
        return Err(corrupt(
            format!("header claims {header_len} bytes but the file has {file_len}").into(),
        ));
    }
    let header = source
        .read_at(8, header_len as usize)
        .map_err(|e| corrupt(context("header", e)))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| corrupt(context("header", e)))?;
    let data_start = 8 + header_len;
    let expected = u64::try_from(metadata.data_len())
        .ok()
        .and_then(|len| data_start.checked_add(len));
    match expected {
        None => {
            return Err(corrupt(
                "the header's tensors need more than 2^64 bytes".into(),
            ));
        }
        Some(expected) if expected > file_len => {
            return Err(corrupt(
                format!(
                    "the header's tensors end at byte {expected} but the file has {file_len} bytes (truncated?)"
                )
                .into(),
            ));
        }
        Some(expected) if expected < file_len => {
            return Err(corrupt(
                format!(
                    "the header's tensors end at byte {expected} but the file has {file_len} bytes: {} bytes that no tensor holds follow them",
                    file_len - expected
                )
                .into(),
            ));
        }
        Some(_) => {}
    }
    // burn-store writes its own name into the metadata; such files follow burn's naming.
    let convention = match metadata.metadata() {
        Some(m) if m.get("producer").map(String::as_str) == Some("burn") => Convention::Burn,
        _ => Convention::Pytorch,
    };
    let tensors = metadata.tensors();
    let mut entries = Vec::with_capacity(tensors.len());
    for key in metadata.offset_keys() {
        let Some(info) = tensors.get(&key) else {
            continue;
        };
        let dtype = dtype(info.dtype).ok_or_else(|| {
            corrupt(format!("tensor `{key}` has unsupported dtype {:?}", info.dtype).into())
        })?;
        let (start, end) = info.data_offsets;
        entries.push(TensorEntry::in_span(
            key,
            info.shape.clone(),
            dtype,
            source.clone(),
            (data_start + start as u64, end - start),
            None,
        ));
    }
    Ok((entries, convention))
}

fn dtype(dtype: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F64 => DType::F64,
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I16 => DType::I16,
        S::I8 => DType::I8,
        S::U64 => DType::U64,
        S::U32 => DType::U32,
        S::U16 => DType::U16,
        S::U8 => DType::U8,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}

/// The safetensors dtype of one of ours (every one has a twin).
impl From<DType> for safetensors::Dtype {
    fn from(dtype: DType) -> Self {
        safetensors_dtype(dtype)
    }
}

/// The safetensors dtype of one of ours (every one has a twin).
pub(crate) fn safetensors_dtype(dtype: DType) -> safetensors::Dtype {
    use safetensors::Dtype as S;
    match dtype {
        DType::F64 => S::F64,
        DType::F32 => S::F32,
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::I64 => S::I64,
        DType::I32 => S::I32,
        DType::I16 => S::I16,
        DType::I8 => S::I8,
        DType::U64 => S::U64,
        DType::U32 => S::U32,
        DType::U16 => S::U16,
        DType::U8 => S::U8,
        DType::Bool => S::BOOL,
    }
}
