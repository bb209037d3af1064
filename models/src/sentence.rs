//! Sentences in, vectors out, as sentence-transformers computes them from a repository (a
//! local directory or `hf://org/name[@revision]`): `modules.json` lists the modules — the
//! Transformer (here transformers' BERT, `config.json` with `model_type: bert`), Pooling
//! (`1_Pooling/config.json`: mean, CLS, max or mean-sqrt-len, several concatenated in
//! sentence-transformers' order) and an optional Normalize; texts are tokenised with the
//! repository's `tokenizer.json` (the Hugging Face `tokenizers` crate), truncated to the
//! `max_seq_length` (`sentence_bert_config.json`, else the tokenizer config's
//! `model_max_length`, else the position embedding's length) and padded to the longest in the
//! batch. A repository without `modules.json` (a plain transformers `BertModel`) is pooled by
//! the mean over the attention mask, as sentence-transformers does for one.

use burn::prelude::*;
use burn_pretrain::source::FetchOptions;
use burn_pretrain::{LoadReport, Pretrain, PretrainExt};
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{BertConfig, BertModel};
use crate::repository::{Repository, RepositoryError, fetch_json, file_in};

/// Why a sentence encoder could not be opened or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SentenceError {
    /// A file of the repository could not be found or read.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// A file is not what sentence-transformers or transformers writes.
    #[error("{file}: {detail}")]
    Config {
        /// The file.
        file: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The tokenizer could not be read or failed on the texts.
    #[error("tokenizer {file}: {detail}")]
    Tokenizer {
        /// `tokenizer.json`.
        file: String,
        /// The tokenizers crate's message.
        detail: String,
    },
    /// The weights did not load.
    #[error("loading {weights}")]
    Load {
        /// The weight file.
        weights: String,
        /// The loader's error.
        source: burn_pretrain::Error,
    },
}

/// How token vectors become one sentence vector (sentence-transformers' `Pooling` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The maximum over the tokens, padding excluded.
    Max,
    /// The mean over the tokens, padding excluded.
    Mean,
    /// The sum over the tokens divided by the square root of their count.
    MeanSqrtLen,
}

impl Pooling {
    /// sentence-transformers' name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::Mean => "mean",
            Pooling::MeanSqrtLen => "mean_sqrt_len_tokens",
        }
    }
}

/// A batch of texts as the encoder takes it: `[texts, tokens]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// Token ids, padded with the pad token.
    pub input_ids: Vec<i64>,
    /// 1 for a token, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids.
    pub token_type_ids: Vec<i64>,
    /// `[texts, tokens]`.
    pub shape: [usize; 2],
}

/// A sentence-transformers (or transformers BERT) repository opened: tokenizer, model,
/// pooling and normalisation.
#[derive(Debug)]
pub struct SentenceEncoder {
    /// Where it is, as given.
    pub location: String,
    /// The files read, in order: configs, tokenizer, weights.
    pub files: Vec<String>,
    /// The weight file loaded.
    pub weights: String,
    /// The encoder's config.
    pub config: BertConfig,
    /// The pooling modes, concatenated in this order.
    pub pooling: Vec<Pooling>,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
    /// Texts are truncated to this many tokens (special tokens included).
    pub max_seq_length: usize,
    /// Whether texts are lower-cased before tokenising (`do_lower_case`).
    pub do_lower_case: bool,
    /// What the weights' load did.
    pub report: LoadReport,
    /// The encoder.
    pub model: BertModel,
    tokenizer: Tokenizer,
    pad_id: i64,
}

/// A JSON file of the repository, or `None` where it has none.
fn optional_json(
    location: &str,
    name: &str,
    fetch: &FetchOptions,
    files: &mut Vec<String>,
) -> Result<Option<Value>, SentenceError> {
    let value = fetch_json(location, name, fetch)?;
    if value.is_some() {
        files.push(file_in(location, name));
    }
    Ok(value)
}

