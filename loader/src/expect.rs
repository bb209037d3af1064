//! What a load must achieve to count as a success ([`Expect`]), and what to do with a tensor
//! whose shape does not fit ([`MismatchRule`], [`Policy`]).
//!
//! Expectations are checked on the plan, before any tensor is read: an unmet one is
//! [`Error::Unmet`](crate::Error::Unmet), which carries the report, and the model is unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::LoadReport;

/// What a load must achieve, or it is an `Err` and the model stays as it was.
///
/// Two checks are on by default: a load that loads nothing at all (of a model that has
/// tensors), and a layer left half loaded (a Linear whose bias loaded but not its weight, a
/// BatchNorm without its running statistics) — the signs of a checkpoint built for another
/// variant of the model. A layer whose tensors all mismatch (a classifier head for another
/// number of classes) is not half loaded: it keeps its values and is reported.
///
/// In a config's `pretrain` map: `"expect": {"coverage": 0.9, "subtrees": {"backbone": 1.0},
/// "strict": false, "allow_missing": ["^head\\."]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Expect {
    /// The least fraction (0 to 1) of the model's tensors that must load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// The least fraction per subtree: a model key prefix (`backbone`, `backbone.layer4`) →
    /// fraction.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subtrees: BTreeMap<String, f64>,
    /// Every model tensor loads and every checkpoint tensor is used (PyTorch's
    /// `strict=True`), except keys allowed below.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// Regexes of model keys that may stay unloaded: not counted by `strict`, and not making
    /// their layer half loaded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_missing: Vec<String>,
    /// Regexes of checkpoint keys that `strict` lets go unused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_unexpected: Vec<String>,
    /// Accept layers that are half loaded (off by default).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// Accept a load that loads no tensor at all (off by default).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
}

impl Expect {
    pub(crate) fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Fractions in [0, 1] and patterns that compile.
    pub(crate) fn validate(&self) -> Result<()> {
        let fractions = self
            .coverage
            .iter()
            .map(|f| ("coverage".to_string(), *f))
            .chain(
                self.subtrees
                    .iter()
                    .map(|(s, f)| (format!("subtrees.{s}"), *f)),
            );
        for (field, f) in fractions {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::InvalidSpec {
                    field: format!("expect.{field}"),
                    detail: format!("{f} is not a fraction in [0, 1]"),
                });
            }
        }
        patterns("expect.allow_missing", &self.allow_missing)?;
        patterns("expect.allow_unexpected", &self.allow_unexpected)?;
        Ok(())
    }

    /// The expectations `report` does not meet, one line each.
    pub(crate) fn unmet(&self, report: &LoadReport) -> Result<Vec<String>> {
        let allow_missing = patterns("expect.allow_missing", &self.allow_missing)?;
        let allow_unexpected = patterns("expect.allow_unexpected", &self.allow_unexpected)?;
        let allowed = |key: &str| allow_missing.iter().any(|re| re.is_match(key));
        let mut out = report.policy_failures().to_vec();
        let total = report.total();
        let loaded = report.loaded().len();
        if total > 0 && loaded == 0 && !self.allow_empty {
            out.push(format!(
                "nothing loaded: none of the model's {total} tensors is in the checkpoint under its name and shape"
            ));
        }
        if !self.allow_partial {
            out.extend(half_loaded(report, &allowed));
        }
        if let Some(want) = self.coverage
            && !meets(loaded, total, want)
        {
            out.push(format!(
                "coverage {} is below the expected {}",
                percent(loaded, total),
                percent_of(want)
            ));
        }
        for (prefix, want) in &self.subtrees {
            let under = |k: &str| {
                k == prefix
                    || (k.starts_with(prefix.as_str()) && k[prefix.len()..].starts_with('.'))
            };
            let sub_total = report.model_keys().filter(|k| under(k)).count();
            let sub_loaded = report.loaded().iter().filter(|k| under(k)).count();
            if sub_total == 0 {
                out.push(format!("subtree `{prefix}` names no model tensor"));
            } else if !meets(sub_loaded, sub_total, *want) {
                out.push(format!(
                    "`{prefix}` loaded {sub_loaded}/{sub_total} ({}), expected at least {}",
                    percent(sub_loaded, sub_total),
                    percent_of(*want)
                ));
            }
        }
        if self.strict {
            let not_loaded: Vec<&str> = report
                .missing()
                .iter()
                .chain(report.mismatched().iter().map(|m| &m.key))
                .map(String::as_str)
                .filter(|k| !allowed(k))
                .collect();
            if !not_loaded.is_empty() {
                out.push(format!(
                    "strict: not loaded {}",
                    crate::report::fold_keys(&not_loaded).join(", ")
                ));
            }
            let unused: Vec<&str> = report
                .unexpected()
                .iter()
                .map(String::as_str)
                .filter(|k| !allow_unexpected.iter().any(|re| re.is_match(k)))
                .collect();
            if !unused.is_empty() {
                out.push(format!(
                    "strict: unused in the checkpoint {}",
                    crate::report::fold_keys(&unused).join(", ")
                ));
            }
        }
        Ok(out)
    }
}

