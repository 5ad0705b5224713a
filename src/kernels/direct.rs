//! Direct convolution for depthwise layers (`groups = c_in > 1`, one input
//! channel per group, any channel multiplier).
//!
//! Why: with `cig = 1` the GEMM's reduction length is only `K = kh * kw` (9 for
//! a 3x3 depthwise layer), so im2col + GEMM spends its time building and
//! packing the column matrix (measured 1.3-1.7 GFLOP/s on depthwise_3x3,
//! barely above the naive loops). Here every output plane is built tap by
//! tap: for each `(ky, kx)`, `Y[n][co][oy][ox] += W[co][0][ky][kx] *
//! X[n][g][iy][ix]` over the valid rows and columns, a contiguous
//! multiply-add over an output row for stride 1 that the compiler vectorizes;
//! the planes stay in L1.
//!
//! Measured when first built (bench_report, 1 thread, depthwise_3x3):
//! forward 1.6 -> 7.3, input gradient 1.7 -> 4.9, weight gradient 1.3 -> 4.1
//! GFLOP/s against im2col + GEMM (the register-blocked stride-1 loops below
//! came later). Eligibility: [`eligible`] (any stride, padding, dilation);
//! everything else falls back to im2col + GEMM.
//! Stride 1 with kernels 1, 3, 5 or 7 wide runs on zero-padded copies of the
//! input planes ([`forward_plane_padded`], [`weight_grad_padded_impl`]), so
//! every pixel takes the register-blocked loop (undilated 3x3 kernels on f32
//! with AVX2: two output rows at a time, [`plane_3x3_avx2`]; 16-lane vectors
//! where AVX-512F runs and rows hold 32 pixels, [`plane_3x3_avx512`]), and the next
//! plane in memory is prefetched while one is computed
//! ([`super::prefetch_part`]: forward 12.0 -> 14.4 GFLOP/s on depthwise_3x3).
//! The stride-1 input gradient is the forward loop on `dY` with the kernel
//! flipped ([`flipped_plane_geometry`]); other strides scatter. Undilated
//! 3x3 kernels with stride 1 on f32 where AVX-512F runs take
//! [`super::depthwise_avx512`] instead (all three passes): it reads the planes
//! in place through lane masks, with no padded copy, and adds with fused
//! multiply-adds (depthwise_3x3, 1 thread, 7 alternating runs against the
//! padded loops: forward x1.43, input gradient x1.47, weight gradient x1.92). The other weight
//! gradients take one row dot product per tap. The summation order of every
//! element is fixed (bias, then taps in `(ky, kx)` order; for the weight
//! gradient images, rows, then 8 interleaved lanes per row), and the parallel
//! tasks are whole planes, so results do not depend on the thread count.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::depthwise_avx512;
use super::im2col::valid_range;
use super::isa;
use super::parallel::{SharedMut, parts_for, run_tasks};
#[cfg(target_arch = "x86_64")]
use super::simd::F32x;
#[cfg(target_arch = "x86_64")]
use super::{f32s, f32s_mut};
use crate::element::Element;
use crate::geometry::{Conv2dGeometry, Conv2dSpec, Padding};

/// True when the direct kernels serve `geom`: depthwise layers, one input
/// channel per group with more than one group. A single-channel input with
/// one group (LeNet's first layer) stays on im2col + GEMM: there all output
/// channels share one column matrix, and GEMM measured 19 GFLOP/s against
/// 6 for these loops on lenet_c1 (1 thread).
pub(crate) fn eligible(geom: &Conv2dGeometry) -> bool {
    geom.cig() == 1 && geom.groups() > 1
}

/// Per tap: `(ky, kx, row offset, column offset, oy range, ox range)`.
struct Tap {
    k: usize,
    yoff: isize,
    xoff: isize,
    rows: (usize, usize),
    cols: (usize, usize),
}

fn taps(geom: &Conv2dGeometry) -> impl Iterator<Item = Tap> + '_ {
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pt, _, pl, _) = geom.padding();
    (0..geom.kh() * geom.kw()).map(move |k| {
        let (ky, kx) = (k / geom.kw(), k % geom.kw());
        let yoff = (ky * dh) as isize - pt as isize;
        let xoff = (kx * dw) as isize - pl as isize;
        Tap {
            k,
            yoff,
            xoff,
            rows: valid_range(0, geom.oh(), sh, yoff, geom.h()),
            cols: valid_range(0, geom.ow(), sw, xoff, geom.w()),
        }
    })
}

/// `y += a * x`, elementwise, in blocks of 8 the compiler vectorizes.
#[inline(always)]
fn axpy<T: Element>(y: &mut [T], x: &[T], a: T) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let mut yc = y.chunks_exact_mut(8);
    let mut xc = x.chunks_exact(8);
    for (yb, xb) in (&mut yc).zip(&mut xc) {
        for l in 0..8 {
            yb[l] += a * xb[l];
        }
    }
    for (o, &v) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o += a * v;
    }
}

/// Output pixels one pass over the taps computes in registers (stride 1):
/// four 8-lane f32 vectors, so four independent chains of adds hide their
/// latency.
const BLOCK: usize = 32;

