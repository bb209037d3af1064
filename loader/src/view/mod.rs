//! The checkpoint view: stored keys → the keys the model is matched against.
//!
//! Automatic steps unwrap the usual containers (`state_dict`, `model`, ...) and strip wrapper
//! prefixes (`module.` from DataParallel/DDP, `_orig_mod.` from `torch.compile`); requested
//! steps apply `sub_level` and regex remaps. Every step is recorded for the report, and every
//! tensor a step drops is kept as "ignored" with the reason, never silently lost.

mod align;
pub(crate) mod convert;
mod options;
mod weight_norm;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{Checkpoint, TensorEntry};
pub(crate) use align::Rewrite;
pub use convert::Converter;
pub use options::{Align, Remap, ViewOptions};
pub(crate) use options::{CompiledRemap, ViewRules};

/// Containers that hold the weights, in the order they are preferred.
const CONTAINERS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "net",
    "network",
    "params",
];
/// Containers that hold EMA weights, in the order they are preferred.
const EMA_CONTAINERS: &[&str] = &[
    "model_ema",
    "state_dict_ema",
    "ema_state_dict",
    "ema",
    "ema_model",
    "module_ema",
];
/// Siblings a training checkpoint keeps next to the weights.
const SIBLINGS: &[&str] = &[
    "optimizer",
    "optimizer_state",
    "optimizer_state_dict",
    "optim",
    "scheduler",
    "lr_scheduler",
    "scaler",
    "grad_scaler",
    "meta",
    "args",
    "config",
];
/// Wrapper prefixes stripped when every key carries them.
const WRAPPERS: &[&str] = &["module", "_orig_mod"];

/// One thing the view did to the checkpoint's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViewStep {
    /// Took the tensors under a container and dropped its siblings.
    Unwrapped {
        /// The container's name.
        container: String,
        /// Sibling names dropped with their tensor counts.
        dropped: BTreeMap<String, usize>,
    },
    /// Removed a wrapper prefix.
    Stripped {
        /// The prefix, with its trailing dot.
        prefix: String,
        /// How many keys carried it.
        keys: usize,
    },
    /// Kept the keys under `prefix.` and dropped the prefix.
    SubLevel {
        /// The prefix.
        prefix: String,
        /// How many keys were kept.
        kept: usize,
        /// How many were outside it.
        dropped: usize,
    },
    /// Rewrote the leading path of keys to agree with the model (`align: auto`).
    Aligned {
        /// The checkpoint's leading path (empty: a prefix was added).
        from: String,
        /// The model's (empty: the prefix was stripped).
        to: String,
        /// How many keys changed.
        keys: usize,
        /// Model tensors agreeing in name and shape after the rewrite.
        agree: usize,
        /// ... and before it.
        before: usize,
    },
    /// Folded PyTorch weight norm: each layer's magnitude and direction became the plain
    /// `weight` its forward uses, `g · v / ‖v‖`.
    FoldedWeightNorm {
        /// The magnitude's and direction's names (`weight_g`, `weight_v`).
        from: [String; 2],
        /// The weights made, in key order.
        keys: Vec<String>,
    },
    /// Rewrote tensors with a converter.
    Converted {
        /// The converter, as written.
        converter: String,
        /// The keys it made, in order.
        keys: Vec<String>,
    },
    /// Renamed keys with a regular expression.
    Remapped {
        /// The pattern.
        from: String,
        /// The replacement.
        to: String,
        /// How many keys changed.
        keys: usize,
    },
}

impl std::fmt::Display for ViewStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewStep::Unwrapped { container, dropped } => {
                write!(f, "unwrapped `{container}`")?;
                if !dropped.is_empty() {
                    let list: Vec<String> = dropped
                        .iter()
                        .map(|(name, n)| format!("{name} ({n} tensors)"))
                        .collect();
                    write!(f, ", ignored {}", list.join(", "))?;
                }
                Ok(())
            }
            ViewStep::Stripped { prefix, keys } => {
                write!(f, "stripped `{prefix}` from {keys} keys")
            }
            ViewStep::SubLevel {
                prefix,
                kept,
                dropped,
            } => write!(
                f,
                "sub_level `{prefix}`: kept {kept} keys, ignored {dropped} outside it"
            ),
            ViewStep::Aligned {
                from,
                to,
                keys,
                agree,
                before,
            } => {
                let what = match (from.is_empty(), to.is_empty()) {
                    (false, true) => format!("stripped `{from}.`"),
                    (true, _) => format!("added `{to}.`"),
                    (false, false) => format!("rewrote `{from}.` to `{to}.`"),
                };
                write!(
                    f,
                    "aligned: {what} on {keys} keys ({before} → {agree} model tensors agree)"
                )
            }
            ViewStep::Remapped { from, to, keys } => {
                write!(f, "remapped `{from}` → `{to}` on {keys} keys")
            }
            ViewStep::Converted { converter, keys } => {
                write!(f, "{converter}: made {}", some_keys(keys))
            }
            ViewStep::FoldedWeightNorm { from: [g, v], keys } => {
                write!(f, "folded weight norm ({g}, {v}) into {}", some_keys(keys))
            }
        }
    }
}

