//! Fine-tuning a loaded model, shared by the `finetune` example and its test: a small
//! synthetic image dataset whose classes a frozen backbone can tell apart, a training loop on
//! an `Autodiff` device (Adam, cross-entropy), and snapshots of a model's tensors by id to
//! show what training changed.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

/// Images and their classes.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `[n, 3, size, size]`.
    pub images: Tensor<4>,
    /// `[n]`, each below the class count.
    pub labels: Tensor<1, Int>,
}

/// `n` noisy images of `size`×`size` in `classes` classes; class `c` is the brightness level
/// `c` (every pixel shifted by `c − (classes − 1) / 2`), so pooled features of any backbone
/// carry it and a new head can learn it.
pub fn synthetic(n: usize, classes: usize, size: usize, device: &Device) -> Dataset {
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let shift: Vec<f32> = labels
        .iter()
        .map(|&c| c as f32 - (classes as f32 - 1.0) / 2.0)
        .collect();
    let shift = Tensor::<1>::from_data(TensorData::new(shift, [n]), device).reshape([n, 1, 1, 1]);
    let noise = Tensor::<4>::random([n, 3, size, size], Distribution::Normal(0.0, 0.5), device);
    Dataset {
        images: noise + shift,
        labels: Tensor::from_data(TensorData::new(labels, [n]), device),
    }
}

/// Train `model` for `steps` full-batch Adam steps at learning rate `lr` on `data`; returns the
/// model and the loss before each step. `model` must live on an `Autodiff` device; tensors that
/// do not require gradients (frozen) are not touched.
pub fn train<M: Module>(
    mut model: M,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    data: &Dataset,
    steps: usize,
    lr: f64,
) -> (M, Vec<f32>) {
    let device = data.images.device();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let logits = forward(&model, data.images.clone());
        let loss = loss_fn.forward(logits, data.labels.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    (model, losses)
}

/// Every float tensor of a module by id: parameters (their stored base, without a LoRA's
/// delta), buffers (BatchNorm's running statistics) and LoRA factors.
pub fn snapshot<M: Module>(model: &M) -> HashMap<ParamId, TensorData> {
    struct Snapshot(HashMap<ParamId, TensorData>);
    impl ModuleVisitor for Snapshot {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id, param.base().into_data());
        }
    }
    let mut snapshot = Snapshot(HashMap::new());
    model.visit(&mut snapshot);
    snapshot.0
}

/// The ids of the LoRA factors attached to a module's parameters (burn visits them inside
/// their parameter's `Reparameterization` module).
pub fn lora_factors<M: Module>(model: &M) -> Vec<ParamId> {
    #[derive(Default)]
    struct Factors {
        depth: usize,
        ids: Vec<ParamId>,
    }
    impl ModuleVisitor for Factors {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            if container_type == "Reparameterization" || self.depth > 0 {
                self.depth += 1;
            }
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.depth = self.depth.saturating_sub(1);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.depth > 0 {
                self.ids.push(param.id);
            }
        }
    }
    let mut factors = Factors::default();
    model.visit(&mut factors);
    factors.ids
}

/// Which tensors differ between two snapshots (bit for bit), and which are equal.
pub fn changed(
    before: &HashMap<ParamId, TensorData>,
    after: &HashMap<ParamId, TensorData>,
) -> (Vec<ParamId>, Vec<ParamId>) {
    let mut changed = Vec::new();
    let mut same = Vec::new();
    for (id, value) in before {
        match after.get(id) {
            Some(now) if now.as_bytes() == value.as_bytes() => same.push(*id),
            _ => changed.push(*id),
        }
    }
    (changed, same)
}
