//! The Vision Transformer as Hugging Face transformers implements it (`ViTModel`,
//! `ViTForImageClassification`): field names are transformers' state-dict keys
//! (`embeddings.patch_embeddings.projection`, `encoder.layer.N.attention.attention.query`,
//! `…attention.output.dense`, `layernorm_before`/`layernorm_after`, `layernorm`, `pooler.dense`,
//! and for the classifier `vit.` before them and `classifier`), so its checkpoints load through
//! the derive. The attention is burn's `MultiHeadAttention`, mapped from the separate
//! `query`/`key`/`value` Linears and `attention.output.dense`. A checkpoint made for another
//! image size loads with its position embedding resampled to this model's grid.

use burn::module::Param;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn_pretrain::Pretrainable;
use burn_pretrain::mapping::Mapper;
use serde::{Deserialize, Serialize};

use crate::features::{
    ChannelError, Features, RankError, Stage, takes_channels, takes_images, unexpected_rank,
};
use crate::resnet::InvalidField;

/// The fields of transformers' `ViTConfig` (`config.json`) the model needs, with
/// transformers' defaults, and what to build: `num_classes` > 0 is a
/// `ViTForImageClassification` (its keys under `vit.`, logits out), 0 a `ViTModel`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformersVitConfig {
    /// The square image side.
    pub image_size: usize,
    /// The square patch side.
    pub patch_size: usize,
    /// Image channels.
    pub num_channels: usize,
    /// The width of every token.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// The width of the feed-forward layer.
    pub intermediate_size: usize,
    /// LayerNorm ε.
    pub layer_norm_eps: f64,
    /// Biases on query, key and value.
    pub qkv_bias: bool,
    /// Classes of `classifier` (0: a `ViTModel`).
    pub num_classes: usize,
    /// A `ViTModel`'s pooler (`add_pooling_layer`).
    pub pooler: bool,
}

impl Default for TransformersVitConfig {
    fn default() -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            layer_norm_eps: 1e-12,
            qkv_bias: true,
            num_classes: 0,
            pooler: true,
        }
    }
}

impl TransformersVitConfig {
    fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// The parameter values `init` allocates (`None` on overflow).
    pub fn parameter_count(&self) -> Option<u128> {
        use crate::limits::{product as p, sum};
        let (d, i) = (self.hidden_size, self.intermediate_size);
        let layer = sum(&[
            p(&[4, d, d]),
            p(&[4, d]),
            p(&[2, d, i]),
            p(&[i]),
            p(&[5, d]),
        ]);
        sum(&[
            p(&[d, self.num_channels, self.patch_size, self.patch_size]),
            p(&[d]),
            p(&[self.patches() + 2, d]),
            layer.and_then(|l| l.checked_mul(self.num_hidden_layers as u128)),
            p(&[2, d]),
            if self.num_classes > 0 {
                p(&[d + 1, self.num_classes])
            } else if self.pooler {
                p(&[d + 1, d])
            } else {
                Some(0)
            },
        ])
    }

