//! Layouts and element types on the host, written straight into buffers burn keeps as they
//! are: a [`Buffer`] is aligned for its element type, so `TensorData` and the backend take it
//! without the realigning copy a `Vec<u8>` costs. Conversions (a cast, a 2-D transpose —
//! PyTorch's Linear `[out, in]` ↔ burn's `[in, out]` —, splitting a packed tensor along an
//! axis and stacking it back) read their source once, in parallel chunks.
//!
//! One job a file: the [`Buffer`] and its uninitialised-memory helpers here, element casts in
//! `cast.rs`, tiled block transposes in `transpose.rs`, packed-axis splits in `split.rs`.

use burn::tensor::{Bytes, DType as BurnDType, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

mod cast;
mod mapped;
mod split;
mod transpose;

use cast::cast_staged;
pub(crate) use cast::fast_cast;
use mapped::MAPPED_AT_LEAST;
pub(crate) use mapped::{MappedRange, Mapping};
pub(crate) use split::{concat, split, transpose};
use transpose::from_slice;

/// Bytes per parallel chunk of a copy or cast: big enough to amortise the task, small enough
/// to spread one large tensor over every core.
pub(crate) const CHUNK: usize = 1 << 20;

/// Copies at least this large are spread over the cores, into fresh (already zero) memory;
/// smaller ones append into an uninitialised `Vec`, sparing the allocator's zeroing pass.
const PARALLEL_COPY: usize = 8 << 20;

/// Reads the piece of a stored tensor at an offset into the buffer it is handed, returning
/// that buffer initialised.
pub(crate) type PieceReader<'r, E> =
    dyn for<'a> Fn(usize, &'a mut [MaybeUninit<u8>]) -> Result<&'a [u8], E> + Sync + 'r;

/// A zeroed host buffer whose alignment is its element size's.
pub(crate) enum Buffer {
    B1(Vec<u8>),
    B2(Vec<u16>),
    B4(Vec<u32>),
    B8(Vec<u64>),
    /// A large buffer in a mapping of its own (see [`mapped`]).
    Mapped(Mapping),
}

impl Buffer {
    /// Room for `elements` elements of `size` bytes (1, 2, 4 or 8). A large buffer asks for
    /// transparent huge pages before its first write (see [`huge_pages`]).
    pub(crate) fn zeroed(size: usize, elements: usize) -> Self {
        let len = elements * size.max(1);
        if len >= MAPPED_AT_LEAST
            && let Some(mut mapping) = Mapping::zeroed(len)
        {
            huge_pages(mapping.bytes_mut());
            return Self::Mapped(mapping);
        }
        let mut buffer = match size {
            2 => Self::B2(vec![0; elements]),
            4 => Self::B4(vec![0; elements]),
            8 => Self::B8(vec![0; elements]),
            _ => Self::B1(vec![0; elements * size.max(1)]),
        };
        huge_pages(buffer.bytes_mut());
        buffer
    }

