//! The Rust side of `scripts/bench_load.py`, which writes checkpoints with PyTorch and runs
//! PyTorch, burn-store and this crate side by side on the same files:
//!
//! ```text
//! cargo run --release --example bench_load -- SIDE MODEL CHECKPOINT REPS
//! ```
//!
//! SIDE is `ours` (`load_pretrained`), `ours-remote` (the same onto burn's remote device,
//! served by this process on loopback with flex behind it; each run also prints the bytes
//! sent and received, counted by a proxy), `ours-views` (`ours` with `transposed_views`:
//! Linear weights read as stored and held as transposed views), `ours-mmap` (`ours-views`
//! with `mmap`: those tensors ranges of each file's copy-on-write mapping, nothing read or
//! copied), `ours-q8` (the same with every Linear weight quantized
//! to Q8 while loading), `ours-check` (`plan_pretrained`: headers only),
//! `ours-sub` (a model of one block loaded with `sub_level` from a `linears` or `llama`
//! checkpoint), `burn-store` (`PytorchStore` for `.pth`, `SafetensorsStore` with PyTorch's
//! adapter for safetensors, one store per shard of a sharded checkpoint, all `allow_partial`)
//! or `copy-floor` (the checkpoint's bytes copied from the page cache into fresh memory by
//! every core: no model). A `-bf16` or `-f16` suffix (`ours-bf16`, `burn-store-bf16`) loads
//! into a model that holds bf16 or f16. `BENCH_DEVICE=wgpu` (a backend compiled in) puts the
//! model on that device instead of flex (`scripts/gpu_check.py`). MODEL is `resnet18`..`resnet152` (our ResNet, built lazily: no random
//! init), `linears:N` (N blocks of ViT-sized Linears, `[Linears]`) or `llama:N` (a
//! Llama-2-7B-wide `LlamaForCausalLM` of N decoder layers: 18 is 3.9 B parameters, 7.8 GB in
//! bf16; CHECKPOINT its `model.safetensors.index.json`).
//!
//! Prints one JSON object per run (`construct_s`, `load_s`, tensors loaded, bytes of tensor
//! data read) and a last one with the process's memory (`/proc/self/status`, KiB): resident
//! set before the first run and its peak.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn_pretrain::{PretrainExt, Pretrainable};
use burn_pretrain_models::ResNetConfig;
use burn_store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use serde_json::json;

/// One transformer block's Linears at ViT-L/16 width (1024, MLP 4096), as PyTorch names them.
#[derive(Module, Debug, Pretrainable)]
struct LinearBlock {
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// `blocks.{i}.{qkv,proj,fc1,fc2}`: the bulk of a ViT's bytes, without the attention maths.
#[derive(Module, Debug, Pretrainable)]
struct Linears {
    blocks: Vec<LinearBlock>,
}

fn block(device: &Device) -> LinearBlock {
    let linear = |i, o| LinearConfig::new(i, o).init(device);
    LinearBlock {
        qkv: linear(1024, 3072),
        proj: linear(1024, 1024),
        fc1: linear(1024, 4096),
        fc2: linear(4096, 1024),
    }
}

/// Llama-2-7B widths (hidden 4096, MLP 11008, vocabulary 32000), as transformers names them.
const HIDDEN: usize = 4096;
const MLP: usize = 11008;
const VOCAB: usize = 32000;

#[derive(Module, Debug, Pretrainable)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
}

#[derive(Module, Debug, Pretrainable)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// One decoder layer of a Llama: its weights only (`model.layers.N.*`).
#[derive(Module, Debug, Pretrainable)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

#[derive(Module, Debug, Pretrainable)]
struct LlamaModel {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
}

/// transformers' `LlamaForCausalLM` keys: `model.…` and `lm_head.weight`.
#[derive(Module, Debug, Pretrainable)]
struct Llama {
    model: LlamaModel,
    lm_head: Linear,
}

