//! The model of `fixtures/burn_records/generator` (records written by older burn releases),
//! written for burn 0.22.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, Lstm, LstmConfig,
};
use burn::prelude::*;
use burn_pretrain::Pretrainable;

/// The releases whose records are committed (`fixtures/burn_records/<release>/`).
pub const RELEASES: &[&str] = &[
    "0.13.2", "0.14.0", "0.15.0", "0.16.1", "0.17.1", "0.18.0", "0.19.1", "0.20.1", "0.21.0",
];

#[derive(Module, Debug, Pretrainable)]
pub struct Block {
    pub linear: Linear,
    pub norm: LayerNorm,
}

/// The generator's `Net`, written for burn 0.22.
#[derive(Module, Debug, Pretrainable)]
pub struct Net {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub embed: Embedding,
    pub lstm: Lstm,
    pub blocks: Vec<Block>,
    pub head: Linear,
}

impl Net {
    /// The generator's shapes, freshly initialised.
    pub fn new(device: &Device) -> Self {
        let block = || Block {
            linear: LinearConfig::new(4, 4).init(device),
            norm: LayerNormConfig::new(4).init(device),
        };
        Self {
            conv: Conv2dConfig::new([2, 3], [3, 3]).init(device),
            bn: BatchNormConfig::new(3).init(device),
            embed: EmbeddingConfig::new(5, 4).init(device),
            lstm: LstmConfig::new(4, 3, true).init(device),
            blocks: vec![block(), block()],
            head: LinearConfig::new(4, 2).init(device),
        }
    }

    /// `head(blocks(x))`, what the generator saved as `mlp.output`.
    pub fn mlp(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self
            .blocks
            .iter()
            .fold(x, |x, b| b.norm.forward(b.linear.forward(x)));
        self.head.forward(x)
    }
}
