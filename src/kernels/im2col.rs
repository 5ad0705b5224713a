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
//! (the input gradient). Both walk the tile one output row segment at a time and
//! compute the in-bounds `ox` range up front, so the inner loops are plain
//! copies / adds without per-element bounds tests.

use crate::element::Element;
use crate::geometry::Conv2dGeometry;

/// The `ox` in `o0..o1` with `0 <= ox * s + off < limit`, as a (possibly
/// empty) range `a..b`.
#[inline]
fn valid_range(o0: usize, o1: usize, s: usize, off: isize, limit: usize) -> (usize, usize) {
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

/// One output-row segment of one column-tile row, as seen from the image.
struct Segment {
    /// Offset of the segment in the tile row.
    q: usize,
    /// Segment length (columns of the tile).
    len: usize,
    /// `Some((before, run, src))`: the first `before` columns and those after
    /// `before + run` are padding; column `before + j` maps to image element
    /// `src + j * sw` of the channel plane. `None`: the whole segment is padding.
    run: Option<(usize, usize, usize)>,
}

/// Calls `f(r, ci, segment)` for every row `r = (ci * kh + ky) * kw + kx` of a
/// tile over `nch` channels and pixels `p0..p1`, and every output-row segment.
///
/// The in-bounds `ox` range of a tap column `kx` is the same for every output
/// row, so it is computed once per `kx`; rows are walked incrementally, with
/// no division in the loop.
#[inline]
fn for_each_segment(geom: &Conv2dGeometry, nch: usize, p0: usize, p1: usize, mut f: impl FnMut(usize, usize, Segment)) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pad_top, _, pad_left, _) = geom.padding();
    let (oy0, ox0) = (p0 / ow, p0 % ow);
    for ci in 0..nch {
        for ky in 0..kh {
            let yoff = (ky * dh) as isize - pad_top as isize;
            for kx in 0..kw {
                let r = (ci * kh + ky) * kw + kx;
                let xoff = (kx * dw) as isize - pad_left as isize;
                let (lo, hi) = valid_range(0, ow, sw, xoff, w);
                let (mut p, mut oy, mut ox) = (p0, oy0, ox0);
                while p < p1 {
                    let len = (ow - ox).min(p1 - p);
                    let iy = (oy * sh) as isize + yoff;
                    let (a, b) = (lo.max(ox), hi.min(ox + len));
                    let run = if iy < 0 || iy >= h as isize || a >= b {
                        None
                    } else {
                        // a is in bounds, so a * sw + xoff is in 0..w.
                        let src = (iy as usize) * w + ((a * sw) as isize + xoff) as usize;
                        Some((a - ox, b - a, src))
                    };
                    f(r, ci, Segment { q: p - p0, len, run });
                    p += len;
                    oy += 1;
                    ox = 0;
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for the short runs of
/// small images (14 pixels for a 14x14 feature map): fixed-size blocks of 8,
/// the last one overlapping the one before instead of a scalar tail.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
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

/// Builds the column tile of `nch` channels (`x` holds exactly those channel
/// planes, `nch * h * w` elements) for output pixels `p0..p1` into
/// `col` (`nch * kh * kw` rows of `p1 - p0`). Every element of `col` is written.
pub(crate) fn im2col_tile<T: Element>(geom: &Conv2dGeometry, x: &[T], nch: usize, p0: usize, p1: usize, col: &mut [T]) {
    let hw = geom.h() * geom.w();
    let sw = geom.stride().1;
    let tl = p1 - p0;
    debug_assert_eq!(x.len(), nch * hw);
    debug_assert_eq!(col.len(), nch * geom.kh() * geom.kw() * tl);
    if sw == 1 && p0.is_multiple_of(geom.ow()) {
        for_each_unit_row(geom, nch, p0, p1, |ci, off, len, lo, b, src| {
            let dst = &mut col[off..off + len];
            if lo > 0 {
                dst[..lo].fill(T::ZERO);
            }
            copy_run(&mut dst[lo..b], &x[ci * hw + src..ci * hw + src + (b - lo)]);
            if b < len {
                dst[b..].fill(T::ZERO);
            }
        });
        return;
    }
    for_each_segment(geom, nch, p0, p1, |r, ci, seg| {
        let dst = &mut col[r * tl + seg.q..r * tl + seg.q + seg.len];
        let plane = &x[ci * hw..(ci + 1) * hw];
        match seg.run {
            None => dst.fill(T::ZERO),
            Some((before, run, src)) => {
                if before > 0 {
                    dst[..before].fill(T::ZERO);
                }
                if before + run < dst.len() {
                    dst[before + run..].fill(T::ZERO);
                }
                let dst = &mut dst[before..before + run];
                if sw == 1 {
                    copy_run(dst, &plane[src..src + run]);
                } else {
                    let from = plane[src..src + (run - 1) * sw + 1].iter().step_by(sw);
                    for (d, &v) in dst.iter_mut().zip(from) {
                        *d = v;
                    }
                }
            }
        }
    });
}

/// The unit-stride walk behind [`im2col_tile`] and [`col2im_tile`], for
/// horizontal stride 1 and tiles that start on an output row: the hot case
/// (every 3x3 and 5x5 stride-1 layer), as plain loops over output rows. Per
/// tap `(ky, kx)` the valid output rows `oy_lo..oy_hi` and columns `lo..hi` are
/// computed once. Calls `f(ci, off, len, lo, b, src)` for each output row of
/// each tile row: `off..off + len` are its tile elements, of which columns
/// `lo..b` read channel-plane elements `src..src + b - lo` and the rest is
/// padding (`lo == b` when the whole row is padding).
#[inline(always)]
fn for_each_unit_row(
    geom: &Conv2dGeometry,
    nch: usize,
    p0: usize,
    p1: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let (h, w, kh, kw, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.ow());
    let sh = geom.stride().0;
    let (dh, dw) = geom.dilation();
    let (pad_top, _, pad_left, _) = geom.padding();
    let tl = p1 - p0;
    let oy0 = p0 / ow;
    let rows_in_tile = tl.div_ceil(ow);
    for ci in 0..nch {
        for ky in 0..kh {
            let yoff = (ky * dh) as isize - pad_top as isize;
            let (oy_lo, oy_hi) = valid_range(oy0, oy0 + rows_in_tile, sh, yoff, h);
            for kx in 0..kw {
                let xoff = (kx * dw) as isize - pad_left as isize;
                let (lo, hi) = valid_range(0, ow, 1, xoff, w);
                let base = ((ci * kh + ky) * kw + kx) * tl;
                for j in 0..rows_in_tile {
                    let oy = oy0 + j;
                    let len = ow.min(tl - j * ow);
                    let b = hi.min(len);
                    if oy < oy_lo || oy >= oy_hi || lo >= b {
                        f(ci, base + j * ow, len, 0, 0, 0);
                    } else {
                        // lo..b is in bounds: lo + xoff >= 0 and b + xoff <= w.
                        let iy = ((oy * sh) as isize + yoff) as usize;
                        f(
                            ci,
                            base + j * ow,
                            len,
                            lo,
                            b,
                            ((iy * w) as isize + lo as isize + xoff) as usize,
                        );
                    }
                }
            }
        }
    }
}

/// Scatter-adds the column tile `col` (`nch * kh * kw` rows of `p1 - p0`) into
/// the `nch` channel planes `dx`: the transpose of [`im2col_tile`]. Padding
/// entries of the tile are dropped.
pub(crate) fn col2im_tile<T: Element>(
    geom: &Conv2dGeometry,
    col: &[T],
    nch: usize,
    p0: usize,
    p1: usize,
    dx: &mut [T],
) {
    let hw = geom.h() * geom.w();
    let sw = geom.stride().1;
    let tl = p1 - p0;
    debug_assert_eq!(dx.len(), nch * hw);
    debug_assert_eq!(col.len(), nch * geom.kh() * geom.kw() * tl);
    if sw == 1 && p0.is_multiple_of(geom.ow()) {
        for_each_unit_row(geom, nch, p0, p1, |ci, off, _, lo, b, src| {
            let to = &mut dx[ci * hw + src..ci * hw + src + (b - lo)];
            for (d, &v) in to.iter_mut().zip(&col[off + lo..off + b]) {
                *d += v;
            }
        });
        return;
    }
    for_each_segment(geom, nch, p0, p1, |r, ci, seg| {
        if let Some((before, run, src)) = seg.run {
            let from = &col[r * tl + seg.q + before..r * tl + seg.q + before + run];
            let plane = &mut dx[ci * hw..(ci + 1) * hw];
            if sw == 1 {
                for (d, &v) in plane[src..src + run].iter_mut().zip(from) {
                    *d += v;
                }
            } else {
                let to = plane[src..src + (run - 1) * sw + 1].iter_mut().step_by(sw);
                for (d, &v) in to.zip(from) {
                    *d += v;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::valid_range;

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
