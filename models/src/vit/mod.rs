//! Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) as timm
//! implements it (`timm/models/vision_transformer.py`, `VisionTransformer` with its defaults:
//! LayerNorm ε 1e-6, exact GELU, no layer scale, no pre-norm). Field names are timm's
//! state-dict keys (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.attn.qkv`, ...), so
//! its checkpoints load with the identity mapping. The attention is burn's own
//! `MultiHeadAttention`, whose query, key and value take timm's packed `qkv` (`[3·D, D]`).
//!
//! A checkpoint made for another image size loads through its position embedding resampled
//! to this model's patch grid (bicubic with antialiasing, as timm's `resample_abs_pos_embed`):
//! the model declares it as its default mismatch policy for `pos_embed`, and the report lists
//! it under "adapted".

use burn::module::Param;
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn_pretrain::Pretrainable;
use burn_pretrain::mapping::{Mapper, packed_qkv};

use crate::features::{
    ChannelError, Features, RankError, Stage, takes_channels, takes_images, unexpected_rank,
};

mod config;

pub use config::{GlobalPool, VisionTransformerConfig, VitSpec};

/// timm's `PatchEmbed`: a convolution with the patch size as kernel and stride.
#[derive(Module, Debug, Pretrainable)]
pub struct PatchEmbed {
    /// `[D, C, P, P]`, stride `P`.
    pub proj: Conv2d,
}

/// timm's `Mlp`: `fc2(gelu(fc1(x)))`.
#[derive(Module, Debug, Pretrainable)]
pub struct Mlp {
    /// Width → hidden.
    pub fc1: Linear,
    /// Hidden → width.
    pub fc2: Linear,
}

impl Mlp {
    /// Run it on `[batch, tokens, width]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// timm's `Attention` as burn's `MultiHeadAttention`: query, key and value load from timm's
/// packed `qkv` (`[3·D, D]`, stacked in that order), the output projection from `proj`.
#[derive(Module, Debug)]
pub struct Attention {
    /// burn's multi-head self-attention.
    pub mha: MultiHeadAttention,
}

impl Pretrainable for Attention {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.field("qkv", "mha", |m| {
            packed_qkv(m, &mut self.mha, "weight", "bias")
        });
        m.child("proj", "mha.output", &mut self.mha.output);
    }
}

/// A pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug, Pretrainable)]
pub struct VitBlock {
    /// Before attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Before the MLP.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl VitBlock {
    /// Run the block on `[batch, tokens, width]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let attn = self
            .attn
            .mha
            .forward(MhaInput::self_attn(self.norm1.forward(x.clone())))
            .context;
        let x = x + attn;
        let mlp = self.mlp.forward(self.norm2.forward(x.clone()));
        x + mlp
    }
}

/// timm's `VisionTransformer`: images `[batch, C, S, S]` → logits `[batch, num_classes]`
/// (with a head) or pooled features `[batch, embed_dim]` (timm's `num_classes=0`).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patches to tokens.
    pub patch_embed: PatchEmbed,
    /// `[1, 1, D]`.
    pub cls_token: Option<Param<Tensor<3>>>,
    /// `[1, R, D]`.
    pub reg_token: Option<Param<Tensor<3>>>,
    /// `[1, tokens, D]`.
    pub pos_embed: Param<Tensor<3>>,
    /// The transformer blocks.
    pub blocks: Vec<VitBlock>,
    /// The final norm (token pooling).
    pub norm: Option<LayerNorm>,
    /// The norm after average pooling.
    pub fc_norm: Option<LayerNorm>,
    /// The classifier.
    pub head: Option<Linear>,
    /// The square image side the position embedding is made for.
    #[module(skip)]
    pub img_size: usize,
    /// Class and register tokens.
    #[module(skip)]
    pub prefix_tokens: usize,
    /// Position embedding without the prefix tokens.
    #[module(skip)]
    pub no_embed_class: bool,
    /// Pooling.
    #[module(skip)]
    pub global_pool: GlobalPool,
}