/// `` `a`, `b`, `c`, `d` and 5 more ``: the first keys a step made.
fn some_keys(keys: &[String]) -> String {
    let shown: Vec<String> = keys.iter().take(4).map(|k| format!("`{k}`")).collect();
    match keys.len().saturating_sub(4) {
        0 => shown.join(", "),
        n => format!("{} and {n} more", shown.join(", ")),
    }
}

/// A tensor as the model sees it: its view key and the stored entry behind it.
#[derive(Debug, Clone)]
pub(crate) struct ViewEntry {
    pub key: String,
    pub entry: TensorEntry,
    /// The key before remaps and alignment (after unwrapping and `sub_level`), for messages.
    pub before_rename: Option<String>,
}

/// The checkpoint after the view's steps.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub entries: Vec<ViewEntry>,
    pub steps: Vec<ViewStep>,
    /// Stored keys the view dropped, with why.
    pub dropped: Vec<(String, String)>,
    /// The leading-path rewrite that would make more keys agree with the model, when
    /// alignment is off (a hint).
    pub alignment: Option<Rewrite>,
}

impl View {
    /// Apply the view `options` to `checkpoint`. `model_roots` are the first segments of the
    /// model's own keys: a container or wrapper name that the model itself uses is left alone.
    ///
    /// `model` (the model's keys with their shapes in the checkpoint's layout; empty when
    /// there is no model) drives alignment: applied with `align: auto`, else kept as a hint.
    pub fn build(
        checkpoint: &Checkpoint,
        options: &ViewRules,
        model_roots: &HashSet<String>,
        model: &[(&str, Vec<usize>)],
    ) -> Result<Self> {
        let mut view = View {
            entries: checkpoint
                .entries()
                .iter()
                .map(|e| ViewEntry {
                    key: e.key().to_string(),
                    entry: e.clone(),
                    before_rename: None,
                })
                .collect(),
            steps: Vec::new(),
            dropped: Vec::new(),
            alignment: None,
        };
        if options.unwrap {
            view.unwrap_containers(options.ema, model_roots);
            view.strip_wrappers(model_roots);
        }
        if options.ema {
            let found = view.steps.iter().any(|s| {
                matches!(s, ViewStep::Unwrapped { container, .. } if EMA_CONTAINERS.contains(&container.as_str()))
            });
            if !found {
                return Err(Error::EmaNotFound {
                    path: checkpoint.path().to_path_buf(),
                    looked_for: EMA_CONTAINERS.join(", "),
                });
            }
        }
        if let Some(prefix) = options.sub_level.as_deref() {
            view.sub_level(prefix, checkpoint)?;
        }
        for remap in &options.remaps {
            view.remap(remap);
        }
        for converter in &options.converters {
            view.convert(converter)?;
        }
        if !model.is_empty() {
            view.fold_weight_norm(model);
            view.align(model, options.align);
        }
        view.check_collisions(checkpoint)?;
        Ok(view)
    }

    fn roots(&self) -> BTreeMap<String, usize> {
        let mut roots = BTreeMap::new();
        for e in &self.entries {
            let root = e.key.split('.').next().unwrap_or_default();
            *roots.entry(root.to_string()).or_insert(0) += 1;
        }
        roots
    }

