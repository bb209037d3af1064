//! float32 `.npy` batches in and out, through `npyz`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use npyz::WriterBuilder;

/// The longest header numpy reads by default (`max_header_size`, numpy ≥ 1.24).
const MAX_HEADER: usize = 10_000;

/// Check the header before npyz parses it: at most [`MAX_HEADER`] bytes, brackets nested at
/// most 4 deep (a dict holding a shape tuple needs 2). npyz's header parser takes exponential
/// time on deeply nested brackets (found by fuzzing).
fn check_header(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    burn_pretrain::source::local::regular_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut head = Vec::new();
    File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take((12 + MAX_HEADER) as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let not_npy = || anyhow::anyhow!("{} is not a .npy file", path.display());
    if !head.starts_with(b"\x93NUMPY") || head.len() < 10 {
        return Err(not_npy());
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        _ if head.len() >= 12 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        _ => return Err(not_npy()),
    };
    anyhow::ensure!(
        len <= MAX_HEADER,
        "{}: a .npy header of {len} bytes; numpy writes and reads at most {MAX_HEADER}",
        path.display()
    );
    let text = head.get(start..start + len).ok_or_else(not_npy)?;
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                anyhow::ensure!(
                    depth <= 4,
                    "{}: the .npy header nests brackets more than 4 deep",
                    path.display()
                );
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // npyz multiplies the dimensions unchecked to compute strides (found by fuzzing: shape
    // `(0, 5, 11257193632155944733, 8)` overflowed): refused here when the non-zero
    // dimensions' product does not fit in 64 bits.
    let text = String::from_utf8_lossy(text);
    if let Some(dims) = text
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('('))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dims, _)| dims)
    {
        let product = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .filter_map(|d| d.parse::<u64>().ok())
            .filter(|&d| d != 0)
            .try_fold(1u64, u64::checked_mul);
        anyhow::ensure!(
            product.is_some(),
            "{}: the .npy shape ({dims}) has more elements than 64 bits count",
            path.display()
        );
    }
    Ok(())
}

/// Read a float32 array: its shape and values.
pub fn read_f32(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    check_header(path)?;
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
    burn_pretrain::__cli::write_atomic(path, |tmp| {
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