    /// A model with fresh parameters, or why this config cannot be built.
    pub fn init(&self, device: &Device) -> Result<TransformersVit, InvalidField> {
        let bad = |field, message: String| InvalidField { field, message };
        if self.patch_size == 0
            || self.image_size == 0
            || !self.image_size.is_multiple_of(self.patch_size)
        {
            return Err(bad(
                "patch_size",
                format!(
                    "{} does not divide image_size {}",
                    self.patch_size, self.image_size
                ),
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        let tensors = (self.num_hidden_layers as u128)
            .checked_mul(16)
            .map(|n| n + 8);
        crate::limits::check_model(self.parameter_count(), tensors).map_err(|m| {
            bad(
                "hidden_size",
                format!("a ViT of width {}: {m}", self.hidden_size),
            )
        })?;
        let d = self.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let layer = (0..self.num_hidden_layers)
            .map(|_| VitLayer {
                attention: VitAttention {
                    mha: MultiHeadAttentionConfig::new(d, self.num_attention_heads)
                        .with_dropout(0.0)
                        .init(device),
                },
                layernorm_before: norm(),
                intermediate: Dense {
                    dense: LinearConfig::new(d, self.intermediate_size).init(device),
                },
                output: Dense {
                    dense: LinearConfig::new(self.intermediate_size, d).init(device),
                },
                layernorm_after: norm(),
            })
            .collect();
        let tokens = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let vit = VitModel {
            embeddings: VitEmbeddings {
                cls_token: tokens.init([1, 1, d], device),
                position_embeddings: tokens.init([1, self.patches() + 1, d], device),
                patch_embeddings: PatchEmbeddings {
                    projection: Conv2dConfig::new(
                        [self.num_channels, d],
                        [self.patch_size, self.patch_size],
                    )
                    .with_stride([self.patch_size, self.patch_size])
                    .init(device),
                },
            },
            encoder: VitEncoder { layer },
            layernorm: norm(),
            pooler: (self.num_classes == 0 && self.pooler).then(|| Dense {
                dense: LinearConfig::new(d, d).init(device),
            }),
        };
        Ok(TransformersVit {
            vit,
            classifier: (self.num_classes > 0)
                .then(|| LinearConfig::new(d, self.num_classes).init(device)),
            image_size: self.image_size,
        })
    }
}

/// transformers' `ViTPatchEmbeddings`.
#[derive(Module, Debug, Pretrainable)]
pub struct PatchEmbeddings {
    /// `[D, C, P, P]`, stride `P`.
    pub projection: Conv2d,
}

/// Class token, position embedding and patches.
#[derive(Module, Debug)]
pub struct VitEmbeddings {
    /// `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1 + patches, D]`.
    pub position_embeddings: Param<Tensor<3>>,
    /// Patches to tokens.
    pub patch_embeddings: PatchEmbeddings,
}

impl Pretrainable for VitEmbeddings {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("cls_token", "cls_token", &mut self.cls_token);
        let policy = burn_pretrain::Policy::ResampleGrid {
            prefix_tokens: Some(1),
        };
        m.on_mismatch(policy, |m| {
            m.child(
                "position_embeddings",
                "position_embeddings",
                &mut self.position_embeddings,
            )
        });
        m.child(
            "patch_embeddings",
            "patch_embeddings",
            &mut self.patch_embeddings,
        );
    }
}

/// `attention.attention.{query,key,value}` and `attention.output.dense` as burn's attention.
#[derive(Module, Debug)]
pub struct VitAttention {
    /// burn's multi-head self-attention.
    pub mha: MultiHeadAttention,
}

impl Pretrainable for VitAttention {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("attention.query", "mha.query", &mut self.mha.query);
        m.child("attention.key", "mha.key", &mut self.mha.key);
        m.child("attention.value", "mha.value", &mut self.mha.value);
        m.child("output.dense", "mha.output", &mut self.mha.output);
    }
}

/// A Linear called `dense` (transformers' intermediate, output and pooler layers).
#[derive(Module, Debug, Pretrainable)]
pub struct Dense {
    /// The Linear.
    pub dense: Linear,
}

/// A pre-norm layer: `x + attention(layernorm_before(x))`, then
/// `x + output(gelu(intermediate(layernorm_after(x))))`.
#[derive(Module, Debug, Pretrainable)]
pub struct VitLayer {
    /// Self-attention.
    pub attention: VitAttention,
    /// Before attention.
    pub layernorm_before: LayerNorm,
    /// Feed-forward, first half.
    pub intermediate: Dense,
    /// Feed-forward, second half.
    pub output: Dense,
    /// Before the feed-forward.
    pub layernorm_after: LayerNorm,
}

impl VitLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let a = self
            .attention
            .mha
            .forward(MhaInput::self_attn(
                self.layernorm_before.forward(x.clone()),
            ))
            .context;
        let x = x + a;
        let h = gelu(
            self.intermediate
                .dense
                .forward(self.layernorm_after.forward(x.clone())),
        );
        x + self.output.dense.forward(h)
    }
}

/// The layers.
#[derive(Module, Debug, Pretrainable)]
pub struct VitEncoder {
    /// `encoder.layer.N`.
    pub layer: Vec<VitLayer>,
}

