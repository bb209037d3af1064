//! `pretrain predict SOURCE IMAGE...`: a repository's model classifies images prepared as its
//! library prepares them; `pretrain preprocess SOURCE IMAGE... --output x.npy` writes the
//! prepared batch.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use burn_pretrain::source::FetchOptions;
use burn_pretrain_models::preprocess::{Class, prepare_images, top_k};
use burn_pretrain_models::repository::Repository;
use serde_json::json;

use crate::cli::{PredictArgs, PreprocessArgs};
use crate::{load, models, npy, output};

/// The softmax of each row of `[rows, classes]` logits, in f64 for the sums.
fn softmax_rows(logits: &[f32], classes: usize) -> Vec<Vec<f32>> {
    logits
        .chunks(classes)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            exp.iter().map(|e| (e / sum) as f32).collect()
        })
        .collect()
}

fn image_inputs(images: &[PathBuf]) -> Vec<(&'static str, PathBuf)> {
    images.iter().map(|p| ("image", p.clone())).collect()
}

pub fn run(args: PredictArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.top > 0, "--top 0: ask for at least one class");
    let device = load::device(&args.device)?;
    let (model, report) = models::build(&args.source, &device, false)?;
    tracing::info!("{report}");
    let repo = report
        .repositories()
        .iter()
        .find(|r| r.scope.is_empty())
        .map(|r| &r.repository)
        .with_context(|| {
            format!(
                "{}: predict needs a model repository (its config.json says how to prepare images)",
                args.source.display()
            )
        })?;
    let [_, h, w] = repo.data.input_size;
    if let Some(size) = model.input_size()
        && size != [h, w]
    {
        anyhow::bail!(
            "{}: the data config prepares {h}×{w} images, the model takes {}×{}",
            repo.config_file,
            size[0],
            size[1]
        );
    }
    let batch = prepare_images(&args.images, &repo.data)?;
    let (shape, logits) = model.forward(Tensor::from_data(batch, &device));
    let &[rows, classes] = shape.as_slice() else {
        anyhow::bail!(
            "{}: `{}` gives features of shape {shape:?}, not classes (its num_classes is 0)",
            args.source.display(),
            repo.architecture
        );
    };
    debug_assert_eq!(rows, args.images.len());
    let labels = repo.label_names.as_deref();
    let predictions: Vec<(&Path, Vec<Class>)> = args
        .images
        .iter()
        .zip(softmax_rows(&logits, classes))
        .map(|(image, p)| (image.as_path(), top_k(&p, args.top, labels)))
        .collect();
    if args.json {
        let predictions: Vec<_> = predictions
            .iter()
            .map(|(image, top)| json!({"image": image.display().to_string(), "top": top}))
            .collect();
        output::print_json(&json!({ "predictions": predictions }))?;
    } else {
        let mut text = String::new();
        for (image, top) in &predictions {
            text.push_str(&format!("{}\n", image.display()));
            for class in top {
                let name = class.label.clone().unwrap_or_default();
                text.push_str(&format!(
                    "  {:>7.4}  {:>5}  {name}\n",
                    class.probability, class.index
                ));
            }
        }
        output::print(&text)?;
    }
    Ok(0)
}

pub fn preprocess(args: PreprocessArgs) -> anyhow::Result<i32> {
    output::ensure_not_input(&args.output, &image_inputs(&args.images))?;
    let location = models::repository_location(&args.source)?;
    let repo = Repository::open(&location, &FetchOptions::default())
        .with_context(|| format!("repository {location}"))?;
    let batch = prepare_images(&args.images, &repo.data)?;
    let shape = batch.shape().to_vec();
    let values: Vec<f32> = batch.iter::<f32>().collect();
    npy::write_f32(&args.output, &shape, &values)
        .with_context(|| format!("writing {}", args.output.display()))?;
    output::print(&format!(
        "prepared {} images as {} asks ({}): {} {shape:?}\n",
        args.images.len(),
        repo.config_file,
        data_summary(&repo),
        args.output.display(),
    ))?;
    Ok(0)
}

fn data_summary(repo: &Repository) -> String {
    let d = &repo.data;
    format!(
        "{}×{}, crop_pct {}, {}, {}",
        d.input_size[1], d.input_size[2], d.crop_pct, d.crop_mode, d.interpolation
    )
}
