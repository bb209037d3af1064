//! ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), as
//! torchvision implements it (`torchvision/models/resnet.py`; timm's `resnet*` have the same
//! layout and keys): the seed's backbone, without `avgpool` and `fc` unless `num_classes` asks
//! for the classifier (global average pooling and `fc`, giving logits). Field names are torchvision's state-dict keys (`conv1`, `bn1`,
//! `layer1.0.downsample.0`, ...), so its checkpoints load with the identity mapping.
//! `groups`/`width_per_group` give ResNeXt (Xie et al., CVPR 2017) and Wide ResNet
//! (Zagoruyko & Komodakis, BMVC 2016).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn_pretrain::Pretrainable;
use serde::{Deserialize, Serialize};

use crate::features::{
    ChannelError, Features, RankError, Stage, takes_channels, takes_images, unexpected_rank,
};

/// The depths torchvision defines, with their block type and blocks per stage.
const DEPTHS: [(usize, bool, [usize; 4]); 5] = [
    (18, false, [2, 2, 2, 2]),
    (34, false, [3, 4, 6, 3]),
    (50, true, [3, 4, 6, 3]),
    (101, true, [3, 4, 23, 3]),
    (152, true, [3, 8, 36, 3]),
];

/// A ResNet's configuration, shaped like the seed's `{type: ResNet, depth: 50}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Convolution groups of the bottleneck 3×3 (ResNeXt: 32).
    #[serde(default = "one")]
    pub groups: usize,
    /// Width of each group (ResNeXt-50 32x4d: 4; Wide ResNet-50-2: 128).
    #[serde(default = "sixty_four")]
    pub width_per_group: usize,
    /// Channels of the stem (64 in torchvision; smaller for test-sized models).
    #[serde(default = "sixty_four")]
    pub base_channels: usize,
    /// Channels of the stem when they differ from `base_channels` (timm's plain stem keeps
    /// 64 whatever its stages' widths); `None`: `base_channels`, as torchvision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_channels: Option<usize>,
    /// Input channels.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Classes of the `fc` classifier after global average pooling (logits out); 0 (the
    /// default): none, features out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_classes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_depth() -> usize {
    50
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn sixty_four() -> usize {
    64
}

/// A field of a config with a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidField {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::new(50)
    }
}

