//! `Pretrain`: what to load and how, from code or from a config.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::format::Convention;

/// A regex rename applied to every checkpoint key, after unwrapping and `sub_level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remap {
    /// Regular expression matched against each key.
    pub from: String,
    /// Replacement; `$1`, `${name}` refer to capture groups.
    pub to: String,
}

/// Where a pretrained checkpoint is and how to read it into a model.
///
/// Built from a path (`Pretrain::from("pretrain.pth")`, or any `&str`/`String`), refined with
/// the consuming `with_*` setters, or deserialised from a config, either as a plain string or
/// as a map:
///
/// ```
/// use burn_pretrain::Pretrain;
///
/// let from_code = Pretrain::from("ssl.pth").with_sub_level("backbone");
/// let from_json: Pretrain =
///     serde_json::from_str(r#"{"path": "ssl.pth", "sub_level": "backbone"}"#).unwrap();
/// assert_eq!(from_code, from_json);
/// let plain: Pretrain = serde_json::from_str(r#""ssl.pth""#).unwrap();
/// assert_eq!(plain.path(), "ssl.pth");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[must_use]
pub struct Pretrain {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_level: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remap: Vec<Remap>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ema: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    convention: Option<Convention>,
    #[serde(skip_serializing_if = "is_true")]
    unwrap: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    offline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ranged: bool,
}

// `timeout` is a finite number of seconds; comparing specs bitwise is what equality means here.
impl Eq for Pretrain {}

fn is_true(b: &bool) -> bool {
    *b
}

