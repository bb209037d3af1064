//! `Pretrainable` for every public burn-nn module, under PyTorch's names and layouts:
//!
//! - Linear's weight is `[out, in]` in PyTorch and `[in, out]` in burn (Row layout); norms call
//!   their affine parameters `weight`/`bias` in PyTorch and `gamma`/`beta` in burn;
//!   BatchNorm's `num_batches_tracked` counter is known, ignored on load and written on export.
//! - Recurrent layers take `nn.LSTM`/`nn.GRU`/`nn.RNN`'s packed tensors: `weight_ih_l{k}` holds
//!   the gates row-wise (LSTM: i, f, g, o; GRU: r, z, n), `*_reverse` the backward direction,
//!   and a `Vec` of them is a multi-layer network (`_l0`, `_l1`, …).
//! - `MultiHeadAttention` takes `nn.MultiheadAttention`'s `in_proj_weight` (q, k, v stacked)
//!   or its separate `q_proj_weight`/`k_proj_weight`/`v_proj_weight`, and `out_proj`; or
//!   separate projection Linears, `q_proj`/`k_proj`/`v_proj` (CLIP, BART, Whisper, Llama) or
//!   `query`/`key`/`value` (BERT), with or without biases.
//! - Transformer layers take `nn.TransformerEncoderLayer`/`nn.TransformerDecoderLayer`'s names,
//!   with the norms matched by position in the computation (they depend on `norm_first`).
//! - Parameter-free layers map nothing.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{self, activation, attention, conv, interpolate, loss, pool, transformer};
use burn::tensor::{Tensor, TensorData};

use crate::format::Convention;
use crate::mapping::{Layout, Mapper, Part, Pretrainable, linear_layout, nothing_to_load};

/// The checkpoint names of a norm's scale and shift.
fn affine_names(convention: Convention) -> (&'static str, &'static str) {
    match convention {
        Convention::Pytorch => ("weight", "bias"),
        Convention::Burn => ("gamma", "beta"),
    }
}

impl Pretrainable for nn::Linear {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        // A Row linear (burn's default) keeps `[in, out]`, PyTorch's transpose; a Col linear
        // is loaded as `[out, in]`, like PyTorch, and burn's load mapper transposes it.
        let layout = linear_layout(&self.weight);
        m.field("weight", "weight", |m| m.param(&mut self.weight, layout));
        m.child("bias", "bias", &mut self.bias);
    }
}

/// Layers whose fields `weight` and `bias` carry PyTorch's names and layout.
macro_rules! weight_and_bias {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                    m.child("weight", "weight", &mut self.weight);
                    m.child("bias", "bias", &mut self.bias);
                }
            }
        )*
    };
}

weight_and_bias!(
    conv::Conv1d,
    conv::Conv2d,
    conv::Conv3d,
    conv::ConvTranspose1d,
    conv::ConvTranspose2d,
    conv::ConvTranspose3d,
    conv::DeformConv2d,
);

impl Pretrainable for nn::Embedding {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("weight", "weight", &mut self.weight);
    }
}

impl Pretrainable for nn::PRelu {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("weight", "alpha", &mut self.alpha);
    }
}

impl Pretrainable for nn::BatchNorm {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        let (scale, shift) = affine_names(m.convention());
        m.child(scale, "gamma", &mut self.gamma);
        m.child(shift, "beta", &mut self.beta);
        m.child("running_mean", "running_mean", &mut self.running_mean);
        m.child("running_var", "running_var", &mut self.running_var);
        m.unused(
            "num_batches_tracked",
            "BatchNorm step counter, not a parameter",
        );
        m.export_constant("num_batches_tracked", || {
            TensorData::new(vec![0i64], Vec::<usize>::new())
        });
    }
}

/// Norms with a scale `gamma` and a shift `beta`, either possibly absent.
macro_rules! affine_norm {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                    let (scale, shift) = affine_names(m.convention());
                    m.child(scale, "gamma", &mut self.gamma);
                    m.child(shift, "beta", &mut self.beta);
                }
            }
        )*
    };
}

