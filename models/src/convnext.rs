//! ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022) as timm implements it
//! (`timm/models/convnext.py`, patch stem, no GRN, LayerNorm ε 1e-6, exact GELU). Field names
//! are timm's state-dict keys (`stem.0`, `stages.N.downsample.1`,
//! `stages.N.blocks.M.{conv_dw, norm, mlp.fc1, mlp.fc2, gamma}`, `head.norm`, `head.fc`), so
//! its checkpoints load with the identity mapping.
//!
//! Two things a naive port gets wrong: the blocks' layer scale is a parameter named `gamma`
//! (not a norm's scale), and the small variants (atto … nano, timm's `conv_mlp=True`) run
//! their MLP as 1×1 convolutions with a channels-first norm, whose weights are
//! `[4C, C, 1, 1]` where the larger ones store Linear `[4C, C]`.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn_pretrain::Pretrainable;
use serde::{Deserialize, Serialize};

use crate::features::{
    ChannelError, Features, RankError, Stage, takes_channels, takes_images, unexpected_rank,
};
use crate::resnet::InvalidField;
use crate::vit::Mlp;

/// timm's ConvNeXt variants: name, blocks per stage, widths per stage, `conv_mlp`.
const VARIANTS: [(&str, [usize; 4], [usize; 4], bool); 9] = [
    ("atto", [2, 2, 6, 2], [40, 80, 160, 320], true),
    ("femto", [2, 2, 6, 2], [48, 96, 192, 384], true),
    ("pico", [2, 2, 6, 2], [64, 128, 256, 512], true),
    ("nano", [2, 2, 8, 2], [80, 160, 320, 640], true),
    ("tiny", [3, 3, 9, 3], [96, 192, 384, 768], false),
    ("small", [3, 3, 27, 3], [96, 192, 384, 768], false),
    ("base", [3, 3, 27, 3], [128, 256, 512, 1024], false),
    ("large", [3, 3, 27, 3], [192, 384, 768, 1536], false),
    ("xlarge", [3, 3, 27, 3], [256, 512, 1024, 2048], false),
];

/// timm's LayerNorm ε for ConvNeXt.
const EPS: f64 = 1e-6;

/// A ConvNeXt's configuration: a timm variant name and overrides of its values.
///
/// `{"type": "ConvNeXt", "variant": "convnext_tiny", "num_classes": 10}`; `depths`, `dims` and
/// `conv_mlp` may be given alone or override the variant's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNeXtConfig {
    /// A timm model name (`convnext_tiny`, `convnext_atto.d2_in1k`).
    #[serde(default)]
    pub variant: Option<String>,
    /// Classes of timm's `head.fc` (0, the default: the model gives pooled, normed features).
    #[serde(default)]
    pub num_classes: usize,
    /// Blocks per stage.
    #[serde(default)]
    pub depths: Option<[usize; 4]>,
    /// Channels per stage.
    #[serde(default)]
    pub dims: Option<[usize; 4]>,
    /// MLP as 1×1 convolutions with a channels-first norm (timm's choice for atto … nano).
    #[serde(default)]
    pub conv_mlp: Option<bool>,
    /// Input channels (3).
    #[serde(default)]
    pub in_chans: Option<usize>,
    /// Layer scale in every block (`gamma`; true, as timm's `ls_init_value=1e-6`).
    #[serde(default)]
    pub layer_scale: Option<bool>,
}

/// Every value of a ConvNeXt, resolved from a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvNeXtSpec {
    /// Classes of the head (0: none).
    pub num_classes: usize,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Channels per stage.
    pub dims: [usize; 4],
    /// MLP as 1×1 convolutions.
    pub conv_mlp: bool,
    /// Input channels.
    pub in_chans: usize,
    /// Layer scale.
    pub layer_scale: bool,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

impl ConvNeXtConfig {
    /// The config of a timm variant (`convnext_tiny`).
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

