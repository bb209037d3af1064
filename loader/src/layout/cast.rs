//! Element casts between float widths (f16/bf16 ↔ f32) at memory speed: F16C straight into
//! the destination on x86, `half`'s slice conversions through a staging buffer elsewhere.

use std::mem::MaybeUninit;

use burn::tensor::DType as BurnDType;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};

use super::Buffer;

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
pub(super) fn cast_staged(s: &[u8], from: BurnDType, d: &mut [MaybeUninit<u8>], to: BurnDType) {
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
pub(super) fn f16_to_f32_direct(s: &[u8], d: &mut [MaybeUninit<u8>]) -> bool {
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
pub(super) fn f16c(s: &[u8], d: &mut [MaybeUninit<u8>]) {
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

pub(super) fn cast_chunk(src: &[u8], from: BurnDType, dst: &mut [u8], to: BurnDType) {
    use BurnDType as B;
    // The source is a slice of a file: aligned in every file PyTorch or safetensors writes,
    // but not promised; an unaligned one goes through a copy.
    let aligned;
    let src: &[u8] = if src.as_ptr().align_offset(from.size()) == 0 {
        src
    } else {
        aligned = Buffer::copied(src, from.size());
        aligned.bytes()
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