fn decoder_layer(device: &Device) -> DecoderLayer {
    let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
    DecoderLayer {
        self_attn: Attention {
            q_proj: linear(HIDDEN, HIDDEN),
            k_proj: linear(HIDDEN, HIDDEN),
            v_proj: linear(HIDDEN, HIDDEN),
            o_proj: linear(HIDDEN, HIDDEN),
        },
        mlp: Mlp {
            gate_proj: linear(HIDDEN, MLP),
            up_proj: linear(HIDDEN, MLP),
            down_proj: linear(MLP, HIDDEN),
        },
        input_layernorm: RmsNormConfig::new(HIDDEN).init(device),
        post_attention_layernorm: RmsNormConfig::new(HIDDEN).init(device),
    }
}

fn llama(layers: usize, device: &Device) -> Llama {
    Llama {
        model: LlamaModel {
            embed_tokens: EmbeddingConfig::new(VOCAB, HIDDEN).init(device),
            layers: (0..layers).map(|_| decoder_layer(device)).collect(),
            norm: RmsNormConfig::new(HIDDEN).init(device),
        },
        lm_head: LinearConfig::new(HIDDEN, VOCAB)
            .with_bias(false)
            .init(device),
    }
}

/// The shard files of a sharded checkpoint's `*.index.json` (its `weight_map`'s values, each
/// once, beside the index), or the file itself.
fn shards(path: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let path = std::path::Path::new(path);
    if !path.to_string_lossy().ends_with(".index.json") {
        return Ok(vec![path.to_path_buf()]);
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let mut files: Vec<String> = index["weight_map"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{}: no weight_map", path.display()))?
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The floor any loader into fresh memory pays: every byte of the checkpoint's files copied
/// from the page cache (positional reads) into freshly allocated buffers, all cores at once,
/// in pieces of 64 MiB. Returns the bytes copied; the buffers are dropped before it returns.
fn copy_floor(path: &str) -> anyhow::Result<u64> {
    use std::os::unix::fs::FileExt;
    const PIECE: u64 = 64 << 20;
    let mut pieces = Vec::new();
    for file in shards(path)? {
        let len = std::fs::metadata(&file)?.len();
        let handle = std::sync::Arc::new(std::fs::File::open(&file)?);
        let mut at = 0;
        while at < len {
            pieces.push((handle.clone(), at, PIECE.min(len - at)));
            at += PIECE;
        }
    }
    let total: u64 = pieces.iter().map(|p| p.2).sum();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut held: Vec<Vec<u8>> = Vec::new();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<Vec<Vec<u8>>> {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((file, at, len)) = pieces.get(i) else {
                            return Ok(mine);
                        };
                        // Zeroed by the kernel as pages are first touched (calloc of a
                        // fresh mapping), as any loader's fresh memory is: no pass of ours;
                        // in huge pages where Linux has them (as burn-pretrain asks too).
                        let mut buffer = vec![0u8; *len as usize];
                        huge_pages(&mut buffer);
                        file.read_exact_at(&mut buffer, *at)?;
                        mine.push(buffer);
                    }
                })
            })
            .collect();
        for worker in workers {
            let mine = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a copy thread panicked"))??;
            held.extend(mine);
        }
        Ok(())
    })?;
    drop(held);
    Ok(total)
}

