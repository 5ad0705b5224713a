//! The optimized kernels. Private: the public entry points in [`crate::conv`]
//! validate every length first, so these only `debug_assert!`.
//!
//! Off x86-64 only the portable loops run (matrixmultiply and the generic
//! compilations); the plumbing of the x86 kernels (their constants, step
//! types, variables only their paths read) is then unused, by design.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, unused_imports, unused_variables, unused_mut)
)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod depthwise_avx512;
pub(crate) mod direct;
pub(crate) mod dot_wgrad;
pub(crate) mod forward;
pub(crate) mod im2col;
pub(crate) mod implicit;
#[cfg(target_arch = "x86_64")]
pub(crate) mod implicit_avx512;
pub(crate) mod implicit_wgrad;
pub(crate) mod input_grad;
pub(crate) mod isa;
pub(crate) mod parallel;
pub(crate) mod sgemm;
pub(crate) mod simd;
pub(crate) mod small_cin;
pub(crate) mod strided_wgrad;
pub(crate) mod weight_grad;
pub(crate) mod winograd;
pub(crate) mod winograd4;
pub(crate) mod winograd_s2;
pub(crate) mod winograd_simd;

use crate::element::Element;
use crate::geometry::Conv2dGeometry;

/// `s` as f32, for the f32-only paths (chosen only when `T` is f32).
pub(crate) fn f32s<T: Element>(s: &[T]) -> &[f32] {
    T::as_f32(s).unwrap_or_else(|| unreachable!("an f32-only path chosen for another element type"))
}

/// `s` as f32, for the f32-only paths (chosen only when `T` is f32).
pub(crate) fn f32s_mut<T: Element>(s: &mut [T]) -> &mut [f32] {
    T::as_f32_mut(s).unwrap_or_else(|| unreachable!("an f32-only path chosen for another element type"))
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for the short runs of
/// small images (14 pixels for a 14x14 feature map; a 16-wide layer's padded
/// Winograd rows): fixed-size blocks of 8, the last one overlapping the one
/// before instead of a scalar tail.
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    debug_assert_eq!(n, src.len());
    if n >= 64 {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
            i += 8;
        }
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// `dst.fill(T::ZERO)` the way [`copy_run`] copies: no `memset` call for
/// the few zeros of a short padded row.
#[inline(always)]
pub(crate) fn zero_run<T: Element>(dst: &mut [T]) {
    let n = dst.len();
    if n >= 64 {
        dst.fill(T::ZERO);
    } else if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            dst[i..i + 8].copy_from_slice(&[T::ZERO; 8]);
            i += 8;
        }
        dst[n - 8..].copy_from_slice(&[T::ZERO; 8]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&[T::ZERO; 4]);
        dst[n - 4..].copy_from_slice(&[T::ZERO; 4]);
    } else {
        for d in dst {
            *d = T::ZERO;
        }
    }
}