/// One output plane: `yp[p] = start + sum over valid taps (ky, kx), in that
/// order, of wk[tap] * x`, where `start` is `b`, or the old `yp[p]` when
/// `accumulate`.
///
/// Stride 1 (any dilation and padding): per output row, the interior pixels
/// (every `kx` in bounds) go in blocks of [`BLOCK`], all taps accumulated in
/// registers and stored once; the last block is shifted back to end at the
/// interior's end (recomputing a few pixels with the same operations), and
/// only the border pixels run the scalar loop. Rows with a `ky` out of
/// bounds skip that tap row. Measured against one pass over the plane per
/// tap (depthwise_3x3, 1 thread, medians of 5 alternating runs): forward
/// 4.4 -> 5.6 GFLOP/s, input gradient (below) 4.6 -> 5.6. That is about
/// 10 ms for 12.8 MB of planes in and 12.8 MB out, where a plain copy of the
/// same sizes takes about 4 ms on the project VM: memory traffic is now a
/// large share of the pass. Other strides:
/// one multiply-add pass over the valid part of each output row per tap, in
/// the same order.
///
/// The three loops here share their tap-and-row walk by shape, not through a
/// closure: a closure does not inherit `#[target_feature]`, so a shared
/// walker with the body in a closure compiled the body for baseline SSE2
/// (callgrind: 112 M instructions against 46 M on depthwise_3x3 forward).
#[inline(always)]
fn forward_plane_impl<T: Element>(geom: &Conv2dGeometry, xp: &[T], wk: &[T], b: T, yp: &mut [T], accumulate: bool) {
    let (h, wd, oh, ow) = (geom.h(), geom.w(), geom.oh(), geom.ow());
    let (kh, kw) = (geom.kh(), geom.kw());
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pt, _, pl, _) = geom.padding();
    if sw == 1 {
        // Interior columns: ox - pl >= 0 and ox - pl + (kw - 1) * dw < w.
        let lo = pl.min(ow);
        let hi = (wd + pl).saturating_sub((kw - 1) * dw).clamp(lo, ow);
        for oy in 0..oh {
            let yr = &mut yp[oy * ow..(oy + 1) * ow];
            let row_of = |ky: usize| {
                let iy = (oy * sh + ky * dh) as isize - pt as isize;
                (0..h as isize)
                    .contains(&iy)
                    .then(|| &xp[iy as usize * wd..(iy as usize + 1) * wd])
            };
            if hi - lo >= BLOCK {
                // `done`: end of what is stored; the shifted last block stores
                // only its new pixels (with `accumulate` the overlap already
                // holds its sum, and its lanes here started from that sum).
                let (mut ox, mut done) = (lo, lo);
                loop {
                    let mut acc = [b; BLOCK];
                    if accumulate {
                        acc.copy_from_slice(&yr[ox..ox + BLOCK]);
                    }
                    for ky in 0..kh {
                        if let Some(row) = row_of(ky) {
                            for kx in 0..kw {
                                let wv = wk[ky * kw + kx];
                                let src: &[T; BLOCK] = row[ox + kx * dw - pl..][..BLOCK].try_into().unwrap();
                                for l in 0..BLOCK {
                                    acc[l] += wv * src[l];
                                }
                            }
                        }
                    }
                    yr[done..ox + BLOCK].copy_from_slice(&acc[done - ox..]);
                    done = ox + BLOCK;
                    if done == hi {
                        break;
                    }
                    ox = (ox + BLOCK).min(hi - BLOCK);
                }
            }
            let scalar_from = if hi - lo >= BLOCK { hi } else { lo };
            for ox in (0..lo).chain(scalar_from..ow) {
                let mut acc = if accumulate { yr[ox] } else { b };
                for ky in 0..kh {
                    if let Some(row) = row_of(ky) {
                        for kx in 0..kw {
                            let ix = (ox + kx * dw) as isize - pl as isize;
                            if (0..wd as isize).contains(&ix) {
                                acc += wk[ky * kw + kx] * row[ix as usize];
                            }
                        }
                    }
                }
                yr[ox] = acc;
            }
        }
        return;
    }
    if !accumulate {
        yp.fill(b);
    }
    for t in taps(geom) {
        let wv = wk[t.k];
        let (c0, c1) = t.cols;
        if c0 >= c1 {
            continue;
        }
        for oy in t.rows.0..t.rows.1 {
            let iy = ((oy * sh) as isize + t.yoff) as usize;
            let s0 = ((iy * wd) as isize + (c0 * sw) as isize + t.xoff) as usize;
            let yr = &mut yp[oy * ow + c0..oy * ow + c1];
            let xr = xp[s0..s0 + (c1 - c0 - 1) * sw + 1].iter().step_by(sw);
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o += wv * v;
            }
        }
    }
}

isa::dispatch!(fn forward_plane<T>(geom: &Conv2dGeometry, xp: &[T], wk: &[T], b: T, yp: &mut [T], accumulate: bool) => forward_plane_impl);

/// Elements of one zero-padded plane of a stride-1 `geom` (the padded
/// input of the forward pass), or 0 where the padded path does not run.
fn padded_len(geom: &Conv2dGeometry) -> usize {
    if geom.stride() != (1, 1) {
        return 0;
    }
    let (pt, pb, pl, pr) = geom.padding();
    (geom.h() + pt + pb) * (geom.w() + pl + pr)
}

/// Copies the `h x w` plane `xp` into `pp` with `geom`'s zero padding
/// around it (`(h + pt + pb) x (w + pl + pr)`, row-major).
fn pad_plane<T: Element>(geom: &Conv2dGeometry, xp: &[T], pp: &mut [T]) {
    let (h, w) = (geom.h(), geom.w());
    let (pt, pb, pl, pr) = geom.padding();
    let wp = w + pl + pr;
    let pp = &mut pp[..(h + pt + pb) * wp];
    pp[..pt * wp].fill(T::ZERO);
    pp[(pt + h) * wp..].fill(T::ZERO);
    for (row, src) in pp[pt * wp..(pt + h) * wp].chunks_exact_mut(wp).zip(xp.chunks_exact(w)) {
        row[..pl].fill(T::ZERO);
        row[pl..pl + w].copy_from_slice(src);
        row[pl + w..].fill(T::ZERO);
    }
}

