//! Layouts on the host, byte-wise for any dtype: a 2-D transpose (PyTorch's Linear `[out, in]`
//! ↔ burn's `[in, out]`), and splitting one packed checkpoint tensor into its parts along an
//! axis (LSTM gates, attention's q/k/v) and stacking them back for export.

use burn::tensor::TensorData;

/// Split `data` along `axis` into consecutive parts of `sizes` (which sum to its length).
pub(crate) fn split(data: &TensorData, axis: usize, sizes: &[usize]) -> Vec<TensorData> {
    let shape = data.shape().to_vec();
    let dtype = data.dtype();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * dtype.size();
    let outer: usize = shape[..axis].iter().product();
    let row = shape[axis] * inner;
    let src = data.as_bytes();
    let mut offset = 0;
    sizes
        .iter()
        .map(|&n| {
            let mut bytes = Vec::with_capacity(outer * n * inner);
            for o in 0..outer {
                let start = o * row + offset * inner;
                bytes.extend_from_slice(&src[start..start + n * inner]);
            }
            offset += n;
            let mut part_shape = shape.clone();
            part_shape[axis] = n;
            TensorData::from_bytes_vec(bytes, part_shape, dtype)
        })
        .collect()
}

/// Stack `parts` (equal in every dimension but `axis`) along `axis`: the inverse of [`split`].
pub(crate) fn concat(parts: &[TensorData], axis: usize) -> TensorData {
    let shape = parts[0].shape().to_vec();
    let dtype = parts[0].dtype();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * dtype.size();
    let outer: usize = shape[..axis].iter().product();
    let total: usize = parts.iter().map(|p| p.shape()[axis]).sum();
    let mut bytes = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for p in parts {
            let n = p.shape()[axis] * inner;
            bytes.extend_from_slice(&p.as_bytes()[o * n..(o + 1) * n]);
        }
    }
    let mut out_shape = shape;
    out_shape[axis] = total;
    TensorData::from_bytes_vec(bytes, out_shape, dtype)
}

/// Transpose a 2-D tensor on the host, whatever its dtype.
pub(crate) fn transpose(data: TensorData) -> TensorData {
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    let dtype = data.dtype();
    let size = dtype.size();
    let src = data.as_bytes();
    let mut dst = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * size;
            let to = (c * rows + r) * size;
            dst[to..to + size].copy_from_slice(&src[from..from + size]);
        }
    }
    TensorData::from_bytes_vec(dst, vec![cols, rows], dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element() {
        let data = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let t = transpose(data);
        assert_eq!(t.shape().to_vec(), vec![3, 2]);
        assert_eq!(
            t.try_to_vec::<f32>().unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn split_and_concat_are_inverse_along_every_axis() {
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let data = TensorData::new(values.clone(), [4, 3, 2]);
        // Axis 0: rows 0..1 and 1..4.
        let parts = split(&data, 0, &[1, 3]);
        assert_eq!(parts[0].shape().to_vec(), vec![1, 3, 2]);
        assert_eq!(parts[0].try_to_vec::<f32>().unwrap(), values[..6].to_vec());
        assert_eq!(parts[1].try_to_vec::<f32>().unwrap(), values[6..].to_vec());
        // Axis 1: [4, 1, 2] + [4, 2, 2]; element (o, j, k) of part 1 is (o, j + 1, k).
        let parts = split(&data, 1, &[1, 2]);
        assert_eq!(parts[1].shape().to_vec(), vec![4, 2, 2]);
        let p1 = parts[1].try_to_vec::<f32>().unwrap();
        for o in 0..4 {
            for j in 0..2 {
                for k in 0..2 {
                    assert_eq!(p1[o * 4 + j * 2 + k], values[o * 6 + (j + 1) * 2 + k]);
                }
            }
        }
        for axis in 0..3 {
            let sizes = match axis {
                0 => vec![2, 2],
                1 => vec![1, 1, 1],
                _ => vec![1, 1],
            };
            let back = concat(&split(&data, axis, &sizes), axis);
            assert_eq!(back.shape().to_vec(), vec![4, 3, 2]);
            assert_eq!(back.try_to_vec::<f32>().unwrap(), values);
        }
    }
}
