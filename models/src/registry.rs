//! Registries: build models from configs shaped like the seed's dicts,
//! `{"type": "ResNet", "depth": 50, "pretrain": ...}`, in JSON, YAML or TOML.
//!
//! A [`Registry`] is an explicit value (`register`, `build`), not a hidden global; the
//! built-in ones are [`MODELS`], [`BACKBONES`], [`NECKS`] and [`HEADS`]. A `pretrain` may stand
//! at any level: inner levels load while they are built, outer ones after, and the
//! [`BuildReport`] keeps every load and says per subtree where the final values came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use burn::module::ModuleDisplay;
use burn::prelude::*;
use burn_pretrain::{LoadReport, Pretrain, PretrainExt, Pretrainable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classifier::{Activation, Backbone, Classifier};
use crate::convnext::ConvNeXtConfig;
use crate::head::{ClassifierHeadConfig, Head};
use crate::neck::{GlobalAveragePoolingConfig, Identity, Neck};
use crate::resnet::{InvalidField, ResNetConfig};
use crate::vit::VisionTransformerConfig;

/// Why a config could not become a model. Every variant names where in the config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The text is not valid JSON/YAML/TOML.
    #[error("config {file} is not valid {format}")]
    Parse {
        /// The file (or `<string>`).
        file: String,
        /// The format it was read as.
        format: &'static str,
        /// The parser's error (or what is wrong with the file's name).
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// `type` names nothing registered.
    #[error("{path}: unknown {kind} type `{found}`; registered: {allowed}")]
    UnknownType {
        /// Where (`backbone.type`).
        path: String,
        /// Which registry (`backbone`).
        kind: String,
        /// The name given.
        found: String,
        /// The names registered, comma-separated.
        allowed: String,
    },
    /// A missing, unknown or wrong value.
    #[error("{path}")]
    Invalid {
        /// Where (`backbone.depth`).
        path: String,
        /// What is wrong and what is allowed: the deserializer's error, or ours.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A level's `pretrain` could not be loaded.
    #[error("{path}: cannot load its pretrain")]
    Pretrain {
        /// The level whose `pretrain` failed.
        path: String,
        /// The loader's error.
        source: burn_pretrain::Error,
    },
}

/// One `pretrain` loaded while building, at the config level it stood on.
#[derive(Debug, Clone, Serialize)]
pub struct ScopedLoad {
    /// The config path of the level (`backbone`; empty for the root).
    pub scope: String,
    /// What the load did, with keys relative to that level.
    pub report: LoadReport,
}

/// Every load a build did, in order (inner levels first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    loads: Vec<ScopedLoad>,
}

impl BuildReport {
    /// The loads, inner levels first.
    pub fn loads(&self) -> &[ScopedLoad] {
        &self.loads
    }

    /// Per top-level subtree of the model, how many tensors finally came from which source
    /// (a later, outer load overrides an earlier, inner one).
    pub fn provenance(&self) -> Vec<(String, Vec<(String, usize)>)> {
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for (i, load) in self.loads.iter().enumerate() {
            for key in load.report.loaded() {
                let full = if load.scope.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", load.scope)
                };
                last.insert(full, i);
            }
        }
        let mut out: Vec<(String, Vec<(String, usize)>)> = Vec::new();
        for (key, i) in last {
            let subtree = key.split('.').next().unwrap_or_default().to_string();
            let source = self.loads[i].report.source().to_string();
            let slot = match out.iter_mut().position(|(s, _)| *s == subtree) {
                Some(p) => &mut out[p].1,
                None => {
                    out.push((subtree, Vec::new()));
                    let last = out.len() - 1;
                    &mut out[last].1
                }
            };
            match slot.iter_mut().find(|(s, _)| *s == source) {
                Some((_, n)) => *n += 1,
                None => slot.push((source, 1)),
            }
        }
        out
    }

    /// Log every load with `tracing`, essmc2-style.
    pub fn log(&self) {
        for load in &self.loads {
            load.report.log();
        }
    }
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for load in &self.loads {
            let scope = if load.scope.is_empty() {
                "(root)"
            } else {
                &load.scope
            };
            write!(f, "[{scope}] {}", load.report)?;
        }
        let provenance: Vec<String> = self
            .provenance()
            .into_iter()
            .map(|(subtree, sources)| {
                let list: Vec<String> = sources
                    .into_iter()
                    .map(|(source, n)| format!("{n} from {source}"))
                    .collect();
                format!("{subtree}: {}", list.join(", "))
            })
            .collect();
        if self.loads.len() > 1 && !provenance.is_empty() {
            writeln!(f, "final values: {}", provenance.join("; "))?;
        }
        Ok(())
    }
}