impl Pretrain {
    /// A spec for a checkpoint at `path`, with every default.
    pub fn from_path(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            sub_level: None,
            remap: Vec::new(),
            ema: false,
            convention: None,
            unwrap: true,
            sha256: None,
            offline: false,
            cache_dir: None,
            endpoint: None,
            timeout: None,
            ranged: false,
        }
    }

    /// Keep only the keys under `prefix.` and drop the prefix (`"backbone"` turns
    /// `backbone.conv1.weight` into `conv1.weight`; nested levels as `"model.backbone"`).
    pub fn with_sub_level(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.sub_level = Some(prefix.trim_end_matches('.').to_string());
        self
    }

    /// Rename keys matching the regular expression `from` to `to` (applied in the order added,
    /// after unwrapping, prefix stripping and `sub_level`).
    pub fn with_remap(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.remap.push(Remap {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Take the EMA weights (`model_ema`, `ema`, `state_dict_ema`, ...) instead of the raw ones.
    pub fn with_ema(mut self, ema: bool) -> Self {
        self.ema = ema;
        self
    }

    /// Say which naming convention the checkpoint follows instead of guessing from its format.
    pub fn with_convention(mut self, convention: Convention) -> Self {
        self.convention = Some(convention);
        self
    }

    /// Turn the automatic unwrapping of containers and prefixes (`state_dict`, `module.`,
    /// `_orig_mod.`) on or off (on by default).
    pub fn with_unwrap(mut self, unwrap: bool) -> Self {
        self.unwrap = unwrap;
        self
    }

    /// Expect this sha256 (full, or a prefix of at least 8 hex digits) of a downloaded file;
    /// a download that does not match is discarded.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.sha256 = Some(sha256.into());
        self
    }

    /// Use only the cache: never download (also `BURN_PRETRAIN_OFFLINE=1`).
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Cache downloads in `dir` instead of `$BURN_PRETRAIN_CACHE` or `~/.cache/burn-pretrain`.
    pub fn with_cache_dir(mut self, dir: impl Into<String>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The endpoint of an S3-compatible store (MinIO, Aliyun OSS) or of a Hub mirror.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Seconds a connect, read or write of a download may take (default 30, or
    /// `$BURN_PRETRAIN_TIMEOUT`).
    pub fn with_timeout(mut self, seconds: f64) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Read a remote safetensors checkpoint (or the safetensors shards of a sharded one) by
    /// byte ranges: its header, then only the tensors the plan loads — nothing is cached.
    /// For loading part of a large file (`sub_level("backbone")` of a detector, say) once.
    /// Where ranges cannot be used (a local file, a pickle-based format, `hf://`, a server
    /// without range support, offline mode, a file already in the cache) the checkpoint is
    /// fetched whole through the cache as usual.
    pub fn with_ranged(mut self, ranged: bool) -> Self {
        self.ranged = ranged;
        self
    }

    /// Whether remote safetensors are read by byte ranges instead of downloaded whole.
    pub fn ranged(&self) -> bool {
        self.ranged
    }

    /// The download timeout in seconds, if given.
    pub fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// The same spec without a sha256 (for the shards of a sharded checkpoint, whose index
    /// the hash names).
    pub(crate) fn without_sha256(mut self) -> Self {
        self.sha256 = None;
        self
    }

    /// The expected sha256, if given.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// Whether downloads are forbidden.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// The cache folder, if given.
    pub fn cache_dir(&self) -> Option<&str> {
        self.cache_dir.as_deref()
    }

    /// The store or Hub endpoint, if given.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The checkpoint's location as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `sub_level` prefix, if any.
    pub fn sub_level(&self) -> Option<&str> {
        self.sub_level.as_deref()
    }

    /// The key remaps, in order.
    pub fn remaps(&self) -> &[Remap] {
        &self.remap
    }

    /// Whether EMA weights are asked for.
    pub fn ema(&self) -> bool {
        self.ema
    }

    /// The convention forced by the user, if any.
    pub fn convention(&self) -> Option<Convention> {
        self.convention
    }

    /// Whether containers and wrapper prefixes are unwrapped automatically.
    pub fn unwrap(&self) -> bool {
        self.unwrap
    }
}

impl From<&str> for Pretrain {
    fn from(path: &str) -> Self {
        Self::from_path(path)
    }
}

impl From<String> for Pretrain {
    fn from(path: String) -> Self {
        Self::from_path(path)
    }
}

impl From<&String> for Pretrain {
    fn from(path: &String) -> Self {
        Self::from_path(path.clone())
    }
}

impl From<&std::path::Path> for Pretrain {
    fn from(path: &std::path::Path) -> Self {
        Self::from_path(path.to_string_lossy().into_owned())
    }
}

impl From<&std::path::PathBuf> for Pretrain {
    fn from(path: &std::path::PathBuf) -> Self {
        Self::from(path.as_path())
    }
}

impl From<std::path::PathBuf> for Pretrain {
    fn from(path: std::path::PathBuf) -> Self {
        Self::from(path.as_path())
    }
}

impl From<&Pretrain> for Pretrain {
    fn from(spec: &Pretrain) -> Self {
        spec.clone()
    }
}

/// The map form of a spec, with unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PretrainMap {
    path: String,
    #[serde(default)]
    sub_level: Option<String>,
    #[serde(default)]
    remap: Vec<Remap>,
    #[serde(default)]
    ema: bool,
    #[serde(default)]
    convention: Option<Convention>,
    #[serde(default = "default_true")]
    unwrap: bool,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    cache_dir: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    ranged: bool,
}

fn default_true() -> bool {
    true
}

impl<'de> Deserialize<'de> for Pretrain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = Pretrain;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a checkpoint path or a map with `path` and optional `sub_level`, `remap`, `ema`, `convention`, `unwrap`, `sha256`, `offline`, `cache_dir`, `endpoint`, `timeout`, `ranged`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pretrain, E> {
                Ok(Pretrain::from_path(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Pretrain, A::Error> {
                let m = PretrainMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let mut spec = Pretrain::from_path(m.path);
                if let Some(s) = m.sub_level {
                    spec = spec.with_sub_level(s);
                }
                spec.remap = m.remap;
                spec.ema = m.ema;
                spec.convention = m.convention;
                spec.unwrap = m.unwrap;
                spec.sha256 = m.sha256;
                spec.offline = m.offline;
                spec.cache_dir = m.cache_dir;
                spec.endpoint = m.endpoint;
                spec.timeout = m.timeout;
                spec.ranged = m.ranged;
                Ok(spec)
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_form_refuses_unknown_fields() {
        let err = serde_json::from_str::<Pretrain>(r#"{"path": "a.pth", "sublevel": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sublevel`"), "{err}");
    }

    #[test]
    fn map_form_reads_every_field() {
        let spec: Pretrain = serde_json::from_str(
            r#"{"path": "a.pth", "sub_level": "backbone.", "ema": true,
                "remap": [{"from": "^fc\\.", "to": "head.fc."}], "convention": "burn",
                "unwrap": false, "sha256": "0676ba61", "offline": true, "cache_dir": "/c",
                "endpoint": "http://127.0.0.1:9000", "timeout": 2.5, "ranged": true}"#,
        )
        .unwrap();
        let expected = Pretrain::from("a.pth")
            .with_sub_level("backbone")
            .with_ema(true)
            .with_remap("^fc\\.", "head.fc.")
            .with_convention(Convention::Burn)
            .with_unwrap(false)
            .with_sha256("0676ba61")
            .with_offline(true)
            .with_cache_dir("/c")
            .with_endpoint("http://127.0.0.1:9000")
            .with_timeout(2.5)
            .with_ranged(true);
        assert_eq!(spec, expected);
        let round = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Pretrain>(&round).unwrap(), expected);
    }

    #[test]
    fn wrong_type_names_what_is_expected() {
        let err = serde_json::from_str::<Pretrain>("42")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a checkpoint path or a map"), "{err}");
    }
}
