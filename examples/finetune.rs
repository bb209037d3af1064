//! Fine-tuning from what was loaded, on `Autodiff<flex>`:
//!
//! ```text
//! cargo run --example finetune
//! cargo run --example finetune -- --save-adapter /tmp/vit_lora_trained
//! ```
//!
//! 1. The seed's classifier (`configs/finetune_resnet.yaml`): a ResNet backbone loaded from a
//!    checkpoint with `freeze: loaded`, a new 4-class head. Sixteen Adam steps on a small
//!    synthetic dataset: the loss falls, every loaded tensor (BatchNorm statistics included)
//!    is bit-identical afterwards, only the head changed.
//! 2. A timm ViT with a PEFT LoRA adapter attached (`configs/finetune_vit_lora.yaml`): only the
//!    adapter's factors and the head PEFT saved (`modules_to_save`) train. With
//!    `--save-adapter DIR` the trained adapter is written as a PEFT adapter directory, with
//!    the model's logits for timm's test image in `DIR/burn_logits.json`, which
//!    `tests/fixtures/peft/check_export.py` compares with PEFT's for the same adapter.
//!
//! Train and inference mode: on an `Autodiff` device a BatchNorm normalises with the batch's
//! statistics and updates its running ones, and Dropout drops — unless frozen: a layer whose
//! every tensor `freeze` froze has its training flag turned off too, so it uses the statistics
//! it loaded. `model.valid()` gives the inference model (running statistics, no Dropout).

use std::collections::HashSet;
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_examples::bundled_data;
use burn_pretrain_examples::finetune::{changed, lora_factors, snapshot, synthetic, train};
use burn_pretrain_models::{BACKBONES, Features, MODELS, Stage};

fn main() -> anyhow::Result<()> {
    burn_pretrain_examples::init_logging();
    let save_adapter = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, dir] if flag == "--save-adapter" => Some(dir.clone()),
        _ => anyhow::bail!("usage: finetune [--save-adapter DIR]"),
    };
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let device = Device::flex().autodiff();

    println!("── ResNet backbone, freeze: loaded, new head");
    let built = MODELS.build_from_file(configs.join("finetune_resnet.yaml"), &device)?;
    println!("{}", built.report);
    let loaded: HashSet<ParamId> = built
        .report
        .loads()
        .iter()
        .flat_map(|l| l.report.loaded_ids().iter().copied())
        .collect();
    let data = synthetic(16, 4, 32, &device);
    let before = snapshot(&built.model);
    let (trained, losses) = train(built.model, |m, x| m.forward(x), &data, 16, 1e-3);
    print_losses(&losses);
    let (changed_ids, _) = changed(&before, &snapshot(&trained));
    let loaded_changed = changed_ids.iter().filter(|id| loaded.contains(id)).count();
    println!(
        "{} tensors changed ({} of the {} loaded ones)",
        changed_ids.len(),
        loaded_changed,
        loaded.len()
    );
    anyhow::ensure!(loaded_changed == 0, "a frozen tensor changed");

    println!("\n── timm ViT with a PEFT LoRA adapter");
    let built = BACKBONES.build_from_file(configs.join("finetune_vit_lora.yaml"), &device)?;
    println!("{}", built.report);
    let model = built.model;
    let factors: HashSet<ParamId> = lora_factors(&model).into_iter().collect();
    let data = synthetic(10, 10, 224, &device);
    let logits = |m: &burn_pretrain_models::Backbone, x| match Stage::forward(m, Features::D4(x)) {
        Features::D2(logits) => logits,
        _ => unreachable!("a ViT with a head gives logits"),
    };
    let before = snapshot(&model);
    let (trained, losses) = train(model, logits, &data, 4, 1e-2);
    print_losses(&losses);
    let (changed_ids, _) = changed(&before, &snapshot(&trained));
    let others = changed_ids
        .iter()
        .filter(|id| !factors.contains(id))
        .count();
    println!(
        "{} tensors changed: {} LoRA factors, {others} others (the head in modules_to_save)",
        changed_ids.len(),
        changed_ids.len() - others
    );

    if let Some(dir) = save_adapter {
        let layers = trained.save_adapter(&dir, &["head"])?;
        let input = bundled_data("timm/vit_narrow_io.safetensors", "input")?;
        let inference = trained.valid();
        let x = Tensor::<4>::from_data(input, &Device::flex());
        let values: Vec<f32> = logits(&inference, x)
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        std::fs::write(
            Path::new(&dir).join("burn_logits.json"),
            serde_json::to_string(&values)?,
        )?;
        println!("wrote the trained adapter ({layers} layers) and burn_logits.json to {dir}");
    }
    Ok(())
}

fn print_losses(losses: &[f32]) {
    let shown: Vec<String> = losses.iter().map(|l| format!("{l:.3}")).collect();
    println!("loss per step: {}", shown.join(" → "));
}
