//! `LoadReport`: what a load did, as a value — text for people, JSON for machines, tracing
//! lines in the shape of essmc2's log.

//!
//! One file a job: the types and their accessors here, `build.rs` makes a report from a plan,
//! `hints.rs` the "did you mean" suggestions, `render.rs` the one text rendering that both
//! `Display` and [`LoadReport::log`] use, `fold.rs` the folding of repeated keys.

use burn::module::{ParamGroup, ParamId};
use serde::Serialize;

mod build;
pub(crate) mod fold;
mod hints;
mod render;

pub(crate) use fold::fold_keys;
pub use hints::{Hint, HintKind};

use crate::format::{Convention, DType, Format};
use crate::policy::PolicySource;
use crate::view::ViewStep;

/// A tensor whose shape differs between model and checkpoint; the model kept its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Mismatch {
    /// The checkpoint key (after the view).
    pub key: String,
    /// The model's shape, in the checkpoint's convention (Linear weights as `[out, in]`).
    pub model_shape: Vec<usize>,
    /// The stored shape.
    pub checkpoint_shape: Vec<usize>,
    /// Where the explicit policy that decided (`keep` or `error`) came from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<PolicySource>,
}

/// A tensor that a mismatch policy changed into the model's shape, then loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Adapted {
    /// The checkpoint key.
    pub key: String,
    /// Where the policy that applied came from.
    pub rule: PolicySource,
    /// The stored shape.
    pub checkpoint_shape: Vec<usize>,
    /// The model's shape (in the checkpoint's layout).
    pub model_shape: Vec<usize>,
    /// What was done (`adapted 3 → 1 input channels`).
    pub how: String,
}

/// A tensor loaded with a dtype conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Ignored {
    /// The key as stored in the file.
    pub key: String,
    /// Why it was left out.
    pub reason: String,
}

/// How much of one top-level subtree of the model was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SubtreeCoverage {
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
#[non_exhaustive]
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
    hints: Vec<Hint>,
    /// The fraction of the model's tensors that loaded.
    coverage: f64,
    /// Checkpoint tensors (after the view) that loaded into the model.
    checkpoint_used: usize,
    /// Checkpoint tensors (after the view) that the model or the checkpoint could use:
    /// loaded, mismatched, of a dtype the model cannot hold, and unexpected; ignored ones
    /// (left out on purpose) are not counted.
    checkpoint_total: usize,
    subtrees: Vec<SubtreeCoverage>,
    /// Mismatch rules that require the load to fail (`error`, or a policy that cannot apply).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
    /// Bytes of tensor data read from the checkpoint (0 for a dry run).
    bytes_read: u64,
    /// Of those, bytes mapped from their files rather than copied (the `mmap` option).
    #[serde(skip_serializing_if = "is_zero_u64")]
    bytes_mapped: u64,
    /// Every model tensor's checkpoint key, in model order.
    #[serde(skip)]
    keys: Vec<String>,
    /// The ids of the parameters (and buffers) this load filled.
    #[serde(skip)]
    loaded_params: Vec<ParamId>,
    /// The ids of the model's mapped tensors that kept their values (mismatched, missing).
    #[serde(skip)]
    kept_params: Vec<ParamId>,
    /// Checkpoint keys of the tensors frozen after the load (`freeze`), in model order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    frozen: Vec<String>,
    /// The PEFT adapter applied after the load, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    adapter: Option<AdapterReport>,
    /// What `quantize` did while loading, if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    quantized: Option<QuantizedReport>,
}

/// Parameters quantized while they loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QuantizedReport {
    /// The scheme: `q8s, blocks of 32, f16 scales`.
    pub scheme: String,
    /// Checkpoint keys of the quantized tensors, in model order.
    pub keys: Vec<String>,
    /// Chosen tensors left in float because the block does not divide their last axis.
    pub indivisible: Vec<String>,
    /// Their bytes in the model's float dtype.
    pub float_bytes: u64,
    /// Their bytes quantized (values and scales, from the scheme).
    pub quantized_bytes: u64,
}

/// What a PEFT LoRA adapter applied on top of a load did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AdapterReport {
    /// Where the adapter came from, as given.
    pub source: String,
    /// Merged into the weights (`true`) or attached as trainable burn LoRA adapters.
    pub merged: bool,
    /// The adapted layers: each base weight's checkpoint key with its rank and scale.
    pub layers: Vec<AdaptedLayer>,
    /// Checkpoint keys of the tensors `modules_to_save` replaced.
    pub replaced: Vec<String>,
}