    fn unwrap_containers(&mut self, ema: bool, model_roots: &HashSet<String>) {
        // A checkpoint may nest (`{"state_dict": {"model": ...}}`); a few rounds suffice.
        for _ in 0..4 {
            let roots = self.roots();
            let nested = |name: &str| {
                roots.contains_key(name)
                    && !model_roots.contains(name)
                    && self.entries.iter().all(|e| e.key.contains('.'))
            };
            let preferred: Vec<&str> = if ema {
                EMA_CONTAINERS.iter().chain(CONTAINERS).copied().collect()
            } else {
                CONTAINERS.to_vec()
            };
            let choice = preferred.into_iter().find(|&name| {
                if !nested(name) {
                    return false;
                }
                // Alone, or beside names a training checkpoint keeps next to its weights.
                roots.keys().all(|r| {
                    r == name
                        || SIBLINGS.contains(&r.as_str())
                        || EMA_CONTAINERS.contains(&r.as_str())
                        || CONTAINERS.contains(&r.as_str())
                })
            });
            let Some(container) = choice else { return };
            let prefix = format!("{container}.");
            let mut dropped = BTreeMap::new();
            let mut kept = Vec::with_capacity(self.entries.len());
            for mut e in std::mem::take(&mut self.entries) {
                if let Some(rest) = e.key.strip_prefix(&prefix) {
                    e.key = rest.to_string();
                    kept.push(e);
                } else {
                    let root = e.key.split('.').next().unwrap_or_default().to_string();
                    *dropped.entry(root.clone()).or_insert(0) += 1;
                    self.dropped
                        .push((e.key, format!("outside the `{container}` container")));
                }
            }
            self.entries = kept;
            self.steps.push(ViewStep::Unwrapped {
                container: container.to_string(),
                dropped,
            });
        }
    }

    fn strip_wrappers(&mut self, model_roots: &HashSet<String>) {
        loop {
            let roots = self.roots();
            let wrapper = WRAPPERS.iter().find(|&&w| {
                roots.len() == 1
                    && roots.contains_key(w)
                    && !model_roots.contains(w)
                    && self.entries.iter().all(|e| e.key.contains('.'))
            });
            let Some(wrapper) = wrapper else { break };
            let prefix = format!("{wrapper}.");
            for e in &mut self.entries {
                e.key = e.key[prefix.len()..].to_string();
            }
            self.steps.push(ViewStep::Stripped {
                prefix,
                keys: self.entries.len(),
            });
        }
        // torch.compile on a submodule leaves `._orig_mod.` inside keys.
        let inner = self
            .entries
            .iter()
            .filter(|e| e.key.contains("._orig_mod."))
            .count();
        if inner > 0 {
            for e in &mut self.entries {
                e.key = e.key.replace("._orig_mod.", ".");
            }
            self.steps.push(ViewStep::Stripped {
                prefix: "._orig_mod.".into(),
                keys: inner,
            });
        }
    }

    fn sub_level(&mut self, prefix: &str, checkpoint: &Checkpoint) -> Result<()> {
        let dotted = format!("{prefix}.");
        let kept_count = self
            .entries
            .iter()
            .filter(|e| e.key.starts_with(&dotted))
            .count();
        if kept_count == 0 {
            let available: Vec<String> = self.roots().into_keys().collect();
            return Err(Error::SubLevelNotFound {
                path: checkpoint.path().to_path_buf(),
                sub_level: prefix.to_string(),
                available: available.join(", "),
            });
        }
        let total = self.entries.len();
        let mut kept = Vec::with_capacity(kept_count);
        for mut e in std::mem::take(&mut self.entries) {
            if let Some(rest) = e.key.strip_prefix(&dotted) {
                e.key = rest.to_string();
                kept.push(e);
            } else {
                self.dropped
                    .push((e.key, format!("outside sub_level `{prefix}`")));
            }
        }
        self.entries = kept;
        self.steps.push(ViewStep::SubLevel {
            prefix: prefix.to_string(),
            kept: kept_count,
            dropped: total - kept_count,
        });
        Ok(())
    }

    fn remap(&mut self, CompiledRemap { re, to }: &CompiledRemap) {
        let mut changed = 0;
        for e in &mut self.entries {
            let new = re.replace_all(&e.key, to.as_str());
            if new != e.key {
                let new = new.into_owned();
                let old = std::mem::replace(&mut e.key, new);
                e.before_rename.get_or_insert(old);
                changed += 1;
            }
        }
        self.steps.push(ViewStep::Remapped {
            from: re.as_str().to_string(),
            to: to.clone(),
            keys: changed,
        });
    }

