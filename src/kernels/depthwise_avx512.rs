//! Depthwise 3x3 planes on AVX-512F (x86-64 only), read in place: the stride-1,
//! undilated 3x3 forward plane (and with it the stride-1 input gradient,
//! which is the forward of `dY` with the kernel flipped) and the weight
//! gradient of one channel, f32.
//!
//! [`super::direct`]'s padded loops copy every input plane into a
//! zero-padded scratch plane first, one `memmove` and two `memset` calls per
//! row; on depthwise_3x3 that copy took a quarter of the forward pass, and
//! the loops use a multiply then an add (to match the baseline's bits)
//! where one fused multiply-add does. Here the plane is read where it lies:
//!
//! - output columns go in 16-lane vectors `ox0 .. ox0 + 16` (the last one
//!   partial, written through a mask);
//! - for tap column `kx`, the vector's input columns are
//!   `ix = ox0 + l + kx - pl`; lanes whose `ix` falls outside `0 .. w` (the
//!   padding) are masked off the load, so they read as zero and touch no
//!   memory;
//! - input rows `iy = oy - pt + ky` outside `0 .. h` are skipped: they would
//!   only add zeros.
//!
//! Forward: `Y[oy][ox] = b + sum over ky, kx of W[ky][kx] * X[iy][ix]`,
//! [`ROWS`] output rows x [`STRIPS`] column strips at a time: each input
//! vector loaded (row `iy`, shifted by `kx`) serves every output row of the
//! block that reads it, and eight independent chains of multiply-adds hide
//! their latency (one strip at a time left four chains, and the kernel
//! waited on them). The taps of an element are added in `(ky, kx)` order
//! through fused multiply-adds: the result differs from the baseline
//! loops' in the last bits, never with the thread count.
//!
//! Weight gradient: `dW[ky][kx] = sum over n, oy, ox of dY[n][oy][ox] *
//! X[n][iy][ix]`, nine 16-lane sums (one per tap) held in registers over
//! every image's plane (images, row blocks, vectors: a fixed order), then
//! each sum's lanes added. Both loops ask for the next plane a share per
//! row block ([`Prefetch`]).
//!
//! Measured against the padded loops (depthwise_3x3, 1 thread, 7
//! alternating runs, median of per-run ratios): forward x1.43, input
//! gradient x1.47, weight gradient x1.92, then x1.19 more with the weight
//! gradient's strip masks made once per channel (5 runs). Tried: loads of
//! padding rows through an empty mask instead of skipping them
//! (branch-free blocks): 0.85, the masks are then rebuilt per load on the
//! multiply-add ports.
//!
//! Padding of 0, 1 or 2 on each side is served (a 3x3 kernel reaches two
//! rows past its first; the flipped geometry of the input gradient pads
//! `2 - p`).

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::lanes16 as lanes;
use crate::geometry::Conv2dGeometry;

/// Output rows one block computes: each loaded input vector feeds up to
/// three of them.
const ROWS: usize = 4;

/// The extents of one plane of a geometry these loops serve. Made only by
/// [`Plane::of`], so one exists only where AVX-512F is in use.
#[derive(Clone, Copy)]
pub(crate) struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    pt: usize,
    pl: usize,
}

impl Plane {
    /// `geom`'s plane when these loops serve it: f32 with AVX-512F in use,
    /// a 3x3 kernel, stride 1, no dilation, padding at most 2 on each side.
    pub(crate) fn of<T>(geom: &Conv2dGeometry) -> Option<Plane> {
        let (pt, pb, pl, pr) = geom.padding();
        let fits = std::mem::size_of::<T>() == 4
            && super::isa::isa() == super::isa::Isa::Avx512
            && (geom.kh(), geom.kw()) == (3, 3)
            && geom.stride() == (1, 1)
            && geom.dilation() == (1, 1)
            && pt.max(pb).max(pl).max(pr) <= 2;
        fits.then(|| Plane {
            h: geom.h(),
            w: geom.w(),
            oh: geom.oh(),
            ow: geom.ow(),
            pt,
            pl,
        })
    }
}

