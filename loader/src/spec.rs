//! `Pretrain`: what to load and how, from code or from a config.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::expect::Expect;
use crate::format::Convention;
use crate::freeze::Freeze;
use crate::policy::{MismatchRule, Policy};
use crate::quantize::Quantize;
use crate::source::FetchOptions;
use crate::source::options::seconds;
use crate::view::{Align, Converter, Remap, ViewOptions};

/// Where a pretrained checkpoint is and how to read it into a model: a location, how to fetch
/// it ([`FetchOptions`]) and how to view its keys ([`ViewOptions`]).
///
/// Built from a path (`Pretrain::from("pretrain.pth")`, or any `&str`/`String`), refined with
/// the consuming `with_*` setters, or deserialised from a config, either as a plain string or
/// as a map (`path` and the fields of both option groups, flat):
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
    #[serde(flatten)]
    fetch: FetchOptions,
    #[serde(flatten)]
    view: ViewOptions,
    #[serde(skip_serializing_if = "Expect::is_default")]
    expect: Expect,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    on_mismatch: Vec<MismatchRule>,
    #[serde(skip_serializing_if = "Freeze::is_none")]
    freeze: Freeze,
    #[serde(skip_serializing_if = "Option::is_none")]
    adapter: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    merge_adapter: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantize: Option<Quantize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    transposed_views: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mmap: bool,
}

