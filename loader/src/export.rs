//! Export: a burn model written back in PyTorch's names and layouts, through the same mapping
//! that loads it (Linear weights transposed back, packed tensors stacked again,
//! `num_batches_tracked` added), as a safetensors file PyTorch's twin loads strictly.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use burn::tensor::TensorData;

use crate::error::{Cause, Error, Result};
use crate::format::{Checkpoint, Convention, DType};
use crate::layout::{concat, transpose};
use crate::mapping::{Layout, Mapper, Mode, Pretrainable};
use crate::plan::unique_keys;
use crate::view::Converter;
use crate::view::convert;

/// Every tensor of `model` under its PyTorch checkpoint key, in PyTorch's layout, in the
/// order the model declares them (a state dict's order).
pub fn export_tensors<M: Pretrainable + Clone>(model: &M) -> Result<Vec<(String, TensorData)>> {
    export_with(model, None)
}

/// [`export_tensors`] in the form of a checkpoint whose keys are `keys`: where a layer maps
/// several forms (attention as one packed `in_proj_weight` or as separate `q_proj`/`k_proj`/
/// `v_proj` Linears), it writes the one those keys hold, as loading chose it — so a model
/// loaded from a checkpoint exports back to that checkpoint's layout.
pub fn export_tensors_like<M: Pretrainable + Clone>(
    model: &M,
    keys: &BTreeSet<String>,
) -> Result<Vec<(String, TensorData)>> {
    export_with(model, Some(keys))
}

/// [`export_tensors`] with `converters` undone, last first, so that a model loaded through
/// them writes the checkpoint's own keys and layout back (a merge split again, a split
/// concatenated, a transpose or weight norm reversed). With `like` (the checkpoint it was
/// loaded from) the forms follow that checkpoint's keys, as [`export_tensors_like`] does, and
/// its shapes give a merge its part sizes and a reshape its stored shape; without it a merge
/// splits into equal parts and a reshape stays as the model holds it. Remaps are not undone.
pub fn export_converted<M: Pretrainable + Clone>(
    model: &M,
    converters: &[Converter],
    like: Option<&Checkpoint>,
) -> Result<Vec<(String, TensorData)>> {
    let compiled = converters
        .iter()
        .map(convert::Compiled::new)
        .collect::<Result<Vec<_>>>()?;
    let stored: Option<HashMap<String, Vec<usize>>> = like.map(|checkpoint| {
        checkpoint
            .entries()
            .iter()
            .map(|e| (e.key().to_string(), e.shape().to_vec()))
            .collect()
    });
    let tensors = match &stored {
        Some(stored) => {
            let keys = convert::converted_names(&compiled, &stored.keys().cloned().collect());
            export_with(model, Some(&keys))?
        }
        None => export_with(model, None)?,
    };
    convert::undo(&compiled, tensors, stored.as_ref())
}

fn export_with<M: Pretrainable + Clone>(
    model: &M,
    keys: Option<&BTreeSet<String>>,
) -> Result<Vec<(String, TensorData)>> {
    let mut mapper = Mapper::new(Convention::Pytorch, keys, Mode::Export(HashMap::new()));
    model.clone().map_pretrain(&mut mapper);
    let Mode::Export(mut values) = mapper.mode else {
        unreachable!("the mapper was made in export mode")
    };
    unique_keys(&mapper.targets)?;
    let mut constants = mapper.constants.into_iter().peekable();
    let mut out = Vec::with_capacity(mapper.targets.len());
    for (i, target) in mapper.targets.into_iter().enumerate() {
        while let Some((_, key, value)) = constants.next_if(|(at, _, _)| *at <= i) {
            out.push((key, value));
        }
        let mut parts = Vec::with_capacity(target.pieces.len());
        for piece in &target.pieces {
            // Taken by an earlier target: one parameter mapped under two keys.
            let value = values
                .remove(&piece.model_path)
                .ok_or_else(|| Error::DuplicateTarget {
                    key: piece.model_path.clone(),
                    first: piece.model_path.clone(),
                    second: target.key.clone(),
                })?;
            parts.push(match piece.layout {
                Layout::Transposed if value.shape().len() == 2 => transpose(value),
                _ => value,
            });
        }
        let tensor = if parts.len() == 1 {
            parts.remove(0)
        } else {
            concat(&parts, target.axis)
        };
        out.push((target.key, tensor));
    }
    out.extend(constants.map(|(_, key, value)| (key, value)));
    Ok(out)
}

