//! `pretrain inspect SOURCE`: a checkpoint's tensors, folded, with totals. Headers only.

use std::collections::BTreeMap;

use burn_pretrain::__cli::{fold_keys, natural_cmp};
use burn_pretrain::format::{DType, TensorEntry};
use burn_pretrain::view::CheckpointView;
use burn_pretrain::{Checkpoint, Pretrain, open_checkpoint};
use serde_json::json;

use crate::cli::InspectArgs;

/// The widest key column `inspect` pads to.
const MAX_WIDTH: usize = 100;
use crate::output;

pub fn run(args: InspectArgs) -> anyhow::Result<i32> {
    let spec = Pretrain::from(args.source.as_str()).with_ranged(args.ranged);
    let checkpoint = open_checkpoint(&spec)?;
    let shown = burn_pretrain::source::Location::parse(&args.source)?.to_string();
    let view = if args.raw {
        None
    } else {
        Some(CheckpointView::new(&checkpoint, spec.view())?)
    };
    let (tensors, steps): (Vec<(String, &TensorEntry)>, Vec<String>) = match &view {
        None => (
            checkpoint
                .entries()
                .iter()
                .map(|e| (e.key().to_string(), e))
                .collect(),
            Vec::new(),
        ),
        Some(view) => (
            view.entries().map(|(k, e)| (k.to_string(), e)).collect(),
            view.steps().iter().map(ToString::to_string).collect(),
        ),
    };
    if args.json {
        output::print_json(&to_json(&checkpoint, &shown, &tensors, &steps))?;
    } else {
        output::print(&to_text(&checkpoint, &shown, &tensors, &steps))?;
    }
    Ok(0)
}

fn totals(tensors: &[(String, &TensorEntry)]) -> (usize, BTreeMap<String, usize>) {
    let mut params = 0;
    let mut bytes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in tensors {
        params += e.num_elements();
        *bytes.entry(e.dtype().to_string()).or_default() += e.num_elements() * e.dtype().size();
    }
    (params, bytes)
}

fn to_json(
    ckpt: &Checkpoint,
    shown: &str,
    tensors: &[(String, &TensorEntry)],
    steps: &[String],
) -> serde_json::Value {
    let (params, bytes) = totals(tensors);
    json!({
        "source": shown,
        "format": ckpt.format(),
        "shards": ckpt.shards().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "metadata": ckpt.metadata().iter().cloned().collect::<BTreeMap<String, String>>(),
        "positional": ckpt.is_positional(),
        "view": steps,
        "tensors": tensors.iter().map(|(k, e)| json!({"key": k, "shape": e.shape(), "dtype": e.dtype()})).collect::<Vec<_>>(),
        "totals": {"tensors": tensors.len(), "parameters": params, "bytes_per_dtype": bytes},
    })
}

/// Keys fold together only when they share shape and dtype.
type Signature = (Vec<usize>, DType);

fn to_text(
    ckpt: &Checkpoint,
    shown: &str,
    tensors: &[(String, &TensorEntry)],
    steps: &[String],
) -> String {
    let mut out = match ckpt.shards().len() {
        0 => format!("{shown} ({})\n", ckpt.format()),
        n => format!("{shown} ({}, {n} shards)\n", ckpt.format()),
    };
    if !ckpt.metadata().is_empty() {
        let fields: Vec<String> = ckpt
            .metadata()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!("record: {}\n", fields.join(", ")));
    }
    if ckpt.is_positional() {
        out.push_str(
            "tensors by position: bincode stores no names; a load names them by the model's \
             parameters in burn's field order\n",
        );
    }
    for step in steps {
        out.push_str(&format!("view: {step}\n"));
    }
    // Fold keys that share shape and dtype; list the patterns in natural key order.
    let mut groups: Vec<(Signature, Vec<&str>)> = Vec::new();
    let mut slot: std::collections::HashMap<Signature, usize> = Default::default();
    for (k, e) in tensors {
        let sig = (e.shape().to_vec(), e.dtype());
        let i = *slot.entry(sig.clone()).or_insert_with(|| {
            groups.push((sig, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(k);
    }
    let mut lines: Vec<(String, String)> = Vec::new();
    for ((shape, dtype), keys) in &groups {
        for pattern in fold_keys(keys) {
            lines.push((pattern, format!("{shape:?} {dtype}")));
        }
    }
    lines.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    // Columns align up to a readable width; a longer key just pushes its line out (and a
    // width past u16 would make the formatter panic).
    let width = lines
        .iter()
        .map(|(p, _)| p.len())
        .max()
        .unwrap_or(0)
        .min(MAX_WIDTH);
    for (pattern, desc) in &lines {
        out.push_str(&format!("  {pattern:<width$}  {desc}\n"));
    }
    let (params, bytes) = totals(tensors);
    let bytes: Vec<String> = bytes
        .iter()
        .map(|(d, b)| format!("{d} {b} bytes"))
        .collect();
    out.push_str(&format!(
        "{} tensors, {params} parameters, {}\n",
        tensors.len(),
        bytes.join(", ")
    ));
    out
}