/// The forward pass of `geom` (served: `p` from [`Plane::of`]): one task
/// per output plane `(n, co)`, each asking for the next input plane in
/// memory while it runs.
pub(crate) fn forward(geom: &Conv2dGeometry, p: &Plane, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
        let (n, co) = (plane / c_out, plane % c_out);
        let xi = n * c_in + co / cog;
        let next = x.get((xi + 1) * hw..(xi + 2) * hw).unwrap_or(&[]);
        let wk = w[co * 9..(co + 1) * 9].try_into().expect("nine taps");
        let b = bias.map_or(0.0, |b| b[co]);
        // SAFETY: AVX-512F (a `Plane` exists only where it is in use).
        unsafe { forward_plane(p, &x[xi * hw..(xi + 1) * hw], wk, b, yp, false, next) };
    });
}

/// The input gradient of `geom`, whose flipped single-plane geometry `p`
/// serves (`super::direct`'s `flipped_plane_geometry`): `dX[n][g]` is the
/// sum, in channel order, of the forward planes of the group's `dY[n][co]`
/// with `W[co]` flipped. One task per input plane.
pub(crate) fn input_grad(geom: &Conv2dGeometry, p: &Plane, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (c_out, cog, groups) = (geom.c_out(), geom.cog(), geom.groups());
    let (hw, ohw) = (geom.h() * geom.w(), geom.oh() * geom.ow());
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        let (n, g) = (plane / groups, plane % groups);
        for (j, co) in (g * cog..(g + 1) * cog).enumerate() {
            let wf: [f32; 9] = std::array::from_fn(|t| w[co * 9 + 8 - t]);
            let at = n * c_out + co;
            // The next output channel's plane, this task's or the next one's.
            let next = dy.get((at + 1) * ohw..(at + 2) * ohw).unwrap_or(&[]);
            // SAFETY: AVX-512F (a `Plane` exists only where it is in use).
            unsafe { forward_plane(p, &dy[at * ohw..(at + 1) * ohw], &wf, 0.0, dxp, j > 0, next) };
        }
    });
}

/// The weight gradient of `geom` (served: `p` from [`Plane::of`]): one
/// task per output channel, over every image.
pub(crate) fn weight_grad(geom: &Conv2dGeometry, p: &Plane, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (c_in, c_out, cog) = (geom.c_in(), geom.c_out(), geom.cog());
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    dw.par_chunks_mut(9).enumerate().for_each(|(co, dwk)| {
        let (xs, dys) = (((co / cog) * hw, c_in * hw), (co * ohw, c_out * ohw));
        // SAFETY: AVX-512F (a `Plane` exists only where it is in use).
        unsafe { weight_grad_channel(p, x, xs, dy, dys, geom.n(), dwk) };
    });
}

/// Per output vector `ox0`: the output lanes, and per `kx` the lanes whose
/// input column lies inside the row.
#[derive(Clone, Copy)]
struct Cols {
    ox0: usize,
    out: u16,
    inp: [u16; 3],
}

impl Cols {
    fn new(p: &Plane, ox0: usize) -> Cols {
        let out = lanes(0, (p.ow - ox0) as isize);
        let inp = std::array::from_fn(|kx| {
            // Lane l reads column ox0 + l + kx - pl: inside when
            // pl - ox0 - kx <= l < w + pl - ox0 - kx.
            let first = p.pl as isize - (ox0 + kx) as isize;
            lanes(first, first + p.w as isize) & out
        });
        Cols { ox0, out, inp }
    }
}

/// The three `kx`-shifted vectors of input row `iy` under `c`'s masks.
///
/// # Safety
/// AVX-512F; `x` must point at a plane of at least `(iy + 1) * p.w`
/// elements.
#[inline(always)]
unsafe fn row_vectors(p: &Plane, x: *const f32, iy: usize, c: &Cols) -> [__m512; 3] {
    std::array::from_fn(|kx| {
        // Lane l reads column ox0 + l + kx - pl of row iy, only where that
        // column lies inside the row (the mask), so the pointer may point
        // before the row while no lane it reads does.
        let at = x.wrapping_add(iy * p.w + c.ox0 + kx).wrapping_sub(p.pl);
        // SAFETY: AVX-512F (the caller's contract); the masked-in lanes
        // address columns 0 .. w of row iy of the plane.
        unsafe { _mm512_maskz_loadu_ps(c.inp[kx], at) }
    })
}

/// Input row `oy0 + i - pt`, which output row `oy0 + r` of a block reads as
/// tap row `ky = i - r`, where it lies inside the plane.
#[inline(always)]
fn input_row(p: &Plane, oy0: usize, i: usize) -> Option<usize> {
    (oy0 + i).checked_sub(p.pt).filter(|&iy| iy < p.h)
}