/// A model built from a config, with what its `pretrain`s did.
#[derive(Debug)]
pub struct Built<T> {
    /// The model, pretrained weights applied.
    pub model: T,
    /// Every load, inner levels first.
    pub report: BuildReport,
}

/// State of one build: the device, where in the config we are, and the loads so far.
#[derive(Debug)]
pub struct BuildCtx<'a> {
    device: &'a Device,
    path: Vec<String>,
    loads: Vec<ScopedLoad>,
    dry_run: bool,
}

impl BuildCtx<'_> {
    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// The config path of `field` at the current level (`backbone.depth`).
    pub fn path_of(&self, field: &str) -> String {
        let mut parts: Vec<&str> = self.path.iter().map(String::as_str).collect();
        if !field.is_empty() {
            parts.push(field);
        }
        if parts.is_empty() {
            "config".into()
        } else {
            parts.join(".")
        }
    }

    /// An error about `field` of the current level.
    pub fn invalid(
        &self,
        field: &str,
        why: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path_of(field),
            source: why.into(),
        }
    }
}

impl From<(&BuildCtx<'_>, InvalidField)> for ConfigError {
    fn from((ctx, e): (&BuildCtx<'_>, InvalidField)) -> Self {
        ctx.invalid(e.field, e.message)
    }
}

type BuildFn<T> = dyn Fn(Value, &mut BuildCtx<'_>) -> Result<T, ConfigError> + Send + Sync;

/// Named builders of one kind of module (`backbone`, `neck`, ...).
pub struct Registry<T> {
    kind: String,
    builders: BTreeMap<String, Arc<BuildFn<T>>>,
}

impl<T> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kind", &self.kind)
            .field("types", &self.builders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<T: Pretrainable + Clone + 'static> Registry<T> {
    /// An empty registry for modules of `kind` (used in error messages).
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            builders: BTreeMap::new(),
        }
    }

    /// Register `name`: its config (the level's map without `type` and `pretrain`) is
    /// deserialised into `C` — use `#[serde(deny_unknown_fields)]` so typos are caught — and
    /// handed to `build`.
    pub fn register<C, F>(&mut self, name: &str, build: F) -> &mut Self
    where
        C: DeserializeOwned,
        F: Fn(C, &mut BuildCtx<'_>) -> Result<T, ConfigError> + Send + Sync + 'static,
    {
        let builder = move |value: Value, ctx: &mut BuildCtx<'_>| {
            let config: C = serde_path_to_error::deserialize(value).map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                ctx.invalid(&field, e.into_inner())
            })?;
            build(config, ctx)
        };
        self.builders.insert(name.to_string(), Arc::new(builder));
        self
    }

    /// Consuming form of [`register`](Self::register).
    #[must_use]
    pub fn with<C, F>(mut self, name: &str, build: F) -> Self
    where
        C: DeserializeOwned,
        F: Fn(C, &mut BuildCtx<'_>) -> Result<T, ConfigError> + Send + Sync + 'static,
    {
        self.register(name, build);
        self
    }

    /// Take every type of `other`, wrapping what it builds with `wrap` (a variant of the
    /// user's own enum that holds the built-in ones).
    #[must_use]
    pub fn with_all<U: 'static>(mut self, other: &Registry<U>, wrap: fn(U) -> T) -> Self {
        for (name, inner) in &other.builders {
            let inner = inner.clone();
            let builder = move |value: Value, ctx: &mut BuildCtx<'_>| inner(value, ctx).map(wrap);
            self.builders.insert(name.clone(), Arc::new(builder));
        }
        self
    }

    /// The registered type names.
    pub fn names(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Build a model from `config` (a map with `type`), loading every `pretrain` in it.
    pub fn build(&self, config: &Value, device: &Device) -> Result<Built<T>, ConfigError> {
        self.build_with(config, device, false)
    }

    /// Build the model of `config` and plan its `pretrain`s without loading them: no tensor
    /// bytes are read and the model keeps its initial (lazy) parameters. The reports are
    /// dry runs.
    pub fn plan(&self, config: &Value, device: &Device) -> Result<Built<T>, ConfigError> {
        self.build_with(config, device, true)
    }

    fn build_with(
        &self,
        config: &Value,
        device: &Device,
        dry_run: bool,
    ) -> Result<Built<T>, ConfigError> {
        let mut ctx = BuildCtx {
            device,
            path: Vec::new(),
            loads: Vec::new(),
            dry_run,
        };
        let model = self.build_in(config, &mut ctx, "")?;
        Ok(Built {
            model,
            report: BuildReport { loads: ctx.loads },
        })
    }

    /// Build from a JSON, YAML or TOML file, chosen by its extension. Relative `pretrain`
    /// paths are taken relative to the config file's folder.
    pub fn build_from_file(
        &self,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Built<T>, ConfigError> {
        self.build(&read_config_file(path.as_ref())?, device)
    }

    /// Build the sub-config `config` found at `field` of the current level; for builders of
    /// composite modules (a classifier builds its backbone this way).
    pub fn build_in(
        &self,
        config: &Value,
        ctx: &mut BuildCtx<'_>,
        field: &str,
    ) -> Result<T, ConfigError> {
        if !field.is_empty() {
            ctx.path.push(field.to_string());
        }
        let result = self.build_level(config, ctx);
        if !field.is_empty() {
            ctx.path.pop();
        }
        result
    }

    fn build_level(&self, config: &Value, ctx: &mut BuildCtx<'_>) -> Result<T, ConfigError> {
        let allowed = self.names().join(", ");
        let Value::Object(map) = config else {
            return Err(ctx.invalid(
                "",
                format!(
                    "expected a {} config: a map with `type` (one of {allowed}), got {}",
                    self.kind,
                    kind_of(config)
                ),
            ));
        };
        let mut map = map.clone();
        let ty = match map.remove("type") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(ctx.invalid(
                    "type",
                    format!(
                        "expected a type name (one of {allowed}), got {}",
                        kind_of(&other)
                    ),
                ));
            }
            None => {
                return Err(ctx.invalid(
                    "type",
                    format!(
                        "missing field `type`; registered {} types: {allowed}",
                        self.kind
                    ),
                ));
            }
        };
        let Some(builder) = self.builders.get(&ty).cloned() else {
            return Err(ConfigError::UnknownType {
                path: ctx.path_of("type"),
                kind: self.kind.clone(),
                found: ty,
                allowed,
            });
        };
        let pretrain = match map.remove("pretrain") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                serde_path_to_error::deserialize::<_, Pretrain>(value).map_err(|e| {
                    let sub = e.path().to_string();
                    let field = if sub == "." {
                        "pretrain".to_string()
                    } else {
                        format!("pretrain.{sub}")
                    };
                    ctx.invalid(&field, e.into_inner())
                })?,
            ),
        };
        let model = builder(Value::Object(map), ctx)?;
        let Some(spec) = pretrain else {
            return Ok(model);
        };
        let loaded = if ctx.dry_run {
            model.plan_pretrained(spec).map(|report| (model, report))
        } else {
            model.load_pretrained(spec)
        };
        let (model, report) = loaded.map_err(|source| ConfigError::Pretrain {
            path: ctx.path_of(""),
            source,
        })?;
        ctx.loads.push(ScopedLoad {
            scope: ctx.path.join("."),
            report,
        });
        Ok(model)
    }
}

