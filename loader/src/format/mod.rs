//! Formats: a file's bytes → an ordered list of tensors (key, shape, dtype, lazy bytes).
//!
//! The format is recognised from the content, never from the extension. Parsing itself is
//! left to the crates made for it: `pytorch-reader` (zip, legacy pickle, TAR), `safetensors`
//! and `burn-pack`. Opening reads headers only; a tensor's bytes are read when
//! [`TensorEntry::read`] is called. A sharded checkpoint (an `*.index.json` and its shard
//! files, see `sharded.rs`) opens as one checkpoint.

pub(crate) mod burn_bincode;
pub(crate) mod burn_record;
mod burnpack;
pub(crate) mod checkpoint;
mod pytorch;
mod safetensors;
pub(crate) mod sharded;
mod sniff;
pub(crate) mod torch_pickle;

pub use checkpoint::{Checkpoint, TensorEntry};
pub(crate) use checkpoint::{Opened, Span, combined_crc32, crc32_is};
pub(crate) use safetensors::safetensors_dtype;

use std::fmt;

use serde::Serialize;

/// The container a checkpoint was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// `torch.save` since PyTorch 1.6: a zip archive with `data.pkl`.
    PytorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: the pickle stream of PyTorch ≤ 1.5.
    PytorchLegacy,
    /// The TAR layout of PyTorch before 0.1.10.
    PytorchTar,
    /// Hugging Face safetensors.
    Safetensors,
    /// burn's own burnpack.
    Burnpack,
    /// A record of burn ≤ 0.21's recorders: named MessagePack (`.mpk`), JSON, either gzipped
    /// (`.mpk.gz`, `.json.gz`); bincode (`.bin`) is recognised and refused.
    BurnRecord,
}

impl Format {
    /// The naming convention tensors of this format follow unless told otherwise.
    pub fn convention(self) -> Convention {
        match self {
            Format::Burnpack | Format::BurnRecord => Convention::Burn,
            _ => Convention::Pytorch,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::PytorchZip => "PyTorch zip",
            Format::PytorchLegacy => "PyTorch legacy",
            Format::PytorchTar => "PyTorch TAR",
            Format::Safetensors => "safetensors",
            Format::Burnpack => "burnpack",
            Format::BurnRecord => "burn record",
        })
    }
}

/// How a checkpoint names and lays out layer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// PyTorch: Linear weight `[out, in]`, norms `weight`/`bias`, BatchNorm `num_batches_tracked`.
    Pytorch,
    /// burn: Linear weight `[in, out]`, norms `gamma`/`beta`.
    Burn,
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 64-bit float.
    F64,
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 16-bit signed integer.
    I16,
    /// 8-bit signed integer.
    I8,
    /// 64-bit unsigned integer.
    U64,
    /// 32-bit unsigned integer.
    U32,
    /// 16-bit unsigned integer.
    U16,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean, one byte each.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The same type as burn names it.
    pub fn to_burn_dtype(self) -> burn::tensor::DType {
        use burn::tensor::DType as B;
        match self {
            DType::F64 => B::F64,
            DType::F32 => B::F32,
            DType::F16 => B::F16,
            DType::BF16 => B::BF16,
            DType::I64 => B::I64,
            DType::I32 => B::I32,
            DType::I16 => B::I16,
            DType::I8 => B::I8,
            DType::U64 => B::U64,
            DType::U32 => B::U32,
            DType::U16 => B::U16,
            DType::U8 => B::U8,
            DType::Bool => B::Bool(burn::tensor::BoolStore::Native),
        }
    }

    pub(crate) fn from_burn(dtype: burn::tensor::DType) -> Option<Self> {
        use burn::tensor::DType as B;
        Some(match dtype {
            B::F64 => DType::F64,
            B::F32 | B::Flex32 => DType::F32,
            B::F16 => DType::F16,
            B::BF16 => DType::BF16,
            B::I64 => DType::I64,
            B::I32 => DType::I32,
            B::I16 => DType::I16,
            B::I8 => DType::I8,
            B::U64 => DType::U64,
            B::U32 => DType::U32,
            B::U16 => DType::U16,
            B::U8 => DType::U8,
            B::Bool(_) => DType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U64 => "u64",
            DType::U32 => "u32",
            DType::U16 => "u16",
            DType::U8 => "u8",
            DType::Bool => "bool",
        })
    }
}
