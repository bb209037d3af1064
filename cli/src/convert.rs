//! `pretrain convert SOURCE OUT`: write the viewed (and remapped) tensors as burnpack (`.bpk`)
//! or safetensors, chosen by OUT's extension; atomically (temp file + rename).

use std::path::Path;

use anyhow::Context;
use burn_pretrain::error::Cause;

use burn_pretrain::format::TensorEntry;
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
    if let Some(quantize) = &args.quantize {
        return quantized(&args, spec, quantize);
    }
    let checkpoint = open_checkpoint(&spec)?;
    anyhow::ensure!(
        !checkpoint.is_positional(),
        "{}: a bincode burn record stores no names, so converting it alone would write `#0`, \
         `#1`, …: load it into the burn 0.22 module that matches the one that saved it \
         (`load_pretrained` names its tensors by the module's fields, in order) and save that \
         with burn-store's `BurnpackStore`",
        args.source
    );
    // Every file read: the checkpoint (or its index and shards; a remote one's cache entry)
    // and the config.
    let mut inputs: Vec<(&str, std::path::PathBuf)> = checkpoint
        .shards()
        .iter()
        .map(std::path::PathBuf::as_path)
        .chain(checkpoint.entries().iter().map(|e| e.file()))
        .map(|p| ("checkpoint", p.to_path_buf()))
        .collect();
    inputs.extend(args.config.iter().map(|c| ("config", c.clone())));
    if let Ok(burn_pretrain::source::Location::Local(path)) =
        burn_pretrain::source::Location::parse(&args.source)
    {
        inputs.push(("checkpoint", path));
    }
    inputs.sort();
    inputs.dedup();
    output::ensure_not_input(&args.out, &inputs)?;
    let view = CheckpointView::new(&checkpoint, spec.view())?;
    let keep: Option<Vec<String>> = match &args.config {
        Some(config) => {
            let device = burn::prelude::Device::flex();
            let model = models::build_without_pretrain(config, &device)?;
            Some(model.plan(spec.clone())?.loaded().to_vec())
        }
        None => None,
    };
    let tensors: Vec<(String, TensorEntry)> = view
        .entries()
        .filter(|(key, _)| keep.as_ref().is_none_or(|k| k.iter().any(|x| x == key)))
        .map(|(key, entry)| (key.to_string(), entry.clone()))
        .collect();
    anyhow::ensure!(
        !tensors.is_empty(),
        "nothing to write: the view of {} is empty",
        args.source
    );
    if ext == "bpk" {
        fits_burnpack(&tensors).with_context(|| format!("{}", args.out.display()))?;
    }
    let count = tensors.len();
    // One tensor in memory at a time: each is read when the writer reaches it.
    burn_pretrain::__cli::write_atomic(&args.out, |tmp| {
        if ext == "safetensors" {
            write_safetensors(tmp, &tensors, &args.source)?;
        } else {
            write_burnpack(tmp, &tensors, &args.source, checkpoint.convention())?;
        }
        // Not kept if the checkpoint changed while it was copied.
        checkpoint.unchanged().map_err(Cause::from)
    })?;
    output::print(&format!(
        "wrote {count} tensors to {}\n",
        args.out.display()
    ))?;
    Ok(0)
}

/// `--quantize`: the config's model loaded from the source with every chosen parameter
/// quantized while it loads, then saved as burn holds it (burn-store's burnpack writer).
fn quantized(args: &ConvertArgs, spec: Pretrain, quantize: &str) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.out.extension().is_some_and(|e| e == "bpk"),
        "{}: --quantize writes a burnpack (.bpk): safetensors has no quantized tensors burn reads",
        args.out.display()
    );
    let options = parse_quantize(quantize)?;
    let config = args
        .config
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--quantize needs --config: the model decides which tensors are Linear weights and how burn lays them out"))?;
    let mut inputs = models::config_inputs(config)?;
    if let Ok(burn_pretrain::source::Location::Local(path)) =
        burn_pretrain::source::Location::parse(&args.source)
    {
        inputs.push(("checkpoint", path));
    }
    output::ensure_not_input(&args.out, &inputs)?;
    let device = burn::prelude::Device::flex();
    let model = models::build_without_pretrain(config, &device)?;
    let (model, report) = model.load(spec.with_quantize(options))?;
    burn_pretrain::__cli::write_atomic(&args.out, |tmp| {
        model.save_burnpack(tmp).map_err(Cause::from)
    })?;
    let summary = match report.quantized() {
        Some(q) => format!(
            "{} quantized ({}; {} → {} bytes){}",
            q.keys.len(),
            q.scheme,
            q.float_bytes,
            q.quantized_bytes,
            if q.indivisible.is_empty() {
                String::new()
            } else {
                format!(
                    ", left in float (the block does not divide their last axis): {}",
                    q.indivisible.join(", ")
                )
            }
        ),
        None => "none quantized".to_string(),
    };
    output::print(&format!(
        "loaded {} tensors from {}, {summary}; wrote the model to {}\n",
        report.loaded().len(),
        args.source,
        args.out.display()
    ))?;
    Ok(0)
}

