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
//! Measured (bench_report, 1 thread, depthwise_3x3): forward 1.6 -> 7.3,
//! input gradient 1.7 -> 4.9, weight gradient 1.3 -> 4.1 GFLOP/s against
//! im2col + GEMM. Eligibility: [`eligible`] (any stride, padding, dilation);
//! everything else falls back to im2col + GEMM.
//! The input and weight gradients are the same loops transposed. The
//! summation order of every element is fixed (bias, then taps in `(ky, kx)`
//! order; for the weight gradient images, rows, then 8 interleaved lanes per
//! row), and the parallel tasks are whole planes, so results do not depend on
//! the thread count.

use rayon::prelude::*;

use super::im2col::valid_range;
use super::isa;
use crate::element::Element;
use crate::geometry::Conv2dGeometry;

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

/// One output plane: bias, then every tap's multiply-add over its valid rows.
///
/// The three loops here share their tap-and-row walk by shape, not through a
/// closure: a closure does not inherit `#[target_feature]`, so a shared
/// walker with the body in a closure compiled the body for baseline SSE2
/// (callgrind: 112 M instructions against 46 M on depthwise_3x3 forward).
#[inline(always)]
fn forward_plane_impl<T: Element>(geom: &Conv2dGeometry, xp: &[T], wk: &[T], b: T, yp: &mut [T]) {
    let (wd, ow) = (geom.w(), geom.ow());
    let (sh, sw) = geom.stride();
    yp.fill(b);
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
            if sw == 1 {
                axpy(yr, &xp[s0..s0 + (c1 - c0)], wv);
            } else {
                let xr = xp[s0..s0 + (c1 - c0 - 1) * sw + 1].iter().step_by(sw);
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o += wv * v;
                }
            }
        }
    }
}

isa::dispatch!(fn forward_plane<T>(geom: &Conv2dGeometry, xp: &[T], wk: &[T], b: T, yp: &mut [T]) => forward_plane_impl);

/// Forward: one task per output plane `(n, co)`.
pub(crate) fn forward<T: Element>(geom: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
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
pub(crate) fn input_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], w: &[T], dx: &mut [T]) {
    let (c_out, cog, groups) = (geom.c_out(), geom.cog(), geom.groups());
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        let (n, g) = (plane / groups, plane % groups);
        dxp.fill(T::ZERO);
        for co in g * cog..(g + 1) * cog {
            let dyp = &dy[(n * c_out + co) * ohw..(n * c_out + co + 1) * ohw];
            input_grad_plane(geom, dyp, &w[co * khkw..(co + 1) * khkw], dxp);
        }
    });
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

/// The weight gradient of output channel `co`: per tap, images, then rows,
/// of a row dot product.
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
pub(crate) fn weight_grad<T: Element>(geom: &Conv2dGeometry, x: &[T], dy: &[T], dw: &mut [T]) {
    let khkw = geom.kh() * geom.kw();
    dw.par_chunks_mut(khkw)
        .enumerate()
        .for_each(|(co, dwk)| weight_grad_channel(geom, x, dy, co, dwk));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dSpec, Padding};

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
        forward_plane(&g, &xp, &wk, 0.5, &mut a);
        forward_plane_impl(&g, &xp, &wk, 0.5, &mut b);
        assert_eq!(a, b);
        input_grad_plane(&g, &dyp, &wk, &mut a);
        input_grad_plane_impl(&g, &dyp, &wk, &mut b);
        assert_eq!(a, b);
        let (x, dy) = (v(g.input_len(), 4), v(g.output_len(), 5));
        let (mut da, mut db) = (vec![0f32; 9], vec![0f32; 9]);
        weight_grad_channel(&g, &x, &dy, 4, &mut da);
        weight_grad_channel_impl(&g, &x, &dy, 4, &mut db);
        assert_eq!(da, db);
    }
}