/// One stride-1 output plane from a zero-padded input plane `pp` (row
/// stride `wp`): `yp[oy][ox] = start + sum over (ky, kx) in order of
/// wk[ky * KW + kx] * pp[oy + ky*dh][ox + kx*dw]`, `start` the bias or the
/// old `yp` (`accumulate`). With the padding in memory every output pixel
/// takes the same register-blocked loop ([`BLOCK`] pixels, the last block
/// of a row shifted back; rows narrower than a block in blocks of 8, then
/// single pixels), and the `KW` taps of a kernel row are unrolled. The
/// padding taps add `w * 0`, which leaves every sum as it was (up to the
/// sign of a zero). Against the bounds-checked loop above (depthwise_3x3,
/// 1 thread, medians of 5 alternating runs): forward 6.6 -> 7.9 GFLOP/s,
/// input gradient 5.6 -> 6.9; 68.8 M -> 30.5 M instructions for the forward
/// pass (callgrind). The pass is now mostly memory traffic: 25.6 MB in and
/// out in about 7 ms on the project VM.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_padded_impl<T: Element, const KW: usize>(
    pp: &[T],
    wp: usize,
    (kh, dh, dw): (usize, usize, usize),
    wk: &[T],
    b: T,
    yp: &mut [T],
    (oh, ow): (usize, usize),
    accumulate: bool,
) {
    #[inline(always)]
    fn block<T: Element, const KW: usize, const N: usize>(
        pp: &[T],
        wp: usize,
        (kh, dh, dw): (usize, usize, usize),
        wk: &[T],
        oy: usize,
        ox: usize,
        acc: &mut [T; N],
    ) {
        for ky in 0..kh {
            let row = &pp[(oy + ky * dh) * wp + ox..];
            let wr: &[T; KW] = wk[ky * KW..(ky + 1) * KW].try_into().unwrap();
            for (kx, &wv) in wr.iter().enumerate() {
                let src: &[T; N] = row[kx * dw..kx * dw + N].try_into().unwrap();
                for l in 0..N {
                    acc[l] += wv * src[l];
                }
            }
        }
    }
    let k = (kh, dh, dw);
    for oy in 0..oh {
        let yr = &mut yp[oy * ow..(oy + 1) * ow];
        let mut done = 0;
        if ow >= BLOCK {
            let mut ox = 0;
            loop {
                let mut acc = [b; BLOCK];
                if accumulate {
                    acc.copy_from_slice(&yr[ox..ox + BLOCK]);
                }
                block::<T, KW, BLOCK>(pp, wp, k, wk, oy, ox, &mut acc);
                // Without `accumulate`, the whole block, also the columns a
                // shifted last block shares with the one before: they get the
                // same bits again (same operations in the same order), and a
                // fixed-size copy is four vector stores where the exact tail
                // was a memcpy call. With it, those columns already hold
                // their sums and are not written again.
                if accumulate {
                    yr[done..ox + BLOCK].copy_from_slice(&acc[done - ox..]);
                } else {
                    yr[ox..ox + BLOCK].copy_from_slice(&acc);
                }
                done = ox + BLOCK;
                if done == ow {
                    break;
                }
                ox = (ox + BLOCK).min(ow - BLOCK);
            }
        } else {
            while done + 8 <= ow {
                let mut acc = [b; 8];
                if accumulate {
                    acc.copy_from_slice(&yr[done..done + 8]);
                }
                block::<T, KW, 8>(pp, wp, k, wk, oy, done, &mut acc);
                yr[done..done + 8].copy_from_slice(&acc);
                done += 8;
            }
            for (ox, y) in yr.iter_mut().enumerate().skip(done) {
                let mut acc = [if accumulate { *y } else { b }];
                block::<T, KW, 1>(pp, wp, k, wk, oy, ox, &mut acc);
                *y = acc[0];
            }
        }
    }
}

/// Whether the padded loops have an unrolled kernel row for `geom`'s kernel
/// width (1, 3, 5 or 7): the one list [`forward_padded_any`] and
/// [`weight_grad_channel_padded_impl`] dispatch on.
fn unrolled_width(geom: &Conv2dGeometry) -> bool {
    matches!(geom.kw(), 1 | 3 | 5 | 7)
}

/// What the undilated 3x3 plane loop reads ([`plane_3x3`]): the padded
/// input plane `pp` (`oh + 2` rows of `wp = ow + 2`), the nine taps, the
/// bias, whether to add onto the output, and the next plane to prefetch.
#[cfg(target_arch = "x86_64")]
struct Plane3x3<'a> {
    pp: &'a [f32],
    wp: usize,
    wk: &'a [f32; 9],
    b: f32,
    oh: usize,
    ow: usize,
    accumulate: bool,
    next: &'a [f32],
}

