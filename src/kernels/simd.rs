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