impl ResNetConfig {
    /// A torchvision ResNet of `depth` layers.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            groups: 1,
            width_per_group: 64,
            base_channels: 64,
            stem_channels: None,
            in_channels: 3,
            num_classes: 0,
        }
    }

    /// ResNet-18.
    pub fn resnet18() -> Self {
        Self::new(18)
    }
    /// ResNet-34.
    pub fn resnet34() -> Self {
        Self::new(34)
    }
    /// ResNet-50.
    pub fn resnet50() -> Self {
        Self::new(50)
    }
    /// ResNet-101.
    pub fn resnet101() -> Self {
        Self::new(101)
    }
    /// ResNet-152.
    pub fn resnet152() -> Self {
        Self::new(152)
    }
    /// ResNeXt-50 32x4d.
    pub fn resnext50_32x4d() -> Self {
        Self::new(50).with_groups(32).with_width_per_group(4)
    }
    /// Wide ResNet-50-2.
    pub fn wide_resnet50_2() -> Self {
        Self::new(50).with_width_per_group(128)
    }

    /// Set the bottleneck groups.
    #[must_use]
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// Set the width per group.
    #[must_use]
    pub fn with_width_per_group(mut self, width: usize) -> Self {
        self.width_per_group = width;
        self
    }
    /// End in the `fc` classifier of `num_classes` (0: no classifier).
    #[must_use]
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }
    /// Set the stem width (64 in torchvision).
    #[must_use]
    pub fn with_base_channels(mut self, channels: usize) -> Self {
        self.base_channels = channels;
        self
    }

    /// Check the configuration, naming the field at fault.
    pub fn validate(&self) -> Result<(bool, [usize; 4]), InvalidField> {
        let Some(&(_, bottleneck, blocks)) = DEPTHS.iter().find(|(d, _, _)| *d == self.depth)
        else {
            return Err(InvalidField {
                field: "depth",
                message: format!(
                    "{} is not a ResNet depth; allowed: 18, 34, 50, 101, 152",
                    self.depth
                ),
            });
        };
        for (field, value) in [
            ("groups", self.groups),
            ("width_per_group", self.width_per_group),
            ("base_channels", self.base_channels),
            ("stem_channels", self.stem()),
            ("in_channels", self.in_channels),
        ] {
            if value == 0 {
                return Err(InvalidField {
                    field,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !bottleneck && self.groups != 1 {
            return Err(InvalidField {
                field: "groups",
                message: format!(
                    "BasicBlock (depth {}) supports only groups = 1; use depth 50, 101 or 152",
                    self.depth
                ),
            });
        }
        if !bottleneck && self.width_per_group != 64 {
            return Err(InvalidField {
                field: "width_per_group",
                message: format!(
                    "BasicBlock (depth {}) supports only width_per_group = 64",
                    self.depth
                ),
            });
        }
        // torchvision's bottleneck width, `planes * width_per_group / 64 * groups`, is least in
        // the first stage (planes = base_channels); it must leave a channel.
        if bottleneck {
            let first = self
                .base_channels
                .checked_mul(self.width_per_group)
                .map(|w| w / 64)
                .and_then(|w| w.checked_mul(self.groups));
            // An overflow is the parameter count's to report, below.
            if first == Some(0) {
                return Err(InvalidField {
                    field: "width_per_group",
                    message: format!(
                        "base_channels {} × width_per_group {} / 64 × groups {} leaves the first stage's bottleneck without channels; it must be at least 1",
                        self.base_channels, self.width_per_group, self.groups,
                    ),
                });
            }
        }
        crate::limits::check_values(self.parameter_count(bottleneck, &blocks)).map_err(
            |message| InvalidField {
                field: "base_channels",
                message: format!(
                    "ResNet-{} with base_channels {}: {message}",
                    self.depth, self.base_channels
                ),
            },
        )?;
        Ok((bottleneck, blocks))
    }

    /// The stem's channels.
    fn stem(&self) -> usize {
        self.stem_channels.unwrap_or(self.base_channels)
    }

    /// Parameter and buffer values of the network `init` builds, counted without overflow
    /// (`None` if the count overflows).
    fn parameter_count(&self, bottleneck: bool, blocks: &[usize; 4]) -> Option<u128> {
        use crate::limits::product as p;
        let base = self.base_channels;
        // A BatchNorm: weight, bias, running mean and variance.
        let bn = |c: usize| p(&[4, c]);
        let stem = self.stem();
        let mut total = p(&[self.in_channels, stem, 49])?.checked_add(bn(stem)?)?;
        let mut inplanes = stem;
        for (i, &n) in blocks.iter().enumerate() {
            let planes = base.checked_shl(i as u32).filter(|v| v >> i == base)?;
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                let (block, out) = if bottleneck {
                    let width = (planes.checked_mul(self.width_per_group)? / 64)
                        .checked_mul(self.groups)?;
                    let out = planes.checked_mul(4)?;
                    let sum = [
                        p(&[inplanes, width])?,
                        bn(width)?,
                        p(&[width, width / self.groups, 9])?,
                        bn(width)?,
                        p(&[width, out])?,
                        bn(out)?,
                    ]
                    .iter()
                    .try_fold(0u128, |a, v| a.checked_add(*v))?;
                    (sum, out)
                } else {
                    let sum = [
                        p(&[inplanes, planes, 9])?,
                        bn(planes)?,
                        p(&[planes, planes, 9])?,
                        bn(planes)?,
                    ]
                    .iter()
                    .try_fold(0u128, |a, v| a.checked_add(*v))?;
                    (sum, planes)
                };
                let downsample = if stride != 1 || inplanes != out {
                    p(&[inplanes, out])?.checked_add(bn(out)?)?
                } else {
                    0
                };
                total = total.checked_add(block)?.checked_add(downsample)?;
                inplanes = out;
            }
        }
        if self.num_classes > 0 {
            total = total.checked_add(p(&[inplanes.checked_add(1)?, self.num_classes])?)?;
        }
        Some(total)
    }

    /// Channels of the output features.
    pub fn out_channels(&self) -> usize {
        let expansion = if self.depth >= 50 { 4 } else { 1 };
        self.base_channels * 8 * expansion
    }

    /// Build the network (parameters are lazy: loading a checkpoint never initialises them
    /// randomly first).
    pub fn init(&self, device: &Device) -> Result<ResNet, InvalidField> {
        let (bottleneck, blocks) = self.validate()?;
        let base = self.base_channels;
        let stem = self.stem();
        let mut inplanes = stem;
        let mut stages = Vec::with_capacity(4);
        for (i, &n) in blocks.iter().enumerate() {
            let planes = base << i;
            let stride = if i == 0 { 1 } else { 2 };
            let mut stage = Vec::with_capacity(n);
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                let block = if bottleneck {
                    Block::Bottleneck(Bottleneck::new(inplanes, planes, s, self, device))
                } else {
                    Block::Basic(BasicBlock::new(inplanes, planes, s, device))
                };
                inplanes = planes * if bottleneck { 4 } else { 1 };
                stage.push(block);
            }
            stages.push(stage);
        }
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        Ok(ResNet {
            conv1: Conv2dConfig::new([self.in_channels, stem], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: BatchNormConfig::new(stem).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: (self.num_classes > 0)
                .then(|| LinearConfig::new(inplanes, self.num_classes).init(device)),
        })
    }
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

/// torchvision's `downsample = Sequential(conv1x1, BatchNorm2d)`.
#[derive(Module, Debug, Pretrainable)]
pub struct Downsample {
    /// The 1×1 projection (`downsample.0`).
    #[pretrain(rename = "0")]
    pub conv: Conv2d,
    /// Its norm (`downsample.1`).
    #[pretrain(rename = "1")]
    pub bn: BatchNorm,
}

impl Downsample {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Option<Self> {
        (stride != 1 || cin != cout).then(|| Self {
            conv: conv(cin, cout, 1, stride, 1, device),
            bn: BatchNormConfig::new(cout).init(device),
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Two 3×3 convolutions with a skip connection (ResNet-18/34).
#[derive(Module, Debug, Pretrainable)]
pub struct BasicBlock {
    /// The first 3×3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// The second 3×3 convolution.
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// The shortcut's projection, where shape or stride change.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(inplanes: usize, planes: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv(inplanes, planes, 3, stride, 1, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv(planes, planes, 3, 1, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            downsample: Downsample::new(inplanes, planes, stride, device),
        }
    }

    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }
}

/// 1×1, grouped 3×3 (stride here, as torchvision's "ResNet V1.5"), 1×1 ×4 (ResNet-50+).
#[derive(Module, Debug, Pretrainable)]
pub struct Bottleneck {
    /// The 1×1 reduction.
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// The grouped 3×3 convolution (carries the stride).
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// The 1×1 expansion.
    pub conv3: Conv2d,
    /// Its BatchNorm.
    pub bn3: BatchNorm,
    /// The shortcut's projection, where shape or stride change.
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    fn new(
        inplanes: usize,
        planes: usize,
        stride: usize,
        c: &ResNetConfig,
        device: &Device,
    ) -> Self {
        let width = planes * c.width_per_group / 64 * c.groups;
        let out = planes * 4;
        Self {
            conv1: conv(inplanes, width, 1, 1, 1, device),
            bn1: BatchNormConfig::new(width).init(device),
            conv2: conv(width, width, 3, stride, c.groups, device),
            bn2: BatchNormConfig::new(width).init(device),
            conv3: conv(width, out, 1, 1, 1, device),
            bn3: BatchNormConfig::new(out).init(device),
            downsample: Downsample::new(inplanes, out, stride, device),
        }
    }

    /// The bottleneck with its skip connection.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let out = self.bn3.forward(self.conv3.forward(out));
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }
}

/// A residual block of either kind; transparent in checkpoint keys (`layer1.0.conv1`).
#[derive(Module, Debug, Pretrainable)]
#[allow(clippy::large_enum_variant, missing_docs)]
pub enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl Block {
    /// Run the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(b) => b.forward(x),
            Block::Bottleneck(b) => b.forward(x),
        }
    }
}

/// torchvision's ResNet up to `layer4`: images `[batch, 3, h, w]` → features
/// `[batch, channels, h/32, w/32]`.
#[derive(Module, Debug, Pretrainable)]
pub struct ResNet {
    /// The 7×7 stride-2 stem.
    pub conv1: Conv2d,
    /// The stem's BatchNorm.
    pub bn1: BatchNorm,
    /// 3×3 stride-2 max pooling after the stem.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<Block>,
    /// The classifier after global average pooling (with `num_classes`).
    pub fc: Option<Linear>,
}

impl ResNet {
    /// Features of a batch of images.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = self.maxpool.forward(x);
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x))
    }

    /// Logits of a batch of images: the features averaged over space, then `fc` (torchvision's
    /// and timm's `avgpool` + `flatten` + `fc`); the pooled features without `fc`.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let pooled: Tensor<2> = self.forward(x).mean_dim(3).mean_dim(2).flatten(1, 3);
        match &self.fc {
            Some(fc) => fc.forward(pooled),
            None => pooled,
        }
    }
}