/// Defines `$name`, [`plane_3x3`] on vectors `$v` compiled with the target
/// feature `$feat` (one wrapper per vector width).
macro_rules! plane_3x3_width {
    ($(#[$m:meta])* unsafe fn $name:ident = $feat:literal, $v:ident;) => {
        $(#[$m])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name(a: &Plane3x3, yp: &mut [f32]) {
            // SAFETY: the caller's contract (the instruction set, the extents).
            unsafe { plane_3x3::<std::arch::x86_64::$v>(a, yp) }
        }
    };
}

plane_3x3_width! {
/// [`forward_padded_impl`] for an undilated 3x3 kernel, f32 on AVX2, at
/// least 16 output columns: two output rows x 16 pixels per block, so each
/// loaded input vector (one of the four input rows the two output rows read,
/// shifted by `kx`) serves both rows where the kernel reaches it: 24 loads
/// per block instead of 36. The taps of each output element are still added
/// `(ky, kx)` in order, a multiply then an add, so the bits are those of the
/// generic loop; the last block of a row is shifted back (recomputing a few
/// pixels with the same operations; with `accumulate` those are not stored
/// again), an odd last row runs alone.
///
/// While it runs, it prefetches `next` (the input plane the worker will
/// probably pad next), a share per row pair.
///
/// # Safety
/// AVX2 must be available; `a.pp` must hold `oh + 2` rows of `wp = ow + 2`
/// elements, `yp` `oh * ow` elements, `ow >= 16`.
unsafe fn plane_3x3_avx2 = "avx2", __m256;
}

plane_3x3_width! {
/// [`plane_3x3_avx2`] on 16-lane vectors (blocks of 32 pixels): the same
/// operations per element, so the same bits.
///
/// # Safety
/// AVX-512F must be available; as [`plane_3x3_avx2`], with `ow >= 32`.
unsafe fn plane_3x3_avx512 = "avx512f", __m512;
}

/// The body of [`plane_3x3_avx2`] and [`plane_3x3_avx512`] on vectors `S`,
/// blocks of `2 * S::LANES` pixels.
///
/// # Safety
/// `S`'s instruction set must be available; `a.pp` must hold `oh + 2` rows
/// of `wp = ow + 2` elements, `yp` `oh * ow` elements, `ow >= 2 * S::LANES`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn plane_3x3<S: F32x>(a: &Plane3x3, yp: &mut [f32]) {
    let Plane3x3 {
        pp,
        wp,
        wk,
        b,
        oh,
        ow,
        accumulate,
        next,
    } = *a;
    let bw = 2 * S::LANES;
    assert!(ow >= bw && pp.len() >= (oh + 2) * wp && yp.len() >= oh * ow);
    /// Rows `oy .. oy + R` (R = 1 or 2), pixels `ox .. ox + 2 LANES`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<S: F32x, const R: usize>(
        pp: *const f32,
        wp: usize,
        w: &[S; 9],
        b: S,
        y: *mut f32,
        ow: usize,
        (oy, ox): (usize, usize),
        accumulate: bool,
        skip: usize,
    ) {
        let l = S::LANES;
        let mut acc = [[b; 2]; R];
        // SAFETY: (all pointer arithmetic below) rows oy .. oy + R + 2 of the
        // padded plane and columns ox .. ox + 2 l + 2 exist (oy + R <= oh,
        // ox + 2 l <= ow, the caller's contract); output rows oy .. oy + R,
        // columns ox .. ox + 2 l lie in `y`; `S`'s instruction set.
        unsafe {
            if accumulate {
                for (r, a) in acc.iter_mut().enumerate() {
                    let yr = y.add((oy + r) * ow + ox);
                    *a = [S::load(yr), S::load(yr.add(l))];
                }
            }
            for i in 0..R + 2 {
                let row = pp.add((oy + i) * wp + ox);
                for kx in 0..3 {
                    let x = [S::load(row.add(kx)), S::load(row.add(l + kx))];
                    for (r, a) in acc.iter_mut().enumerate() {
                        // Output row oy + r takes input row oy + i as tap row ky = i - r.
                        if i >= r && i - r < 3 {
                            let wv = w[(i - r) * 3 + kx];
                            a[0] = a[0].add_mul(wv, x[0]);
                            a[1] = a[1].add_mul(wv, x[1]);
                        }
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let yr = y.add((oy + r) * ow + ox);
                if skip == 0 {
                    a[0].store(yr);
                    a[1].store(yr.add(l));
                } else {
                    // Columns 0..skip already hold their sums (accumulate).
                    let mut t = [0.0f32; 32];
                    a[0].store(t.as_mut_ptr());
                    a[1].store(t.as_mut_ptr().add(l));
                    std::ptr::copy_nonoverlapping(t.as_ptr().add(skip), yr.add(skip), 2 * l - skip);
                }
            }
        }
    }
    // SAFETY: `S`'s instruction set (this function's contract).
    let w: [S; 9] = std::array::from_fn(|t| unsafe { S::splat(wk[t]) });
    // SAFETY: as above.
    let bv = unsafe { S::splat(b) };
    let (p, y) = (pp.as_ptr(), yp.as_mut_ptr());
    // The next plane's input, asked for a share per row pair so that it is
    // in cache when its own padded copy is made (the planes stream from
    // memory one after another).
    let mut oy = 0;
    while oy < oh {
        super::prefetch_part(next, oy / 2, oh.div_ceil(2));
        let two = oy + 2 <= oh;
        let (mut ox, mut done) = (0, 0);
        loop {
            // With `accumulate`, the columns a shifted last block shares with
            // the one before already hold their sums: not stored again.
            let skip = if accumulate { done - ox } else { 0 };
            // SAFETY: rows oy .. oy + 1 or 2 <= oh, columns ox .. ox + bw <=
            // ow (this function's contract covers the reads and writes).
            unsafe {
                if two {
                    block::<S, 2>(p, wp, &w, bv, y, ow, (oy, ox), accumulate, skip);
                } else {
                    block::<S, 1>(p, wp, &w, bv, y, ow, (oy, ox), accumulate, skip);
                }
            }
            done = ox + bw;
            if done == ow {
                break;
            }
            ox = (ox + bw).min(ow - bw);
        }
        oy += if two { 2 } else { 1 };
    }
}

/// [`forward_padded_impl`] for the kernel widths with an unrolled loop
/// (1, 3, 5, 7; the caller runs [`forward_plane`] for the others).
#[inline(always)]
fn forward_padded_any<T: Element>(geom: &Conv2dGeometry, pp: &[T], wk: &[T], b: T, yp: &mut [T], accumulate: bool) {
    let (pl, pr) = (geom.padding().2, geom.padding().3);
    let wp = geom.w() + pl + pr;
    let k = (geom.kh(), geom.dilation().0, geom.dilation().1);
    let o = (geom.oh(), geom.ow());
    match geom.kw() {
        1 => forward_padded_impl::<T, 1>(pp, wp, k, wk, b, yp, o, accumulate),
        3 => forward_padded_impl::<T, 3>(pp, wp, k, wk, b, yp, o, accumulate),
        5 => forward_padded_impl::<T, 5>(pp, wp, k, wk, b, yp, o, accumulate),
        7 => forward_padded_impl::<T, 7>(pp, wp, k, wk, b, yp, o, accumulate),
        _ => unreachable!("the caller checks the kernel width"),
    }
}

/// One stride-1 output plane through a zero-padded copy of its input:
/// pads `xp` into `pp`, then runs the unrolled loop (or [`forward_plane`]
/// for other kernel widths).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_plane_padded_impl<T: Element>(
    geom: &Conv2dGeometry,
    xp: &[T],
    wk: &[T],
    b: T,
    yp: &mut [T],
    accumulate: bool,
    pp: &mut [T],
    next: &[T],
) {
    if unrolled_width(geom) {
        pad_plane(geom, xp, pp);
        #[cfg(target_arch = "x86_64")]
        if isa::avx2_f32::<T>() && (geom.kh(), geom.kw(), geom.dilation()) == (3, 3, (1, 1)) && geom.ow() >= 16 {
            let wp = geom.w() + geom.padding().2 + geom.padding().3;
            let wk: &[f32; 9] = super::f32s(wk).try_into().expect("nine taps");
            let b = super::f32s(std::slice::from_ref(&b))[0];
            let (pp, yp) = (super::f32s(pp), super::f32s_mut(yp));
            assert!(pp.len() >= (geom.oh() + 2) * wp && wp == geom.ow() + 2 && yp.len() == geom.oh() * geom.ow());
            let a = Plane3x3 {
                pp,
                wp,
                wk,
                b,
                oh: geom.oh(),
                ow: geom.ow(),
                accumulate,
                next: super::f32s(next),
            };
            // SAFETY: AVX2 (`avx2_f32`), AVX-512F where `isa()` says so; the
            // padded plane holds oh + 2 rows of ow + 2 elements and the
            // output plane oh x ow (checked above); ow >= 32 for 16 lanes.
            unsafe {
                if isa::isa() == isa::Isa::Avx512 && a.ow >= 32 {
                    plane_3x3_avx512(&a, yp);
                } else {
                    plane_3x3_avx2(&a, yp);
                }
            }
            return;
        }
        forward_padded_any(geom, pp, wk, b, yp, accumulate);
    } else {
        forward_plane_impl(geom, xp, wk, b, yp, accumulate);
    }
}

