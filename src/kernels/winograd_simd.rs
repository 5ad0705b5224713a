//! Explicit AVX2 pieces of the Winograd F(2x2, 3x3) transforms
//! ([`super::winograd`]), f32 only, eight tiles per register.
//!
//! LLVM vectorizes the transforms' arithmetic along the tiles by itself, but
//! not the even/odd split of an input row (tile `i` reads columns `2i ..
//! 2i + 4`: a stride-2 walk) nor the interleave of a tile's two output
//! columns back into a row. Written out with two shuffles and a lane permute
//! per eight tiles, those steps stop being the transforms' largest cost.
//! Every function here performs exactly the additions and subtractions of
//! its scalar twin, on the same operands in the same order, so the results
//! are bitwise the same on every instruction set.

use super::isa::{avx2_f32, avx512_f32};
use super::winograd::{NE, Rows, SEG};
use crate::element::Element;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `V = B^T d B` for `n` consecutive tiles of one tile row into
/// `v[e][i0 .. i0 + n]`, from the four padded input rows `p[r]` the tiles'
/// patch rows lie on: tile `i` reads `p[r][2i .. 2i + 4]` (`p[r].len() >=
/// 2n + 2`). The row transform of patch row `r` is, with `E[i] = p[r][2i]`,
/// `O[i] = p[r][2i + 1]`, `q[r] = (E[i] - E[i+1], O[i] + E[i+1],
/// E[i+1] - O[i], O[i] - O[i+1])`, and the column transform
/// `v[j] = q[0][j] - q[2][j]`, `v[4 + j] = q[1][j] + q[2][j]`,
/// `v[8 + j] = q[2][j] - q[1][j]`, `v[12 + j] = q[1][j] - q[3][j]`.
#[inline(always)]
pub(crate) fn input_tiles<T: Element>(p: [&[T]; 4], v: &mut Rows<T>, i0: usize, n: usize) {
    assert!(i0 + n <= SEG && p.iter().all(|r| r.len() >= 2 * n + 2));
    #[cfg(target_arch = "x86_64")]
    if n >= 8 && avx2_f32::<T>() {
        let p = p.map(super::f32s);
        let v = rows_f32_mut(v);
        // SAFETY: AVX2 is available (`avx2_f32`); `n >= 8` and the extents are
        // checked above.
        unsafe { input_tiles_avx2(p, v, i0, n) };
        return;
    }
    for i in 0..n {
        let q: [[T; 4]; 4] = std::array::from_fn(|r| {
            let (e0, o0, e1, o1) = (p[r][2 * i], p[r][2 * i + 1], p[r][2 * i + 2], p[r][2 * i + 3]);
            [e0 - e1, o0 + e1, e1 - o0, o0 - o1]
        });
        for j in 0..4 {
            v[j][i0 + i] = q[0][j] - q[2][j];
            v[4 + j][i0 + i] = q[1][j] + q[2][j];
            v[8 + j][i0 + i] = q[2][j] - q[1][j];
            v[12 + j][i0 + i] = q[1][j] - q[3][j];
        }
    }
}

/// [`input_tiles`] for `n >= 8` tiles, eight at a time; a last partial
/// group is done as the eight tiles ending at `n`, rewriting some with the
/// same values.
///
/// # Safety
/// AVX2 must be available; `n >= 8`, `i0 + n <= SEG`, each `p[r].len() >=
/// 2n + 2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn input_tiles_avx2(p: [&[f32]; 4], v: &mut [[f32; SEG]; NE], i0: usize, n: usize) {
    let mut i = 0;
    loop {
        // SAFETY: `i + 8 <= n`: tile i + 7 reads p[r][2i + 14 .. 2i + 18],
        // inside each row (`2(i + 8) + 2 <= 2n + 2`).
        let q = |r: usize| unsafe { row_group(p[r].as_ptr().add(2 * i)) };
        let (q0, q2) = (q(0), q(2));
        let (q1, q3) = (q(1), q(3));
        let at = i0 + i;
        for j in 0..4 {
            // SAFETY: lanes at .. at + 8 lie in each SEG-long row of `v`
            // (`at + 8 <= i0 + n <= SEG`).
            unsafe {
                _mm256_storeu_ps(v[j].as_mut_ptr().add(at), _mm256_sub_ps(q0[j], q2[j]));
                _mm256_storeu_ps(v[4 + j].as_mut_ptr().add(at), _mm256_add_ps(q1[j], q2[j]));
                _mm256_storeu_ps(v[8 + j].as_mut_ptr().add(at), _mm256_sub_ps(q2[j], q1[j]));
                _mm256_storeu_ps(v[12 + j].as_mut_ptr().add(at), _mm256_sub_ps(q1[j], q3[j]));
            }
        }
        if i + 8 == n {
            return;
        }
        i = (i + 8).min(n - 8);
    }
}

