//! BERT (Devlin et al., 2019) as Hugging Face transformers implements it (`BertModel`, the
//! encoder inside sentence-transformers repositories): field names are transformers'
//! state-dict keys (`embeddings.word_embeddings`, `encoder.layer.N.attention.self.query`,
//! `…attention.output.LayerNorm`, `pooler.dense`), so its checkpoints load through the
//! derive with no key table. The attention is burn's `MultiHeadAttention`; its query, key and
//! value load from BERT's separate `query`/`key`/`value` Linears and its output projection
//! from `attention.output.dense`, which BERT keeps beside the residual LayerNorm.

use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn_pretrain::Pretrainable;
use burn_pretrain::mapping::Mapper;
use serde::Deserialize;

/// The fields of transformers' `BertConfig` (`config.json`) the model needs, with
/// transformers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// The width of every token.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// The width of the feed-forward layer.
    pub intermediate_size: usize,
    /// The longest sequence the position embedding covers.
    pub max_position_embeddings: usize,
    /// Segment (token type) vocabulary.
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    pub layer_norm_eps: f64,
    /// The feed-forward activation: `gelu` (exact) is built.
    pub hidden_act: String,
    /// `absolute` is built.
    pub position_embedding_type: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            position_embedding_type: "absolute".into(),
        }
    }
}

impl BertConfig {
    /// What this crate cannot build, said in the config's terms.
    pub fn check(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act `{}` is not built (gelu)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not built (absolute)",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        crate::limits::check_model(self.parameter_count(), self.tensor_count()).map_err(|m| {
            format!(
                "a BERT of width {} and {} layers: {m}",
                self.hidden_size, self.num_hidden_layers
            )
        })?;
        Ok(())
    }

    /// The parameter values `init` allocates (`None` on overflow).
    pub fn parameter_count(&self) -> Option<u128> {
        use crate::limits::{product as p, sum};
        let (d, i) = (self.hidden_size, self.intermediate_size);
        let layer = sum(&[
            p(&[4, d, d]),
            p(&[4, d]),
            p(&[2, d, i]),
            p(&[i]),
            p(&[5, d]),
        ]);
        sum(&[
            p(&[
                self.vocab_size + self.max_position_embeddings + self.type_vocab_size,
                d,
            ]),
            p(&[2, d]),
            layer.and_then(|l| l.checked_mul(self.num_hidden_layers as u128)),
            p(&[d + 1, d]),
        ])
    }

    /// The parameter tensors `init` allocates.
    pub fn tensor_count(&self) -> Option<u128> {
        (self.num_hidden_layers as u128)
            .checked_mul(16)
            .and_then(|n| n.checked_add(7))
    }

    /// A model with fresh parameters.
    pub fn init(&self, device: &Device) -> BertModel {
        let d = self.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    mha: MultiHeadAttentionConfig::new(d, self.num_attention_heads)
                        .with_dropout(0.0)
                        .init(device),
                    layer_norm: norm(),
                },
                intermediate: BertIntermediate {
                    dense: LinearConfig::new(d, self.intermediate_size).init(device),
                },
                output: BertOutput {
                    dense: LinearConfig::new(self.intermediate_size, d).init(device),
                    layer_norm: norm(),
                },
            })
            .collect();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, d).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, d)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, d).init(device),
                layer_norm: norm(),
            },
            encoder: BertEncoder { layer: layers },
            pooler: Some(BertPooler {
                dense: LinearConfig::new(d, d).init(device),
            }),
            max_positions: self.max_position_embeddings,
        }
    }
}

/// Token, position and segment embeddings, summed and normed.
#[derive(Module, Debug, Pretrainable)]
pub struct BertEmbeddings {
    /// `[vocab, D]`.
    pub word_embeddings: Embedding,
    /// `[max_positions, D]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab, D]`.
    pub token_type_embeddings: Embedding,
    /// After the sum.
    #[pretrain(rename = "LayerNorm")]
    pub layer_norm: LayerNorm,
}

/// Self-attention with BERT's post-norm residual: `norm(x + attention(x))`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Query, key, value (`attention.self.*`) and the output (`attention.output.dense`).
    pub mha: MultiHeadAttention,
    /// `attention.output.LayerNorm`.
    pub layer_norm: LayerNorm,
}

impl Pretrainable for BertAttention {
    fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
        m.child("self.query", "mha.query", &mut self.mha.query);
        m.child("self.key", "mha.key", &mut self.mha.key);
        m.child("self.value", "mha.value", &mut self.mha.value);
        m.child("output.dense", "mha.output", &mut self.mha.output);
        m.child("output.LayerNorm", "layer_norm", &mut self.layer_norm);
    }
}