/// Mark the 2 MiB-aligned interior of a fresh, untouched buffer as eligible for transparent
/// huge pages (Linux; advisory).
fn huge_pages(buffer: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (buffer.as_mut_ptr() as usize).next_multiple_of(HUGE);
        let end = (buffer.as_mut_ptr() as usize + buffer.len()) / HUGE * HUGE;
        if end > start {
            // SAFETY: `start..end` lies inside `buffer`, which this function borrows mutably;
            // the advice never changes its contents.
            #[allow(unsafe_code)]
            let _ = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// torchvision's `downsample.0` / `downsample.1` are our ResNet's `downsample.conv` /
/// `downsample.bn` (a `#[pretrain(rename)]` tells burn-pretrain; burn-store is told here).
fn downsample() -> KeyRemapper {
    KeyRemapper::new()
        .add_pattern(r"\.downsample\.0\.", ".downsample.conv.")
        .and_then(|r| r.add_pattern(r"\.downsample\.1\.", ".downsample.bn."))
        .unwrap_or_default()
}

/// A `/proc/self/status` field in KiB (Linux), or 0 elsewhere.
fn status_kib(field: &str) -> u64 {
    proc_kib("/proc/self/status", field)
}

/// A field in KiB of a `/proc` file of this process (Linux), or 0 elsewhere.
fn proc_kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Load `path` into `model` one way; (tensors loaded, bytes of tensor data read, or 0 where
/// the side does not say).
fn load<M>(side: &str, model: M, path: &str) -> anyhow::Result<(M, usize, u64)>
where
    M: Pretrainable + Module + Clone,
{
    Ok(match side {
        "ours" => {
            let (model, report) = model.load_pretrained(path)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-q8" => {
            // Every Linear weight quantized while loading (Q8, blocks of 32, f16 scales).
            let spec = burn_pretrain::Pretrain::from_path(path).with_quantize(
                burn_pretrain::quantize::Quantize::new(burn_pretrain::quantize::Value::Q8s),
            );
            let (model, report) = model.load_pretrained(spec)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-views" => {
            // Transposed weights read as stored, held as transposed views.
            let spec = burn_pretrain::Pretrain::from_path(path).with_transposed_views(true);
            let (model, report) = model.load_pretrained(spec)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-mmap" => {
            // Transposed views, and every tensor loaded as stored a range of its shard's
            // copy-on-write mapping: nothing read until the model touches it.
            let spec = burn_pretrain::Pretrain::from_path(path)
                .with_transposed_views(true)
                .with_mmap(true);
            let (model, report) = model.load_pretrained(spec)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "ours-check" => {
            let report = model.plan_pretrained(path)?;
            (model, report.loaded().len(), report.bytes_read())
        }
        "burn-store" if path.ends_with(".index.json") => {
            // burn-store reads one file per store: every shard in turn, each partial.
            let mut model = model;
            let mut applied = 0;
            for shard in shards(path)? {
                let mut store = SafetensorsStore::from_file(shard)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true)
                    .skip_enum_variants(true);
                applied += model.load_from(&mut store)?.applied.len();
            }
            (model, applied, 0)
        }
        "burn-store" => {
            let mut model = model;
            let applied = if path.ends_with(".safetensors") {
                let mut store = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true)
                    .skip_enum_variants(true)
                    .remap(downsample());
                model.load_from(&mut store)?.applied.len()
            } else {
                let mut store = PytorchStore::from_file(path)
                    .allow_partial(true)
                    .skip_enum_variants(true)
                    .remap(downsample());
                model.load_from(&mut store)?.applied.len()
            };
            (model, applied, 0)
        }
        other => anyhow::bail!("unknown side `{other}`"),
    })
}

/// When a load began and ended, tensors loaded, tensor bytes read and the resident set (KiB)
/// with the loaded model alive.
type Timed = (Instant, Instant, usize, u64, u64);

/// Load `path` into `model` one way (see [`load`]), timed; the model is dropped after.
fn timed<M>(side: &str, model: M, path: &str, device: &Device) -> anyhow::Result<Timed>
where
    M: Pretrainable + Module + Clone,
{
    let built = Instant::now();
    let (model, loaded, bytes) = load(side, model, path)?;
    // Done when the device has it (a remote device's server, too).
    device.sync()?;
    let done = Instant::now();
    let rss = status_kib("VmRSS:");
    if std::env::var_os("BENCH_HUGE").is_some() {
        eprintln!(
            "AnonHugePages {} KiB",
            proc_kib("/proc/self/smaps_rollup", "AnonHugePages:")
        );
    }
    drop(model);
    Ok((built, done, loaded, bytes, rss))
}

/// Load the checkpoint's `sub_level` into `model` (one block of a larger checkpoint), timed.
fn timed_sub<M>(model: M, path: &str, sub_level: String) -> anyhow::Result<Timed>
where
    M: Pretrainable + Module + Clone,
{
    let built = Instant::now();
    let spec = burn_pretrain::Pretrain::from_path(path).with_sub_level(sub_level);
    let (model, report) = model.load_pretrained(spec)?;
    let done = Instant::now();
    let rss = status_kib("VmRSS:");
    drop(model);
    Ok((built, done, report.loaded().len(), report.bytes_read(), rss))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [side, model, path, reps] = args.as_slice() else {
        anyhow::bail!("usage: bench_load SIDE MODEL CHECKPOINT REPS");
    };
    let reps: usize = reps.parse()?;
    // BENCH_DEVICE=wgpu (or another backend compiled in): the model on that device, as
    // `scripts/gpu_check.py` runs it on a GPU machine; flex otherwise.
    let mut device = match std::env::var("BENCH_DEVICE") {
        Ok(name) => burn_pretrain_examples::devices::device(&name)
            .ok_or_else(|| anyhow::anyhow!("BENCH_DEVICE={name}: not a backend of this build"))?,
        Err(_) => Device::flex(),
    };
    // `ours-remote`: `ours` onto burn's remote device, served by this process on loopback
    // (flex behind it) through a proxy that counts the bytes each way.
    #[cfg(feature = "remote")]
    let proxy = if side == "ours-remote" {
        let proxy = burn_pretrain_examples::remote::CountingProxy::start(
            &burn_pretrain_examples::remote::serve(Device::flex())?,
        )?;
        device = burn_pretrain_examples::remote::connect(proxy.url())?;
        Some(proxy)
    } else {
        None
    };
    let side = if side == "ours-remote" { "ours" } else { side };
    // `…-bf16` / `…-f16`: a model that holds bf16 / f16 (the device's float dtype), loaded
    // as `…`.
    let (side, dtype) = match side.rsplit_once('-') {
        Some((side, "bf16")) => (side, Some(burn::tensor::FloatDType::BF16)),
        Some((side, "f16")) => (side, Some(burn::tensor::FloatDType::F16)),
        _ => (side, None),
    };
    if let Some(dtype) = dtype {
        device.configure((dtype, burn::tensor::IntDType::I64))?;
    }
    let baseline = status_kib("VmRSS:");
    for run in 0..reps {
        #[cfg(feature = "remote")]
        let counted = proxy.as_ref().map(|p| (p.sent(), p.received()));
        let start = Instant::now();
        let (built, done, loaded, bytes, rss_loaded) = if side == "copy-floor" {
            let built = Instant::now();
            let bytes = copy_floor(path)?;
            (built, Instant::now(), 0, bytes, 0)
        } else if let Some(n) = model.strip_prefix("llama:") {
            if side == "ours-sub" {
                // One decoder layer, the checkpoint's last: only its bytes are read.
                let last = n.parse::<usize>()? - 1;
                timed_sub(decoder_layer(&device), path, format!("model.layers.{last}"))?
            } else {
                timed(side, llama(n.parse()?, &device), path, &device)?
            }
        } else if let Some(n) = model.strip_prefix("linears:") {
            if side == "ours-sub" {
                // One block, from the checkpoint's last block: only its bytes are read.
                let last = n.parse::<usize>()? - 1;
                timed_sub(block(&device), path, format!("blocks.{last}"))?
            } else {
                let blocks = (0..n.parse()?).map(|_| block(&device)).collect();
                timed(side, Linears { blocks }, path, &device)?
            }
        } else {
            let depth: usize = model.trim_start_matches("resnet").parse()?;
            timed(side, ResNetConfig::new(depth).init(&device)?, path, &device)?
        };
        #[allow(unused_mut)]
        let mut row = json!({
            "run": run,
            "construct_s": (built - start).as_secs_f64(),
            "load_s": (done - built).as_secs_f64(),
            "loaded": loaded,
            "bytes_read": bytes,
            // The resident set with the loaded model alive.
            "rss_loaded_kib": rss_loaded,
        });
        #[cfg(feature = "remote")]
        if let (Some(proxy), Some((sent, received))) = (&proxy, counted) {
            row["bytes_sent"] = json!(proxy.sent() - sent);
            row["bytes_received"] = json!(proxy.received() - received);
        }
        println!("{row}");
    }
    println!(
        "{}",
        json!({
            "baseline_rss_kib": baseline,
            "peak_rss_kib": status_kib("VmHWM:"),
            "rss_anon_kib": status_kib("RssAnon:"),
            "rss_file_kib": status_kib("RssFile:"),
        })
    );
    Ok(())
}
