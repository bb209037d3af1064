//! Every public burn-nn 0.22 module type derives inside a `#[derive(Module, Pretrainable)]`
//! struct without attributes (this file compiling is most of the test), and the
//! parameter-free ones plan to nothing.

use burn::nn::activation::{
    Activation, Celu, Elu, GLU, Gelu, HardShrink, HardSigmoid, HardSwish, Hardtanh, LeakyRelu,
    LogSigmoid, Mish, PRelu, RRelu, Relu, Relu6, Selu, Shrink, SiLU, Sigmoid, SoftShrink, Softplus,
    Softsign, SwiGlu, Tanh, Tanhshrink, Threshold, ThresholdedRelu,
};
use burn::nn::attention::{CrossAttention, MultiHeadAttention};
use burn::nn::conv::{
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, DeformConv2d,
};
use burn::nn::interpolate::{Interpolate1d, Interpolate2d};
use burn::nn::loss::{
    BinaryCrossEntropyLoss, CTCLoss, CosineEmbeddingLoss, CrossEntropyLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, LpLoss, MarginRankingLoss, MseLoss, MultiMarginLoss,
    PoissonNllLoss, RNNTLoss, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss,
};
use burn::nn::norm::Normalization;
use burn::nn::pool::{
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AvgPool1d, AvgPool2d, MaxPool1d,
    MaxPool2d,
};
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
    TransformerEncoderLayer,
};
use burn::nn::{
    BatchNorm, BiGru, BiLstm, BiRnn, CosineSimilarity, Dropout, Embedding, Fold4d, GateController,
    GaussianNoise, GroupNorm, Gru, Identity, InstanceNorm, LayerNorm, Linear, LocalResponseNorm,
    Lstm, PairwiseDistance, PixelShuffle, PixelUnshuffle, PositionalEncoding, RmsNorm, Rnn,
    RotaryEncoding, Unfold4d,
};
use burn::prelude::*;
use burn_pretrain::{PretrainExt, Pretrainable};

#[allow(dead_code)]
#[derive(Module, Debug, Pretrainable)]
struct WithParameters {
    linear: Linear,
    conv1d: Conv1d,
    conv2d: Conv2d,
    conv3d: Conv3d,
    deconv1d: ConvTranspose1d,
    deconv2d: ConvTranspose2d,
    deconv3d: ConvTranspose3d,
    deform: DeformConv2d,
    embedding: Embedding,
    batch_norm: BatchNorm,
    layer_norm: LayerNorm,
    group_norm: GroupNorm,
    instance_norm: InstanceNorm,
    rms_norm: RmsNorm,
    normalization: Normalization,
    prelu: PRelu,
    swiglu: SwiGlu,
    activation: Activation,
    gate: GateController,
    lstm: Lstm,
    bilstm: BiLstm,
    gru: Gru,
    bigru: BiGru,
    rnn: Rnn,
    birnn: BiRnn,
    mha: MultiHeadAttention,
    cross: CrossAttention,
    pwff: PositionWiseFeedForward,
    encoder: TransformerEncoder,
    encoder_layer: TransformerEncoderLayer,
    decoder: TransformerDecoder,
    decoder_layer: TransformerDecoderLayer,
    stacked: Vec<Lstm>,
}

#[allow(dead_code)]
#[derive(Module, Debug, Pretrainable)]
struct WithoutParameters {
    dropout: Dropout,
    identity: Identity,
    relu: Relu,
    gelu: Gelu,
    sigmoid: Sigmoid,
    tanh: Tanh,
    leaky_relu: LeakyRelu,
    celu: Celu,
    elu: Elu,
    glu: GLU,
    hard_shrink: HardShrink,
    hard_sigmoid: HardSigmoid,
    hard_swish: HardSwish,
    hardtanh: Hardtanh,
    log_sigmoid: LogSigmoid,
    mish: Mish,
    relu6: Relu6,
    rrelu: RRelu,
    selu: Selu,
    shrink: Shrink,
    silu: SiLU,
    soft_shrink: SoftShrink,
    softplus: Softplus,
    softsign: Softsign,
    tanhshrink: Tanhshrink,
    threshold: Threshold,
    thresholded_relu: ThresholdedRelu,
    local_response_norm: LocalResponseNorm,
    pixel_shuffle: PixelShuffle,
    pixel_unshuffle: PixelUnshuffle,
    fold: Fold4d,
    unfold: Unfold4d,
    noise: GaussianNoise,
    cosine: CosineSimilarity,
    pairwise: PairwiseDistance,
    positional: PositionalEncoding,
    rotary: RotaryEncoding,
    interpolate1d: Interpolate1d,
    interpolate2d: Interpolate2d,
    max_pool1d: MaxPool1d,
    max_pool2d: MaxPool2d,
    avg_pool1d: AvgPool1d,
    avg_pool2d: AvgPool2d,
    adaptive1d: AdaptiveAvgPool1d,
    adaptive2d: AdaptiveAvgPool2d,
    adaptive3d: AdaptiveAvgPool3d,
    bce: BinaryCrossEntropyLoss,
    cosine_embedding: CosineEmbeddingLoss,
    cross_entropy: CrossEntropyLoss,
    ctc: CTCLoss,
    gaussian_nll: GaussianNLLLoss,
    hinge: HingeEmbeddingLoss,
    huber: HuberLoss,
    kldiv: KLDivLoss,
    lp: LpLoss,
    margin_ranking: MarginRankingLoss,
    mse: MseLoss,
    multi_margin: MultiMarginLoss,
    poisson: PoissonNllLoss,
    rnnt: RNNTLoss,
    smooth_l1: SmoothL1Loss,
    soft_margin: SoftMarginLoss,
    triplet: TripletMarginLoss,
}

/// A struct of parameter-free layers plans to no tensors at all.
#[test]
fn parameter_free_layers_map_nothing() {
    use burn::nn::{
        DropoutConfig, PositionalEncodingConfig, RotaryEncodingConfig,
        interpolate::Interpolate2dConfig, pool::MaxPool2dConfig,
    };
    #[derive(Module, Debug, Pretrainable)]
    struct Free {
        dropout: Dropout,
        relu: Relu,
        pool: MaxPool2d,
        up: Interpolate2d,
        positional: PositionalEncoding,
        rotary: RotaryEncoding,
    }
    let device = Device::flex();
    let free = Free {
        dropout: DropoutConfig::new(0.1).init(),
        relu: Relu::new(),
        pool: MaxPool2dConfig::new([2, 2]).init(),
        up: Interpolate2dConfig::new().init(),
        positional: PositionalEncodingConfig::new(8).init(&device),
        rotary: RotaryEncodingConfig::new(16, 8).init(&device),
    };
    assert!(free.pretrain_keys().is_empty());
}
