//! `pretrain export CONFIG OUT.safetensors`: build a config's model, load its `pretrain`s, and
//! write every tensor back under PyTorch's names and layouts (packed tensors stacked again,
//! Linear weights transposed back, `num_batches_tracked` added), atomically.

use burn::prelude::*;
use burn_pretrain::PretrainExt;

use crate::cli::ExportArgs;
use crate::models::{self, AnyModel};
use crate::output;

pub fn run(args: ExportArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.out.extension().and_then(|e| e.to_str()) == Some("safetensors"),
        "{}: export writes safetensors; name the file *.safetensors",
        args.out.display()
    );
    output::ensure_not_input(&args.out, &models::config_inputs(&args.config)?)?;
    let device = Device::flex();
    let (model, _) = models::build(&args.config, &device, false)?;
    let count = match &model {
        AnyModel::Classifier(m) => m.save_pretrained(&args.out)?,
        AnyModel::Backbone(m) => m.save_pretrained(&args.out)?,
    };
    output::print(&format!(
        "wrote {count} tensors to {} (PyTorch names and layouts)\n",
        args.out.display()
    ))?;
    Ok(0)
}
