//! Building a config's model (classifier or backbone), and summarising what its loads did
//! per subtree.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_models::{
    BACKBONES, Backbone, BuildReport, DefaultClassifier, Features, MODELS, Stage, read_config_file,
};
use serde::Serialize;

/// A model any built-in registry can build from a config root.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyModel {
    Classifier(DefaultClassifier),
    Backbone(Backbone),
}

/// Build (or, with `dry_run`, plan) the model of the config file at `path`.
/// The files a command reading the config at `path` reads: the config and every local
/// checkpoint its `pretrain`s name.
pub fn config_inputs(path: &Path) -> anyhow::Result<Vec<(&'static str, std::path::PathBuf)>> {
    if repository(path).is_some() {
        return Ok(vec![("repository", path.to_path_buf())]);
    }
    let config = read_config_file(path)?;
    let mut inputs = vec![("config", path.to_path_buf())];
    inputs.extend(
        burn_pretrain_models::local_pretrain_paths(&config)
            .into_iter()
            .map(|p| ("checkpoint", p)),
    );
    Ok(inputs)
}

pub fn build(
    path: &Path,
    device: &Device,
    dry_run: bool,
) -> anyhow::Result<(AnyModel, BuildReport)> {
    let config = match repository(path) {
        Some(config) => config,
        None => read_config_file(path)?,
    };
    build_value(&config, path, device, dry_run)
}

/// The repository a predict-style command reads: `path` itself, or the `from` at the root
/// of the config file at `path`.
pub fn repository_location(path: &Path) -> anyhow::Result<String> {
    let config = match repository(path) {
        Some(config) => config,
        None => read_config_file(path)?,
    };
    match config.get("from").and_then(|f| f.as_str()) {
        Some(from) => Ok(from.to_string()),
        None => anyhow::bail!(
            "{}: not a model repository (a directory with config.json, or a URI such as hf://org/name), nor a config with `from` at its root",
            path.display()
        ),
    }
}

/// A model repository where a config file is expected: a URI (`hf://org/name`) or a
/// directory holding `config.json`, as the config `{"from": ...}`.
fn repository(path: &Path) -> Option<serde_json::Value> {
    let text = path.to_str()?;
    (text.contains("://") || path.join("config.json").is_file())
        .then(|| serde_json::json!({ "from": text }))
}

/// Build (or plan) from a config already read from `path`.
fn build_value(
    config: &serde_json::Value,
    path: &Path,
    device: &Device,
    dry_run: bool,
) -> anyhow::Result<(AnyModel, BuildReport)> {
    let ty = config
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let context = || format!("config {}", path.display());
    if MODELS.names().contains(&ty) {
        let built = if dry_run {
            MODELS.plan(config, device)
        } else {
            MODELS.build(config, device)
        }
        .with_context(context)?;
        Ok((AnyModel::Classifier(built.model), built.report))
    } else if BACKBONES.names().contains(&ty) || (ty.is_empty() && config.get("from").is_some()) {
        let built = if dry_run {
            BACKBONES.plan(config, device)
        } else {
            BACKBONES.build(config, device)
        }
        .with_context(context)?;
        Ok((AnyModel::Backbone(built.model), built.report))
    } else {
        let mut known: Vec<&str> = MODELS.names();
        known.extend(BACKBONES.names());
        anyhow::bail!(
            "config {}: type: unknown model type `{ty}`; registered: {}",
            path.display(),
            known.join(", ")
        )
    }
}

/// Build the model of a config file with its `pretrain`s removed (fresh parameters).
pub fn build_without_pretrain(path: &Path, device: &Device) -> anyhow::Result<AnyModel> {
    let mut config = read_config_file(path)?;
    burn_pretrain_models::strip_pretrain(&mut config);
    Ok(build_value(&config, path, device, true)?.0)
}

impl AnyModel {
    /// Plan loading `spec` into this model (headers only).
    pub fn plan(
        &self,
        spec: burn_pretrain::Pretrain,
    ) -> burn_pretrain::Result<burn_pretrain::LoadReport> {
        match self {
            AnyModel::Classifier(m) => m.plan_pretrained(spec),
            AnyModel::Backbone(m) => m.plan_pretrained(spec),
        }
    }

    /// Load `spec` into this model: the loaded model and the report.
    pub fn load(
        self,
        spec: burn_pretrain::Pretrain,
    ) -> burn_pretrain::Result<(Self, burn_pretrain::LoadReport)> {
        Ok(match self {
            AnyModel::Classifier(m) => {
                let (m, report) = m.load_pretrained(spec)?;
                (AnyModel::Classifier(m), report)
            }
            AnyModel::Backbone(m) => {
                let (m, report) = m.load_pretrained(spec)?;
                (AnyModel::Backbone(m), report)
            }
        })
    }