/// Asks the cache for every 64-byte line of `s` (a hint: no effect on
/// results). The packers ask for rows ahead of their copy, the depthwise
/// loops for the next plane (measurements where they are used).
#[inline(always)]
pub(crate) fn prefetch<T>(s: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for i in (0..s.len()).step_by((64 / std::mem::size_of::<T>().max(1)).max(1)) {
        // SAFETY: a prefetch never faults and only reads; the address lies
        // inside `s`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(s.as_ptr().add(i).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

/// [`prefetch`] of the `len` elements from `p`, for memory a task owns but
/// holds no slice of (an output row it writes next).
///
/// # Safety
/// `p .. p + len` must lie inside one allocation.
#[inline(always)]
pub(crate) unsafe fn prefetch_raw<T>(p: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in (0..len).step_by((64 / std::mem::size_of::<T>().max(1)).max(1)) {
        // SAFETY: a prefetch never faults; the address lies in the range the
        // caller names.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(i).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// [`prefetch`] of piece `i` of `s` cut into `parts` nearly equal pieces: a
/// loop of `parts` steps spreads one slice's prefetches over its steps.
#[inline(always)]
pub(crate) fn prefetch_part<T>(s: &[T], i: usize, parts: usize) {
    let parts = parts.max(1);
    prefetch(&s[i * s.len() / parts..((i + 1) * s.len() / parts).min(s.len())]);
}

/// Lanes `lo .. hi` of a 16-lane mask (empty where `hi <= lo`), clamped to
/// `0 .. 16`: the lane masks of the AVX-512F loops that read and write
/// through masks (depthwise planes, the stride-2 Winograd runs).
pub(crate) fn lanes16(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
    if hi <= lo {
        return 0;
    }
    (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
}

/// Whether the f32 passes run on ferroconv's own packed GEMM ([`sgemm`]) for
/// element type `T`: f32 on a CPU with AVX2 and FMA, unless
/// `FERROCONV_ISA=generic` forces the matrixmultiply path.
pub(crate) fn packed_path<T>() -> bool {
    std::mem::size_of::<T>() == 4 && sgemm::available()
}

/// `(scratch, partials, packed, index)` elements every pass of `geom` needs
/// on the current pool.
pub(crate) fn workspace_len<T>(geom: &Conv2dGeometry) -> (usize, usize, usize, usize) {
    if direct::eligible(geom) {
        return (direct::scratch_len::<T>(geom), 0, 0, 0);
    }
    let (f_scratch, f_packed, index) = if winograd_s2::selected::<T>(geom) {
        let p = winograd_s2::plan(geom);
        (p.parts * p.scratch_len, p.packed_len, 0)
    } else if let Some(tile) = winograd::selected::<T>(geom) {
        let p = winograd::plan::<T>(geom, tile);
        (p.parts * p.scratch_len, p.packed_len, 0)
    } else if small_cin::eligible::<T>(geom) {
        let p = small_cin::plan(geom);
        (p.parts * p.scratch_len, p.packed_len, p.index_len)
    } else if implicit::eligible::<T>(geom) {
        let p = implicit::plan(geom);
        (p.parts * p.scratch_len, p.packed_len, p.index_len)
    } else {
        let f = forward::plan::<T>(geom);
        (f.parts * f.scratch_len.max(1), f.packed_len, 0)
    };
    let winograd_input = winograd::input_grad_geometry::<T>(geom).map(|(tg, tile)| {
        let p = winograd::plan::<T>(&tg, tile);
        (p.parts * p.scratch_len, p.packed_len, 0)
    });
    let (i_scratch, i_packed, i_index) = match winograd_input {
        Some(sizes) => sizes,
        None => match input_grad::implicit_geometry::<T>(geom) {
            Some(tg) => {
                let p = implicit::plan(&tg);
                (p.parts * p.scratch_len, p.packed_len, p.index_len)
            }
            None => {
                let i = input_grad::plan::<T>(geom);
                (i.parts * i.scratch_len.max(1), i.packed_len, 0)
            }
        },
    };
    let (w_scratch, w_partials, w_index) = if let Some(tile) = winograd::selected_weight_grad::<T>(geom) {
        let w = winograd::wgrad_plan::<T>(geom, tile);
        (w.scratch_len, w.partials_len, 0)
    } else if dot_wgrad::eligible::<T>(geom) {
        let w = dot_wgrad::plan(geom);
        (w.parts * w.scratch_len, w.partials_len, 0)
    } else if strided_wgrad::eligible::<T>(geom) {
        let w = strided_wgrad::plan(geom);
        (w.parts * w.scratch_len, w.partials_len, w.index_len)
    } else if implicit_wgrad::eligible::<T>(geom) {
        let w = implicit_wgrad::plan(geom);
        (w.parts * w.scratch_len, w.partials_len, w.index_len)
    } else {
        let w = weight_grad::plan::<T>(geom);
        (w.parts * w.scratch_len.max(1), w.partials_len, 0)
    };
    let scratch = [f_scratch, i_scratch, w_scratch].into_iter().max().unwrap_or(0);
    (
        scratch,
        w_partials,
        f_packed.max(i_packed),
        index.max(i_index).max(w_index),
    )
}
