//! The transforms of Winograd F(4x4, 3x3) ([`super::winograd`] runs them):
//! a 4x4 output tile from a 6x6 input tile, 36 multiplications per input
//! and output channel instead of the direct 144 (4x fewer; F(2x2, 3x3)
//! saves 2.25x). With the points 0, ±1, ±2 and infinity (Lavin and Gray,
//! 2016)
//!
//! ```text
//! B^T = [4  0 -5  0  1  0]   G = [ 1/4    0     0  ]   A^T = [1  1  1  1  1  0]
//!       [0 -4 -4  1  1  0]       [-1/6  -1/6  -1/6 ]         [0  1 -1  2 -2  0]
//!       [0  4 -4 -1  1  0]       [-1/6   1/6  -1/6 ]         [0  1  1  4  4  0]
//!       [0 -2 -1  2  1  0]       [1/24  1/12   1/6 ]         [0  1 -1  8 -8  1]
//!       [0  2 -1 -2  1  0]       [1/24 -1/12   1/6 ]
//!       [0  4  0 -5  0  1]       [  0     0     1  ]
//! ```
//!
//! tile `t` covers output pixels `(4ty + a, 4tx + b)`, `a, b in 0..4`, reads
//! the 6x6 patch `d[r][c]` at `(4ty + r, 4tx + c)` of the padded input, and
//! `Y_t = A^T [ sum over ci of U[co][ci] ⊙ V_t[ci] ] A` with
//! `U = G g G^T`, `V = B^T d B`, 6x6 each, position `e = 6k + j` (row `k`,
//! column `j`). Each 2-D transform is its 1-D one ([`in_1d`], [`out_1d`],
//! [`weight_1d`]) along every row, then along every column of the result.
//!
//! The entries up to 8 (and 1/6, 1/24, which round) make the rounding error
//! larger than F(2x2, 3x3)'s; `docs/design.md` states the measured bound.
//!
//! The AVX2 versions transform eight tiles per register and run the same
//! operations in the same order through the [`Lane`] trait (the 1-D
//! transforms are written once, for scalars and registers alike), so every
//! instruction set gives the same bits.

use super::isa::avx2_f32;
use super::winograd::SEG;
use crate::element::Element;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Positions of one transformed tile (6 x 6).
pub(crate) const NE4: usize = 36;

/// Transformed values of a block of at most [`SEG`] tiles: `v[e][i]` for
/// position `e`, tile `i`.
pub(crate) type Rows4<T> = [[T; SEG]; NE4];

/// The arithmetic the 1-D transforms use, on one value or on a register of
/// eight tiles' values.
trait Lane: Copy {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
}

