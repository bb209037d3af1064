//! A model's burn LoRA adapters written as a PEFT adapter directory (`adapter_config.json` +
//! `adapter_model.safetensors`) that `peft.PeftModel.from_pretrained` loads onto the PyTorch
//! twin.
//!
//! Names go through the model's mapping, so each adapted parameter's factors land under its
//! checkpoint key. A packed target (timm's `qkv` from burn's query, key and value) gets one
//! LoRA: when its parts share one factor (as loaded from PEFT) it is written once and the
//! others stacked (`B`'s rows), at the parts' rank; when training made them differ, the shared
//! side is stacked and the other made block-diagonal, a LoRA of the parts' summed rank whose
//! `B·A` is exactly the parts' deltas stacked — PEFT's `rank_pattern` / `alpha_pattern` carry
//! that rank and the scale.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::TensorData;

use super::Matrix;
use crate::error::{Cause, Error, Result};
use crate::export::{export_tensors, write_atomic, write_safetensors};
use crate::format::Convention;
use crate::mapping::{Layout, LoraFactors, Mapper, Mode, Pretrainable};

/// One parameter's factors in its own layout, as f32.
struct Attached {
    a: Matrix,
    b: Matrix,
    scale: f64,
}

fn matrix(data: TensorData) -> Option<Matrix> {
    let [rows, cols] = data.shape()[..] else {
        return None;
    };
    let values = data.convert::<f32>().try_into_vec::<f32>().ok()?;
    Some(Matrix { rows, cols, values })
}

fn vstack(parts: &[Matrix]) -> Matrix {
    Matrix {
        rows: parts.iter().map(|m| m.rows).sum(),
        cols: parts[0].cols,
        values: parts
            .iter()
            .flat_map(|m| m.values.iter().copied())
            .collect(),
    }
}

/// `parts` on the diagonal of a `Σrows × Σcols` matrix.
fn block_diagonal(parts: &[Matrix]) -> Matrix {
    let rows: usize = parts.iter().map(|m| m.rows).sum();
    let cols: usize = parts.iter().map(|m| m.cols).sum();
    let mut values = vec![0.0; rows * cols];
    let (mut r0, mut c0) = (0, 0);
    for m in parts {
        for r in 0..m.rows {
            let row = &m.values[r * m.cols..(r + 1) * m.cols];
            values[(r0 + r) * cols + c0..(r0 + r) * cols + c0 + m.cols].copy_from_slice(row);
        }
        r0 += m.rows;
        c0 += m.cols;
    }
    Matrix { rows, cols, values }
}

fn same(parts: &[Matrix]) -> bool {
    parts
        .windows(2)
        .all(|w| w[0].rows == w[1].rows && w[0].cols == w[1].cols && w[0].values == w[1].values)
}

/// One exported LoRA: `B` `[out, r]`, `A` `[r, in]` and its scale.
struct Lora {
    b: Matrix,
    a: Matrix,
    scale: f64,
}

