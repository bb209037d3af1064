//! Mismatch policies: what to do with a tensor whose stored shape differs from the model's
//! ([`MismatchRule`], [`Policy`]), the rules resolved once per load ([`Rules`]), where a
//! decision came from ([`PolicySource`]), and the adaptations that change a stored tensor into
//! the model's shape (`adapt.rs`).

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod adapt;
pub mod resample;

pub(crate) use adapt::Adaptation;

/// What to do with a tensor whose stored shape differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Policy {
    /// The model keeps its value and the mismatch is reported (the default). Named
    /// explicitly, the layer does not count as half loaded.
    Keep,
    /// The load fails.
    Error,
    /// A conv weight `[O, C_src, k...]` becomes `[O, C_dst, k...]`: for one channel the
    /// channels are summed; for more they are repeated and scaled by `C_src / C_dst` (timm's
    /// `adapt_input_conv`, for any `C_src`).
    AdaptInChannels,
    /// A position embedding `[1, prefix + H·W, D]` or `[1, D, H, W]` is resampled to the
    /// model's grid, bicubic with antialiasing like timm's `resample_abs_pos_embed`; the
    /// `prefix_tokens` (class, distillation, register tokens) are kept as they are. Without
    /// `prefix_tokens` the count that makes both grids square is taken.
    ResampleGrid {
        /// Leading tokens that are not part of the grid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_tokens: Option<usize>,
    },
    /// Keep the rows (classes) at these indices of a classifier's weight and bias, in this
    /// order: from a list, or from a file of indices (whitespace or comma separated, `#`
    /// comments).
    SelectRows {
        /// The row indices.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rows: Vec<usize>,
        /// A file holding the row indices.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows_file: Option<String>,
    },
}

impl Policy {
    /// `select_rows` with these indices.
    pub fn select_rows(rows: impl IntoIterator<Item = usize>) -> Self {
        Self::SelectRows {
            rows: rows.into_iter().collect(),
            rows_file: None,
        }
    }

    /// `select_rows` with the indices in `file`.
    pub fn select_rows_from(file: impl Into<String>) -> Self {
        Self::SelectRows {
            rows: Vec::new(),
            rows_file: Some(file.into()),
        }
    }

    /// `resample_grid`, guessing the prefix tokens.
    pub fn resample_grid() -> Self {
        Self::ResampleGrid {
            prefix_tokens: None,
        }
    }

    /// The name used in configs.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Keep => "keep",
            Policy::Error => "error",
            Policy::AdaptInChannels => "adapt_in_channels",
            Policy::ResampleGrid { .. } => "resample_grid",
            Policy::SelectRows { .. } => "select_rows",
        }
    }
}

/// A [`Policy`] for the mismatched tensors whose checkpoint key (after the view) or model path
/// matches the regex `keys`. The first rule that matches decides.
///
/// In a config: `"on_mismatch": [{"keys": "^patch_embed\\.proj\\.weight$", "policy":
/// "adapt_in_channels"}, {"keys": "^head\\.", "policy": "select_rows", "rows": [1, 7]}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchRule {
    /// Regex matched against the checkpoint key and the model path.
    pub keys: String,
    /// What to do.
    #[serde(flatten)]
    pub policy: Policy,
}

/// Where the policy that decided a mismatched tensor came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicySource {
    /// A rule of the load (`on_mismatch`), named by its pattern.
    Rule {
        /// The rule's `keys` regex.
        pattern: String,
    },
    /// The layer's own default (`Mapper::on_mismatch`: the ViT's `pos_embed` resamples), used
    /// when no rule of the load matched.
    ModelDefault,
}

impl std::fmt::Display for PolicySource {
    /// `rule `^head\.``, or `the model's default`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Rule { pattern } => write!(f, "rule `{pattern}`"),
            PolicySource::ModelDefault => f.write_str("the model's default"),
        }
    }
}

/// Compiled rules, with `select_rows` files read.
#[derive(Debug)]
pub(crate) struct Rules {
    rules: Vec<(Regex, Policy)>,
}

impl Rules {
    pub fn compile(rules: &[MismatchRule]) -> Result<Self> {
        let mut out = Vec::new();
        for rule in rules {
            let re = Regex::new(&rule.keys).map_err(|source| Error::InvalidPattern {
                field: "on_mismatch.keys".into(),
                pattern: rule.keys.clone(),
                source,
            })?;
            let policy = match &rule.policy {
                Policy::SelectRows { rows, rows_file } => {
                    let mut rows = rows.clone();
                    if let Some(file) = rows_file {
                        rows.extend(read_rows(file)?);
                    }
                    if rows.is_empty() {
                        return Err(Error::InvalidSpec {
                            field: "on_mismatch.select_rows".into(),
                            detail: format!(
                                "rule `{}` selects no rows: give `rows` or `rows_file`",
                                rule.keys
                            ),
                        });
                    }
                    Policy::select_rows(rows)
                }
                other => other.clone(),
            };
            out.push((re, policy));
        }
        Ok(Self { rules: out })
    }

    /// The policy for a mismatched tensor: the first rule matching its checkpoint `key` or one
    /// of its `model_paths`, else the layer's `default`.
    pub fn find<'p, 'a>(
        &'p self,
        key: &str,
        model_paths: impl IntoIterator<Item = &'a str> + Clone,
        default: Option<&'p Policy>,
    ) -> Option<(PolicySource, &'p Policy)> {
        self.rules
            .iter()
            .find(|(re, _)| {
                re.is_match(key) || model_paths.clone().into_iter().any(|p| re.is_match(p))
            })
            .map(|(re, p)| {
                let pattern = re.as_str().to_string();
                (PolicySource::Rule { pattern }, p)
            })
            .or_else(|| default.map(|p| (PolicySource::ModelDefault, p)))
    }
}

/// The largest `rows_file` read (ImageNet-21k's 21,843 indices take about 120 KB).
const ROWS_FILE_LIMIT: u64 = 16 << 20;

/// Row indices from a file: integers separated by whitespace or commas; `#` starts a comment.
fn read_rows(file: &str) -> Result<Vec<usize>> {
    let text = crate::source::local::read_bounded_text(file.as_ref(), ROWS_FILE_LIMIT).map_err(
        |source| Error::SpecFile {
            field: "on_mismatch.rows_file".into(),
            path: file.into(),
            source,
        },
    )?;
    parse_rows(&text, file)
}

/// The row indices of a `rows_file`'s text (`file` names it in errors).
pub(crate) fn parse_rows(text: &str, file: &str) -> Result<Vec<usize>> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        for word in line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            rows.push(word.parse().map_err(|_| Error::InvalidSpec {
                field: "on_mismatch.rows_file".into(),
                detail: format!("{file}:{}: `{word}` is not a row index", n + 1),
            })?);
        }
    }
    Ok(rows)
}
