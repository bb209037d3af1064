//! The plan: the model's tensors matched against the checkpoint view, from headers only; and
//! its execution: read exactly the planned tensors, cast and lay them out, all before the
//! model is touched.

use std::collections::{HashMap, HashSet};

use burn::tensor::TensorData;

use crate::error::{Error, Result};
use crate::format::DType;
use crate::pretrainable::{Layout, Target};
use crate::view::View;

/// What the plan decided for one model tensor.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Load it; `cast` when the stored dtype differs from the model's.
    Load {
        index: usize,
        cast: Option<(DType, DType)>,
    },
    /// The key exists with another shape: keep the model's value.
    ShapeMismatch { checkpoint_shape: Vec<usize> },
    /// The stored dtype cannot become the model's (e.g. a quantized parameter).
    Incompatible { dtype: DType },
    /// No such key in the view.
    Missing,
}

#[derive(Debug, Clone)]
pub(crate) struct PlanItem {
    pub target: Target,
    pub action: Action,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub items: Vec<PlanItem>,
    /// View keys (with shape) that no model tensor asked for.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Stored keys deliberately not loaded, with why.
    pub ignored: Vec<(String, String)>,
}

impl Plan {
    pub fn build(
        targets: Vec<Target>,
        expected_unused: Vec<(String, &'static str)>,
        skipped: &[String],
        view: &View,
    ) -> Result<Self> {
        let mut owners: HashMap<&str, String> = HashMap::new();
        for t in &targets {
            if let Some(first) = owners.insert(&t.key, t.model_path()) {
                return Err(Error::DuplicateTarget {
                    key: t.key.clone(),
                    first,
                    second: t.model_path(),
                });
            }
        }
        let by_key: HashMap<&str, usize> = view
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i))
            .collect();
        let mut used = HashSet::new();
        let items = targets
            .into_iter()
            .map(|target| {
                let action = match by_key.get(target.key.as_str()) {
                    None => Action::Missing,
                    Some(&index) => {
                        used.insert(index);
                        let entry = &view.entries[index].entry;
                        let model_dtype = DType::from_burn(target.dtype);
                        if !target.fits(entry.shape()) {
                            Action::ShapeMismatch {
                                checkpoint_shape: entry.shape().to_vec(),
                            }
                        } else {
                            match model_dtype {
                                None => Action::Incompatible {
                                    dtype: entry.dtype(),
                                },
                                Some(to) if to == entry.dtype() => {
                                    Action::Load { index, cast: None }
                                }
                                Some(to) => Action::Load {
                                    index,
                                    cast: Some((entry.dtype(), to)),
                                },
                            }
                        }
                    }
                };
                PlanItem { target, action }
            })
            .collect();
        let expected: HashMap<&str, &str> = expected_unused
            .iter()
            .map(|(k, why)| (k.as_str(), *why))
            .collect();
        let mut unexpected = Vec::new();
        let mut ignored = view.dropped.clone();
        for (i, e) in view.entries.iter().enumerate() {
            if used.contains(&i) {
                continue;
            }
            let under_skipped = skipped.iter().any(|p| {
                e.key == *p || (e.key.starts_with(p.as_str()) && e.key[p.len()..].starts_with('.'))
            });
            match expected.get(e.key.as_str()) {
                Some(why) => ignored.push((e.key.clone(), why.to_string())),
                None if under_skipped => {
                    ignored.push((e.key.clone(), "field marked #[pretrain(skip)]".to_string()))
                }
                None => unexpected.push((e.key.clone(), e.entry.shape().to_vec())),
            }
        }
        Ok(Self {
            items,
            unexpected,
            ignored,
        })
    }

    /// Read and prepare every tensor the plan loads, keyed by the model path of the
    /// parameter it goes to: cast, split when packed, laid out as the model holds it. Any
    /// failure is returned before the model is touched.
    pub fn read(&self, view: &View) -> Result<HashMap<String, TensorData>> {
        let loads: Vec<_> = self
            .items
            .iter()
            .filter_map(|item| match &item.action {
                Action::Load { index, cast } => Some((item, &view.entries[*index].entry, cast)),
                _ => None,
            })
            .collect();
        // Neighbouring tensors of one file are read together (one request when remote).
        let entries: Vec<&crate::TensorEntry> = loads.iter().map(|(_, e, _)| *e).collect();
        let read = crate::format::batch::read_many(&entries);
        let mut out = HashMap::new();
        for ((item, entry, cast), bytes) in loads.into_iter().zip(read) {
            let bytes = bytes.map_err(|e| Error::TensorData {
                path: entry.file().to_path_buf(),
                key: entry.key().to_string(),
                reason: e.to_string(),
            })?;
            let mut data = TensorData::from_bytes_vec(
                bytes,
                entry.shape().to_vec(),
                entry.dtype().to_burn_dtype(),
            );
            if let Some((_, to)) = cast {
                data = data.convert_dtype(to.to_burn_dtype());
            }
            let target = &item.target;
            let parts = if target.is_packed() {
                let sizes: Vec<usize> = target
                    .pieces
                    .iter()
                    .map(|p| p.checkpoint_shape()[target.axis])
                    .collect();
                split(&data, target.axis, &sizes)
            } else {
                vec![data]
            };
            for (piece, part) in target.pieces.iter().zip(parts) {
                let part = match piece.layout {
                    Layout::Transposed if part.shape().len() == 2 => transpose(part),
                    _ => part,
                };
                out.insert(piece.model_path.clone(), part);
            }
        }
        Ok(out)
    }
}