    /// Save the model's parameters (burn paths and layout, quantized ones as burn holds them)
    /// to `path` as a burnpack, with burn-store's `BurnpackStore`: what burn 0.22 loads.
    pub fn save_burnpack(&self, path: &Path) -> Result<(), burn_pack::Error> {
        use burn_store::ModuleSnapshot;
        let mut store = burn_store::BurnpackStore::from_file(path)
            .auto_extension(false)
            .overwrite(true);
        match self {
            AnyModel::Classifier(m) => m.save_into(&mut store),
            AnyModel::Backbone(m) => m.save_into(&mut store),
        }
    }

    /// Every tensor key of the model (PyTorch naming).
    pub fn keys(&self) -> Vec<String> {
        match self {
            AnyModel::Classifier(m) => m.pretrain_keys(),
            AnyModel::Backbone(m) => m.pretrain_keys(),
        }
    }

    /// The image channels the model takes.
    pub fn input_channels(&self) -> Option<usize> {
        match self {
            AnyModel::Classifier(m) => m.backbone.input_channels(),
            AnyModel::Backbone(m) => m.input_channels(),
        }
    }

    /// The image size `[height, width]` the model takes, when it fixes one (a ViT).
    pub fn input_size(&self) -> Option<[usize; 2]> {
        match self {
            AnyModel::Classifier(m) => m.backbone.input_size(),
            AnyModel::Backbone(m) => m.input_size(),
        }
    }

    /// One inference forward pass: probabilities for a classifier, features for a backbone.
    pub fn forward(&self, images: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
        let out = match self {
            AnyModel::Classifier(m) => Features::D2(m.forward(images)),
            AnyModel::Backbone(m) => Stage::forward(m, Features::D4(images)),
        };
        let shape = out.dims();
        let data = match out {
            Features::D2(t) => t.into_data(),
            Features::D3(t) => t.into_data(),
            Features::D4(t) => t.into_data(),
            Features::D5(t) => t.into_data(),
        };
        (
            shape,
            data.convert::<f32>().try_to_vec().unwrap_or_default(),
        )
    }
}

/// What happens to the tensors of one subtree of the model.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SubtreeRow {
    pub subtree: String,
    pub total: usize,
    pub load: usize,
    pub shape_mismatch: usize,
    pub cast: usize,
    pub missing: usize,
}

impl SubtreeRow {
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.load as f64 / self.total as f64
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Status {
    Missing,
    Mismatch,
    Load { cast: bool },
}

/// A load's key under its config level (`backbone` + `conv1.weight`).
pub fn scoped(scope: &str, key: &str) -> String {
    if scope.is_empty() {
        key.to_string()
    } else {
        format!("{scope}.{key}")
    }
}

/// Per subtree: the final outcome of every model tensor over all loads (a later load that
/// loads a tensor overrides an earlier outcome).
pub fn summarize(keys: &[String], report: &BuildReport) -> Vec<SubtreeRow> {
    let mut status: BTreeMap<&str, Status> =
        keys.iter().map(|k| (k.as_str(), Status::Missing)).collect();
    for load in report.loads() {
        let r = &load.report;
        for m in r.mismatched() {
            let key = scoped(&load.scope, &m.key);
            if let Some(s) = status.get_mut(key.as_str())
                && *s == Status::Missing
            {
                *s = Status::Mismatch;
            }
        }
        for key in r.loaded() {
            let cast = r.cast().iter().any(|c| &c.key == key);
            let key = scoped(&load.scope, key);
            if let Some(s) = status.get_mut(key.as_str()) {
                *s = Status::Load { cast };
            }
        }
    }
    let mut rows: Vec<SubtreeRow> = Vec::new();
    for key in keys {
        let subtree = key.split('.').next().unwrap_or_default();
        let row = match rows.iter_mut().position(|r| r.subtree == subtree) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(SubtreeRow {
                    subtree: subtree.to_string(),
                    ..SubtreeRow::default()
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        row.total += 1;
        match status[key.as_str()] {
            Status::Missing => row.missing += 1,
            Status::Mismatch => row.shape_mismatch += 1,
            Status::Load { cast } => {
                row.load += 1;
                if cast {
                    row.cast += 1;
                }
            }
        }
    }
    rows
}

/// The table `check` and `load` print.
pub fn table(rows: &[SubtreeRow]) -> String {
    let width = rows
        .iter()
        .map(|r| r.subtree.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>7}\n",
        "subtree", "total", "load", "shape", "cast", "missing"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>7}\n",
            r.subtree, r.total, r.load, r.shape_mismatch, r.cast, r.missing
        ));
    }
    out
}