    /// `elements` elements of `size` bytes written by `fill`, which is handed the buffer's
    /// bytes uninitialised: no zeroing pass over memory that is about to be overwritten.
    ///
    /// # Safety
    /// When `fill` returns `Ok` it must have written every byte of the slice it was handed
    /// (as [`LocalFile::read_into_uninit`](crate::source::bytes::LocalFile::read_into_uninit) does
    /// for the range it is given); the buffer is then taken as initialised.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn filled<E>(
        size: usize,
        elements: usize,
        fill: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> Result<(), E>,
    ) -> Result<Self, E> {
        fn make<T: bytemuck::Pod, E>(
            elements: usize,
            fill: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> Result<(), E>,
        ) -> Result<Vec<T>, E> {
            let mut out: Vec<T> = Vec::with_capacity(elements);
            let bytes = spare_bytes(&mut out, elements);
            let len = bytes.len();
            huge_pages_at(bytes.as_ptr() as usize, len);
            fill(bytes)?;
            // SAFETY: `fill` returned `Ok`, so it wrote every byte of the first `elements`
            // values, and any bit pattern is a valid `T` (`Pod`).
            #[allow(unsafe_code)]
            unsafe {
                out.set_len(elements)
            };
            Ok(out)
        }
        let len = elements * size.max(1);
        if len >= MAPPED_AT_LEAST
            && let Some(mut mapping) = Mapping::zeroed(len)
        {
            let bytes = mapping.bytes_mut();
            huge_pages(bytes);
            // Zero pages are initialised bytes; `fill` overwrites them all.
            let bytes: &mut [u8] = bytes;
            // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have one layout, and `fill` writes only
            // initialised bytes (its contract), so the mapping stays initialised.
            #[allow(unsafe_code)]
            let uninit = unsafe {
                std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<MaybeUninit<u8>>(), len)
            };
            fill(uninit)?;
            return Ok(Self::Mapped(mapping));
        }
        Ok(match size {
            2 => Self::B2(make(elements, fill)?),
            4 => Self::B4(make(elements, fill)?),
            8 => Self::B8(make(elements, fill)?),
            _ => Self::B1(make(elements * size.max(1), fill)?),
        })
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::B1(v) => v,
            Self::B2(v) => bytemuck::cast_slice_mut(v),
            Self::B4(v) => bytemuck::cast_slice_mut(v),
            Self::B8(v) => bytemuck::cast_slice_mut(v),
            Self::Mapped(m) => m.bytes_mut(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::B1(v) => v,
            Self::B2(v) => bytemuck::cast_slice(v),
            Self::B4(v) => bytemuck::cast_slice(v),
            Self::B8(v) => bytemuck::cast_slice(v),
            Self::Mapped(m) => m.bytes(),
        }
    }

    /// The buffer as burn's tensor data, without a copy.
    pub(crate) fn into_data(self, shape: Vec<usize>, dtype: BurnDType) -> TensorData {
        let bytes = match self {
            Self::B1(v) => Bytes::from_elems(v),
            Self::B2(v) => Bytes::from_elems(v),
            Self::B4(v) => Bytes::from_elems(v),
            Self::B8(v) => Bytes::from_elems(v),
            Self::Mapped(m) => m.into_bytes(),
        };
        TensorData::from_bytes(bytes, shape, dtype)
    }

    /// `src` (`rows × cols` elements of `size` bytes, row-major, any alignment) transposed
    /// into a new buffer, written once (see [`Buffer::transposed_read`]).
    pub(crate) fn transposed(src: &[u8], rows: usize, cols: usize, size: usize) -> Self {
        let Ok(buffer) = Self::transposed_read(rows, cols, size, &from_slice(src));
        buffer
    }

    /// `src` (`rows × cols` elements of `from`) cast to `to` and transposed (see
    /// [`Buffer::transposed_cast_read`]).
    pub(crate) fn transposed_cast(
        src: &[u8],
        rows: usize,
        cols: usize,
        from: BurnDType,
        to: BurnDType,
    ) -> Self {
        let Ok(buffer) = Self::transposed_cast_read(rows, cols, from, to, &from_slice(src));
        buffer
    }

    /// A copy of `src` (elements of `size` bytes, any alignment) in an aligned buffer: one
    /// pass, without zeroing the buffer first. A large `src` is copied in parallel pieces into
    /// fresh memory (whose zero pages cost no pass of ours), a smaller one appended.
    pub(crate) fn copied(src: &[u8], size: usize) -> Self {
        fn append<T: bytemuck::Pod>(src: &[u8]) -> Option<Vec<T>> {
            Some(bytemuck::try_cast_slice::<u8, T>(src).ok()?.to_vec())
        }
        if src.len() < PARALLEL_COPY {
            let appended = match size {
                2 => append::<u16>(src).map(Self::B2),
                4 => append::<u32>(src).map(Self::B4),
                8 => append::<u64>(src).map(Self::B8),
                _ => append::<u8>(src).map(Self::B1),
            };
            if let Some(buffer) = appended {
                return buffer;
            }
        }
        // Large, or unaligned: zeroed fresh memory, filled in parallel.
        let mut buffer = Self::zeroed(size, src.len() / size.max(1));
        buffer
            .bytes_mut()
            .par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        buffer
    }

    /// `src` (elements of `from`) cast to `to`, a pair [`fast_cast`] accepts, in a new buffer
    /// written once: parallel chunks, each converted (with `half`'s vector code) through a
    /// 16 KiB staging buffer in cache and copied on into memory that was never zeroed.
    pub(crate) fn cast(src: &[u8], from: BurnDType, to: BurnDType) -> Self {
        let (sin, sout) = (from.size().max(1), to.size().max(1));
        // A checked entry holds whole elements; a stray tail byte is not an element.
        let src = &src[..src.len() / sin * sin];
        let per_chunk = CHUNK / sin.max(sout);
        // SAFETY: the chunks of `out` pair up with those of `src` (the same number of
        // elements each), and `cast_staged` writes every byte of its destination chunk.
        #[allow(unsafe_code)]
        let filled = unsafe {
            Self::filled(sout, src.len() / sin, |out| {
                out.par_chunks_mut(per_chunk * sout)
                    .zip(src.par_chunks(per_chunk * sin))
                    .for_each(|(d, s)| cast_staged(s, from, d, to));
                Ok::<_, std::convert::Infallible>(())
            })
        };
        match filled {
            Ok(buffer) => buffer,
            Err(never) => match never {},
        }
    }

    /// [`Buffer::cast`] of `len` bytes that `read(offset, piece)` reads (each piece a
    /// positional read of the file into a reused buffer that stays in cache, returned
    /// initialised).
    pub(crate) fn cast_read<E: Send>(
        len: usize,
        from: BurnDType,
        to: BurnDType,
        read: &PieceReader<'_, E>,
    ) -> Result<Self, E> {
        let (sin, sout) = (from.size().max(1), to.size().max(1));
        let per_chunk = CHUNK / sin.max(sout);
        // SAFETY: every chunk `d` of `out` is written whole by `cast_staged` (from a source
        // piece of as many elements), or the fill returns the read's `Err`.
        #[allow(unsafe_code)]
        unsafe {
            Self::filled(sout, len / sin, |out| {
                out.par_chunks_mut(per_chunk * sout)
                    .enumerate()
                    .map_init(
                        || Vec::<u64>::with_capacity(per_chunk * sin / 8 + 1),
                        |stage, (i, d)| {
                            let n = d.len() / sout * sin;
                            let bytes = spare_bytes(stage, per_chunk * sin / 8 + 1);
                            let s = read(i * per_chunk * sin, &mut bytes[..n])?;
                            cast_staged(s, from, d, to);
                            Ok(())
                        },
                    )
                    .collect::<Result<(), E>>()
            })
        }
    }
}