/// `q8s` (a value type, the other settings their defaults) or the `quantize` map as JSON.
fn parse_quantize(text: &str) -> anyhow::Result<burn_pretrain::quantize::Quantize> {
    let value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
    } else {
        serde_json::from_value(serde_json::json!({ "value": text }))
    };
    value.with_context(|| {
        format!("--quantize {text}: expected q8s, q4s, q2s, q8f, q4f, q2f or a JSON map {{\"value\": …, \"block\": …, \"scale\": …, \"params\": …}}")
    })
}

/// The bytes of `entry`, or an error naming the tensor and the source.
fn read(entry: &TensorEntry, source: &str) -> Result<Vec<u8>, Cause> {
    entry
        .read()
        .map_err(|e| format!("reading `{}` from {source}: {e}", entry.key()).into())
}

/// What burn-pack's reader refuses (more than `MAX_TENSOR_COUNT` tensors, one larger than
/// `MAX_TENSOR_SIZE`) is refused before writing, not written and then unreadable.
fn fits_burnpack(tensors: &[(String, TensorEntry)]) -> anyhow::Result<()> {
    anyhow::ensure!(
        tensors.len() <= burn_pack::MAX_TENSOR_COUNT,
        "a burnpack holds at most {} tensors (burn-pack's reader refuses more), this view has {}; write .safetensors instead",
        burn_pack::MAX_TENSOR_COUNT,
        tensors.len()
    );
    for (key, entry) in tensors {
        let bytes = entry.num_elements() * entry.dtype().size();
        anyhow::ensure!(
            bytes <= burn_pack::MAX_TENSOR_SIZE,
            "`{key}` has {bytes} bytes; a burnpack tensor holds at most {} (burn-pack's reader refuses more); write .safetensors instead",
            burn_pack::MAX_TENSOR_SIZE
        );
    }
    Ok(())
}

/// A stored tensor as a safetensors view whose bytes are read when serialised. `View::data`
/// cannot fail, so a failed read is kept in `failed` (and zeros of the right length written,
/// in a temporary file that the error then discards).
struct Lazy<'a> {
    entry: &'a TensorEntry,
    source: &'a str,
    failed: &'a std::sync::Mutex<Option<Cause>>,
}

impl safetensors::View for Lazy<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::from(self.entry.dtype())
    }

    fn shape(&self) -> &[usize] {
        self.entry.shape()
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        match read(self.entry, self.source) {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert(e);
                vec![0; self.data_len()].into()
            }
        }
    }

    fn data_len(&self) -> usize {
        self.entry.num_elements() * self.entry.dtype().size()
    }
}

fn write_safetensors(
    path: &Path,
    tensors: &[(String, TensorEntry)],
    source: &str,
) -> Result<(), Cause> {
    let failed = std::sync::Mutex::new(None);
    let views = tensors.iter().map(|(key, entry)| {
        (
            key.clone(),
            Lazy {
                entry,
                source,
                failed: &failed,
            },
        )
    });
    let metadata =
        std::collections::HashMap::from([("producer".to_string(), "burn-pretrain".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)?;
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_burnpack(
    path: &Path,
    tensors: &[(String, TensorEntry)],
    source: &str,
    convention: burn_pretrain::format::Convention,
) -> Result<(), Cause> {
    let tensors = tensors
        .iter()
        .map(|(key, entry)| {
            let (entry, source) = (entry.clone(), source.to_string());
            burn_pack::Tensor::deferred(
                key.clone(),
                entry.dtype().to_burn_dtype(),
                entry.shape().to_vec(),
                None,
                entry.num_elements() * entry.dtype().size(),
                move || {
                    read(&entry, &source)
                        .map(burn_pack::Bytes::from_bytes_vec)
                        .map_err(|e| burn_pack::Error::IoError(burn_pretrain::error::chain(&*e)))
                },
            )
        })
        .collect();
    // Keys keep the checkpoint's naming: PyTorch's is marked (the loader reads the mark); a
    // burn record's keys are burn's own paths, a plain burnpack that burn's `BurnpackStore`
    // loads as it loads its own.
    let writer = burn_pack::Writer::new(tensors);
    let writer = match convention {
        burn_pretrain::format::Convention::Pytorch => writer.with_metadata("convention", "pytorch"),
        burn_pretrain::format::Convention::Burn => writer,
    };
    writer
        .with_metadata("producer", "burn-pretrain")
        .overwrite(true)
        .auto_extension(false)
        .write_to_file(path)
        .map_err(|e| format!("burnpack: {e}").into())
}
