//! Necks between a backbone and a head: `GlobalAveragePooling { dim: 1 | 2 | 3 }` and
//! `Identity`, as the seed's NECKS registry has them.

use burn::prelude::*;
use burn_pretrain::Pretrainable;
use serde::{Deserialize, Serialize};

use crate::features::{Features, RankError, Stage, unexpected_rank};
use crate::resnet::InvalidField;

/// Configuration of [`GlobalAveragePooling`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePoolingConfig {
    /// Spatial dimensions averaged: 1 (`[b, c, l]`), 2 (`[b, c, h, w]`) or 3 (`[b, c, d, h, w]`).
    #[serde(default = "two")]
    pub dim: usize,
}

fn two() -> usize {
    2
}

impl Default for GlobalAveragePoolingConfig {
    fn default() -> Self {
        Self { dim: 2 }
    }
}

impl GlobalAveragePoolingConfig {
    /// Check `dim` and build the neck.
    pub fn init(&self) -> Result<GlobalAveragePooling, InvalidField> {
        if !(1..=3).contains(&self.dim) {
            return Err(InvalidField {
                field: "dim",
                message: format!("{} is not a pooling dimension; allowed: 1, 2, 3", self.dim),
            });
        }
        Ok(GlobalAveragePooling { dim: self.dim })
    }
}

/// Averages the spatial dimensions away: `[batch, channels, ...]` → `[batch, channels]`.
#[derive(Module, Debug, Pretrainable)]
pub struct GlobalAveragePooling {
    /// How many trailing spatial dimensions are averaged.
    pub dim: usize,
}

impl Stage for GlobalAveragePooling {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        if input_rank == self.dim + 2 {
            Ok(2)
        } else {
            Err(RankError {
                stage: format!("GlobalAveragePooling with dim {}", self.dim),
                takes: format!("rank-{} features", self.dim + 2),
                got: input_rank,
                hint: Some(format!("use dim {}", input_rank.saturating_sub(2))),
            })
        }
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D3(x) if self.dim == 1 => {
                let [b, c, _] = x.dims();
                Features::D2(x.mean_dim(2).reshape([b, c]))
            }
            Features::D4(x) if self.dim == 2 => {
                let [b, c, _, _] = x.dims();
                Features::D2(x.mean_dim(3).mean_dim(2).reshape([b, c]))
            }
            Features::D5(x) if self.dim == 3 => {
                let [b, c, _, _, _] = x.dims();
                Features::D2(x.mean_dim(4).mean_dim(3).mean_dim(2).reshape([b, c]))
            }
            other => unexpected_rank("GlobalAveragePooling", other.rank()),
        }
    }
}

/// Passes features through unchanged (the seed's default neck).
#[derive(Module, Debug, Pretrainable)]
pub struct Identity;

impl Stage for Identity {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        Ok(input_rank)
    }

    fn forward(&self, x: Features) -> Features {
        x
    }
}

/// The built-in necks, as the NECKS registry builds them.
#[derive(Module, Debug, Pretrainable)]
pub enum Neck {
    /// `{type: GlobalAveragePooling, dim}`.
    GlobalAveragePooling(GlobalAveragePooling),
    /// `{type: Identity}`: features pass through.
    Identity(Identity),
}

impl Stage for Neck {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        match self {
            Neck::GlobalAveragePooling(n) => n.output_rank(input_rank),
            Neck::Identity(n) => n.output_rank(input_rank),
        }
    }

    fn forward(&self, x: Features) -> Features {
        match self {
            Neck::GlobalAveragePooling(n) => n.forward(x),
            Neck::Identity(n) => n.forward(x),
        }
    }
}