affine_norm!(nn::LayerNorm, nn::GroupNorm, nn::InstanceNorm);

impl Pretrainable for nn::RmsNorm {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        let (scale, _) = affine_names(m.convention());
        m.child(scale, "gamma", &mut self.gamma);
    }
}

/// Enums of layers: transparent, each variant maps as the layer it holds.
macro_rules! transparent_enum {
    ($ty:ty { $($variant:ident),* $(,)? }) => {
        impl Pretrainable for $ty {
            fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                match self {
                    $(Self::$variant(inner) => inner.map_pretrain(m),)*
                    // A variant newer than this crate: its parameters under burn's paths.
                    other => by_module_paths(other, m),
                }
            }
        }
    };
}

transparent_enum!(nn::norm::Normalization {
    Identity,
    Batch,
    Group,
    Instance,
    Layer,
    Rms
});

transparent_enum!(activation::Activation {
    Identity,
    Gelu,
    PRelu,
    Relu,
    LeakyRelu,
    SwiGlu,
    Selu,
    Sigmoid,
    Tanh,
    HardSigmoid,
    HardSwish,
    Softplus,
    Softsign,
    Elu,
    Celu,
    ThresholdedRelu,
    HardShrink,
    SoftShrink,
    Shrink
});

/// Layers made of two Linears under burn's own field names (no single PyTorch twin:
/// a PyTorch module with the same attribute names loads as is).
macro_rules! inner_outer {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                    m.child("linear_inner", "linear_inner", &mut self.linear_inner);
                    m.child("linear_outer", "linear_outer", &mut self.linear_outer);
                }
            }
        )*
    };
}

inner_outer!(nn::SwiGlu, transformer::PositionWiseFeedForward);

impl Pretrainable for nn::GateController {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child(
            "input_transform",
            "input_transform",
            &mut self.input_transform,
        );
        m.child(
            "hidden_transform",
            "hidden_transform",
            &mut self.hidden_transform,
        );
    }
}

/// Map recurrent gates to PyTorch's packed tensors `weight_ih`, `weight_hh`, `bias_ih`,
/// `bias_hh` (with the layer's suffix), the gates in PyTorch's row order. `gates` pairs each
/// gate's field name with its controller; an absent gate (LSTM's coupled forget gate) leaves
/// the packed shape short, so the checkpoint's tensor is reported as a shape mismatch.
fn map_gates(m: &mut Mapper<'_>, gates: Vec<(&str, &mut nn::GateController)>) {
    let suffix = m.rnn_suffix();
    let names: Vec<(String, String, String, String)> = gates
        .iter()
        .map(|(name, _)| {
            (
                format!("{name}.input_transform.weight"),
                format!("{name}.hidden_transform.weight"),
                format!("{name}.input_transform.bias"),
                format!("{name}.hidden_transform.bias"),
            )
        })
        .collect();
    let mut w_ih = Vec::new();
    let mut w_hh = Vec::new();
    let mut b_ih = Vec::new();
    let mut b_hh = Vec::new();
    for ((_, gate), (wi, wh, bi, bh)) in gates.into_iter().zip(&names) {
        let input = &mut gate.input_transform;
        let layout = linear_layout(&input.weight);
        w_ih.push(Part::new(wi, &mut input.weight, layout));
        if let Some(bias) = &mut input.bias {
            b_ih.push(Part::new(bi, bias, Layout::Same));
        }
        let hidden = &mut gate.hidden_transform;
        let layout = linear_layout(&hidden.weight);
        w_hh.push(Part::new(wh, &mut hidden.weight, layout));
        if let Some(bias) = &mut hidden.bias {
            b_hh.push(Part::new(bh, bias, Layout::Same));
        }
    }
    m.packed(&format!("weight_ih{suffix}"), 0, w_ih);
    m.packed(&format!("weight_hh{suffix}"), 0, w_hh);
    m.packed(&format!("bias_ih{suffix}"), 0, b_ih);
    m.packed(&format!("bias_hh{suffix}"), 0, b_hh);
}