    /// Resolve the variant and the overrides, checking every value.
    pub fn resolve(&self) -> Result<ConvNeXtSpec, InvalidField> {
        let named = match &self.variant {
            Some(name) => {
                let base = name.split('.').next().unwrap_or_default();
                let size = base.strip_prefix("convnext_").unwrap_or_default();
                let Some(&(_, depths, dims, conv_mlp)) = VARIANTS.iter().find(|(s, ..)| *s == size)
                else {
                    let known: Vec<String> = VARIANTS
                        .iter()
                        .map(|(s, ..)| format!("convnext_{s}"))
                        .collect();
                    return Err(invalid(
                        "variant",
                        format!(
                            "`{name}` is not a ConvNeXt this crate builds; known: {}",
                            known.join(", ")
                        ),
                    ));
                };
                Some((depths, dims, conv_mlp))
            }
            None => None,
        };
        let missing = |field| {
            invalid(
                field,
                "missing: give a `variant` (convnext_tiny) or this field",
            )
        };
        let depths = self
            .depths
            .or(named.map(|n| n.0))
            .ok_or_else(|| missing("depths"))?;
        let dims = self
            .dims
            .or(named.map(|n| n.1))
            .ok_or_else(|| missing("dims"))?;
        let spec = ConvNeXtSpec {
            num_classes: self.num_classes,
            depths,
            dims,
            conv_mlp: self.conv_mlp.or(named.map(|n| n.2)).unwrap_or(false),
            in_chans: self.in_chans.unwrap_or(3),
            layer_scale: self.layer_scale.unwrap_or(true),
        };
        if dims.contains(&0) {
            return Err(invalid("dims", "every stage needs at least one channel"));
        }
        if spec.in_chans == 0 {
            return Err(invalid("in_chans", "must be at least 1"));
        }
        crate::limits::check_model(spec.parameter_count(), spec.tensor_count()).map_err(
            |message| invalid("dims", format!("a ConvNeXt of widths {dims:?}: {message}")),
        )?;
        Ok(spec)
    }

    /// Build the network (lazy parameters).
    pub fn init(&self, device: &Device) -> Result<ConvNeXt, InvalidField> {
        Ok(self.resolve()?.init(device))
    }
}

impl ConvNeXtSpec {
    /// Parameter tensors of the network (`None` on overflow): 9 a block, 4 a downsample.
    pub fn tensor_count(&self) -> Option<u128> {
        let blocks = self
            .depths
            .iter()
            .try_fold(0u128, |a, &n| a.checked_add(n as u128))?;
        blocks.checked_mul(9)?.checked_add(4 * 4 + 6)
    }

    /// Parameter values of the network, timm's count (`None` on overflow).
    pub fn parameter_count(&self) -> Option<u128> {
        use crate::limits::{product as p, sum};
        let four = |c: usize| c.checked_mul(4);
        let [c0, ..] = self.dims;
        let mut total = sum(&[p(&[self.in_chans, 16, c0]), p(&[c0]), p(&[2, c0])])?;
        let mut prev = c0;
        for (i, (&n, &c)) in self.depths.iter().zip(&self.dims).enumerate() {
            if i > 0 || prev != c {
                let k = if i > 0 { 4 } else { 1 };
                total = total.checked_add(sum(&[p(&[2, prev]), p(&[prev, k, c]), p(&[c])])?)?;
            }
            let gamma = if self.layer_scale { p(&[c]) } else { Some(0) };
            let block = sum(&[
                p(&[c, 49]),
                p(&[c]),
                p(&[2, c]),
                p(&[c, four(c)?]),
                p(&[four(c)?]),
                p(&[four(c)?, c]),
                p(&[c]),
                gamma,
            ])?;
            total = total.checked_add(block.checked_mul(n as u128)?)?;
            prev = c;
        }
        let head = if self.num_classes > 0 {
            p(&[prev.checked_add(1)?, self.num_classes])?
        } else {
            0
        };
        sum(&[Some(total), p(&[2, prev]), Some(head)])
    }

