//! A Vision Transformer's configuration: timm's variant names (`vit_small_patch16_224`,
//! `_reg4`, `_gap`, image sizes) parsed and resolved into every value the model needs.

use burn::nn::attention::MultiHeadAttentionConfig;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{Initializer, LayerNormConfig, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Attention, Mlp, PatchEmbed, VisionTransformer, VitBlock};
use crate::resnet::InvalidField;

/// timm's ViT sizes: name, embedding width, depth, heads.
const SIZES: [(&str, usize, usize, usize); 5] = [
    ("tiny", 192, 12, 3),
    ("small", 384, 12, 6),
    ("base", 768, 12, 12),
    ("large", 1024, 24, 16),
    ("huge", 1280, 32, 16),
];

/// timm's LayerNorm ε for Vision Transformers.
pub(super) const EPS: f64 = 1e-6;

/// How the token sequence becomes one feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalPool {
    /// The class token (timm's default); needs `class_token`.
    Token,
    /// The mean of the patch tokens, then `fc_norm` in place of `norm`.
    Avg,
}

/// A Vision Transformer's configuration: a timm variant name and overrides of its values.
///
/// `{"type": "VisionTransformer", "variant": "vit_small_patch16_224", "num_classes": 10,
/// "img_size": 384}`. The name gives the size (`tiny`, `small`, `base`, `large`, `huge`), the
/// patch size, the image size and timm's register/pooling suffixes (`_reg4`, `_gap`); every
/// field may also be given alone, or override the name's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionTransformerConfig {
    /// A timm model name (`vit_base_patch16_224`, `vit_small_patch16_384.augreg_in21k`).
    #[serde(default)]
    pub variant: Option<String>,
    /// Classes of timm's `head` (0, the default: no head, the model gives pooled features).
    #[serde(default)]
    pub num_classes: usize,
    /// The square image size the position embedding is made for.
    #[serde(default)]
    pub img_size: Option<usize>,
    /// Side of the square patches.
    #[serde(default)]
    pub patch_size: Option<usize>,
    /// Input channels (3).
    #[serde(default)]
    pub in_chans: Option<usize>,
    /// Token width.
    #[serde(default)]
    pub embed_dim: Option<usize>,
    /// Transformer blocks.
    #[serde(default)]
    pub depth: Option<usize>,
    /// Attention heads (must divide `embed_dim`).
    #[serde(default)]
    pub num_heads: Option<usize>,
    /// MLP hidden width over `embed_dim` (4).
    #[serde(default)]
    pub mlp_ratio: Option<f64>,
    /// Biases of the query, key and value projections (true).
    #[serde(default)]
    pub qkv_bias: Option<bool>,
    /// A class token before the patches (true).
    #[serde(default)]
    pub class_token: Option<bool>,
    /// Register tokens after the class token (0).
    #[serde(default)]
    pub reg_tokens: Option<usize>,
    /// The position embedding covers only the patches, not the prefix tokens (false).
    #[serde(default)]
    pub no_embed_class: Option<bool>,
    /// `token` (default with a class token) or `avg`.
    #[serde(default)]
    pub global_pool: Option<GlobalPool>,
}

/// Every value of a Vision Transformer, resolved from a config.
#[derive(Debug, Clone, PartialEq)]
pub struct VitSpec {
    /// Classes of the head (0: none).
    pub num_classes: usize,
    /// Square image side.
    pub img_size: usize,
    /// Square patch side.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Heads.
    pub num_heads: usize,
    /// MLP hidden width.
    pub mlp_hidden: usize,
    /// Query/key/value biases.
    pub qkv_bias: bool,
    /// A class token.
    pub class_token: bool,
    /// Register tokens.
    pub reg_tokens: usize,
    /// Position embedding without the prefix tokens.
    pub no_embed_class: bool,
    /// Pooling.
    pub global_pool: GlobalPool,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

/// The values a timm name stands for: `vit_{size}_patch{P}[_reg{N}][_gap][_{img}]`.
fn parse_variant(name: &str) -> Result<VisionTransformerConfig, InvalidField> {
    let base = name.split('.').next().unwrap_or_default();
    let form = "names look like vit_small_patch16_224, vit_base_patch32_384 or \
                vit_base_patch16_reg4_gap_256 (sizes tiny, small, base, large, huge)";
    let mut parts = base.split('_');
    if parts.next() != Some("vit") {
        return Err(invalid(
            "variant",
            format!("`{name}` is not a timm Vision Transformer; {form}"),
        ));
    }
    let size = parts.next().unwrap_or_default();
    let Some(&(_, dim, depth, heads)) = SIZES.iter().find(|(s, ..)| *s == size) else {
        return Err(invalid(
            "variant",
            format!("`{name}`: unknown size `{size}`; {form}"),
        ));
    };
    let mut c = VisionTransformerConfig {
        embed_dim: Some(dim),
        depth: Some(depth),
        num_heads: Some(heads),
        ..Default::default()
    };
    for part in parts {
        let number = |prefix: &str| part.strip_prefix(prefix).and_then(|n| n.parse().ok());
        if let Some(p) = number("patch") {
            c.patch_size = Some(p);
        } else if let Some(r) = number("reg") {
            c.reg_tokens = Some(r);
            c.no_embed_class = Some(true);
        } else if part == "gap" {
            c.class_token = Some(false);
            c.global_pool = Some(GlobalPool::Avg);
        } else if let Ok(img) = part.parse() {
            c.img_size = Some(img);
        } else {
            return Err(invalid(
                "variant",
                format!(
                    "`{name}`: `{part}` is not a part this Vision Transformer knows \
                     (CLIP, SigLIP, DeiT and other families differ in more than their sizes); {form}"
                ),
            ));
        }
    }
    if c.patch_size.is_none() {
        return Err(invalid(
            "variant",
            format!("`{name}` names no patch size; {form}"),
        ));
    }
    Ok(c)
}

impl VisionTransformerConfig {
    /// The config of a timm variant (`vit_small_patch16_224`).
    pub fn variant(name: &str) -> Self {
        Self {
            variant: Some(name.to_string()),
            ..Default::default()
        }
    }

