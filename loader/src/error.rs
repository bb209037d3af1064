//! The one error type of the library.
//!
//! `Err` means the checkpoint could not be reached or read as a whole, or the load did not meet
//! its [`Expect`](crate::Expect)ations ([`Error::Unmet`], which carries the report). Otherwise
//! what happens to single tensors (a shape that does not fit, a key the model does not have)
//! is recorded in the [`LoadReport`](crate::LoadReport) and the parameter keeps its value.
//!
//! Each message says what failed and where, never why: the cause is the error's
//! [`source`](std::error::Error::source), kept whole. Print the chain (`{:#}` with anyhow, or
//! [`chain`]) to see all of it.

use std::path::PathBuf;

/// Everything that can stop a load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not exist or cannot be opened.
    #[error("cannot open checkpoint {}", path.display())]
    Open {
        /// The file asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The path names a directory, not a file.
    #[error("checkpoint {} is a directory, not a file", path.display())]
    IsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The path is a FIFO, socket or device: refused before any read (which could block).
    #[error("checkpoint {} is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a named pipe (FIFO)`).
        kind: &'static str,
    },
    /// The file has no bytes at all.
    #[error("checkpoint {} is empty (0 bytes)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The content matches no format we read.
    #[error("checkpoint {} is not a recognised format: {found}", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the first bytes look like (`an HTML page`, `random bytes 3f 9a ..`).
        found: String,
    },
    /// A TorchScript archive (`torch.jit.save`), which holds code, not a state dict.
    #[error(
        "checkpoint {} is a TorchScript archive (torch.jit.save), which holds code: in Python, torch.save(torch.jit.load(path).state_dict(), \"weights.pth\") writes its weights as a state dict to load instead",
        path.display()
    )]
    TorchScript {
        /// The file.
        path: PathBuf,
    },
    /// The format was recognised but the file is damaged or uses something unsupported.
    #[error("cannot read {format} checkpoint {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The format its content claims.
        format: crate::format::Format,
        /// What went wrong: the format reader's error, or what we found wrong.
        source: Cause,
    },
    /// A shard index (`*.index.json`) that cannot be used: bad JSON, a shard name leaving its
    /// folder, or shards that disagree with it.
    #[error("sharded checkpoint {}", path.display())]
    ShardIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong: the JSON error, or what we found wrong.
        source: Cause,
    },
    /// The checkpoint holds no tensors at all.
    #[error("checkpoint {} holds no tensors", path.display())]
    NoTensors {
        /// The file.
        path: PathBuf,
    },
    /// A tensor's bytes could not be read while applying the plan.
    #[error("cannot read tensor `{key}` from {}", path.display())]
    TensorData {
        /// The file.
        path: PathBuf,
        /// The tensor's key as stored in the checkpoint.
        key: String,
        /// The read's error.
        source: std::io::Error,
    },
    /// `sub_level` names a prefix no key carries.
    #[error(
        "sub_level `{sub_level}` matches no key in {}; top-level names are: {available}",
        path.display()
    )]
    SubLevelNotFound {
        /// The file.
        path: PathBuf,
        /// The prefix asked for.
        sub_level: String,
        /// The first segments that do exist, comma-separated.
        available: String,
    },
    /// EMA weights were asked for but the checkpoint has none.
    #[error("ema requested but {} holds no EMA weights (looked for: {looked_for})", path.display())]
    EmaNotFound {
        /// The file.
        path: PathBuf,
        /// The container names tried.
        looked_for: String,
    },
    /// A checkpoint location that cannot be parsed.
    #[error("invalid checkpoint location `{uri}`")]
    InvalidUri {
        /// The location, secrets removed.
        uri: String,
        /// Why: the URL parser's error, or what is missing.
        source: Cause,
    },
    /// The scheme's cargo feature is off.
    #[error("cannot fetch {uri}: burn-pretrain was built without its `{feature}` feature")]
    SchemeDisabled {
        /// The location, secrets removed.
        uri: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The remote has no such file (HTTP 404, missing object, unknown Hub file).
    #[error("{uri} does not exist (404)")]
    NotFound {
        /// The location, secrets removed.
        uri: String,
    },
    /// A download failed for good (after retries where retrying made sense).
    #[error("cannot download {uri}")]
    Download {
        /// The location, secrets removed.
        uri: String,
        /// The client's or the store's error, or what the answer lacked.
        source: Cause,
    },
    /// The downloaded bytes do not have the expected sha256; nothing was kept.
    #[error("{uri} has sha256 {found}, expected {expected}; the download was discarded")]
    HashMismatch {
        /// The location, secrets removed.
        uri: String,
        /// The expected hash (or its prefix).
        expected: String,
        /// The hash of what arrived.
        found: String,
    },
    /// Offline mode and the file is not in the cache.
    #[error("{uri} is not in the cache ({}) and downloads are off (offline)", cache.display())]
    Offline {
        /// The location, secrets removed.
        uri: String,
        /// Where it would be cached.
        cache: PathBuf,
    },
    /// The cache folder or one of its files cannot be used.
    #[error("cache {}", path.display())]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A remap pattern is not a valid regular expression.
    #[error("invalid remap pattern `{pattern}`")]
    InvalidRemap {
        /// The pattern given.
        pattern: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A remap replacement names a capture group its pattern does not have (`$1_` is the
    /// group named `1_`: write `${1}_`).
    #[error("remap `{pattern}` → `{replacement}`: {detail}")]
    InvalidReplacement {
        /// The pattern.
        pattern: String,
        /// The replacement given.
        replacement: String,
        /// Which group is unknown and how to write it.
        detail: String,
    },
    /// A converter does not fit the checkpoint (a key it names is not there, shapes that do not
    /// concatenate or split, a permutation of other axes) or is not well formed.
    #[error("converter {converter}: {detail}")]
    InvalidConverter {
        /// The converter, as written.
        converter: String,
        /// What does not fit, with the keys and shapes.
        detail: String,
    },
    /// A key pattern of an expectation or mismatch rule is not a valid regular expression.
    #[error("invalid pattern `{pattern}` in `{field}`")]
    InvalidPattern {
        /// The spec field (`expect.allow_missing`, `on_mismatch.keys`).
        field: String,
        /// The pattern given.
        pattern: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A file the spec names besides the checkpoint (a `select_rows` file) that cannot be read
    /// whole: missing, not a regular file, too large or not text.
    #[error("`{field}`: cannot read {}", path.display())]
    SpecFile {
        /// The spec field that names it.
        field: String,
        /// The file.
        path: PathBuf,
        /// Why: what the operating system said, or what the file is instead.
        source: std::io::Error,
    },
    /// A checkpoint changed (was truncated or rewritten in place) while its tensors were read:
    /// nothing read from it is used, and the model is unchanged.
    #[error("checkpoint {} changed while it was read, model unchanged", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        source: std::io::Error,
    },
    /// A PEFT adapter that cannot be applied to this model: its config, an unknown target,
    /// a rank or shape that disagrees. Nothing was changed.
    #[error("PEFT adapter {location}: {detail}; model unchanged")]
    Adapter {
        /// The adapter (its directory or file), secrets removed.
        location: String,
        /// What is wrong, naming the key.
        detail: String,
    },
    /// A value of the spec that cannot be used.
    #[error("`{field}`: {detail}")]
    InvalidSpec {
        /// The spec field.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The load did not meet its expectations (by default: it loaded nothing, or left a layer
    /// half loaded). Nothing was read into the model, which is unchanged; the report says
    /// what the load would have done.
    #[error("loading {} into [{}] did not meet expectations, model unchanged:\n  {}{}", report.source(), report.model(), unmet.join("\n  "), unmet_details(report))]
    Unmet {
        /// Each unmet expectation, one line.
        unmet: Vec<String>,
        /// The plan's report.
        report: Box<crate::LoadReport>,
    },
    /// Two checkpoint keys end up with the same name after the view's steps.
    #[error("keys `{first}` and `{second}` of {} both become `{key}` after remapping", path.display())]
    KeyCollision {
        /// The file.
        path: PathBuf,
        /// The shared name.
        key: String,
        /// The first original key.
        first: String,
        /// The second original key.
        second: String,
    },
    /// Two parameters of the model claim the same checkpoint key.
    #[error("model parameters `{first}` and `{second}` both map to checkpoint key `{key}`")]
    DuplicateTarget {
        /// The key.
        key: String,
        /// The first parameter's path in the model.
        first: String,
        /// The second parameter's path.
        second: String,
    },
    /// A checkpoint whose tensors have no names (a bincode burn record) does not match the
    /// model it is named by: another count of tensors, or another shape at some position.
    #[error(
        "{} stores no names (a bincode burn record); its tensors are named by the model's, in burn's field order, and {detail}",
        path.display()
    )]
    Positional {
        /// The checkpoint.
        path: PathBuf,
        /// The first difference.
        detail: String,
    },
    /// The apply walk of a model's mapping did not meet what its plan walk met (a hand-written
    /// `Pretrainable` impl whose mapping depends on something other than the model and the
    /// checkpoint). The model is unchanged.
    #[error(
        "the mapping of [{model}] changed between planning and applying ({detail}); model unchanged"
    )]
    MappingChanged {
        /// The model's type name.
        model: String,
        /// The first difference: keys met by one walk and not the other, or planned tensors
        /// the apply walk did not take.
        detail: String,
    },
    /// Writing an exported checkpoint failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        source: Cause,
    },
}

/// The error underneath one of ours: a dependency's error kept whole (its own `source()` chain
/// included), or a description of what we found wrong.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error: cause: cause …`, each level of `error`'s source chain once, on one line.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// A cause with what we were doing when it happened (`writing the cache file: <io error>`).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub(crate) struct Context {
    what: String,
    source: Cause,
}

/// Wrap `source` with `what` we were doing.
pub(crate) fn context(what: &str, source: impl Into<Cause>) -> Cause {
    Box::new(Context {
        what: what.to_string(),
        source: source.into(),
    })
}

/// The report's keys and hints under an unmet expectation's lines, each on its own line.
fn unmet_details(report: &crate::LoadReport) -> String {
    report
        .unmet_details()
        .iter()
        .map(|line| format!("\n  {line}"))
        .collect()
}