/// The first `elements` values of `vec`'s spare capacity (which must hold them) as
/// uninitialised bytes, to be written before they are read or the length is set.
fn spare_bytes<T: bytemuck::Pod>(vec: &mut Vec<T>, elements: usize) -> &mut [MaybeUninit<u8>] {
    let spare = &mut vec.spare_capacity_mut()[..elements];
    let len = size_of_val(spare);
    // SAFETY: the spare capacity of `elements` values of `T` is `len` bytes of memory `vec`
    // owns and this borrow holds; viewing it as uninitialised bytes is always valid.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), len)
    }
}

/// Ask Linux for transparent huge pages over the 2 MiB-aligned interior of a buffer of at
/// least 4 MiB that has not been written yet (a fresh `calloc` is untouched): its first writes
/// then fault in 2 MiB pages instead of 4 KiB ones, which is most of what filling fresh memory
/// costs (measured: 88 MiB in 8 MiB buffers filled in 14 ms instead of 23). Where THP is off
/// or `never`, or the memory is already faulted, nothing changes.
fn huge_pages(buffer: &mut [u8]) {
    huge_pages_at(buffer.as_mut_ptr() as usize, buffer.len());
}

/// [`huge_pages`] over `len` bytes at address `start` that this process owns and has not
/// written yet (a buffer's spare capacity).
fn huge_pages_at(start: usize, len: usize) {
    // Miri runs no foreign functions; the advice changes nothing it could check.
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        const HUGE: usize = 2 << 20;
        if len < 2 * HUGE {
            return;
        }
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > first {
            // SAFETY: `first..end` lies inside memory this process owns and nothing else
            // refers to yet; MADV_HUGEPAGE only marks the range as eligible for huge pages and
            // never changes its contents or mapping. Its result is advisory.
            #[allow(unsafe_code)]
            let _ = unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE)
            };
        }
    }
    #[cfg(any(not(target_os = "linux"), miri))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::transpose::*;
    use super::*;
    use half::{bf16, f16};

    /// The cases a test runs: all of them natively, the small ones under Miri (which checks
    /// every access of the unsafe code, a thousand times slower; its transpose blocks are
    /// 4 KiB, so a small case still spans several).
    fn cases<T: Copy>(all: &[T], miri: &[T]) -> Vec<T> {
        if cfg!(miri) { miri } else { all }.to_vec()
    }

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

    /// `dst` holds `src` (`rows × cols` elements of `size` bytes) transposed.
    fn assert_transposed(src: &[u8], dst: &[u8], rows: usize, cols: usize, size: usize) {
        for r in 0..rows {
            for c in 0..cols {
                let from = (r * cols + c) * size;
                let to = (c * rows + r) * size;
                assert_eq!(
                    dst[to..to + size],
                    src[from..from + size],
                    "{rows}x{cols}x{size} at {r},{c}"
                );
            }
        }
    }

    #[test]
    fn transposes_of_unaligned_bytes_match_the_definition() {
        // Sizes around the 8 × 8 blocks and the tiles' edges, every element size, the source
        // one byte off its elements' alignment (and 3-byte elements, moved one by one).
        let shapes = [(1, 1), (33, 65), (64, 31), (100, 7), (7, 100), (136, 40)];
        for (rows, cols) in cases(&shapes, &shapes[..3]) {
            for size in [1usize, 2, 3, 4, 8] {
                let bytes: Vec<u8> = (0..=rows * cols * size)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect();
                let src = &bytes[1..];
                let mut out = Buffer::transposed(src, rows, cols, size);
                let dst = out.bytes_mut();
                assert_transposed(src, dst, rows, cols, size);
            }
        }
    }

    #[test]
    fn tiles_are_put_alike_with_and_without_vector_instructions() {
        tiles_alike::<u32>(|n| n as u32);
        tiles_alike::<u16>(|n| n as u16);
    }

    fn tiles_alike<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(of: fn(usize) -> T) {
        // Every edge of the 8 × 8 blocks: full, short rows, short columns, both.
        let tile: [[T; WIDE]; TALL] =
            std::array::from_fn(|i| std::array::from_fn(|j| of(i * WIDE + j)));
        let unset = of(usize::MAX);
        for (width, tall) in [(WIDE, TALL), (WIDE, 13), (29, TALL), (5, 3), (8, 8)] {
            let stride = tall + 3;
            let mut outs = Vec::new();
            for simd in [Simd { avx: false }, Simd::detect()] {
                let mut out = vec![MaybeUninit::new(unset); width * stride];
                // SAFETY (test): `width` rows of `stride >= tall` elements, all ours.
                #[allow(unsafe_code)]
                unsafe {
                    put_tile(&tile, width, tall, out.as_mut_ptr(), stride, simd)
                };
                // SAFETY (test): every element was initialised above.
                #[allow(unsafe_code)]
                let out: Vec<T> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                for j in 0..width {
                    for i in 0..stride {
                        let want = if i < tall { tile[i][j] } else { unset };
                        assert_eq!(out[j * stride + i], want, "{width}x{tall} at {j},{i}");
                    }
                }
                outs.push(out);
            }
            assert_eq!(outs[0], outs[1]);
        }
    }

    #[test]
    fn transposes_read_by_blocks_match_the_definition() {
        // One block and several (1 MiB of rows each, the last short), tile edges, every
        // element size; the pieces read must tile the source once.
        let all = [
            (1, 1),
            (33, 65),
            (7, 100),
            (300, 1000),
            (600, 1000),
            (300_000, 5),
        ];
        // Under Miri blocks are 4 KiB: 300 × 5 of 8 bytes is three of them, the last short.
        for (rows, cols) in cases(&all, &[(1, 1), (33, 65), (300, 5)]) {
            for size in [1usize, 2, 4, 8] {
                let src: Vec<u8> = (0..rows * cols * size)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect();
                let pieces = std::sync::Mutex::new(Vec::new());
                let out = Buffer::transposed_read(rows, cols, size, &|at, piece| {
                    pieces.lock().unwrap().push((at, piece.len()));
                    let n = piece.len();
                    Ok::<_, ()>(&*piece.write_copy_of_slice(&src[at..at + n]))
                })
                .unwrap();
                let mut pieces = pieces.into_inner().unwrap();
                pieces.sort();
                let mut next = 0;
                for (at, len) in pieces {
                    assert_eq!(at, next, "{rows}x{cols}x{size}");
                    next += len;
                }
                assert_eq!(next, src.len(), "{rows}x{cols}x{size}");
                let mut out = out;
                let dst = out.bytes_mut();
                assert_transposed(&src, dst, rows, cols, size);
            }
        }
    }

    #[test]
    fn transposes_cast_on_the_way_match_half_and_the_definition() {
        // f16/bf16 → f32 and back, one block and several, off the tiles' edges.
        for (rows, cols) in cases(
            &[(1, 1), (130, 70), (9, 33), (600, 1000)],
            &[(1, 1), (9, 33)],
        ) {
            let values: Vec<f32> = (0..rows * cols)
                .map(|i| (i as f32 - 500.0) * 0.0137)
                .collect();
            let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            let out = Buffer::transposed_cast(
                bytemuck::cast_slice(&halves),
                rows,
                cols,
                BurnDType::F16,
                BurnDType::F32,
            );
            let got = out.into_data(vec![cols, rows], BurnDType::F32);
            let got = got.try_to_vec::<f32>().unwrap();
            let brains: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            let back = Buffer::transposed_cast(
                bytemuck::cast_slice(&values),
                rows,
                cols,
                BurnDType::F32,
                BurnDType::BF16,
            );
            let back = back.into_data(vec![cols, rows], BurnDType::BF16);
            let back = back.try_to_vec::<bf16>().unwrap();
            for r in 0..rows {
                for c in 0..cols {
                    let (from, to) = (r * cols + c, c * rows + r);
                    assert_eq!(
                        got[to],
                        halves[from].to_f32(),
                        "{rows}x{cols} f16 at {r},{c}"
                    );
                    assert_eq!(back[to], brains[from], "{rows}x{cols} bf16 at {r},{c}");
                }
            }
        }
    }

    #[test]
    fn casts_match_half_element_by_element() {
        // More than one chunk, and an odd length.
        let n = if cfg!(miri) { 4099 } else { CHUNK / 2 + 3 };
        let values: Vec<f32> = (0..n).map(|i| (i as f32 - 1000.0) * 0.37).collect();
        let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
        let src: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let dst = Buffer::cast(&src, BurnDType::F16, BurnDType::F32);
        let got = dst.into_data(vec![values.len()], BurnDType::F32);
        let want: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        assert_eq!(got.try_to_vec::<f32>().unwrap(), want);
        // The same through positional pieces, each read into a reused buffer.
        let read = Buffer::cast_read(src.len(), BurnDType::F16, BurnDType::F32, &|at, piece| {
            let n = piece.len();
            piece.write_copy_of_slice(&src[at..at + n]);
            // SAFETY (test): every byte of `piece` was just written.
            #[allow(unsafe_code)]
            Ok::<_, ()>(unsafe { std::slice::from_raw_parts(piece.as_ptr().cast::<u8>(), n) })
        })
        .unwrap();
        let got = read.into_data(vec![values.len()], BurnDType::F32);
        assert_eq!(got.try_to_vec::<f32>().unwrap(), want);
        // Back to bf16, then compared with half's scalar conversion.
        let back = Buffer::cast(
            bytemuck::cast_slice(&values),
            BurnDType::F32,
            BurnDType::BF16,
        );
        let got = back.into_data(vec![values.len()], BurnDType::BF16);
        let want: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
        assert_eq!(got.try_to_vec::<bf16>().unwrap(), want);
    }

    #[test]
    fn copies_keep_every_byte_small_large_and_unaligned() {
        let all = [
            (0, 12),
            (0, 3 * CHUNK + 8),
            (0, PARALLEL_COPY + 4096),
            (1, 4096),
        ];
        let total = if cfg!(miri) {
            8192
        } else {
            PARALLEL_COPY + 4096
        };
        let src: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        for (from, len) in cases(&all, &[(0, 12), (1, 4096)]) {
            let bytes = &src[from..from + len];
            let mut copy = Buffer::copied(bytes, 4);
            assert_eq!(copy.bytes_mut(), bytes, "{from} {len}");
            assert_eq!(copy.bytes_mut().as_ptr().align_offset(4), 0);
        }
    }

    #[test]
    fn buffers_are_aligned_for_their_elements() {
        for size in [1usize, 2, 4, 8] {
            let mut b = Buffer::zeroed(size, 3);
            assert_eq!(b.bytes_mut().len(), 3 * size);
            assert_eq!(b.bytes_mut().as_ptr().align_offset(size), 0);
        }
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
