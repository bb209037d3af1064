//! A model repository as a model source: a folder of files (`config.json`, the weights) on the
//! Hugging Face Hub (`hf://org/name[@revision]`, through the loader's Hub source and cache) or
//! anywhere else a checkpoint may be (a local directory, an http(s) or object-store prefix).
//! Its `config.json` decides what to build, as timm's `create_model("hf-hub:…")` reads it:
//! `architecture`, `model_args`, `num_classes` and `pretrained_cfg` (or, in the older flat
//! form, the data config at the top level), and `label_names`.
//!
//! What the zoo builds from timm's names: `resnet18` … `resnet152`, `resnext50_32x4d`,
//! `resnext101_32x8d`, `wide_resnet50_2`, `wide_resnet101_2` (torchvision's layout, which
//! timm's plain `resnet*` share), every `vit_*` and `convnext_*` variant the zoo's ViT and
//! ConvNeXt resolve. An architecture or model argument the zoo cannot build is an error naming
//! it. The weights are chosen as the libraries choose them: `model.safetensors`, else
//! `model.safetensors.index.json`, else `pytorch_model.bin`, else `open_clip_pytorch_model.bin`.

use std::path::Path;

use burn_pretrain::source::FetchOptions;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The weight files a repository may hold, in the order the libraries try them.
pub const WEIGHT_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
];

/// Why a repository could not become a model config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// A file of the repository could not be fetched.
    #[error("cannot fetch {file}")]
    Fetch {
        /// The file's location.
        file: String,
        /// The loader's error.
        source: burn_pretrain::Error,
    },
    /// `config.json` is not what a config of a known library looks like.
    #[error("{file}: {detail}")]
    Config {
        /// The config file.
        file: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The architecture (timm) or model type (transformers) is not one the zoo builds.
    #[error("{file}: {what} `{found}` is not one this crate builds; known: {known}")]
    UnknownArchitecture {
        /// The config file.
        file: String,
        /// `architecture` or `model_type`.
        what: &'static str,
        /// The name found.
        found: String,
        /// What is known.
        known: String,
    },
    /// No weight file in the repository.
    #[error("{location} holds no weights: looked for {}", WEIGHT_FILES.join(", "))]
    NoWeights {
        /// The repository.
        location: String,
    },
}

/// How images are prepared for the model: timm's `pretrained_cfg` data fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataConfig {
    /// `[channels, height, width]`.
    pub input_size: [usize; 3],
    /// Per-channel mean, in `[0, 1]` units.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation.
    pub std: Vec<f64>,
    /// The fraction of the resized image the centre crop keeps.
    pub crop_pct: f64,
    /// `center`, `squash` or `border`.
    pub crop_mode: String,
    /// `bicubic`, `bilinear`, `nearest` ….
    pub interpolation: String,
}

/// A repository read: what to build from it and how to feed it.
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    /// Where it is, as given.
    pub location: String,
    /// The config file read.
    pub config_file: String,
    /// The weight file chosen.
    pub weights: String,
    /// timm's `architecture`.
    pub architecture: String,
    /// The registry config it stands for (`{"type": "VisionTransformer", "variant": …,
    /// "pretrain": {"path": weights}}`).
    pub model: Value,
    /// How inputs are prepared.
    pub data: DataConfig,
    /// Class names, when the config has them.
    pub label_names: Option<Vec<String>>,
}

/// The JSON file `name` of the repository at `location`, parsed; `None` where the repository
/// has no such file. Errors name the file.
pub(crate) fn fetch_json(
    location: &str,
    name: &str,
    fetch: &FetchOptions,
) -> Result<Option<Value>, RepositoryError> {
    match fetch_required_json(location, name, fetch) {
        Err(RepositoryError::Fetch {
            source: burn_pretrain::Error::NotFound { .. },
            ..
        }) => Ok(None),
        other => other.map(Some),
    }
}

/// [`fetch_json`] for a file the repository must hold: its absence is a fetch error.
pub(crate) fn fetch_required_json(
    location: &str,
    name: &str,
    fetch: &FetchOptions,
) -> Result<Value, RepositoryError> {
    let file = file_in(location, name);
    let path =
        burn_pretrain::fetch_file(&file, fetch).map_err(|source| RepositoryError::Fetch {
            file: file.clone(),
            source,
        })?;
    let bad = |detail: String| RepositoryError::Config {
        file: file.clone(),
        detail,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))
}