/// The row transform of eight tiles whose padded row starts at `s` (tile
/// `i` reads `s[2i .. 2i + 4]`).
///
/// # Safety
/// AVX2 must be available; `s[0 .. 18]` must be readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn row_group(s: *const f32) -> [__m256; 4] {
    // SAFETY: the loads read s[0 .. 18] (the caller's contract).
    let (e0, o0, e1, o1) = unsafe {
        let (e0, o0) = split(_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8)));
        let (e1, o1) = split(_mm256_loadu_ps(s.add(2)), _mm256_loadu_ps(s.add(10)));
        (e0, o0, e1, o1)
    };
    [
        _mm256_sub_ps(e0, e1),
        _mm256_add_ps(o0, e1),
        _mm256_sub_ps(e1, o0),
        _mm256_sub_ps(o0, o1),
    ]
}

/// The even and odd elements of the 16 in `a` then `b`, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn split(a: __m256, b: __m256) -> (__m256, __m256) {
    // a0 a2 b0 b2 | a4 a6 b4 b6, then 64-bit pairs 0 2 1 3.
    let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    (
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e))),
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o))),
    )
}

/// `Y = A^T M A + bias` for `n` consecutive tiles of one tile row, written
/// into their two output rows: the tiles' products lie at
/// `m[e * plane + at + i]` (position `e`, tile `i`), and tile `i`'s pixel
/// `(a, b)` goes to `out[a][2i + b]`. A row given as `None` lies past the
/// image and is skipped; `out[a].len() <= 2n` (an odd length drops the last
/// tile's second column). With `s[2r] = m[r][0] + m[r][1] + m[r][2]` and
/// `s[2r + 1] = m[r][1] - m[r][2] - m[r][3]` for each row `r` of the 4x4
/// `M`, `y[b] = s[b] + s[2 + b] + s[4 + b] + bias` and
/// `y[2 + b] = s[2 + b] - s[4 + b] - s[6 + b] + bias`, in that order.
#[inline(always)]
pub(crate) fn output_tiles<T: Element>(
    m: &[T],
    plane: usize,
    at: usize,
    n: usize,
    bias: T,
    out: [Option<&mut [T]>; 2],
) {
    let w = out.iter().flatten().map(|r| r.len()).max().unwrap_or(0);
    assert!(w <= 2 * n && out.iter().flatten().all(|r| r.len() == w) && at + n + 15 * plane <= m.len());
    let mut out = out;
    // Tiles with both columns inside the rows.
    let full = w / 2;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if full >= 8 && avx2_f32::<T>() {
        let m = super::f32s(m);
        let [o0, o1] = out.each_mut().map(|o| o.as_deref_mut().map(super::f32s_mut));
        let bias = super::f32s(std::slice::from_ref(&bias))[0];
        // SAFETY: AVX2 is available (`avx2_f32`); `full >= 8`, the products of
        // tiles 0..full and the rows' first 2 full elements exist (checked
        // above).
        unsafe { output_tiles_avx2(m, plane, at, full, bias, [o0, o1]) };
        done = full;
    } else if w > 0 && avx2_f32::<T>() && at + 8 + 15 * plane <= m.len() {
        // A run shorter than a register (7 tiles per row on a 14x14 layer):
        // eight tiles' products (the extra lanes are other tiles' or unused
        // ones, all inside `m`, checked here) into two 16-pixel rows, of
        // which the run's `w` pixels are copied out.
        let m = super::f32s(m);
        let bias = super::f32s(std::slice::from_ref(&bias))[0];
        let mut rows = [[0.0f32; 16]; 2];
        let [r0, r1] = &mut rows;
        // SAFETY: AVX2 is available (`avx2_f32`); the products of tiles
        // at .. at + 8 of every position lie in `m` (checked above), each
        // row holds 16 = 2 * 8 elements.
        unsafe { output_tiles_avx2(m, plane, at, 8, bias, [Some(r0), Some(r1)]) };
        for (o, row) in out.iter_mut().zip(&rows) {
            if let Some(o) = o {
                super::f32s_mut(o).copy_from_slice(&row[..w]);
            }
        }
        return;
    }
    for i in done..n.min(w.div_ceil(2)) {
        let mm = |e: usize| m[e * plane + at + i];
        let s: [T; 8] = std::array::from_fn(|k| {
            let r = k / 2;
            if k % 2 == 0 {
                mm(4 * r) + mm(4 * r + 1) + mm(4 * r + 2)
            } else {
                mm(4 * r + 1) - mm(4 * r + 2) - mm(4 * r + 3)
            }
        });
        for b in 0..2 {
            if 2 * i + b >= w {
                continue;
            }
            if let Some(o) = &mut out[0] {
                o[2 * i + b] = s[b] + s[2 + b] + s[4 + b] + bias;
            }
            if let Some(o) = &mut out[1] {
                o[2 * i + b] = s[2 + b] - s[4 + b] - s[6 + b] + bias;
            }
        }
    }
}