/// `loaded/total ≥ want`, with room for rounding in `want`.
fn meets(loaded: usize, total: usize, want: f64) -> bool {
    total == 0 || loaded as f64 / total as f64 + 1e-9 >= want
}

/// `30/32` → `94 %`; only a complete load shows 100 % and only an empty one 0 %.
pub(crate) fn percent(loaded: usize, total: usize) -> String {
    if total == 0 {
        return "100 %".into();
    }
    let rounded = (loaded * 100 + total / 2) / total;
    let shown = match loaded {
        0 => 0,
        n if n == total => 100,
        _ => rounded.clamp(1, 99),
    };
    format!("{shown} %")
}

fn percent_of(f: f64) -> String {
    format!("{} %", (f * 100.0 * 1000.0).round() / 1000.0)
}

/// Layers (a key's parent) with some tensors loaded and others not; a key that an explicit
/// `keep` policy or `allow_missing` covers does not count.
fn half_loaded(report: &LoadReport, allowed: &dyn Fn(&str) -> bool) -> Vec<String> {
    let loaded: HashSet<&str> = report.loaded().iter().map(String::as_str).collect();
    let mismatched: HashMap<&str, &crate::report::Mismatch> = report
        .mismatched()
        .iter()
        .map(|m| (m.key.as_str(), m))
        .collect();
    let mut layers: BTreeMap<&str, (Vec<&str>, Vec<String>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for key in report.model_keys() {
        let layer = key.rsplit_once('.').map_or("", |(parent, _)| parent);
        let slot = layers.entry(layer).or_insert_with(|| {
            order.push(layer);
            Default::default()
        });
        if loaded.contains(key) {
            slot.0.push(key);
            continue;
        }
        match mismatched.get(key) {
            // An explicit rule kept it: not an accident.
            Some(m) if m.rule.is_some() => {}
            _ if allowed(key) => {}
            Some(m) => slot.1.push(format!(
                "{key} (model {:?} vs. checkpoint {:?})",
                m.model_shape, m.checkpoint_shape
            )),
            None => slot.1.push(format!("{key} (missing)")),
        }
    }
    order
        .into_iter()
        .filter_map(|layer| {
            let (done, not) = &layers[layer];
            if done.is_empty() || not.is_empty() {
                return None;
            }
            let name = if layer.is_empty() { "(root)" } else { layer };
            Some(format!(
                "layer `{name}` half loaded: loaded {}; not {} (a checkpoint for another variant? allow with `allow_missing` or `allow_partial`)",
                done.join(", "),
                not.join(", ")
            ))
        })
        .collect()
}

fn patterns(field: &str, list: &[String]) -> Result<Vec<Regex>> {
    list.iter()
        .map(|p| {
            Regex::new(p).map_err(|source| Error::InvalidPattern {
                field: field.to_string(),
                pattern: p.clone(),
                source,
            })
        })
        .collect()
}

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

/// Compiled rules, with `select_rows` files read.
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

    /// The rule for a mismatched tensor: `(pattern, policy)`.
    pub fn find<'a>(
        &self,
        key: &str,
        model_paths: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Option<(&str, &Policy)> {
        self.rules
            .iter()
            .find(|(re, _)| {
                re.is_match(key) || model_paths.clone().into_iter().any(|p| re.is_match(p))
            })
            .map(|(re, p)| (re.as_str(), p))
    }
}

/// Row indices from a file: integers separated by whitespace or commas; `#` starts a comment.
fn read_rows(file: &str) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Open {
        path: file.into(),
        source,
    })?;
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
