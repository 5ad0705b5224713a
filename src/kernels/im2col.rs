//! Lowering between images and column tiles.
//!
//! A column tile holds, for a block of `nch` input channels and a range of
//! output pixels `p0..p1` (`p = oy * ow + ox`), the matrix
//! `col[r][q]` with row `r = (ci * kh + ky) * kw + kx` and column `q = p - p0`:
//!
//! `col[r][q] = X[ci][oy*sh + ky*dh - pad_top][ox*sw + kx*dw - pad_left]` (zero in the padding).
//!
//! [`im2col_tile`] builds it (the forward and weight-gradient operand);
//! [`col2im_tile`] is its transpose, scatter-adding a tile back into an image
//! (the input gradient). Both walk the tile one output-row segment at a time
//! (`for_each_segment`) with the in-bounds rows and columns of each tap
//! computed up front, so the inner loops are plain copies / adds.

use super::sgemm::{NR, repack_rows};
use super::winograd_simd::even_elements;
use crate::element::Element;
use crate::geometry::Conv2dGeometry;

/// The `ox` in `o0..o1` with `0 <= ox * s + off < limit`, as a (possibly
/// empty) range `a..b`.
#[inline]
pub(crate) fn valid_range(o0: usize, o1: usize, s: usize, off: isize, limit: usize) -> (usize, usize) {
    let s = s as isize;
    // ox * s + off >= 0  <=>  ox >= ceil(-off / s)
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    // ox * s + off < limit  <=>  ox < ceil((limit - off) / s)
    let hi_num = limit as isize - off;
    let hi = if hi_num <= 0 { 0 } else { (hi_num + s - 1) / s };
    let a = lo.clamp(o0 as isize, o1 as isize) as usize;
    let b = hi.clamp(a as isize, o1 as isize) as usize;
    (a, b)
}

/// Walks a column tile of `nch` channels and pixels `p0..p1` one output-row
/// segment at a time, for [`im2col_tile`] and [`col2im_tile`].
///
/// Per tap `(ky, kx)` the valid output rows `oy_lo..oy_hi` and columns
/// `lo..hi` are computed once (they do not depend on the pixel), so the walk
/// has no division and no per-element bounds test. Calls
/// `f(ci, r, q, len, a, b, src)` for each segment: tile row `r`, columns
/// `q..q + len` (one output row, or part of one at the tile's ends), of
/// which `q + a .. q + b` read channel-plane elements `src, src + sw, ...`
/// and the rest is padding (`a == b` when all of it is).
#[inline(always)]
fn for_each_segment(
    geom: &Conv2dGeometry,
    nch: usize,
    p0: usize,
    p1: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize),
) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pad_top, _, pad_left, _) = geom.padding();
    let tl = p1 - p0;
    let (oy0, ox0) = (p0 / ow, p0 % ow);
    let oy_end = (p1 - 1) / ow + 1;
    for ci in 0..nch {
        for ky in 0..kh {
            let yoff = (ky * dh) as isize - pad_top as isize;
            let (oy_lo, oy_hi) = valid_range(oy0, oy_end, sh, yoff, h);
            for kx in 0..kw {
                let xoff = (kx * dw) as isize - pad_left as isize;
                let (lo, hi) = valid_range(0, ow, sw, xoff, w);
                let r = (ci * kh + ky) * kw + kx;
                let mut q = 0;
                for oy in oy0..oy_end {
                    let c0 = if oy == oy0 { ox0 } else { 0 };
                    let len = (ow - c0).min(tl - q);
                    let (a, b) = (lo.max(c0), hi.min(c0 + len));
                    if oy < oy_lo || oy >= oy_hi || a >= b {
                        f(ci, r, q, len, 0, 0, 0);
                    } else {
                        // a..b is in bounds: a*sw + xoff >= 0 and (b-1)*sw + xoff < w.
                        let iy = ((oy * sh) as isize + yoff) as usize;
                        let src = ((iy * w) as isize + (a * sw) as isize + xoff) as usize;
                        f(ci, r, q, len, a - c0, b - c0, src);
                    }
                    q += len;
                }
            }
        }
    }
}

/// The body of [`im2col_tile`].
#[inline(always)]
fn im2col_tile_impl<T: Element>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, col: &mut [T]) {
    let hw = geom.h() * geom.w();
    let sw = geom.stride().1;
    let tl = p1 - p0;
    debug_assert_eq!(x.len(), nch * hw);
    debug_assert_eq!(col.len(), nch * geom.kh() * geom.kw() * (p1 - p0));
    // The values are only moved, so the choice of walk changes no bit.
    if shared_walk(geom, nch) {
        im2col_rows(geom, x, nch, p0, p1, col);
    } else if sw == 1 {
        // Two monomorphic walks, so each closure stays small enough to inline.
        // Inlined into the dispatched caller, so the copies get its
        // instruction set (lenet_c2 forward: 29.4 M -> 20.0 M instructions
        // in im2col). The strided walks below stay out of line: inlined,
        // the stride-2 gather measured 35 M -> 148 M on the 7x7 stem.
        for_each_segment(
            geom,
            nch,
            p0,
            p1,
            #[inline(always)]
            |ci, r, q, len, a, b, src| {
                let off = r * tl + q;
                let dst = &mut col[off..off + len];
                zero_outside(dst, a, b);
                super::copy_run(&mut dst[a..b], &x[ci * hw + src..ci * hw + src + (b - a)]);
            },
        );
    } else if sw == 2 {
        for_each_segment(geom, nch, p0, p1, |ci, r, q, len, a, b, src| {
            let off = r * tl + q;
            let dst = &mut col[off..off + len];
            zero_outside(dst, a, b);
            if b > a {
                let from = &x[ci * hw + src..ci * hw + src + 2 * (b - a) - 1];
                for (d, pair) in dst[a..b].iter_mut().zip(from.chunks(2)) {
                    *d = pair[0];
                }
            }
        });
    } else {
        for_each_segment(geom, nch, p0, p1, |ci, r, q, len, a, b, src| {
            let off = r * tl + q;
            let dst = &mut col[off..off + len];
            zero_outside(dst, a, b);
            if b > a {
                let from = &x[ci * hw + src..ci * hw + src + (b - a - 1) * sw + 1];
                for (d, chunk) in dst[a..b].iter_mut().zip(from.chunks(sw)) {
                    *d = chunk[0];
                }
            }
        });
    }
}