/// A list of recurrent layers: PyTorch's multi-layer network (`_l0`, `_l1`, … at the list's
/// own level), unless the checkpoint keys them by index (`nn.ModuleList` of single layers).
fn map_stacked<T: Pretrainable>(items: &mut [T], m: &mut Mapper<'_>) {
    if m.convention() == Convention::Burn || m.has_prefix("0") {
        for (i, item) in items.iter_mut().enumerate() {
            let i = i.to_string();
            m.field(&i, &i, |m| m.rnn_layer(0, false, |m| item.map_pretrain(m)));
        }
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        let field = i.to_string();
        m.field("", &field, |m| {
            let (_, reverse) = m.rnn_state();
            m.rnn_layer(i, reverse, |m| item.map_pretrain(m));
        });
    }
}

/// Bidirectional layers: the forward direction under the layer's suffix, the reverse one
/// under `…_reverse`, both at the same level.
macro_rules! recurrent {
    ($ty:ty, $bi:ty, |$this:ident| $gates:expr) => {
        impl Pretrainable for $ty {
            fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                let $this = self;
                map_gates(m, $gates);
            }

            fn map_pretrain_list(items: &mut [Self], m: &mut Mapper<'_>) {
                map_stacked(items, m);
            }
        }

        impl Pretrainable for $bi {
            fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                let (layer, _) = m.rnn_state();
                m.field("", "forward", |m| {
                    m.rnn_layer(layer, false, |m| self.forward.map_pretrain(m))
                });
                m.field("", "reverse", |m| {
                    m.rnn_layer(layer, true, |m| self.reverse.map_pretrain(m))
                });
            }

            fn map_pretrain_list(items: &mut [Self], m: &mut Mapper<'_>) {
                map_stacked(items, m);
            }
        }
    };
}

recurrent!(nn::Lstm, nn::BiLstm, |lstm| {
    // PyTorch's row order: input, forget, cell (g), output.
    let mut gates = vec![("input_gate", &mut lstm.input_gate)];
    if let Some(forget) = &mut lstm.forget_gate {
        gates.push(("forget_gate", forget));
    }
    gates.push(("cell_gate", &mut lstm.cell_gate));
    gates.push(("output_gate", &mut lstm.output_gate));
    gates
});

recurrent!(nn::Gru, nn::BiGru, |gru| vec![
    // PyTorch's row order: reset, update (z), new.
    ("reset_gate", &mut gru.reset_gate),
    ("update_gate", &mut gru.update_gate),
    ("new_gate", &mut gru.new_gate),
]);

recurrent!(nn::Rnn, nn::BiRnn, |rnn| vec![("gate", &mut rnn.gate)]);

impl Pretrainable for attention::MultiHeadAttention {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        // Four checkpoint forms, told apart by the keys present (export, which has none, writes
        // `nn.MultiheadAttention`'s packed form unless given the keys to follow):
        // - separate Linears `q_proj`/`k_proj`/`v_proj`/`out_proj` (CLIP, BART, Whisper, Llama);
        // - separate Linears `query`/`key`/`value` with the output at `out_proj` (BERT keeps
        //   its output at `attention.output.dense`, outside this subtree: one remap of it);
        // - `nn.MultiheadAttention`'s `q_proj_weight`… (key/value dims differ from the model's);
        // - its packed `in_proj_weight`/`in_proj_bias` (the default).
        if m.has_prefix("q_proj") && m.has_prefix("k_proj") && m.has_prefix("v_proj") {
            m.child("q_proj", "query", &mut self.query);
            m.child("k_proj", "key", &mut self.key);
            m.child("v_proj", "value", &mut self.value);
        } else if m.has_prefix("query") && m.has_prefix("key") && m.has_prefix("value") {
            m.child("query", "query", &mut self.query);
            m.child("key", "key", &mut self.key);
            m.child("value", "value", &mut self.value);
        } else if m.has_key("q_proj_weight") && !m.has_key("in_proj_weight") {
            let [q, k, v] = [&mut self.query, &mut self.key, &mut self.value];
            let layouts = [&q.weight, &k.weight, &v.weight].map(linear_layout);
            m.field("q_proj_weight", "query.weight", |m| {
                m.param(&mut q.weight, layouts[0])
            });
            m.field("k_proj_weight", "key.weight", |m| {
                m.param(&mut k.weight, layouts[1])
            });
            m.field("v_proj_weight", "value.weight", |m| {
                m.param(&mut v.weight, layouts[2])
            });
            m.packed("in_proj_bias", 0, qkv_biases([q, k, v]));
        } else {
            packed_qkv(m, self, "in_proj_weight", "in_proj_bias");
        }
        m.child("out_proj", "output", &mut self.output);
    }
}