    /// Build the network (lazy parameters).
    pub fn init(&self, device: &Device) -> ConvNeXt {
        let norm = |c: usize| LayerNormConfig::new(c).with_epsilon(EPS).init(device);
        let c0 = self.dims[0];
        let mut prev = c0;
        let mut stages = Vec::with_capacity(4);
        for (i, (&n, &c)) in self.depths.iter().zip(&self.dims).enumerate() {
            let downsample = (i > 0 || prev != c).then(|| {
                let k = if i > 0 { 2 } else { 1 };
                StageDownsample {
                    norm: norm(prev),
                    conv: Conv2dConfig::new([prev, c], [k, k])
                        .with_stride([k, k])
                        .init(device),
                }
            });
            let blocks = (0..n)
                .map(|_| ConvNeXtBlock {
                    conv_dw: Conv2dConfig::new([c, c], [7, 7])
                        .with_groups(c)
                        .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                        .init(device),
                    norm: norm(c),
                    mlp: if self.conv_mlp {
                        BlockMlp::Conv(ConvMlp {
                            fc1: Conv2dConfig::new([c, 4 * c], [1, 1]).init(device),
                            fc2: Conv2dConfig::new([4 * c, c], [1, 1]).init(device),
                        })
                    } else {
                        BlockMlp::Linear(Mlp {
                            fc1: LinearConfig::new(c, 4 * c).init(device),
                            fc2: LinearConfig::new(4 * c, c).init(device),
                        })
                    },
                    gamma: self
                        .layer_scale
                        .then(|| Initializer::Constant { value: 1e-6 }.init([c], device)),
                })
                .collect();
            stages.push(ConvNeXtStage { downsample, blocks });
            prev = c;
        }
        ConvNeXt {
            stem: Stem {
                conv: Conv2dConfig::new([self.in_chans, c0], [4, 4])
                    .with_stride([4, 4])
                    .init(device),
                norm: norm(c0),
            },
            stages,
            head: NormHead {
                norm: norm(prev),
                fc: (self.num_classes > 0)
                    .then(|| LinearConfig::new(prev, self.num_classes).init(device)),
            },
        }
    }
}

/// timm's `LayerNorm2d`: a LayerNorm over the channels of `[batch, C, H, W]`.
fn norm_2d(norm: &LayerNorm, x: Tensor<4>) -> Tensor<4> {
    norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

/// `Sequential(Conv2d 4×4 stride 4, LayerNorm2d)`.
#[derive(Module, Debug, Pretrainable)]
pub struct Stem {
    /// The patchify convolution (`stem.0`).
    #[pretrain(rename = "0")]
    pub conv: Conv2d,
    /// Its channels-first norm (`stem.1`).
    #[pretrain(rename = "1")]
    pub norm: LayerNorm,
}

/// `Sequential(LayerNorm2d, Conv2d 2×2 stride 2)` between stages.
#[derive(Module, Debug, Pretrainable)]
pub struct StageDownsample {
    /// Channels-first norm (`downsample.0`).
    #[pretrain(rename = "0")]
    pub norm: LayerNorm,
    /// The strided convolution (`downsample.1`).
    #[pretrain(rename = "1")]
    pub conv: Conv2d,
}

/// timm's `Mlp(use_conv=True)`: 1×1 convolutions, channels first.
#[derive(Module, Debug, Pretrainable)]
pub struct ConvMlp {
    /// C → 4C.
    pub fc1: Conv2d,
    /// 4C → C.
    pub fc2: Conv2d,
}

/// The block's MLP in either layout; transparent in checkpoint keys (`mlp.fc1`).
#[derive(Module, Debug, Pretrainable)]
#[allow(missing_docs)]
pub enum BlockMlp {
    Linear(Mlp),
    Conv(ConvMlp),
}

/// `x + gamma · mlp(norm(conv_dw(x)))`.
#[derive(Module, Debug, Pretrainable)]
pub struct ConvNeXtBlock {
    /// Depthwise 7×7 (`[C, 1, 7, 7]`).
    pub conv_dw: Conv2d,
    /// LayerNorm over channels (channels last for a Linear MLP, first for a conv one).
    pub norm: LayerNorm,
    /// The inverted bottleneck.
    pub mlp: BlockMlp,
    /// Layer scale `[C]` (timm's `gamma`, a parameter, not a norm's scale).
    pub gamma: Option<Param<Tensor<1>>>,
}

impl ConvNeXtBlock {
    /// Run the block on `[batch, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv_dw.forward(x.clone());
        let y = match &self.mlp {
            BlockMlp::Conv(mlp) => {
                let y = norm_2d(&self.norm, y);
                mlp.fc2.forward(gelu(mlp.fc1.forward(y)))
            }
            BlockMlp::Linear(mlp) => {
                let y = self.norm.forward(y.permute([0, 2, 3, 1]));
                mlp.forward(y).permute([0, 3, 1, 2])
            }
        };
        let y = match &self.gamma {
            Some(gamma) => {
                let gamma = gamma.val();
                let [c] = gamma.dims();
                y * gamma.reshape([1, c, 1, 1])
            }
            None => y,
        };
        x + y
    }
}