/// Fewest channels for the channel-shared walks ([`im2col_panels_shared`],
/// [`im2col_rows`], [`col2im_rows`]): their bookkeeping is per piece and
/// tap, shared by the channels. Instructions per forward call (1
/// thread, callgrind), the row-major tile and repack against the direct
/// panels: lenet_c2 (20 channels, 8-pixel rows) 23.2 M against 5.7 M,
/// infer_b1_3x3 (256, 14-pixel rows) 4.2 M against 3.4 M, resnet_3x3_14's
/// GEMM path 31.0 M against 26.8 M, but lenet_c1 (1 channel) 4.6 M
/// against 7.5 M. No suite row lies between 1 and 20 channels. The same
/// count (channels per group) picks [`col2im_rows`] for the stride-1
/// scatter-add: lenet_c2's input gradient 23.3 M -> 16.3 M instructions in
/// col2im (34.8 -> 39.2 GFLOP/s, 1T medians of 5 alternating), infer_b1's
/// 3.5 M -> 2.3 M; and [`im2col_rows`] for row-major tiles (lenet_c2's
/// weight gradient on the im2col path: 16.9 M -> 5.7 M). Column stride 2
/// shares the walks too ([`copy_piece`] at stride 2): down_3x3s2's forward 64 M -> 40 M
/// instructions in im2col, its weight gradient 48 M -> 39 M (times within the
/// machine's noise: 1T medians 64.8 / 62.8 GFLOP/s on the forward).
const S1_MIN_CHANNELS: usize = 4;

/// Builds the same column tile as [`im2col_tile`] (f32) in the packed-`B`
/// layout of the [f32 GEMM](super::sgemm): panels of `NR` pixels, element
/// `col[r][q]` at `dst[q / NR * rows * NR + r * NR + q % NR]` with
/// `rows = nch * kh * kw`. Strided layers go through one channel's tap
/// planes in `tmp` ([`im2col_panels_planes`]); stride 1 writes the panels
/// directly ([`im2col_panels_shared`], from [`S1_MIN_CHANNELS`] channels), or
/// else one input channel at a time goes through `tmp` as a row-major tile,
/// then is copied into the panels 16 elements at a time. `tmp` holds
/// [`panels_tmp_len`] elements (small enough for L1).
/// Columns of the last panel past `p1 - p0` are left as they were (the GEMM
/// never stores what they produce).
pub(crate) fn im2col_panels(
    geom: &Conv2dGeometry,
    x: &[f32],
    nch: usize,
    p0: usize,
    p1: usize,
    tmp: &mut [f32],
    dst: &mut [f32],
) {
    let hw = geom.h() * geom.w();
    let (khkw, tl) = (geom.kh() * geom.kw(), p1 - p0);
    let pstride = nch * khkw * NR;
    debug_assert_eq!(x.len(), nch * hw);
    debug_assert!(dst.len() >= tl.div_ceil(NR) * pstride);
    if planes_walk(geom) {
        im2col_panels_planes(geom, x, nch, p0, p1, tmp, dst);
        return;
    }
    if shared_walk(geom, nch) {
        im2col_panels_shared(geom, x, nch, p0, p1, dst);
        return;
    }
    let tmp = &mut tmp[..khkw * tl];
    for ci in 0..nch {
        im2col_tile(geom, &x[ci * hw..(ci + 1) * hw], 1, p0, p1, tmp);
        repack_rows(tmp, khkw, tl, ci * khkw, pstride, dst);
    }
}

/// Whether [`im2col_panels`] builds `geom`'s panels from tap planes
/// ([`im2col_panels_planes`]): every strided layer. down_3x3s2's forward
/// went 65.0 -> 70.2 GFLOP/s (1 thread, medians of 7 alternating runs'
/// bests) and 39 M -> 35 M instructions in im2col: the stride-2 walk had
/// cut its 28-pixel rows into pieces that the fixed 8- and 16-wide copies
/// did not fit. At stride 1 the planes measured within noise of the
/// direct walk (resnet_3x3_14 with Winograd forbidden, lenet_c2).
fn planes_walk(geom: &Conv2dGeometry) -> bool {
    geom.stride() != (1, 1)
}

/// The tap planes of one channel for pixels `p0..p1`: the first output row
/// `oy0 = p0 / ow`, the plane rows `prow`, the row phases `nph`.
#[inline]
fn planes_layout(geom: &Conv2dGeometry, p0: usize, p1: usize) -> (usize, usize, usize) {
    let (sh, dh, kh, ow) = (geom.stride().0, geom.dilation().0, geom.kh(), geom.ow());
    let oy0 = p0 / ow;
    let rows = (p1 - 1) / ow + 1 - oy0;
    let span = (kh - 1) * dh;
    (oy0, rows + span / sh, sh.min(span + 1))
}

