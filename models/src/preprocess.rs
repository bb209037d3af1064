//! Images prepared exactly as timm's eval transform prepares them for a repository's data
//! config (`timm.data.create_transform(**resolve_data_config(model=…))`, `is_training=False`):
//! decoded to RGB, the shorter side resized to `floor(size / crop_pct)` with the config's
//! interpolation (PIL's antialiased filters, 8-bit between and after the two passes, as PIL
//! keeps the image, the more-shrunk axis first as Pillow 13 mostly orders them), the centre cropped to the input size (torchvision's `CenterCrop`,
//! Python's rounding of the offset), scaled to `[0, 1]` and normalised by the mean and std.

use std::path::Path;

use burn::tensor::TensorData;
use burn_pretrain::policy::resample::{Filter, resize_plane_like_pil};
use image::RgbImage;

use crate::repository::DataConfig;

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// The file is not an image this crate decodes (PNG, JPEG).
    #[error("cannot read image {path}")]
    Image {
        /// The file.
        path: String,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// The data config asks for what is not built.
    #[error("{0}")]
    Unsupported(String),
}

/// Decode the PNG or JPEG at `path` to 8-bit RGB (PIL's `convert("RGB")`).
pub fn load_image(path: &Path) -> Result<RgbImage, PreprocessError> {
    image::open(path)
        .map(|img| img.to_rgb8())
        .map_err(|source| PreprocessError::Image {
            path: path.display().to_string(),
            source,
        })
}

/// Python's `round` (half to even) of `n / 2`: torchvision's crop offset.
fn half_to_even(n: usize) -> usize {
    match (n % 2, (n / 2) % 2) {
        (1, 1) => n / 2 + 1,
        _ => n / 2,
    }
}

/// The image as the model sees it: `[3, height, width]` f32, normalised.
pub fn eval_transform(img: &RgbImage, data: &DataConfig) -> Result<TensorData, PreprocessError> {
    let [_, th, tw] = data.input_size;
    let filter = match data.interpolation.as_str() {
        "bicubic" => Filter::Bicubic,
        "bilinear" => Filter::Bilinear,
        other => {
            return Err(PreprocessError::Unsupported(format!(
                "interpolation `{other}` is not built (bicubic, bilinear)"
            )));
        }
    };
    let crop_pct = if data.crop_pct > 0.0 {
        data.crop_pct
    } else {
        0.875
    };
    let scale = |n: usize| (n as f64 / crop_pct).floor() as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // (height, width) after the resize.
    let (rh, rw) = match data.crop_mode.as_str() {
        "center" if scale(th) == scale(tw) => {
            // torchvision's `Resize(int)`: the shorter side to the size, the longer scaled
            // and truncated.
            let s = scale(th);
            let (short, long) = (w.min(h), w.max(h));
            let long = (s as f64 * long as f64 / short as f64) as usize;
            if w <= h { (long, s) } else { (s, long) }
        }
        "squash" => (scale(th), scale(tw)),
        mode => {
            return Err(PreprocessError::Unsupported(format!(
                "crop_mode `{mode}` for input {th}×{tw} is not built (center with a square input, squash)"
            )));
        }
    };
    if rh < th || rw < tw {
        return Err(PreprocessError::Unsupported(format!(
            "the resized image {rh}×{rw} is smaller than the crop {th}×{tw} (crop_pct {crop_pct} > 1 pads, which is not built)"
        )));
    }
    let (top, left) = (half_to_even(rh - th), half_to_even(rw - tw));
    let mut out = Vec::with_capacity(3 * th * tw);
    for c in 0..3 {
        let plane: Vec<f32> = img.pixels().map(|p| f32::from(p.0[c])).collect();
        let resized = resize_plane_like_pil(&plane, (h, w), (rh, rw), filter);
        let (mean, std) = (
            data.mean[c.min(data.mean.len() - 1)],
            data.std[c.min(data.std.len() - 1)],
        );
        for y in top..top + th {
            out.extend(
                resized[y * rw + left..y * rw + left + tw]
                    .iter()
                    .map(|&v| ((f64::from(v) / 255.0 - mean) / std) as f32),
            );
        }
    }
    Ok(TensorData::new(out, [3, th, tw]))
}

/// Images decoded and prepared as one batch `[n, 3, H, W]` (`load_image`, then
/// `eval_transform`); the first file that fails names itself.
pub fn prepare_images<P: AsRef<Path>>(
    paths: &[P],
    data: &DataConfig,
) -> Result<TensorData, PreprocessError> {
    let [_, h, w] = data.input_size;
    let mut values = Vec::with_capacity(paths.len() * 3 * h * w);
    for path in paths {
        let img = load_image(path.as_ref())?;
        values.extend(eval_transform(&img, data)?.iter::<f32>());
    }
    Ok(TensorData::new(values, [paths.len(), 3, h, w]))
}

/// One class of a prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Class {
    /// The class index.
    pub index: usize,
    /// Its name, when the repository names its classes.
    pub label: Option<String>,
    /// The softmax probability.
    pub probability: f32,
}

/// The `k` most probable classes of one row of probabilities, most probable first (ties by
/// index), named from `labels` where there is a name for the index.
pub fn top_k(probabilities: &[f32], k: usize, labels: Option<&[String]>) -> Vec<Class> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| {
        probabilities[b]
            .total_cmp(&probabilities[a])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(k)
        .map(|index| Class {
            index,
            label: labels.and_then(|l| l.get(index)).cloned(),
            probability: probabilities[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_round_half_to_even_as_python() {
        // round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3.5) = 4.
        assert_eq!([1, 3, 5, 7, 4].map(half_to_even), [0, 2, 2, 4, 2]);
    }
}
