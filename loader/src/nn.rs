//! `Pretrainable` for the burn-nn layers that hold parameters, with PyTorch's conventions:
//! Linear's weight is stored `[out, in]` by PyTorch and `[in, out]` by burn; norms call their
//! affine parameters `weight`/`bias` in PyTorch and `gamma`/`beta` in burn; BatchNorm's
//! `num_batches_tracked` counter is known and ignored.

use burn::nn;
use burn::nn::conv;
use burn::nn::pool;

use crate::format::Convention;
use crate::pretrainable::{
    Applier, Layout, Pretrainable, Walker, has_load_mapper, nothing_to_load,
};

/// The checkpoint names of a norm's scale and shift.
fn affine_names(convention: Convention) -> (&'static str, &'static str) {
    match convention {
        Convention::Pytorch => ("weight", "bias"),
        Convention::Burn => ("gamma", "beta"),
    }
}

impl Pretrainable for nn::Linear {
    fn walk_pretrain(&self, walker: &mut Walker) {
        // A Row linear (burn's default) keeps `[in, out]`, PyTorch's transpose; a Col linear
        // is loaded as `[out, in]`, like PyTorch, and burn's load mapper transposes it.
        let layout = if has_load_mapper(&self.weight) {
            Layout::Same
        } else {
            Layout::Transposed
        };
        walker.field("weight", "weight", |w| w.param(&self.weight, layout));
        walker.child("bias", "bias", &self.bias);
    }

    fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
        self.weight = applier.child("weight", "weight", self.weight);
        self.bias = applier.child("bias", "bias", self.bias);
        self
    }
}

/// Layers whose fields `weight` and `bias` carry PyTorch's names and layout.
macro_rules! weight_and_bias {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn walk_pretrain(&self, walker: &mut Walker) {
                    walker.child("weight", "weight", &self.weight);
                    walker.child("bias", "bias", &self.bias);
                }

                fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
                    self.weight = applier.child("weight", "weight", self.weight);
                    self.bias = applier.child("bias", "bias", self.bias);
                    self
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
);

impl Pretrainable for nn::Embedding {
    fn walk_pretrain(&self, walker: &mut Walker) {
        walker.child("weight", "weight", &self.weight);
    }

    fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
        self.weight = applier.child("weight", "weight", self.weight);
        self
    }
}

impl Pretrainable for nn::PRelu {
    fn walk_pretrain(&self, walker: &mut Walker) {
        let name = match walker.convention() {
            Convention::Pytorch => "weight",
            Convention::Burn => "alpha",
        };
        walker.child(name, "alpha", &self.alpha);
    }

    fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
        let name = match applier.convention() {
            Convention::Pytorch => "weight",
            Convention::Burn => "alpha",
        };
        self.alpha = applier.child(name, "alpha", self.alpha);
        self
    }
}

impl Pretrainable for nn::BatchNorm {
    fn walk_pretrain(&self, walker: &mut Walker) {
        let (scale, shift) = affine_names(walker.convention());
        walker.child(scale, "gamma", &self.gamma);
        walker.child(shift, "beta", &self.beta);
        walker.child("running_mean", "running_mean", &self.running_mean);
        walker.child("running_var", "running_var", &self.running_var);
        walker.expect_unused(
            "num_batches_tracked",
            "BatchNorm step counter, not a parameter",
        );
    }

    fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
        let (scale, shift) = affine_names(applier.convention());
        self.gamma = applier.child(scale, "gamma", self.gamma);
        self.beta = applier.child(shift, "beta", self.beta);
        self.running_mean = applier.child("running_mean", "running_mean", self.running_mean);
        self.running_var = applier.child("running_var", "running_var", self.running_var);
        self
    }
}

/// Norms with a scale `gamma` and a shift `beta`, either possibly absent.
macro_rules! affine_norm {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn walk_pretrain(&self, walker: &mut Walker) {
                    let (scale, shift) = affine_names(walker.convention());
                    walker.child(scale, "gamma", &self.gamma);
                    walker.child(shift, "beta", &self.beta);
                }

                fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
                    let (scale, shift) = affine_names(applier.convention());
                    self.gamma = applier.child(scale, "gamma", self.gamma);
                    self.beta = applier.child(shift, "beta", self.beta);
                    self
                }
            }
        )*
    };
}

affine_norm!(nn::LayerNorm, nn::GroupNorm, nn::InstanceNorm);

impl Pretrainable for nn::RmsNorm {
    fn walk_pretrain(&self, walker: &mut Walker) {
        let (scale, _) = affine_names(walker.convention());
        walker.child(scale, "gamma", &self.gamma);
    }

    fn apply_pretrain(mut self, applier: &mut Applier) -> Self {
        let (scale, _) = affine_names(applier.convention());
        self.gamma = applier.child(scale, "gamma", self.gamma);
        self
    }
}

nothing_to_load!(
    nn::Dropout,
    nn::Relu,
    nn::Gelu,
    nn::Sigmoid,
    nn::Tanh,
    nn::LeakyRelu,
    nn::Identity,
    nn::PaddingConfig1d,
    nn::PaddingConfig2d,
    nn::PaddingConfig3d,
    pool::MaxPool1d,
    pool::MaxPool2d,
    pool::AvgPool1d,
    pool::AvgPool2d,
    pool::AdaptiveAvgPool1d,
    pool::AdaptiveAvgPool2d,
    pool::AdaptiveAvgPool3d,
);