impl Stage for ResNet {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        takes_images("ResNet", input_rank, if self.fc.is_some() { 2 } else { 4 })
    }

    fn input_channels(&self) -> Option<usize> {
        self.conv1.weight.lazy_shape().to_vec().get(1).copied()
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        takes_channels("ResNet", self.input_channels(), input)?;
        let last = [&self.layer4, &self.layer3, &self.layer2, &self.layer1]
            .into_iter()
            .find_map(|stage| stage.last());
        if let Some(fc) = &self.fc {
            return Ok(fc.weight.lazy_shape().to_vec()[1]);
        }
        Ok(match last {
            Some(Block::Basic(b)) => b.bn2.gamma.lazy_shape().to_vec()[0],
            Some(Block::Bottleneck(b)) => b.bn3.gamma.lazy_shape().to_vec()[0],
            None => self.bn1.gamma.lazy_shape().to_vec()[0],
        })
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D4(x) => match &self.fc {
                Some(_) => Features::D2(self.logits(x)),
                None => Features::D4(ResNet::forward(self, x)),
            },
            other => unexpected_rank("ResNet", other.rank()),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// torchvision's parameter counts without `fc` (11,689,512 − 513,000 and 25,557,032 −
    /// 2,049,000), plus each BatchNorm's running mean and variance.
    #[test]
    fn parameter_counts_match_torchvision() {
        for (depth, params, bn_channels) in
            [(18, 11_176_512u128, 4_800u128), (50, 23_508_032, 26_560)]
        {
            let c = ResNetConfig::new(depth);
            let (bottleneck, blocks) = c.validate().unwrap();
            assert_eq!(
                c.parameter_count(bottleneck, &blocks),
                Some(params + 2 * bn_channels),
                "ResNet-{depth}"
            );
        }
    }

    /// The probe's zero width: 1 × 1 / 64 × 64 rounds the first bottleneck to no channel
    /// (the old check, width_per_group × groups ≥ 64, held only for base_channels 64).
    #[test]
    fn a_bottleneck_without_channels_is_refused() {
        let c = ResNetConfig::new(50)
            .with_base_channels(1)
            .with_width_per_group(1)
            .with_groups(64);
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "width_per_group");
        assert!(err.message.contains("without channels"), "{}", err.message);
        assert!(
            ResNetConfig::new(50)
                .with_base_channels(32)
                .with_width_per_group(2)
                .with_groups(32)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn oversized_configs_are_refused_before_allocating() {
        let mut c = ResNetConfig::new(50);
        c.base_channels = 1 << 62;
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "base_channels");
        assert!(err.message.contains("overflows"), "{}", err.message);
        if crate::limits::machine_memory().is_some() {
            c.base_channels = 100_000;
            let err = c.validate().unwrap_err();
            assert!(
                err.message.contains("more than this machine's"),
                "{}",
                err.message
            );
        }
    }
}
