//! One f32 vector interface over the two x86-64 widths ferroconv's direct
//! kernels use: 8 lanes (`__m256`, AVX2 + FMA) and 16 lanes (`__m512`,
//! AVX-512F). A kernel written once against [`F32x`] is compiled for each
//! width inside a `#[target_feature]` function; the methods are
//! `#[inline(always)]`, so their intrinsics land in that function and run
//! with its features.
//!
//! Both widths do the same scalar operation per lane (a fused multiply-add
//! is one rounding on either), so a kernel's results do not depend on the
//! width it ran at.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// An f32 SIMD vector of [`F32x::LANES`] lanes.
///
/// # Safety
/// Every method needs the width's instruction set (AVX2 + FMA for
/// `__m256`, AVX-512F for `__m512`) on the running CPU, and the pointers
/// they take must address the lanes they read or write.
#[cfg(target_arch = "x86_64")]
pub(crate) trait F32x: Copy {
    /// Lanes per vector.
    const LANES: usize;

    /// Every lane `v`.
    ///
    /// # Safety
    /// The width's instruction set is available.
    unsafe fn splat(v: f32) -> Self;

    /// `LANES` elements from `p` (unaligned).
    ///
    /// # Safety
    /// The instruction set; `p .. p + LANES` readable.
    unsafe fn load(p: *const f32) -> Self;

    /// `self * b + c`, one rounding per lane.
    ///
    /// # Safety
    /// The instruction set.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;

    /// `self + b * c`, two roundings per lane (a multiply, then an add: the
    /// scalar loops' operations, for kernels that must match them bitwise).
    ///
    /// # Safety
    /// The instruction set.
    unsafe fn add_mul(self, b: Self, c: Self) -> Self;

    /// Lane `j` is `p[j]` for `a <= j < b`, zero elsewhere; only `p + a ..
    /// p + b` is read (`p` itself may lie before the data).
    ///
    /// # Safety
    /// The instruction set; `a <= b <= LANES`; `p + a .. p + b` readable.
    unsafe fn load_range(p: *const f32, a: usize, b: usize) -> Self;

    /// `self + b`.
    ///
    /// # Safety
    /// The instruction set.
    unsafe fn add(self, b: Self) -> Self;

    /// `LANES` elements to `p` (unaligned).
    ///
    /// # Safety
    /// The instruction set; `p .. p + LANES` writable.
    unsafe fn store(self, p: *mut f32);

    /// The first `n <= LANES` lanes to `p`; nothing past them is touched.
    ///
    /// # Safety
    /// The instruction set; `p .. p + n` writable.
    unsafe fn store_first(self, p: *mut f32, n: usize);
}

#[cfg(target_arch = "x86_64")]
impl F32x for __m256 {
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX (the caller's contract).
        unsafe { _mm256_set1_ps(v) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract: 8 readable lanes.
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: FMA (the caller's contract).
        unsafe { _mm256_fmadd_ps(self, b, c) }
    }

    #[inline(always)]
    unsafe fn add_mul(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX (the caller's contract).
        unsafe { _mm256_add_ps(self, _mm256_mul_ps(b, c)) }
    }

    #[inline(always)]
    unsafe fn load_range(p: *const f32, a: usize, b: usize) -> Self {
        debug_assert!(a <= b && b <= 8);
        // Lane j of `below` is set for j < b, of `from` for j < a: the
        // mask keeps the lanes of `below` not in `from`, a <= j < b.
        const EDGE: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
        // SAFETY: 8 - b and 8 - a lie in 0..=8, so both 8-lane loads stay in
        // `EDGE`; the masked load reads only the set lanes a..b, which the
        // caller's contract makes readable (masked-off lanes never fault).
        unsafe {
            let below = _mm256_loadu_si256(EDGE.as_ptr().add(8 - b).cast());
            let from = _mm256_loadu_si256(EDGE.as_ptr().add(8 - a).cast());
            _mm256_maskload_ps(p, _mm256_andnot_si256(from, below))
        }
    }

    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX (the caller's contract).
        unsafe { _mm256_add_ps(self, b) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract: 8 writable lanes.
        unsafe { _mm256_storeu_ps(p, self) }
    }

    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        // SAFETY: the caller's contract: n <= 8 writable lanes; a partial
        // vector goes through a stack copy.
        unsafe {
            if n == 8 {
                _mm256_storeu_ps(p, self);
            } else {
                let mut t = [0.0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), self);
                std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl F32x for __m512 {
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX-512F (the caller's contract).
        unsafe { _mm512_set1_ps(v) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract: 16 readable lanes.
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F (the caller's contract).
        unsafe { _mm512_fmadd_ps(self, b, c) }
    }

    #[inline(always)]
    unsafe fn add_mul(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F (the caller's contract).
        unsafe { _mm512_add_ps(self, _mm512_mul_ps(b, c)) }
    }

    #[inline(always)]
    unsafe fn load_range(p: *const f32, a: usize, b: usize) -> Self {
        debug_assert!(a <= b && b <= 16);
        let below = ((1u32 << b) - 1) as u16;
        let from = !(((1u32 << a) - 1) as u16);
        // SAFETY: the masked load reads only lanes a..b, which the caller's
        // contract makes readable (masked-off lanes never fault).
        unsafe { _mm512_maskz_loadu_ps(below & from, p) }
    }

    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX-512F (the caller's contract).
        unsafe { _mm512_add_ps(self, b) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract: 16 writable lanes.
        unsafe { _mm512_storeu_ps(p, self) }
    }

    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        debug_assert!(n <= 16);
        let mask: __mmask16 = if n >= 16 { !0 } else { (1u16 << n) - 1 };
        // SAFETY: the caller's contract: lanes j < n writable; masked-off
        // lanes are not accessed.
        unsafe { _mm512_mask_storeu_ps(p, mask, self) }
    }
}
