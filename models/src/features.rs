//! Features of any rank flowing between a backbone, a neck and a head built from a config,
//! where the ranks are only known at run time.

use burn::prelude::*;

/// A stage that cannot take features of the rank before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage} takes {takes}, not rank {got}{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct RankError {
    /// The stage's type (`ClassifierHead`).
    pub stage: String,
    /// What it takes (`[batch, dim] features (rank 2)`).
    pub takes: String,
    /// The rank it would get.
    pub got: usize,
    /// How to make them fit, if there is a usual way.
    pub hint: Option<String>,
}

/// A stage that cannot take the channels (dimension 1) of what comes before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage} takes {takes} channels, but gets {got}")]
pub struct ChannelError {
    /// The stage's type (`ClassifierHead`).
    pub stage: String,
    /// The channels it takes.
    pub takes: usize,
    /// The channels it would get.
    pub got: usize,
}

/// Why stages do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// Another rank.
    #[error(transparent)]
    Rank(#[from] RankError),
    /// Other channels.
    #[error(transparent)]
    Channels(#[from] ChannelError),
}

/// A batch of features, rank 2 to 5 (`[batch, channels, ...]`).
#[derive(Debug, Clone)]
pub enum Features {
    /// `[batch, channels]`.
    D2(Tensor<2>),
    /// `[batch, channels, length]`.
    D3(Tensor<3>),
    /// `[batch, channels, height, width]`.
    D4(Tensor<4>),
    /// `[batch, channels, depth, height, width]`.
    D5(Tensor<5>),
}

impl Features {
    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        match self {
            Features::D2(_) => 2,
            Features::D3(_) => 3,
            Features::D4(_) => 4,
            Features::D5(_) => 5,
        }
    }

    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Features::D2(t) => t.dims().to_vec(),
            Features::D3(t) => t.dims().to_vec(),
            Features::D4(t) => t.dims().to_vec(),
            Features::D5(t) => t.dims().to_vec(),
        }
    }
}

/// One stage of a classifier (backbone, neck or head) whose input rank is checked when the
/// model is built, so that `forward` never meets a rank it cannot take.
pub trait Stage {
    /// The rank this stage gives for an input of `input_rank`, or why it cannot take it.
    fn output_rank(&self, input_rank: usize) -> Result<usize, RankError>;

    /// The channels this stage takes, when it fixes them (a backbone's image channels).
    fn input_channels(&self) -> Option<usize> {
        None
    }

    /// The image size `[height, width]` this stage takes, when it fixes it (a Vision
    /// Transformer's position embedding is made for one patch grid).
    fn input_size(&self) -> Option<[usize; 2]> {
        None
    }

    /// The channels (dimension 1) it gives for `input` channels, or why it cannot take them.
    /// By default a stage keeps the channels (pooling, identity).
    fn output_channels(&self, input: usize) -> Result<usize, ChannelError> {
        Ok(input)
    }

    /// Run the stage. The rank was checked at build time by [`output_rank`](Self::output_rank).
    fn forward(&self, x: Features) -> Features;
}

/// The rank-check of a backbone that takes images: `gives` for rank 4, else the error naming
/// `stage`.
pub(crate) fn takes_images(
    stage: &str,
    input_rank: usize,
    gives: usize,
) -> Result<usize, RankError> {
    match input_rank {
        4 => Ok(gives),
        got => Err(RankError {
            stage: stage.into(),
            takes: "images [batch, channels, height, width] (rank 4)".into(),
            got,
            hint: None,
        }),
    }
}

/// `Ok` when a backbone taking `takes` image channels (if it fixes them) gets `got`.
pub(crate) fn takes_channels(
    stage: &str,
    takes: Option<usize>,
    got: usize,
) -> Result<(), ChannelError> {
    match takes {
        Some(takes) if takes != got => Err(ChannelError {
            stage: stage.into(),
            takes,
            got,
        }),
        _ => Ok(()),
    }
}

/// A message for the rank a stage did not expect: only reachable when a stage is used
/// without the build-time check.
pub(crate) fn unexpected_rank(stage: &str, got: usize) -> ! {
    panic!("{stage} got rank-{got} features; the classifier's build-time rank check was bypassed")
}
