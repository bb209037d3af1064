//! Heads: `ClassifierHead { dim, num_classes, dropout_rate }`, a dropout and a Linear named
//! `fc`, as the seed's HEADS registry has it.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn_pretrain::Pretrainable;
use serde::{Deserialize, Serialize};

use crate::features::{ChannelError, Features, RankError, Stage, unexpected_rank};
use crate::resnet::InvalidField;

/// Configuration of [`ClassifierHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierHeadConfig {
    /// Input features.
    pub dim: usize,
    /// Classes.
    pub num_classes: usize,
    /// Dropout before `fc` (0 for none).
    #[serde(default)]
    pub dropout_rate: f64,
}

impl ClassifierHeadConfig {
    /// A head from `dim` features to `num_classes` logits.
    pub fn new(dim: usize, num_classes: usize) -> Self {
        Self {
            dim,
            num_classes,
            dropout_rate: 0.0,
        }
    }

    /// Check the values and build the head.
    pub fn init(&self, device: &Device) -> Result<ClassifierHead, InvalidField> {
        for (field, v) in [("dim", self.dim), ("num_classes", self.num_classes)] {
            if v == 0 {
                return Err(InvalidField {
                    field,
                    message: "must be at least 1".into(),
                });
            }
        }
        crate::limits::check_values(
            self.dim
                .checked_add(1)
                .and_then(|d| crate::limits::product(&[d, self.num_classes])),
        )
        .map_err(|message| InvalidField {
            field: "num_classes",
            message: format!("a head of {} × {}: {message}", self.dim, self.num_classes),
        })?;
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(InvalidField {
                field: "dropout_rate",
                message: format!("{} is not a probability in [0, 1)", self.dropout_rate),
            });
        }
        Ok(ClassifierHead {
            dropout: DropoutConfig::new(self.dropout_rate).init(),
            fc: LinearConfig::new(self.dim, self.num_classes).init(device),
        })
    }
}

/// Dropout, then a Linear `fc`: `[batch, dim]` → `[batch, num_classes]` logits.
#[derive(Module, Debug, Pretrainable)]
pub struct ClassifierHead {
    /// Dropout before `fc` (active only in training).
    pub dropout: Dropout,
    /// The classification layer.
    pub fc: Linear,
}

impl Stage for ClassifierHead {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        match input_rank {
            2 => Ok(2),
            got => Err(RankError {
                stage: "ClassifierHead".into(),
                takes: "[batch, dim] features (rank 2)".into(),
                got,
                hint: Some("add a GlobalAveragePooling neck".into()),
            }),
        }
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        // burn's Linear weight is [d_input, d_output].
        let shape = self.fc.weight.lazy_shape().to_vec();
        if shape[0] != input {
            return Err(ChannelError {
                stage: format!("ClassifierHead (dim {})", shape[0]),
                takes: shape[0],
                got: input,
            });
        }
        Ok(shape[1])
    }

    fn forward(&self, x: Features) -> Features {
        match x {
            Features::D2(x) => Features::D2(self.fc.forward(self.dropout.forward(x))),
            other => unexpected_rank("ClassifierHead", other.rank()),
        }
    }
}

/// The built-in heads, as the HEADS registry builds them.
#[derive(Module, Debug, Pretrainable)]
pub enum Head {
    /// `{type: ClassifierHead, dim, num_classes, dropout_rate}`.
    ClassifierHead(ClassifierHead),
}

impl Stage for Head {
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError> {
        match self {
            Head::ClassifierHead(h) => h.output_rank(input_rank),
        }
    }

    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        match self {
            Head::ClassifierHead(h) => h.output_channels(input),
        }
    }

    fn forward(&self, x: Features) -> Features {
        match self {
            Head::ClassifierHead(h) => h.forward(x),
        }
    }
}