impl Pretrainable for VisionTransformer {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("patch_embed", "patch_embed", &mut self.patch_embed);
        m.child("cls_token", "cls_token", &mut self.cls_token);
        m.child("reg_token", "reg_token", &mut self.reg_token);
        // A checkpoint of another image size has another grid: resampled, as timm loads it.
        let prefix = if self.no_embed_class {
            0
        } else {
            self.prefix_tokens
        };
        let policy = burn_pretrain::Policy::ResampleGrid {
            prefix_tokens: Some(prefix),
        };
        m.on_mismatch(policy, |m| {
            m.child("pos_embed", "pos_embed", &mut self.pos_embed)
        });
        m.child("blocks", "blocks", &mut self.blocks);
        m.child("norm", "norm", &mut self.norm);
        m.child("fc_norm", "fc_norm", &mut self.fc_norm);
        m.child("head", "head", &mut self.head);
    }
}

impl VisionTransformer {
    /// Tokens after the blocks and the final norm (timm's `forward_features`):
    /// `[batch, prefix + patches, D]`.
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<3> {
        let [batch, _, h, w] = images.dims();
        assert!(
            h == self.img_size && w == self.img_size,
            "this VisionTransformer is built for {0}×{0} images (its position embedding's grid), got {h}×{w}",
            self.img_size
        );
        let x = self.patch_embed.proj.forward(images);
        let [_, d, gh, gw] = x.dims();
        let x = x.reshape([batch, d, gh * gw]).swap_dims(1, 2);
        let pos = self.pos_embed.val();
        let prefix: Vec<Tensor<3>> = [&self.cls_token, &self.reg_token]
            .into_iter()
            .flatten()
            .map(|t| t.val().repeat_dim(0, batch))
            .collect();
        let with_prefix = |x: Tensor<3>| {
            if prefix.is_empty() {
                x
            } else {
                let mut all = prefix.clone();
                all.push(x);
                Tensor::cat(all, 1)
            }
        };
        let x = if self.no_embed_class {
            with_prefix(x + pos)
        } else {
            with_prefix(x) + pos
        };
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// Pooled features before the head (timm's `forward_head(pre_logits=True)`): `[batch, D]`.
    pub fn forward_pooled(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(images);
        let [batch, tokens, d] = x.dims();
        let pooled = match self.global_pool {
            GlobalPool::Token => x.slice([0..batch, 0..1]).reshape([batch, d]),
            GlobalPool::Avg => x
                .slice([0..batch, self.prefix_tokens..tokens])
                .mean_dim(1)
                .reshape([batch, d]),
        };
        match &self.fc_norm {
            Some(norm) => norm.forward(pooled),
            None => pooled,
        }
    }

    /// Logits with a head, pooled features without.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let pooled = self.forward_pooled(images);
        match &self.head {
            Some(head) => head.forward(pooled),
            None => pooled,
        }
    }

    fn embed_dim(&self) -> usize {
        self.pos_embed.lazy_shape().to_vec()[2]
    }
}