/// Elements of `tmp` [`im2col_panels`] needs for tiles of at most `tl`
/// pixels.
pub(crate) fn panels_tmp_len(geom: &Conv2dGeometry, tl: usize) -> usize {
    let khkw = geom.kh() * geom.kw();
    if !planes_walk(geom) {
        return khkw * tl;
    }
    let (sh, dh, kh, ow) = (geom.stride().0, geom.dilation().0, geom.kh(), geom.ow());
    let span = (kh - 1) * dh;
    let rows = (tl.div_ceil(ow) + 1).min(geom.oh()) + span / sh;
    sh.min(span + 1) * geom.kw() * rows * ow
}

/// The body of [`im2col_panels_planes`].
#[inline(always)]
fn im2col_panels_planes_impl<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    nch: usize,
    p0: usize,
    p1: usize,
    tmp: &mut [T],
    dst: &mut [T],
) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pt, _, pl, _) = geom.padding();
    let (hw, khkw, tl) = (h * w, kh * kw, p1 - p0);
    let pstride = nch * khkw * NR;
    let (oy0, prow, nph) = planes_layout(geom, p0, p1);
    let plane = prow * ow;
    let tmp = &mut tmp[..nph * kw * plane];
    let skip = p0 - oy0 * ow;
    // Padding columns and rows out of the image are zero in every channel's
    // planes, so they are zeroed once and each channel writes only the rest.
    tmp.fill(T::ZERO);
    // Input rows the tile reads: padded rows sh oy0 .. sh (oy0 + prow - 1) + nph.
    let iy0 = (sh * oy0).saturating_sub(pt).min(h);
    let iy1 = (sh * (oy0 + prow - 1) + nph).saturating_sub(pt).min(h);
    for ci in 0..nch {
        let xc = &x[ci * hw..(ci + 1) * hw];
        // The next channel's rows are asked for a share per tap column:
        // arriving from L3 on demand, they stalled the copies.
        let next = if ci + 1 < nch {
            &x[(ci + 1) * hw + iy0 * w..(ci + 1) * hw + iy1 * w]
        } else {
            &x[..0]
        };
        // Plane (py, kx), row i, column ox: padded input (sh (oy0 + i) + py, ox sw + kx dw).
        for kx in 0..kw {
            super::prefetch_part(next, kx, kw);
            // Output columns a..b read input columns ox * sw + xoff.
            let xoff = (kx * dw) as isize - pl as isize;
            let (a, b) = valid_range(0, ow, sw, xoff, w);
            if a >= b {
                continue;
            }
            let x0 = ((a * sw) as isize + xoff) as usize;
            for py in 0..nph {
                let pb = (py * kw + kx) * plane;
                // Plane rows oy0 + i in lo..hi lie in the image.
                let (lo, hi) = valid_range(oy0, oy0 + prow, sh, py as isize - pt as isize, h);
                for oy in lo..hi {
                    let iy = sh * oy + py - pt;
                    // The rest of the channel plane: `even_elements` may
                    // read past the row, copying only its own elements.
                    let row = &xc[iy * w + x0..];
                    let d = &mut tmp[pb + (oy - oy0) * ow + a..][..b - a];
                    if sw == 1 {
                        super::copy_run(d, &row[..d.len()]);
                    } else if sw == 2 {
                        even_elements(d, row);
                    } else {
                        for (j, v) in d.iter_mut().enumerate() {
                            *v = row[j * sw];
                        }
                    }
                }
            }
        }
        // Tap (ky, kx) of pixel p: plane ((ky dh) % sh, kx), row (ky dh) / sh + p / ow - oy0, column p % ow.
        let tmp = &*tmp;
        for ky in 0..kh {
            let (py, roff) = ((ky * dh) % sh, (ky * dh) / sh);
            for kx in 0..kw {
                let src = &tmp[(py * kw + kx) * plane + roff * ow + skip..][..tl];
                let row = (ci * khkw + ky * kw + kx) * NR;
                // Lanes of panel j / NR: one row of NR at `row` in each
                // `pstride` chunk (the last chunk still holds NR).
                let mut panels = dst[row..].chunks_mut(pstride);
                let mut runs = src.chunks_exact(NR);
                // `runs` first: zip stops at its end before taking a panel.
                for (s, d) in (&mut runs).zip(&mut panels) {
                    let d: &mut [T; NR] = (&mut d[..NR]).try_into().unwrap();
                    *d = s.try_into().unwrap();
                }
                let rest = runs.remainder();
                if !rest.is_empty() {
                    panels.next().unwrap()[..rest.len()].copy_from_slice(rest);
                }
            }
        }
    }
}

super::isa::dispatch!(
    /// [`im2col_panels`] from tap planes: for each channel, plane `(py, kx)`
    /// (row phase `py < sh`, tap column `kx`) holds row `i`, column `ox` =
    /// padded input `(sh (oy0 + i) + py, ox sw + kx dw)`, `ow` columns per
    /// row, so tap `(ky, kx)` of the tile's pixels is one contiguous run of
    /// that plane (phase `(ky dh) % sh`, from row `(ky dh) / sh`), copied
    /// into the panels 16 at a time whatever the row breaks.
    fn im2col_panels_planes<T>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, tmp: &mut [T], dst: &mut [T]) => im2col_panels_planes_impl
);

