//! The built-in registries: torchvision's ResNets, timm's ViTs and ConvNeXts, the necks and
//! heads, and classifiers made of them.

use std::sync::{Arc, LazyLock};

use burn::module::ModuleDisplay;
use burn::prelude::*;
use burn_pretrain::Pretrainable;
use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, Registry};
use crate::classifier::{Activation, Backbone, Classifier};
use crate::convnext::ConvNeXtConfig;
use crate::head::{ClassifierHeadConfig, Head};
use crate::hf_vit::TransformersVitConfig;
use crate::neck::{GlobalAveragePoolingConfig, Identity, Neck};
use crate::resnet::ResNetConfig;
use crate::vit::VisionTransformerConfig;

/// The config of a classifier level (its stages are built through their registries).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierConfig {
    backbone: Value,
    #[serde(default)]
    neck: Option<Value>,
    head: Value,
    #[serde(default)]
    act_name: Activation,
}

/// A registry building `Classifier`s whose stages come from the given registries. The neck
/// defaults to `{"type": "Identity"}`.
pub fn classifiers<B, N, H>(
    backbones: Registry<B>,
    necks: Registry<N>,
    heads: Registry<H>,
) -> Registry<Classifier<B, N, H>>
where
    B: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
    N: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
    H: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
{
    let (backbones, necks, heads) = (Arc::new(backbones), Arc::new(necks), Arc::new(heads));
    Registry::new("model").with("Classifier", move |c: ClassifierConfig, ctx| {
        let backbone = backbones.build_in(&c.backbone, ctx, "backbone")?;
        let identity = serde_json::json!({"type": "Identity"});
        let neck = necks.build_in(c.neck.as_ref().unwrap_or(&identity), ctx, "neck")?;
        let head = heads.build_in(&c.head, ctx, "head")?;
        Classifier::new(backbone, neck, head, c.act_name)
            .map_err(|(stage, e)| ctx.invalid(stage, e))
    })
}

/// The built-in backbones: `ResNet` (torchvision), `VisionTransformer` and `ConvNeXt` (timm;
/// with `num_classes` they end in timm's head and give logits).
pub fn builtin_backbones() -> Registry<Backbone> {
    Registry::new("backbone")
        .with("ResNet", |c: ResNetConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::ResNet(net))
        })
        .with("VisionTransformer", |c: VisionTransformerConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::VisionTransformer(net))
        })
        .with("ConvNeXt", |c: ConvNeXtConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::ConvNeXt(net))
        })
        .with("TransformersVit", |c: TransformersVitConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::TransformersVit(net))
        })
}

/// The built-in necks: `GlobalAveragePooling`, `Identity`.
pub fn builtin_necks() -> Registry<Neck> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    Registry::new("neck")
        .with(
            "GlobalAveragePooling",
            |c: GlobalAveragePoolingConfig, ctx| {
                let neck = c.init().map_err(|e| ConfigError::from((&*ctx, e)))?;
                Ok(Neck::GlobalAveragePooling(neck))
            },
        )
        .with("Identity", |_: NoFields, _| Ok(Neck::Identity(Identity)))
}

/// The built-in heads: `ClassifierHead`.
pub fn builtin_heads() -> Registry<Head> {
    Registry::new("head").with("ClassifierHead", |c: ClassifierHeadConfig, ctx| {
        let head = c
            .init(ctx.device())
            .map_err(|e| ConfigError::from((&*ctx, e)))?;
        Ok(Head::ClassifierHead(head))
    })
}

/// The seed's classifier with the built-in stages.
pub type DefaultClassifier = Classifier<Backbone, Neck, Head>;

/// Models: `Classifier` with the built-in stages.
pub static MODELS: LazyLock<Registry<DefaultClassifier>> =
    LazyLock::new(|| classifiers(builtin_backbones(), builtin_necks(), builtin_heads()));
/// Backbones: `ResNet`, `VisionTransformer`, `ConvNeXt`.
pub static BACKBONES: LazyLock<Registry<Backbone>> = LazyLock::new(builtin_backbones);
/// Necks: `GlobalAveragePooling`, `Identity`.
pub static NECKS: LazyLock<Registry<Neck>> = LazyLock::new(builtin_necks);
/// Heads: `ClassifierHead`.
pub static HEADS: LazyLock<Registry<Head>> = LazyLock::new(builtin_heads);
