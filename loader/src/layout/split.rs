//! Splitting a packed tensor along an axis and stacking it back, and 2-D transposes of tensor
//! data already on the host.

use burn::tensor::TensorData;

use super::Buffer;

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
            let mut part_shape = shape.clone();
            part_shape[axis] = n;
            let mut buffer = Buffer::zeroed(dtype.size(), outer * n * inner / dtype.size().max(1));
            let bytes = buffer.bytes_mut();
            for o in 0..outer {
                let start = o * row + offset * inner;
                bytes[o * n * inner..(o + 1) * n * inner]
                    .copy_from_slice(&src[start..start + n * inner]);
            }
            offset += n;
            buffer.into_data(part_shape, dtype)
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
    Buffer::copied(&bytes, dtype.size()).into_data(out_shape, dtype)
}

/// Transpose a 2-D tensor on the host, whatever its dtype.
pub(crate) fn transpose(data: TensorData) -> TensorData {
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    let dtype = data.dtype();
    Buffer::transposed(data.as_bytes(), rows, cols, dtype.size()).into_data(vec![cols, rows], dtype)
}