/// [`output_tiles`] for the first `n >= 8` tiles (both columns of each
/// inside the rows), eight at a time; a last partial group is done as the
/// eight tiles ending at `n`, rewriting some pixels with the same values.
///
/// # Safety
/// AVX2 must be available; `n >= 8`; `m[e * plane + at .. + n]` must exist
/// for every `e < 16` and each given row must hold `2n` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_tiles_avx2(m: &[f32], plane: usize, at: usize, n: usize, bias: f32, out: [Option<&mut [f32]>; 2]) {
    let bias = _mm256_set1_ps(bias);
    let [mut o0, mut o1] = out;
    let mut i = 0;
    loop {
        // SAFETY: `i + 8 <= n`: the loads read m[e * plane + at + i ..][..8],
        // inside `m` (the caller's contract).
        let mm = |e: usize| unsafe { _mm256_loadu_ps(m.as_ptr().add(e * plane + at + i)) };
        let s: [__m256; 8] = std::array::from_fn(|k| {
            let r = k / 2;
            if k % 2 == 0 {
                _mm256_add_ps(_mm256_add_ps(mm(4 * r), mm(4 * r + 1)), mm(4 * r + 2))
            } else {
                _mm256_sub_ps(_mm256_sub_ps(mm(4 * r + 1), mm(4 * r + 2)), mm(4 * r + 3))
            }
        });
        let y = |b: usize, a: usize| {
            let t = if a == 0 {
                _mm256_add_ps(_mm256_add_ps(s[b], s[2 + b]), s[4 + b])
            } else {
                _mm256_sub_ps(_mm256_sub_ps(s[2 + b], s[4 + b]), s[6 + b])
            };
            _mm256_add_ps(t, bias)
        };
        for (a, o) in [(0, &mut o0), (1, &mut o1)] {
            if let Some(o) = o {
                let (y0, y1) = (y(0, a), y(1, a));
                // Pixels 2i .. 2i + 16 of the row, columns b = 0, 1 of each
                // tile interleaved.
                let (lo, hi) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
                // SAFETY: `2i + 16 <= 2n <= o.len()`.
                unsafe {
                    _mm256_storeu_ps(o.as_mut_ptr().add(2 * i), _mm256_permute2f128_ps::<0x20>(lo, hi));
                    _mm256_storeu_ps(o.as_mut_ptr().add(2 * i + 8), _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
            }
        }
        if i + 8 == n {
            return;
        }
        i = (i + 8).min(n - 8);
    }
}

/// Writes the transforms of `g <= 8` channels, `rows[c][e][..n]` for
/// channel `c` of the group, into a weight-gradient chunk buffer of `len`
/// elements at `dst` (see [`super::winograd::weight_grad`]): element
/// `(e, c, t)` goes to `e * plane + base + c + (tt + t) * stride`, so the
/// group's channels of one tile are `width` consecutive elements (`width`
/// is 8 for the `V` panels, 16 channels wide, and 6 for the `dM` panels,
/// [`super::sgemm::MR`] wide). The channels `g..width` of the group lie
/// past the layer's channels: they are written as zeros. Eight tiles at a
/// time go through an 8 x 8 transpose, so each tile's channels are one
/// store instead of `width` stores a cache line apart.
///
/// # Safety
/// AVX2 must be available and `T` f32 ([`avx2_f32`]); `width` is 6 or 8,
/// `g <= width`, `n <= SEG`; every element written lies in the buffer, and
/// no other thread writes them during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_channels<T: Element, const P: usize>(
    dst: *mut T,
    len: usize,
    plane: usize,
    (base, stride): (usize, usize),
    width: usize,
    tt: usize,
    rows: &[[[T; SEG]; P]; 8],
    g: usize,
    n: usize,
) {
    assert!(avx2_f32::<T>() && (width == 6 || width == 8) && g <= width && n <= SEG && P > 0);
    if n == 0 {
        return;
    }
    assert!((P - 1) * plane + base + (tt + n - 1) * stride + width <= len);
    #[cfg(target_arch = "x86_64")]
    {
        let rows: &[[[f32; SEG]; P]; 8] = rows_f32(rows);
        // SAFETY: AVX2 (asserted); the extents are checked above and the
        // caller owns the elements written.
        unsafe { store_channels_avx2(dst.cast::<f32>(), plane, base, stride, width, tt, rows, g, n) };
    }
}