/// Read a config file ([`read_config`]) and make its relative `pretrain` paths relative to
/// the file's folder.
pub fn read_config_file(path: &Path) -> Result<Value, ConfigError> {
    let mut config = read_config(path)?;
    if let Some(dir) = path.parent() {
        resolve_pretrain_paths(&mut config, dir);
    }
    Ok(config)
}

/// Remove every `pretrain` entry of a config, at any level: to build the model alone.
pub fn strip_pretrain(config: &mut Value) {
    match config {
        Value::Object(map) => {
            map.remove("pretrain");
            map.values_mut().for_each(strip_pretrain);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_pretrain),
        _ => {}
    }
}

/// Make every relative local `pretrain` path (string or `path` field) relative to `dir`.
fn resolve_pretrain_paths(value: &mut Value, dir: &Path) {
    let resolve = |p: &mut Value| {
        // An empty path stays empty, to be refused as such (not read as the config's folder).
        if let Value::String(s) = p
            && !s.is_empty()
            && !s.contains("://")
            && Path::new(s.as_str()).is_relative()
        {
            *s = dir.join(s.as_str()).display().to_string();
        }
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "pretrain" {
                    match v {
                        Value::Object(spec) => {
                            if let Some(p) = spec.get_mut("path") {
                                resolve(p);
                            }
                        }
                        other => resolve(other),
                    }
                } else {
                    resolve_pretrain_paths(v, dir);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| resolve_pretrain_paths(v, dir)),
        _ => {}
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The text formats a config can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `.json`.
    Json,
    /// `.yaml` / `.yml`.
    Yaml,
    /// `.toml`.
    Toml,
}

/// Parse config text into a value the registries build from.
pub fn parse_config(text: &str, format: ConfigFormat, file: &str) -> Result<Value, ConfigError> {
    let parse_err = |format: &'static str, source: Box<dyn std::error::Error + Send + Sync>| {
        ConfigError::Parse {
            file: file.to_string(),
            format,
            source,
        }
    };
    match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|e| parse_err("JSON", e.into())),
        ConfigFormat::Yaml => {
            flow_depth(text).map_err(|e| parse_err("YAML", e.into()))?;
            serde_yaml_ng::from_str(text).map_err(|e| parse_err("YAML", e.into()))
        }
        ConfigFormat::Toml => {
            flow_depth(text).map_err(|e| parse_err("TOML", e.into()))?;
            toml::from_str(text).map_err(|e| parse_err("TOML", e.into()))
        }
    }
}

