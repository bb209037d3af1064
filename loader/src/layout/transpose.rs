//! Transposes by blocks of source rows into cache, tiles written with AVX 8 × 8 register
//! transposes where the CPU has them: PyTorch's Linear `[out, in]` ↔ burn's `[in, out]`.

use std::mem::MaybeUninit;

use burn::tensor::DType as BurnDType;
use rayon::prelude::*;

use super::cast::cast_staged;
use super::{Buffer, PieceReader, huge_pages_at, spare_bytes};

impl Buffer {
    /// `rows × cols` elements of `size` bytes that `read(offset, piece)` reads from a file,
    /// transposed into a new buffer written once: blocks of whole source rows are read by
    /// positional reads into a reused buffer that stays in cache (the file is streamed once, in
    /// order) and scattered into the destination,
    /// blocks in parallel. Elements of another size than 1, 2, 4 or 8 bytes (none of burn's
    /// plain types) are read whole and moved one by one.
    pub(crate) fn transposed_read<E: Send>(
        rows: usize,
        cols: usize,
        size: usize,
        read: &PieceReader<'_, E>,
    ) -> Result<Self, E> {
        match size {
            1 => typed_transpose::<u8, E>(rows, cols, None, read).map(Self::B1),
            2 => typed_transpose::<u16, E>(rows, cols, None, read).map(Self::B2),
            4 => typed_transpose::<u32, E>(rows, cols, None, read).map(Self::B4),
            8 => typed_transpose::<u64, E>(rows, cols, None, read).map(Self::B8),
            _ => {
                let mut whole = Vec::with_capacity(rows * cols * size);
                let src = read(0, &mut whole.spare_capacity_mut()[..rows * cols * size])?;
                let mut out = Self::zeroed(size, rows * cols);
                let dst = out.bytes_mut();
                for (i, element) in src.chunks_exact(size.max(1)).enumerate() {
                    let (r, c) = (i / cols, i % cols);
                    dst[(c * rows + r) * size..(c * rows + r + 1) * size].copy_from_slice(element);
                }
                Ok(out)
            }
        }
    }

    /// [`Buffer::transposed_read`] of `rows × cols` elements of `from` cast to `to` (a pair
    /// [`fast_cast`] accepts): each block is cast as it is read, in cache, then transposed —
    /// an f16 or bf16 Linear loads into an f32 model in one pass over its bytes.
    pub(crate) fn transposed_cast_read<E: Send>(
        rows: usize,
        cols: usize,
        from: BurnDType,
        to: BurnDType,
        read: &PieceReader<'_, E>,
    ) -> Result<Self, E> {
        let cast = Some((from, to));
        match to.size() {
            2 => typed_transpose::<u16, E>(rows, cols, cast, read).map(Self::B2),
            4 => typed_transpose::<u32, E>(rows, cols, cast, read).map(Self::B4),
            size => unreachable!("a cast to {size}-byte elements: `fast_cast` refuses it"),
        }
    }
}

/// A [`PieceReader`] of bytes already in memory: each piece copied out of `src`.
pub(super) fn from_slice(
    src: &[u8],
) -> impl for<'a> Fn(usize, &'a mut [MaybeUninit<u8>]) -> Result<&'a [u8], std::convert::Infallible>
+ Sync
+ '_ {
    move |at, piece| {
        let n = piece.len();
        Ok(&*piece.write_copy_of_slice(&src[at..at + n]))
    }
}

/// [`transpose_read`] into a new `Vec` of `rows × cols` elements (each source element cast
/// first where `cast` says so).
pub(super) fn typed_transpose<T: bytemuck::Pod + Send + Sync, E: Send>(
    rows: usize,
    cols: usize,
    cast: Option<(BurnDType, BurnDType)>,
    read: &PieceReader<'_, E>,
) -> Result<Vec<T>, E> {
    let n = rows * cols;
    let mut out: Vec<T> = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    huge_pages_at(spare.as_ptr() as usize, size_of_val(spare));
    transpose_read(rows, cols, cast, read, spare)?;
    // SAFETY: `transpose_read` returned `Ok`, so it wrote all `n` elements (every column of
    // every block of source rows), and any bit pattern is a valid `T`.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(n)
    };
    Ok(out)
}

/// The destination of [`transpose_read`], shared by the blocks that write disjoint parts of
/// it: it holds the exclusive borrow of `dst` for `'a` (so nothing else reads or writes it
/// meanwhile) and its length (so every range handed out is checked to lie inside it). That
/// the ranges of different blocks do not overlap is the one promise left to the caller of
/// [`Scatter::range`].
struct Scatter<'a, T> {
    ptr: *mut MaybeUninit<T>,
    len: usize,
    _dst: std::marker::PhantomData<&'a mut [MaybeUninit<T>]>,
}