/// Map a `MultiHeadAttention`'s query, key and value from one packed projection, as PyTorch
/// and timm store them: the weights stacked along the output axis at `weight`
/// (`[3·D, D]`), the biases at `bias` (`[3·D]`; none where the projections have none), both
/// keys below the current level. `nn.MultiheadAttention` names them `in_proj_weight` and
/// `in_proj_bias`; timm's `Attention` is a Linear `qkv` (`qkv.weight`, `qkv.bias`). The output
/// projection is the caller's to map (`out_proj`, timm's `proj`).
pub fn packed_qkv(
    m: &mut Mapper<'_>,
    mha: &mut attention::MultiHeadAttention,
    weight: &str,
    bias: &str,
) {
    let [q, k, v] = [&mut mha.query, &mut mha.key, &mut mha.value];
    let layouts = [&q.weight, &k.weight, &v.weight].map(linear_layout);
    m.packed(
        weight,
        0,
        vec![
            Part::new("query.weight", &mut q.weight, layouts[0]),
            Part::new("key.weight", &mut k.weight, layouts[1]),
            Part::new("value.weight", &mut v.weight, layouts[2]),
        ],
    );
    m.packed(bias, 0, qkv_biases([q, k, v]));
}

/// The biases of query, key and value that exist, in that order.
fn qkv_biases<'p>(linears: [&'p mut nn::Linear; 3]) -> Vec<Part<'p, 1>> {
    ["query.bias", "key.bias", "value.bias"]
        .into_iter()
        .zip(linears)
        .filter_map(|(name, linear)| {
            linear
                .bias
                .as_mut()
                .map(|bias| Part::new(name, bias, Layout::Same))
        })
        .collect()
}

impl Pretrainable for transformer::TransformerEncoderLayer {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("self_attn", "mha", &mut self.mha);
        m.child("linear1", "pwff.linear_inner", &mut self.pwff.linear_inner);
        m.child("linear2", "pwff.linear_outer", &mut self.pwff.linear_outer);
        // PyTorch names norms by position in its code; burn's `norm_2` runs before attention
        // when `norm_first` (PyTorch's `norm1`) and after the feed-forward otherwise (`norm2`).
        let (n1, n2) = if self.norm_first {
            ("norm2", "norm1")
        } else {
            ("norm1", "norm2")
        };
        m.child(n1, "norm_1", &mut self.norm_1);
        m.child(n2, "norm_2", &mut self.norm_2);
    }
}

impl Pretrainable for transformer::TransformerDecoderLayer {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("self_attn", "self_attn", &mut self.self_attn);
        m.child("multihead_attn", "cross_attn", &mut self.cross_attn);
        m.child("linear1", "pwff.linear_inner", &mut self.pwff.linear_inner);
        m.child("linear2", "pwff.linear_outer", &mut self.pwff.linear_outer);
        // Post-norm: norm_1/2/3 follow self-attention, cross-attention, feed-forward, as
        // PyTorch's norm1/2/3 do. Pre-norm: burn's norm_3 precedes self-attention (norm1),
        // norm_1 cross-attention (norm2), norm_2 the feed-forward (norm3).
        let (n1, n2, n3) = if self.norm_first {
            ("norm2", "norm3", "norm1")
        } else {
            ("norm1", "norm2", "norm3")
        };
        m.child(n1, "norm_1", &mut self.norm_1);
        m.child(n2, "norm_2", &mut self.norm_2);
        m.child(n3, "norm_3", &mut self.norm_3);
    }
}

