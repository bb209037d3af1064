//! Export: a burn model written back in PyTorch's names and layouts, through the same mapping
//! that loads it (Linear weights transposed back, packed tensors stacked again,
//! `num_batches_tracked` added), as a safetensors file PyTorch's twin loads strictly.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use burn::tensor::TensorData;

use crate::apply::layout::{concat, transpose};
use crate::error::{Cause, Error, Result};
use crate::format::{Convention, DType};
use crate::mapping::{Layout, Mapper, Mode, Pretrainable};
use crate::plan::unique_keys;

/// Every tensor of `model` under its PyTorch checkpoint key, in PyTorch's layout, in the
/// order the model declares them (a state dict's order).
pub fn export_tensors<M: Pretrainable + Clone>(model: &M) -> Result<Vec<(String, TensorData)>> {
    let mut mapper = Mapper::new(Convention::Pytorch, None, Mode::Export(HashMap::new()));
    model.clone().map_pretrain(&mut mapper);
    let Mode::Export(mut values) = mapper.mode else {
        unreachable!("the mapper was made in export mode")
    };
    unique_keys(&mapper.targets)?;
    let mut constants = mapper.constants.into_iter().peekable();
    let mut out = Vec::with_capacity(mapper.targets.len());
    for (i, target) in mapper.targets.into_iter().enumerate() {
        while let Some((_, key, value)) = constants.next_if(|(at, _, _)| *at <= i) {
            out.push((key, value));
        }
        let mut parts = Vec::with_capacity(target.pieces.len());
        for piece in &target.pieces {
            // Taken by an earlier target: one parameter mapped under two keys.
            let value = values
                .remove(&piece.model_path)
                .ok_or_else(|| Error::DuplicateTarget {
                    key: piece.model_path.clone(),
                    first: piece.model_path.clone(),
                    second: target.key.clone(),
                })?;
            parts.push(match piece.layout {
                Layout::Transposed if value.shape().len() == 2 => transpose(value),
                _ => value,
            });
        }
        let tensor = if parts.len() == 1 {
            parts.remove(0)
        } else {
            concat(&parts, target.axis)
        };
        out.push((target.key, tensor));
    }
    out.extend(constants.map(|(_, key, value)| (key, value)));
    Ok(out)
}

/// Write `model` to `path` as safetensors in PyTorch's names and layouts
/// (`torch.nn.Module.load_state_dict(safetensors.torch.load_file(path), strict=True)` on the
/// PyTorch twin accepts it). Written atomically: a temporary file in the same folder, synced,
/// then renamed; on any error nothing is left behind. Returns the number of tensors written.
pub fn save_pretrained<M: Pretrainable + Clone>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<usize> {
    let path = path.as_ref();
    let tensors = export_tensors(model)?;
    let fail = |source: Cause| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (key, data) in &tensors {
        let dtype = DType::from_burn(data.dtype()).ok_or_else(|| {
            fail(
                format!(
                    "`{key}` has dtype {:?}, which safetensors cannot hold",
                    data.dtype()
                )
                .into(),
            )
        })?;
        let view = safetensors::tensor::TensorView::new(
            crate::format::safetensors_dtype(dtype),
            data.shape().to_vec(),
            data.as_bytes(),
        )
        .map_err(|e| fail(format!("`{key}`: {e}").into()))?;
        views.push((key.clone(), view));
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("producer".to_string(), "burn-pretrain".to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| fail(e.into()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.into()))?;
    tmp.write_all(&bytes).map_err(|e| fail(e.into()))?;
    tmp.as_file().sync_all().map_err(|e| fail(e.into()))?;
    tmp.persist(path).map_err(|e| fail(e.error.into()))?;
    Ok(tensors.len())
}