    /// Fold every weight-normed layer into its plain `weight`, unless the model itself keeps
    /// weight norm (holds a magnitude). A pair whose shapes fit no norm is left as stored and
    /// shows up as unexpected, with the model's `weight` missing.
    fn fold_weight_norm(&mut self, model: &[(&str, Vec<usize>)]) {
        let model_keeps = model.iter().any(|(k, _)| {
            let last = k.rsplit('.').next().unwrap_or(k);
            weight_norm::MAGNITUDE_NAMES.contains(&last)
        });
        if model_keeps {
            return;
        }
        let index: HashMap<&str, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i))
            .collect();
        let pairs = weight_norm::pairs(&index);
        if pairs.is_empty() {
            return;
        }
        let mut made: BTreeMap<[String; 2], Vec<String>> = BTreeMap::new();
        let mut remove = HashSet::new();
        let mut added = HashMap::new();
        for (weight, (g_key, gi), (v_key, vi)) in pairs {
            let (g, v) = (&self.entries[gi], &self.entries[vi]);
            let Ok(dim) = weight_norm::norm_dim(g.entry.shape(), v.entry.shape()) else {
                continue;
            };
            let entry = weight_norm::folded_entry(weight.clone(), &g.entry, &v.entry, dim);
            let g_name = g_key[weight.len() - "weight".len()..].to_string();
            let v_name = v_key[weight.len() - "weight".len()..].to_string();
            made.entry([g_name, v_name])
                .or_default()
                .push(weight.clone());
            let folded = ViewEntry {
                key: weight,
                entry,
                before_rename: v.before_rename.clone(),
            };
            added.insert(vi, folded);
            remove.extend([gi, vi]);
        }
        // The folded weight takes its direction's place, so the state dict's order holds.
        let entries = std::mem::take(&mut self.entries);
        for (i, e) in entries.into_iter().enumerate() {
            if let Some(folded) = added.remove(&i) {
                self.entries.push(folded);
            } else if !remove.contains(&i) {
                self.entries.push(e);
            }
        }
        for (from, keys) in made {
            self.steps.push(ViewStep::FoldedWeightNorm { from, keys });
        }
    }

    fn align(&mut self, model: &[(&str, Vec<usize>)], align: Align) {
        let keys: Vec<(&str, &[usize])> = self
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.entry.shape()))
            .collect();
        let Some(rewrite) = align::best_rewrite(&keys, model) else {
            return;
        };
        if align == Align::Off {
            self.alignment = Some(rewrite);
            return;
        }
        let mut changed = 0;
        for e in &mut self.entries {
            if let Some(new) = rewrite.apply(&e.key) {
                let old = std::mem::replace(&mut e.key, new);
                e.before_rename.get_or_insert(old);
                changed += 1;
            }
        }
        self.steps.push(ViewStep::Aligned {
            from: rewrite.from,
            to: rewrite.to,
            keys: changed,
            agree: rewrite.agree,
            before: rewrite.before,
        });
    }

    fn check_collisions(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for e in &self.entries {
            let shown = e.before_rename.as_deref().unwrap_or(e.entry.key());
            if let Some(first) = seen.insert(&e.key, shown) {
                return Err(Error::KeyCollision {
                    path: checkpoint.path().to_path_buf(),
                    key: e.key.clone(),
                    first: first.to_string(),
                    second: shown.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// The checkpoint seen through a spec's view: containers unwrapped, prefixes stripped,
/// `sub_level` and remaps applied. Reads no tensor bytes.
#[derive(Debug, Clone)]
pub struct CheckpointView {
    view: View,
}

impl CheckpointView {
    /// Apply the view `options` (a spec's [`view`](crate::Pretrain::view)) to `checkpoint`
    /// (automatic unwrapping assumes a model whose own names are not `state_dict`, `model`,
    /// `module`...).
    pub fn new(checkpoint: &Checkpoint, options: &ViewOptions) -> Result<Self> {
        Ok(Self {
            view: View::build(
                checkpoint,
                &ViewRules::compile(options)?,
                &HashSet::new(),
                &[],
            )?,
        })
    }

    /// `(view key, stored tensor)` pairs, in checkpoint order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &TensorEntry)> {
        self.view.entries.iter().map(|e| (e.key.as_str(), &e.entry))
    }

    /// What the view did.
    pub fn steps(&self) -> &[crate::view::ViewStep] {
        &self.view.steps
    }

    /// Stored keys the view left out, with why.
    pub fn dropped(&self) -> &[(String, String)] {
        &self.view.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{DType, Format};

    fn checkpoint(keys: &[&str]) -> Checkpoint {
        let entries = keys
            .iter()
            .map(|k| TensorEntry::new(k.to_string(), vec![1], DType::F32, || Ok(vec![0; 4])))
            .collect();
        Checkpoint::from_entries("mem.pth", Format::PytorchZip, entries)
    }

    fn keys(view: &View) -> Vec<&str> {
        view.entries.iter().map(|e| e.key.as_str()).collect()
    }

    fn roots(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rules(ema: bool, remap: &[(&str, &str)]) -> Result<ViewRules> {
        ViewRules::compile(&ViewOptions {
            ema,
            remap: remap
                .iter()
                .map(|(from, to)| Remap {
                    from: from.to_string(),
                    to: to.to_string(),
                })
                .collect(),
            ..ViewOptions::default()
        })
    }

    #[test]
    fn nested_containers_and_wrappers_unwrap_in_turn() {
        let ckpt = checkpoint(&["state_dict.model.module.a.w", "state_dict.model.module.b.w"]);
        let view =
            View::build(&ckpt, &rules(false, &[]).unwrap(), &roots(&["a", "b"]), &[]).unwrap();
        assert_eq!(keys(&view), ["a.w", "b.w"]);
        assert_eq!(view.steps.len(), 3);
    }

    #[test]
    fn ema_weights_on_request_raw_ones_by_default() {
        let ckpt = checkpoint(&["model.a.w", "model_ema.a.w", "optimizer.state.0.m"]);
        let raw = View::build(&ckpt, &rules(false, &[]).unwrap(), &roots(&["a"]), &[]).unwrap();
        assert_eq!(keys(&raw), ["a.w"]);
        assert_eq!(raw.entries[0].entry.key(), "model.a.w");
        let ema = View::build(&ckpt, &rules(true, &[]).unwrap(), &roots(&["a"]), &[]).unwrap();
        assert_eq!(ema.entries[0].entry.key(), "model_ema.a.w");
        let dropped: Vec<_> = ema.dropped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(dropped, ["model.a.w", "optimizer.state.0.m"]);
    }

    #[test]
    fn ema_requested_but_absent_is_an_error() {
        let ckpt = checkpoint(&["model.a.w"]);
        let err = View::build(&ckpt, &rules(true, &[]).unwrap(), &roots(&["a"]), &[]);
        assert!(matches!(err, Err(Error::EmaNotFound { .. })));
    }

    #[test]
    fn names_the_model_uses_are_not_unwrapped() {
        let ckpt = checkpoint(&["model.w", "module.w"]);
        let view = View::build(
            &ckpt,
            &rules(false, &[]).unwrap(),
            &roots(&["model", "module"]),
            &[],
        )
        .unwrap();
        assert_eq!(keys(&view), ["model.w", "module.w"]);
        let ckpt = checkpoint(&["module.w"]);
        let view =
            View::build(&ckpt, &rules(false, &[]).unwrap(), &roots(&["module"]), &[]).unwrap();
        assert_eq!(keys(&view), ["module.w"]);
        assert!(view.steps.is_empty());
    }

    #[test]
    fn a_plain_state_dict_is_left_alone() {
        let ckpt = checkpoint(&["model.w", "fc.w"]);
        let view = View::build(&ckpt, &rules(false, &[]).unwrap(), &roots(&["fc"]), &[]).unwrap();
        assert_eq!(keys(&view), ["model.w", "fc.w"]);
    }

    #[test]
    fn compiled_submodules_lose_inner_orig_mod() {
        let ckpt = checkpoint(&["backbone._orig_mod.conv.w", "head.fc.w"]);
        let view = View::build(
            &ckpt,
            &rules(false, &[]).unwrap(),
            &roots(&["backbone"]),
            &[],
        )
        .unwrap();
        assert_eq!(keys(&view), ["backbone.conv.w", "head.fc.w"]);
    }

    #[test]
    fn replacements_naming_no_group_are_refused_with_the_braced_form() {
        let ckpt = checkpoint(&["a.w"]);
        let err = rules(false, &[(r"^(\w+)\.(\w+)$", "$1_$2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("refers to group `1_`"), "{err}");
        assert!(err.contains("write `${1}_`"), "{err}");
        let spec = rules(false, &[(r"^(\w+)\.(?<leaf>\w+)$", "${1}_$leaf$$")]).unwrap();
        let view = View::build(&ckpt, &spec, &roots(&["a_w"]), &[]).unwrap();
        assert_eq!(keys(&view), ["a_w$"]);
    }

    #[test]
    fn collisions_name_the_keys_as_remaps_saw_them() {
        let ckpt = checkpoint(&["model_state.a.w", "model_state.b.w"]);
        let spec = rules(false, &[("^(a|b)", "c")]).unwrap();
        let err = View::build(&ckpt, &spec, &roots(&["c"]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys `a.w` and `b.w` of mem.pth both become `c.w` after remapping"
        );
    }

    #[test]
    fn remaps_that_collide_are_refused() {
        let ckpt = checkpoint(&["a.w", "b.w"]);
        let spec = rules(false, &[("^(a|b)", "c")]).unwrap();
        let err = View::build(&ckpt, &spec, &roots(&["c"]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys `a.w` and `b.w` of mem.pth both become `c.w` after remapping"
        );
    }
}