impl Pretrainable for transformer::TransformerEncoder {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("layers", "layers", &mut self.layers);
    }
}

impl Pretrainable for transformer::TransformerDecoder {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("layers", "layers", &mut self.layers);
    }
}

impl Pretrainable for attention::CrossAttention {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        by_module_paths(self, m);
    }
}

/// Map a module whose fields are private through burn's own visitor: every float parameter
/// under its module path, Linear weights in PyTorch's `[out, in]`.
fn by_module_paths<M: Module + Clone>(module: &mut M, m: &mut Mapper<'_>) {
    let mut walk = PathWalk {
        path: Vec::new(),
        containers: Vec::new(),
        mapper: m,
    };
    *module = module.clone().map(&mut walk);
}

struct PathWalk<'m, 'a> {
    path: Vec<String>,
    containers: Vec<String>,
    mapper: &'m mut Mapper<'a>,
}

impl ModuleMapper for PathWalk<'_, '_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        // burn enters each field with the type of the struct that holds it.
        let owner = self.containers.last().map(String::as_str);
        let layout = if owner == Some("Struct:Linear") && path.ends_with("weight") {
            linear_layout(&param)
        } else {
            Layout::Same
        };
        self.mapper
            .field(&path, &path, |m| m.param(&mut param, layout));
        param
    }
}

nothing_to_load!(
    nn::Dropout,
    nn::Identity,
    nn::PaddingConfig1d,
    nn::PaddingConfig2d,
    nn::PaddingConfig3d,
    nn::LocalResponseNorm,
    nn::PixelShuffle,
    nn::PixelUnshuffle,
    nn::Fold4d,
    nn::Unfold4d,
    nn::GaussianNoise,
    nn::CosineSimilarity,
    nn::PairwiseDistance,
    nn::PositionalEncoding,
    nn::RotaryEncoding,
    interpolate::Interpolate1d,
    interpolate::Interpolate2d,
    pool::MaxPool1d,
    pool::MaxPool2d,
    pool::AvgPool1d,
    pool::AvgPool2d,
    pool::AdaptiveAvgPool1d,
    pool::AdaptiveAvgPool2d,
    pool::AdaptiveAvgPool3d,
);

nothing_to_load!(
    activation::Relu,
    activation::Gelu,
    activation::Sigmoid,
    activation::Tanh,
    activation::LeakyRelu,
    activation::Celu,
    activation::Elu,
    activation::GLU,
    activation::HardShrink,
    activation::HardSigmoid,
    activation::HardSwish,
    activation::Hardtanh,
    activation::LogSigmoid,
    activation::Mish,
    activation::Relu6,
    activation::RRelu,
    activation::Selu,
    activation::Shrink,
    activation::SiLU,
    activation::SoftShrink,
    activation::Softplus,
    activation::Softsign,
    activation::Tanhshrink,
    activation::Threshold,
    activation::ThresholdedRelu,
);

nothing_to_load!(
    loss::BinaryCrossEntropyLoss,
    loss::CosineEmbeddingLoss,
    loss::CrossEntropyLoss,
    loss::CTCLoss,
    loss::GaussianNLLLoss,
    loss::HingeEmbeddingLoss,
    loss::HuberLoss,
    loss::KLDivLoss,
    loss::LpLoss,
    loss::MarginRankingLoss,
    loss::MseLoss,
    loss::MultiMarginLoss,
    loss::PoissonNllLoss,
    loss::RNNTLoss,
    loss::SmoothL1Loss,
    loss::SoftMarginLoss,
    loss::TripletMarginLoss,
);