/// Asks for a slice's cache lines a share at a time: [`Prefetch::step`]
/// covers the next `per` elements ([`super::prefetch_part`] as a cursor,
/// without its two divisions per share: these loops take a share per
/// block of a few hundred cycles).
struct Prefetch<'a> {
    s: &'a [f32],
    per: usize,
    at: usize,
}

impl<'a> Prefetch<'a> {
    /// `s` in `steps` shares.
    fn new(s: &'a [f32], steps: usize) -> Self {
        Prefetch {
            s,
            per: s.len().div_ceil(steps.max(1)),
            at: 0,
        }
    }

    /// Asks for the next share.
    #[inline(always)]
    fn step(&mut self) {
        let end = (self.at + self.per).min(self.s.len());
        super::prefetch(&self.s[self.at.min(end)..end]);
        self.at = end;
    }
}

/// One forward plane: `yp[oy][ox] = start + sum over (ky, kx) of wk[ky * 3 +
/// kx] * xp[oy - pt + ky][ox - pl + kx]` (the taps inside the plane, in
/// that order), `start` the bias `b` or, with `accumulate`, `yp`'s old
/// value. `next` (the plane the caller reads next) is asked for a share
/// per row block.
///
/// # Safety
/// AVX-512F must be available. (The extents are checked.)
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_plane(p: &Plane, xp: &[f32], wk: &[f32; 9], b: f32, yp: &mut [f32], accumulate: bool, next: &[f32]) {
    assert!(xp.len() >= p.h * p.w && yp.len() >= p.oh * p.ow);
    let w: [__m512; 9] = std::array::from_fn(|t| _mm512_set1_ps(wk[t]));
    let bv = _mm512_set1_ps(b);
    let (x, y) = (xp.as_ptr(), yp.as_mut_ptr());
    let strips = p.ow.div_ceil(16);
    let mut pf = Prefetch::new(next, p.oh.div_ceil(ROWS) * strips.div_ceil(STRIPS));
    for ox0 in (0..p.ow).step_by(16 * STRIPS) {
        // STRIPS column strips at a time (one where a single strip is left),
        // so that `STRIPS * ROWS` chains of multiply-adds are in flight;
        // strips outer, so their masks are made once per plane.
        let pair = STRIPS == 2 && ox0 + 16 < p.ow;
        let cs = [Cols::new(p, ox0), Cols::new(p, if pair { ox0 + 16 } else { ox0 })];
        for oy0 in (0..p.oh).step_by(ROWS) {
            pf.step();
            // SAFETY: AVX-512F; rows oy0 .. oy0 + rows of `yp` and the input
            // rows `input_row` names lie in the planes (checked above).
            unsafe {
                macro_rules! go {
                    ($r:literal) => {
                        if pair {
                            forward_block::<$r, 2>(p, x, &w, bv, y, oy0, &cs, accumulate)
                        } else {
                            forward_block::<$r, 1>(p, x, &w, bv, y, oy0, &[cs[0]], accumulate)
                        }
                    };
                }
                match p.oh - oy0 {
                    1 => go!(1),
                    2 => go!(2),
                    3 => go!(3),
                    _ => go!(4),
                }
            }
        }
    }
}

/// Column strips whose masks the weight gradient makes once per channel
/// (128 columns; wider planes make the rest per block).
const CACHED_STRIPS: usize = 8;

/// Column strips one forward block computes.
const STRIPS: usize = 2;

