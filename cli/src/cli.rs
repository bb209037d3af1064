//! The command line, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load pretrained weights into burn models: inspect checkpoints, plan and run loads, convert.
#[derive(Debug, Parser)]
#[command(
    name = "pretrain",
    version,
    about,
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 an expectation not met (`check --expect`, a `pretrain`'s `expect`, nothing loaded, a layer half loaded)."
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a checkpoint's tensors (key, shape, dtype), folded, with totals. Reads no tensor bytes.
    Inspect(InspectArgs),
    /// Plan loading a config's `pretrain`s from headers only: what would load, per subtree.
    Check(CheckArgs),
    /// Build a config's model, load its `pretrain`s, run one forward pass.
    Load(LoadArgs),
    /// Write a checkpoint's (viewed, remapped) tensors as burnpack or safetensors.
    Convert(ConvertArgs),
    /// Build a config's model, load its `pretrain`s, write it back in PyTorch's names and layouts.
    Export(ExportArgs),
    /// Classify images with a repository's model: prepared as its library prepares them, top-K classes.
    Predict(PredictArgs),
    /// Write images prepared as a repository's model sees them (timm's eval transform) as .npy.
    Preprocess(PreprocessArgs),
    /// Embed sentences with a sentence-transformers (or BERT) repository: tokenise, encode, pool, normalise.
    Embed(EmbedArgs),
    /// The seed's three scenarios on bundled checkpoints, on the CPU.
    Demo(DemoArgs),
    /// Serve a device of this machine to burn's remote backend (`--device ws://HOST:PORT`).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A checkpoint: path, file://, http(s)://, s3://, gs://, az:// or hf://.
    pub source: String,
    /// Keys exactly as stored (no unwrapping or prefix stripping).
    #[arg(long)]
    pub raw: bool,
    /// Read a remote safetensors checkpoint's header by byte ranges instead of downloading it.
    #[arg(long)]
    pub ranged: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A model config (JSON, YAML or TOML) with `pretrain` at any level.
    pub config: PathBuf,
    /// Require SUBTREE to load at least FRACTION of its tensors (e.g. backbone=1.0); exit 3 if not.
    #[arg(long, value_name = "SUBTREE=FRACTION")]
    pub expect: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--device`: a backend compiled in, or a burn remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceArg {
    Flex,
    Ndarray,
    Wgpu,
    Tch,
    /// `ws://HOST:PORT`: device 0 of a burn remote server (`pretrain serve`).
    Remote(String),
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Tch => "tch",
            Self::Remote(url) => url,
        })
    }
}

impl std::str::FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "flex" => Self::Flex,
            "ndarray" => Self::Ndarray,
            "wgpu" => Self::Wgpu,
            "tch" => Self::Tch,
            url if url.starts_with("ws://") || url.starts_with("wss://") => {
                Self::Remote(url.to_string())
            }
            other => {
                return Err(format!(
                    "`{other}`: expected flex, ndarray, wgpu, tch or ws://HOST:PORT (a burn remote server)"
                ));
            }
        })
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A model config (JSON, YAML or TOML) with `pretrain` at any level.
    pub config: PathBuf,
    /// The device to load onto: flex, ndarray, wgpu, tch, or ws://HOST:PORT (a burn remote
    /// server, e.g. `pretrain serve`: the tensors are prepared here and sent once).
    #[arg(long, default_value = "flex")]
    pub device: DeviceArg,
    /// A float32 .npy batch [batch, channels, height, width] to run; a generated one otherwise.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Save the output as .npy.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A checkpoint: path or URL.
    pub source: String,
    /// The file to write: `.bpk` (burnpack) or `.safetensors`.
    pub out: PathBuf,
    /// Keep only the keys under this prefix, without it.
    #[arg(long)]
    pub sub_level: Option<String>,
    /// Rename keys matching the regex FROM to TO (repeatable).
    #[arg(long, value_name = "FROM=TO")]
    pub remap: Vec<String>,
    /// Write only the tensors this config's model would load (plan from its root `pretrain` options).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Quantize while converting: `q8s`, `q4s`, `q2s`, `q8f`, `q4f`, `q2f` (every Linear weight,
    /// blocks of 32, f16 scales) or the `quantize` map as JSON (`{"value": "q4s", "block": 64,
    /// "params": ["^blocks\\."]}`). Needs --config: the model is loaded quantized (peak memory
    /// near its quantized size) and saved as burn holds it (burn paths and layout) to a `.bpk`
    /// that burn-store's `BurnpackStore` loads.
    #[arg(long, value_name = "SCHEME", requires = "config")]
    pub quantize: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A model config (JSON, YAML or TOML) with `pretrain` at any level.
    pub config: PathBuf,
    /// The `.safetensors` file to write; PyTorch's twin loads it with `load_state_dict(strict=True)`.
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model repository (a directory with config.json, or hf://org/name[@revision]), or a
    /// config whose root is `{"from": REPOSITORY, ...}`.
    pub source: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// The device to run on: flex, ndarray, wgpu, tch, or ws://HOST:PORT (a burn remote server).
    #[arg(long, default_value = "flex")]
    pub device: DeviceArg,
    /// Print JSON: {"predictions": [{"image", "top": [{"index", "label", "probability"}]}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// A model repository (a directory with config.json, or hf://org/name[@revision]), or a
    /// config whose root is `{"from": REPOSITORY, ...}`.
    pub source: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The float32 .npy batch [images, 3, height, width] to write.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A sentence-transformers or transformers BERT repository: a directory, or
    /// hf://org/name[@revision].
    pub source: String,
    /// The sentences, one embedding each.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// Save the embeddings as a float32 .npy [texts, dimension].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The device to run on: flex, ndarray, wgpu, tch, or ws://HOST:PORT (a burn remote server).
    #[arg(long, default_value = "flex")]
    pub device: DeviceArg,
    /// Print JSON: {"dimension", "pooling", "normalize", "embeddings": [{"text", "embedding"}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: a free one, printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: String,
    /// The device served: flex, ndarray or wgpu (a backend compiled in).
    #[arg(long, default_value = "flex")]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}