/// `rows` as f32 (`T` is f32: checked by the caller).
#[cfg(target_arch = "x86_64")]
fn rows_f32_mut<T: Element>(rows: &mut Rows<T>) -> &mut [[f32; SEG]; NE] {
    super::f32s_mut(rows.as_flattened_mut())
        .as_chunks_mut()
        .0
        .try_into()
        .unwrap()
}

/// `rows` as f32 (`T` is f32: checked by the caller).
#[cfg(target_arch = "x86_64")]
fn rows_f32<T: Element, const P: usize>(rows: &[[[T; SEG]; P]; 8]) -> &[[[f32; SEG]; P]; 8] {
    let flat = super::f32s(rows.as_flattened().as_flattened());
    let (chunks, _) = flat.as_chunks::<SEG>();
    let (pos, _) = chunks.as_chunks::<P>();
    pos.try_into().unwrap()
}

/// The loop of [`store_channels`].
///
/// # Safety
/// As [`store_channels`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn store_channels_avx2<const P: usize>(
    dst: *mut f32,
    plane: usize,
    base: usize,
    stride: usize,
    width: usize,
    tt: usize,
    rows: &[[[f32; SEG]; P]; 8],
    g: usize,
    n: usize,
) {
    // The first six lanes, for the last tile of a 6-wide run (the others
    // are overwritten by the next tile's store).
    let six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    // `e` indexes the second level of `rows[c][e]`, for every channel `c`.
    #[allow(clippy::needless_range_loop)]
    for e in 0..P {
        for t0 in (0..n).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|c| {
                if c < g {
                    // SAFETY: lanes t0 .. t0 + 8 lie in each SEG-long row (t0
                    // is a multiple of 8 below n <= SEG).
                    unsafe { _mm256_loadu_ps(rows[c][e].as_ptr().add(t0)) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            let cols = transpose8(r);
            for (t, col) in cols.iter().enumerate().take(n - t0) {
                let at = e * plane + base + (tt + t0 + t) * stride;
                // SAFETY: the `width` elements at `at` lie in the buffer and
                // belong to the caller (its contract); a 6-wide store spills
                // two lanes into the next tile's slot only when that tile
                // follows in this run (and is stored next).
                unsafe {
                    if width == 8 || t0 + t + 1 < n {
                        _mm256_storeu_ps(dst.add(at), *col);
                    } else {
                        _mm256_maskstore_ps(dst.add(at), six, *col);
                    }
                }
            }
        }
    }
}

/// `U = G g G^T` ([`super::winograd`]'s weight transform) of the kernels
/// of one packed panel's `MR` rows `r` and its first `4 * quads` input
/// channels `l`, each kernel's 3 x 3 taps read from `w` at
/// `r * rs + l * ls + tap(t)` (`tap(t) = 8 - t` when `flipped`, else `t`),
/// stored into the panel of each position `e` at `planes[e]`: element
/// `l * MR + r`. The rows `r >= rows` of a partial panel hold copies of row
/// `rows - 1`'s results, for the caller to zero.
///
/// The lanes follow the panel: the kernels `q = 8 k .. 8 k + 8` of the panel
/// (`l = q / MR`, `r = q % MR`) go through one register, so each position's
/// result is stored as it is, eight consecutive panel elements, with no
/// transpose on the way out. Each kernel's first eight taps are loaded as
/// one row of an 8 x 8 block and transposed into one register per tap; the
/// ninth comes lane by lane. The same additions and halvings in the same
/// order as the scalar transform, so the same bits.
///
/// # Safety
/// AVX2 must be available; `1 <= rows <= MR`; every tap of the kernels
/// `(r < rows, l < 4 * quads)` must lie in `w`; each `planes[e]` must address `4 * quads * MR`
/// writable elements that nothing else touches during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn weight_panel_avx2(
    w: *const f32,
    (rs, ls): (usize, usize),
    flipped: bool,
    rows: usize,
    quads: usize,
    planes: &[*mut f32; NE],
) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        if flipped {
            weight_panel::<true>(w, (rs, ls), rows, quads, planes)
        } else {
            weight_panel::<false>(w, (rs, ls), rows, quads, planes)
        }
    }
}

