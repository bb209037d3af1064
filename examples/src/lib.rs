//! A user-defined model, as a burn user would write it: `#[derive(Module, Pretrainable)]` on
//! plain structs whose field names are PyTorch's keys, with `#[pretrain(rename = ...)]` where
//! they cannot be (torchvision's `downsample.0` / `downsample.1`).
//!
//! It mirrors the small torchvision-style network that `tests/fixtures/generate.py` saves with
//! PyTorch, so the examples load real checkpoints.

pub mod custom;
pub mod devices;
pub mod finetune;
#[cfg(feature = "remote")]
pub mod remote;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn_pretrain::Pretrainable;
use std::path::PathBuf;

/// torchvision's `downsample = Sequential(conv, bn)`: the checkpoint calls them `0` and `1`.
#[derive(Module, Debug, Pretrainable)]
pub struct Downsample {
    #[pretrain(rename = "0")]
    pub conv: Conv2d,
    #[pretrain(rename = "1")]
    pub bn: BatchNorm,
}

/// A BasicBlock-shaped block.
#[derive(Module, Debug, Pretrainable)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl Downsample {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

impl Block {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }

    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        let conv3 = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        Self {
            conv1: conv3(cin, cout),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv3(cout, cout),
            bn2: BatchNormConfig::new(cout).init(device),
            downsample: (cin != cout).then(|| Downsample {
                conv: Conv2dConfig::new([cin, cout], [1, 1])
                    .with_bias(false)
                    .init(device),
                bn: BatchNormConfig::new(cout).init(device),
            }),
        }
    }
}

/// The fixtures' backbone: conv1, bn1, layer1 = [Block(4, 4), Block(4, 8)].
#[derive(Module, Debug, Pretrainable)]
pub struct Backbone {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<Block>,
}

impl Backbone {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        self.layer1.iter().fold(x, |x, block| block.forward(x))
    }

    pub fn new(device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([3, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn1: BatchNormConfig::new(4).init(device),
            layer1: vec![Block::new(4, 4, device), Block::new(4, 8, device)],
        }
    }
}

/// The classification head: one Linear called `fc`.
#[derive(Module, Debug, Pretrainable)]
pub struct Head {
    pub fc: Linear,
}

/// The seed's classifier shape: backbone + head.
#[derive(Module, Debug, Pretrainable)]
pub struct Classifier {
    pub backbone: Backbone,
    pub head: Head,
}

impl Classifier {
    /// Backbone, global average pooling, then the head's logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let features = self.backbone.forward(x);
        let [batch, channels, _, _] = features.dims();
        let pooled = features.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.head.fc.forward(pooled)
    }

    pub fn new(num_classes: usize, device: &Device) -> Self {
        Self {
            backbone: Backbone::new(device),
            head: Head {
                fc: LinearConfig::new(8, num_classes).init(device),
            },
        }
    }
}

/// A checkpoint bundled with the repository (written by PyTorch, see `tests/fixtures`).
pub fn bundled(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(relative);
    path.canonicalize().unwrap_or(path)
}

/// An f32 tensor PyTorch or timm saved in a bundled file (`resnet/resnet18_narrow_io.safetensors`,
/// `input`), as data for any device.
pub fn bundled_data(file: &str, key: &str) -> std::io::Result<burn::tensor::TensorData> {
    let checkpoint =
        burn_pretrain::Checkpoint::open(bundled(file)).map_err(std::io::Error::other)?;
    let entry = checkpoint
        .get(key)
        .ok_or_else(|| std::io::Error::other(format!("{file} has no `{key}`")))?;
    Ok(burn::tensor::TensorData::from_bytes_vec(
        entry.read()?,
        entry.shape().to_vec(),
        burn::tensor::DType::F32,
    ))
}

/// Values on the host, as f32.
pub fn host_values(data: burn::tensor::TensorData) -> std::io::Result<Vec<f32>> {
    data.convert::<f32>()
        .try_to_vec()
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
}

/// max |ours − theirs| / max |theirs|: the figure every parity check in this repository uses.
pub fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len(), "outputs of different sizes");
    let diff = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    diff / theirs.iter().map(|b| b.abs()).fold(0f32, f32::max)
}

/// Log to stderr at `info` (or `RUST_LOG`), without targets and times, as the examples do.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .without_time()
        .init();
}