impl Pretrain {
    /// A spec for a checkpoint at `path`, with every default.
    pub fn from_path(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            fetch: FetchOptions::default(),
            view: ViewOptions::default(),
            expect: Expect::default(),
            on_mismatch: Vec::new(),
            freeze: Freeze::None,
            adapter: None,
            merge_adapter: false,
            quantize: None,
            transposed_views: false,
            mmap: false,
        }
    }

    /// Read 2-D weights that burn holds transposed (a Linear's `[out, in]` as `[in, out]`) as
    /// stored, and give the model a transposed view of them (`swap_dims` on the device)
    /// instead of transposing them on the host: the load of those tensors becomes a plain
    /// copy, as fast as reading the file. The view's memory is the checkpoint's layout, which
    /// flex's f32/f16 matmul and the GPU backends' kernels read as it is; flex's bf16 matmul
    /// copies a strided operand on every call. Not with `quantize` (quantized tensors are
    /// made contiguous by their quantization anyway) nor for an adapter's tensors.
    pub fn with_transposed_views(mut self, views: bool) -> Self {
        self.transposed_views = views;
        self
    }

    /// Whether 2-D weights load as transposed views of the stored layout (see
    /// [`with_transposed_views`](Self::with_transposed_views)).
    pub fn transposed_views(&self) -> bool {
        self.transposed_views
    }

    /// Map local checkpoint files into memory (copy-on-write) instead of reading them: a
    /// tensor that loads exactly as stored — same dtype and layout, or a transposed view of it
    /// with [`with_transposed_views`](Self::with_transposed_views) — becomes the file's pages,
    /// with no read and no copy; the load costs the headers, and pages come from disk or the
    /// page cache as the model first touches them, shared with every other process mapping the
    /// file. PyTorch's `torch.load(mmap=True)` and `safetensors`' own loads work this way.
    /// Writing to such a tensor (training in place) gives the process its own copy of the
    /// pages written; the file is never written.
    ///
    /// The trade, as with every mapped file: the file must keep its size and contents while the
    /// model lives. A file truncated under a live model makes the next touch of a page past its
    /// end a SIGBUS that ends the process; one rewritten in place changes the weights. Files
    /// replaced by a rename (as the download cache replaces them) do not: the mapping keeps the
    /// file it mapped. The checks of a load still hold: a zip member's CRC-32 and a bool
    /// tensor's values are checked (reading those pages), and a file that changed while it
    /// was opened is refused. Tensors that need a conversion (cast, split, transpose without
    /// views, adaptation), remote sources, quantized loads, adapters and tensors whose start in
    /// the file is not aligned for their element type are read as without it.
    pub fn with_mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }

    /// Whether local files are mapped rather than read (see [`with_mmap`](Self::with_mmap)).
    pub fn mmap(&self) -> bool {
        self.mmap
    }

    /// Quantize parameters while they load (burn's quantizer, applied batch by batch, so the
    /// float bytes alive at once stay near one batch); the report lists them.
    pub fn with_quantize(mut self, quantize: Quantize) -> Self {
        self.quantize = Some(quantize);
        self
    }

    /// What is quantized while loading, if anything.
    pub fn quantize(&self) -> Option<&Quantize> {
        self.quantize.as_ref()
    }

    /// Freeze tensors once the load has succeeded ([`Freeze::Loaded`]: exactly those it
    /// filled; [`Freeze::Keys`]: those whose key or model path matches), with burn's own
    /// `freeze_group`; the report lists them.
    pub fn with_freeze(mut self, freeze: Freeze) -> Self {
        self.freeze = freeze;
        self
    }

    /// What is frozen after the load.
    pub fn freeze(&self) -> &Freeze {
        &self.freeze
    }

    /// Apply the PEFT LoRA adapter at `location` (a directory, local or remote, holding
    /// `adapter_config.json` and `adapter_model.safetensors`) after the base checkpoint loads:
    /// attached as trainable burn LoRA adapters with every other tensor frozen, or merged
    /// into the weights with [`with_merge_adapter`](Self::with_merge_adapter).
    pub fn with_adapter(mut self, location: impl Into<String>) -> Self {
        self.adapter = Some(location.into());
        self
    }

    /// Merge the adapter into the weights (`W += scale · B·A`) instead of attaching it.
    pub fn with_merge_adapter(mut self, merge: bool) -> Self {
        self.merge_adapter = merge;
        self
    }

    /// The PEFT adapter applied after the load, if any.
    pub fn adapter(&self) -> Option<&str> {
        self.adapter.as_deref()
    }

    /// Whether the adapter is merged into the weights.
    pub fn merge_adapter(&self) -> bool {
        self.merge_adapter
    }

    /// Fetch as `fetch` says (integrity, cache, endpoint, offline, timeout), replacing every
    /// fetch option set before.
    pub fn with_fetch(mut self, fetch: FetchOptions) -> Self {
        self.fetch = fetch;
        self
    }

    /// Add a tensor converter (merge, split, transpose, reshape, fold a weight norm), applied
    /// after the remaps, in the order added; export undoes it.
    pub fn with_converter(mut self, converter: Converter) -> Self {
        self.view.convert.push(converter);
        self
    }

    /// The converters, in order.
    pub fn converters(&self) -> &[Converter] {
        &self.view.convert
    }

    /// Find and apply the leading-path rewrite that makes the most checkpoint keys agree with
    /// the model in name and shape ([`Align::Auto`]); reported as a view step.
    pub fn with_align(mut self, align: Align) -> Self {
        self.view.align = align;
        self
    }

    /// Replace every expectation at once.
    pub fn with_expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// Fail unless at least `fraction` (0 to 1) of the model's tensors load.
    pub fn with_coverage(mut self, fraction: f64) -> Self {
        self.expect.coverage = Some(fraction);
        self
    }

    /// Fail unless at least `fraction` of the tensors under `prefix` (`"backbone"`) load.
    pub fn with_subtree(mut self, prefix: impl Into<String>, fraction: f64) -> Self {
        let prefix = prefix.into();
        self.expect
            .subtrees
            .insert(prefix.trim_end_matches('.').to_string(), fraction);
        self
    }

    /// Fail unless every model tensor loads and every checkpoint tensor is used (except keys
    /// allowed by [`with_allow_missing`](Self::with_allow_missing) and
    /// [`with_allow_unexpected`](Self::with_allow_unexpected)).
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.expect.strict = strict;
        self
    }

    /// Model keys matching the regex `pattern` may stay unloaded.
    pub fn with_allow_missing(mut self, pattern: impl Into<String>) -> Self {
        self.expect.allow_missing.push(pattern.into());
        self
    }

    /// Checkpoint keys matching the regex `pattern` may stay unused under `strict`.
    pub fn with_allow_unexpected(mut self, pattern: impl Into<String>) -> Self {
        self.expect.allow_unexpected.push(pattern.into());
        self
    }

    /// Accept layers left half loaded (a weight without its bias), which fail by default.
    pub fn with_allow_partial(mut self, allow: bool) -> Self {
        self.expect.allow_partial = allow;
        self
    }

    /// Accept a load that loads nothing, which fails by default.
    pub fn with_allow_empty(mut self, allow: bool) -> Self {
        self.expect.allow_empty = allow;
        self
    }

    /// What to do with mismatched tensors whose checkpoint key or model path matches the regex
    /// `keys` (rules are tried in the order added; the default is [`Policy::Keep`]).
    pub fn with_on_mismatch(mut self, keys: impl Into<String>, policy: Policy) -> Self {
        self.on_mismatch.push(MismatchRule {
            keys: keys.into(),
            policy,
        });
        self
    }

    /// What the load must achieve.
    pub fn expect(&self) -> &Expect {
        &self.expect
    }

    /// The mismatch rules, in order.
    pub fn on_mismatch(&self) -> &[MismatchRule] {
        &self.on_mismatch
    }

    /// Keep only the keys under `prefix.` and drop the prefix (`"backbone"` turns
    /// `backbone.conv1.weight` into `conv1.weight`; nested levels as `"model.backbone"`).
    pub fn with_sub_level(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.view.sub_level = Some(prefix.trim_end_matches('.').to_string());
        self
    }

    /// Rename keys matching the regular expression `from` to `to` (applied in the order added,
    /// after unwrapping, prefix stripping and `sub_level`).
    pub fn with_remap(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.view.remap.push(Remap {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Take the EMA weights (`model_ema`, `ema`, `state_dict_ema`, ...) instead of the raw ones.
    pub fn with_ema(mut self, ema: bool) -> Self {
        self.view.ema = ema;
        self
    }

    /// Say which naming convention the checkpoint follows instead of guessing from its format.
    pub fn with_convention(mut self, convention: Convention) -> Self {
        self.view.convention = Some(convention);
        self
    }

    /// Turn the automatic unwrapping of containers and prefixes (`state_dict`, `module.`,
    /// `_orig_mod.`) on or off (on by default).
    pub fn with_unwrap(mut self, unwrap: bool) -> Self {
        self.view.unwrap = unwrap;
        self
    }

    /// Expect this sha256 (full, or a prefix of at least 8 hex digits) of a downloaded file;
    /// a download that does not match is discarded.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.fetch.sha256 = Some(sha256.into());
        self
    }

    /// Use only the cache: never download (also `BURN_PRETRAIN_OFFLINE=1`).
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.fetch.offline = offline;
        self
    }

    /// Cache downloads in `dir` instead of `$BURN_PRETRAIN_CACHE` or `~/.cache/burn-pretrain`.
    pub fn with_cache_dir(mut self, dir: impl Into<String>) -> Self {
        self.fetch.cache_dir = Some(dir.into());
        self
    }

    /// The endpoint of an S3-compatible store (MinIO, Aliyun OSS) or of a Hub mirror.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.fetch.endpoint = Some(endpoint.into());
        self
    }

    /// How long a connect, read or write of a download may take (default 30 s, or
    /// `$BURN_PRETRAIN_TIMEOUT` seconds).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.fetch.timeout = Some(timeout);
        self
    }

    /// Read a remote safetensors checkpoint (or the safetensors shards of a sharded one) by
    /// byte ranges: its header, then only the tensors the plan loads — nothing is cached.
    /// For loading part of a large file (`sub_level("backbone")` of a detector, say) once.
    /// Where ranges cannot be used (a local file, a pickle-based format, `hf://`, a server
    /// without range support, offline mode, a file already in the cache) the checkpoint is
    /// fetched whole through the cache as usual.
    pub fn with_ranged(mut self, ranged: bool) -> Self {
        self.fetch.ranged = ranged;
        self
    }

    /// The checkpoint's location as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How the checkpoint is fetched.
    pub fn fetch(&self) -> &FetchOptions {
        &self.fetch
    }

    /// How its keys are seen.
    pub fn view(&self) -> &ViewOptions {
        &self.view
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

/// The map form: `path` and the fields of every option group, flat, each named once here.
/// Unknown and repeated keys are refused where they stand (a config error names its path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecMap {
    path: String,
    #[serde(default)]
    sub_level: Option<String>,
    #[serde(default)]
    remap: Vec<Remap>,
    #[serde(default)]
    ema: bool,
    #[serde(default)]
    convention: Option<Convention>,
    #[serde(default = "on")]
    unwrap: bool,
    #[serde(default)]
    align: Align,
    #[serde(default)]
    convert: Vec<Converter>,
    #[serde(default)]
    expect: Expect,
    #[serde(default)]
    on_mismatch: Vec<MismatchRule>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    cache_dir: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default, deserialize_with = "seconds::deserialize")]
    timeout: Option<Duration>,
    #[serde(default)]
    ranged: bool,
    #[serde(default)]
    freeze: Freeze,
    #[serde(default)]
    adapter: Option<String>,
    #[serde(default)]
    merge_adapter: bool,
    #[serde(default)]
    quantize: Option<Quantize>,
    #[serde(default)]
    transposed_views: bool,
    #[serde(default)]
    mmap: bool,
}

