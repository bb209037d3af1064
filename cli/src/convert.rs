//! `pretrain convert SOURCE OUT`: write the viewed (and remapped) tensors as burnpack (`.bpk`)
//! or safetensors, chosen by OUT's extension; atomically (temp file + rename).

use std::path::Path;

use anyhow::Context;
use burn_pretrain::error::Cause;

use burn_pretrain::view::CheckpointView;
use burn_pretrain::{Pretrain, open_checkpoint};

use crate::cli::ConvertArgs;
use crate::models;
use crate::output;

pub fn run(args: ConvertArgs) -> anyhow::Result<i32> {
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        matches!(ext.as_str(), "bpk" | "safetensors"),
        "{}: choose the output format by extension: .bpk (burnpack) or .safetensors",
        args.out.display()
    );
    let mut spec = Pretrain::from(args.source.as_str());
    if let Some(s) = &args.sub_level {
        spec = spec.with_sub_level(s.clone());
    }
    for r in &args.remap {
        let (from, to) = r
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--remap {r}: expected FROM=TO"))?;
        spec = spec.with_remap(from, to);
    }
    let checkpoint = open_checkpoint(&spec)?;
    let view = CheckpointView::new(&checkpoint, &spec)?;
    let keep: Option<Vec<String>> = match &args.config {
        Some(config) => {
            let device = burn::prelude::Device::flex();
            let model = models::build_without_pretrain(config, &device)?;
            Some(model.plan(spec.clone())?.loaded().to_vec())
        }
        None => None,
    };
    let mut tensors = Vec::new();
    for (key, entry) in view.entries() {
        if keep.as_ref().is_some_and(|k| !k.iter().any(|x| x == key)) {
            continue;
        }
        let bytes = entry
            .read()
            .with_context(|| format!("reading `{}` from {}", entry.key(), args.source))?;
        tensors.push((
            key.to_string(),
            entry.shape().to_vec(),
            entry.dtype(),
            bytes,
        ));
    }
    anyhow::ensure!(
        !tensors.is_empty(),
        "nothing to write: the view of {} is empty",
        args.source
    );
    let count = tensors.len();
    burn_pretrain::export::write_atomic(&args.out, |tmp| {
        if ext == "safetensors" {
            write_safetensors(tmp, &tensors)
        } else {
            write_burnpack(tmp, tensors)
        }
    })?;
    output::print(&format!(
        "wrote {count} tensors to {}\n",
        args.out.display()
    ))?;
    Ok(0)
}

type Tensor = (String, Vec<usize>, burn_pretrain::format::DType, Vec<u8>);

fn write_safetensors(path: &Path, tensors: &[Tensor]) -> Result<(), Cause> {
    let mut views = Vec::with_capacity(tensors.len());
    for (key, shape, dtype, bytes) in tensors {
        let dtype = burn_pretrain::format::safetensors_dtype(*dtype);
        views.push((
            key.clone(),
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)?,
        ));
    }
    let metadata =
        std::collections::HashMap::from([("producer".to_string(), "burn-pretrain".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)?;
    Ok(())
}

fn write_burnpack(path: &Path, tensors: Vec<Tensor>) -> Result<(), Cause> {
    let tensors = tensors
        .into_iter()
        .map(|(key, shape, dtype, bytes)| {
            burn_pack::Tensor::new(
                key,
                dtype.to_burn_dtype(),
                shape,
                None,
                burn_pack::Bytes::from_bytes_vec(bytes),
            )
        })
        .collect();
    // Keys keep the checkpoint's (PyTorch) naming; the loader reads this mark.
    burn_pack::Writer::new(tensors)
        .with_metadata("convention", "pytorch")
        .with_metadata("producer", "burn-pretrain")
        .overwrite(true)
        .auto_extension(false)
        .write_to_file(path)
        .map_err(|e| format!("burnpack: {e}").into())
}
