//! PyTorch checkpoints (zip, legacy pickle, TAR) through `pytorch-reader`.

use std::fs::File;
use std::path::Path;

use pytorch_reader::PytorchReader;

use super::{DType, Format, TensorEntry};
use crate::error::{Cause, Error, Result, context};

pub(super) fn open(path: &Path, format: Format) -> Result<Vec<TensorEntry>> {
    if format == Format::PytorchZip {
        reject_torchscript(path)?;
    }
    let reader = PytorchReader::new(path).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        format,
        source: e.into(),
    })?;
    Ok(reader
        .into_tensors()
        .into_iter()
        .map(|(key, tensor)| {
            let dtype = dtype(tensor.dtype());
            let shape = tensor.shape().to_vec();
            TensorEntry::new(key, shape, dtype, move || tensor.read())
        })
        .collect())
}

/// A TorchScript archive is a zip too, but holds code (`code/`, `constants.pkl`) and the
/// weights of a scripted module, which `pytorch-reader` cannot map to a state dict.
fn reject_torchscript(path: &Path) -> Result<()> {
    let corrupt = |source: Cause| Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::PytorchZip,
        source,
    };
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let archive = zip::ZipArchive::new(file).map_err(|e| corrupt(context("zip archive", e)))?;
    let scripted = archive.file_names().any(|name| {
        name.is_ok_and(|name| {
            name.ends_with("/constants.pkl") || name.split('/').nth(1) == Some("code")
        })
    });
    if scripted {
        return Err(Error::TorchScript {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn dtype(dtype: pytorch_reader::DType) -> DType {
    use pytorch_reader::DType as P;
    match dtype {
        P::F64 => DType::F64,
        P::F32 => DType::F32,
        P::F16 => DType::F16,
        P::BF16 => DType::BF16,
        P::I64 => DType::I64,
        P::I32 => DType::I32,
        P::I16 => DType::I16,
        P::I8 => DType::I8,
        P::U64 => DType::U64,
        P::U32 => DType::U32,
        P::U16 => DType::U16,
        P::U8 => DType::U8,
        P::Bool => DType::Bool,
    }
}