/// The deepest nesting of a config, as serde_json allows it.
const MAX_DEPTH: usize = 128;

/// Refuse YAML or TOML nested deeper than [`MAX_DEPTH`] brackets before the parser sees it:
/// the YAML parser takes quadratic time on deep flow collections (a minute for 100,000
/// levels) before its own recursion limit stops it, and TOML's error would quote the whole
/// line. Every `[`/`{` counts, quoted or not, so no quote can hide a bomb from this check; a
/// real config never holds 128 unclosed brackets inside its strings.
fn flow_depth(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for (line, content) in text.lines().enumerate() {
        for (column, c) in content.chars().enumerate() {
            match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!(
                            "nested deeper than {MAX_DEPTH} levels (at line {}, column {})",
                            line + 1,
                            column + 1
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Read a config file, its format chosen by extension (`.json`, `.yaml`/`.yml`, `.toml`).
pub fn read_config(path: &Path) -> Result<Value, ConfigError> {
    let shown = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => ConfigFormat::Json,
        Some("yaml" | "yml") => ConfigFormat::Yaml,
        Some("toml") => ConfigFormat::Toml,
        _ => {
            return Err(ConfigError::Parse {
                file: shown,
                format: "JSON, YAML or TOML",
                source: format!(
                    "unknown extension{}; use .json, .yaml, .yml or .toml",
                    match path.extension() {
                        Some(e) => format!(" `.{}`", e.to_string_lossy()),
                        None => " (none)".into(),
                    }
                )
                .into(),
            });
        }
    };
    let read_err = |source| ConfigError::Read {
        path: shown.clone(),
        source,
    };
    // A FIFO would block the read forever, a device never end: refused before reading.
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a named pipe, socket or device)",
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_config(&text, format, &shown)
}

/// The config of a classifier level (its stages are built through their registries).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierConfig {
    backbone: Value,
    #[serde(default)]
    neck: Option<Value>,
    head: Value,
    #[serde(default)]
    act_name: Activation,
}

/// A registry building `Classifier`s whose stages come from the given registries. The neck
/// defaults to `{"type": "Identity"}`.
pub fn classifiers<B, N, H>(
    backbones: Registry<B>,
    necks: Registry<N>,
    heads: Registry<H>,
) -> Registry<Classifier<B, N, H>>
where
    B: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
    N: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
    H: Module + ModuleDisplay + Pretrainable + crate::Stage + 'static,
{
    let (backbones, necks, heads) = (Arc::new(backbones), Arc::new(necks), Arc::new(heads));
    Registry::new("model").with("Classifier", move |c: ClassifierConfig, ctx| {
        let backbone = backbones.build_in(&c.backbone, ctx, "backbone")?;
        let identity = serde_json::json!({"type": "Identity"});
        let neck = necks.build_in(c.neck.as_ref().unwrap_or(&identity), ctx, "neck")?;
        let head = heads.build_in(&c.head, ctx, "head")?;
        Classifier::new(backbone, neck, head, c.act_name)
            .map_err(|(stage, e)| ctx.invalid(stage, e))
    })
}

/// The built-in backbones: `ResNet` (torchvision), `VisionTransformer` and `ConvNeXt` (timm;
/// with `num_classes` they end in timm's head and give logits).
pub fn builtin_backbones() -> Registry<Backbone> {
    Registry::new("backbone")
        .with("ResNet", |c: ResNetConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::ResNet(net))
        })
        .with("VisionTransformer", |c: VisionTransformerConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::VisionTransformer(net))
        })
        .with("ConvNeXt", |c: ConvNeXtConfig, ctx| {
            let net = c
                .init(ctx.device())
                .map_err(|e| ConfigError::from((&*ctx, e)))?;
            Ok(Backbone::ConvNeXt(net))
        })
}

