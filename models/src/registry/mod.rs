//! Registries: build models from configs shaped like the seed's dicts,
//! `{"type": "ResNet", "depth": 50, "pretrain": ...}`, in JSON, YAML or TOML.
//!
//! A [`Registry`] is an explicit value (`register`, `build`), not a hidden global; the
//! built-in ones are [`MODELS`], [`BACKBONES`], [`NECKS`] and [`HEADS`]. A `pretrain` may stand
//! at any level: inner levels load while they are built, outer ones after, and the
//! [`BuildReport`] keeps every load and says per subtree where the final values came from.
//!
//! One job a file: the registry, its errors and build report here, config files (formats,
//! depth guards, `pretrain` paths) in `config.rs`, the built-in tables in `builtin.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use burn_pretrain::{LoadReport, Pretrain, PretrainExt, Pretrainable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resnet::InvalidField;

mod builtin;
mod config;

pub use builtin::{
    BACKBONES, DefaultClassifier, HEADS, MODELS, NECKS, builtin_backbones, builtin_heads,
    builtin_necks, classifiers,
};
use config::kind_of;
pub use config::{
    ConfigFormat, local_pretrain_paths, parse_config, read_config, read_config_file, strip_pretrain,
};

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
    /// A level's `from` repository could not be read or stands for nothing the zoo builds.
    #[error("{path}: cannot build from repository {location}")]
    Repository {
        /// The level (`backbone.from`).
        path: String,
        /// The repository given.
        location: String,
        /// Why.
        source: Box<crate::repository::RepositoryError>,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repositories: Vec<ScopedRepository>,
}

/// A repository a level was built `from`: its config file, weights, data config and labels.
#[derive(Debug, Clone, Serialize)]
pub struct ScopedRepository {
    /// The config path of the level (empty for the root).
    pub scope: String,
    /// What was read from it.
    pub repository: crate::repository::Repository,
}

impl BuildReport {
    /// The repositories levels were built from, in build order.
    pub fn repositories(&self) -> &[ScopedRepository] {
        &self.repositories
    }

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
        for r in &self.repositories {
            let scope = if r.scope.is_empty() {
                "(root)"
            } else {
                &r.scope
            };
            writeln!(
                f,
                "[{scope}] built `{}` from {}: config {}, weights {}",
                r.repository.architecture,
                r.repository.location,
                r.repository.config_file,
                r.repository.weights
            )?;
        }
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
    repositories: Vec<ScopedRepository>,
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

impl<T: Pretrainable + burn::module::Module + 'static> Registry<T> {
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
            repositories: Vec::new(),
            dry_run,
        };
        let model = self.build_in(config, &mut ctx, "")?;
        Ok(Built {
            model,
            report: BuildReport {
                loads: ctx.loads,
                repositories: ctx.repositories,
            },
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

    /// The config a level `{"from": REPOSITORY, ...overrides}` stands for: the repository's
    /// (its architecture, `model_args`, `num_classes`, its weights as `pretrain`) with the
    /// level's other fields on top; a `pretrain` map of the level refines the repository's
    /// (fetch options, expectations, mismatch rules), its `path` replacing the weights.
    fn repository_config(
        from: Value,
        mut overrides: serde_json::Map<String, Value>,
        ctx: &mut BuildCtx<'_>,
    ) -> Result<Value, ConfigError> {
        let Value::String(location) = from else {
            return Err(ctx.invalid(
                "from",
                format!(
                    "expected a repository (`hf://org/name[@revision]` or a directory), got {}",
                    kind_of(&from)
                ),
            ));
        };
        if overrides.contains_key("type") {
            return Err(ctx.invalid(
                "type",
                "`type` and `from` both given: the repository's config decides the type",
            ));
        }
        let pretrain = overrides.remove("pretrain");
        let fetch = match &pretrain {
            Some(value @ Value::Object(m)) => {
                let mut value = value.clone();
                if !m.contains_key("path") {
                    value["path"] = Value::String(String::new());
                }
                let spec: Pretrain = serde_path_to_error::deserialize(value)
                    .map_err(|e| ctx.invalid("pretrain", e.into_inner()))?;
                spec.fetch().clone()
            }
            _ => Default::default(),
        };
        let repository =
            crate::repository::Repository::open(&location, &fetch).map_err(|source| {
                ConfigError::Repository {
                    path: ctx.path_of("from"),
                    location: location.clone(),
                    source: Box::new(source),
                }
            })?;
        let mut config = repository.model.clone();
        match pretrain {
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    config["pretrain"][k] = v;
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => config["pretrain"] = other,
        }
        for (k, v) in overrides {
            config[k] = v;
        }
        ctx.repositories.push(ScopedRepository {
            scope: ctx.path.join("."),
            repository,
        });
        Ok(config)
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
        if let Some(from) = map.remove("from") {
            let config = Self::repository_config(from, map, ctx)?;
            return self.build_level(&config, ctx);
        }
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