/// The feed-forward layer's first half: `gelu(dense(x))`.
#[derive(Module, Debug, Pretrainable)]
pub struct BertIntermediate {
    /// Width → intermediate.
    pub dense: Linear,
}

/// The feed-forward layer's second half with its residual: `norm(x + dense(h))`.
#[derive(Module, Debug, Pretrainable)]
pub struct BertOutput {
    /// Intermediate → width.
    pub dense: Linear,
    /// After the residual.
    #[pretrain(rename = "LayerNorm")]
    pub layer_norm: LayerNorm,
}

/// One encoder layer.
#[derive(Module, Debug, Pretrainable)]
pub struct BertLayer {
    /// Attention and its residual norm.
    pub attention: BertAttention,
    /// Feed-forward, first half.
    pub intermediate: BertIntermediate,
    /// Feed-forward, second half and its residual norm.
    pub output: BertOutput,
}

/// The layers.
#[derive(Module, Debug, Pretrainable)]
pub struct BertEncoder {
    /// `encoder.layer.N`.
    pub layer: Vec<BertLayer>,
}

/// `tanh(dense(first token))`: transformers' `pooler_output`.
#[derive(Module, Debug, Pretrainable)]
pub struct BertPooler {
    /// Width → width.
    pub dense: Linear,
}

/// transformers' `BertModel`: token ids → `last_hidden_state` `[batch, tokens, D]` (and the
/// pooler's `[batch, D]`).
#[derive(Module, Debug, Pretrainable)]
pub struct BertModel {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// The layers.
    pub encoder: BertEncoder,
    /// The pooler (`add_pooling_layer=True`).
    pub pooler: Option<BertPooler>,
    /// The longest sequence.
    #[module(skip)]
    pub max_positions: usize,
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let mut input = MhaInput::self_attn(x.clone());
        if let Some(pad) = pad {
            input = input.mask_pad(pad);
        }
        let attended = self.attention.mha.forward(input).context;
        let x = self.attention.layer_norm.forward(x + attended);
        let h = gelu(self.intermediate.dense.forward(x.clone()));
        self.output
            .layer_norm
            .forward(x + self.output.dense.forward(h))
    }
}

impl BertModel {
    /// `last_hidden_state` for `input_ids` `[batch, tokens]` with the `attention_mask`
    /// (1 for tokens, 0 for padding; `None`: all tokens) and `token_type_ids` (`None`: all 0,
    /// as transformers defaults them).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [batch, tokens] = input_ids.dims();
        assert!(
            tokens <= self.max_positions,
            "{tokens} tokens, the position embedding covers {}",
            self.max_positions
        );
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..tokens as i64, &device)
            .reshape([1, tokens])
            .repeat_dim(0, batch);
        let types = token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, tokens], &device));
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input_ids)
            + e.token_type_embeddings.forward(types)
            + e.position_embeddings.forward(positions);
        let x = e.layer_norm.forward(x);
        let pad = attention_mask.map(|m| m.equal_elem(0));
        self.encoder
            .layer
            .iter()
            .fold(x, |x, layer| layer.forward(x, pad.clone()))
    }

    /// transformers' `pooler_output`: `tanh(dense(hidden[:, 0]))`, `[batch, D]`.
    pub fn pool(&self, hidden: Tensor<3>) -> Option<Tensor<2>> {
        let pooler = self.pooler.as_ref()?;
        let [batch, _, d] = hidden.dims();
        let first = hidden.slice([0..batch, 0..1]).reshape([batch, d]);
        Some(pooler.dense.forward(first).tanh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_checked_before_init_are_what_init_allocates() {
        let config = BertConfig {
            vocab_size: 50,
            hidden_size: 8,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            intermediate_size: 11,
            max_position_embeddings: 20,
            ..BertConfig::default()
        };
        let model = config.init(&Device::flex());
        assert_eq!(config.parameter_count(), Some(model.num_params() as u128));
        let mut tensors = 0;
        model.visit(&mut CountTensors(&mut tensors));
        assert_eq!(config.tensor_count(), Some(tensors));
    }

    struct CountTensors<'a>(&'a mut u128);

    impl burn::module::ModuleVisitor for CountTensors<'_> {
        fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
            *self.0 += 1;
        }
    }

    #[test]
    fn configs_it_cannot_build_say_why() {
        let huge = BertConfig {
            hidden_size: 1 << 20,
            num_attention_heads: 16,
            ..BertConfig::default()
        };
        assert!(
            huge.check()
                .unwrap_err()
                .contains("a BERT of width 1048576")
        );
        let act = BertConfig {
            hidden_act: "relu".into(),
            ..BertConfig::default()
        };
        assert_eq!(
            act.check().unwrap_err(),
            "hidden_act `relu` is not built (gelu)"
        );
        assert!(BertConfig::default().check().is_ok());
    }
}
