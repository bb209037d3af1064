//! The plan: the model's tensors (its mapping's targets) matched against the checkpoint view,
//! from headers only: load (maybe cast), shape mismatch, incompatible dtype or missing for each,
//! and the view's keys nobody asked for.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::DType;
use crate::mapping::Target;
use crate::policy::{Adaptation, Policy, PolicySource, Rules};
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
    /// Load it; `cast` when the stored dtype differs from the model's; `adapt` when a
    /// mismatch policy changes the stored shape into the model's.
    Load {
        index: usize,
        cast: Option<(DType, DType)>,
        adapt: Option<Adapt>,
    },
    /// The key exists with another shape: keep the model's value. `rule` is where the
    /// policy that decided so came from (none: the default `keep`); `failure` says why the
    /// load must fail (an `error` policy, or a policy that cannot apply to these shapes).
    ShapeMismatch {
        checkpoint_shape: Vec<usize>,
        rule: Option<PolicySource>,
        failure: Option<String>,
    },
    /// The stored dtype cannot become the model's (e.g. a quantized parameter).
    Incompatible { dtype: DType },
    /// No such key in the view.
    Missing,
}

/// A mismatch policy's change of a stored tensor into the model's shape.
#[derive(Debug, Clone)]
pub(crate) struct Adapt {
    /// Where the policy came from.
    pub rule: PolicySource,
    pub adaptation: Adaptation,
    /// The stored shape.
    pub stored: Vec<usize>,
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
    /// The plan of the items at `indices` only (a batch of a load read in parts).
    pub fn subset(&self, indices: &[usize]) -> Plan {
        Plan {
            items: indices.iter().map(|&i| self.items[i].clone()).collect(),
            unexpected: Vec::new(),
            ignored: Vec::new(),
        }
    }

    pub fn build(
        targets: Vec<Target>,
        expected_unused: Vec<(String, &'static str)>,
        skipped: &[String],
        view: &View,
        rules: &Rules,
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
                        let mut adapt = None;
                        if !target.fits(entry.shape()) {
                            match mismatch(&target, entry.dtype(), entry.shape(), rules) {
                                Ok(a) => adapt = Some(a),
                                Err(action) => return PlanItem { target, action },
                            }
                        }
                        match model_dtype {
                            None => Action::Incompatible {
                                dtype: entry.dtype(),
                            },
                            Some(to) if to == entry.dtype() => Action::Load {
                                index,
                                cast: None,
                                adapt,
                            },
                            Some(to) => Action::Load {
                                index,
                                cast: Some((entry.dtype(), to)),
                                adapt,
                            },
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
                None if recomputed_buffer(&e.key) => ignored.push((
                    e.key.clone(),
                    "a buffer PyTorch recomputes at init, not a weight".to_string(),
                )),
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

/// Buffers that PyTorch modules build from their config and save only because they were
/// registered persistent: transformers' `embeddings.position_ids` / `token_type_ids`, timm's
/// and transformers' `relative_position_index`, GPT-2's `attn.masked_bias`. A model without
/// them has lost nothing, so when unused they are ignored (with why), not unexpected; a model
/// that has one loads it as any tensor.
fn recomputed_buffer(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    matches!(
        leaf,
        "position_ids"
            | "token_type_ids"
            | "relative_position_index"
            | "masked_bias"
            | "num_batches_tracked"
    )
}

/// A stored tensor whose shape does not fit `target`: the adaptation its rule asks for, or the
/// mismatch to report (with the rule that kept it, or why the load must fail).
fn mismatch(
    target: &Target,
    dtype: DType,
    stored: &[usize],
    rules: &Rules,
) -> std::result::Result<Adapt, Action> {
    let keep = |rule: Option<&PolicySource>, failure: Option<String>| Action::ShapeMismatch {
        checkpoint_shape: stored.to_vec(),
        rule: rule.cloned(),
        failure,
    };
    let paths = target.pieces.iter().map(|p| p.model_path.as_str());
    let found = rules.find(&target.key, paths, target.default_policy.as_ref());
    let Some((source, policy)) = found else {
        return Err(keep(None, None));
    };
    let model = target.checkpoint_shape();
    let fail = |why: String| {
        Err(keep(
            Some(&source),
            Some(format!(
                "`{}`: model {model:?} vs. checkpoint {stored:?}: {why} ({source})",
                target.key
            )),
        ))
    };
    match policy {
        Policy::Keep => Err(keep(Some(&source), None)),
        Policy::Error => fail("shape mismatch, policy `error`".into()),
        _ if target.is_packed() => fail(format!(
            "{} does not apply to a packed tensor",
            policy.name()
        )),
        _ if !dtype.is_float() || !DType::from_burn(target.dtype).is_some_and(DType::is_float) => {
            fail(format!(
                "{} needs float tensors, found {dtype}",
                policy.name()
            ))
        }
        _ => match Adaptation::plan(policy, &model, stored) {
            Ok(adaptation) => Ok(Adapt {
                rule: source.clone(),
                adaptation,
                stored: stored.to_vec(),
            }),
            Err(why) => fail(why.to_string()),
        },
    }
}