/// Zeros `dst` outside `a..b` (all of it when `a == b`).
#[inline(always)]
fn zero_outside<T: Element>(dst: &mut [T], a: usize, b: usize) {
    if a > 0 {
        dst[..a].fill(T::ZERO);
    }
    if b < dst.len() {
        dst[b.max(a)..].fill(T::ZERO);
    }
}

/// Walks a tile of pixels `p0..p1` piece by piece, then tap by tap, for
/// the channel-shared walks ([`im2col_rows`], [`im2col_panels_shared`],
/// [`col2im_rows`]). The pieces are the output-row segments of the tile,
/// cut where the tile column is a multiple of `cut` (the panel width, or
/// `usize::MAX` for no cut). Calls `f(q, take, r, a, b, src)` for each
/// piece (tile columns `q .. q + take`) and tap `r = ky * kw + kx`: the
/// piece's elements `a..b` read the input plane at offsets `src, src + sw,
/// ...` (consecutive columns at stride 1), the rest is padding (`a == b ==
/// 0` when all of it is, and then `src` is 0). The bookkeeping is done once
/// per piece and tap, and shared by every channel in `f`.
#[inline(always)]
fn for_each_tap_piece(
    geom: &Conv2dGeometry,
    p0: usize,
    p1: usize,
    cut: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pad_top, _, pad_left, _) = geom.padding();
    let tl = p1 - p0;
    let mut q = 0;
    while q < tl {
        // Output row `oy`, columns `ox0 .. ox0 + len`: tile columns
        // `q .. q + len`.
        let (oy, ox0) = ((p0 + q) / ow, (p0 + q) % ow);
        let len = (ow - ox0).min(tl - q);
        let mut s = 0;
        while s < len {
            let (qq, ox) = (q + s, ox0 + s);
            let take = (cut - qq % cut).min(len - s);
            for ky in 0..kh {
                let iy = (oy * sh + ky * dh) as isize - pad_top as isize;
                let row_in = iy >= 0 && (iy as usize) < h;
                for kx in 0..kw {
                    // The piece reads input columns (ox + j) * sw + xoff;
                    // those with j in a..b lie in the row.
                    let xoff = (kx * dw) as isize - pad_left as isize;
                    let (a, b) = if row_in {
                        let (a, b) = valid_range(ox, ox + take, sw, xoff, w);
                        (a - ox, b - ox)
                    } else {
                        (0, 0)
                    };
                    let src = if b > a {
                        iy as usize * w + (((ox + a) * sw) as isize + xoff) as usize
                    } else {
                        0
                    };
                    f(qq, take, ky * kw + kx, a, b, src);
                }
            }
            s += take;
        }
        q += len;
    }
}

/// Copies one piece of `take` elements for every channel `ci < nch`, at
/// column stride `S` (1 or 2): `dst[at + ci * dstep ..][a..b]` gets
/// `x[src + ci * hw]`, `x[src + S + ci * hw]`, ..., zeros elsewhere
/// ([`for_each_tap_piece`]'s arguments). Whole pieces of 16 or 8 take one
/// fixed-size copy per channel ([`copy_channels`], [`copy_evens`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn copy_piece<T: Element, const S: usize>(
    x: &[T],
    src: usize,
    hw: usize,
    dst: &mut [T],
    at: usize,
    dstep: usize,
    nch: usize,
    (a, b, take): (usize, usize, usize),
) {
    match (a, b, take) {
        (0, 16, 16) if S == 1 => copy_channels::<T, 16>(x, src, hw, dst, at, dstep, nch),
        (0, 8, 8) if S == 1 => copy_channels::<T, 8>(x, src, hw, dst, at, dstep, nch),
        (0, 16, 16) => copy_evens::<T, 16, 31>(x, src, hw, dst, at, dstep, nch),
        (0, 8, 8) => copy_evens::<T, 8, 15>(x, src, hw, dst, at, dstep, nch),
        (0, b, take) if b == take && S == 1 => {
            for ci in 0..nch {
                super::copy_run(&mut dst[at + ci * dstep..][..take], &x[ci * hw + src..][..take]);
            }
        }
        _ => {
            for ci in 0..nch {
                let d = &mut dst[at + ci * dstep..][..take];
                zero_outside(d, a, b);
                if b > a && S == 1 {
                    super::copy_run(&mut d[a..b], &x[ci * hw + src..][..b - a]);
                } else if b > a {
                    let from = &x[ci * hw + src..][..S * (b - a - 1) + 1];
                    for (v, chunk) in d[a..b].iter_mut().zip(from.chunks(S)) {
                        *v = chunk[0];
                    }
                }
            }
        }
    }
}

/// `dst[at + ci * dstep ..][..N]` gets every other element of the window
/// `x[src + ci * hw ..][..W]` (`W = 2 N - 1`) for each channel `ci < nch`:
/// fixed sizes, which the compiler turns into loads and shuffles.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn copy_evens<T: Copy, const N: usize, const W: usize>(
    x: &[T],
    src: usize,
    hw: usize,
    dst: &mut [T],
    at: usize,
    dstep: usize,
    nch: usize,
) {
    for ci in 0..nch {
        let d: &mut [T; N] = (&mut dst[at + ci * dstep..][..N]).try_into().unwrap();
        let s: &[T; W] = x[src + ci * hw..][..W].try_into().unwrap();
        for (j, v) in d.iter_mut().enumerate() {
            *v = s[2 * j];
        }
    }
}