/// Write `model`'s LoRA adapters to the directory `dir` as PEFT's adapter, with the tensors of
/// the checkpoint-key prefixes `modules_to_save` (a new head) saved whole as PEFT saves them.
/// Returns the number of adapted layers. Files are written atomically.
pub(crate) fn save_adapter<M: Pretrainable + Module>(
    model: &M,
    dir: &Path,
    modules_to_save: &[&str],
) -> Result<usize> {
    let fail = |detail: String| Error::Write {
        path: dir.to_path_buf(),
        source: detail.into(),
    };
    let mut mapper = Mapper::new(Convention::Pytorch, None, Mode::Lora(HashMap::new()));
    model.clone().map_pretrain(&mut mapper);
    let Mode::Lora(found) = std::mem::replace(&mut mapper.mode, Mode::Plan) else {
        unreachable!("the mapper was made to collect adapters")
    };
    let mut attached: HashMap<ParamId, Attached> = HashMap::new();
    for (id, LoraFactors { a, b, scale }) in found {
        let (Some(a), Some(b)) = (matrix(a), matrix(b)) else {
            return Err(fail(format!(
                "a LoRA adapter (parameter {id}) is not a pair of f32 matrices"
            )));
        };
        attached.insert(id, Attached { a, b, scale });
    }
    if attached.is_empty() {
        return Err(fail("the model has no LoRA adapter attached".into()));
    }
    let mut loras: Vec<(String, Lora)> = Vec::new();
    for target in &mapper.targets {
        if !target.pieces.iter().any(|p| attached.contains_key(&p.id)) {
            continue;
        }
        let Some(module) = target.key.strip_suffix(".weight") else {
            return Err(fail(format!(
                "`{}` has a LoRA but is not a layer's weight",
                target.key
            )));
        };
        // Each part's delta as `left · right` in the checkpoint's layout, the scale of the
        // first adapted part common to all (the others' folded into their left factor).
        let mut lefts = Vec::new();
        let mut rights = Vec::new();
        let mut scale = None;
        for piece in &target.pieces {
            let shape = piece.checkpoint_shape();
            let [rows, cols] = shape[..] else {
                return Err(fail(format!("`{}` is not a matrix", target.key)));
            };
            let (left, right) = match attached.remove(&piece.id) {
                Some(Attached { a, b, scale: s }) => {
                    let (l, r) = match piece.layout {
                        Layout::Transposed => (b.t(), a.t()),
                        _ => (a, b),
                    };
                    let common = *scale.get_or_insert(s);
                    let mut l = l;
                    if s != common {
                        let k = (s / common) as f32;
                        l.values.iter_mut().for_each(|v| *v *= k);
                    }
                    (l, r)
                }
                // A part without an adapter: a rank-0 block.
                None => (
                    Matrix {
                        rows,
                        cols: 0,
                        values: Vec::new(),
                    },
                    Matrix {
                        rows: 0,
                        cols,
                        values: Vec::new(),
                    },
                ),
            };
            if left.rows != rows || right.cols != cols {
                return Err(fail(format!(
                    "the LoRA of `{}` is {:?}, the parameter {:?}",
                    piece.model_path,
                    [left.rows, right.cols],
                    [rows, cols]
                )));
            }
            lefts.push(left);
            rights.push(right);
        }
        let scale = scale.unwrap_or(1.0);
        let (b, a) = match (target.pieces.len(), target.axis) {
            (1, _) => (lefts.remove(0), rights.remove(0)),
            (_, 0) if same(&rights) => (vstack(&lefts), rights.remove(0)),
            (_, 0) => (block_diagonal(&lefts), vstack(&rights)),
            (_, _) if same(&lefts) => (
                lefts.remove(0),
                vstack(&rights.iter().map(Matrix::t).collect::<Vec<_>>()).t(),
            ),
            (_, _) => (
                vstack(&lefts.iter().map(Matrix::t).collect::<Vec<_>>()).t(),
                block_diagonal(&rights),
            ),
        };
        loras.push((module.to_string(), Lora { b, a, scale }));
    }
    if let Some(id) = attached.keys().next() {
        return Err(fail(format!(
            "a LoRA adapter (parameter {id}) sits on a parameter the model's mapping does not name"
        )));
    }

    // The most common rank and scale are the config's `r` and alpha; others are patterns.
    let mut ranks: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, l) in &loras {
        *ranks.entry(l.a.rows).or_default() += 1;
    }
    let r = ranks.iter().max_by_key(|(_, n)| **n).map_or(1, |(r, _)| *r);
    let alpha_of = |l: &Lora| l.scale * l.a.rows as f64;
    let alpha = loras
        .iter()
        .find(|(_, l)| l.a.rows == r)
        .map_or(1.0, |(_, l)| alpha_of(l));
    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    let mut tensors = Vec::new();
    for (module, lora) in &loras {
        let escaped = regex::escape(module);
        if lora.a.rows != r {
            rank_pattern.insert(escaped.clone(), lora.a.rows.into());
        }
        // PEFT's scale is alpha / rank, alpha the config's unless a pattern gives another.
        let scale = alpha / lora.a.rows as f64;
        if (scale - lora.scale).abs() > 1e-12 * lora.scale.abs().max(1.0) {
            alpha_pattern.insert(escaped, alpha_of(lora).into());
        }
        tensors.push((
            format!("base_model.model.{module}.lora_A.weight"),
            TensorData::new(lora.a.values.clone(), [lora.a.rows, lora.a.cols]),
        ));
        tensors.push((
            format!("base_model.model.{module}.lora_B.weight"),
            TensorData::new(lora.b.values.clone(), [lora.b.rows, lora.b.cols]),
        ));
    }
    let mut saved_modules = Vec::new();
    if !modules_to_save.is_empty() {
        for (key, data) in export_tensors(model)? {
            if let Some(module) = modules_to_save
                .iter()
                .find(|m| key.starts_with(&format!("{m}.")))
            {
                if !saved_modules.contains(module) {
                    saved_modules.push(*module);
                }
                tensors.push((format!("base_model.model.{key}"), data));
            }
        }
        if let Some(missing) = modules_to_save.iter().find(|m| !saved_modules.contains(m)) {
            return Err(fail(format!(
                "modules_to_save `{missing}` names no tensor of the model"
            )));
        }
    }
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": null,
        "r": r,
        "lora_alpha": alpha,
        "target_modules": loras.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "modules_to_save": if saved_modules.is_empty() { serde_json::Value::Null } else { saved_modules.into() },
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "base_model_name_or_path": null,
    });
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: Cause::from(e),
    })?;
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors)?;
    let text = serde_json::to_string_pretty(&config).map_err(|e| fail(e.to_string()))?;
    write_atomic(&dir.join("adapter_config.json"), |file| {
        std::fs::write(file, text.as_bytes()).map_err(Cause::from)
    })?;
    Ok(loras.len())
}
