//! float32 `.npy` batches in and out, through `npyz`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use npyz::WriterBuilder;

/// Read a float32 array: its shape and values.
pub fn read_f32(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let values = npy
        .into_vec::<f32>()
        .with_context(|| format!("{} is not a float32 array", path.display()))?;
    Ok((shape, values))
}

/// Write a float32 array, atomically (a full disk leaves no truncated file under `path`).
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> anyhow::Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    burn_pretrain::export::write_atomic(path, |tmp| {
        let file = std::fs::OpenOptions::new().write(true).open(tmp)?;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(BufWriter::new(file))
            .begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()?;
        Ok(())
    })?;
    Ok(())
}
