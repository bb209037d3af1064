//! `LoadReport`: what a load did, as a value — text for people, JSON for machines, tracing
//! lines in the shape of essmc2's log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

mod fold;

pub use fold::fold_keys;

use crate::format::{Convention, DType, Format};
use crate::plan::{Action, Plan};
use crate::view::ViewStep;

/// A tensor whose shape differs between model and checkpoint; the model kept its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The checkpoint key (after the view).
    pub key: String,
    /// The model's shape, in the checkpoint's convention (Linear weights as `[out, in]`).
    pub model_shape: Vec<usize>,
    /// The stored shape.
    pub checkpoint_shape: Vec<usize>,
    /// The pattern of the explicit mismatch rule that decided (`keep` or `error`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A tensor that a mismatch policy changed into the model's shape, then loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adapted {
    /// The checkpoint key.
    pub key: String,
    /// The pattern of the rule that applied.
    pub rule: String,
    /// The stored shape.
    pub checkpoint_shape: Vec<usize>,
    /// The model's shape (in the checkpoint's layout).
    pub model_shape: Vec<usize>,
    /// What was done (`adapted 3 → 1 input channels`).
    pub how: String,
}

/// A tensor loaded with a dtype conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cast {
    /// The checkpoint key.
    pub key: String,
    /// Stored dtype.
    pub from: DType,
    /// The model's dtype.
    pub to: DType,
}

/// One checkpoint tensor split into several model parameters (a packed LSTM or attention
/// projection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    /// The checkpoint key.
    pub key: String,
    /// Its stored shape.
    pub checkpoint_shape: Vec<usize>,
    /// The model parameters it became, in checkpoint order.
    pub parts: Vec<String>,
}

/// A stored tensor deliberately not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// The key as stored in the file.
    pub key: String,
    /// Why it was left out.
    pub reason: String,
}

/// How much of one top-level subtree of the model was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The first key segment (`backbone`, `head`, ...).
    pub subtree: String,
    /// Tensors loaded.
    pub loaded: usize,
    /// Tensors the subtree has.
    pub total: usize,
}

