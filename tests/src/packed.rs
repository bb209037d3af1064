//! The PyTorch models of `fixtures/packed/generate.py` as a burn user writes them, shared by
//! the integration tests and the `export_packed` helper that `check_export.py` runs.

use std::collections::BTreeMap;

use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::transformer::{
    TransformerDecoder, TransformerDecoderConfig, TransformerEncoder, TransformerEncoderConfig,
    TransformerEncoderInput,
};
use burn::nn::{
    BiGru, BiGruConfig, BiLstm, BiLstmConfig, BiRnn, BiRnnConfig, Gru, GruConfig, Linear,
    LinearConfig, Lstm, LstmConfig, SwiGlu, SwiGluConfig, activation::ActivationConfig,
};
use burn::prelude::*;
use burn_pretrain::Pretrainable;

/// PyTorch's `Seq` in tests/fixtures/packed/generate.py, as a burn user writes it: a
/// multi-layer `nn.LSTM` is a `Vec` of burn layers.
#[derive(Module, Debug, Pretrainable)]
pub struct Seq {
    pub lstm: Vec<BiLstm>,
    pub gru: Vec<Gru>,
    pub bigru: BiGru,
    pub rnn: BiRnn,
    pub cell: Lstm,
    pub attn: MultiHeadAttention,
    pub encoder: TransformerEncoder,
    pub swiglu: SwiGlu,
    pub head: Linear,
}

impl Seq {
    /// The twin with LSTM hidden size `hidden` (PyTorch's is 16).
    pub fn new(hidden: usize, device: &Device) -> Self {
        Self {
            lstm: vec![
                BiLstmConfig::new(8, hidden, true).init(device),
                BiLstmConfig::new(2 * hidden, hidden, true).init(device),
            ],
            gru: vec![
                GruConfig::new(32, 16, true).init(device),
                GruConfig::new(16, 16, true).init(device),
            ],
            bigru: BiGruConfig::new(16, 8, true).init(device),
            rnn: BiRnnConfig::new(16, 12, true).init(device),
            cell: LstmConfig::new(24, 32, true).init(device),
            attn: MultiHeadAttentionConfig::new(32, 4)
                .with_dropout(0.0)
                .init(device),
            encoder: TransformerEncoderConfig::new(32, 64, 4, 2)
                .with_dropout(0.0)
                .with_activation(ActivationConfig::Relu)
                .init(device),
            swiglu: SwiGluConfig::new(32, 32).init(device),
            head: LinearConfig::new(32, 5).init(device),
        }
    }

    /// The output of every stage, named as the fixture names them.
    pub fn stages(&self, x: Tensor<3>) -> BTreeMap<&'static str, Tensor<3>> {
        let mut out = BTreeMap::new();
        let mut x = x;
        for layer in &self.lstm {
            x = layer.forward(x, None).0;
        }
        out.insert("lstm", x.clone());
        for layer in &self.gru {
            x = layer.forward(x, None);
        }
        out.insert("gru", x.clone());
        let x = self.bigru.forward(x, None).0;
        out.insert("bigru", x.clone());
        let x = self.rnn.forward(x, None).0;
        out.insert("rnn", x.clone());
        let x = self.cell.forward(x, None).0;
        out.insert("cell", x.clone());
        let x = self.attn.forward(MhaInput::self_attn(x)).context;
        out.insert("attn", x.clone());
        let x = self.encoder.forward(TransformerEncoderInput::new(x));
        out.insert("encoder", x.clone());
        let x = self.swiglu.forward(x);
        out.insert("swiglu", x.clone());
        out.insert("head", self.head.forward(x));
        out
    }
}

#[derive(Module, Debug, Pretrainable)]
/// PyTorch's `Transformer`: an encoder and a decoder of 2 layers each.
pub struct Transformer {
    pub encoder: TransformerEncoder,
    pub decoder: TransformerDecoder,
}

impl Transformer {
    /// Post-norm (`norm_first = false`) or pre-norm, with the feed-forward's activation.
    pub fn new(norm_first: bool, activation: ActivationConfig, device: &Device) -> Self {
        Self {
            encoder: TransformerEncoderConfig::new(16, 32, 4, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .with_activation(activation.clone())
                .init(device),
            decoder: TransformerDecoderConfig::new(16, 32, 4, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .with_activation(activation)
                .init(device),
        }
    }
}
