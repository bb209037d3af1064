//! A report made from a plan: each planned tensor in its section, coverage per subtree.

use std::collections::BTreeMap;

use super::{Adapted, Cast, Hint, Ignored, LoadReport, Mismatch, Split, SubtreeCoverage, hints};
use crate::format::{Convention, Format};
use crate::plan::{Action, Plan};
use crate::view::{Rewrite, ViewStep};

impl LoadReport {
    pub(crate) fn new(
        model: String,
        source: String,
        format: Format,
        convention: Convention,
        dry_run: bool,
        steps: Vec<ViewStep>,
        plan: &Plan,
    ) -> Self {
        let mut report = Self {
            model,
            source,
            format,
            shards: 0,
            convention,
            dry_run,
            view: steps,
            loaded: Vec::new(),
            split: Vec::new(),
            adapted: Vec::new(),
            mismatched: Vec::new(),
            cast: Vec::new(),
            missing: Vec::new(),
            unexpected: plan.unexpected.iter().map(|(k, _)| k.clone()).collect(),
            ignored: plan
                .ignored
                .iter()
                .map(|(key, reason)| Ignored {
                    key: key.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            hints: Vec::new(),
            coverage: 1.0,
            checkpoint_used: 0,
            checkpoint_total: plan.unexpected.len(),
            subtrees: Vec::new(),
            failures: Vec::new(),
            bytes_read: 0,
            bytes_mapped: 0,
            keys: plan.items.iter().map(|i| i.target.key.clone()).collect(),
            loaded_params: Vec::new(),
            kept_params: Vec::new(),
            frozen: Vec::new(),
            adapter: None,
            quantized: None,
        };
        let mut coverage: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for (order, item) in plan.items.iter().enumerate() {
            let key = &item.target.key;
            let subtree = key.split('.').next().unwrap_or_default().to_string();
            let slot = coverage.entry(subtree).or_insert((order, 0, 0));
            slot.2 += 1;
            if !matches!(item.action, Action::Missing) {
                report.checkpoint_total += 1;
            }
            let ids = item.target.pieces.iter().map(|p| p.id);
            match item.action {
                Action::Load { .. } => report.loaded_params.extend(ids),
                _ => report.kept_params.extend(ids),
            }
            match &item.action {
                Action::Load { cast, adapt, .. } => {
                    slot.1 += 1;
                    report.loaded.push(key.clone());
                    if let Some(adapt) = adapt {
                        report.adapted.push(Adapted {
                            key: key.clone(),
                            rule: adapt.rule.clone(),
                            checkpoint_shape: adapt.stored.clone(),
                            model_shape: item.target.checkpoint_shape(),
                            how: adapt.adaptation.describe(),
                        });
                    }
                    if item.target.is_packed() {
                        report.split.push(Split {
                            key: key.clone(),
                            checkpoint_shape: item.target.checkpoint_shape(),
                            parts: item
                                .target
                                .pieces
                                .iter()
                                .map(|p| p.model_path.clone())
                                .collect(),
                        });
                    }
                    if let Some((from, to)) = cast {
                        report.cast.push(Cast {
                            key: key.clone(),
                            from: *from,
                            to: *to,
                        });
                    }
                }
                Action::ShapeMismatch {
                    checkpoint_shape,
                    rule,
                    failure,
                } => {
                    report.mismatched.push(Mismatch {
                        key: key.clone(),
                        model_shape: item.target.checkpoint_shape(),
                        checkpoint_shape: checkpoint_shape.clone(),
                        rule: rule.clone(),
                    });
                    report.failures.extend(failure.clone());
                }
                Action::Incompatible { dtype } => {
                    report.missing.push(key.clone());
                    report.hints.push(Hint::dtype(
                        key,
                        &dtype.to_string(),
                        &format!("{:?}", item.target.dtype),
                    ));
                }
                Action::Missing => report.missing.push(key.clone()),
            }
        }
        let mut coverage: Vec<_> = coverage.into_iter().collect();
        coverage.sort_by_key(|(_, (order, _, _))| *order);
        report.checkpoint_used = report.loaded.len();
        if !report.keys.is_empty() {
            report.coverage = report.loaded.len() as f64 / report.keys.len() as f64;
        }
        report.subtrees = coverage
            .into_iter()
            .map(|(subtree, (_, loaded, total))| SubtreeCoverage {
                subtree,
                loaded,
                total,
            })
            .collect();
        report
    }

    /// Add the "did you mean" hints: `alignment` (a prefix rewrite) first, then key pairs.
    pub(crate) fn with_hints(mut self, plan: &Plan, alignment: Option<&Rewrite>) -> Self {
        self.hints.extend(alignment.map(Hint::prefix));
        self.hints.extend(hints::hints(plan, alignment.is_some()));
        self
    }
}
