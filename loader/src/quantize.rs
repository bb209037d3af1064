//! `quantize`: parameters quantized while they load, with burn's own quantizer.
//!
//! burn quantizes a model once it is loaded in float (`Module::quantize_weights`), so a model
//! needs its float size in memory first. Here the plan is read and applied in batches of about
//! [`BATCH_BYTES`] of tensor data, and each batch's chosen parameters are quantized with
//! burn's `quantize_weights_group` right after they are put in: the values are burn's own, bit
//! for bit (same scheme, same min-max calibration, same code), while the float bytes alive at
//! once stay near one batch.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::quantization::{QuantScheme, QuantValue, ScaleDtype};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::expect::patterns;
use crate::plan::{Action, Plan};

/// Float bytes read and applied before a batch is quantized (a batch holds at least one
/// tensor). Measured on 806 MB of Linears quantized to Q8: peak resident 281 MB with 8 MiB,
/// 296 MB with 32 MiB, the same time.
pub(crate) const BATCH_BYTES: u64 = 8 << 20;

/// The quantized value type: symmetric (`q8s`, `q4s`, `q2s`) or full-range (`q8f`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Value {
    /// 8-bit, symmetric range.
    Q8s,
    /// 4-bit, symmetric range.
    Q4s,
    /// 2-bit, symmetric range.
    Q2s,
    /// 8-bit, full range.
    Q8f,
    /// 4-bit, full range.
    Q4f,
    /// 2-bit, full range.
    Q2f,
}

/// The precision of the scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scale {
    /// f32 scales.
    F32,
    /// f16 scales.
    F16,
    /// bf16 scales.
    Bf16,
}

/// Which parameters to quantize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Params {
    /// `"linear"`: the weight of every burn `Linear` (attention projections and recurrent
    /// gates included).
    Linear(LinearWord),
    /// Every loaded parameter whose checkpoint key or model path matches one of these regexes.
    Keys(Vec<String>),
}

/// The word `linear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinearWord {
    /// Every Linear weight.
    Linear,
}

/// Quantize parameters while they load: `{"value": "q8s", "block": 32, "scale": "f16",
/// "params": "linear"}` (those are the defaults but `value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Quantize {
    /// The quantized value type.
    pub value: Value,
    /// Values per scale along the last axis (`None`: one scale per tensor).
    #[serde(default = "block_32")]
    pub block: Option<u8>,
    /// The scales' precision.
    #[serde(default = "f16")]
    pub scale: Scale,
    /// Which parameters.
    #[serde(default = "linear")]
    pub params: Params,
}

fn block_32() -> Option<u8> {
    Some(32)
}

fn f16() -> Scale {
    Scale::F16
}

fn linear() -> Params {
    Params::Linear(LinearWord::Linear)
}

impl Quantize {
    /// Every Linear weight as `value`, in blocks of 32 with f16 scales.
    pub fn new(value: Value) -> Self {
        Self {
            value,
            block: block_32(),
            scale: f16(),
            params: linear(),
        }
    }

    /// Blocks of `block` values per scale (`None`: one per tensor).
    pub fn with_block(mut self, block: Option<u8>) -> Self {
        self.block = block;
        self
    }

    /// Scales of this precision.
    pub fn with_scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// Which parameters to quantize.
    pub fn with_params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// burn's `QuantScheme` for these settings (packed into `u32`s, burn's default store).
    pub fn scheme(&self) -> QuantScheme {
        let value = match self.value {
            Value::Q8s => QuantValue::Q8S,
            Value::Q4s => QuantValue::Q4S,
            Value::Q2s => QuantValue::Q2S,
            Value::Q8f => QuantValue::Q8F,
            Value::Q4f => QuantValue::Q4F,
            Value::Q2f => QuantValue::Q2F,
        };
        let scale = match self.scale {
            Scale::F32 => ScaleDtype::F32,
            Scale::F16 => ScaleDtype::F16,
            Scale::Bf16 => ScaleDtype::BF16,
        };
        let scheme = QuantScheme::default().with_value(value);
        match self.block {
            Some(block) => scheme.per_block([block], scale),
            None => scheme.per_tensor(scale),
        }
    }