/// [`weight_panel_avx2`] with `flipped` fixed.
///
/// # Safety
/// As [`weight_panel_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weight_panel<const FLIPPED: bool>(
    w: *const f32,
    (rs, ls): (usize, usize),
    rows: usize,
    quads: usize,
    planes: &[*mut f32; NE],
) {
    const MR: usize = super::sgemm::MR;
    const Q: usize = 4 * MR;
    const _: () = assert!(Q.is_multiple_of(8));
    assert!((1..=MR).contains(&rows));
    // Kernel q of the current four channels, (r, l) = (q % MR, q / MR); the
    // rows past `rows` read the last row's kernels (their results are
    // overwritten by the caller).
    let mut kernels: [*const f32; Q] =
        std::array::from_fn(|q| w.wrapping_add((q % MR).min(rows - 1) * rs + (q / MR) * ls));
    for quad in 0..quads {
        for k in 0..Q / 8 {
            // SAFETY: the kernels' taps lie in `w`, and the eight elements
            // at `quad * Q + 8 * k` in the caller's planes (its contract).
            unsafe { weight_group8::<FLIPPED>(&kernels[8 * k..8 * k + 8], planes, quad * Q + 8 * k) };
        }
        for p in kernels.iter_mut() {
            *p = p.wrapping_add(4 * ls);
        }
    }
}

/// The transform of the eight kernels starting at `kernels[j]` (lane `j`)
/// into the eight elements at `planes[e] + at` of each position `e`.
///
/// # Safety
/// AVX2; each kernel's nine taps readable, the eight elements at each
/// `planes[e] + at` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn weight_group8<const FLIPPED: bool>(kernels: &[*const f32], planes: &[*mut f32; NE], at: usize) {
    assert!(kernels.len() == 8);
    let half = _mm256_set1_ps(0.5);
    // SAFETY: each kernel's nine taps are readable (the contract).
    let (taps, tap8) = unsafe {
        (
            transpose8(std::array::from_fn(|j| _mm256_loadu_ps(kernels[j]))),
            _mm256_setr_ps(
                *kernels[0].add(8),
                *kernels[1].add(8),
                *kernels[2].add(8),
                *kernels[3].add(8),
                *kernels[4].add(8),
                *kernels[5].add(8),
                *kernels[6].add(8),
                *kernels[7].add(8),
            ),
        )
    };
    let g: [__m256; 9] = std::array::from_fn(|t| {
        let t = if FLIPPED { 8 - t } else { t };
        if t == 8 { tap8 } else { taps[t] }
    });
    let mut t = [half; 12];
    for c in 0..3 {
        let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
        t[c] = a;
        t[3 + c] = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(a, b), d), half);
        t[6 + c] = _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(a, b), d), half);
        t[9 + c] = d;
    }
    for i in 0..4 {
        let (a, b, d) = (t[3 * i], t[3 * i + 1], t[3 * i + 2]);
        let u = [
            a,
            _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(a, b), d), half),
            _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(a, b), d), half),
            d,
        ];
        for (j, v) in u.into_iter().enumerate() {
            // SAFETY: eight writable elements at each planes[e] + at (the
            // contract).
            unsafe { _mm256_storeu_ps(planes[4 * i + j].add(at), v) };
        }
    }
}