// SAFETY: a `Scatter` only hands out pointers into the slice it borrows exclusively, for
// writing elements of `T: Send`; `range`'s contract keeps two threads off the same element.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Scatter<'_, T> {}

impl<'a, T> Scatter<'a, T> {
    fn new(dst: &'a mut [MaybeUninit<T>]) -> Self {
        Self {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
            _dst: std::marker::PhantomData,
        }
    }

    /// A pointer to element `start` from which `extent` elements may be written (panics
    /// unless `start + extent` is inside the slice).
    ///
    /// # Safety
    /// No other thread may write or read any element of `start..start + extent` that this
    /// caller writes while it writes it.
    #[allow(unsafe_code)]
    unsafe fn range(&self, start: usize, extent: usize) -> *mut MaybeUninit<T> {
        assert!(
            start.checked_add(extent).is_some_and(|end| end <= self.len),
            "scatter range {start}+{extent} outside {} elements",
            self.len
        );
        // SAFETY: `start <= len`, inside (or one past) the borrowed slice.
        unsafe { self.ptr.add(start) }
    }
}

/// Transpose the `rows × cols` source that `read` reads into `dst` (`cols × rows`), writing
/// every element. A block of source rows `r0..r0 + h` (about 1 MiB, read into `stage`, where
/// it stays in the core's cache) lands in destination columns `r0..r0 + h` of every
/// destination row: the block owns that strip, so blocks run in parallel without overlapping,
/// and each destination row gets `h` consecutive elements at a time. With a `cast`, the block
/// is read as `from` elements into `raw` and cast into `stage`. Within a block, tiles of
/// `TALL × WIDE` are gathered into a local array and written out by [`put_tile`].
pub(super) fn transpose_read<T: bytemuck::Pod + Send + Sync, E: Send>(
    rows: usize,
    cols: usize,
    cast: Option<(BurnDType, BurnDType)>,
    read: &PieceReader<'_, E>,
    dst: &mut [MaybeUninit<T>],
) -> Result<(), E> {
    // Measured on the benchmark's 1.2 GB of Linears, against bands of destination rows read
    // straight from the mapped file (A/B runs taking turns, with the AVX tiles): blocks of
    // 1 MiB took 0.54–0.60× its time, 2 MiB the same, 512 KiB 0.70×, 256 KiB 0.92×, 4 MiB
    // 0.85×. Each destination row gets `h` consecutive elements at a time; larger blocks
    // leave the core's cache.
    // Under Miri, 4 KiB: the same code over several blocks, at sizes an interpreter can check.
    const BLOCK: usize = if cfg!(miri) { 4 << 10 } else { 1 << 20 };
    assert_eq!(
        dst.len(),
        rows * cols,
        "a transpose into a buffer of another size"
    );
    // Bytes of a source row as stored (before any cast).
    let row_bytes = cols * cast.map_or(size_of::<T>(), |(from, _)| from.size());
    let height = (BLOCK / (cols * size_of::<T>()).max(1)).clamp(1, rows.max(1));
    let simd = Simd::detect();
    let out = Scatter::new(dst);
    let out = &out;
    (0..rows.div_ceil(height))
        .into_par_iter()
        .map_init(
            || {
                let raw_words = cast.map_or(0, |_| (height * row_bytes).div_ceil(8));
                (
                    Vec::<T>::with_capacity(height * cols),
                    Vec::<u64>::with_capacity(raw_words),
                    [[T::zeroed(); WIDE]; TALL],
                )
            },
            |(stage, raw, tile), block| {
                let r0 = block * height;
                let h = height.min(rows - r0);
                let src: &[T] = match cast {
                    None => {
                        bytemuck::cast_slice(read(r0 * row_bytes, spare_bytes(stage, h * cols))?)
                    }
                    Some((from, to)) => {
                        let raw =
                            &mut spare_bytes(raw, (h * row_bytes).div_ceil(8))[..h * row_bytes];
                        let stored = read(r0 * row_bytes, raw)?;
                        stage.clear();
                        cast_staged(stored, from, spare_bytes(stage, h * cols), to);
                        // SAFETY: `cast_staged` wrote every byte of the first `h * cols`
                        // elements (it asserts that the pieces pair up), which the capacity
                        // holds, and any bit pattern is a valid `T`.
                        #[allow(unsafe_code)]
                        unsafe {
                            stage.set_len(h * cols)
                        };
                        stage
                    }
                };
                for c0 in (0..cols).step_by(WIDE) {
                    let width = WIDE.min(cols - c0);
                    for k0 in (0..h).step_by(TALL) {
                        let tall = TALL.min(h - k0);
                        for (k, line) in tile[..tall].iter_mut().enumerate() {
                            let at = (k0 + k) * cols + c0;
                            line[..width].copy_from_slice(&src[at..at + width]);
                        }
                        // SAFETY: the tile's column `j` goes to destination row `c0 + j`,
                        // columns `r0 + k0 .. r0 + k0 + tall`: the range `range` checks lies
                        // inside `dst`, and of it only this block's strip is written, which no
                        // other block writes.
                        #[allow(unsafe_code)]
                        unsafe {
                            let at = out.range(c0 * rows + r0 + k0, (width - 1) * rows + tall);
                            put_tile(tile, width, tall, at, rows, simd)
                        };
                    }
                }
                Ok(())
            },
        )
        .collect()
}