fn required_json(
    location: &str,
    name: &str,
    fetch: &FetchOptions,
    files: &mut Vec<String>,
) -> Result<Value, SentenceError> {
    optional_json(location, name, fetch, files)?.ok_or_else(|| SentenceError::Config {
        file: file_in(location, name),
        detail: "not found; a sentence encoder needs it".into(),
    })
}

/// The pooling modes of a `Pooling` module's config, in sentence-transformers' order
/// (the newer `pooling_mode` name or the older `pooling_mode_*` flags).
fn pooling_modes(config: &Value, file: &str) -> Result<Vec<Pooling>, SentenceError> {
    let bad = |detail: String| SentenceError::Config {
        file: file.to_string(),
        detail,
    };
    let unsupported = ["weightedmean", "lasttoken"];
    if let Some(mode) = config.get("pooling_mode").and_then(Value::as_str) {
        return match mode {
            "cls" | "cls_token" => Ok(vec![Pooling::Cls]),
            "max" | "max_tokens" => Ok(vec![Pooling::Max]),
            "mean" | "mean_tokens" => Ok(vec![Pooling::Mean]),
            "mean_sqrt_len_tokens" => Ok(vec![Pooling::MeanSqrtLen]),
            other => Err(bad(format!(
                "pooling_mode `{other}` is not built (cls, max, mean, mean_sqrt_len_tokens)"
            ))),
        };
    }
    let flag = |name: &str| config.get(name).and_then(Value::as_bool).unwrap_or(false);
    for mode in unsupported {
        let name = match mode {
            "weightedmean" => "pooling_mode_weightedmean_tokens",
            _ => "pooling_mode_lasttoken",
        };
        if flag(name) {
            return Err(bad(format!("`{name}` is not built")));
        }
    }
    let modes: Vec<Pooling> = [
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
    ]
    .into_iter()
    .filter(|(name, _)| flag(name))
    .map(|(_, mode)| mode)
    .collect();
    if modes.is_empty() {
        return Err(bad("no pooling mode set".into()));
    }
    Ok(modes)
}

