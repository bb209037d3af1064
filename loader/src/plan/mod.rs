//! The plan: the model's tensors (its mapping's targets) matched against the checkpoint view,
//! from headers only: load (maybe cast), shape mismatch, incompatible dtype or missing for each,
//! and the view's keys nobody asked for.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::DType;
use crate::mapping::Target;
use crate::view::View;

/// Each checkpoint key is claimed by one target only (two parameters mapped to one key would
/// load the same tensor twice on load, and collide on export).
pub(crate) fn unique_keys(targets: &[Target]) -> Result<()> {
    let mut owners: HashMap<&str, String> = HashMap::new();
    for t in targets {
        if let Some(first) = owners.insert(&t.key, t.model_path()) {
            return Err(Error::DuplicateTarget {
                key: t.key.clone(),
                first,
                second: t.model_path(),
            });
        }
    }
    Ok(())
}

/// What the plan decided for one model tensor.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Load it; `cast` when the stored dtype differs from the model's.
    Load {
        index: usize,
        cast: Option<(DType, DType)>,
    },
    /// The key exists with another shape: keep the model's value.
    ShapeMismatch { checkpoint_shape: Vec<usize> },
    /// The stored dtype cannot become the model's (e.g. a quantized parameter).
    Incompatible { dtype: DType },
    /// No such key in the view.
    Missing,
}

#[derive(Debug, Clone)]
pub(crate) struct PlanItem {
    pub target: Target,
    pub action: Action,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub items: Vec<PlanItem>,
    /// View keys (with shape) that no model tensor asked for.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Stored keys deliberately not loaded, with why.
    pub ignored: Vec<(String, String)>,
}

impl Plan {
    pub fn build(
        targets: Vec<Target>,
        expected_unused: Vec<(String, &'static str)>,
        skipped: &[String],
        view: &View,
    ) -> Result<Self> {
        unique_keys(&targets)?;
        let by_key: HashMap<&str, usize> = view
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i))
            .collect();
        let mut used = HashSet::new();
        let items = targets
            .into_iter()
            .map(|target| {
                let action = match by_key.get(target.key.as_str()) {
                    None => Action::Missing,
                    Some(&index) => {
                        used.insert(index);
                        let entry = &view.entries[index].entry;
                        let model_dtype = DType::from_burn(target.dtype);
                        if !target.fits(entry.shape()) {
                            Action::ShapeMismatch {
                                checkpoint_shape: entry.shape().to_vec(),
                            }
                        } else {
                            match model_dtype {
                                None => Action::Incompatible {
                                    dtype: entry.dtype(),
                                },
                                Some(to) if to == entry.dtype() => {
                                    Action::Load { index, cast: None }
                                }
                                Some(to) => Action::Load {
                                    index,
                                    cast: Some((entry.dtype(), to)),
                                },
                            }
                        }
                    }
                };
                PlanItem { target, action }
            })
            .collect();
        let expected: HashMap<&str, &str> = expected_unused
            .iter()
            .map(|(k, why)| (k.as_str(), *why))
            .collect();
        let mut unexpected = Vec::new();
        let mut ignored = view.dropped.clone();
        for (i, e) in view.entries.iter().enumerate() {
            if used.contains(&i) {
                continue;
            }
            let under_skipped = skipped.iter().any(|p| {
                e.key == *p || (e.key.starts_with(p.as_str()) && e.key[p.len()..].starts_with('.'))
            });
            match expected.get(e.key.as_str()) {
                Some(why) => ignored.push((e.key.clone(), why.to_string())),
                None if under_skipped => {
                    ignored.push((e.key.clone(), "field marked #[pretrain(skip)]".to_string()))
                }
                None => unexpected.push((e.key.clone(), e.entry.shape().to_vec())),
            }
        }
        Ok(Self {
            items,
            unexpected,
            ignored,
        })
    }
}
