//! burnpack files through `burn-pack`'s file-backed reader: tensor bytes stay on disk until read.

use std::path::Path;

use super::{Convention, DType, Format, TensorEntry};
use crate::error::{Cause, Error, Result};

/// burn writes burnpacks in its own naming; `pretrain convert` marks the ones it writes in
/// PyTorch's naming with `convention = pytorch`.
pub(super) fn open(path: &Path) -> Result<(Vec<TensorEntry>, Convention)> {
    let corrupt = |source: Cause| Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::Burnpack,
        source,
    };
    let reader = burn_pack::Reader::from_file_exact(path).map_err(|e| corrupt(e.into()))?;
    let convention = match reader.metadata().get("convention").map(String::as_str) {
        Some("pytorch") => Convention::Pytorch,
        _ => Convention::Burn,
    };
    let tensors = reader.into_tensors().map_err(|e| corrupt(e.into()))?;
    let entries = tensors
        .into_iter()
        .map(|tensor| {
            let dtype = DType::from_burn(tensor.dtype).ok_or_else(|| {
                corrupt(
                    format!(
                        "tensor `{}` has unsupported dtype {:?}",
                        tensor.name, tensor.dtype
                    )
                    .into(),
                )
            })?;
            let key = tensor.name.clone();
            let shape = tensor.shape.to_vec();
            Ok(TensorEntry::new(key, shape, dtype, move || {
                tensor.to_bytes().map(|b| b.to_vec()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((entries, convention))
}
