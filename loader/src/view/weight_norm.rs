//! PyTorch's weight norm, folded in the view: a layer saved with `weight_g` + `weight_v`
//! (`torch.nn.utils.weight_norm`) or `parametrizations.weight.original0` + `original1`
//! (`torch.nn.utils.parametrizations.weight_norm`) is seen as the plain `weight` its forward
//! uses, `w = g · v / ‖v‖`, the norm taken over every axis but the one `g` keeps (PyTorch's
//! `dim`, 0 by default; `g` of one element: the whole tensor).

use std::collections::HashMap;
use std::io;

use burn::tensor::TensorData;

use crate::format::{DType, TensorEntry};

/// The two ways PyTorch names a weight-normed weight's parts, below the layer: magnitude and
/// direction.
const FORMS: [(&str, &str); 2] = [
    ("weight_g", "weight_v"),
    (
        "parametrizations.weight.original0",
        "parametrizations.weight.original1",
    ),
];

/// The last segment of each form's magnitude key: a model that holds one keeps its weight
/// norm, and nothing is folded.
pub(crate) const MAGNITUDE_NAMES: [&str; 2] = ["weight_g", "original0"];

/// The axis `g` keeps against `v`'s shape: `Some(d)` where `g` is `v.shape[d]` long on axis
/// `d` and 1 elsewhere (or 1-D of that length with `d = 0`), `None` for one element; `Err`
/// when `g` fits no axis.
pub(crate) fn norm_dim(g: &[usize], v: &[usize]) -> Result<Option<usize>, String> {
    let numel: usize = g.iter().product();
    if v.is_empty() {
        return Err("the direction is a scalar".into());
    }
    if numel == 1 {
        return Ok(if v[0] == 1 { Some(0) } else { None });
    }
    if g.len() == 1 && g[0] == v[0] {
        return Ok(Some(0));
    }
    if g.len() == v.len() {
        let kept: Vec<usize> = (0..g.len()).filter(|&d| g[d] != 1).collect();
        if let [d] = kept[..]
            && g[d] == v[d]
        {
            return Ok(Some(d));
        }
    }
    Err(format!(
        "magnitude {g:?} fits no axis of direction {v:?} (it must be 1 on every axis but one, which it shares)"
    ))
}

/// `g · v / ‖v‖`, the norm over every axis but `dim` (all of them for `None`), in f32 with
/// f64 sums. `g` holds one value per index of `dim` (one in all for `None`).
pub(crate) fn fold(g: &[f32], v: &[f32], shape: &[usize], dim: Option<usize>) -> Vec<f32> {
    let scales: Vec<f64> = norms64(v, shape, dim)
        .iter()
        .zip(g)
        .map(|(norm, &g)| f64::from(g) / norm)
        .collect();
    let Some(d) = dim else {
        return v
            .iter()
            .map(|&x| (f64::from(x) * scales[0]) as f32)
            .collect();
    };
    let n = shape[d];
    let inner: usize = shape[d + 1..].iter().product();
    v.iter()
        .enumerate()
        .map(|(i, &x)| (f64::from(x) * scales[(i / inner) % n]) as f32)
        .collect()
}

/// `‖w‖` over every axis but `dim` (all of them for `None`): the magnitude that, with `w` as
/// the direction, folds back to `w`. One value per index of `dim`.
pub(crate) fn norms(w: &[f32], shape: &[usize], dim: Option<usize>) -> Vec<f32> {
    norms64(w, shape, dim).iter().map(|&n| n as f32).collect()
}

fn norms64(w: &[f32], shape: &[usize], dim: Option<usize>) -> Vec<f64> {
    let square = |x: &f32| f64::from(*x) * f64::from(*x);
    let Some(d) = dim else {
        return vec![w.iter().map(square).sum::<f64>().sqrt()];
    };
    let n = shape[d];
    let inner: usize = shape[d + 1..].iter().product();
    let mut sums = vec![0f64; n];
    for (i, x) in w.iter().enumerate() {
        sums[(i / inner) % n] += square(x);
    }
    sums.iter().map(|s| s.sqrt()).collect()
}