impl Stage for VisionTransformer {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        takes_images("VisionTransformer", input_rank, 2)
    }

    fn input_channels(&self) -> Option<usize> {
        self.patch_embed
            .proj
            .weight
            .lazy_shape()
            .to_vec()
            .get(1)
            .copied()
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        Some([self.img_size; 2])
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        takes_channels("VisionTransformer", self.input_channels(), input)?;
        Ok(match &self.head {
            Some(head) => head.weight.lazy_shape().to_vec()[1],
            None => self.embed_dim(),
        })
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D4(x) => Features::D2(VisionTransformer::forward(self, x)),
            other => unexpected_rank("VisionTransformer", other.rank()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's parameter counts (`sum(p.numel() for p in model.parameters())` of
    /// `timm.create_model(name)`, 1000 classes).
    #[test]
    fn parameter_counts_match_timm() {
        for (name, params) in [
            ("vit_tiny_patch16_224", 5_717_416u128),
            ("vit_small_patch16_224", 22_050_664),
            ("vit_base_patch32_384", 88_297_192),
            ("vit_base_patch16_reg4_gap_256", 86_615_272),
        ] {
            let spec = VisionTransformerConfig::variant(name)
                .with_num_classes(1000)
                .resolve()
                .unwrap();
            assert_eq!(spec.parameter_count(), Some(params), "{name}");
        }
    }

    #[test]
    fn names_resolve_as_timm_defines_them() {
        let s = VisionTransformerConfig::variant("vit_base_patch16_reg4_gap_256.dinov2")
            .resolve()
            .unwrap();
        assert_eq!(
            (s.embed_dim, s.depth, s.num_heads, s.patch_size, s.img_size),
            (768, 12, 12, 16, 256)
        );
        assert_eq!(
            (s.class_token, s.reg_tokens, s.no_embed_class),
            (false, 4, true)
        );
        assert_eq!(s.global_pool, GlobalPool::Avg);
        let s = VisionTransformerConfig::variant("vit_large_patch32_224")
            .with_img_size(384)
            .resolve()
            .unwrap();
        assert_eq!(
            (s.embed_dim, s.depth, s.grid(), s.pos_tokens()),
            (1024, 24, 12, Some(145))
        );
        for (name, says) in [
            ("resnet50", "not a timm Vision Transformer"),
            ("vit_gigantic_patch16_224", "unknown size `gigantic`"),
            ("vit_base_patch16_clip_224", "`clip` is not a part"),
            ("vit_base_224", "names no patch size"),
        ] {
            let err = VisionTransformerConfig::variant(name)
                .resolve()
                .unwrap_err();
            assert_eq!(err.field, "variant");
            assert!(err.message.contains(says), "{name}: {}", err.message);
        }
    }

    #[test]
    fn impossible_values_name_their_field() {
        let base = VisionTransformerConfig::variant("vit_small_patch16_224");
        for (config, field) in [
            (
                VisionTransformerConfig {
                    num_heads: Some(5),
                    ..base.clone()
                },
                "num_heads",
            ),
            (base.clone().with_img_size(100), "img_size"),
            (
                VisionTransformerConfig {
                    class_token: Some(false),
                    global_pool: Some(GlobalPool::Token),
                    ..base.clone()
                },
                "global_pool",
            ),
            (
                VisionTransformerConfig {
                    embed_dim: Some(1 << 40),
                    num_heads: Some(1),
                    ..base.clone()
                },
                "embed_dim",
            ),
            (VisionTransformerConfig::default(), "embed_dim"),
        ] {
            assert_eq!(config.resolve().unwrap_err().field, field, "{config:?}");
        }
    }

    /// The probe's configs: 2^64 − 1 register tokens wrapped the token count; a million
    /// one-wide blocks (few values, but a struct per tensor) aborted while being built; a
    /// 16384-pixel image (a tiny model) aborted in the forward pass.
    #[test]
    fn absurd_sizes_are_refused_before_anything_is_built() {
        let base = VisionTransformerConfig::variant("vit_tiny_patch16_224");
        let err = VisionTransformerConfig {
            reg_tokens: Some(usize::MAX),
            ..base.clone()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.field, "reg_tokens");
        assert!(err.message.contains("overflow"), "{}", err.message);
        if crate::limits::machine_memory().is_none() {
            return;
        }
        let deep = VisionTransformerConfig {
            embed_dim: Some(1),
            num_heads: Some(1),
            depth: Some(100_000_000),
            ..base.clone()
        };
        let err = deep.resolve().unwrap_err();
        assert_eq!(err.field, "embed_dim");
        assert!(
            err.message.contains("1600000012 tensors"),
            "{}",
            err.message
        );
        let wide = base.clone().with_img_size(16384);
        let err = wide.resolve().unwrap_err();
        assert_eq!(err.field, "img_size");
        assert!(
            err.message
                .contains("attention of 3 heads over 1048577 tokens"),
            "{}",
            err.message
        );
        // timm's largest real ViT images stay well inside.
        let huge = VisionTransformerConfig::variant("vit_huge_patch14_224").with_img_size(518);
        assert!(huge.resolve().is_ok());
    }
}