    /// Bytes a tensor of `elements` values takes quantized (values and scales).
    pub fn quantized_bytes(&self, elements: usize) -> u64 {
        let bits = self.scheme().value.size_bits() as u64;
        let scales = match self.block {
            Some(block) => elements.div_ceil(block.max(1) as usize) as u64,
            None => 1,
        };
        let scale_bytes = match self.scale {
            Scale::F32 => 4,
            Scale::F16 | Scale::Bf16 => 2,
        };
        (elements as u64 * bits).div_ceil(8) + scales * scale_bytes
    }
}

/// `q8s, blocks of 32, f16 scales` (or `…, per tensor, …`): the scheme as the report says it.
impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::to_value(self.value).unwrap_or_default();
        let scale = serde_json::to_value(self.scale).unwrap_or_default();
        let (value, scale) = (value.as_str().unwrap_or("?"), scale.as_str().unwrap_or("?"));
        match self.block {
            Some(block) => write!(f, "{value}, blocks of {block}, {scale} scales"),
            None => write!(f, "{value}, per tensor, {scale} scales"),
        }
    }
}

/// A [`Quantize`] with its patterns compiled, resolved at the entry of a load.
#[derive(Debug)]
pub(crate) struct Quantizing {
    pub options: Quantize,
    keys: Option<Vec<Regex>>,
}

impl Quantizing {
    pub fn compile(options: &Quantize) -> Result<Self> {
        if options.block == Some(0) {
            return Err(Error::InvalidSpec {
                field: "quantize.block".into(),
                detail: "a block of 0 values".into(),
            });
        }
        let keys = match &options.params {
            Params::Linear(_) => None,
            Params::Keys(keys) => Some(patterns("quantize.params", keys)?),
        };
        Ok(Self {
            options: options.clone(),
            keys,
        })
    }

    /// For each plan item, whether its parameters are quantized: a loaded one chosen by key
    /// pattern, or (`linear`) the `weight` of a burn `Linear` of `model` — unless a block
    /// does not divide its last axis, which burn's quantizer cannot do (left in float).
    pub fn chosen<M: Module>(&self, plan: &Plan, model: &M) -> Vec<Choice> {
        let linear = match self.keys {
            None => linear_weight_ids(model),
            Some(_) => HashSet::new(),
        };
        plan.items
            .iter()
            .map(|item| {
                let target = &item.target;
                let wanted = matches!(item.action, Action::Load { .. })
                    && match &self.keys {
                        None => target.pieces.iter().all(|p| linear.contains(&p.id)),
                        Some(patterns) => patterns.iter().any(|re| {
                            re.is_match(&target.key)
                                || target.pieces.iter().any(|p| re.is_match(&p.model_path))
                        }),
                    };
                let divides = |block: u8| {
                    target
                        .pieces
                        .iter()
                        .all(|p| p.shape.last().is_some_and(|n| n % block as usize == 0))
                };
                match (wanted, self.options.block) {
                    (false, _) => Choice::Kept,
                    (true, Some(block)) if !divides(block) => Choice::Indivisible,
                    (true, _) => Choice::Quantized,
                }
            })
            .collect()
    }
}

/// What quantizing does to one plan item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Not chosen: loaded as it is.
    Kept,
    /// Quantized.
    Quantized,
    /// Chosen, but the block does not divide its last axis: left in float.
    Indivisible,
}

/// The ids of the `weight` of every burn `Linear` in `model` (burn's visitor enters it as
/// field `weight` of a `Struct:Linear`): what `"params": "linear"` quantizes, as a set for
/// burn's `ParamGroup::from_ids`.
pub fn linear_weight_ids<M: Module>(model: &M) -> HashSet<ParamId> {
    #[derive(Default)]
    struct Linears {
        at: Vec<(String, String)>,
        ids: HashSet<ParamId>,
    }
    impl ModuleVisitor for Linears {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.at.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some((name, container)) = self.at.last()
                && name == "weight"
                && container == "Struct:Linear"
            {
                self.ids.insert(param.id);
            }
        }
    }
    let mut linears = Linears::default();
    model.visit(&mut linears);
    linears.ids
}