/// The built-in necks: `GlobalAveragePooling`, `Identity`.
pub fn builtin_necks() -> Registry<Neck> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    Registry::new("neck")
        .with(
            "GlobalAveragePooling",
            |c: GlobalAveragePoolingConfig, ctx| {
                let neck = c.init().map_err(|e| ConfigError::from((&*ctx, e)))?;
                Ok(Neck::GlobalAveragePooling(neck))
            },
        )
        .with("Identity", |_: NoFields, _| Ok(Neck::Identity(Identity)))
}

/// The built-in heads: `ClassifierHead`.
pub fn builtin_heads() -> Registry<Head> {
    Registry::new("head").with("ClassifierHead", |c: ClassifierHeadConfig, ctx| {
        let head = c
            .init(ctx.device())
            .map_err(|e| ConfigError::from((&*ctx, e)))?;
        Ok(Head::ClassifierHead(head))
    })
}

/// The seed's classifier with the built-in stages.
pub type DefaultClassifier = Classifier<Backbone, Neck, Head>;

/// Models: `Classifier` with the built-in stages.
pub static MODELS: LazyLock<Registry<DefaultClassifier>> =
    LazyLock::new(|| classifiers(builtin_backbones(), builtin_necks(), builtin_heads()));
/// Backbones: `ResNet`, `VisionTransformer`, `ConvNeXt`.
pub static BACKBONES: LazyLock<Registry<Backbone>> = LazyLock::new(builtin_backbones);
/// Necks: `GlobalAveragePooling`, `Identity`.
pub static NECKS: LazyLock<Registry<Neck>> = LazyLock::new(builtin_necks);
/// Heads: `ClassifierHead`.
pub static HEADS: LazyLock<Registry<Head>> = LazyLock::new(builtin_heads);
