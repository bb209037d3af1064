//! Layouts and element types on the host, written straight into buffers burn keeps as they
//! are: a [`Buffer`] is aligned for its element type, so `TensorData` and the backend take it
//! without the realigning copy a `Vec<u8>` costs. Conversions (a cast, a 2-D transpose —
//! PyTorch's Linear `[out, in]` ↔ burn's `[in, out]` —, splitting a packed tensor along an
//! axis and stacking it back) read their source once, in parallel chunks.

use burn::tensor::{Bytes, DType as BurnDType, TensorData};
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bytes per parallel chunk of a copy or cast: big enough to amortise the task, small enough
/// to spread one large tensor over every core and to release its mapped pages as it goes.
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
}

impl Buffer {
    /// Room for `elements` elements of `size` bytes (1, 2, 4 or 8). A large buffer asks for
    /// transparent huge pages before its first write (see [`huge_pages`]).
    pub(crate) fn zeroed(size: usize, elements: usize) -> Self {
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
    /// bytes uninitialised and must write every one of them before it returns `Ok` (as
    /// [`Mapped::read_into_uninit`](crate::source::bytes::Mapped::read_into_uninit) does): no
    /// zeroing pass over memory that is about to be overwritten.
    pub(crate) fn filled<E>(
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
        }
    }

