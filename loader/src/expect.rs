//! What a load must achieve to count as a success: [`Expect`], the user's value, and
//! `Expectations`, the same resolved once per load (fractions checked, patterns compiled).
//!
//! Expectations are checked on the plan's report, before any tensor is read: an unmet one is
//! [`Error::Unmet`](crate::Error::Unmet), which carries the report, and the model is unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{LoadReport, Mismatch, fold_keys, percent};

mod layers;

/// What a load must achieve, or it is an `Err` and the model stays as it was.
///
/// Three checks are on by default: a load that loads nothing at all (of a model that has
/// tensors); a layer left half loaded (a Linear whose bias loaded but not its weight, a
/// BatchNorm without its running statistics) — the signs of a checkpoint built for another
/// variant of the model; and a list of layers of another length than the checkpoint's (a
/// 2-layer model for a 3-layer `nn.LSTM`, 5 of 6 `blocks`, 12 encoder layers for 6), which
/// would otherwise load every tensor the model has and look complete. A layer whose tensors
/// all mismatch (a classifier head for another number of classes) is not half loaded: it keeps
/// its values and is reported, and a checkpoint's head the model lacks (`fc.*` unused by a
/// backbone) is no layer count.
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
    /// Regexes of model keys that may stay unloaded: not counted by `strict`, not making
    /// their layer half loaded, nor a layer count (a model with more layers than the
    /// checkpoint).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_missing: Vec<String>,
    /// Regexes of checkpoint keys that may go unused: not counted by `strict`, nor by the
    /// layer-count check (a checkpoint with more layers than the model).
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
}

/// [`Expect`] resolved: fractions checked, key patterns compiled.
#[derive(Debug)]
pub(crate) struct Expectations {
    expect: Expect,
    allow_missing: Vec<Regex>,
    allow_unexpected: Vec<Regex>,
}

impl Expectations {
    /// Check `expect`'s fractions (in [0, 1]) and compile its patterns.
    pub fn compile(expect: &Expect) -> Result<Self> {
        let fractions = expect
            .coverage
            .iter()
            .map(|f| ("coverage".to_string(), *f))
            .chain(
                expect
                    .subtrees
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
        Ok(Self {
            allow_missing: patterns("expect.allow_missing", &expect.allow_missing)?,
            allow_unexpected: patterns("expect.allow_unexpected", &expect.allow_unexpected)?,
            expect: expect.clone(),
        })
    }

    /// The expectations `report` does not meet, one line each.
    pub fn unmet(&self, report: &LoadReport) -> Vec<String> {
        let allowed = |key: &str| self.allow_missing.iter().any(|re| re.is_match(key));
        let expect = &self.expect;
        let mut out = report.failures().to_vec();
        let total = report.total();
        let loaded = report.loaded().len();
        if total > 0 && loaded == 0 && !expect.allow_empty {
            out.push(format!(
                "nothing loaded: none of the model's {total} tensors is in the checkpoint under its name and shape"
            ));
        }
        if !expect.allow_partial {
            out.extend(half_loaded(report, &allowed));
        }
        let unexpected_allowed =
            |key: &str| self.allow_unexpected.iter().any(|re| re.is_match(key));
        out.extend(layers::layer_counts(report, &allowed, &unexpected_allowed));
        if let Some(want) = expect.coverage
            && !meets(loaded, total, want)
        {
            out.push(format!(
                "coverage {} is below the expected {}",
                percent(loaded, total),
                percent_of(want)
            ));
        }
        for (prefix, want) in &expect.subtrees {
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
        if expect.strict {
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
                    fold_keys(&not_loaded).join(", ")
                ));
            }
            let unused: Vec<&str> = report
                .unexpected()
                .iter()
                .map(String::as_str)
                .filter(|k| !self.allow_unexpected.iter().any(|re| re.is_match(k)))
                .collect();
            if !unused.is_empty() {
                out.push(format!(
                    "strict: unused in the checkpoint {}",
                    fold_keys(&unused).join(", ")
                ));
            }
        }
        out
    }
}

/// `loaded/total ≥ want`, with room for rounding in `want`.
fn meets(loaded: usize, total: usize, want: f64) -> bool {
    total == 0 || loaded as f64 / total as f64 + 1e-9 >= want
}

fn percent_of(f: f64) -> String {
    format!("{} %", (f * 100.0 * 1000.0).round() / 1000.0)
}

/// Layers (a key's parent) with some tensors loaded and others not; a key that an explicit
/// `keep` policy or `allow_missing` covers does not count.
fn half_loaded(report: &LoadReport, allowed: &dyn Fn(&str) -> bool) -> Vec<String> {
    let loaded: HashSet<&str> = report.loaded().iter().map(String::as_str).collect();
    let mismatched: HashMap<&str, &Mismatch> = report
        .mismatched()
        .iter()
        .map(|m| (m.key.as_str(), m))
        .collect();
    // Per layer: loaded keys, the others (described), how many of those are shape mismatches.
    let mut layers: BTreeMap<&str, (Vec<&str>, Vec<String>, usize)> = BTreeMap::new();
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
            Some(m) => {
                slot.1.push(format!(
                    "{key} (model {:?} vs. checkpoint {:?})",
                    m.model_shape, m.checkpoint_shape
                ));
                slot.2 += 1;
            }
            None => slot.1.push(format!("{key} (missing)")),
        }
    }
    order
        .into_iter()
        .filter_map(|layer| {
            let (done, not, mismatched) = &layers[layer];
            if done.is_empty() || not.is_empty() {
                return None;
            }
            let name = if layer.is_empty() { "(root)" } else { layer };
            // The way out that fits the cause: shapes that differ are kept by a rule, keys
            // that are not there are allowed missing.
            let escape = match (*mismatched, not.len() - mismatched) {
                (0, _) => "allow with `allow_missing` or `allow_partial`",
                (_, 0) => {
                    "keep the model's values with an `on_mismatch` rule `keep` for these keys, or allow with `allow_partial`"
                }
                _ => {
                    "keep mismatched shapes with an `on_mismatch` rule `keep`, allow the missing keys with `allow_missing`, or allow all with `allow_partial`"
                }
            };
            Some(format!(
                "layer `{name}` half loaded: loaded {}; not {} (a checkpoint for another variant? {escape})",
                done.join(", "),
                not.join(", ")
            ))
        })
        .collect()
}

/// Compile `list`'s regexes; a bad one is `Error::InvalidPattern` naming `field`.
pub(crate) fn patterns(field: &str, list: &[String]) -> Result<Vec<Regex>> {
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