isa::dispatch!(fn forward_plane_padded<T>(geom: &Conv2dGeometry, xp: &[T], wk: &[T], b: T, yp: &mut [T], accumulate: bool, pp: &mut [T], next: &[T]) => forward_plane_padded_impl);

/// Scratch elements the direct passes of `geom` need on the current pool:
/// one padded plane per worker for the stride-1 forward pass and input
/// gradient; none where [`super::depthwise_avx512`] reads the planes in
/// place (it serves all three passes of such a geometry).
pub(crate) fn scratch_len<T>(geom: &Conv2dGeometry) -> usize {
    #[cfg(target_arch = "x86_64")]
    if depthwise_avx512::Plane::of::<T>(geom).is_some() {
        return 0;
    }
    let f = padded_len(geom);
    let i = flipped_plane_geometry(geom).map_or(0, |fg| padded_len(&fg));
    let planes = geom.n() * geom.c_out().max(geom.c_in());
    parts_for(planes) * f.max(i)
}

/// Forward: one task per output plane `(n, co)`.
pub(crate) fn forward<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    scratch: &mut [T],
) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = depthwise_avx512::Plane::of::<T>(geom) {
        let bias = bias.map(|b| f32s(b));
        return depthwise_avx512::forward(geom, &p, f32s(x), f32s(w), bias, f32s_mut(y));
    }
    let plen = padded_len(geom);
    if plen > 0 {
        let planes = geom.n() * c_out;
        let ybase = SharedMut(y.as_mut_ptr());
        assert!(y.len() >= planes * ohw);
        run_tasks(scratch, plen, parts_for(planes), planes, |plane, pp| {
            let (n, co) = (plane / c_out, plane % c_out);
            let g = co / cog;
            // SAFETY: plane `plane` of `y` (checked above) belongs to this
            // task alone.
            let yp = unsafe { std::slice::from_raw_parts_mut(ybase.get().add(plane * ohw), ohw) };
            // The plane after this one in memory: the next task's input with
            // one output channel per group.
            let next = x.get((n * c_in + g + 1) * hw..(n * c_in + g + 2) * hw).unwrap_or(&[]);
            forward_plane_padded(
                geom,
                &x[(n * c_in + g) * hw..(n * c_in + g + 1) * hw],
                &w[co * khkw..(co + 1) * khkw],
                bias.map_or(T::ZERO, |b| b[co]),
                yp,
                false,
                pp,
                next,
            );
        });
        return;
    }
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
        let (n, co) = (plane / c_out, plane % c_out);
        let g = co / cog;
        let xp = &x[(n * c_in + g) * hw..(n * c_in + g + 1) * hw];
        forward_plane(
            geom,
            xp,
            &w[co * khkw..(co + 1) * khkw],
            bias.map_or(T::ZERO, |b| b[co]),
            yp,
            false,
        );
    });
}

/// Scatters one output channel's gradient `dyp` through its kernel `wk` into
/// the input plane `dxp`.
#[inline(always)]
fn input_grad_plane_impl<T: Element>(geom: &Conv2dGeometry, dyp: &[T], wk: &[T], dxp: &mut [T]) {
    let (wd, ow) = (geom.w(), geom.ow());
    let (sh, sw) = geom.stride();
    for t in taps(geom) {
        let wv = wk[t.k];
        let (c0, c1) = t.cols;
        if c0 >= c1 {
            continue;
        }
        for oy in t.rows.0..t.rows.1 {
            let iy = ((oy * sh) as isize + t.yoff) as usize;
            let s0 = ((iy * wd) as isize + (c0 * sw) as isize + t.xoff) as usize;
            let dr = &dyp[oy * ow + c0..oy * ow + c1];
            if sw == 1 {
                axpy(&mut dxp[s0..s0 + (c1 - c0)], dr, wv);
            } else {
                let to = dxp[s0..s0 + (c1 - c0 - 1) * sw + 1].iter_mut().step_by(sw);
                for (o, &d) in to.zip(dr) {
                    *o += wv * d;
                }
            }
        }
    }
}

isa::dispatch!(fn input_grad_plane<T>(geom: &Conv2dGeometry, dyp: &[T], wk: &[T], dxp: &mut [T]) => input_grad_plane_impl);