/// Columns of a transpose tile: 32 source columns (128 bytes of f32 per source row) …
pub(super) const WIDE: usize = 32;
/// … by 128 source rows (512 bytes of f32 per destination row).
pub(super) const TALL: usize = 128;

/// The vector instructions [`put_tile`] may use, detected once per tensor.
#[derive(Clone, Copy)]
pub(super) struct Simd {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) avx: bool,
}

impl Simd {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx = std::arch::is_x86_feature_detected!("avx");
        #[cfg(not(target_arch = "x86_64"))]
        let avx = false;
        Self { avx }
    }
}

/// Write the first `tall` rows and `width` columns of `tile` transposed: its column `j` as
/// `tall` consecutive elements at `out + j * stride`. Four-byte elements go through 8 × 8
/// register transposes where AVX is there (measured: 0.78× the time of the element-by-element
/// loop on the benchmark's Linears), two-byte ones (f16, bf16 kept in half precision) through
/// 8 × 8 transposes of 128-bit registers, everything else element by element.
///
/// # Safety
/// For every `j < width`, the `tall` elements from `out + j * stride` must be memory the
/// caller may write and no one else reads or writes meanwhile.
#[allow(unsafe_code)]
pub(super) unsafe fn put_tile<T: bytemuck::Pod>(
    tile: &[[T; WIDE]; TALL],
    width: usize,
    tall: usize,
    out: *mut MaybeUninit<T>,
    stride: usize,
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx && matches!(size_of::<T>(), 2 | 4) {
        let (full_cols, full_rows) = (width / 8 * 8, tall / 8 * 8);
        for j0 in (0..full_cols).step_by(8) {
            for i0 in (0..full_rows).step_by(8) {
                let src = tile[i0][j0..].as_ptr();
                // SAFETY: AVX was detected; the 8 × 8 block read lies in the tile
                // (`i0 + 8 <= tall <= TALL`, `j0 + 8 <= width <= WIDE`, rows `WIDE` apart) and
                // the one written is inside what the caller lets us write (`j0 + 8 <= width`,
                // `i0 + 8 <= tall`); elements are of the size each transpose moves.
                unsafe {
                    let dst = out.add(j0 * stride + i0);
                    if size_of::<T>() == 4 {
                        transpose_8x8(src.cast::<f32>(), WIDE, dst.cast::<f32>(), stride)
                    } else {
                        transpose_8x8_u16(src.cast::<u16>(), WIDE, dst.cast::<u16>(), stride)
                    }
                };
            }
        }
        // The edges the 8 × 8 blocks leave: the last `tall % 8` rows, the last `width % 8`
        // columns.
        for j in 0..width {
            let from = if j < full_cols { full_rows } else { 0 };
            for (i, line) in tile.iter().enumerate().take(tall).skip(from) {
                // SAFETY: `j < width`, `i < tall`: inside what the caller lets us write.
                unsafe { out.add(j * stride + i).write(MaybeUninit::new(line[j])) };
            }
        }
        return;
    }
    let _ = simd;
    for j in 0..width {
        for (i, line) in tile.iter().enumerate().take(tall) {
            // SAFETY: `j < width`, `i < tall`: inside what the caller lets us write.
            unsafe { out.add(j * stride + i).write(MaybeUninit::new(line[j])) };
        }
    }
}