/// `dg = G^T dU G` ([`super::winograd`]'s inverse weight transform) of eight
/// kernels `l < 8`, lane by lane: kernel `l`'s value of position `e` at
/// `du + e * plane + l`, its nine taps stored to `dst[9 l .. 9 l + 9]`. The
/// same additions and halvings in the same order as the scalar transform, so
/// the same bits. The taps leave through one 8 x 8 transpose (taps 0..8 of
/// each kernel as one store) and the ninth lane by lane.
///
/// # Safety
/// AVX2 must be available; the eight values at `du + e * plane` must be
/// readable for every `e < 16`, and `dst`'s 72 elements writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn weight_grad_out8_avx2(du: *const f32, plane: usize, dst: *mut f32) {
    let half = _mm256_set1_ps(0.5);
    // SAFETY: readable (the contract).
    let u: [__m256; NE] = std::array::from_fn(|e| unsafe { _mm256_loadu_ps(du.add(e * plane)) });
    let mut r = [[half; 3]; 4];
    for (i, ri) in r.iter_mut().enumerate() {
        let (u0, u1, u2, u3) = (u[i * 4], u[i * 4 + 1], u[i * 4 + 2], u[i * 4 + 3]);
        let s = _mm256_mul_ps(_mm256_add_ps(u1, u2), half);
        ri[0] = _mm256_add_ps(u0, s);
        ri[1] = _mm256_mul_ps(_mm256_sub_ps(u1, u2), half);
        ri[2] = _mm256_add_ps(s, u3);
    }
    let mut g = [half; 9];
    for b in 0..3 {
        let s = _mm256_mul_ps(_mm256_add_ps(r[1][b], r[2][b]), half);
        g[b] = _mm256_add_ps(r[0][b], s);
        g[3 + b] = _mm256_mul_ps(_mm256_sub_ps(r[1][b], r[2][b]), half);
        g[6 + b] = _mm256_add_ps(s, r[3][b]);
    }
    let rows = transpose8([g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]]);
    let mut ninth = [0.0f32; 8];
    // SAFETY: eight elements of a local array.
    unsafe { _mm256_storeu_ps(ninth.as_mut_ptr(), g[8]) };
    for (l, row) in rows.iter().enumerate() {
        // SAFETY: elements 9 l .. 9 l + 9 of `dst` (the contract).
        unsafe {
            _mm256_storeu_ps(dst.add(9 * l), *row);
            *dst.add(9 * l + 8) = ninth[l];
        }
    }
}

/// The 8 x 8 transpose: output `t` holds lane `t` of every input, in input
/// order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `dst[j] = src[2 j]` for every `j < dst.len()`: a dilation-2 row's phase
/// (the dilated Winograd), a stride-2 phase plane (the implicit weight
/// gradient) or tap plane (the strided forward's panels). For f32 on
/// AVX-512F, 16 at a time when `dst` holds at least 16 and `src` reaches
/// `2 n`, the rest as one group overlapping the last (down_3x3s2's forward,
/// rows of 28: 1.025-1.033 per call against the AVX2 groups, 1 and 2
/// threads). Otherwise eight at a time with AVX2 while `src` holds the 16
/// elements a group loads; the rest as one more group overlapping the last
/// where `src` reaches that far (`src` may run past `2 (n - 1)`; only its
/// even elements below `2 n` are copied), else one by one.
#[inline(always)]
pub(crate) fn even_elements<T: Element>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    assert!(n == 0 || src.len() > 2 * (n - 1));
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    if avx512_f32::<T>() && n >= 16 && 2 * n <= src.len() {
        let (d, s) = (super::f32s_mut(dst), super::f32s(src));
        while j + 16 <= n {
            // SAFETY: AVX-512F (`avx512_f32`); src[2j .. 2j + 32] and
            // dst[j .. j + 16] are in bounds (j + 16 <= n, 2n <= src.len()).
            unsafe { even16(s.as_ptr().add(2 * j), d.as_mut_ptr().add(j)) };
            j += 16;
        }
        if j < n {
            // SAFETY: as above, for the group at n - 16 (n >= 16).
            unsafe { even16(s.as_ptr().add(2 * (n - 16)), d.as_mut_ptr().add(n - 16)) };
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_f32::<T>() {
        let (d, s) = (super::f32s_mut(dst), super::f32s(src));
        while j + 8 <= n && 2 * j + 16 <= s.len() {
            // SAFETY: AVX2 (`avx2_f32`); src[2j .. 2j + 16] and
            // dst[j .. j + 8] are in bounds (the loop condition).
            unsafe { even8(s.as_ptr().add(2 * j), d.as_mut_ptr().add(j)) };
            j += 8;
        }
        if j < n && n >= 8 && 2 * (n - 8) + 16 <= s.len() {
            // SAFETY: as above, for the group at n - 8 (the condition).
            unsafe { even8(s.as_ptr().add(2 * (n - 8)), d.as_mut_ptr().add(n - 8)) };
            j = n;
        }
    }
    for j in j..n {
        dst[j] = src[2 * j];
    }
}

/// `d[l] = s[2 l]` for `l < 16`: one two-source permute of two 16-lane
/// loads (the 8-lane path takes a shuffle and a permute per 8).
///
/// # Safety
/// AVX-512F must be available; `s[0 .. 32]` readable, `d[0 .. 16]` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn even16(s: *const f32, d: *mut f32) {
    // SAFETY: the caller's contract.
    unsafe {
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let e = _mm512_permutex2var_ps(_mm512_loadu_ps(s), idx, _mm512_loadu_ps(s.add(16)));
        _mm512_storeu_ps(d, e);
    }
}