/// Input gradient: one task per input plane `(n, g)`, scattering the
/// gradients of its `cog` output channels in channel then tap order.
pub(crate) fn input_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], w: &[T], dx: &mut [T], scratch: &mut [T]) {
    let (c_out, cog, groups) = (geom.c_out(), geom.cog(), geom.groups());
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
    if let Some(fg) = flipped_plane_geometry(geom) {
        // Stride 1: dX[ci] = sum over the group's output channels of the
        // forward convolution of dY[co] with W[co] flipped (see
        // `flipped_plane_geometry`), in channel order.
        let planes = geom.n() * groups;
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = depthwise_avx512::Plane::of::<T>(&fg) {
            return depthwise_avx512::input_grad(geom, &p, f32s(dy), f32s(w), f32s_mut(dx));
        }
        let plen = padded_len(&fg);
        let dxbase = SharedMut(dx.as_mut_ptr());
        assert!(dx.len() >= planes * hw);
        run_tasks(scratch, plen, parts_for(planes), planes, |plane, pp| {
            let (n, g) = (plane / groups, plane % groups);
            // SAFETY: plane `plane` of `dx` (checked above) belongs to this
            // task alone.
            let dxp = unsafe { std::slice::from_raw_parts_mut(dxbase.get().add(plane * hw), hw) };
            let mut wf = [T::ZERO; MAX_FLIPPED_TAPS];
            for (j, co) in (g * cog..(g + 1) * cog).enumerate() {
                let wk = &w[co * khkw..(co + 1) * khkw];
                for (t, v) in wf[..khkw].iter_mut().enumerate() {
                    *v = wk[khkw - 1 - t];
                }
                let dyp = &dy[(n * c_out + co) * ohw..(n * c_out + co + 1) * ohw];
                // The next output channel's plane, this task's or the next one's.
                let next = dy
                    .get((n * c_out + co + 1) * ohw..(n * c_out + co + 2) * ohw)
                    .unwrap_or(&[]);
                forward_plane_padded(&fg, dyp, &wf[..khkw], T::ZERO, dxp, j > 0, pp, next);
            }
        });
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        let (n, g) = (plane / groups, plane % groups);
        dxp.fill(T::ZERO);
        for co in g * cog..(g + 1) * cog {
            let dyp = &dy[(n * c_out + co) * ohw..(n * c_out + co + 1) * ohw];
            input_grad_plane(geom, dyp, &w[co * khkw..(co + 1) * khkw], dxp);
        }
    });
}

/// Most kernel taps the stride-1 input gradient flips on the stack.
const MAX_FLIPPED_TAPS: usize = 64;

/// For a stride-1 `geom`, the single-plane convolution whose forward pass
/// maps one `dY` plane to its `dX` contribution: the kernel flipped
/// (`W'[ky][kx] = W[kh-1-ky][kw-1-kx]`), the same dilation, and padding
/// `(kh-1)*dh - pad` on each side, since
/// `dX[iy][ix] = sum over ky, kx of dY[iy + pad_top - ky*dh][ix + pad_left - kx*dw] * W[ky][kx]`.
/// `None` for other strides, padding wider than the dilated kernel, or
/// kernels of more than [`MAX_FLIPPED_TAPS`] taps (those scatter instead).
fn flipped_plane_geometry(geom: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    if geom.stride() != (1, 1) || geom.kh() * geom.kw() > MAX_FLIPPED_TAPS {
        return None;
    }
    let (pt, pb, pl, pr) = geom.padding();
    let (dh, dw) = geom.dilation();
    let (eh, ew) = ((geom.kh() - 1) * dh, (geom.kw() - 1) * dw);
    if pt > eh || pb > eh || pl > ew || pr > ew {
        return None;
    }
    let g = Conv2dSpec::new(1, 1, geom.oh(), geom.ow(), 1, geom.kh(), geom.kw())
        .padding(Padding::explicit(eh - pt, eh - pb, ew - pl, ew - pr))
        .dilation(dh, dw)
        .build()
        .ok()?;
    (g.oh() == geom.h() && g.ow() == geom.w()).then_some(g)
}

/// `sum a[j] * b[j*s]` in 8 interleaved lanes (a fixed order the compiler can
/// vectorize), lanes added pairwise at the end.
#[inline(always)]
fn dot<T: Element>(a: &[T], b: &[T], s: usize) -> T {
    let mut lanes = [T::ZERO; 8];
    if s == 1 {
        let (ac, bc) = (a.chunks_exact(8), b[..a.len()].chunks_exact(8));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for l in 0..8 {
                lanes[l] += x[l] * y[l];
            }
        }
        for (l, (&x, &y)) in ar.iter().zip(br).enumerate() {
            lanes[l] += x * y;
        }
    } else {
        for (j, &x) in a.iter().enumerate() {
            lanes[j % 8] += x * b[j * s];
        }
    }
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