/// The 8 × 8 block of 16-bit elements at `src` (rows `src_stride` apart) transposed into
/// `dst` (rows `dst_stride` apart) in eight 128-bit registers: neighbouring rows interleaved
/// by 16 bits, then by 32, then by 64, each step doubling the run of one column.
///
/// # Safety
/// AVX must be available (the 128-bit instructions are then VEX-encoded); the 8 rows of 8
/// elements at `src` must be readable and those at `dst` writable (no alignment needed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(unsafe_code)]
pub(super) unsafe fn transpose_8x8_u16(
    src: *const u16,
    src_stride: usize,
    dst: *mut u16,
    dst_stride: usize,
) {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32,
        _mm_unpackhi_epi64, _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
    };
    // SAFETY: the caller guarantees the 8 rows read.
    let r: [__m128i; 8] = std::array::from_fn(|i| unsafe {
        _mm_loadu_si128(src.add(i * src_stride).cast::<__m128i>())
    });
    // Rows 2k, 2k+1 interleaved: columns 0..3 (lo) and 4..7 (hi) in pairs.
    let a = [
        _mm_unpacklo_epi16(r[0], r[1]),
        _mm_unpackhi_epi16(r[0], r[1]),
        _mm_unpacklo_epi16(r[2], r[3]),
        _mm_unpackhi_epi16(r[2], r[3]),
        _mm_unpacklo_epi16(r[4], r[5]),
        _mm_unpackhi_epi16(r[4], r[5]),
        _mm_unpacklo_epi16(r[6], r[7]),
        _mm_unpackhi_epi16(r[6], r[7]),
    ];
    // Runs of four rows: columns (0, 1), (2, 3), (4, 5), (6, 7) of rows 0..3, then of 4..7.
    let b = [
        _mm_unpacklo_epi32(a[0], a[2]),
        _mm_unpackhi_epi32(a[0], a[2]),
        _mm_unpacklo_epi32(a[1], a[3]),
        _mm_unpackhi_epi32(a[1], a[3]),
        _mm_unpacklo_epi32(a[4], a[6]),
        _mm_unpackhi_epi32(a[4], a[6]),
        _mm_unpacklo_epi32(a[5], a[7]),
        _mm_unpackhi_epi32(a[5], a[7]),
    ];
    for k in 0..4 {
        let even = _mm_unpacklo_epi64(b[k], b[k + 4]);
        let odd = _mm_unpackhi_epi64(b[k], b[k + 4]);
        // SAFETY: destination rows `2k` and `2k + 1` of the 8 the caller lets us write.
        unsafe {
            _mm_storeu_si128(dst.add(2 * k * dst_stride).cast::<__m128i>(), even);
            _mm_storeu_si128(dst.add((2 * k + 1) * dst_stride).cast::<__m128i>(), odd);
        }
    }
}

/// The 8 × 8 block of f32 at `src` (rows `src_stride` apart) transposed into `dst` (rows
/// `dst_stride` apart), in registers: pairs of rows interleaved, then pairs of pairs, then the
/// 128-bit halves swapped across.
///
/// # Safety
/// AVX must be available; the 8 rows of 8 f32 at `src` must be readable and those at `dst`
/// writable (no alignment needed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(unsafe_code)]
pub(super) unsafe fn transpose_8x8(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    // SAFETY: the caller guarantees the 8 rows read and the 8 written.
    let r: [_; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * src_stride)) });
    let pairs = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let quads = [
        _mm256_shuffle_ps::<0x44>(pairs[0], pairs[2]),
        _mm256_shuffle_ps::<0xEE>(pairs[0], pairs[2]),
        _mm256_shuffle_ps::<0x44>(pairs[1], pairs[3]),
        _mm256_shuffle_ps::<0xEE>(pairs[1], pairs[3]),
        _mm256_shuffle_ps::<0x44>(pairs[4], pairs[6]),
        _mm256_shuffle_ps::<0xEE>(pairs[4], pairs[6]),
        _mm256_shuffle_ps::<0x44>(pairs[5], pairs[7]),
        _mm256_shuffle_ps::<0xEE>(pairs[5], pairs[7]),
    ];
    for j in 0..4 {
        let low = _mm256_permute2f128_ps::<0x20>(quads[j], quads[j + 4]);
        let high = _mm256_permute2f128_ps::<0x31>(quads[j], quads[j + 4]);
        // SAFETY: rows `j` and `j + 4` of the 8 the caller lets us write.
        unsafe {
            _mm256_storeu_ps(dst.add(j * dst_stride), low);
            _mm256_storeu_ps(dst.add((j + 4) * dst_stride), high);
        }
    }
}