/// What loading a checkpoint into a model did, tensor by tensor.
///
/// Keys are the checkpoint's, after the view (containers unwrapped, prefixes stripped,
/// `sub_level` and remaps applied). Per-tensor problems never fail a load: they are listed
/// here and the model keeps its values for those tensors.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    model: String,
    source: String,
    format: Format,
    #[serde(skip_serializing_if = "is_zero")]
    shards: usize,
    convention: Convention,
    dry_run: bool,
    view: Vec<ViewStep>,
    loaded: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    split: Vec<Split>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    adapted: Vec<Adapted>,
    mismatched: Vec<Mismatch>,
    cast: Vec<Cast>,
    missing: Vec<String>,
    unexpected: Vec<String>,
    ignored: Vec<Ignored>,
    hints: Vec<String>,
    coverage: Vec<Coverage>,
    /// Mismatch rules that require the load to fail (`error`, or a policy that cannot apply).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
    /// Bytes of tensor data read from the checkpoint (0 for a dry run).
    bytes_read: u64,
    /// Every model tensor's checkpoint key, in model order.
    #[serde(skip)]
    keys: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

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
            coverage: Vec::new(),
            failures: Vec::new(),
            bytes_read: 0,
            keys: plan.items.iter().map(|i| i.target.key.clone()).collect(),
        };
        let mut coverage: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for (order, item) in plan.items.iter().enumerate() {
            let key = &item.target.key;
            let subtree = key.split('.').next().unwrap_or_default().to_string();
            let slot = coverage.entry(subtree).or_insert((order, 0, 0));
            slot.2 += 1;
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
                    report.hints.push(format!(
                        "`{key}` is stored as {dtype}, which cannot become the model's {:?}",
                        item.target.dtype
                    ));
                }
                Action::Missing => report.missing.push(key.clone()),
            }
        }
        let mut coverage: Vec<_> = coverage.into_iter().collect();
        coverage.sort_by_key(|(_, (order, _, _))| *order);
        report.coverage = coverage
            .into_iter()
            .map(|(subtree, (_, loaded, total))| Coverage {
                subtree,
                loaded,
                total,
            })
            .collect();
        report
    }

    /// Add the "did you mean" hints: `alignment` (a prefix rewrite) first, then key pairs.
    pub(crate) fn with_hints(mut self, plan: &Plan, alignment: Option<String>) -> Self {
        let aligned = alignment.is_some();
        self.hints.extend(alignment);
        self.hints.extend(hints(plan, aligned));
        self
    }

    /// The model's type name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Where the checkpoint came from, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many shard files the checkpoint was spread over (0: a single file).
    pub fn shards(&self) -> usize {
        self.shards
    }

    pub(crate) fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Bytes of tensor data this load read from the checkpoint: the loaded tensors' bytes
    /// (with the holes a coalesced remote read spans), nothing of the tensors it left; 0 for a
    /// dry run, which reads headers only.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub(crate) fn with_bytes_read(mut self, bytes: u64) -> Self {
        self.bytes_read = bytes;
        self
    }

    /// The naming convention the checkpoint was read with.
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// Whether this report comes from a plan only (no tensor was read, the model unchanged).
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// What the view did to the keys.
    pub fn view_steps(&self) -> &[ViewStep] {
        &self.view
    }

    /// Keys loaded into the model (cast ones included).
    pub fn loaded(&self) -> &[String] {
        &self.loaded
    }

    /// Loaded checkpoint tensors that were split into several parameters.
    pub fn split(&self) -> &[Split] {
        &self.split
    }

    /// Tensors a mismatch policy changed into the model's shape (also in [`loaded`](Self::loaded)).
    pub fn adapted(&self) -> &[Adapted] {
        &self.adapted
    }

    /// How many tensors the model has.
    pub fn total(&self) -> usize {
        self.keys.len()
    }

    /// Every model tensor's checkpoint key, in model order.
    pub fn model_keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// The fraction of the model's tensors that loaded (1 for a model without tensors).
    pub fn fraction(&self) -> f64 {
        match self.total() {
            0 => 1.0,
            n => self.loaded.len() as f64 / n as f64,
        }
    }

    /// `loaded 30/32 tensors (93 %)`.
    pub fn summary(&self) -> String {
        format!(
            "loaded {}/{} tensors ({})",
            self.loaded.len(),
            self.total(),
            crate::expect::percent(self.loaded.len(), self.total())
        )
    }

    /// Why mismatch rules require the load to fail.
    pub fn policy_failures(&self) -> &[String] {
        &self.failures
    }

    /// Keys whose shapes differ; the model kept its values.
    pub fn mismatched(&self) -> &[Mismatch] {
        &self.mismatched
    }

    /// Keys loaded with a dtype conversion.
    pub fn cast(&self) -> &[Cast] {
        &self.cast
    }

    /// Model tensors the checkpoint does not have.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Checkpoint tensors the model does not have.
    pub fn unexpected(&self) -> &[String] {
        &self.unexpected
    }

    /// Stored tensors left out on purpose, with why.
    pub fn ignored(&self) -> &[Ignored] {
        &self.ignored
    }

    /// Suggestions for keys that almost matched.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// Loaded/total tensors per top-level subtree, in model order.
    pub fn coverage(&self) -> &[Coverage] {
        &self.coverage
    }

    /// Whether every model tensor was loaded and nothing was left unused.
    pub fn is_complete(&self) -> bool {
        self.mismatched.is_empty() && self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// The first line: `Loaded pretrained model [ResNet] from r50.pth (PyTorch zip)`.
    fn headline(&self) -> String {
        let shards = match self.shards {
            0 => String::new(),
            n => format!(", {n} shards"),
        };
        format!(
            "{} pretrained model [{}] from {} ({}{shards})",
            if self.dry_run { "Plan for" } else { "Loaded" },
            self.model,
            self.source,
            self.format
        )
    }

    /// Emit the report through `tracing`, in the words of its text form: the headline and
    /// summary (a warning when less than every tensor loaded), then one event per section.
    pub fn log(&self) {
        if self.loaded.len() < self.total() {
            tracing::warn!("{}: {}", self.headline(), self.summary());
        } else {
            tracing::info!("{}: {}", self.headline(), self.summary());
        }
        for step in &self.view {
            tracing::info!("view: {step}");
        }
        for a in &self.adapted {
            tracing::info!("{}: {}", a.key, a.how);
        }
        for (pair, keys) in group_casts(&self.cast) {
            tracing::info!("cast {pair}: {}", fold_keys(&keys).join(", "));
        }
        if !self.mismatched.is_empty() {
            tracing::warn!(
                "shape mismatch, model keeps its values:\n{}",
                self.mismatched
                    .iter()
                    .map(|m| format!("  {}", mismatch_line(m)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        if !self.missing.is_empty() {
            tracing::warn!("missing in checkpoint: {}", summarize(&self.missing));
        }
        if !self.unexpected.is_empty() {
            tracing::warn!("unexpected in checkpoint: {}", summarize(&self.unexpected));
        }
        for hint in &self.hints {
            tracing::info!("hint: {hint}");
        }
    }
}

/// A stored shape and the parts below their common parent.
type SplitKind = (Vec<usize>, Vec<String>);

/// Splits with the same stored shape and the same parts below their common parent (`query.weight,
/// key.weight, value.weight` of every block's `qkv.weight`), with their keys, in order of first
/// appearance: one line per group, however deep the model.
fn group_splits(splits: &[Split]) -> Vec<(SplitKind, Vec<String>)> {
    let mut groups: Vec<(SplitKind, Vec<String>)> = Vec::new();
    for s in splits {
        let segments: Vec<Vec<&str>> = s.parts.iter().map(|p| p.split('.').collect()).collect();
        let common = match segments.split_first() {
            Some((first, rest)) if !rest.is_empty() => rest.iter().fold(first.len(), |n, p| {
                n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count())
            }),
            _ => 0,
        };
        let parts: Vec<String> = segments
            .iter()
            .map(|p| fold::printable(p[common.min(p.len())..].join(".")))
            .collect();
        let group = (s.checkpoint_shape.clone(), parts);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, keys)) => keys.push(s.key.clone()),
            None => groups.push((group, vec![s.key.clone()])),
        }
    }
    groups
}