/// transformers' `ViTModel`.
#[derive(Module, Debug, Pretrainable)]
pub struct VitModel {
    /// Tokens from the image.
    pub embeddings: VitEmbeddings,
    /// The layers.
    pub encoder: VitEncoder,
    /// The final norm.
    pub layernorm: LayerNorm,
    /// `tanh(dense(first token))` (a `ViTModel` with `add_pooling_layer`).
    pub pooler: Option<Dense>,
}

/// A transformers ViT: `ViTForImageClassification` (with `classifier`: logits) or `ViTModel`.
#[derive(Module, Debug)]
pub struct TransformersVit {
    /// The encoder.
    pub vit: VitModel,
    /// The classifier on the class token.
    pub classifier: Option<Linear>,
    /// The square image side.
    #[module(skip)]
    pub image_size: usize,
}

impl Pretrainable for TransformersVit {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        // `ViTForImageClassification` keeps the encoder under `vit.`; `ViTModel` at the root.
        let key = if self.classifier.is_some() { "vit" } else { "" };
        m.child(key, "vit", &mut self.vit);
        m.child("classifier", "classifier", &mut self.classifier);
    }
}

impl TransformersVit {
    /// `last_hidden_state`: `[batch, 1 + patches, D]` after the final norm.
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<3> {
        let [batch, _, h, w] = images.dims();
        assert!(
            h == self.image_size && w == self.image_size,
            "this ViT is built for {0}×{0} images, got {h}×{w}",
            self.image_size
        );
        let e = &self.vit.embeddings;
        let x = e.patch_embeddings.projection.forward(images);
        let [_, d, gh, gw] = x.dims();
        let x = x.reshape([batch, d, gh * gw]).swap_dims(1, 2);
        let cls = e.cls_token.val().repeat_dim(0, batch);
        let x = Tensor::cat(vec![cls, x], 1) + e.position_embeddings.val();
        let x = self.vit.encoder.layer.iter().fold(x, |x, l| l.forward(x));
        self.vit.layernorm.forward(x)
    }

    /// Logits (`ViTForImageClassification`), else `pooler_output`, else the class token.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(images);
        let [batch, _, d] = x.dims();
        let first = x.slice([0..batch, 0..1]).reshape([batch, d]);
        match (&self.classifier, &self.vit.pooler) {
            (Some(classifier), _) => classifier.forward(first),
            (None, Some(pooler)) => pooler.dense.forward(first).tanh(),
            (None, None) => first,
        }
    }
}

impl Stage for TransformersVit {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        takes_images("TransformersVit", input_rank, 2)
    }

    fn input_channels(&self) -> Option<usize> {
        self.vit
            .embeddings
            .patch_embeddings
            .projection
            .weight
            .lazy_shape()
            .to_vec()
            .get(1)
            .copied()
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        Some([self.image_size; 2])
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        takes_channels("TransformersVit", self.input_channels(), input)?;
        let d = self.vit.layernorm.gamma.lazy_shape().to_vec()[0];
        Ok(match &self.classifier {
            Some(c) => c.weight.lazy_shape().to_vec()[1],
            None => d,
        })
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D4(x) => Features::D2(TransformersVit::forward(self, x)),
            other => unexpected_rank("TransformersVit", other.rank()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_checked_before_init_is_what_init_allocates() {
        for (num_classes, pooler) in [(0, true), (0, false), (5, true)] {
            let config = TransformersVitConfig {
                image_size: 16,
                patch_size: 4,
                hidden_size: 8,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 10,
                num_classes,
                pooler,
                ..TransformersVitConfig::default()
            };
            let model = config.init(&Device::flex()).unwrap();
            assert_eq!(
                config.parameter_count(),
                Some(model.num_params() as u128),
                "{num_classes} classes, pooler {pooler}"
            );
        }
        let bad = TransformersVitConfig {
            patch_size: 15,
            ..TransformersVitConfig::default()
        };
        let err = bad.init(&Device::flex()).unwrap_err();
        assert_eq!(err.field, "patch_size");
    }
}