/// [`im2col_tile`] for column stride 1 or 2 and at least
/// [`S1_MIN_CHANNELS`] channels ([`shared_walk`]): output-row segment by
/// segment, then tap by tap (its valid rows and columns computed once for
/// all channels, [`for_each_tap_piece`]), then each channel's run copied,
/// the padding zeroed: the row-major twin of [`im2col_panels_shared`], as
/// [`col2im_rows`] is of the scatter-add.
#[inline(always)]
fn im2col_rows<T: Element>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, col: &mut [T]) {
    let (hw, khkw, tl) = (geom.h() * geom.w(), geom.kh() * geom.kw(), p1 - p0);
    if geom.stride().1 == 1 {
        for_each_tap_piece(
            geom,
            p0,
            p1,
            usize::MAX,
            #[inline(always)]
            |q, take, r, a, b, src| {
                copy_piece::<T, 1>(x, src, hw, col, r * tl + q, khkw * tl, nch, (a, b, take));
            },
        );
    } else {
        // Pieces cut every 16 columns, for the fixed-size copies.
        for_each_tap_piece(
            geom,
            p0,
            p1,
            16,
            #[inline(always)]
            |q, take, r, a, b, src| {
                copy_piece::<T, 2>(x, src, hw, col, r * tl + q, khkw * tl, nch, (a, b, take));
            },
        );
    }
}

/// `dst[i] += src[i]` for each `i`, fixed-size blocks where the length is
/// 8 or 16 (the rows of LeNet-sized feature maps).
#[inline(always)]
fn add_run<T: Element>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn add<T: Element, const N: usize>(d: &mut [T], s: &[T]) {
        let d: &mut [T; N] = d.try_into().unwrap();
        let s: &[T; N] = s.try_into().unwrap();
        for (d, &s) in d.iter_mut().zip(s) {
            *d += s;
        }
    }
    match dst.len() {
        8 => add::<T, 8>(dst, src),
        16 => add::<T, 16>(dst, src),
        _ => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
}

/// [`col2im_tile`] for stride 1 and at least [`S1_MIN_CHANNELS`] channels
/// per group:
/// output-row segment by segment, then tap by tap, the tap's valid rows and
/// columns computed once for all channels ([`for_each_tap_piece`]), then
/// each channel's run added
/// (the walk of [`for_each_segment`] redoes that bookkeeping per channel,
/// which dominates on short rows). Each `dX` element gets its terms in the
/// order (segment, ky, kx): fixed by the tile, whatever the thread count.
#[inline(always)]
fn col2im_rows<T: Element>(geom: &Conv2dGeometry, col: &[T], nch: usize, p0: usize, p1: usize, dx: &mut [T]) {
    let (hw, khkw, tl) = (geom.h() * geom.w(), geom.kh() * geom.kw(), p1 - p0);
    for_each_tap_piece(
        geom,
        p0,
        p1,
        usize::MAX,
        #[inline(always)]
        |q, _, r, a, b, src| {
            if b > a {
                let from = r * tl + q + a;
                for ci in 0..nch {
                    add_run(
                        &mut dx[ci * hw + src..][..b - a],
                        &col[ci * khkw * tl + from..][..b - a],
                    );
                }
            }
        },
    );
}

/// The body of [`col2im_tile`].
#[inline(always)]
fn col2im_tile_impl<T: Element>(geom: &Conv2dGeometry, col: &[T], nch: usize, p0: usize, p1: usize, dx: &mut [T]) {
    let hw = geom.h() * geom.w();
    let sw = geom.stride().1;
    let tl = p1 - p0;
    debug_assert_eq!(dx.len(), nch * hw);
    debug_assert_eq!(col.len(), nch * geom.kh() * geom.kw() * (p1 - p0));
    // Chosen from the geometry (channels per group), not from `nch`: the
    // two walks add each element's terms in different orders, and the
    // channel blocks may follow the thread count.
    if geom.stride() == (1, 1) && geom.cig() >= S1_MIN_CHANNELS {
        col2im_rows(geom, col, nch, p0, p1, dx);
    } else if sw == 1 {
        for_each_segment(
            geom,
            nch,
            p0,
            p1,
            #[inline(always)]
            |ci, r, q, _, a, b, src| {
                let off = r * tl + q;
                let to = &mut dx[ci * hw + src..ci * hw + src + (b - a)];
                for (d, &v) in to.iter_mut().zip(&col[off + a..off + b]) {
                    *d += v;
                }
            },
        );
    } else if sw == 2 {
        for_each_segment(geom, nch, p0, p1, |ci, r, q, _, a, b, src| {
            let off = r * tl + q;
            if b > a {
                let to = &mut dx[ci * hw + src..ci * hw + src + 2 * (b - a) - 1];
                let from = &col[off + a..off + b];
                // Blocks of 8 targets whose 16 plane elements all lie in `to`
                // (its last element is a target, so a run of 8k targets
                // leaves only k - 1 such blocks), with no bounds test; then
                // the tail, every other element.
                let full = (2 * (b - a) - 1) / 16;
                let (to_blocks, to_tail) = to.split_at_mut(16 * full);
                let (from_blocks, from_tail) = from.split_at(8 * full);
                for (t, f) in to_blocks.chunks_exact_mut(16).zip(from_blocks.chunks_exact(8)) {
                    for l in 0..8 {
                        t[2 * l] += f[l];
                    }
                }
                for (pair, &v) in to_tail.chunks_mut(2).zip(from_tail) {
                    pair[0] += v;
                }
            }
        });
    } else {
        for_each_segment(geom, nch, p0, p1, |ci, r, q, _, a, b, src| {
            let off = r * tl + q;
            if b > a {
                let to = &mut dx[ci * hw + src..ci * hw + src + (b - a - 1) * sw + 1];
                for (chunk, &v) in to.chunks_mut(sw).zip(&col[off + a..off + b]) {
                    chunk[0] += v;
                }
            }
        });
    }
}