/// [`PretrainExt::save_pretrained`](crate::PretrainExt::save_pretrained): write `model` to
/// `path` as safetensors in PyTorch's names and layouts
/// (`torch.nn.Module.load_state_dict(safetensors.torch.load_file(path), strict=True)` on the
/// PyTorch twin accepts it). Written atomically: a temporary file in the same folder, synced,
/// then renamed; on any error nothing is left behind. Returns the number of tensors written.
pub(crate) fn save_pretrained<M: Pretrainable + Clone>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<usize> {
    let path = path.as_ref();
    let tensors = export_tensors(model)?;
    write_safetensors(path, &tensors)?;
    Ok(tensors.len())
}

/// Write `tensors` to `path` as a safetensors file (atomically, with [`write_atomic`]).
pub(crate) fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) -> Result<()> {
    let fail = |source: Cause| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (key, data) in tensors {
        let dtype = DType::from_burn(data.dtype()).ok_or_else(|| {
            fail(
                format!(
                    "`{key}` has dtype {:?}, which safetensors cannot hold",
                    data.dtype()
                )
                .into(),
            )
        })?;
        let view = safetensors::tensor::TensorView::new(
            crate::format::safetensors_dtype(dtype),
            data.shape().to_vec(),
            data.as_bytes(),
        )
        .map_err(|e| fail(format!("`{key}`: {e}").into()))?;
        views.push((key.clone(), view));
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("producer".to_string(), "burn-pretrain".to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| fail(e.into()))?;
    write_atomic(path, |file| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)?
            .write_all(&bytes)
            .map_err(Cause::from)
    })
}

/// Write `path` atomically: `write` fills a temporary file in the same folder (created with
/// mode 0666 less the umask, as a plain `File::create` would be), which is then synced and
/// renamed over `path`. On any error — `write`'s, the sync's or the rename's — the temporary
/// file is removed and `path` is as it was; the error names `path`. Used for every file this
/// project writes ([`save_pretrained`], the CLI's `convert` and `.npy` outputs).
pub fn write_atomic<T>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<T, Cause>,
) -> Result<T> {
    let fail = |source: Cause| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".burn-pretrain-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(|e| {
        fail(crate::error::context(
            "creating a temporary file beside it",
            e,
        ))
    })?;
    let value = write(tmp.path()).map_err(fail)?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(crate::error::context("syncing it to disk", e)))?;
    // The error owns the temporary file; dropping it here removes it.
    tmp.persist(path)
        .map_err(|e| fail(crate::error::context("renaming it into place", e.error)))?;
    Ok(value)
}

#[cfg(test)]
mod atomic_tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn written_whole_with_the_umask_a_plain_create_gets() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        let n = write_atomic(&out, |tmp| {
            std::fs::write(tmp, b"abc")?;
            Ok(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::read(&out).unwrap(), b"abc");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&out), mode(&plain));
        }
    }

    #[test]
    fn failures_leave_nothing_behind_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        std::fs::write(&out, b"old").unwrap();
        // The writer fails half way: the old file stays, no temporary file is left.
        let err = write_atomic(&out, |tmp| -> std::result::Result<(), Cause> {
            std::fs::write(tmp, b"half")?;
            Err("disk full".into())
        })
        .unwrap_err();
        assert_eq!(
            crate::error::chain(&err),
            format!("cannot write {}: disk full", out.display())
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
        // The rename fails (a directory is in the way): still nothing left behind.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("keep"), b"x").unwrap();
        let err = write_atomic(&blocked, |tmp| {
            std::fs::write(tmp, b"new").map_err(Cause::from)
        })
        .unwrap_err();
        let msg = crate::error::chain(&err);
        assert!(
            msg.starts_with(&format!(
                "cannot write {}: renaming it into place",
                blocked.display()
            )),
            "{msg}"
        );
        assert_eq!(entries(dir.path()), ["blocked", "out.bin"]);
    }
}
