//! PEFT LoRA adapters on top of a load: `adapter_config.json` + `adapter_model.safetensors`,
//! mapped through the model's own mapping, attached as burn [`LoraAdapter`]s or merged.
//!
//! PEFT saves a LoRA on the module at `<path>` as `base_model.model.<path>.lora_A.weight`
//! (`[r, in]`) and `lora_B.weight` (`[out, r]`); the weight becomes `W + scale · B·A` with
//! `scale = alpha / r` (`alpha / √r` with rsLoRA). The adapter file is read through the same
//! view as a checkpoint (`sub_level` `base_model.model`, then the base load's `sub_level` and
//! remaps), so its keys are the model's checkpoint keys; `<path>.weight` names the plan target
//! the LoRA changes. A target packed from several parameters (timm's `attn.qkv` into burn's
//! query, key and value) gets one adapter per parameter: `B`'s rows (or `A`'s columns) split as
//! the weight's are, the other factor shared. The non-LoRA tensors of the file
//! (`modules_to_save`, trained biases) replace the model's through an ordinary plan.

mod config;
pub(crate) mod export;

use std::collections::{HashMap, HashSet};

use burn::module::{LoraAdapter, Module, Param, ParamId, Reparameterizer};
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::mapping::{Layout, Target};
use crate::report::AdaptedLayer;
use crate::source::{Fetcher, Location};
use crate::view::{View, ViewOptions};

pub(crate) use config::LoraConfig;

/// The suffixes of a LoRA's two factors in an adapter file (after the view).
const LORA_A: &str = ".lora_A.weight";
const LORA_B: &str = ".lora_B.weight";

/// Whether an adapter key is a LoRA factor (not a tensor that replaces the model's).
pub(crate) fn is_factor(key: &str) -> bool {
    key.ends_with(LORA_A) || key.ends_with(LORA_B)
}

/// An adapter's files, fetched: its config parsed and the local path of its weights.
#[derive(Debug)]
pub(crate) struct AdapterFiles {
    pub config: LoraConfig,
    pub weights: Location,
}

/// `name` in the folder `dir` (a path or a URI; an http(s) URL keeps its query, a signed
/// URL's token, after the file name).
fn file_in(dir: &str, name: &str) -> String {
    let (path, query) = match dir.split_once('?') {
        Some((path, query)) if dir.starts_with("http://") || dir.starts_with("https://") => {
            (path, Some(query))
        }
        _ => (dir, None),
    };
    let joined = format!("{}/{name}", path.trim_end_matches('/'));
    match query {
        Some(query) => format!("{joined}?{query}"),
        None => joined,
    }
}