/// One base weight a LoRA adapter changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AdaptedLayer {
    /// The base weight's checkpoint key (`blocks.0.attn.qkv.weight`).
    pub key: String,
    /// The model parameters it adapts (several for a packed projection).
    pub parts: Vec<String>,
    /// The adapter's rank.
    pub rank: usize,
    /// The scale of `B·A` (`alpha / r`, or `alpha / √r` with rsLoRA).
    pub scale: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl LoadReport {
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

    /// Of [`bytes_read`](Self::bytes_read), the bytes of tensors mapped from their files
    /// rather than copied ([`Pretrain::with_mmap`](crate::Pretrain::with_mmap)): the model
    /// holds the file's pages, read as it first touches them. 0 without `mmap`.
    pub fn bytes_mapped(&self) -> u64 {
        self.bytes_mapped
    }

    pub(crate) fn with_bytes_mapped(mut self, bytes: u64) -> Self {
        self.bytes_mapped = bytes;
        self
    }

    /// The naming convention the checkpoint was read with.
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// Whether this report comes from a plan only (no tensor was read, the model unchanged).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// What the view did to the keys.
    pub fn view(&self) -> &[ViewStep] {
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

    /// The fraction (0 to 1) of the model's tensors that loaded (1 for a model without
    /// tensors): the number [`Expect`](crate::Expect)'s `coverage` is checked against.
    pub fn coverage(&self) -> f64 {
        self.coverage
    }

    /// How many checkpoint tensors (after the view) loaded into the model.
    pub fn checkpoint_used(&self) -> usize {
        self.checkpoint_used
    }

    /// How many checkpoint tensors (after the view) the load considered: loaded, mismatched,
    /// of a dtype the model cannot hold, and unexpected (ignored ones are not counted).
    pub fn checkpoint_total(&self) -> usize {
        self.checkpoint_total
    }

    /// Both sides' coverage: `loaded 30/32 model tensors (94 %), used 30/30 checkpoint
    /// tensors (100 %)`. A model that loads completely from a checkpoint with more layers
    /// shows it on the second half.
    pub fn summary(&self) -> String {
        format!(
            "loaded {}/{} model tensors ({}), used {}/{} checkpoint tensors ({})",
            self.loaded.len(),
            self.total(),
            percent(self.loaded.len(), self.total()),
            self.checkpoint_used,
            self.checkpoint_total,
            percent(self.checkpoint_used, self.checkpoint_total)
        )
    }

    /// Why mismatch rules require the load to fail.
    pub fn failures(&self) -> &[String] {
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
    pub fn hints(&self) -> &[Hint] {
        &self.hints
    }

    /// Loaded/total tensors per top-level subtree, in model order (the per-subtree view of
    /// [`coverage`](Self::coverage)).
    pub fn subtrees(&self) -> &[SubtreeCoverage] {
        &self.subtrees
    }

    /// The burn [`ParamGroup`] of exactly the parameters and buffers this load filled: what
    /// `model.freeze_group(report.loaded_group())` freezes (parameter ids survive a load).
    pub fn loaded_group(&self) -> ParamGroup {
        ParamGroup::from_ids(self.loaded_params.clone())
    }

    /// The burn [`ParamGroup`] of the mapped parameters that kept their values (a new head).
    pub fn kept_group(&self) -> ParamGroup {
        ParamGroup::from_ids(self.kept_params.clone())
    }

    /// The ids of the parameters and buffers this load filled, in model order.
    pub fn loaded_ids(&self) -> &[ParamId] {
        &self.loaded_params
    }

    /// The ids of the mapped parameters that kept their values, in model order.
    pub fn kept_ids(&self) -> &[ParamId] {
        &self.kept_params
    }

    /// Checkpoint keys of the tensors frozen after the load (`freeze`), in model order.
    pub fn frozen(&self) -> &[String] {
        &self.frozen
    }

    pub(crate) fn with_frozen(mut self, frozen: Vec<String>) -> Self {
        self.frozen = frozen;
        self
    }

    /// What `quantize` did while loading, if asked.
    pub fn quantized(&self) -> Option<&QuantizedReport> {
        self.quantized.as_ref()
    }

    pub(crate) fn with_quantized(mut self, quantized: QuantizedReport) -> Self {
        self.quantized = Some(quantized);
        self
    }

    /// The PEFT adapter applied after the load, if any.
    pub fn adapter(&self) -> Option<&AdapterReport> {
        self.adapter.as_ref()
    }

    pub(crate) fn with_adapter(mut self, adapter: AdapterReport) -> Self {
        self.adapter = Some(adapter);
        self
    }

    /// Whether every model tensor was loaded and nothing was left unused.
    pub fn is_complete(&self) -> bool {
        self.mismatched.is_empty() && self.missing.is_empty() && self.unexpected.is_empty()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_show_100_and_0_only_when_exact() {
        assert_eq!(percent(30, 32), "94 %");
        assert_eq!(percent(999, 1000), "99 %");
        assert_eq!(percent(1, 1000), "1 %");
        assert_eq!(percent(0, 3), "0 %");
        assert_eq!(percent(3, 3), "100 %");
    }
}