fn on() -> bool {
    true
}

impl From<SpecMap> for Pretrain {
    fn from(m: SpecMap) -> Self {
        let spec = Pretrain {
            path: m.path,
            fetch: FetchOptions {
                sha256: m.sha256,
                offline: m.offline,
                cache_dir: m.cache_dir,
                endpoint: m.endpoint,
                timeout: m.timeout,
                ranged: m.ranged,
            },
            view: ViewOptions {
                sub_level: None,
                remap: m.remap,
                ema: m.ema,
                convention: m.convention,
                unwrap: m.unwrap,
                align: m.align,
                convert: m.convert,
            },
            expect: m.expect,
            on_mismatch: m.on_mismatch,
            freeze: m.freeze,
            adapter: m.adapter,
            merge_adapter: m.merge_adapter,
            quantize: m.quantize,
            transposed_views: m.transposed_views,
            mmap: m.mmap,
        };
        match m.sub_level {
            Some(level) => spec.with_sub_level(level),
            None => spec,
        }
    }
}

impl<'de> Deserialize<'de> for Pretrain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = Pretrain;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a checkpoint path or a map with `path` and optional settings (`sub_level`, `remap`, `expect`, `on_mismatch`, `sha256`, ...)",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pretrain, E> {
                Ok(Pretrain::from_path(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Pretrain, A::Error> {
                SpecMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(Pretrain::from)
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
                "endpoint": "http://127.0.0.1:9000", "timeout": 2.5, "ranged": true,
                "freeze": ["^backbone\\."], "adapter": "lora/", "merge_adapter": true,
                "transposed_views": true, "mmap": true}"#,
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
            .with_timeout(Duration::from_millis(2500))
            .with_ranged(true)
            .with_freeze(Freeze::Keys(vec!["^backbone\\.".into()]))
            .with_adapter("lora/")
            .with_merge_adapter(true)
            .with_transposed_views(true)
            .with_mmap(true);
        assert_eq!(spec, expected);
        let loaded: Pretrain =
            serde_json::from_str(r#"{"path": "a.pth", "freeze": "loaded"}"#).unwrap();
        assert_eq!(loaded.freeze(), &Freeze::Loaded);
        let err = serde_json::from_str::<Pretrain>(r#"{"path": "a.pth", "freeze": "all"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown freeze `all`"), "{err}");
        let round = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Pretrain>(&round).unwrap(), expected);
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        let spec: Pretrain = serde_json::from_str(r#"{"path": "a", "timeout": 1e300}"#).unwrap();
        assert_eq!(spec.fetch().timeout, Some(Duration::MAX));
        let spec: Pretrain = serde_json::from_str(r#"{"path": "a", "timeout": 30}"#).unwrap();
        assert_eq!(spec.fetch().timeout, Some(Duration::from_secs(30)));
        for bad in ["0", "-1"] {
            let err =
                serde_json::from_str::<Pretrain>(&format!(r#"{{"path": "a", "timeout": {bad}}}"#))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains("positive number of seconds"), "{err}");
        }
    }

    #[test]
    fn wrong_type_names_what_is_expected() {
        let err = serde_json::from_str::<Pretrain>("42")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a checkpoint path or a map"), "{err}");
    }
}
