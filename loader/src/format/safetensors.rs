//! safetensors files: the header is parsed by the `safetensors` crate's own `Metadata`; tensor
//! bytes are read with one positioned read each, when asked for.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::tensor::Metadata;

use super::{Convention, DType, Format, TensorEntry};
use crate::error::{Error, Result};

pub(super) fn open(path: &Path) -> Result<(Vec<TensorEntry>, Convention)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::Safetensors,
        reason,
    };
    let open_err = |source| Error::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let file_len = file.metadata().map_err(open_err)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| corrupt(format!("header length: {e}")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len.saturating_add(8) > file_len {
        return Err(corrupt(format!(
            "header claims {header_len} bytes but the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| corrupt(format!("header: {e}")))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("header: {e}")))?;
    let data_start = 8 + header_len;
    let expected = data_start + metadata.data_len() as u64;
    if expected != file_len {
        return Err(corrupt(format!(
            "tensors need {expected} bytes but the file has {file_len} (truncated?)"
        )));
    }
    // burn-store writes its own name into the metadata; such files follow burn's naming.
    let convention = match metadata.metadata() {
        Some(m) if m.get("producer").map(String::as_str) == Some("burn") => Convention::Burn,
        _ => Convention::Pytorch,
    };
    let file_path: Arc<PathBuf> = Arc::new(path.to_path_buf());
    let tensors = metadata.tensors();
    let mut entries = Vec::with_capacity(tensors.len());
    for key in metadata.offset_keys() {
        let Some(info) = tensors.get(&key) else {
            continue;
        };
        let dtype = dtype(info.dtype).ok_or_else(|| {
            corrupt(format!(
                "tensor `{key}` has unsupported dtype {:?}",
                info.dtype
            ))
        })?;
        let (start, end) = info.data_offsets;
        let file_path = file_path.clone();
        entries.push(TensorEntry::new(
            key,
            info.shape.clone(),
            dtype,
            move || {
                let mut f = File::open(file_path.as_ref())?;
                f.seek(SeekFrom::Start(data_start + start as u64))?;
                let mut buf = vec![0u8; end - start];
                f.read_exact(&mut buf)?;
                Ok(buf)
            },
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