/// The stride-1 weight gradient of output channel `co` for kernels `KW`
/// wide, on zero-padded copies of its input planes (`pp` is scratch):
/// `dW[ky][kx] = sum over n, oy, ox of dY[oy][ox] * pp[oy + ky*dh][ox + kx*dw]`.
/// Per output row, blocks of 8 `dY` pixels (pixel `ox + l` into lane `l`)
/// feed the `kh * KW` taps' 8-lane sums; the last block of a row is shifted
/// back to end at the row's end with the lanes it already counted zeroed.
/// Rows narrower than 8 go into one scalar sum per tap. Then
/// `dW = lanes added pairwise + scalar sum`. The order is fixed by the
/// geometry. Against the bounds-checked row passes it replaced (one pass
/// per kernel row, scalar border pixels; depthwise_3x3, 1 thread, medians
/// of 5 alternating runs): 6.1 -> 9.0 GFLOP/s, 127 M -> 57 M instructions.
#[inline(always)]
fn weight_grad_padded_impl<T: Element, const KW: usize>(
    geom: &Conv2dGeometry,
    x: &[T],
    dy: &[T],
    co: usize,
    dwk: &mut [T],
    pp: &mut [T],
    simd: bool,
) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let (h, wd, oh, ow) = (geom.h(), geom.w(), geom.oh(), geom.ow());
    let (dh, dw) = geom.dilation();
    let (_, _, pl, pr) = geom.padding();
    let wp = wd + pl + pr;
    let kh = geom.kh();
    let g = co / cog;
    let mut lanes = [[T::ZERO; 8]; MAX_FLIPPED_TAPS];
    let mut rest = [T::ZERO; MAX_FLIPPED_TAPS];
    for n in 0..geom.n() {
        pad_plane(geom, &x[(n * c_in + g) * h * wd..(n * c_in + g + 1) * h * wd], pp);
        let dyp = &dy[(n * c_out + co) * oh * ow..(n * c_out + co + 1) * oh * ow];
        // The next image's planes (or, after the last, the next channel's
        // first), a share per output row.
        let (xn, dyn_) = if n + 1 < geom.n() {
            ((n + 1) * c_in + g, (n + 1) * c_out + co)
        } else {
            (g + 1, co + 1)
        };
        let xn = x.get(xn * h * wd..(xn + 1) * h * wd).unwrap_or(&[]);
        let dyn_ = dy.get(dyn_ * oh * ow..(dyn_ + 1) * oh * ow).unwrap_or(&[]);
        for oy in 0..oh {
            super::prefetch_part(xn, oy, oh);
            super::prefetch_part(dyn_, oy, oh);
            let dr = &dyp[oy * ow..(oy + 1) * ow];
            #[cfg(target_arch = "x86_64")]
            if simd && ow >= 8 && KW == 3 && (kh, dh, dw) == (3, 1, 1) && isa::avx2_f32::<T>() {
                let l9: &mut [[T; 8]; 9] = (&mut lanes[..9]).try_into().expect("nine taps");
                let l9 = l9.as_flattened_mut();
                let rows = &pp[oy * wp..(oy + 3) * wp];
                assert!(wp == ow + 2);
                // SAFETY: AVX2 (`avx2_f32`); `rows` holds the three padded
                // rows the output row reads (ow + 2 elements each), `dr` the
                // row's ow >= 8 output gradients, `l9` nine 8-lane sums.
                unsafe { wgrad_row_3x3_avx2(super::f32s(rows), wp, super::f32s(dr), super::f32s_mut(l9)) };
                continue;
            }
            if ow >= 8 {
                let mut ox = 0;
                loop {
                    let last = ox + 8 > ow;
                    let start = if last { ow - 8 } else { ox };
                    let mut d: [T; 8] = dr[start..start + 8].try_into().unwrap();
                    if last {
                        // Lanes before `ox` were counted by the previous block.
                        for (l, v) in d.iter_mut().enumerate() {
                            if start + l < ox {
                                *v = T::ZERO;
                            }
                        }
                    }
                    for ky in 0..kh {
                        let row = &pp[(oy + ky * dh) * wp + start..];
                        let acc: &mut [[T; 8]; KW] = (&mut lanes[ky * KW..(ky + 1) * KW]).try_into().unwrap();
                        for (kx, a) in acc.iter_mut().enumerate() {
                            let src: &[T; 8] = row[kx * dw..kx * dw + 8].try_into().unwrap();
                            for l in 0..8 {
                                a[l] += d[l] * src[l];
                            }
                        }
                    }
                    ox = start + 8;
                    if ox >= ow {
                        break;
                    }
                }
            } else {
                for (ox, &d) in dr.iter().enumerate() {
                    for ky in 0..kh {
                        let row = &pp[(oy + ky * dh) * wp + ox..];
                        for kx in 0..KW {
                            rest[ky * KW + kx] += d * row[kx * dw];
                        }
                    }
                }
            }
        }
    }
    for (t, out) in dwk[..kh * KW].iter_mut().enumerate() {
        let l = &lanes[t];
        *out = (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))) + rest[t];
    }
}

/// One output row of [`weight_grad_padded_impl`] for an undilated 3x3
/// kernel, f32 on AVX2: the nine 8-lane sums `lanes[tap * 8 + l]` stay in
/// registers along the row, `lanes[tap] += d * x` for 8 output gradients
/// `d` and the 8 inputs each tap pairs with them, the blocks and the
/// shifted last block (its lanes before the previous block's end zeroed)
/// exactly as the generic loop, a multiply then an add: the same bits.
///
/// # Safety
/// AVX2 must be available; `rows` must hold 3 rows of `wp = dr.len() + 2`
/// elements, `dr.len() >= 8`, `lanes.len() == 72`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn wgrad_row_3x3_avx2(rows: &[f32], wp: usize, dr: &[f32], lanes: &mut [f32]) {
    use std::arch::x86_64::*;
    let ow = dr.len();
    assert!(ow >= 8 && wp == ow + 2 && rows.len() >= 3 * wp && lanes.len() == 72);
    // SAFETY: lanes holds 72 elements (checked above).
    let mut acc: [__m256; 9] = std::array::from_fn(|t| unsafe { _mm256_loadu_ps(lanes.as_ptr().add(8 * t)) });
    let (r, d) = (rows.as_ptr(), dr.as_ptr());
    let mut ox = 0;
    loop {
        let start = if ox + 8 > ow { ow - 8 } else { ox };
        // SAFETY: start + 8 <= ow: inside `dr`; the loads below read row
        // elements start + kx .. start + kx + 8 <= ow + 2 = wp of each of
        // the three rows (checked above).
        unsafe {
            let mut dv = _mm256_loadu_ps(d.add(start));
            if start < ox {
                // Lanes before `ox` were counted by the previous block.
                let keep = _mm256_cmpgt_epi32(
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm256_set1_epi32((ox - start) as i32 - 1),
                );
                dv = _mm256_and_ps(dv, _mm256_castsi256_ps(keep));
            }
            for ky in 0..3 {
                for kx in 0..3 {
                    let xv = _mm256_loadu_ps(r.add(ky * wp + start + kx));
                    let t = ky * 3 + kx;
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(dv, xv));
                }
            }
        }
        ox = start + 8;
        if ox >= ow {
            break;
        }
    }
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * t), *a) };
    }
}

/// Whether the padded stride-1 weight gradient runs `geom`.
fn weight_grad_padded_eligible(geom: &Conv2dGeometry) -> bool {
    geom.stride() == (1, 1) && unrolled_width(geom) && geom.kh() * geom.kw() <= MAX_FLIPPED_TAPS
}

#[inline(always)]
fn weight_grad_channel_padded_impl<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    dy: &[T],
    co: usize,
    dwk: &mut [T],
    pp: &mut [T],
) {
    match geom.kw() {
        1 => weight_grad_padded_impl::<T, 1>(geom, x, dy, co, dwk, pp, true),
        3 => weight_grad_padded_impl::<T, 3>(geom, x, dy, co, dwk, pp, true),
        5 => weight_grad_padded_impl::<T, 5>(geom, x, dy, co, dwk, pp, true),
        _ => weight_grad_padded_impl::<T, 7>(geom, x, dy, co, dwk, pp, true),
    }
}

isa::dispatch!(fn weight_grad_channel_padded<T>(geom: &Conv2dGeometry, x: &[T], dy: &[T], co: usize, dwk: &mut [T], pp: &mut [T]) => weight_grad_channel_padded_impl);