/// One stage: an optional downsample, then its blocks.
#[derive(Module, Debug, Pretrainable)]
pub struct ConvNeXtStage {
    /// Norm and strided convolution (stages 1–3).
    pub downsample: Option<StageDownsample>,
    /// The blocks.
    pub blocks: Vec<ConvNeXtBlock>,
}

/// timm's `NormMlpClassifierHead` without hidden layer: average pool, LayerNorm, `fc`.
#[derive(Module, Debug, Pretrainable)]
pub struct NormHead {
    /// LayerNorm of the pooled features.
    pub norm: LayerNorm,
    /// The classifier (none with `num_classes` 0).
    pub fc: Option<Linear>,
}

/// timm's `ConvNeXt`: images `[batch, C, H, W]` → logits `[batch, num_classes]` (with a head)
/// or pooled, normed features `[batch, dims[3]]` (timm's `num_classes=0`).
#[derive(Module, Debug, Pretrainable)]
pub struct ConvNeXt {
    /// Patchify stem.
    pub stem: Stem,
    /// The four stages.
    pub stages: Vec<ConvNeXtStage>,
    /// Pooling, norm and classifier.
    pub head: NormHead,
}

impl ConvNeXt {
    /// The last stage's feature map (timm's `forward_features`): `[batch, C, H/32, W/32]`.
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        let x = norm_2d(&self.stem.norm, self.stem.conv.forward(images));
        self.stages.iter().fold(x, |x, stage| {
            let x = match &stage.downsample {
                Some(d) => d.conv.forward(norm_2d(&d.norm, x)),
                None => x,
            };
            stage.blocks.iter().fold(x, |x, block| block.forward(x))
        })
    }

    /// Pooled, normed features (timm's `forward_head(pre_logits=True)`): `[batch, C]`.
    pub fn forward_pooled(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(images);
        let [batch, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, c]);
        self.head.norm.forward(pooled)
    }

    /// Logits with a head, pooled features without.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let pooled = self.forward_pooled(images);
        match &self.head.fc {
            Some(fc) => fc.forward(pooled),
            None => pooled,
        }
    }
}

impl Stage for ConvNeXt {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        takes_images("ConvNeXt", input_rank, 2)
    }

    fn input_channels(&self) -> Option<usize> {
        self.stem.conv.weight.lazy_shape().to_vec().get(1).copied()
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        takes_channels("ConvNeXt", self.input_channels(), input)?;
        Ok(match &self.head.fc {
            Some(fc) => fc.weight.lazy_shape().to_vec()[1],
            None => self.head.norm.gamma.lazy_shape().to_vec()[0],
        })
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D4(x) => Features::D2(ConvNeXt::forward(self, x)),
            other => unexpected_rank("ConvNeXt", other.rank()),
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
            ("convnext_atto", 3_695_520u128),
            ("convnext_tiny", 28_589_128),
            ("convnext_base", 88_591_464),
        ] {
            let spec = ConvNeXtConfig::variant(name)
                .with_num_classes(1000)
                .resolve()
                .unwrap();
            assert_eq!(spec.parameter_count(), Some(params), "{name}");
        }
    }

    #[test]
    fn unknown_names_and_impossible_values_name_their_field() {
        let err = ConvNeXtConfig::variant("convnext_huge")
            .resolve()
            .unwrap_err();
        assert_eq!(err.field, "variant");
        assert!(err.message.contains("convnext_atto"), "{}", err.message);
        let mut c = ConvNeXtConfig::variant("convnext_tiny.fb_in22k");
        assert!(c.resolve().is_ok());
        c.dims = Some([8, 0, 8, 8]);
        assert_eq!(c.resolve().unwrap_err().field, "dims");
        c.dims = Some([1 << 40; 4]);
        assert_eq!(c.resolve().unwrap_err().field, "dims");
        // 4 × width overflowed (and wrapped) before it was counted.
        c.dims = Some([usize::MAX / 2; 4]);
        let err = c.resolve().unwrap_err();
        assert!(err.message.contains("overflows"), "{}", err.message);
        if crate::limits::machine_memory().is_some() {
            // Few values, but a struct per tensor: counted, refused before it is built.
            c.dims = Some([1; 4]);
            c.depths = Some([1 << 30, 1, 1, 1]);
            let err = c.resolve().unwrap_err();
            assert!(
                err.message.contains("more than this machine's"),
                "{}",
                err.message
            );
        }
        assert_eq!(
            ConvNeXtConfig::default().resolve().unwrap_err().field,
            "depths"
        );
    }
}