/// The location of `file` inside the repository at `base`.
pub(crate) fn file_in(base: &str, file: &str) -> String {
    if base.contains("://") {
        format!("{}/{file}", base.trim_end_matches('/'))
    } else {
        Path::new(base).join(file).to_string_lossy().into_owned()
    }
}

impl Repository {
    /// Read the repository at `location` (a local directory or a URI prefix such as
    /// `hf://timm/resnet50.a1_in1k`), fetching through `fetch` (cache, endpoint, offline).
    pub fn open(location: &str, fetch: &FetchOptions) -> Result<Self, RepositoryError> {
        let config_file = file_in(location, "config.json");
        let config = fetch_required_json(location, "config.json", fetch)?;
        let weights = Self::weights(location, fetch)?;
        if config.get("model_type").and_then(Value::as_str) == Some("vit") {
            let processor = fetch_json(location, "preprocessor_config.json", fetch)?
                .map(|value| (file_in(location, "preprocessor_config.json"), value));
            return Self::from_transformers_vit(
                location,
                &config_file,
                &config,
                weights,
                processor,
            );
        }
        Self::from_config(location, &config_file, &config, weights)
    }

    /// A transformers ViT repository (`model_type: vit`): `ViTForImageClassification` when
    /// `architectures` names it (its classes from `id2label`), else `ViTModel`; the data config
    /// from the image processor's `preprocessor_config.json` (`ViTImageProcessor`: resized to
    /// `size` with `resample`, no crop, rescaled, normalised), else transformers' defaults.
    pub fn from_transformers_vit(
        location: &str,
        config_file: &str,
        config: &Value,
        weights: String,
        processor: Option<(String, Value)>,
    ) -> Result<Self, RepositoryError> {
        let bad = |detail: String| RepositoryError::Config {
            file: config_file.to_string(),
            detail,
        };
        let architectures: Vec<&str> = config
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let architecture = architectures.first().copied().unwrap_or("ViTModel");
        let classify = match architecture {
            "ViTForImageClassification" => true,
            "ViTModel" => false,
            other => {
                return Err(RepositoryError::UnknownArchitecture {
                    file: config_file.to_string(),
                    what: "architectures",
                    found: other.to_string(),
                    known: "ViTModel, ViTForImageClassification".into(),
                });
            }
        };
        let mut label_names = None;
        let mut num_classes = 0;
        if classify {
            let id2label = config
                .get("id2label")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("a ViTForImageClassification without `id2label`".into()))?;
            let mut names = vec![None; id2label.len()];
            for (id, name) in id2label {
                let i: usize = id
                    .parse()
                    .ok()
                    .filter(|&i| i < names.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "`id2label` key `{id}` is not an index below {}",
                            names.len()
                        ))
                    })?;
                names[i] = name.as_str().map(str::to_string);
            }
            num_classes = names.len();
            label_names = names.into_iter().collect::<Option<Vec<_>>>();
        }
        let mut model = Map::new();
        model.insert("type".into(), json!("TransformersVit"));
        for key in [
            "image_size",
            "patch_size",
            "num_channels",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "layer_norm_eps",
            "qkv_bias",
        ] {
            if let Some(v) = config.get(key) {
                model.insert(key.into(), v.clone());
            }
        }
        for (key, built) in [("hidden_act", "gelu"), ("pooler_act", "tanh")] {
            if let Some(v) = config.get(key).and_then(Value::as_str)
                && v != built
            {
                return Err(bad(format!("`{key}` `{v}` is not built ({built})")));
            }
        }
        model.insert("num_classes".into(), json!(num_classes));
        model.insert("pretrain".into(), json!({ "path": weights }));
        let side = config
            .get("image_size")
            .and_then(Value::as_u64)
            .unwrap_or(224) as usize;
        let channels = config
            .get("num_channels")
            .and_then(Value::as_u64)
            .unwrap_or(3) as usize;
        let data = match &processor {
            Some((file, p)) => {
                transformers_data_config(p, channels).map_err(|detail| RepositoryError::Config {
                    file: file.clone(),
                    detail,
                })?
            }
            None => DataConfig {
                input_size: [channels, side, side],
                mean: vec![0.5; 3],
                std: vec![0.5; 3],
                crop_pct: 1.0,
                crop_mode: "squash".into(),
                interpolation: "bilinear".into(),
            },
        };
        Ok(Self {
            location: location.to_string(),
            config_file: config_file.to_string(),
            weights,
            architecture: architecture.to_string(),
            model: Value::Object(model),
            data,
            label_names,
        })
    }

    /// The first weight file of [`WEIGHT_FILES`] the repository holds. An error other than
    /// "not there" stops the search.
    pub(crate) fn weights(location: &str, fetch: &FetchOptions) -> Result<String, RepositoryError> {
        for name in WEIGHT_FILES {
            let file = file_in(location, name);
            match burn_pretrain::fetch_file(&file, fetch) {
                Ok(_) => return Ok(file),
                Err(burn_pretrain::Error::NotFound { .. }) => continue,
                Err(source) => return Err(RepositoryError::Fetch { file, source }),
            }
        }
        Err(RepositoryError::NoWeights {
            location: location.to_string(),
        })
    }

    /// What a parsed `config.json` stands for, with `weights` as its checkpoint.
    pub fn from_config(
        location: &str,
        config_file: &str,
        config: &Value,
        weights: String,
    ) -> Result<Self, RepositoryError> {
        let bad = |detail: String| RepositoryError::Config {
            file: config_file.to_string(),
            detail,
        };
        let Value::Object(map) = config else {
            return Err(bad("expected a JSON object".into()));
        };
        let Some(architecture) = map.get("architecture").and_then(Value::as_str) else {
            return Err(match map.get("model_type").and_then(Value::as_str) {
                Some(found) => RepositoryError::UnknownArchitecture {
                    file: config_file.to_string(),
                    what: "model_type",
                    found: found.to_string(),
                    known: if found == "bert" {
                        "a BERT repository is a text encoder: open it with `sentence::SentenceEncoder` (`pretrain embed`)".into()
                    } else {
                        format!(
                            "timm architectures ({}); `bert` as a text encoder",
                            KNOWN.join(", ")
                        )
                    },
                },
                None => bad("neither `architecture` (timm) nor `model_type` (transformers)".into()),
            });
        };
        // The data config: nested (`pretrained_cfg`) or, in the older form, at the top.
        let cfg = match map.get("pretrained_cfg") {
            Some(Value::Object(cfg)) => cfg,
            Some(_) => return Err(bad("`pretrained_cfg` is not an object".into())),
            None => map,
        };
        let num_classes = map
            .get("num_classes")
            .or_else(|| cfg.get("num_classes"))
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| bad(format!("`num_classes` is {v}, not a count")))
            })
            .transpose()?
            .unwrap_or(0);
        let args = match map.get("model_args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args.clone(),
            Some(_) => return Err(bad("`model_args` is not an object".into())),
        };
        let mut model = zoo_config(architecture, &args, config_file)?;
        model.insert("num_classes".into(), json!(num_classes));
        model.insert("pretrain".into(), json!({ "path": weights }));
        let data = data_config(cfg).map_err(bad)?;
        let label_names = match map.get("label_names") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| n.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("`label_names` holds a non-string".into()))?,
            ),
            Some(_) => return Err(bad("`label_names` is not a list".into())),
        };
        Ok(Self {
            location: location.to_string(),
            config_file: config_file.to_string(),
            weights,
            architecture: architecture.to_string(),
            model: Value::Object(model),
            data,
            label_names,
        })
    }
}