    /// The buffer as burn's tensor data, without a copy.
    pub(crate) fn into_data(self, shape: Vec<usize>, dtype: BurnDType) -> TensorData {
        let bytes = match self {
            Self::B1(v) => Bytes::from_elems(v),
            Self::B2(v) => Bytes::from_elems(v),
            Self::B4(v) => Bytes::from_elems(v),
            Self::B8(v) => Bytes::from_elems(v),
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
        let filled = Self::filled(sout, src.len() / sin, |out| {
            out.par_chunks_mut(per_chunk * sout)
                .zip(src.par_chunks(per_chunk * sin))
                .for_each(|(d, s)| cast_staged(s, from, d, to));
            Ok::<_, std::convert::Infallible>(())
        });
        match filled {
            Ok(buffer) => buffer,
            Err(never) => match never {},
        }
    }

    /// [`Buffer::cast`] of `len` bytes that `read(offset, piece)` reads (each piece a
    /// positional read of the file into a reused buffer that stays in cache, returned
    /// initialised): no mapped pages to fault in or release.
    pub(crate) fn cast_read<E: Send>(
        len: usize,
        from: BurnDType,
        to: BurnDType,
        read: &PieceReader<'_, E>,
    ) -> Result<Self, E> {
        let (sin, sout) = (from.size().max(1), to.size().max(1));
        let per_chunk = CHUNK / sin.max(sout);
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

impl Buffer {
    /// `rows × cols` elements of `size` bytes that `read(offset, piece)` reads from a file,
    /// transposed into a new buffer written once: blocks of whole source rows are read by
    /// positional reads into a reused buffer that stays in cache (the file is streamed once, in
    /// order, with no mapped pages to fault in or release) and scattered into the destination,
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
fn from_slice(
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
fn typed_transpose<T: bytemuck::Pod + Send + Sync, E: Send>(
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

/// The destination of [`transpose_read`], shared by the blocks that write disjoint parts of it.
struct Scatter<T>(*mut MaybeUninit<T>);

// SAFETY: the pointer is only used to write elements of `T: Send` at indices that no other
// block writes (see `transpose_read`), while the borrow it came from is held.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Scatter<T> {}

/// Transpose the `rows × cols` source that `read` reads into `dst` (`cols × rows`), writing
/// every element. A block of source rows `r0..r0 + h` (about 1 MiB, read into `stage`, where
/// it stays in the core's cache) lands in destination columns `r0..r0 + h` of every
/// destination row: the block owns that strip, so blocks run in parallel without overlapping,
/// and each destination row gets `h` consecutive elements at a time. With a `cast`, the block
/// is read as `from` elements into `raw` and cast into `stage`. Within a block, tiles of
/// `TALL × WIDE` are gathered into a local array and written out by [`put_tile`].
fn transpose_read<T: bytemuck::Pod + Send + Sync, E: Send>(
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
    const BLOCK: usize = 1 << 20;
    assert_eq!(
        dst.len(),
        rows * cols,
        "a transpose into a buffer of another size"
    );
    // Bytes of a source row as stored (before any cast).
    let row_bytes = cols * cast.map_or(size_of::<T>(), |(from, _)| from.size());
    let height = (BLOCK / (cols * size_of::<T>()).max(1)).clamp(1, rows.max(1));
    let simd = Simd::detect();
    let out = Scatter(dst.as_mut_ptr());
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
                        // columns `r0 + k0 .. r0 + k0 + tall`: inside `dst` (`c0 + j < cols`,
                        // `r0 + k0 + tall <= rows`) and in this block's strip, which no other
                        // block writes; `dst` stays borrowed until every block is done.
                        #[allow(unsafe_code)]
                        unsafe {
                            put_tile(
                                tile,
                                width,
                                tall,
                                out.0.add(c0 * rows + r0 + k0),
                                rows,
                                simd,
                            )
                        };
                    }
                }
                Ok(())
            },
        )
        .collect()
}

/// Columns of a transpose tile: 32 source columns (128 bytes of f32 per source row) …
const WIDE: usize = 32;
/// … by 128 source rows (512 bytes of f32 per destination row).
const TALL: usize = 128;

/// The vector instructions [`put_tile`] may use, detected once per tensor.
#[derive(Clone, Copy)]
struct Simd {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx: bool,
}

impl Simd {
    fn detect() -> Self {
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
/// loop on the benchmark's Linears), everything else element by element.
///
/// # Safety
/// For every `j < width`, the `tall` elements from `out + j * stride` must be memory the
/// caller may write and no one else reads or writes meanwhile.
#[allow(unsafe_code)]
unsafe fn put_tile<T: bytemuck::Pod>(
    tile: &[[T; WIDE]; TALL],
    width: usize,
    tall: usize,
    out: *mut MaybeUninit<T>,
    stride: usize,
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx && size_of::<T>() == 4 {
        let (full_cols, full_rows) = (width / 8 * 8, tall / 8 * 8);
        for j0 in (0..full_cols).step_by(8) {
            for i0 in (0..full_rows).step_by(8) {
                // SAFETY: AVX was detected; the 8 × 8 block read lies in the tile
                // (`i0 + 8 <= tall <= TALL`, `j0 + 8 <= width <= WIDE`, rows `WIDE` apart) and
                // the one written is inside what the caller lets us write (`j0 + 8 <= width`,
                // `i0 + 8 <= tall`).
                unsafe {
                    transpose_8x8(
                        tile[i0][j0..].as_ptr().cast::<f32>(),
                        WIDE,
                        out.add(j0 * stride + i0).cast::<f32>(),
                        stride,
                    )
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
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
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
    #[cfg(target_os = "linux")]
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
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// Whether `from` → `to` is an element cast done at memory speed (`half`'s vectorised
/// conversions, F16C); `false` for the pairs left to burn's element-wise conversion.
pub(crate) fn fast_cast(from: BurnDType, to: BurnDType) -> bool {
    use BurnDType as B;
    matches!(
        (from, to),
        (B::F16 | B::BF16, B::F32) | (B::F32, B::F16 | B::BF16)
    )
}

/// Cast `s` (elements of `from`) into `d` (as many elements of `to`, at most 8 bytes each),
/// writing every byte of `d`: through a 16 KiB staging buffer in cache, so `half`'s slice
/// conversions never see uninitialised memory.
fn cast_staged(s: &[u8], from: BurnDType, d: &mut [MaybeUninit<u8>], to: BurnDType) {
    const STAGE: usize = 16 << 10;
    let (sin, sout) = (from.size().max(1), to.size().max(1));
    // Every byte of `d` must be written, so the pieces must pair up element for element.
    assert!(
        s.len().is_multiple_of(sin)
            && d.len().is_multiple_of(sout)
            && s.len() / sin == d.len() / sout,
        "a cast of {} bytes into {} bytes",
        s.len(),
        d.len()
    );
    if from == BurnDType::F16 && to == BurnDType::F32 && f16_to_f32_direct(s, d) {
        return;
    }
    let per_stage = STAGE / sout;
    let mut stage = [0u64; STAGE / 8];
    let stage: &mut [u8] = bytemuck::cast_slice_mut(&mut stage);
    for (d, s) in d
        .chunks_mut(per_stage * sout)
        .zip(s.chunks(per_stage * sin))
    {
        let staged = &mut stage[..d.len()];
        cast_chunk(s, from, staged, to);
        d.write_copy_of_slice(staged);
    }
}

/// f16 → f32 with x86's conversion instruction (F16C), eight at a time, stored straight into
/// `d` (as many f32s as `s` holds f16s, neither needing alignment); `false` where the CPU
/// lacks it, and nothing is written.
fn f16_to_f32_direct(s: &[u8], d: &mut [MaybeUninit<u8>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
        {
            // SAFETY: both features the function enables were detected just above.
            #[allow(unsafe_code)]
            unsafe {
                f16c(s, d)
            };
            return true;
        }
    }
    let _ = (s, d);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c,avx")]
fn f16c(s: &[u8], d: &mut [MaybeUninit<u8>]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let n = (s.len() / 2).min(d.len() / 4);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, so the 16 bytes read start at byte `2i` of `s` and the 32
        // written at byte `4i` of `d`, both inside; unaligned loads and stores need no
        // alignment, and writing into `MaybeUninit` memory is always valid.
        #[allow(unsafe_code)]
        unsafe {
            let halves = _mm_loadu_si128(s.as_ptr().add(2 * i).cast::<__m128i>());
            _mm256_storeu_ps(
                d.as_mut_ptr().add(4 * i).cast::<f32>(),
                _mm256_cvtph_ps(halves),
            );
        }
        i += 8;
    }
    for j in i..n {
        let value = f16::from_le_bytes([s[2 * j], s[2 * j + 1]]).to_f32();
        d[4 * j..4 * j + 4].write_copy_of_slice(&value.to_le_bytes());
    }
}

fn cast_chunk(src: &[u8], from: BurnDType, dst: &mut [u8], to: BurnDType) {
    use BurnDType as B;
    // The source is a slice of a file: aligned in every file PyTorch or safetensors writes,
    // but not promised; an unaligned one goes through a copy.
    let aligned;
    let src: &[u8] = if src.as_ptr().align_offset(from.size()) == 0 {
        src
    } else {
        aligned = Buffer::copied(src, from.size());
        match &aligned {
            Buffer::B2(v) => bytemuck::cast_slice(v),
            Buffer::B4(v) => bytemuck::cast_slice(v),
            Buffer::B1(v) => v,
            Buffer::B8(v) => bytemuck::cast_slice(v),
        }
    };
    match (from, to) {
        (B::F16 | B::BF16, B::F32) => {
            let bits: &[u16] = bytemuck::cast_slice(src);
            let out: &mut [f32] = bytemuck::cast_slice_mut(dst);
            if from == B::F16 {
                bits.reinterpret_cast::<f16>().convert_to_f32_slice(out);
            } else {
                bits.reinterpret_cast::<bf16>().convert_to_f32_slice(out);
            }
        }
        (B::F32, B::F16 | B::BF16) => {
            let values: &[f32] = bytemuck::cast_slice(src);
            let out: &mut [u16] = bytemuck::cast_slice_mut(dst);
            if to == B::F16 {
                out.reinterpret_cast_mut::<f16>()
                    .convert_from_f32_slice(values);
            } else {
                out.reinterpret_cast_mut::<bf16>()
                    .convert_from_f32_slice(values);
            }
        }
        _ => unreachable!("cast_chunk called with a pair fast_cast refuses"),
    }
}

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
        for (rows, cols) in [(1, 1), (33, 65), (64, 31), (100, 7), (7, 100), (136, 40)] {
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
        // Every edge of the 8 × 8 blocks: full, short rows, short columns, both.
        let tile: [[u32; WIDE]; TALL] =
            std::array::from_fn(|i| std::array::from_fn(|j| (i * WIDE + j) as u32));
        for (width, tall) in [(WIDE, TALL), (WIDE, 13), (29, TALL), (5, 3), (8, 8)] {
            let stride = tall + 3;
            let mut outs = Vec::new();
            for simd in [Simd { avx: false }, Simd::detect()] {
                let mut out = vec![MaybeUninit::new(u32::MAX); width * stride];
                // SAFETY (test): `width` rows of `stride >= tall` elements, all ours.
                #[allow(unsafe_code)]
                unsafe {
                    put_tile(&tile, width, tall, out.as_mut_ptr(), stride, simd)
                };
                // SAFETY (test): every element was initialised above.
                #[allow(unsafe_code)]
                let out: Vec<u32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                for j in 0..width {
                    for i in 0..stride {
                        let want = if i < tall { tile[i][j] } else { u32::MAX };
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
        for (rows, cols) in [
            (1, 1),
            (33, 65),
            (7, 100),
            (300, 1000),
            (600, 1000),
            (300_000, 5),
        ] {
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
        for (rows, cols) in [(1, 1), (130, 70), (9, 33), (600, 1000)] {
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
        let values: Vec<f32> = (0..(CHUNK / 2 + 3))
            .map(|i| (i as f32 - 1000.0) * 0.37)
            .collect();
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
        let src: Vec<u8> = (0..(PARALLEL_COPY + 4096))
            .map(|i| (i % 251) as u8)
            .collect();
        for (from, len) in [
            (0, 12),
            (0, 3 * CHUNK + 8),
            (0, PARALLEL_COPY + 4096),
            (1, 4096),
        ] {
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
