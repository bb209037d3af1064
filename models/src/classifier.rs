//! The seed's `Classifier { backbone, neck, head, act_name }`: logits while training,
//! activated outputs in inference.

use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use burn_pretrain::Pretrainable;
use serde::{Deserialize, Serialize};

use crate::convnext::ConvNeXt;
use crate::features::{ChannelError, Features, RankError, Stage, StageError, unexpected_rank};
use crate::hf_vit::TransformersVit;
use crate::resnet::ResNet;
use crate::vit::VisionTransformer;

/// What inference applies to the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Probabilities over classes (single-label).
    #[default]
    Softmax,
    /// Independent probabilities (multi-label).
    Sigmoid,
}

/// The built-in backbones, as the BACKBONES registry builds them.
#[derive(Module, Debug, Pretrainable)]
#[allow(clippy::large_enum_variant)]
pub enum Backbone {
    /// `{type: ResNet, depth, ...}`.
    ResNet(ResNet),
    /// `{type: VisionTransformer, variant, num_classes, img_size, ...}`.
    VisionTransformer(VisionTransformer),
    /// `{type: ConvNeXt, variant, num_classes, ...}`.
    ConvNeXt(ConvNeXt),
    /// `{type: TransformersVit, image_size, patch_size, hidden_size, ..., num_classes}`:
    /// transformers' `ViTModel` / `ViTForImageClassification`.
    TransformersVit(TransformersVit),
}

/// `$body` with `$b` bound to the backbone inside any variant.
macro_rules! each_backbone {
    ($self:expr, $b:ident => $body:expr) => {
        match $self {
            Backbone::ResNet($b) => $body,
            Backbone::VisionTransformer($b) => $body,
            Backbone::ConvNeXt($b) => $body,
            Backbone::TransformersVit($b) => $body,
        }
    };
}

impl Stage for Backbone {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        each_backbone!(self, b => b.output_rank(input_rank))
    }

    fn input_channels(&self) -> Option<usize> {
        each_backbone!(self, b => b.input_channels())
    }

    fn input_size(&self) -> Option<[usize; 2]> {
        each_backbone!(self, b => b.input_size())
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        each_backbone!(self, b => b.output_channels(input))
    }

    fn forward(&self, x: Features) -> Features {
        each_backbone!(self, b => Stage::forward(b, x))
    }
}

/// Backbone → neck → head, with ranks checked when built. Generic so that user-registered
/// stage types fit; the registries build `Classifier<Backbone, Neck, Head>`.
#[derive(Module, Debug, Pretrainable)]
pub struct Classifier<B: Module, N: Module, H: Module> {
    /// Feature extractor.
    pub backbone: B,
    /// Between backbone and head (pooling).
    pub neck: N,
    /// Produces the logits.
    pub head: H,
    /// The activation applied in inference.
    #[module(skip)]
    pub act: Activation,
    /// Whether training behaviour (raw logits) is on; cleared by `valid()`.
    pub training: Param<Flag>,
}

impl<B, N, H> Classifier<B, N, H>
where
    B: Module + Stage,
    N: Module + Stage,
    H: Module + Stage,
{
    /// Assemble the stages, checking that each takes what the previous gives for images
    /// (rank 4). The error names the stage at fault and why.
    pub fn new(
        backbone: B,
        neck: N,
        head: H,
        act: Activation,
    ) -> Result<Self, (&'static str, StageError)> {
        let r = backbone
            .output_rank(4)
            .map_err(|e| ("backbone", e.into()))?;
        let r = neck.output_rank(r).map_err(|e| ("neck", e.into()))?;
        let r = head.output_rank(r).map_err(|e| ("head", e.into()))?;
        if r != 2 {
            return Err((
                "head",
                RankError {
                    stage: "a classifier".into(),
                    takes: "a head giving [batch, classes] (rank 2)".into(),
                    got: r,
                    hint: None,
                }
                .into(),
            ));
        }
        // Channels, where the backbone fixes its input's: a head over another width than the
        // backbone gives would fail inside the first forward pass.
        if let Some(c) = backbone.input_channels() {
            let c = backbone
                .output_channels(c)
                .map_err(|e| ("backbone", e.into()))?;
            let c = neck.output_channels(c).map_err(|e| ("neck", e.into()))?;
            head.output_channels(c).map_err(|e| ("head", e.into()))?;
        }
        Ok(Self {
            backbone,
            neck,
            head,
            act,
            training: Param::from_bool(true),
        })
    }

    /// Logits `[batch, classes]` for images `[batch, channels, h, w]`.
    pub fn forward_logits(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self
            .neck
            .forward(self.backbone.forward(Features::D4(images)));
        match self.head.forward(features) {
            Features::D2(logits) => logits,
            other => unexpected_rank("Classifier head output", other.rank()),
        }
    }

    /// Logits while training (an autodiff device and training on), probabilities otherwise,
    /// as the seed's classifier.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let training = images.device().is_autodiff() && self.training.is_enabled();
        let logits = self.forward_logits(images);
        match (training, self.act) {
            (true, _) => logits,
            (false, Activation::Softmax) => softmax(logits, 1),
            (false, Activation::Sigmoid) => sigmoid(logits),
        }
    }
}
