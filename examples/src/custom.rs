//! A backbone type of the user's own, registered beside the built-in ones without forking
//! burn-pretrain-models: an enum holding the built-ins and the new type, a registry that takes
//! every built-in (`with_all`) and adds `TinyNet`, and `classifiers` to build whole models.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn_pretrain::Pretrainable;
use burn_pretrain_models::{
    Backbone, Classifier, Features, Head, Neck, RankError, Registry, Stage, builtin_backbones,
    builtin_heads, builtin_necks, classifiers,
};
use serde::Deserialize;

/// A one-layer backbone: a 7×7 stride-2 convolution and a norm.
#[derive(Module, Debug, Pretrainable)]
pub struct TinyNet {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// `{type: TinyNet, channels: 8}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyNetConfig {
    pub channels: usize,
}

impl TinyNetConfig {
    pub fn init(&self, device: &Device) -> TinyNet {
        TinyNet {
            conv: Conv2dConfig::new([3, self.channels], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(self.channels).init(device),
        }
    }
}

impl Stage for TinyNet {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        match input_rank {
            4 => Ok(4),
            got => Err(RankError {
                stage: "TinyNet".into(),
                takes: "images (rank 4)".into(),
                got,
                hint: None,
            }),
        }
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D4(x) => Features::D4(relu(self.bn.forward(self.conv.forward(x)))),
            other => other,
        }
    }
}

/// The user's backbones: every built-in one, and `TinyNet`.
#[derive(Module, Debug, Pretrainable)]
#[allow(clippy::large_enum_variant)]
pub enum MyBackbone {
    Builtin(Backbone),
    Tiny(TinyNet),
}

impl Stage for MyBackbone {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        match self {
            MyBackbone::Builtin(b) => b.output_rank(input_rank),
            MyBackbone::Tiny(b) => b.output_rank(input_rank),
        }
    }

    fn forward(&self, x: Features) -> Features {
        match self {
            MyBackbone::Builtin(b) => b.forward(x),
            MyBackbone::Tiny(b) => b.forward(x),
        }
    }
}

/// A BACKBONES registry with `TinyNet` added to the built-in types.
pub fn my_backbones() -> Registry<MyBackbone> {
    Registry::new("backbone")
        .with_all(&builtin_backbones(), MyBackbone::Builtin)
        .with("TinyNet", |c: TinyNetConfig, ctx| {
            Ok(MyBackbone::Tiny(c.init(ctx.device())))
        })
}

/// A MODELS registry whose classifiers may use `TinyNet`.
pub fn my_models() -> Registry<Classifier<MyBackbone, Neck, Head>> {
    classifiers(my_backbones(), builtin_necks(), builtin_heads())
}