/// Fetch `adapter_config.json` and the weights (`adapter_model.safetensors`, else
/// `adapter_model.bin`) of the adapter directory `location` through `fetcher`'s sources and cache.
pub(crate) fn fetch(fetcher: &Fetcher, location: &str) -> Result<AdapterFiles> {
    let fail = |detail: String| Error::Adapter {
        location: crate::source::redact(location),
        detail,
    };
    let config_at = Location::parse(&file_in(location, "adapter_config.json"))?;
    let config_path = fetcher.fetch(&config_at, false)?.path;
    let text = crate::source::local::read_bounded_text(&config_path, 1 << 20).map_err(|e| {
        fail(format!(
            "cannot read {}: {e} (an adapter is a directory with adapter_config.json)",
            config_path.display()
        ))
    })?;
    let config =
        LoraConfig::parse(&text).map_err(|e| fail(format!("{}: {e}", config_path.display())))?;
    let mut last = None;
    for name in ["adapter_model.safetensors", "adapter_model.bin"] {
        let at = Location::parse(&file_in(location, name))?;
        match fetcher.fetch(&at, false) {
            Ok(fetched) if fetched.path.is_file() => {
                return Ok(AdapterFiles {
                    config,
                    weights: Location::Local(fetched.path),
                });
            }
            Ok(fetched) => last = Some(fail(format!("{} does not exist", fetched.path.display()))),
            Err(e @ Error::NotFound { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| fail("no adapter_model.safetensors".into())))
}

/// How the adapter file is viewed: below `base_model.model` (and the base load's `sub_level`),
/// with the base load's remaps, so its keys are the model's checkpoint keys.
pub(crate) fn view_options(base: &ViewOptions) -> ViewOptions {
    let mut options = base.clone();
    options.sub_level = Some(match &base.sub_level {
        Some(level) => format!("base_model.model.{level}"),
        None => "base_model.model".into(),
    });
    options.ema = false;
    options.convert = Vec::new();
    options.align = crate::view::Align::Off;
    options
}

/// The factors one model parameter gets: `a` `[d_in, r]`, `b` `[r, d_out]` in the
/// parameter's own layout, so `base + scale · a·b` is PEFT's weight.
#[derive(Debug)]
pub(crate) struct Factors {
    a: TensorData,
    b: TensorData,
    scale: f64,
}

/// Every LoRA of an adapter, planned against the model: factors by parameter id, and what
/// the report lists.
#[derive(Debug, Default)]
pub(crate) struct LoraPlan {
    pub factors: HashMap<ParamId, Factors>,
    pub layers: Vec<AdaptedLayer>,
}

/// A row-major matrix of f32.
#[derive(Debug, Clone)]
struct Matrix {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

impl Matrix {
    fn t(&self) -> Matrix {
        let mut values = vec![0.0; self.values.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                values[c * self.rows + r] = self.values[r * self.cols + c];
            }
        }
        Matrix {
            rows: self.cols,
            cols: self.rows,
            values,
        }
    }

    fn rows(&self, range: std::ops::Range<usize>) -> Matrix {
        Matrix {
            rows: range.len(),
            cols: self.cols,
            values: self.values[range.start * self.cols..range.end * self.cols].to_vec(),
        }
    }

    fn cols(&self, range: std::ops::Range<usize>) -> Matrix {
        self.t().rows(range).t()
    }

    fn into_data(self) -> TensorData {
        TensorData::new(self.values, [self.rows, self.cols])
    }
}

/// Read the view entry `key` as an f32 matrix.
fn matrix(view: &View, key: &str, fail: &dyn Fn(String) -> Error) -> Result<Matrix> {
    let entry = view
        .entries
        .iter()
        .find(|e| e.key == key)
        .ok_or_else(|| fail(format!("`{key}` has no partner factor")))?;
    let shape = entry.entry.shape();
    let [rows, cols] = shape else {
        return Err(fail(format!(
            "`{key}` has shape {shape:?}: only LoRAs of Linear layers (2-D factors) can be applied"
        )));
    };
    let bytes = entry.entry.read().map_err(|source| Error::TensorData {
        path: entry.entry.file().to_path_buf(),
        key: entry.entry.key().to_string(),
        source,
    })?;
    let data =
        TensorData::from_bytes_vec(bytes, shape.to_vec(), entry.entry.dtype().to_burn_dtype())
            .convert::<f32>();
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| fail(format!("`{key}` is not a float tensor: {e:?}")))?;
    Ok(Matrix {
        rows: *rows,
        cols: *cols,
        values,
    })
}

/// Plan every LoRA of the adapter `view` against the model's plan `targets` (by checkpoint key).
pub(crate) fn plan(
    location: &str,
    config: &LoraConfig,
    view: &View,
    targets: &HashMap<&str, &Target>,
) -> Result<LoraPlan> {
    let fail = |detail: String| Error::Adapter {
        location: crate::source::redact(location),
        detail,
    };
    let mut plan = LoraPlan::default();
    let modules: Vec<&str> = view
        .entries
        .iter()
        .filter_map(|e| e.key.strip_suffix(LORA_A))
        .collect();
    for e in &view.entries {
        if let Some(module) = e.key.strip_suffix(LORA_B)
            && !modules.contains(&module)
        {
            return Err(fail(format!("`{}` has no `{module}{LORA_A}`", e.key)));
        }
    }
    for module in modules {
        if !config.targets(module) {
            return Err(fail(format!(
                "`{module}{LORA_A}`: `{module}` is not among the config's target_modules"
            )));
        }
        let key = format!("{module}.weight");
        let Some(target) = targets.get(key.as_str()) else {
            return Err(fail(format!(
                "`{module}{LORA_A}` adapts `{key}`, which the model does not have"
            )));
        };
        let a = matrix(view, &format!("{module}{LORA_A}"), &fail)?;
        let b = matrix(view, &format!("{module}{LORA_B}"), &fail)?;
        let (rank, alpha) = config.rank_alpha(module);
        if a.rows != rank || b.cols != rank {
            return Err(fail(format!(
                "`{module}`: lora_A is {:?} and lora_B {:?}, but the config gives rank {rank}",
                [a.rows, a.cols],
                [b.rows, b.cols]
            )));
        }
        let stored = target.checkpoint_shape();
        // The base weight's `[rows, cols]` as stored: PyTorch's `[out, in]`, or `[in, out]`
        // for `fan_in_fan_out` (GPT-2's Conv1D). Its delta is `left · right` either way.
        let (left, right) = if config.fan_in_fan_out {
            (a.t(), b.t())
        } else {
            (b, a)
        };
        if stored != [left.rows, right.cols] {
            return Err(fail(format!(
                "`{module}`: B·A is {:?} but `{key}` is {stored:?} in the model",
                [left.rows, right.cols]
            )));
        }
        let scale = config.scale(rank, alpha);
        let mut offset = 0;
        for piece in &target.pieces {
            let shape = piece.checkpoint_shape();
            let [rows, cols] = shape[..] else {
                return Err(fail(format!("`{key}` is not a matrix in the model")));
            };
            let (l, r) = match target.axis {
                0 if target.is_packed() => (left.rows(offset..offset + rows), right.clone()),
                1 if target.is_packed() => (left.clone(), right.cols(offset..offset + cols)),
                _ => (left.clone(), right.clone()),
            };
            offset += if target.axis == 0 { rows } else { cols };
            let (a, b) = match piece.layout {
                Layout::Transposed => (r.t(), l.t()),
                _ => (l, r),
            };
            plan.factors.insert(
                piece.id,
                Factors {
                    a: a.into_data(),
                    b: b.into_data(),
                    scale,
                },
            );
        }
        plan.layers.push(AdaptedLayer {
            key,
            parts: target.pieces.iter().map(|p| p.model_path.clone()).collect(),
            rank,
            scale,
        });
    }
    Ok(plan)
}

/// Attach `plan`'s factors to `model` as burn LoRA adapters. Unless `merge`, every other float
/// parameter except `trainable` (what `modules_to_save` replaced) stops requiring gradients,
/// as PEFT trains only the adapter; with `merge`, the adapters are folded into the weights
/// (`materialize`) and nothing else changes.
pub(crate) fn attach<M: Module>(
    model: M,
    plan: LoraPlan,
    merge: bool,
    trainable: &HashSet<ParamId>,
) -> M {
    let attached = model.apply_reparameterization(Attach {
        factors: plan.factors,
        merge,
        trainable,
    });
    if merge {
        attached.materialize()
    } else {
        attached
    }
}

struct Attach<'t> {
    factors: HashMap<ParamId, Factors>,
    merge: bool,
    trainable: &'t HashSet<ParamId>,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let factors = self.factors.remove(&param.id);
        let param = match self.merge || self.trainable.contains(&param.id) {
            true => param,
            false => param.set_require_grad(false),
        };
        let Some(Factors { a, b, scale }) = factors else {
            return (param, None);
        };
        let device = param.lazy_device();
        let dtype = param.val().dtype();
        let factor = |data: TensorData| {
            let tensor = Tensor::<2>::from_data(data, &device);
            let tensor = match dtype.is_float() && tensor.dtype() != dtype {
                true => tensor.cast(FloatDType::from(dtype)),
                false => tensor,
            };
            Param::from_tensor(tensor)
        };
        let adapter = LoraAdapter {
            a: factor(a),
            b: factor(b),
            scale,
        };
        (param, Some(adapter))
    }
}

#[cfg(test)]
mod tests {
    use super::file_in;

    #[test]
    fn files_of_an_adapter_folder_keep_a_url_s_query() {
        assert_eq!(file_in("lora/", "a.json"), "lora/a.json");
        assert_eq!(file_in("hf://org/repo", "a.json"), "hf://org/repo/a.json");
        assert_eq!(
            file_in("https://h/x/lora?sig=1&t=2", "a.json"),
            "https://h/x/lora/a.json?sig=1&t=2"
        );
    }
}