impl<T: Element> Lane for T {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

/// Eight f32 lanes. Values of this type are made only inside functions
/// compiled with AVX2 enabled, on a CPU that has it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct F8(__m256);

#[cfg(target_arch = "x86_64")]
impl Lane for F8 {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: an `F8` exists only where AVX is available (type docs).
        F8(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: as in `add`.
        F8(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: as in `add`.
        F8(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
}

/// `B^T d` for one column `d` of six values, with `two`, `four` those
/// constants: with `a = d4 - 4 d2`, `b = d3 - 4 d1`, `c = d4 - d2`,
/// `f = d3 - d1`, `e = 2 f`: `(4 (d0 - d2) + c, a + b, a - b, c + e, c - e,
/// (d5 - d3) - 4 f)`.
#[inline(always)]
fn in_1d<L: Lane>(d: [L; 6], two: L, four: L) -> [L; 6] {
    let a = d[4].sub(d[2].mul(four));
    let b = d[3].sub(d[1].mul(four));
    let c = d[4].sub(d[2]);
    let f = d[3].sub(d[1]);
    let e = f.mul(two);
    [
        d[0].sub(d[2]).mul(four).add(c),
        a.add(b),
        a.sub(b),
        c.add(e),
        c.sub(e),
        d[5].sub(d[3]).sub(f.mul(four)),
    ]
}

/// `A^T m` for one column `m` of six values: with `p = m1 + m2`,
/// `q = m1 - m2`, `r = m3 + m4`, `s = m3 - m4`: `((m0 + p) + r, q + 2 s,
/// p + 4 r, (q + 8 s) + m5)`.
#[inline(always)]
fn out_1d<L: Lane>(m: [L; 6], [two, four, eight]: [L; 3]) -> [L; 4] {
    let (p, q) = (m[1].add(m[2]), m[1].sub(m[2]));
    let (r, s) = (m[3].add(m[4]), m[3].sub(m[4]));
    [
        m[0].add(p).add(r),
        q.add(s.mul(two)),
        p.add(r.mul(four)),
        q.add(s.mul(eight)).add(m[5]),
    ]
}

/// The constants of `G`: 1/4, -1/6, 1/24, 1/12, 1/6.
const G_CONSTS: [f64; 5] = [0.25, -1.0 / 6.0, 1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0];

/// `G g` for one column `g` of three values, with `k` the [`G_CONSTS`]:
/// `(g0 / 4, (g0 + g1 + g2) (-1/6), (g0 - g1 + g2) (-1/6),
/// (g0 / 24 + g1 / 12) + g2 / 6, (g0 / 24 - g1 / 12) + g2 / 6, g2)`.
#[inline(always)]
fn weight_1d<L: Lane>(g: [L; 3], k: [L; 5]) -> [L; 6] {
    let (a, b) = (g[0].mul(k[2]), g[1].mul(k[3]));
    let c = g[2].mul(k[4]);
    [
        g[0].mul(k[0]),
        g[0].add(g[1]).add(g[2]).mul(k[1]),
        g[0].sub(g[1]).add(g[2]).mul(k[1]),
        a.add(b).add(c),
        a.sub(b).add(c),
        g[2],
    ]
}

/// `U = G g G^T` of one 3x3 kernel `g[ky][kx]` (positions `6k + j`):
/// [`weight_1d`] along each kernel row, then along each column. (No
/// closures here: a closure would not inherit the AVX2 target feature of
/// the function this is inlined into, and its register operations would
/// become calls.)
#[inline(always)]
fn weight_2d<L: Lane>(g: [[L; 3]; 3], k: [L; 5]) -> [L; NE4] {
    let h = [weight_1d(g[0], k), weight_1d(g[1], k), weight_1d(g[2], k)];
    let mut u = [h[0][0]; NE4];
    for j in 0..6 {
        let col = weight_1d([h[0][j], h[1][j], h[2][j]], k);
        for (kk, val) in col.into_iter().enumerate() {
            u[6 * kk + j] = val;
        }
    }
    u
}

/// `U = G g G^T` for one 3x3 kernel `g[ky][kx]` (positions `6k + j`).
pub(crate) fn weight_transform4<T: Element>(g: [[T; 3]; 3]) -> [T; NE4] {
    weight_2d(g, G_CONSTS.map(T::from_f64))
}

/// [`weight_transform4`] of `n` kernels at once: kernel `l`'s taps are
/// `g[3 ky + kx][l]`, and its position `e` goes to `u[e][l]`.
pub(crate) fn weight_tiles4<T: Element>(g: &[&[T]; 9], u: &mut [&mut [T]], n: usize) {
    assert!(u.len() == NE4 && g.iter().all(|t| t.len() >= n) && u.iter().all(|p| p.len() >= n));
    let mut l = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2_f32::<T>() {
        let g = g.map(super::f32s);
        // SAFETY: AVX2 is available and `T` is f32 (`avx2_f32`); the extents
        // are checked above.
        unsafe { l = weight_tiles4_avx2(&g, u.as_mut_ptr().cast::<&mut [f32]>(), n) };
    }
    let k = G_CONSTS.map(T::from_f64);
    for l in l..n {
        let v = weight_2d(std::array::from_fn(|r| std::array::from_fn(|c| g[3 * r + c][l])), k);
        for (p, val) in u.iter_mut().zip(v) {
            p[l] = val;
        }
    }
}

/// [`weight_tiles4`] for the kernels `0 .. 8 * (n / 8)`, eight per register;
/// returns how many it did.
///
/// # Safety
/// AVX2 must be available; `u` points at 36 slices; every `g[t]` and every
/// slice of `u` holds at least `n` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weight_tiles4_avx2(g: &[&[f32]; 9], u: *mut &mut [f32], n: usize) -> usize {
    let k = G_CONSTS.map(|v| F8(_mm256_set1_ps(v as f32)));
    let mut l = 0;
    while l + 8 <= n {
        // SAFETY: `l + 8 <= n <= g[t].len()`.
        let tap = |t: usize| F8(unsafe { _mm256_loadu_ps(g[t].as_ptr().add(l)) });
        let v = weight_2d(
            [
                [tap(0), tap(1), tap(2)],
                [tap(3), tap(4), tap(5)],
                [tap(6), tap(7), tap(8)],
            ],
            k,
        );
        for (e, val) in v.into_iter().enumerate() {
            // SAFETY: slice `e < 36` of `u` holds `n >= l + 8` elements.
            unsafe { _mm256_storeu_ps((*u.add(e)).as_mut_ptr().add(l), val.0) };
        }
        l += 8;
    }
    l
}

/// `V = B^T d B` for `n` consecutive tiles of one tile row into
/// `v[e][i0 .. i0 + n]`, from the six padded input rows `p[r]` the tiles'
/// patch rows lie on: tile `i` reads `p[r][4i .. 4i + 6]` (`p[r].len() >=
/// 4n + 2`). Per tile, [`in_1d`] along each patch row, then along each
/// column of the result ([`tiles_to_six`]).
#[inline(always)]
pub(crate) fn input_tiles4<T: Element>(p: [&[T]; 6], v: &mut Rows4<T>, i0: usize, n: usize) {
    tiles_to_six::<T, 6, Input>(p, v, i0, n);
}

/// A 1-D transform from `R` values of a tile row or column to six.
trait ToSix<const R: usize> {
    fn apply<L: Lane>(x: [L; R], two: L, four: L) -> [L; 6];
}

/// [`in_1d`]: `B^T d`, the input transform.
struct Input;

impl ToSix<6> for Input {
    #[inline(always)]
    fn apply<L: Lane>(x: [L; 6], two: L, four: L) -> [L; 6] {
        in_1d(x, two, four)
    }
}

/// [`grad_1d`]: `A y`, the output-gradient transform.
struct Grad;

impl ToSix<4> for Grad {
    #[inline(always)]
    fn apply<L: Lane>(x: [L; 4], two: L, four: L) -> [L; 6] {
        grad_1d(x, two, four)
    }
}

/// The 6x6 transform `F` (applied along the `R` rows, then along each of
/// the six columns) of `n` consecutive tiles of one tile row into
/// `out[6k + j][i0 .. i0 + n]`: tile `i` reads `p[r][4i .. 4i + R]`
/// (`p[r].len() >= 4n + R - 4`; `R` is 4 or 6). Eight tiles per register on AVX2, the same
/// operations in the same order.
#[inline(always)]
fn tiles_to_six<T: Element, const R: usize, F: ToSix<R>>(p: [&[T]; R], out: &mut Rows4<T>, i0: usize, n: usize) {
    assert!((R == 4 || R == 6) && i0 + n <= SEG && p.iter().all(|r| r.len() >= 4 * n + R - 4));
    #[cfg(target_arch = "x86_64")]
    if n >= 8 && avx2_f32::<T>() {
        let p = p.map(super::f32s);
        // SAFETY: `T` is f32 (`avx2_f32`), so the two types are the same.
        let out = unsafe { &mut *(out as *mut Rows4<T>).cast::<Rows4<f32>>() };
        // SAFETY: AVX2 is available (`avx2_f32`); `n >= 8` and the extents are
        // checked above.
        unsafe { tiles_to_six_avx2::<R, F>(p, out, i0, n) };
        return;
    }
    let (two, four) = (T::from_f64(2.0), T::from_f64(4.0));
    for i in 0..n {
        let h: [[T; 6]; R] = std::array::from_fn(|r| F::apply(std::array::from_fn(|c| p[r][4 * i + c]), two, four));
        for j in 0..6 {
            let col = F::apply(std::array::from_fn(|r| h[r][j]), two, four);
            for (k, val) in col.into_iter().enumerate() {
                out[6 * k + j][i0 + i] = val;
            }
        }
    }
}

/// [`tiles_to_six`] for `n >= 8` tiles, eight at a time; a last partial
/// group is done as the eight tiles ending at `n`, rewriting some with the
/// same values.
///
/// # Safety
/// AVX2 must be available; `n >= 8`, `i0 + n <= SEG`, each `p[r].len() >=
/// 4n + R - 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tiles_to_six_avx2<const R: usize, F: ToSix<R>>(p: [&[f32]; R], out: &mut Rows4<f32>, i0: usize, n: usize) {
    let (two, four) = (F8(_mm256_set1_ps(2.0)), F8(_mm256_set1_ps(4.0)));
    let mut i = 0;
    loop {
        let row = |r: usize| {
            // SAFETY: `i + 8 <= n`: tiles i .. i + 8 read p[r][4i .. 4i + 28 + R]
            // (columns 4 and 5 only when R = 6), inside each row
            // (`4(i + 8) + R - 4 <= 4n + R - 4`).
            let cols = unsafe { columns6(p[r].as_ptr().add(4 * i), R == 6) };
            F::apply(cols[..R].try_into().unwrap(), two, four)
        };
        // The first four rows, then (R = 6) two more; the closures are
        // defined here and so compiled with AVX2.
        let h4 = [row(0), row(1), row(2), row(3)];
        let h45 = if R == 6 { [row(4), row(5)] } else { [h4[0], h4[0]] };
        let at = i0 + i;
        for j in 0..6 {
            let c6 = [h4[0][j], h4[1][j], h4[2][j], h4[3][j], h45[0][j], h45[1][j]];
            for (k, val) in F::apply(c6[..R].try_into().unwrap(), two, four).into_iter().enumerate() {
                // SAFETY: lanes at .. at + 8 lie in each SEG-long row of `out`
                // (`at + 8 <= i0 + n <= SEG`).
                unsafe { _mm256_storeu_ps(out[6 * k + j].as_mut_ptr().add(at), val.0) };
            }
        }
        if i + 8 == n {
            return;
        }
        i = (i + 8).min(n - 8);
    }
}

/// Columns `c = 0..6` of eight tiles whose padded row starts at `s`: lane
/// `i` of register `c` is `s[4i + c]` (columns 4 and 5 only with `six`;
/// without, `s[0 .. 32]` suffices and they are not meaningful). Four loads hold tiles (0, 1), (2, 3),
/// (4, 5), (6, 7); their 128-bit halves paired as (0, 4), (1, 5), (2, 6),
/// (3, 7) and (4, 8) make two rounds of unpacks a 4 x 8 transpose.
///
/// Inlined into its AVX2 caller (not compiled with AVX2 itself, so that it
/// can be forced inline there).
///
/// # Safety
/// AVX2 must be available; `s[0 .. 34]` must be readable (`s[0 .. 32]`
/// without `six`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns6(s: *const f32, six: bool) -> [F8; 6] {
    // SAFETY: the loads read s[0 .. 32] and, for `six`, s[32 .. 34] (the
    // caller's contract).
    let (a, b, c, d, e) = unsafe {
        (
            _mm256_loadu_ps(s),
            _mm256_loadu_ps(s.add(8)),
            _mm256_loadu_ps(s.add(16)),
            _mm256_loadu_ps(s.add(24)),
            if six {
                _mm_castpd_ps(_mm_load_sd(s.add(32).cast::<f64>()))
            } else {
                _mm_setzero_ps()
            },
        )
    };
    // SAFETY: AVX2 is available (the caller's contract).
    unsafe {
        let r0 = _mm256_permute2f128_ps::<0x20>(a, c);
        let r1 = _mm256_permute2f128_ps::<0x31>(a, c);
        let r2 = _mm256_permute2f128_ps::<0x20>(b, d);
        let r3 = _mm256_permute2f128_ps::<0x31>(b, d);
        let r4 = _mm256_insertf128_ps::<1>(c, e);
        let (u0, u1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (u2, u3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (u4, u5) = (_mm256_unpacklo_ps(r1, r2), _mm256_unpacklo_ps(r3, r4));
        let pl = |x: __m256, y: __m256| {
            F8(_mm256_castpd_ps(_mm256_unpacklo_pd(
                _mm256_castps_pd(x),
                _mm256_castps_pd(y),
            )))
        };
        let ph = |x: __m256, y: __m256| {
            F8(_mm256_castpd_ps(_mm256_unpackhi_pd(
                _mm256_castps_pd(x),
                _mm256_castps_pd(y),
            )))
        };
        [pl(u0, u2), ph(u0, u2), pl(u1, u3), ph(u1, u3), pl(u4, u5), ph(u4, u5)]
    }
}

/// `Y = A^T M A + bias` for `n` consecutive tiles of one tile row, written
/// into their four output rows: the tiles' products lie at
/// `m[e * plane + at + i]` (position `e`, tile `i`), and tile `i`'s pixel
/// `(a, b)` goes to `out[a][4i + b]`. A row given as `None` lies past the
/// image and is skipped; `out[a].len() <= 4n` (a shorter row drops the
/// last tile's columns past it). Per tile, [`out_1d`] along each row of `M`,
/// then along each column of the result, then the bias.
#[inline(always)]
pub(crate) fn output_tiles4<T: Element>(
    m: &[T],
    plane: usize,
    at: usize,
    n: usize,
    bias: T,
    out: [Option<&mut [T]>; 4],
) {
    let w = out.iter().flatten().map(|r| r.len()).max().unwrap_or(0);
    assert!(w <= 4 * n && out.iter().flatten().all(|r| r.len() == w) && at + n + (NE4 - 1) * plane <= m.len());
    let mut out = out;
    // Tiles with all four columns inside the rows.
    let full = w / 4;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if full >= 8 && avx2_f32::<T>() {
        let m = super::f32s(m);
        let o = out.each_mut().map(|o| o.as_deref_mut().map(super::f32s_mut));
        let bias = super::f32s(std::slice::from_ref(&bias))[0];
        // SAFETY: AVX2 is available (`avx2_f32`); `full >= 8`, the products of
        // tiles 0..full and the rows' first 4 full elements exist (checked
        // above).
        unsafe { output_tiles4_avx2(m, plane, at, full, bias, o) };
        done = full;
    } else if w > 0 && avx2_f32::<T>() && at + 8 + (NE4 - 1) * plane <= m.len() {
        // A run shorter than a register (4 tiles per row on a 16x16 layer):
        // eight tiles' products (the extra lanes are other tiles' or unused
        // ones, all inside `m`, checked here) into four 32-pixel rows, of
        // which the run's `w` pixels are copied out.
        let m = super::f32s(m);
        let bias = super::f32s(std::slice::from_ref(&bias))[0];
        let mut rows = [[0.0f32; 32]; 4];
        let [r0, r1, r2, r3] = &mut rows;
        // SAFETY: AVX2 is available (`avx2_f32`); the products of tiles
        // at .. at + 8 of every position lie in `m` (checked above), each
        // row holds 32 = 4 * 8 elements.
        unsafe { output_tiles4_avx2(m, plane, at, 8, bias, [Some(r0), Some(r1), Some(r2), Some(r3)]) };
        for (o, row) in out.iter_mut().zip(&rows) {
            if let Some(o) = o {
                super::f32s_mut(o).copy_from_slice(&row[..w]);
            }
        }
        return;
    }
    output_tiles4_scalar(m, plane, at, done..n.min(w.div_ceil(4)), bias, &mut out);
}

/// The scalar loop of [`output_tiles4`] for the tiles `tiles` (columns
/// past the rows' common length dropped).
fn output_tiles4_scalar<T: Element>(
    m: &[T],
    plane: usize,
    at: usize,
    tiles: std::ops::Range<usize>,
    bias: T,
    out: &mut [Option<&mut [T]>; 4],
) {
    let w = out.iter().flatten().map(|r| r.len()).max().unwrap_or(0);
    let c = [2.0, 4.0, 8.0].map(T::from_f64);
    for i in tiles {
        let t: [[T; 4]; 6] =
            std::array::from_fn(|k| out_1d(std::array::from_fn(|j| m[(6 * k + j) * plane + at + i]), c));
        for b in 0..4 {
            if 4 * i + b >= w {
                continue;
            }
            let y = out_1d(std::array::from_fn(|k| t[k][b]), c);
            for (o, ya) in out.iter_mut().zip(y) {
                if let Some(o) = o {
                    o[4 * i + b] = ya + bias;
                }
            }
        }
    }
}

/// [`output_tiles4`] for the first `n >= 8` tiles (all four columns of each
/// inside the rows), eight at a time; a last partial group is done as the
/// eight tiles ending at `n`, rewriting some pixels with the same values.
///
/// # Safety
/// AVX2 must be available; `n >= 8`; `m[e * plane + at .. + n]` must exist
/// for every `e < 36` and each given row must hold `4n` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_tiles4_avx2(m: &[f32], plane: usize, at: usize, n: usize, bias: f32, out: [Option<&mut [f32]>; 4]) {
    let c = [2.0, 4.0, 8.0].map(|v| F8(_mm256_set1_ps(v)));
    let bias = F8(_mm256_set1_ps(bias));
    let mut out = out;
    let mut i = 0;
    loop {
        // SAFETY: `i + 8 <= n`: the loads read m[e * plane + at + i ..][..8],
        // inside `m` (the caller's contract).
        let mm = |e: usize| F8(unsafe { _mm256_loadu_ps(m.as_ptr().add(e * plane + at + i)) });
        let t: [[F8; 4]; 6] = std::array::from_fn(|k| out_1d(std::array::from_fn(|j| mm(6 * k + j)), c));
        let y: [[F8; 4]; 4] = std::array::from_fn(|b| out_1d(std::array::from_fn(|k| t[k][b]), c));
        for (a, o) in out.iter_mut().enumerate() {
            let Some(o) = o else { continue };
            // y[b][a] holds column b of row a for the eight tiles; a 8 x 4
            // transpose gives each tile's four pixels, in 128-bit halves
            // paired as tiles (0, 4), (1, 5), (2, 6), (3, 7).
            let ya: [__m256; 4] = std::array::from_fn(|b| y[b][a].add(bias).0);
            let u0 = _mm256_castps_pd(_mm256_unpacklo_ps(ya[0], ya[1]));
            let u1 = _mm256_castps_pd(_mm256_unpackhi_ps(ya[0], ya[1]));
            let u2 = _mm256_castps_pd(_mm256_unpacklo_ps(ya[2], ya[3]));
            let u3 = _mm256_castps_pd(_mm256_unpackhi_ps(ya[2], ya[3]));
            let r0 = _mm256_castpd_ps(_mm256_unpacklo_pd(u0, u2));
            let r1 = _mm256_castpd_ps(_mm256_unpackhi_pd(u0, u2));
            let r2 = _mm256_castpd_ps(_mm256_unpacklo_pd(u1, u3));
            let r3 = _mm256_castpd_ps(_mm256_unpackhi_pd(u1, u3));
            // SAFETY: `4i + 32 <= 4n <= o.len()`.
            unsafe {
                let d = o.as_mut_ptr().add(4 * i);
                _mm256_storeu_ps(d, _mm256_permute2f128_ps::<0x20>(r0, r1));
                _mm256_storeu_ps(d.add(8), _mm256_permute2f128_ps::<0x20>(r2, r3));
                _mm256_storeu_ps(d.add(16), _mm256_permute2f128_ps::<0x31>(r0, r1));
                _mm256_storeu_ps(d.add(24), _mm256_permute2f128_ps::<0x31>(r2, r3));
            }
        }
        if i + 8 == n {
            return;
        }
        i = (i + 8).min(n - 8);
    }
}

/// `A y` for one column `y` of four values (`A` is `A^T` above, transposed):
/// with `p = y0 + y2`, `q = y1 + y3`, `r = y0 + 4 y2`, `s = 2 (y1 + 4 y3)`:
/// `(y0, p + q, p - q, r + s, r - s, y3)`.
#[inline(always)]
fn grad_1d<L: Lane>(y: [L; 4], two: L, four: L) -> [L; 6] {
    let (p, q) = (y[0].add(y[2]), y[1].add(y[3]));
    let r = y[0].add(y[2].mul(four));
    let s = y[1].add(y[3].mul(four)).mul(two);
    [y[0], p.add(q), p.sub(q), r.add(s), r.sub(s), y[3]]
}

/// `dM = A dY A^T` for `n` consecutive tiles of one tile row into
/// `dm[e][i0 .. i0 + n]`, from the four output-gradient rows `p[a]` the
/// tiles' rows lie on: tile `i` reads `p[a][4i .. 4i + 4]` (`p[a].len() >=
/// 4n`). Per tile, [`grad_1d`] along each row, then along each column
/// ([`tiles_to_six`]).
#[inline(always)]
pub(crate) fn output_grad_tiles4<T: Element>(p: [&[T]; 4], dm: &mut Rows4<T>, i0: usize, n: usize) {
    tiles_to_six::<T, 4, Grad>(p, dm, i0, n);
}

/// `dg = G^T du` for one column `du` of six values, with `k` the
/// [`G_CONSTS`]: `(du0 / 4 + (du1 + du2) (-1/6) + (du3 + du4) / 24,
/// (du1 - du2) (-1/6) + (du3 - du4) / 12,
/// (du1 + du2) (-1/6) + (du3 + du4) / 6 + du5)`.
#[inline(always)]
fn weight_grad_1d<T: Element>(u: [T; 6], k: [T; 5]) -> [T; 3] {
    let (p, q) = (u[1] + u[2], u[1] - u[2]);
    let (r, s) = (u[3] + u[4], u[3] - u[4]);
    [
        u[0] * k[0] + p * k[1] + r * k[2],
        q * k[1] + s * k[3],
        p * k[1] + r * k[4] + u[5],
    ]
}

/// `dg = G^T dU G` for one kernel (`du` at positions `6k + j`), as
/// `dg[3 ky + kx]`: [`weight_grad_1d`] along each row, then each column.
pub(crate) fn weight_grad_transform4<T: Element>(du: &[T; NE4]) -> [T; 9] {
    let k = G_CONSTS.map(T::from_f64);
    let h: [[T; 3]; 6] = std::array::from_fn(|r| weight_grad_1d(std::array::from_fn(|j| du[6 * r + j]), k));
    let mut g = [T::ZERO; 9];
    for b in 0..3 {
        for (a, val) in weight_grad_1d(std::array::from_fn(|r| h[r][b]), k)
            .into_iter()
            .enumerate()
        {
            g[3 * a + b] = val;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect()
    }

    /// A whole-run transform `f` of `n` tiles (eight per register on AVX2,
    /// with a last overlapping group) gives bitwise its scalar loop, run
    /// tile by tile; the tiles read `R` rows of `4n + extra` elements.
    fn lanes_are_the_scalar_ones<const R: usize>(
        n: usize,
        extra: usize,
        f: fn([&[f32]; R], &mut Rows4<f32>, usize, usize),
    ) {
        let rows: Vec<Vec<f32>> = (0..R).map(|r| data(4 * n + extra, 3 * r)).collect();
        let p: [&[f32]; R] = std::array::from_fn(|r| &rows[r][..]);
        let mut all = [[f32::NAN; SEG]; NE4];
        f(p, &mut all, 3, n);
        let mut one = [[f32::NAN; SEG]; NE4];
        for i in 0..n {
            // One tile at a time: the scalar loop.
            f(p.map(|r| &r[4 * i..]), &mut one, 3 + i, 1);
        }
        for e in 0..NE4 {
            for i in 3..3 + n {
                assert_eq!(all[e][i].to_bits(), one[e][i].to_bits(), "position {e}, tile {i}");
            }
        }
    }

    /// The input transform `V = B^T d B`: six rows of `4n + 2`.
    #[test]
    fn input_transform_lanes_are_the_scalar_ones() {
        lanes_are_the_scalar_ones::<6>(13, 2, input_tiles4::<f32>);
    }

    /// The output-gradient transform `dM = A dY A^T`: four rows of `4n`.
    #[test]
    fn output_grad_transform_lanes_are_the_scalar_ones() {
        lanes_are_the_scalar_ones::<4>(11, 0, output_grad_tiles4::<f32>);
    }

    /// The eight-tile AVX2 output transform (full runs with a last
    /// overlapping group, and a short run through its 32-pixel rows) writes
    /// bitwise the scalar loop's pixels, and only the rows' pixels.
    #[test]
    fn output_transform_lanes_are_the_scalar_ones() {
        let plane = 40;
        let m = data(NE4 * plane, 5);
        for (n, w) in [(11, 44), (11, 42), (3, 10), (1, 3)] {
            let mut fast = [[f32::NAN; 48]; 4];
            let mut slow = [[f32::NAN; 48]; 4];
            let [a, b, _, d] = &mut fast;
            output_tiles4(
                &m,
                plane,
                2,
                n,
                0.25,
                [Some(&mut a[..w]), Some(&mut b[..w]), None, Some(&mut d[..w])],
            );
            let [a, b, _, d] = &mut slow;
            let mut out = [Some(&mut a[..w]), Some(&mut b[..w]), None, Some(&mut d[..w])];
            output_tiles4_scalar(&m, plane, 2, 0..n, 0.25, &mut out);
            for a in 0..4 {
                for x in 0..48 {
                    assert_eq!(
                        fast[a][x].to_bits(),
                        slow[a][x].to_bits(),
                        "{n} tiles, width {w}: row {a}, pixel {x}"
                    );
                }
            }
            assert!(fast[0][..w].iter().all(|v| v.is_finite()) && fast[2].iter().all(|v| v.is_nan()));
        }
    }

    /// The weight transform eight kernels per register (and the scalar
    /// tail) gives bitwise [`weight_transform4`] of each kernel.
    #[test]
    fn weight_transform_lanes_are_the_scalar_ones() {
        let n = 21;
        let taps: Vec<Vec<f32>> = (0..9).map(|t| data(n, 11 * t)).collect();
        let g: [&[f32]; 9] = std::array::from_fn(|t| &taps[t][..]);
        let mut u = vec![vec![f32::NAN; n]; NE4];
        let mut out: Vec<&mut [f32]> = u.iter_mut().map(|p| &mut p[..]).collect();
        weight_tiles4(&g, &mut out, n);
        for l in 0..n {
            let want = weight_transform4(std::array::from_fn(|r| std::array::from_fn(|c| taps[3 * r + c][l])));
            for e in 0..NE4 {
                assert_eq!(u[e][l].to_bits(), want[e].to_bits(), "kernel {l}, position {e}");
            }
        }
    }
}