/// Split `data` along `axis` into consecutive parts of `sizes` (which sum to its length).
pub(crate) fn split(data: &TensorData, axis: usize, sizes: &[usize]) -> Vec<TensorData> {
    let shape = data.shape().to_vec();
    let dtype = data.dtype();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * dtype.size();
    let outer: usize = shape[..axis].iter().product();
    let row = shape[axis] * inner;
    let src = data.as_bytes();
    let mut offset = 0;
    sizes
        .iter()
        .map(|&n| {
            let mut bytes = Vec::with_capacity(outer * n * inner);
            for o in 0..outer {
                let start = o * row + offset * inner;
                bytes.extend_from_slice(&src[start..start + n * inner]);
            }
            offset += n;
            let mut part_shape = shape.clone();
            part_shape[axis] = n;
            TensorData::from_bytes_vec(bytes, part_shape, dtype)
        })
        .collect()
}

/// Stack `parts` (equal in every dimension but `axis`) along `axis`: the inverse of [`split`].
pub(crate) fn concat(parts: &[TensorData], axis: usize) -> TensorData {
    let shape = parts[0].shape().to_vec();
    let dtype = parts[0].dtype();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * dtype.size();
    let outer: usize = shape[..axis].iter().product();
    let total: usize = parts.iter().map(|p| p.shape()[axis]).sum();
    let mut bytes = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for p in parts {
            let n = p.shape()[axis] * inner;
            bytes.extend_from_slice(&p.as_bytes()[o * n..(o + 1) * n]);
        }
    }
    let mut out_shape = shape;
    out_shape[axis] = total;
    TensorData::from_bytes_vec(bytes, out_shape, dtype)
}

/// Transpose a 2-D tensor on the host, whatever its dtype.
pub(crate) fn transpose(data: TensorData) -> TensorData {
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    let dtype = data.dtype();
    let size = dtype.size();
    let src = data.as_bytes();
    let mut dst = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * size;
            let to = (c * rows + r) * size;
            dst[to..to + size].copy_from_slice(&src[from..from + size]);
        }
    }
    TensorData::from_bytes_vec(dst, vec![cols, rows], dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element() {
        let data = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let t = transpose(data);
        assert_eq!(t.shape().to_vec(), vec![3, 2]);
        assert_eq!(
            t.try_to_vec::<f32>().unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn split_and_concat_are_inverse_along_every_axis() {
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let data = TensorData::new(values.clone(), [4, 3, 2]);
        // Axis 0: rows 0..1 and 1..4.
        let parts = split(&data, 0, &[1, 3]);
        assert_eq!(parts[0].shape().to_vec(), vec![1, 3, 2]);
        assert_eq!(parts[0].try_to_vec::<f32>().unwrap(), values[..6].to_vec());
        assert_eq!(parts[1].try_to_vec::<f32>().unwrap(), values[6..].to_vec());
        // Axis 1: [4, 1, 2] + [4, 2, 2]; element (o, j, k) of part 1 is (o, j + 1, k).
        let parts = split(&data, 1, &[1, 2]);
        assert_eq!(parts[1].shape().to_vec(), vec![4, 2, 2]);
        let p1 = parts[1].try_to_vec::<f32>().unwrap();
        for o in 0..4 {
            for j in 0..2 {
                for k in 0..2 {
                    assert_eq!(p1[o * 4 + j * 2 + k], values[o * 6 + (j + 1) * 2 + k]);
                }
            }
        }
        for axis in 0..3 {
            let sizes = match axis {
                0 => vec![2, 2],
                1 => vec![1, 1, 1],
                _ => vec![1, 1],
            };
            let back = concat(&split(&data, axis, &sizes), axis);
            assert_eq!(back.shape().to_vec(), vec![4, 3, 2]);
            assert_eq!(back.try_to_vec::<f32>().unwrap(), values);
        }
    }
}