/// The weight gradient of output channel `co`.
///
/// Per tap, images, then rows, of a row dot product (the strides and kernel
/// widths [`weight_grad_padded_impl`] does not take); the order is fixed by
/// the geometry.
#[inline(always)]
fn weight_grad_channel_impl<T: Element>(geom: &Conv2dGeometry, x: &[T], dy: &[T], co: usize, dwk: &mut [T]) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let (h, wd, ow) = (geom.h(), geom.w(), geom.ow());
    let (sh, sw) = geom.stride();
    let ohw = geom.oh() * ow;
    let g = co / cog;
    for t in taps(geom) {
        let (c0, c1) = t.cols;
        let mut acc = T::ZERO;
        if c0 < c1 {
            for n in 0..geom.n() {
                let xp = &x[(n * c_in + g) * h * wd..(n * c_in + g + 1) * h * wd];
                let dyp = &dy[(n * c_out + co) * ohw..(n * c_out + co + 1) * ohw];
                for oy in t.rows.0..t.rows.1 {
                    let iy = ((oy * sh) as isize + t.yoff) as usize;
                    let s0 = ((iy * wd) as isize + (c0 * sw) as isize + t.xoff) as usize;
                    acc += dot(
                        &dyp[oy * ow + c0..oy * ow + c1],
                        &xp[s0..s0 + (c1 - c0 - 1) * sw + 1],
                        sw,
                    );
                }
            }
        }
        dwk[t.k] = acc;
    }
}

isa::dispatch!(fn weight_grad_channel<T>(geom: &Conv2dGeometry, x: &[T], dy: &[T], co: usize, dwk: &mut [T]) => weight_grad_channel_impl);

/// Weight gradient: one task per output channel `co`.
pub(crate) fn weight_grad<T: Element>(geom: &Conv2dGeometry, x: &[T], dy: &[T], dw: &mut [T], scratch: &mut [T]) {
    let khkw = geom.kh() * geom.kw();
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = depthwise_avx512::Plane::of::<T>(geom) {
        return depthwise_avx512::weight_grad(geom, &p, f32s(x), f32s(dy), f32s_mut(dw));
    }
    if weight_grad_padded_eligible(geom) {
        let c_out = geom.c_out();
        let dwbase = SharedMut(dw.as_mut_ptr());
        assert!(dw.len() >= c_out * khkw);
        run_tasks(scratch, padded_len(geom), parts_for(c_out), c_out, |co, pp| {
            // SAFETY: kernel `co` of `dw` (checked above) belongs to this
            // task alone.
            let dwk = unsafe { std::slice::from_raw_parts_mut(dwbase.get().add(co * khkw), khkw) };
            weight_grad_channel_padded(geom, x, dy, co, dwk, pp);
        });
        return;
    }
    dw.par_chunks_mut(khkw)
        .enumerate()
        .for_each(|(co, dwk)| weight_grad_channel(geom, x, dy, co, dwk));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility() {
        let s = |c_in, c_out, g| Conv2dSpec::new(1, c_in, 8, 8, c_out, 3, 3).groups(g).build().unwrap();
        assert!(eligible(&s(8, 8, 8)));
        assert!(eligible(&s(8, 16, 8)));
        assert!(!eligible(&s(1, 8, 1)));
        assert!(!eligible(&s(8, 8, 4)));
        assert!(!eligible(&s(8, 8, 1)));
    }

    /// The dispatched (widest available instruction set) and the baseline
    /// compilation of each loop give bitwise the same results.
    #[test]
    fn instruction_sets_agree_bitwise() {
        let g = Conv2dSpec::new(2, 3, 13, 37, 6, 3, 3)
            .groups(3)
            .padding(Padding::same())
            .build()
            .unwrap();
        let v = |n: usize, k: u32| {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ k) % 1000) as f32 / 500.0 - 1.0)
                .collect::<Vec<_>>()
        };
        let (xp, wk, dyp) = (v(13 * 37, 1), v(9, 2), v(13 * 37, 3));
        let (mut a, mut b) = (vec![0f32; 13 * 37], vec![0f32; 13 * 37]);
        forward_plane(&g, &xp, &wk, 0.5, &mut a, false);
        forward_plane_impl(&g, &xp, &wk, 0.5, &mut b, false);
        forward_plane(&g, &xp, &wk, 0.5, &mut a, true);
        forward_plane_impl(&g, &xp, &wk, 0.5, &mut b, true);
        assert_eq!(a, b);
        // The padded 3x3 plane (37 columns: AVX2 blocks of 2 rows x 16, the
        // last shifted; 13 rows: an odd last row) against the generic
        // padded loop, plain and accumulating.
        let mut pp = vec![f32::NAN; padded_len(&g)];
        let (mut c, mut d) = (vec![0f32; 13 * 37], vec![0f32; 13 * 37]);
        for accumulate in [false, true] {
            forward_plane_padded(&g, &xp, &wk, 0.5, &mut c, accumulate, &mut pp, &dyp);
            pad_plane(&g, &xp, &mut pp);
            forward_padded_any(&g, &pp, &wk, 0.5, &mut d, accumulate);
            assert_eq!(
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                d.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        input_grad_plane(&g, &dyp, &wk, &mut a);
        input_grad_plane_impl(&g, &dyp, &wk, &mut b);
        assert_eq!(a, b);
        let (x, dy) = (v(g.input_len(), 4), v(g.output_len(), 5));
        let (mut da, mut db) = (vec![0f32; 9], vec![0f32; 9]);
        // The padded weight gradient with the AVX2 3x3 rows (where they run)
        // against its generic loop.
        let mut pp = vec![f32::NAN; padded_len(&g)];
        let (mut pa, mut pb) = (vec![0f32; 9], vec![0f32; 9]);
        weight_grad_padded_impl::<f32, 3>(&g, &x, &dy, 4, &mut pa, &mut pp, true);
        weight_grad_padded_impl::<f32, 3>(&g, &x, &dy, 4, &mut pb, &mut pp, false);
        assert_eq!(
            pa.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            pb.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        weight_grad_channel(&g, &x, &dy, 4, &mut da);
        weight_grad_channel_impl(&g, &x, &dy, 4, &mut db);
        assert_eq!(da, db);
    }
}