/// `d[l] = s[2 l]` for `l < 8`.
///
/// # Safety
/// AVX2 must be available; `s[0 .. 16]` readable, `d[0 .. 8]` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn even8(s: *const f32, d: *mut f32) {
    // SAFETY: the caller's contract.
    unsafe {
        let (e, _) = split(_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8)));
        _mm256_storeu_ps(d, e);
    }
}

/// `dM = A dY A^T` for `n` consecutive tiles of one tile row into
/// `dm[e][i0 .. i0 + n]`, from the two `dY` rows `p[a]` of the tiles (tile
/// `i` reads `p[a][2i]` and `p[a][2i + 1]`, `p[a].len() >= 2n`). With
/// `y0 = p[a][2i]`, `y1 = p[a][2i + 1]`, the row transform is
/// `q[a] = (y0, y0 + y1, y0 - y1, -y1)` and the column transform
/// `dm[j] = q[0][j]`, `dm[4 + j] = q[0][j] + q[1][j]`,
/// `dm[8 + j] = q[0][j] - q[1][j]`, `dm[12 + j] = -q[1][j]` (negation flips
/// the sign bit, in SIMD too).
#[inline(always)]
pub(crate) fn output_grad_tiles<T: Element>(p: [&[T]; 2], dm: &mut Rows<T>, i0: usize, n: usize) {
    assert!(i0 + n <= SEG && p.iter().all(|r| r.len() >= 2 * n));
    #[cfg(target_arch = "x86_64")]
    if n >= 8 && avx2_f32::<T>() {
        let p = p.map(super::f32s);
        let dm = rows_f32_mut(dm);
        // SAFETY: AVX2 is available (`avx2_f32`); `n >= 8` and the extents
        // are checked above.
        unsafe { output_grad_tiles_avx2(p, dm, i0, n) };
        return;
    }
    for i in 0..n {
        let q: [[T; 4]; 2] = std::array::from_fn(|a| {
            let (y0, y1) = (p[a][2 * i], p[a][2 * i + 1]);
            [y0, y0 + y1, y0 - y1, -y1]
        });
        for j in 0..4 {
            dm[j][i0 + i] = q[0][j];
            dm[4 + j][i0 + i] = q[0][j] + q[1][j];
            dm[8 + j][i0 + i] = q[0][j] - q[1][j];
            dm[12 + j][i0 + i] = -q[1][j];
        }
    }
}

/// [`output_grad_tiles`] for `n >= 8` tiles, eight at a time; a last
/// partial group is done as the eight tiles ending at `n`.
///
/// # Safety
/// AVX2 must be available; `n >= 8`, `i0 + n <= SEG`, each `p[a].len() >=
/// 2n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_grad_tiles_avx2(p: [&[f32]; 2], dm: &mut [[f32; SEG]; NE], i0: usize, n: usize) {
    let sign = _mm256_set1_ps(-0.0);
    let mut i = 0;
    loop {
        let q = |a: usize| {
            // SAFETY: `i + 8 <= n`: the loads read p[a][2i .. 2i + 16],
            // inside each row (`2(i + 8) <= 2n`).
            let (y0, y1) = unsafe {
                let s = p[a].as_ptr().add(2 * i);
                split(_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8)))
            };
            [
                y0,
                _mm256_add_ps(y0, y1),
                _mm256_sub_ps(y0, y1),
                _mm256_xor_ps(y1, sign),
            ]
        };
        let (q0, q1) = (q(0), q(1));
        let at = i0 + i;
        for j in 0..4 {
            // SAFETY: lanes at .. at + 8 lie in each SEG-long row of `dm`
            // (`at + 8 <= i0 + n <= SEG`).
            unsafe {
                _mm256_storeu_ps(dm[j].as_mut_ptr().add(at), q0[j]);
                _mm256_storeu_ps(dm[4 + j].as_mut_ptr().add(at), _mm256_add_ps(q0[j], q1[j]));
                _mm256_storeu_ps(dm[8 + j].as_mut_ptr().add(at), _mm256_sub_ps(q0[j], q1[j]));
                _mm256_storeu_ps(dm[12 + j].as_mut_ptr().add(at), _mm256_xor_ps(q1[j], sign));
            }
        }
        if i + 8 == n {
            return;
        }
        i = (i + 8).min(n - 8);
    }
}