super::isa::dispatch!(
    /// Builds the column tile of `nch` channels (`x` holds exactly those
    /// channel planes, `nch * h * w` elements) for output pixels `p0..p1` into
    /// `col` (`nch * kh * kw` rows of `p1 - p0`). Every element of `col` is
    /// written. Compiled for the widest instruction set (wider copies; the
    /// values are only moved, so every path gives the same bits).
    pub(crate) fn im2col_tile<T>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, col: &mut [T]) => im2col_tile_impl
);

/// `dst[at + ci * dstep ..][..N] = x[src + ci * hw ..][..N]` for each
/// channel `ci < nch`.
#[inline(always)]
fn copy_channels<T: Copy, const N: usize>(
    x: &[T],
    src: usize,
    hw: usize,
    dst: &mut [T],
    at: usize,
    dstep: usize,
    nch: usize,
) {
    for ci in 0..nch {
        let d: &mut [T; N] = (&mut dst[at + ci * dstep..at + ci * dstep + N]).try_into().unwrap();
        *d = x[src + ci * hw..src + ci * hw + N].try_into().unwrap();
    }
}

/// Whether [`im2col_panels`] takes the channel-shared walk
/// ([`im2col_panels_shared`]): column stride 1 or 2 and at least
/// [`S1_MIN_CHANNELS`] channels.
fn shared_walk(geom: &Conv2dGeometry, nch: usize) -> bool {
    geom.stride().1 <= 2 && nch >= S1_MIN_CHANNELS
}

/// The body of [`im2col_panels_shared`].
#[inline(always)]
fn im2col_panels_shared_impl<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    nch: usize,
    p0: usize,
    p1: usize,
    dst: &mut [T],
) {
    let (hw, khkw) = (geom.h() * geom.w(), geom.kh() * geom.kw());
    let pstride = nch * khkw * NR;
    // Pieces cut at the panel boundaries: tile column q lies in panel
    // q / NR at lane q % NR. Two monomorphic walks, one per column stride.
    if geom.stride().1 == 1 {
        for_each_tap_piece(
            geom,
            p0,
            p1,
            NR,
            #[inline(always)]
            |q, take, r, a, b, src| {
                let at = q / NR * pstride + q % NR + r * NR;
                copy_piece::<T, 1>(x, src, hw, dst, at, khkw * NR, nch, (a, b, take));
            },
        );
    } else {
        for_each_tap_piece(
            geom,
            p0,
            p1,
            NR,
            #[inline(always)]
            |q, take, r, a, b, src| {
                let at = q / NR * pstride + q % NR + r * NR;
                copy_piece::<T, 2>(x, src, hw, dst, at, khkw * NR, nch, (a, b, take));
            },
        );
    }
}

super::isa::dispatch!(
    /// [`im2col_panels`] for column stride 1 or 2 ([`shared_walk`]): each
    /// output-row segment of the tile is cut at the panel boundaries once,
    /// and each piece is filled for every tap and channel by short
    /// fixed-size copies (the tap's valid columns computed once per piece,
    /// not per channel). Compiled for the widest instruction set (the
    /// values are only moved).
    fn im2col_panels_shared<T>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, dst: &mut [T]) => im2col_panels_shared_impl
);

super::isa::dispatch!(
    /// [`col2im_tile`]'s scatter-adds, compiled for the widest instruction
    /// set; each element's adds keep their order.
    fn col2im_tile_walk<T>(geom: &Conv2dGeometry, col: &[T], nch: usize, p0: usize, p1: usize, dx: &mut [T]) => col2im_tile_impl
);

/// Adds the column tile `col` (`nch * kh * kw` rows of `p1 - p0`) into the
/// `nch` channel planes `dx`: the transpose of [`im2col_tile`]. Padding
/// entries of the tile are dropped. At stride 1, f32, on AVX2 or AVX-512F,
/// for tiles of at least one output row's worth of pixels, by gathering
/// ([`col2im_gather`]); else by scatter-adds in walk order. Which way a
/// tile goes depends on the geometry and the tile only (each adds an
/// element's terms in its own order).
pub(crate) fn col2im_tile<T: Element>(
    geom: &Conv2dGeometry,
    col: &[T],
    nch: usize,
    p0: usize,
    p1: usize,
    dx: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx2_f32::<T>() && geom.stride() == (1, 1) && p1 - p0 >= geom.ow() {
        let (col, dx) = (super::f32s(col), super::f32s_mut(dx));
        assert!(col.len() >= nch * geom.kh() * geom.kw() * (p1 - p0) && dx.len() >= nch * geom.h() * geom.w());
        // SAFETY: the instruction set is in use (`avx2_f32`, `isa`); the
        // extents are checked above.
        unsafe {
            if super::isa::isa() == super::isa::Isa::Avx512 {
                col2im_gather_avx512(geom, col, nch, p0, p1, dx);
            } else {
                col2im_gather_avx2(geom, col, nch, p0, p1, dx);
            }
        }
        return;
    }
    col2im_tile_walk(geom, col, nch, p0, p1, dx)
}