/// Output rows `oy0 .. oy0 + R` of the `V` column strips `cs` (each its
/// `out` lanes).
///
/// # Safety
/// AVX-512F; `x` a plane of `h x w`, `y` of `oh x ow` elements, `oy0 + R <=
/// oh`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_block<const R: usize, const V: usize>(
    p: &Plane,
    x: *const f32,
    w: &[__m512; 9],
    b: __m512,
    y: *mut f32,
    oy0: usize,
    cs: &[Cols; V],
    accumulate: bool,
) {
    // SAFETY: (the loads and stores) output row oy0 + r < oh, each strip's
    // `out` lanes inside it; input rows from `input_row` (< h), as
    // `row_vectors` asks.
    unsafe {
        let mut acc = [[b; V]; R];
        if accumulate {
            for (r, a) in acc.iter_mut().enumerate() {
                for (a, c) in a.iter_mut().zip(cs) {
                    *a = _mm512_maskz_loadu_ps(c.out, y.add((oy0 + r) * p.ow + c.ox0));
                }
            }
        }
        for i in 0..R + 2 {
            let Some(iy) = input_row(p, oy0, i) else { continue };
            let v: [[__m512; 3]; V] = std::array::from_fn(|s| row_vectors(p, x, iy, &cs[s]));
            for (r, a) in acc.iter_mut().enumerate() {
                // Output row oy0 + r reads input row oy0 + i - pt as tap row i - r.
                if i >= r && i - r < 3 {
                    for kx in 0..3 {
                        for (a, v) in a.iter_mut().zip(&v) {
                            *a = _mm512_fmadd_ps(w[(i - r) * 3 + kx], v[kx], *a);
                        }
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (a, c) in a.iter().zip(cs) {
                _mm512_mask_storeu_ps(y.add((oy0 + r) * p.ow + c.ox0), c.out, *a);
            }
        }
    }
}

/// One channel's weight gradient over `n` images: `dwk[ky * 3 + kx] = sum
/// over images m, oy, ox of dy[m][oy][ox] * x[m][oy - pt + ky][ox - pl +
/// kx]` (inside the plane), where image `m`'s planes start at `x0 + m *
/// xstep` and `dy0 + m * dystep`.
///
/// # Safety
/// AVX-512F must be available. (The extents are checked.)
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn weight_grad_channel(
    p: &Plane,
    x: &[f32],
    (x0, xstep): (usize, usize),
    dy: &[f32],
    (dy0, dystep): (usize, usize),
    n: usize,
    dwk: &mut [f32],
) {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    assert!(n > 0 && dwk.len() >= 9);
    assert!(x0 + (n - 1) * xstep + hw <= x.len() && dy0 + (n - 1) * dystep + ohw <= dy.len());
    let mut acc = [_mm512_setzero_ps(); 9];
    let steps = p.oh.div_ceil(ROWS);
    // The first strips' masks, made once per channel (each block reads
    // its strip's; made per block they took a seventh of the pass, 1.33x).
    let cols: [Cols; CACHED_STRIPS] = std::array::from_fn(|j| Cols::new(p, (16 * j).min(p.ow - 1)));
    let cols = &cols[..p.ow.div_ceil(16).min(CACHED_STRIPS)];
    for m in 0..n {
        let (xp, dyp) = (x[x0 + m * xstep..].as_ptr(), dy[dy0 + m * dystep..].as_ptr());
        let (xn, dyn_) = if m + 1 < n {
            let (a, b) = (x0 + (m + 1) * xstep, dy0 + (m + 1) * dystep);
            (&x[a..a + hw], &dy[b..b + ohw])
        } else {
            (&[][..], &[][..])
        };
        let (mut pfx, mut pfd) = (Prefetch::new(xn, steps), Prefetch::new(dyn_, steps));
        for oy0 in (0..p.oh).step_by(ROWS) {
            pfx.step();
            pfd.step();
            for (j, ox0) in (0..p.ow).step_by(16).enumerate() {
                let c = cols.get(j).copied().unwrap_or_else(|| Cols::new(p, ox0));
                // SAFETY: AVX-512F; image m's planes lie in `x` and `dy`
                // (checked above), rows oy0 .. oy0 + rows <= oh.
                unsafe {
                    match p.oh - oy0 {
                        1 => wgrad_block::<1>(p, xp, dyp, oy0, &c, &mut acc),
                        2 => wgrad_block::<2>(p, xp, dyp, oy0, &c, &mut acc),
                        3 => wgrad_block::<3>(p, xp, dyp, oy0, &c, &mut acc),
                        _ => wgrad_block::<ROWS>(p, xp, dyp, oy0, &c, &mut acc),
                    }
                }
            }
        }
    }
    for (d, a) in dwk.iter_mut().zip(acc) {
        *d = _mm512_reduce_add_ps(a);
    }
}

/// Adds output rows `oy0 .. oy0 + R`, columns `c.ox0 ..`, into the nine
/// tap sums.
///
/// # Safety
/// AVX-512F; `x` a plane of `h x w`, `dy` of `oh x ow` elements, `oy0 + R
/// <= oh`.
#[inline(always)]
unsafe fn wgrad_block<const R: usize>(
    p: &Plane,
    x: *const f32,
    dy: *const f32,
    oy0: usize,
    c: &Cols,
    acc: &mut [__m512; 9],
) {
    // SAFETY: (the loads) output row oy0 + r < oh, lanes c.out inside it
    // (the others read as zero, so they add nothing); input rows from
    // `input_row`, as `row_vectors` asks.
    unsafe {
        let d: [__m512; R] = std::array::from_fn(|r| _mm512_maskz_loadu_ps(c.out, dy.add((oy0 + r) * p.ow + c.ox0)));
        for i in 0..R + 2 {
            let Some(iy) = input_row(p, oy0, i) else { continue };
            let v = row_vectors(p, x, iy, c);
            for (r, &dv) in d.iter().enumerate() {
                if i >= r && i - r < 3 {
                    for (kx, &xv) in v.iter().enumerate() {
                        let t = (i - r) * 3 + kx;
                        acc[t] = _mm512_fmadd_ps(dv, xv, acc[t]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dSpec, Padding};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Every padding of 0-2 per side, on widths around the 16-lane strips
    /// and their pairs and heights around the row blocks: each output
    /// element (poisoned first) and each tap sum against a plain f64 sum
    /// over the taps inside the plane.
    #[test]
    fn planes_match_plain_sums() {
        if super::super::isa::isa() != super::super::isa::Isa::Avx512 {
            return;
        }
        let mut cases = 0;
        for (h, w) in [(1, 1), (3, 16), (6, 17), (5, 33), (9, 31), (4, 48), (7, 50)] {
            for pads in 0..81 {
                let (pt, pb, pl, pr) = (pads % 3, pads / 3 % 3, pads / 9 % 3, pads / 27);
                let Ok(g) = Conv2dSpec::new(2, 1, h, w, 1, 3, 3)
                    .padding(Padding::explicit(pt, pb, pl, pr))
                    .build()
                else {
                    continue;
                };
                let p = Plane::of::<f32>(&g).expect("served");
                let (oh, ow) = (g.oh(), g.ow());
                let seed = (h * 100 + w + pads * 7) as u32;
                let (x, wk, dy) = (
                    values(2 * h * w, seed),
                    values(9, seed + 1),
                    values(2 * oh * ow, seed + 2),
                );
                let wk: [f32; 9] = wk.try_into().unwrap();
                let tap = |img: usize, oy: usize, ox: usize, t: usize| -> f64 {
                    let (iy, ix) = ((oy + t / 3) as isize - pt as isize, (ox + t % 3) as isize - pl as isize);
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        0.0
                    } else {
                        x[img * h * w + iy as usize * w + ix as usize] as f64
                    }
                };
                for accumulate in [false, true] {
                    let old = values(oh * ow, seed + 3);
                    let mut y = if accumulate {
                        old.clone()
                    } else {
                        vec![f32::NAN; oh * ow]
                    };
                    // SAFETY: AVX-512F (checked above).
                    unsafe { forward_plane(&p, &x[..h * w], &wk, 0.25, &mut y, accumulate, &x[h * w..]) };
                    for (i, &v) in y.iter().enumerate() {
                        let start = if accumulate { old[i] as f64 } else { 0.25 };
                        let e = start + (0..9).map(|t| wk[t] as f64 * tap(0, i / ow, i % ow, t)).sum::<f64>();
                        assert!(
                            (v as f64 - e).abs() <= 1e-5 * (1.0 + e.abs()),
                            "{h}x{w} pads {pads} at {i}: {v} vs {e}"
                        );
                    }
                }
                let mut dw = [f32::NAN; 9];
                // SAFETY: as above.
                unsafe { weight_grad_channel(&p, &x, (0, h * w), &dy, (0, oh * ow), 2, &mut dw) };
                for (t, &v) in dw.iter().enumerate() {
                    let e: f64 = (0..2 * oh * ow)
                        .map(|i| {
                            let (img, q) = (i / (oh * ow), i % (oh * ow));
                            dy[i] as f64 * tap(img, q / ow, q % ow, t)
                        })
                        .sum();
                    let scale: f64 = (0..2 * oh * ow).map(|i| dy[i].abs() as f64).sum::<f64>() + 1.0;
                    assert!(
                        (v as f64 - e).abs() <= 1e-6 * scale,
                        "{h}x{w} pads {pads} tap {t}: {v} vs {e}"
                    );
                }
                cases += 1;
            }
        }
        assert!(cases > 300);
    }

    #[test]
    fn lane_masks() {
        assert_eq!(lanes(0, 16), u16::MAX);
        assert_eq!(lanes(1, 3), 0b110);
        assert_eq!(lanes(-4, 2), 0b11);
        assert_eq!(lanes(5, 5), 0);
        assert_eq!(lanes(14, 40), 0xc000);
    }
}