/// `dst[dw * j] = src[j]` for `j < src.len()`: one transformed output row of
/// a dilated layer's phase put back among the other phases' columns. On
/// AVX-512F with `dw == 2`, eight elements at a time are expanded onto the
/// even lanes of a register and stored through a lane mask (the odd lanes,
/// the other phase's pixels, are left alone); else one by one. Moves only.
///
/// # Safety
/// `dst + dw * j` must be writable for every `j < src.len()`, and no other
/// thread may touch those elements.
#[inline(always)]
pub(crate) unsafe fn store_strided<T: Element>(src: &[T], dst: *mut T, dw: usize) {
    #[cfg(target_arch = "x86_64")]
    if dw == 2 && avx512_f32::<T>() {
        // SAFETY: AVX-512F (checked); the caller's contract, T being f32.
        unsafe { store_every_other_avx512(super::f32s(src), dst.cast()) };
        return;
    }
    for (j, &v) in src.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { *dst.add(dw * j) = v };
    }
}

/// [`store_strided`] with `dw = 2` on AVX-512F.
///
/// # Safety
/// AVX-512F must be available; `dst + 2 * j` writable for `j < src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_every_other_avx512(src: &[f32], dst: *mut f32) {
    let n = src.len();
    let mut j = 0;
    while j < n {
        let r = (n - j).min(8);
        // The even lanes of the first 2r: the expand reads r elements of
        // `src` from j, the store writes dst[2 (j + i)] for i < r.
        let mask = (0x5555u32 & ((1u32 << (2 * r)) - 1)) as __mmask16;
        // SAFETY: src[j .. j + r] is in bounds (r <= n - j) and only the
        // masked lanes are read or written; dst + 2 (j + i), i < r, is
        // writable (the caller's contract).
        unsafe {
            let v = _mm512_maskz_expandloadu_ps(mask, src.as_ptr().add(j));
            _mm512_mask_storeu_ps(dst.add(2 * j), mask, v);
        }
        j += r;
    }
}

#[cfg(test)]
mod tests {
    use super::{even_elements, store_strided};

    /// Every even element lands, nothing past `dst` is written, with `src`
    /// one short of the last group's 16 (the one-by-one tail) or longer (the
    /// overlapping group), on whichever instruction set runs.
    #[test]
    fn even_elements_matches_plain_loop() {
        for n in 1..50 {
            for extra in [0, 1, 7] {
                let src: Vec<f32> = (0..2 * n - 1 + extra).map(|i| i as f32).collect();
                let mut dst = vec![f32::NAN; n + 3];
                even_elements(&mut dst[..n], &src);
                for (j, &v) in dst.iter().enumerate() {
                    if j < n {
                        assert_eq!(v, (2 * j) as f32, "n {n}, extra {extra}, element {j}");
                    } else {
                        assert!(v.is_nan(), "n {n}: wrote element {j}");
                    }
                }
            }
        }
    }

    /// Every element lands at `dw * j`, and nothing else of `dst` (the other
    /// phases' pixels, the elements past the last) is written, for lengths
    /// around the 8-element groups, on whichever instruction set runs.
    #[test]
    fn store_strided_writes_only_its_phase() {
        for dw in 1..4 {
            for n in 1..40 {
                let src: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
                let mut dst = vec![f32::NAN; dw * n + 17];
                // SAFETY: dst holds dw * (n - 1) + 1 elements and more.
                unsafe { store_strided(&src, dst.as_mut_ptr(), dw) };
                for (i, &v) in dst.iter().enumerate() {
                    if i % dw == 0 && i / dw < n {
                        assert_eq!(v, (i / dw) as f32 + 0.5, "dw {dw}, n {n}, element {i}");
                    } else {
                        assert!(v.is_nan(), "dw {dw}, n {n}: wrote element {i}");
                    }
                }
            }
        }
    }
}