/// Channels [`col2im_gather`] sums at once.
const GATHER_CHANNELS: usize = 8;

/// [`col2im_gather`] on 8 lanes.
///
/// # Safety
/// AVX2 and FMA; as [`col2im_gather`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn col2im_gather_avx2(geom: &Conv2dGeometry, col: &[f32], nch: usize, p0: usize, p1: usize, dx: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { col2im_gather::<std::arch::x86_64::__m256>(geom, col, nch, p0, p1, dx) }
}

/// [`col2im_gather`] on 16 lanes.
///
/// # Safety
/// AVX-512F; as [`col2im_gather`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn col2im_gather_avx512(geom: &Conv2dGeometry, col: &[f32], nch: usize, p0: usize, p1: usize, dx: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { col2im_gather::<std::arch::x86_64::__m512>(geom, col, nch, p0, p1, dx) }
}

/// [`col2im_tile`] at stride 1 by gathering: for each channel `ci`, input
/// row `iy` the tile reaches and run of [`super::simd::F32x::LANES`] columns from `ix0`,
/// lane `j` (column `ix = ix0 + j`) sums the tile's terms in tap order
/// `(ky, kx)`: `col[(ci * kh + ky) * kw + kx][oy * ow + ox - p0]` with
/// `oy = iy + pad_top - ky * dh`, `ox = ix + pad_left - kx * dw`, wherever
/// that output pixel lies in the tile (masked loads: the pixels of one tap
/// and output row are a contiguous run of `col`). The sum is then added
/// into `dX` once. The scatter-adds it replaces added each term into `dX`
/// on its own, in runs as short as a row (8 pixels on lenet_c2), whose
/// bookkeeping took half of lenet_c2's input gradient.
///
/// # Safety
/// The width's instruction set; `col` holds `nch * kh * kw * (p1 - p0)`
/// elements, `dx` `nch * h * w`; stride 1.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn col2im_gather<V: super::simd::F32x>(
    geom: &Conv2dGeometry,
    col: &[f32],
    nch: usize,
    p0: usize,
    p1: usize,
    dx: &mut [f32],
) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let (dh, dw) = geom.dilation();
    let (pt, _, pl, _) = geom.padding();
    let (hw, khkw, tl) = (h * w, kh * kw, p1 - p0);
    debug_assert_eq!(geom.stride(), (1, 1));
    // Output rows oy_a ..= oy_b hold the tile's pixels; input row iy reads
    // output rows iy + pt - ky dh.
    let (oy_a, oy_b) = (p0 / ow, (p1 - 1) / ow);
    let iy_lo = oy_a.saturating_sub(pt).min(h);
    let iy_hi = (oy_b + (kh - 1) * dh + 1).saturating_sub(pt).min(h);
    let chan = khkw * tl;
    // Channels GATHER_CHANNELS at a time: each tap's bookkeeping is done
    // once for them, and their sums are independent chains.
    let full = nch / GATHER_CHANNELS * GATHER_CHANNELS;
    let groups = (0..full)
        .step_by(GATHER_CHANNELS)
        .map(|c| (c, GATHER_CHANNELS))
        .chain((full..nch).map(|c| (c, 1)));
    for (c0, g) in groups {
        for iy in iy_lo..iy_hi {
            for ix0 in (0..w).step_by(V::LANES) {
                let n = V::LANES.min(w - ix0);
                // SAFETY: the instruction set (the caller's contract).
                let mut acc = [unsafe { V::splat(0.0) }; GATHER_CHANNELS];
                for ky in 0..kh {
                    let Some(oy) = (iy + pt).checked_sub(ky * dh) else {
                        continue;
                    };
                    if oy < oy_a || oy > oy_b {
                        continue;
                    }
                    // The tile's pixels of output row oy: columns oxa..oxb.
                    let row0 = oy * ow;
                    let (oxa, oxb) = (p0.max(row0) - row0, p1.min(row0 + ow) - row0);
                    for kx in 0..kw {
                        // Lane j reads output column shift + j.
                        let shift = (ix0 + pl) as isize - (kx * dw) as isize;
                        let a = (oxa as isize - shift).clamp(0, n as isize) as usize;
                        let b = (oxb as isize - shift).clamp(a as isize, n as isize) as usize;
                        if a == b {
                            continue;
                        }
                        // Lane j's term: tap (ky, kx), pixel row0 + shift + j - p0
                        // of the tile, inside it for a <= j < b.
                        let at = ((ky * kw + kx) * tl + row0) as isize - p0 as isize + shift;
                        debug_assert!(at + a as isize >= 0 && at + b as isize <= chan as isize);
                        for (c, acc) in acc.iter_mut().enumerate().take(g) {
                            let base = (c0 + c) * chan;
                            // SAFETY: lanes a..b read channel c0 + c's
                            // elements at + a .. at + b, inside this tap's
                            // row of the tile (above).
                            *acc = unsafe { acc.add(V::load_range(col.as_ptr().add(base).wrapping_offset(at), a, b)) };
                        }
                    }
                }
                for (c, acc) in acc.iter().enumerate().take(g) {
                    let d = &mut dx[(c0 + c) * hw + iy * w + ix0..][..n];
                    // SAFETY: d holds the n lanes read and written.
                    unsafe { V::load_range(d.as_ptr(), 0, n).add(*acc).store_first(d.as_mut_ptr(), n) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NR, col2im_tile, col2im_tile_walk, im2col_panels, im2col_tile, panels_tmp_len, valid_range};
    use crate::geometry::{Conv2dSpec, Padding};

    /// The gathered stride-1 col2im adds exactly the walk's terms: with
    /// small integers every sum is exact whatever its order, so the two
    /// agree bitwise. Tiles start and end mid-row (and cover whole images),
    /// channel counts leave a tail past the groups of eight, with padding,
    /// dilation and kernels wider than the rows' lanes reach.
    #[test]
    fn gathered_col2im_adds_the_walks_terms() {
        let s = Conv2dSpec::new;
        let geoms = [
            s(1, 20, 12, 12, 4, 5, 5),
            s(1, 9, 14, 14, 4, 3, 3).padding(Padding::symmetric(1)),
            s(1, 3, 17, 23, 4, 3, 5)
                .dilation(2, 1)
                .padding(Padding::explicit(0, 2, 1, 0)),
            s(1, 11, 9, 30, 4, 2, 4)
                .dilation(1, 3)
                .padding(Padding::explicit(1, 2, 4, 3)),
            s(1, 1, 28, 28, 4, 5, 5),
        ];
        for spec in geoms {
            let g = spec.build().unwrap();
            let (hw, khkw, ohw, ow) = (g.h() * g.w(), g.kh() * g.kw(), g.oh() * g.ow(), g.ow());
            let nch = g.c_in();
            let int = |i: usize, m: usize| ((i * 7919 + 13) % m) as f32 - (m / 2) as f32;
            for (p0, p1) in [
                (0, ohw),
                (1, ow + 1),
                (ohw / 3, ohw / 3 + ohw / 2 + 5),
                (ow / 2, ohw - 3),
            ] {
                let p1 = p1.min(ohw);
                let tl = p1 - p0;
                let col: Vec<f32> = (0..nch * khkw * tl).map(|i| int(i, 31)).collect();
                let dx0: Vec<f32> = (0..nch * hw).map(|i| int(i, 17)).collect();
                let (mut want, mut got) = (dx0.clone(), dx0);
                col2im_tile_walk(&g, &col, nch, p0, p1, &mut want);
                col2im_tile(&g, &col, nch, p0, p1, &mut got);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{g:?} tile {p0}..{p1} element {i}");
                }
            }
        }
    }

    /// The strided panels (tap planes) hold exactly the row-major tile's
    /// elements, for tiles that start and end mid-row, strides 2 and 3 in
    /// either direction, dilation and asymmetric padding; every element the
    /// tile defines is written over the NaN the buffers start with.
    #[test]
    fn strided_panels_match_the_row_major_tile() {
        let s = Conv2dSpec::new;
        let geoms = [
            s(1, 5, 56, 56, 4, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
            s(1, 3, 17, 23, 4, 3, 3)
                .stride(2, 2)
                .padding(Padding::explicit(0, 2, 1, 0)),
            s(1, 2, 20, 19, 4, 5, 3)
                .stride(3, 2)
                .dilation(2, 1)
                .padding(Padding::explicit(3, 1, 0, 2)),
            s(1, 4, 15, 30, 4, 2, 4)
                .stride(1, 3)
                .dilation(1, 2)
                .padding(Padding::symmetric(2)),
            s(1, 3, 31, 9, 4, 7, 1)
                .stride(2, 1)
                .padding(Padding::explicit(3, 3, 0, 0)),
            s(1, 2, 12, 12, 4, 1, 1).stride(2, 2),
        ];
        for spec in geoms {
            let g = spec.build().unwrap();
            let (hw, khkw, ohw) = (g.h() * g.w(), g.kh() * g.kw(), g.oh() * g.ow());
            let nch = g.c_in();
            let x: Vec<f32> = (0..nch * hw).map(|i| (i as f32 * 0.37).sin() + 1.5).collect();
            let rows = nch * khkw;
            for (p0, p1) in [
                (0, ohw),
                (1, ohw.min(18)),
                (ohw / 3, ohw / 3 + ohw / 2 + 5),
                (ohw - 1, ohw),
            ] {
                let p1 = p1.min(ohw);
                let tl = p1 - p0;
                let mut want = vec![f32::NAN; rows * tl];
                im2col_tile(&g, &x, nch, p0, p1, &mut want);
                let mut tmp = vec![f32::NAN; panels_tmp_len(&g, tl)];
                let mut got = vec![f32::NAN; tl.div_ceil(NR) * rows * NR];
                im2col_panels(&g, &x, nch, p0, p1, &mut tmp, &mut got);
                for r in 0..rows {
                    for q in 0..tl {
                        let v = got[q / NR * rows * NR + r * NR + q % NR];
                        assert_eq!(
                            v.to_bits(),
                            want[r * tl + q].to_bits(),
                            "{g:?} tile {p0}..{p1} row {r} column {q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for s in 1..4usize {
            for off in -7isize..7 {
                for limit in 1..9usize {
                    for o0 in 0..6usize {
                        for o1 in o0..9usize {
                            let (a, b) = valid_range(o0, o1, s, off, limit);
                            let want: Vec<usize> = (o0..o1)
                                .filter(|&o| {
                                    let i = (o * s) as isize + off;
                                    i >= 0 && i < limit as isize
                                })
                                .collect();
                            let got: Vec<usize> = (a..b).collect();
                            assert_eq!(got, want, "s={s} off={off} limit={limit} o0={o0} o1={o1}");
                            assert!(o0 <= a && a <= b && b <= o1);
                        }
                    }
                }
            }
        }
    }
}