/// A `ViTImageProcessor`'s preprocessing as a data config: resize to `size` (no crop:
/// `squash`, `crop_pct` 1), PIL's `resample` code as the interpolation, mean and std.
fn transformers_data_config(p: &Value, channels: usize) -> Result<DataConfig, String> {
    let ty = p
        .get("image_processor_type")
        .and_then(Value::as_str)
        .unwrap_or("ViTImageProcessor");
    if !ty.starts_with("ViTImageProcessor") {
        return Err(format!(
            "image_processor_type `{ty}` is not built (ViTImageProcessor)"
        ));
    }
    for (flag, what) in [
        ("do_resize", "resize"),
        ("do_rescale", "rescale"),
        ("do_normalize", "normalize"),
    ] {
        if p.get(flag).and_then(Value::as_bool) == Some(false) {
            return Err(format!("`{flag}: false` (no {what}) is not built"));
        }
    }
    if let Some(f) = p.get("rescale_factor").and_then(Value::as_f64)
        && (f - 1.0 / 255.0).abs() > 1e-9
    {
        return Err(format!("rescale_factor {f} is not built (1/255)"));
    }
    let size = p.get("size");
    let (h, w) = match size {
        None => (224, 224),
        Some(s) => match (
            s.get("height").and_then(Value::as_u64),
            s.get("width").and_then(Value::as_u64),
            s.as_u64(),
        ) {
            (Some(h), Some(w), _) => (h as usize, w as usize),
            (_, _, Some(n)) => (n as usize, n as usize),
            _ => return Err(format!("`size` {s} is not {{height, width}}")),
        },
    };
    let interpolation = match p.get("resample").and_then(Value::as_u64).unwrap_or(2) {
        2 => "bilinear",
        3 => "bicubic",
        other => {
            return Err(format!(
                "resample {other} is not built (2 bilinear, 3 bicubic)"
            ));
        }
    };
    let floats = |key: &str| -> Result<Vec<f64>, String> {
        match p.get(key) {
            None => Ok(vec![0.5; 3]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| format!("`{key}` holds {v}")))
                .collect(),
            Some(Value::Number(n)) => Ok(vec![n.as_f64().unwrap_or(0.5); 3]),
            Some(other) => Err(format!("`{key}` is {other}")),
        }
    };
    Ok(DataConfig {
        input_size: [channels, h, w],
        mean: floats("image_mean")?,
        std: floats("image_std")?,
        crop_pct: 1.0,
        crop_mode: "squash".into(),
        interpolation: interpolation.into(),
    })
}