/// `fc.weight: model [10, 512] vs. checkpoint [1000, 512]`, and the rule that kept it.
fn mismatch_line(m: &Mismatch) -> String {
    let rule = match &m.rule {
        Some(rule) => format!(" (rule `{rule}`)"),
        None => String::new(),
    };
    format!(
        "{}: model {:?} vs. checkpoint {:?}{rule}",
        fold::printable(m.key.clone()),
        m.model_shape,
        m.checkpoint_shape
    )
}

fn group_casts(casts: &[Cast]) -> Vec<(String, Vec<&str>)> {
    group_by(casts, |c| (c.from, c.to))
        .into_iter()
        .map(|((from, to), list)| {
            (
                format!("{from} → {to}"),
                list.iter().map(|c| c.key.as_str()).collect(),
            )
        })
        .collect()
}

/// "Did you mean" hints: groups of missing and unexpected keys that agree in tokens and
/// shapes whatever the case, depth or arrangement of their names (`conv1_bn.*` ↔
/// `conv1_BN.*`, `lstm.layers.0.weight_ih` ↔ `lstm.weight_ih_l0`); then, for the rest, an
/// unexpected key sharing a missing one's shape and most of its name (unless a prefix
/// rewrite was already suggested).
fn hints(plan: &Plan, aligned: bool) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<(&str, Vec<usize>)> = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, Action::Missing))
        .map(|i| (i.target.key.as_str(), i.target.checkpoint_shape()))
        .collect();
    if missing.is_empty() || plan.unexpected.is_empty() {
        return out;
    }
    // Unexpected keys by (tokens, shape); a token set shared by two keys pairs nothing.
    let mut by_tokens: HashMap<(Vec<String>, &[usize]), Option<&str>> = HashMap::new();
    for (key, shape) in &plan.unexpected {
        by_tokens
            .entry((tokens(key), shape.as_slice()))
            .and_modify(|slot| *slot = None)
            .or_insert(Some(key.as_str()));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (key, shape) in &missing {
        if let Some(Some(found)) = by_tokens.get(&(tokens(key), shape.as_slice())) {
            pairs.push((key, found));
        }
    }
    // Group by the two parents: a group whose leaves agree is one rename of a path.
    let groups: Vec<PairGroup> = group_by(pairs.iter().copied(), |(model, stored)| {
        (parent(model), parent(stored))
    });
    for ((model_parent, stored_parent), list) in &groups {
        let same_leaves = list.iter().all(|(m, c)| leaf(m) == leaf(c));
        if same_leaves && !model_parent.is_empty() && !stored_parent.is_empty() {
            out.push(format!(
                "model `{model_parent}.*` ↔ checkpoint `{stored_parent}.*`: {} tensors agree in name and shape; remap `^{}` → `{model_parent}.`",
                list.len(),
                regex::escape(&format!("{stored_parent}."))
            ));
        } else {
            let shown: Vec<String> = list
                .iter()
                .take(3)
                .map(|(m, c)| format!("`{m}` ↔ checkpoint `{c}`"))
                .collect();
            let more = match list.len() {
                n if n > 3 => format!(" and {} more", n - 3),
                _ => String::new(),
            };
            out.push(format!(
                "same tensors under other names (model ↔ checkpoint, equal shapes): {}{more}; remap them",
                shown.join(", ")
            ));
        }
    }
    if aligned {
        // A prefix rewrite explains the rest better than key-by-key guesses.
        return out;
    }
    let paired: HashSet<&str> = pairs.iter().map(|(m, _)| *m).collect();
    // Near names with the same shape.
    for (key, want) in missing.iter().filter(|(k, _)| !paired.contains(k)).take(10) {
        let best = plan
            .unexpected
            .iter()
            .filter(|(_, shape)| shape == want)
            .map(|(stored, _)| (similarity(stored, key), stored))
            .filter(|(score, _)| *score >= 2)
            .max_by_key(|(score, _)| *score);
        if let Some((_, stored)) = best {
            out.push(format!(
                "`{key}` is missing; the checkpoint has `{stored}` with the same shape (rename or remap?)"
            ));
        }
    }
    out
}