    /// Set the classes of the head.
    #[must_use]
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Set the image size.
    #[must_use]
    pub fn with_img_size(mut self, img_size: usize) -> Self {
        self.img_size = Some(img_size);
        self
    }

    /// Resolve the variant and the overrides, checking every value.
    pub fn resolve(&self) -> Result<VitSpec, InvalidField> {
        let named = match &self.variant {
            Some(name) => parse_variant(name)?,
            None => VisionTransformerConfig::default(),
        };
        let pick = |own: Option<usize>, named: Option<usize>, field, default: Option<usize>| {
            own.or(named).or(default).ok_or_else(|| {
                invalid(
                    field,
                    "missing: give a `variant` (vit_small_patch16_224) or this field",
                )
            })
        };
        let embed_dim = pick(self.embed_dim, named.embed_dim, "embed_dim", None)?;
        let depth = pick(self.depth, named.depth, "depth", None)?;
        let num_heads = pick(self.num_heads, named.num_heads, "num_heads", None)?;
        let patch_size = pick(self.patch_size, named.patch_size, "patch_size", None)?;
        let img_size = pick(self.img_size, named.img_size, "img_size", Some(224))?;
        let in_chans = pick(self.in_chans, None, "in_chans", Some(3))?;
        let reg_tokens = pick(self.reg_tokens, named.reg_tokens, "reg_tokens", Some(0))?;
        let class_token = self.class_token.or(named.class_token).unwrap_or(true);
        let no_embed_class = self
            .no_embed_class
            .or(named.no_embed_class)
            .unwrap_or(false);
        let global_pool = self
            .global_pool
            .or(named.global_pool)
            .unwrap_or(if class_token {
                GlobalPool::Token
            } else {
                GlobalPool::Avg
            });
        let mlp_ratio = self.mlp_ratio.unwrap_or(4.0);
        for (field, value) in [
            ("embed_dim", embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
            ("patch_size", patch_size),
            ("img_size", img_size),
            ("in_chans", in_chans),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if embed_dim % num_heads != 0 {
            return Err(invalid(
                "num_heads",
                format!("{num_heads} heads do not divide embed_dim {embed_dim}"),
            ));
        }
        if img_size % patch_size != 0 {
            return Err(invalid(
                "img_size",
                format!("{img_size} is not a multiple of the patch size {patch_size}"),
            ));
        }
        if !(mlp_ratio.is_finite() && mlp_ratio > 0.0 && mlp_ratio * embed_dim as f64 >= 1.0) {
            return Err(invalid(
                "mlp_ratio",
                format!("{mlp_ratio} leaves the MLP without a hidden unit"),
            ));
        }
        if reg_tokens.checked_add(usize::from(class_token)).is_none() {
            return Err(invalid(
                "reg_tokens",
                format!("{reg_tokens} register tokens and a class token overflow the count"),
            ));
        }
        if global_pool == GlobalPool::Token && !class_token {
            return Err(invalid(
                "global_pool",
                "`token` pooling needs the class token; use `avg` or set class_token",
            ));
        }
        let spec = VitSpec {
            num_classes: self.num_classes,
            img_size,
            patch_size,
            in_chans,
            embed_dim,
            depth,
            num_heads,
            mlp_hidden: (mlp_ratio * embed_dim as f64) as usize,
            qkv_bias: self.qkv_bias.unwrap_or(true),
            class_token,
            reg_tokens,
            no_embed_class,
            global_pool,
        };
        crate::limits::check_model(spec.parameter_count(), spec.tensor_count()).map_err(
            |message| {
                invalid(
                    "embed_dim",
                    format!(
                        "a Vision Transformer of width {embed_dim} and depth {depth}: {message}"
                    ),
                )
            },
        )?;
        let tokens = spec.tokens();
        crate::limits::check_forward(
            spec.forward_values(),
            &format!(
                "attention of {num_heads} heads over {} tokens",
                tokens.map_or("too many".into(), |t| t.to_string())
            ),
        )
        .map_err(|message| {
            invalid(
                "img_size",
                format!("a Vision Transformer for {img_size}×{img_size} images: {message}"),
            )
        })?;
        Ok(spec)
    }

    /// Build the network (lazy parameters).
    pub fn init(&self, device: &Device) -> Result<VisionTransformer, InvalidField> {
        Ok(self.resolve()?.init(device))
    }
}

impl VitSpec {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Class and register tokens (saturating: [`resolve`](VisionTransformerConfig::resolve)
    /// refuses a count that overflows).
    pub fn prefix_tokens(&self) -> usize {
        self.reg_tokens
            .saturating_add(usize::from(self.class_token))
    }

    /// Tokens of one image's sequence: the patches and the prefix tokens.
    pub fn tokens(&self) -> Option<usize> {
        self.grid()
            .checked_mul(self.grid())?
            .checked_add(self.prefix_tokens())
    }

    /// Parameter tensors of the network (`None` on overflow): 16 a block.
    pub fn tensor_count(&self) -> Option<u128> {
        (self.depth as u128).checked_mul(16)?.checked_add(12)
    }

    /// f32 values a forward pass over one image holds at its peak, about (`None` on
    /// overflow): the image, a few copies of the token sequence, one head's attention scores
    /// and their softmax for every head, and the MLP's hidden activations.
    pub fn forward_values(&self) -> Option<u128> {
        use crate::limits::{product as p, sum};
        let t = self.tokens()?;
        sum(&[
            p(&[self.in_chans, self.img_size, self.img_size]),
            p(&[6, t, self.embed_dim]),
            p(&[2, self.num_heads, t, t]),
            p(&[2, t, self.mlp_hidden]),
        ])
    }

    /// Tokens the position embedding covers.
    pub(super) fn pos_tokens(&self) -> Option<usize> {
        let patches = self.grid().checked_mul(self.grid())?;
        if self.no_embed_class {
            Some(patches)
        } else {
            patches.checked_add(self.prefix_tokens())
        }
    }

    /// Parameter values of the network, timm's count (`None` on overflow).
    pub fn parameter_count(&self) -> Option<u128> {
        use crate::limits::product as p;
        let (d, h) = (self.embed_dim, self.mlp_hidden);
        let qkv_bias = if self.qkv_bias { p(&[3, d])? } else { 0 };
        let block = [
            p(&[4, d])?,
            p(&[3, d, d])?,
            qkv_bias,
            p(&[d, d])?,
            p(&[d])?,
            p(&[d, h])?,
            p(&[h])?,
            p(&[h, d])?,
            p(&[d])?,
        ]
        .iter()
        .try_fold(0u128, |a, v| a.checked_add(*v))?;
        let head = if self.num_classes > 0 {
            p(&[d.checked_add(1)?, self.num_classes])?
        } else {
            0
        };
        [
            p(&[self.in_chans, self.patch_size, self.patch_size, d])?,
            p(&[d])?,
            p(&[self.prefix_tokens(), d])?,
            p(&[self.pos_tokens()?, d])?,
            block.checked_mul(self.depth as u128)?,
            p(&[2, d])?,
            head,
        ]
        .iter()
        .try_fold(0u128, |a, v| a.checked_add(*v))
    }

    /// Build the network (lazy parameters).
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let d = self.embed_dim;
        let token = |n: usize| {
            Initializer::Normal {
                mean: 0.0,
                std: 1e-6,
            }
            .init([1, n, d], device)
        };
        let norm = || LayerNormConfig::new(d).with_epsilon(EPS).init(device);
        let avg = self.global_pool == GlobalPool::Avg;
        VisionTransformer {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([self.in_chans, d], [self.patch_size; 2])
                    .with_stride([self.patch_size; 2])
                    .init(device),
            },
            cls_token: self.class_token.then(|| token(1)),
            reg_token: (self.reg_tokens > 0).then(|| token(self.reg_tokens)),
            pos_embed: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, self.pos_tokens().unwrap_or(0), d], device),
            blocks: (0..self.depth)
                .map(|_| VitBlock {
                    norm1: norm(),
                    attn: Attention {
                        mha: MultiHeadAttentionConfig::new(d, self.num_heads)
                            .with_dropout(0.0)
                            .with_query_bias(self.qkv_bias)
                            .with_key_bias(self.qkv_bias)
                            .with_value_bias(self.qkv_bias)
                            .init(device),
                    },
                    norm2: norm(),
                    mlp: Mlp {
                        fc1: LinearConfig::new(d, self.mlp_hidden).init(device),
                        fc2: LinearConfig::new(self.mlp_hidden, d).init(device),
                    },
                })
                .collect(),
            norm: (!avg).then(norm),
            fc_norm: avg.then(norm),
            head: (self.num_classes > 0)
                .then(|| LinearConfig::new(d, self.num_classes).init(device)),
            img_size: self.img_size,
            prefix_tokens: self.prefix_tokens(),
            no_embed_class: self.no_embed_class,
            global_pool: self.global_pool,
        }
    }
}