impl SentenceEncoder {
    /// Open the repository at `location` (a local directory or a URI prefix such as
    /// `hf://sentence-transformers/all-MiniLM-L6-v2`) onto `device`, fetching through `fetch`.
    pub fn open(
        location: &str,
        fetch: &FetchOptions,
        device: &Device,
    ) -> Result<Self, SentenceError> {
        let mut files = Vec::new();
        let config_file = file_in(location, "config.json");
        let config_value = required_json(location, "config.json", fetch, &mut files)?;
        let bad_config = |detail: String| SentenceError::Config {
            file: config_file.clone(),
            detail,
        };
        match config_value.get("model_type").and_then(Value::as_str) {
            Some("bert") => {}
            Some(other) => {
                return Err(RepositoryError::UnknownArchitecture {
                    file: config_file.clone(),
                    what: "model_type",
                    found: other.to_string(),
                    known: "bert (as a sentence encoder)".into(),
                }
                .into());
            }
            None => {
                return Err(bad_config(
                    "no `model_type`: not a transformers config (a timm repository classifies images: `pretrain predict`)".into(),
                ));
            }
        }
        let config: BertConfig =
            serde_json::from_value(config_value.clone()).map_err(|e| bad_config(e.to_string()))?;
        config.check().map_err(bad_config)?;

        // The modules: Transformer at the root, then Pooling and Normalize.
        let (mut pooling, mut normalize) = (vec![Pooling::Mean], false);
        let modules_file = file_in(location, "modules.json");
        if let Some(modules) = optional_json(location, "modules.json", fetch, &mut files)? {
            let list = modules.as_array().ok_or_else(|| SentenceError::Config {
                file: modules_file.clone(),
                detail: "not a list of modules".into(),
            })?;
            for module in list {
                let ty = module
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let path = module
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let kind = ty.rsplit('.').next().unwrap_or_default();
                match kind {
                    "Transformer" if path.is_empty() => {}
                    "Pooling" => {
                        let name = format!("{path}/config.json");
                        let pooling_config = required_json(location, &name, fetch, &mut files)?;
                        pooling = pooling_modes(&pooling_config, &file_in(location, &name))?;
                    }
                    "Normalize" => normalize = true,
                    _ => {
                        return Err(SentenceError::Config {
                            file: modules_file.clone(),
                            detail: format!(
                                "module `{ty}` at `{path}` is not built (a Transformer at the root, Pooling, Normalize)"
                            ),
                        });
                    }
                }
            }
        }
        let st_config = optional_json(location, "sentence_bert_config.json", fetch, &mut files)?;
        let tokenizer_config = optional_json(location, "tokenizer_config.json", fetch, &mut files)?;
        let max_seq_length = st_config
            .as_ref()
            .and_then(|c| c.get("max_seq_length"))
            .and_then(Value::as_u64)
            .or_else(|| {
                tokenizer_config
                    .as_ref()
                    .and_then(|c| c.get("model_max_length"))
                    .and_then(Value::as_u64)
                    .filter(|&n| n <= config.max_position_embeddings as u64)
            })
            .map_or(config.max_position_embeddings, |n| n as usize)
            .min(config.max_position_embeddings);
        let do_lower_case = st_config
            .as_ref()
            .and_then(|c| c.get("do_lower_case"))
            .and_then(Value::as_bool)
            .unwrap_or(false);

        let tokenizer_file = file_in(location, "tokenizer.json");
        let tokenizer_path =
            burn_pretrain::fetch_file(&tokenizer_file, fetch).map_err(|source| {
                RepositoryError::Fetch {
                    file: tokenizer_file.clone(),
                    source,
                }
            })?;
        let tokenizer_error = |detail: String| SentenceError::Tokenizer {
            file: tokenizer_file.clone(),
            detail,
        };
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| tokenizer_error(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;
        let pad_token = tokenizer_config
            .as_ref()
            .and_then(|c| c.get("pad_token"))
            .and_then(Value::as_str)
            .unwrap_or("[PAD]");
        let pad_id = tokenizer.token_to_id(pad_token).map_or(0, i64::from);
        files.push(tokenizer_file);

        let weights = Repository::weights(location, fetch)?;
        files.push(weights.clone());
        let spec = Pretrain::from_path(weights.clone()).with_fetch(fetch.clone());
        let (model, report) = config
            .init(device)
            .load_pretrained(spec)
            .map_err(|source| SentenceError::Load {
                weights: weights.clone(),
                source,
            })?;
        Ok(Self {
            location: location.to_string(),
            files,
            weights,
            config,
            pooling,
            normalize,
            max_seq_length,
            do_lower_case,
            report,
            model,
            tokenizer,
            pad_id,
        })
    }

    /// The width of one embedding: the hidden size times the pooling modes.
    pub fn dimension(&self) -> usize {
        self.config.hidden_size * self.pooling.len()
    }

    /// Tokenise `texts` as sentence-transformers does: special tokens added, truncated to
    /// [`max_seq_length`](Self::max_seq_length), padded to the longest.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch, SentenceError> {
        let texts: Vec<String> = texts
            .iter()
            .map(|t| {
                if self.do_lower_case {
                    t.to_lowercase()
                } else {
                    (*t).to_string()
                }
            })
            .collect();
        let encodings =
            self.tokenizer
                .encode_batch(texts, true)
                .map_err(|e| SentenceError::Tokenizer {
                    file: self.files[self.files.len() - 2].clone(),
                    detail: e.to_string(),
                })?;
        let vocab = self.config.vocab_size;
        if let Some(id) = encodings
            .iter()
            .flat_map(|e| e.get_ids())
            .find(|&&id| id as usize >= vocab)
        {
            return Err(SentenceError::Tokenizer {
                file: self.files[self.files.len() - 2].clone(),
                detail: format!(
                    "token id {id} is outside the model's vocabulary of {vocab} (config.json `vocab_size`): the tokenizer belongs to another model"
                ),
            });
        }
        let type_vocab = self.config.type_vocab_size;
        if encodings
            .iter()
            .flat_map(|e| e.get_type_ids())
            .any(|&t| t as usize >= type_vocab)
        {
            return Err(SentenceError::Tokenizer {
                file: self.files[self.files.len() - 2].clone(),
                detail: format!("a segment id is outside `type_vocab_size` {type_vocab}"),
            });
        }
        let tokens = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut batch = TokenBatch {
            input_ids: Vec::with_capacity(encodings.len() * tokens),
            attention_mask: Vec::with_capacity(encodings.len() * tokens),
            token_type_ids: Vec::with_capacity(encodings.len() * tokens),
            shape: [encodings.len(), tokens],
        };
        for e in &encodings {
            let pad = tokens - e.len();
            batch.input_ids.extend(
                e.get_ids()
                    .iter()
                    .map(|&i| i64::from(i))
                    .chain(std::iter::repeat_n(self.pad_id, pad)),
            );
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, e.len()).chain(std::iter::repeat_n(0, pad)));
            batch.token_type_ids.extend(
                e.get_type_ids()
                    .iter()
                    .map(|&i| i64::from(i))
                    .chain(std::iter::repeat_n(0, pad)),
            );
        }
        Ok(batch)
    }

    /// The token vectors (`last_hidden_state`) of a batch: `[texts, tokens, D]`.
    pub fn encode(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        let int = |values: &[i64]| {
            Tensor::<2, Int>::from_data(TensorData::new(values.to_vec(), batch.shape), device)
        };
        self.model.forward(
            int(&batch.input_ids),
            Some(int(&batch.attention_mask)),
            Some(int(&batch.token_type_ids)),
        )
    }

    /// One vector per text `[texts, dimension]`: tokenised, encoded, pooled, normalised as
    /// the repository's modules say.
    pub fn embed(&self, texts: &[&str], device: &Device) -> Result<Tensor<2>, SentenceError> {
        let batch = self.tokenize(texts)?;
        let hidden = self.encode(&batch, device);
        let mask = Tensor::<2, Int>::from_data(
            TensorData::new(batch.attention_mask.clone(), batch.shape),
            device,
        )
        .float();
        let pooled: Vec<Tensor<2>> = self
            .pooling
            .iter()
            .map(|&mode| pool(hidden.clone(), mask.clone(), mode))
            .collect();
        let x = Tensor::cat(pooled, 1);
        Ok(if self.normalize { normalize(x) } else { x })
    }
}

/// One pooling mode over `[texts, tokens, D]` with the `[texts, tokens]` mask (1.0 / 0.0).
pub fn pool(hidden: Tensor<3>, mask: Tensor<2>, mode: Pooling) -> Tensor<2> {
    let [n, t, d] = hidden.dims();
    let mask3 = mask.clone().reshape([n, t, 1]);
    match mode {
        Pooling::Cls => hidden.slice([0..n, 0..1]).reshape([n, d]),
        Pooling::Max => {
            // Padding set far below any value, as sentence-transformers sets it to -1e9.
            let filled = hidden.mask_fill(mask3.equal_elem(0.0).repeat_dim(2, d), -1e9);
            filled.max_dim(1).reshape([n, d])
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let sum = (hidden * mask3).sum_dim(1).reshape([n, d]);
            let count = mask.sum_dim(1).clamp_min(1e-9);
            let count = match mode {
                Pooling::Mean => count,
                _ => count.sqrt(),
            };
            sum / count
        }
    }
}

/// Each row divided by its L2 norm (at least 1e-12), as `torch.nn.functional.normalize`.
pub fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