/// `items` grouped by `key`, groups in order of first appearance, items in order (one hash
/// lookup each: lists of 100k keys stay linear).
fn group_by<T, K: std::hash::Hash + Eq + Copy>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    let mut slot: HashMap<K, usize> = HashMap::new();
    for item in items {
        let k = key(&item);
        let i = *slot.entry(k).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(item);
    }
    groups
}

/// Pairs of (model key, checkpoint key) under one (model parent, checkpoint parent).
type PairGroup<'a> = ((&'a str, &'a str), Vec<(&'a str, &'a str)>);

/// A key's name tokens, order and case aside: split at `.` and `_`, lowercased, `l0` (a
/// PyTorch RNN layer suffix) read as `0`, the container word `layers` dropped; sorted.
fn tokens(key: &str) -> Vec<String> {
    let mut out: Vec<String> = key
        .split(['.', '_'])
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .filter(|t| t != "layers")
        .map(|t| match t.strip_prefix('l') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
            _ => t,
        })
        .collect();
    out.sort_unstable();
    out
}

fn parent(key: &str) -> &str {
    key.rsplit_once('.').map_or("", |(p, _)| p)
}

fn leaf(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(_, l)| l)
}

/// Folded keys, or for long lists a count per top-level name (the JSON keeps every key).
fn summarize<S: AsRef<str>>(keys: &[S]) -> String {
    const MAX_PATTERNS: usize = 8;
    let folded = fold_keys(keys);
    if folded.len() <= MAX_PATTERNS {
        return folded.join(", ");
    }
    // Per top-level name; a group of up to three keys is named, not counted.
    let roots = group_by(keys.iter().map(AsRef::as_ref), |key| {
        key.split('.').next().unwrap_or_default()
    });
    let parts: Vec<String> = roots
        .iter()
        .map(|(r, group)| match group.len() {
            1..=3 => fold_keys(group).join(", "),
            n => format!("{r}.* ({n})"),
        })
        .collect();
    format!("{} keys: {}", keys.len(), parts.join(", "))
}