/// The architecture families built (the names themselves are resolved by each model).
const KNOWN: [&str; 7] = [
    "resnet18/34/50/101/152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "vit_*",
    "convnext_*",
];

/// torchvision-layout ResNets by timm name: depth, groups, width per group.
const RESNETS: [(&str, usize, usize, usize); 9] = [
    ("resnet18", 18, 1, 64),
    ("resnet34", 34, 1, 64),
    ("resnet50", 50, 1, 64),
    ("resnet101", 101, 1, 64),
    ("resnet152", 152, 1, 64),
    ("resnext50_32x4d", 50, 32, 4),
    ("resnext101_32x8d", 101, 32, 8),
    ("wide_resnet50_2", 50, 1, 128),
    ("wide_resnet101_2", 101, 1, 128),
];

/// The registry config (without `num_classes` and `pretrain`) of timm's `architecture` with
/// its `model_args`.
fn zoo_config(
    architecture: &str,
    args: &Map<String, Value>,
    file: &str,
) -> Result<Map<String, Value>, RepositoryError> {
    let unsupported = |arg: &str, why: &str| RepositoryError::Config {
        file: file.to_string(),
        detail: format!("model_args.{arg} of `{architecture}`: {why}"),
    };
    let mut out = Map::new();
    // What timm adds to every model_args and the zoo decides itself.
    let mut args = args.clone();
    args.remove("num_classes");
    let pool = args.remove("global_pool");
    if let Some(&(_, depth, groups, width)) = RESNETS.iter().find(|(n, ..)| *n == architecture) {
        out.insert("type".into(), json!("ResNet"));
        out.insert("depth".into(), json!(depth));
        out.insert("groups".into(), json!(groups));
        out.insert("width_per_group".into(), json!(width));
        if pool.as_ref().is_some_and(|p| p != "avg") {
            return Err(unsupported("global_pool", "only `avg` is built"));
        }
        // timm's plain stem is 64 channels whatever `stem_width` (a deep stem's) says.
        if args
            .remove("stem_type")
            .is_some_and(|t| t.as_str().is_some_and(|t| !t.is_empty()))
        {
            return Err(unsupported("stem_type", "only the plain 7×7 stem is built"));
        }
        args.remove("stem_width");
        if let Some(channels) = args.remove("channels") {
            let c: Vec<u64> = match &channels {
                Value::Array(c) => c.iter().filter_map(Value::as_u64).collect(),
                _ => Vec::new(),
            };
            if c.len() != 4 || !(1..4).all(|i| c[i] == c[0] << i) {
                return Err(unsupported(
                    "channels",
                    "the zoo builds stages of base, 2·base, 4·base and 8·base channels",
                ));
            }
            out.insert("base_channels".into(), json!(c[0]));
            out.insert("stem_channels".into(), json!(64));
        }
        for (arg, field) in [
            ("in_chans", "in_channels"),
            ("cardinality", "groups"),
            ("base_width", "width_per_group"),
        ] {
            if let Some(v) = args.remove(arg) {
                out.insert(field.into(), v);
            }
        }
    } else if architecture.starts_with("vit_") {
        out.insert("type".into(), json!("VisionTransformer"));
        out.insert("variant".into(), json!(architecture));
        if let Some(pool) = pool {
            out.insert("global_pool".into(), pool);
        }
        // timm writes `img_size` as `[h, w]`; the zoo's ViT is square.
        if let Some(size) = args.remove("img_size") {
            let side = match &size {
                Value::Array(hw) if hw.len() == 2 && hw[0] == hw[1] => hw[0].clone(),
                Value::Array(_) => {
                    return Err(unsupported("img_size", "only square images are built"));
                }
                other => other.clone(),
            };
            out.insert("img_size".into(), side);
        }
    } else if architecture.starts_with("convnext_") {
        out.insert("type".into(), json!("ConvNeXt"));
        out.insert("variant".into(), json!(architecture));
        if pool.as_ref().is_some_and(|p| p != "avg") {
            return Err(unsupported("global_pool", "only `avg` is built"));
        }
        if let Some(v) = args.remove("ls_init_value") {
            out.insert("layer_scale".into(), json!(!v.is_null()));
        }
    } else {
        return Err(RepositoryError::UnknownArchitecture {
            file: file.to_string(),
            what: "architecture",
            found: architecture.to_string(),
            known: KNOWN.join(", "),
        });
    }
    // The rest pass as they are; the model's own config refuses what it does not know.
    for (arg, value) in args {
        if out.contains_key(&arg) {
            return Err(unsupported(&arg, "given twice"));
        }
        out.insert(arg, value);
    }
    Ok(out)
}

