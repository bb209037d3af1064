//! Models for burn-pretrain: torchvision's ResNet family as the seed's backbone, timm's
//! Vision Transformer and ConvNeXt, necks, heads, the seed's `Classifier`, and registries that
//! build them from configs with a `pretrain` at any level.
//!
//! ```no_run
//! use burn::prelude::*;
//! use burn_pretrain_models::MODELS;
//!
//! let config = serde_json::json!({
//!     "type": "Classifier",
//!     "backbone": {"type": "ResNet", "depth": 50},
//!     "neck": {"type": "GlobalAveragePooling"},
//!     "head": {"type": "ClassifierHead", "dim": 2048, "num_classes": 200},
//!     "pretrain": "pretrain.pth"
//! });
//! let built = MODELS.build(&config, &Device::flex())?;
//! println!("{}", built.report);
//! # Ok::<(), burn_pretrain_models::ConfigError>(())
//! ```

#![warn(missing_docs)]

pub mod bert;
mod classifier;
mod convnext;
mod features;
mod head;
pub mod hf_vit;
pub mod limits;
mod neck;
pub mod preprocess;
mod registry;
pub mod repository;
mod resnet;
pub mod sentence;
mod vit;

pub use classifier::{Activation, Backbone, Classifier};
pub use convnext::{
    BlockMlp, ConvMlp, ConvNeXt, ConvNeXtBlock, ConvNeXtConfig, ConvNeXtSpec, ConvNeXtStage,
    NormHead, StageDownsample, Stem,
};
pub use features::{ChannelError, Features, RankError, Stage, StageError};
pub use head::{ClassifierHead, ClassifierHeadConfig, Head};
pub use neck::{GlobalAveragePooling, GlobalAveragePoolingConfig, Identity, Neck};
pub use registry::{
    BACKBONES, BuildCtx, BuildReport, Built, ConfigError, ConfigFormat, DefaultClassifier, HEADS,
    MODELS, NECKS, Registry, ScopedLoad, builtin_backbones, builtin_heads, builtin_necks,
    classifiers, local_pretrain_paths, parse_config, read_config, read_config_file, strip_pretrain,
};
pub use resnet::{BasicBlock, Block, Bottleneck, Downsample, InvalidField, ResNet, ResNetConfig};
pub use vit::{
    Attention, GlobalPool, Mlp, PatchEmbed, VisionTransformer, VisionTransformerConfig, VitBlock,
    VitSpec,
};