/// Shared leading plus trailing segments of two dotted keys.
fn similarity(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (head + tail).min(a.len().min(b.len()))
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        for step in &self.view {
            writeln!(f, "  view: {step}")?;
        }
        let per_subtree: Vec<String> = self
            .coverage
            .iter()
            .map(|c| format!("{} {}/{}", c.subtree, c.loaded, c.total))
            .collect();
        writeln!(f, "  {}: {}", self.summary(), per_subtree.join(", "))?;
        if !self.adapted.is_empty() {
            writeln!(f, "  adapted by mismatch rules:")?;
            for a in &self.adapted {
                let by = if a.rule == crate::plan::MODEL_DEFAULT {
                    " (the model's default)"
                } else {
                    ""
                };
                writeln!(f, "    {}: {}{by}", fold::printable(a.key.clone()), a.how)?;
            }
        }
        for (pair, keys) in group_casts(&self.cast) {
            writeln!(f, "  cast {pair}: {}", fold_keys(&keys).join(", "))?;
        }
        if !self.split.is_empty() {
            writeln!(f, "  split packed tensors:")?;
            for ((shape, parts), keys) in group_splits(&self.split) {
                writeln!(
                    f,
                    "    {} {shape:?} → {} parts ({})",
                    fold_keys(&keys).join(", "),
                    parts.len(),
                    parts.join(", ")
                )?;
            }
        }
        if !self.mismatched.is_empty() {
            writeln!(f, "  shape mismatch, model keeps its values:")?;
            for m in &self.mismatched {
                writeln!(f, "    {}", mismatch_line(m))?;
            }
        }
        if !self.missing.is_empty() {
            writeln!(
                f,
                "  missing in checkpoint: {}",
                fold_keys(&self.missing).join(", ")
            )?;
        }
        if !self.unexpected.is_empty() {
            writeln!(
                f,
                "  unexpected in checkpoint: {}",
                summarize(&self.unexpected)
            )?;
        }
        for (reason, ignored) in group_by(&self.ignored, |i| i.reason.as_str()) {
            let keys: Vec<&str> = ignored.iter().map(|i| i.key.as_str()).collect();
            writeln!(f, "  ignored ({reason}): {}", summarize(&keys))?;
        }
        for failure in &self.failures {
            writeln!(f, "  failed: {failure}")?;
        }
        for hint in &self.hints {
            writeln!(f, "  hint: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_ignore_case_order_depth_and_rnn_layer_suffixes() {
        assert_eq!(tokens("conv1_bn.weight"), tokens("conv1_BN.weight"));
        assert_eq!(
            tokens("lstm.layers.0.weight_ih"),
            tokens("lstm.weight_ih_l0")
        );
        assert_ne!(
            tokens("lstm.layers.0.weight_ih"),
            tokens("lstm.weight_ih_l1")
        );
        assert_ne!(tokens("conv1.weight"), tokens("conv2.weight"));
    }

    #[test]
    fn small_groups_are_named_not_counted() {
        let mut keys: Vec<String> = (0..12)
            .map(|i| format!("blocks.{i}.attn.qkv.weight"))
            .collect();
        keys.extend((0..12).map(|i| format!("blocks.{i}.mlp.fc{i}x.bias")));
        keys.push("embeddings.position_ids".into());
        let text = summarize(&keys);
        assert!(text.contains("embeddings.position_ids"), "{text}");
        assert!(!text.contains("embeddings.* (1)"), "{text}");
        assert!(text.contains("blocks.* (24)"), "{text}");
    }

    #[test]
    fn percentages_show_100_and_0_only_when_exact() {
        assert_eq!(crate::expect::percent(30, 32), "94 %");
        assert_eq!(crate::expect::percent(999, 1000), "99 %");
        assert_eq!(crate::expect::percent(1, 1000), "1 %");
        assert_eq!(crate::expect::percent(0, 3), "0 %");
        assert_eq!(crate::expect::percent(3, 3), "100 %");
    }
}