/// A stored tensor's values as f32.
fn floats(entry: &TensorEntry) -> io::Result<Vec<f32>> {
    let bytes = entry.read()?;
    TensorData::from_bytes_vec(bytes, entry.shape().to_vec(), entry.dtype().to_burn_dtype())
        .convert_dtype(burn::tensor::DType::F32)
        .try_into_vec::<f32>()
        .map_err(|e| io::Error::other(format!("`{}`: {e:?}", entry.key())))
}

/// A stored key with its entry's index.
pub(crate) type Stored<'k> = (&'k str, usize);

/// The pairs of weight-norm keys among `keys` (key → entry index): `(weight, g, v)` for each
/// layer that holds a magnitude and a direction and no plain `weight`, each with its index.
pub(crate) fn pairs<'k>(keys: &HashMap<&'k str, usize>) -> Vec<(String, Stored<'k>, Stored<'k>)> {
    let mut out = Vec::new();
    for (&key, &gi) in keys {
        for (g_name, v_name) in FORMS {
            let Some(stem) = key.strip_suffix(g_name) else {
                continue;
            };
            if !(stem.is_empty() || stem.ends_with('.')) {
                continue;
            }
            let v_key = format!("{stem}{v_name}");
            let weight = format!("{stem}weight");
            if let Some((&v, &vi)) = keys.get_key_value(v_key.as_str())
                && !keys.contains_key(weight.as_str())
            {
                out.push((weight, (key, gi), (v, vi)));
            }
        }
    }
    out.sort();
    out
}

/// The plain weight of a weight-normed layer, computed when read: a tensor of `v`'s shape in
/// f32, in `v`'s file.
pub(crate) fn folded_entry(
    key: String,
    g: &TensorEntry,
    v: &TensorEntry,
    dim: Option<usize>,
) -> TensorEntry {
    let (g_in, v_in) = (g.clone(), v.clone());
    let shape = v.shape().to_vec();
    let read_shape = shape.clone();
    TensorEntry::derived(key, shape, DType::F32, v.file(), move || {
        let (g, v) = (floats(&g_in)?, floats(&v_in)?);
        let out = fold(&g, &v, &read_shape, dim);
        Ok(out.iter().flat_map(|x| x.to_le_bytes()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_axis_is_read_off_the_magnitude() {
        assert_eq!(norm_dim(&[4, 1, 1], &[4, 3, 5]), Ok(Some(0)));
        assert_eq!(norm_dim(&[4], &[4, 3]), Ok(Some(0)));
        assert_eq!(norm_dim(&[1, 3, 1], &[4, 3, 5]), Ok(Some(1)));
        assert_eq!(norm_dim(&[], &[4, 3]), Ok(None));
        assert!(norm_dim(&[2, 1], &[4, 3]).is_err());
        assert!(norm_dim(&[4, 3], &[4, 3]).is_err());
    }

    #[test]
    fn folding_scales_each_slice_to_its_magnitude() {
        // v rows (3, 4) and (0, 2): norms 5 and 2; g = 10, 1.
        let w = fold(&[10.0, 1.0], &[3.0, 4.0, 0.0, 2.0], &[2, 2], Some(0));
        assert_eq!(w, vec![6.0, 8.0, 0.0, 1.0]);
        // Along axis 1: columns (3, 0) and (4, 2).
        let w = fold(&[3.0, 1.0], &[3.0, 4.0, 0.0, 2.0], &[2, 2], Some(1));
        let n = (20f64).sqrt();
        assert_eq!(w, vec![3.0, (4.0 / n) as f32, 0.0, (2.0 / n) as f32]);
        let w = fold(&[1.0], &[3.0, 4.0], &[2], None);
        assert_eq!(w, vec![0.6, 0.8]);
    }
}