/// timm's data config fields, with timm's defaults where a field is absent.
fn data_config(cfg: &Map<String, Value>) -> Result<DataConfig, String> {
    let floats = |key: &str, default: [f64; 3]| -> Result<Vec<f64>, String> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(default.to_vec()),
            Some(Value::Array(v)) => v
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("`{key}` holds a non-number")),
            Some(other) => Err(format!("`{key}` is {other}, not a list")),
        }
    };
    let input_size = match cfg.get("input_size") {
        None | Some(Value::Null) => [3, 224, 224],
        Some(Value::Array(v)) if v.len() == 3 => {
            let dims: Vec<usize> = v
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or("`input_size` holds a non-count")?;
            [dims[0], dims[1], dims[2]]
        }
        Some(other) => return Err(format!("`input_size` is {other}, not [C, H, W]")),
    };
    let text = |key: &str, default: &str| match cfg.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => default.to_string(),
    };
    Ok(DataConfig {
        input_size,
        // timm's IMAGENET_DEFAULT_MEAN / _STD.
        mean: floats("mean", [0.485, 0.456, 0.406])?,
        std: floats("std", [0.229, 0.224, 0.225])?,
        crop_pct: cfg.get("crop_pct").and_then(Value::as_f64).unwrap_or(0.875),
        crop_mode: text("crop_mode", "center"),
        interpolation: text("interpolation", "bilinear"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timm_resnet_args_become_the_zoo_fields() {
        let args = json!({"num_classes": 5, "in_chans": 3, "global_pool": "avg",
                          "stem_width": 8, "channels": [8, 16, 32, 64]});
        let out = zoo_config("resnet18", args.as_object().unwrap(), "c.json").unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"type": "ResNet", "depth": 18, "groups": 1, "width_per_group": 64,
                   "base_channels": 8, "stem_channels": 64, "in_channels": 3})
        );
        let args = json!({"channels": [8, 16, 24, 64]});
        let err = zoo_config("resnet18", args.as_object().unwrap(), "c.json").unwrap_err();
        assert!(err.to_string().contains("model_args.channels"), "{err}");
        let err = zoo_config("resnet50d", &Map::new(), "c.json").unwrap_err();
        assert!(err.to_string().contains("`resnet50d` is not one"), "{err}");
    }

    #[test]
    fn the_flat_form_has_its_data_config_at_the_top() {
        let config = json!({"architecture": "vit_tiny_patch16_224", "num_classes": 3,
                            "input_size": [3, 32, 32], "crop_pct": 0.9, "interpolation": "bicubic",
                            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]});
        let repo = Repository::from_config("r", "r/config.json", &config, "r/w".into()).unwrap();
        assert_eq!(repo.data.input_size, [3, 32, 32]);
        assert_eq!(repo.data.crop_pct, 0.9);
        assert_eq!(repo.model["num_classes"], 3);
        assert_eq!(repo.model["variant"], "vit_tiny_patch16_224");
    }
}
