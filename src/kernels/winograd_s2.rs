//! Winograd for 3x3 stride-2 forward passes, by polyphase decomposition
//! (f32, on ferroconv's own GEMM).
//!
//! With `xp` the zero-padded input, a stride-2 3x3 layer computes
//! `Y[oy][ox] = b + sum over ky, kx of W[ky][kx] * xp[2 oy + ky][2 ox + kx]`.
//! Split the taps by the parity of `(ky, kx)`: the even-even taps
//! `(2u, 2v)` read the even rows and even columns of `xp`, and so on, so the
//! layer is the sum of four stride-1 convolutions of the four phase planes
//! `P_ab[i][j] = xp[2 i + a][2 j + b]` with the kernels
//! `g00 = [[W00, W02], [W20, W22]]` (2x2), `g01 = [W01, W21]` (2x1),
//! `g10 = [W10, W12]` (1x2) and `g11 = W11` (1x1).
//!
//! The output is cut into 2x2 tiles; tile `(ty, tx)` reads the 5x5 patch
//! `D[r][c] = xp[4 ty + r][4 tx + c]`, whose even-even elements are the 3x3
//! patch `d00` of `P00` the tile needs, and so on (`d01` 3x2, `d10` 2x3,
//! `d11` 2x2). Each stride-1 piece runs as Winograd F(2, 2) along each axis
//! where its kernel has two taps:
//!
//! ```text
//! B^T = [1 -1  0]    G = [1 0]    A^T = [1 1 0]
//!       [0  1  0]        [1 1]          [0 1 1]
//!       [0 -1  1]        [0 1]
//! ```
//!
//! (`y0 = d0 g0 + d1 g1 = m0 + m1`, `y1 = d1 g0 + d2 g1 = m1 + m2` with
//! `m0 = (d0 - d1) g0`, `m1 = d1 (g0 + g1)`, `m2 = (d2 - d1) g1`). So per
//! tile and channel pair the products are `U00 ⊙ (B^T d00 B)` (9),
//! `U01 ⊙ (B^T d01)` (6: `U01 = G g01` is one value per row, shared by the
//! two columns), `U10 ⊙ (d10 B)` (6) and `U11 ⊙ d11` (4): 25 positions, 16
//! distinct transformed kernels. Summed over the input channels each
//! position is one GEMM `M_e[co][t] = sum over ci of U_e[co][ci] V_e[ci][t]`,
//! and the tile's outputs are
//! `Y = b + A^T M00 A + A^T M01 + M10 A + M11`.
//! 25 multiplications per tile and channel pair replace the direct 36
//! (1.44x fewer). Every transform adds and subtracts only (no scaling), so
//! the rounding beyond the GEMMs' is a few additions per element.
//!
//! Positions `e`: `0..9` are `U00 ⊙ V00` row-major (`V00 = B^T d00 B`),
//! `9 + 2 i + j` are `U01[i] V01[i][j]` (`V01 = B^T d01`), `15 + 3 i + j`
//! are `U10[j] V10[i][j]` (`V10 = d10 B`), `21 + 2 i + j` are `U11 d11[i][j]`.
//!
//! Layout and parallelism. The tiles of the whole batch (image-major, then
//! row-major) are cut into tasks of [`TASK_TILES`]; a task cuts its tiles
//! into runs along tile rows ([`Run`], a tile per SIMD lane), transforms
//! every input channel's patches of each run straight into the 25 GEMMs'
//! packed `B` panels ([`input_run`]), runs the 25 GEMMs (`c_out x c_in x
//! tiles`) against the kernels transformed and packed once per call, and
//! transforms the products back into `Y` ([`output_run`]). Each output
//! element's arithmetic depends on its tile alone, so results do not depend
//! on the thread count.
//!
//! Chosen by `Algorithm::Auto` only ([`selected`]), for f32 where AVX-512F
//! runs; `Algorithm::Gemm` rules it out. down_3x3s2 (8 x 128 x 56x56 ->
//! 128), 1 thread: 19.0-19.3 ms a call on the im2col path, 14.5-15.2 here.
//! The error bound is F(2x2, 3x3)'s (`tests/winograd_s2.rs`).

use rayon::prelude::*;

use super::lanes16;
use super::parallel::{SharedMut, parts_for, run_tasks};
use super::sgemm::{self, MR, NR};
use crate::element::Element;
use crate::geometry::{Algorithm, Conv2dGeometry};

/// Positions of one transformed tile: 9 + 6 + 6 + 4.
const NE: usize = 25;

/// Distinct transformed kernels: `U00` (9), `U01` (3), `U10` (3), `U11` (1).
const NU: usize = 16;

/// Elements between one position's scratch and the next past its own: the
/// 25 positions' rows of `V` and `M`, a power of two apart without it, share
/// one L1 set. down_3x3s2, 1 thread: 17.0 -> 15.0 ms a call.
const SKEW: usize = 16;

/// Tiles per transform vector (a run, [`Run`]) and per GEMM `B` panel.
const LANES: usize = NR;

/// The transformed kernel position `e` multiplies by: `U00`'s nine, then
/// `U01`'s row `i` for positions `9 + 2 i + j`, `U10`'s column `j` for
/// `15 + 3 i + j`, `U11` for the last four.
const fn u_index(e: usize) -> usize {
    if e < 9 {
        e
    } else if e < 15 {
        9 + (e - 9) / 2
    } else if e < 21 {
        12 + (e - 15) % 3
    } else {
        15
    }
}

/// Tiles of one task: two `B` panels, so the GEMMs run the 6 x 32 kernel.
/// 48, 64 and 96 measured within the noise of 32 on down_3x3s2 (14.6-16.5
/// against 14.8-15.1 ms, 1 thread); 32 keeps the scratch small (25 x (c_in
/// + c_out) x 32 values) and the tasks many.
const TASK_TILES: usize = 32;

/// Most runs of one task (each run holds at least one tile).
const MAX_RUNS: usize = TASK_TILES;

/// Fewest 2x2 output tiles per call (batch x tiles per image) for `Auto`:
/// the kernels' transform is a fixed cost per call and the GEMMs' width
/// per task. Per call against the im2col path, 1 thread: 98 tiles
/// (2 x 128 x 28x28 -> 128) 0.92, 196 tiles (4 x 128 x 28x28; 1 x 64 x 56x56
/// -> 128) 1.22-1.37, 392 (8 x 128 x 28x28 -> 256) 1.17-1.31.
pub(crate) const AUTO_MIN_TILES: usize = 192;

/// Fewest input and output channels for `Auto`: 8 x 16 x 56x56 -> 16
/// measured 1.06 against the im2col path, 32 channels 1.20.
pub(crate) const AUTO_MIN_CHANNELS: usize = 16;

/// Largest share `(num, den)` of the outputs the 2x2 tiles may cover: a 7x7
/// output (16 tiles, 64 outputs for 49) measured 0.92 at 128 tiles (8 x 256
/// x 14x14 -> 512), 1.00 at 256 and 1.08 at 512, against the im2col path.
pub(crate) const AUTO_MAX_WASTE: (usize, usize) = (9, 8);

/// Whether the forward pass of `geom` runs here with element type `T`:
/// f32 where AVX-512F runs (the transforms' permutes and lane masks), a 3x3
/// kernel with stride 2, dilation 1 and one group, under `Algorithm::Auto`,
/// with the tiles and channels the constants above ask for.
pub(crate) fn selected<T>(geom: &Conv2dGeometry) -> bool {
    let (th, tw) = (geom.oh().div_ceil(2), geom.ow().div_ceil(2));
    let (num, den) = AUTO_MAX_WASTE;
    super::isa::avx512_f32::<T>()
        && super::packed_path::<T>()
        && geom.algorithm() == Algorithm::Auto
        && (geom.kh(), geom.kw(), geom.stride(), geom.dilation(), geom.groups()) == (3, 3, (2, 2), (1, 1), 1)
        && geom.c_in().min(geom.c_out()) >= AUTO_MIN_CHANNELS
        && geom.n() * th * tw >= AUTO_MIN_TILES
        && 4 * th * tw * den <= num * geom.oh() * geom.ow()
}

/// How one forward call is cut: tasks of [`TASK_TILES`] tiles, counted over
/// the whole batch (image-major, then row-major).
pub(crate) struct Plan {
    /// Tiles per tile row and per image.
    tw: usize,
    tiles: usize,
    ntasks: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) packed_len: usize,
}

pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    let (th, tw) = (geom.oh().div_ceil(2), geom.ow().div_ceil(2));
    let tiles = th * tw;
    let ntasks = (geom.n() * tiles).div_ceil(TASK_TILES);
    let (cin, cout) = (geom.c_in(), geom.c_out());
    Plan {
        tw,
        tiles,
        ntasks,
        parts: parts_for(ntasks),
        // V (25 positions of c_in x 32 in B panels) and M (25 of c_out x
        // 32), each position SKEW past the last, plus alignment.
        scratch_len: NE * (cin * TASK_TILES + SKEW) + NE * (cout * TASK_TILES + SKEW) + NR,
        // The 16 transformed kernels in MR-row panels, plus alignment.
        packed_len: NU * sgemm::packed_a_len(cout, cin) + NR,
    }
}

/// The 16 transformed kernels of one `3x3` kernel `g` (row-major).
fn transform_kernel(g: &[f32]) -> [f32; NU] {
    let w = |r: usize, c: usize| g[r * 3 + c];
    let mut u = [0.0; NU];
    // U00 = G g00 G^T, g00 = [[w00, w02], [w20, w22]].
    let gg = [
        [w(0, 0), w(0, 2)],
        [w(0, 0) + w(2, 0), w(0, 2) + w(2, 2)],
        [w(2, 0), w(2, 2)],
    ];
    for (r, row) in gg.iter().enumerate() {
        u[3 * r] = row[0];
        u[3 * r + 1] = row[0] + row[1];
        u[3 * r + 2] = row[1];
    }
    // U01 = G [w01, w21]; U10 = G [w10, w12]; U11 = w11.
    u[9] = w(0, 1);
    u[10] = w(0, 1) + w(2, 1);
    u[11] = w(2, 1);
    u[12] = w(1, 0);
    u[13] = w(1, 0) + w(1, 2);
    u[14] = w(1, 2);
    u[15] = w(1, 1);
    u
}

/// A run of at most [`LANES`] tiles along one tile row of one image, the
/// unit the transforms vectorize over (a tile per lane).
#[derive(Clone, Copy, Default)]
struct Run {
    /// Image, tile row, first tile column, tiles.
    n: usize,
    ty: usize,
    tx0: usize,
    len: usize,
    /// The run's first tile, counted from the task's first.
    lane0: usize,
}

/// Transforms channel plane `xc` (of image `run.n`) for the run's tiles
/// into step `ci` of the 25 GEMMs' `B` panels at `v` (position `e`'s
/// panels at `v + e * estride`, panel `j` at `+ j * cin * NR`).
///
/// Patch row `r` of the run is the padded input row `4 ty + r`, columns
/// `4 tx0 + 0 .. 4 len + 1`: four 16-lane loads (masked to the image), whose
/// even and odd elements, and their even and odd elements again, are the
/// patch columns `c = 0..5` of the run's tiles (`4 l + c`): nine two-source
/// permutes a row.
///
/// # Safety
/// AVX-512F must be available; `xc` must be the `h x w` plane; the panels
/// must hold the task's tiles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn input_run(geom: &Conv2dGeometry, run: &Run, xc: &[f32], ci: usize, cin: usize, v: *mut f32, estride: usize) {
    use std::arch::x86_64::*;
    let (h, w) = (geom.h() as isize, geom.w() as isize);
    let (pt, _, pl, _) = geom.padding();
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let even1 = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 0);
    let ix0 = (4 * run.tx0) as isize - pl as isize;
    // Lanes of load k (columns ix0 + 16 k + lane) inside the image.
    let cols = |k: isize| lanes16(-(ix0 + 16 * k), w - ix0 - 16 * k);
    let m = [cols(0), cols(1), cols(2), cols(3)];
    let last = ix0 + 64;
    let mut d = [_mm512_setzero_ps(); 25];
    for r in 0..5 {
        let iy = (4 * run.ty + r) as isize - pt as isize;
        if iy < 0 || iy >= h {
            continue;
        }
        let p = xc.as_ptr().wrapping_offset(iy * w + ix0);
        // SAFETY: AVX-512F; the masks keep the lanes inside row iy of the
        // plane (masked-off lanes are not accessed).
        let rv: [__m512; 4] = std::array::from_fn(|k| unsafe { _mm512_maskz_loadu_ps(m[k], p.wrapping_add(16 * k)) });
        let (el, eh) = (
            _mm512_permutex2var_ps(rv[0], even, rv[1]),
            _mm512_permutex2var_ps(rv[2], even, rv[3]),
        );
        let (ol, oh) = (
            _mm512_permutex2var_ps(rv[0], odd, rv[1]),
            _mm512_permutex2var_ps(rv[2], odd, rv[3]),
        );
        d[5 * r] = _mm512_permutex2var_ps(el, even, eh);
        d[5 * r + 1] = _mm512_permutex2var_ps(ol, even, oh);
        d[5 * r + 2] = _mm512_permutex2var_ps(el, odd, eh);
        d[5 * r + 3] = _mm512_permutex2var_ps(ol, odd, oh);
        let mut c4 = _mm512_permutex2var_ps(el, even1, eh);
        if run.len == LANES {
            // Lane 15's column 4 is element 64 of the row (zero past it).
            let e64 = if (0..w).contains(&last) {
                // SAFETY: column ix0 + 64 lies in row iy (just checked).
                unsafe { *p.wrapping_add(64) }
            } else {
                0.0
            };
            c4 = _mm512_mask_mov_ps(c4, 1 << 15, _mm512_set1_ps(e64));
        }
        d[5 * r + 4] = c4;
    }
    let sub = |a, b| _mm512_sub_ps(a, b);
    let mut out = [_mm512_setzero_ps(); NE];
    // d00: B^T d00 B (rows then columns).
    let mut t = [[_mm512_setzero_ps(); 3]; 3];
    for j in 0..3 {
        let (a, b, c) = (d[2 * j], d[10 + 2 * j], d[20 + 2 * j]);
        t[0][j] = sub(a, b);
        t[1][j] = b;
        t[2][j] = sub(c, b);
    }
    for (i, row) in t.iter().enumerate() {
        out[3 * i] = sub(row[0], row[1]);
        out[3 * i + 1] = row[1];
        out[3 * i + 2] = sub(row[2], row[1]);
    }
    // d01: B^T d01; d10: d10 B; d11 as is.
    for j in 0..2 {
        let (a, b, c) = (d[2 * j + 1], d[10 + 2 * j + 1], d[20 + 2 * j + 1]);
        out[9 + j] = sub(a, b);
        out[11 + j] = b;
        out[13 + j] = sub(c, b);
    }
    for i in 0..2 {
        let row = 5 * (2 * i + 1);
        let (a, b, c) = (d[row], d[row + 2], d[row + 4]);
        out[15 + 3 * i] = sub(a, b);
        out[15 + 3 * i + 1] = b;
        out[15 + 3 * i + 2] = sub(c, b);
        out[21 + 2 * i] = d[row + 1];
        out[21 + 2 * i + 1] = d[row + 3];
    }
    // Lanes 0..len go to the task's tiles lane0..: lanes s.. of panel j,
    // the rest to the start of panel j + 1.
    let (j, s) = (run.lane0 / LANES, run.lane0 % LANES);
    let first = lanes16(0, (LANES - s).min(run.len) as isize);
    let second = lanes16((LANES - s) as isize, run.len as isize);
    let p0 = v.wrapping_add(j * cin * NR + ci * NR + s);
    let p1 = v.wrapping_add((j + 1) * cin * NR + ci * NR).wrapping_sub(LANES - s);
    for (e, o) in out.iter().enumerate() {
        // SAFETY: the caller's contract: lanes of `first` land in panel j's
        // step ci, those of `second` in panel j + 1's (which exists when
        // `second` has lanes); masked-off lanes are not accessed.
        unsafe {
            _mm512_mask_storeu_ps(p0.wrapping_add(e * estride), first, *o);
            if second != 0 {
                _mm512_mask_storeu_ps(p1.wrapping_add(e * estride), second, *o);
            }
        }
    }
}

/// Transforms output channel `co`'s products of the run's tiles (position
/// `e`'s at `m + e * estride`, the run's from lane `run.lane0`) into the
/// channel's output plane `yc`, plus `bias`: each output row's two output
/// vectors interleaved into 32 consecutive pixels.
///
/// # Safety
/// AVX-512F must be available; `m + e * estride + run.lane0 + 0..len`
/// readable; `yc` the `oh x ow` plane, whose run pixels no other thread
/// writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_run(geom: &Conv2dGeometry, run: &Run, m: *const f32, estride: usize, bias: f32, yc: *mut f32) {
    use std::arch::x86_64::*;
    let (oh, ow) = (geom.oh(), geom.ow());
    let lanes = lanes16(0, run.len as isize);
    // SAFETY: the caller's contract; masked-off lanes are not accessed.
    let p: [__m512; NE] =
        std::array::from_fn(|e| unsafe { _mm512_maskz_loadu_ps(lanes, m.wrapping_add(e * estride + run.lane0)) });
    let add = |a, b| _mm512_add_ps(a, b);
    let r0 = [add(p[0], p[3]), add(p[1], p[4]), add(p[2], p[5])];
    let r1 = [add(p[3], p[6]), add(p[4], p[7]), add(p[5], p[8])];
    let s0 = [add(p[9], p[11]), add(p[10], p[12])];
    let s1 = [add(p[11], p[13]), add(p[12], p[14])];
    let q0 = [add(p[15], p[16]), add(p[16], p[17])];
    let q1 = [add(p[18], p[19]), add(p[19], p[20])];
    let b = _mm512_set1_ps(bias);
    let ys = [
        add(add(add(add(add(r0[0], r0[1]), s0[0]), q0[0]), p[21]), b),
        add(add(add(add(add(r0[1], r0[2]), s0[1]), q0[1]), p[22]), b),
        add(add(add(add(add(r1[0], r1[1]), s1[0]), q1[0]), p[23]), b),
        add(add(add(add(add(r1[1], r1[2]), s1[1]), q1[1]), p[24]), b),
    ];
    let ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let ncols = (2 * run.len).min(ow - 2 * run.tx0);
    let (mlo, mhi) = (lanes16(0, ncols as isize), lanes16(0, ncols as isize - 16));
    for a in 0..2 {
        let oy = 2 * run.ty + a;
        if oy >= oh {
            break;
        }
        let row = yc.wrapping_add(oy * ow + 2 * run.tx0);
        // SAFETY: columns 2 tx0 .. 2 tx0 + ncols of row oy lie in the plane
        // (the masks); masked-off lanes are not accessed.
        unsafe {
            _mm512_mask_storeu_ps(row, mlo, _mm512_permutex2var_ps(ys[2 * a], ilo, ys[2 * a + 1]));
            if mhi != 0 {
                _mm512_mask_storeu_ps(
                    row.wrapping_add(16),
                    mhi,
                    _mm512_permutex2var_ps(ys[2 * a], ihi, ys[2 * a + 1]),
                );
            }
        }
    }
}

/// [`input_run`] off x86-64: never called ([`selected`] needs AVX-512F).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn input_run(_: &Conv2dGeometry, _: &Run, _: &[f32], _: usize, _: usize, _: *mut f32, _: usize) {
    unreachable!("the stride-2 Winograd forward runs only where AVX-512F does")
}

/// [`output_run`] off x86-64: never called ([`selected`] needs AVX-512F).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn output_run(_: &Conv2dGeometry, _: &Run, _: *const f32, _: usize, _: f32, _: *mut f32) {
    unreachable!("the stride-2 Winograd forward runs only where AVX-512F does")
}

/// `y = conv(x, w) + bias` for a layer [`selected`] chose; lengths already
/// checked against `geom`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Element>(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    packed: &mut [T],
    scratch: &mut [T],
) {
    let (cin, cout) = (geom.c_in(), geom.c_out());
    let (hw, ohw) = (geom.h() * geom.w(), geom.oh() * geom.ow());
    // The transformed kernels in MR-row panels, the 16 kernels of one panel
    // together: panel ip of kernel k at u[(ip * NU + k) * MR * cin ..], so
    // each panel's transform is one contiguous piece (transformed in
    // parallel) and each kernel's panels are NU * MR * cin apart.
    let a_len = sgemm::packed_a_len(cout, cin);
    let pl = MR * cin;
    let packed = super::f32s_mut(packed);
    let off = sgemm::align_offset(packed);
    let u = &mut packed[off..off + NU * a_len];
    let wf = super::f32s(w);
    u.par_chunks_mut(NU * pl).enumerate().for_each(|(ip, up)| {
        for r in 0..MR {
            let co = ip * MR + r;
            for ci in 0..cin {
                let t = if co < cout {
                    transform_kernel(&wf[(co * cin + ci) * 9..(co * cin + ci + 1) * 9])
                } else {
                    [0.0; NU]
                };
                for (k, &val) in t.iter().enumerate() {
                    up[k * pl + ci * MR + r] = val;
                }
            }
        }
    });
    let u = &*u;
    let (x, y) = (super::f32s(x), super::f32s_mut(y));
    let bias = bias.map(super::f32s);
    let scratch = super::f32s_mut(scratch);
    let out = SharedMut(y.as_mut_ptr());
    let total = geom.n() * p.tiles;
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let (t0, t1) = (task * TASK_TILES, ((task + 1) * TASK_TILES).min(total));
        let al = sgemm::align_offset(slot);
        // Position e's B panels (c_in x 32) at v[e * vs..], its products
        // (c_out x 32, row-major) at m[e * ms..].
        let (vs, ms) = (cin * TASK_TILES + SKEW, cout * TASK_TILES + SKEW);
        let (v, m) = slot[al..].split_at_mut(NE * vs);
        // The task's runs: its tiles cut at tile-row ends and every 16.
        let mut runs = [Run::default(); MAX_RUNS];
        let mut nruns = 0;
        let mut t = t0;
        while t < t1 {
            let (n, r) = (t / p.tiles, t % p.tiles);
            let (ty, tx0) = (r / p.tw, r % p.tw);
            let len = (p.tw - tx0).min(t1 - t).min(LANES);
            runs[nruns] = Run {
                n,
                ty,
                tx0,
                len,
                lane0: t - t0,
            };
            nruns += 1;
            t += len;
        }
        let runs = &runs[..nruns];
        // The input rows each run reads, as a range of its image's plane.
        let (h, w, pt) = (geom.h(), geom.w(), geom.padding().0);
        let rows_of = |run: &Run| {
            let lo = (4 * run.ty).saturating_sub(pt).min(h);
            let hi = (4 * run.ty + 5).saturating_sub(pt).min(h);
            (lo * w, hi * w)
        };
        for ci in 0..cin {
            for run in runs {
                if ci + 1 < cin {
                    // The next channel's rows: planes hw apart are streams
                    // the hardware prefetcher does not follow.
                    let (a, b) = rows_of(run);
                    let next = (run.n * cin + ci + 1) * hw;
                    super::prefetch(&x[next + a..next + b]);
                }
                let xc = &x[(run.n * cin + ci) * hw..(run.n * cin + ci + 1) * hw];
                // SAFETY: AVX-512F (`selected`); `v` holds the task's panels
                // for every position, `vs` apart.
                unsafe { input_run(geom, run, xc, ci, cin, v.as_mut_ptr(), vs) };
            }
        }
        for e in 0..NE {
            // SAFETY: the packed kernel is available (`selected`); A is the
            // transformed kernel's MR-row panels (cout x cin); B holds the
            // task's panels of `cin` steps; C is the task's cout x 32 block
            // of M for position e.
            unsafe {
                sgemm::gemm(
                    cout,
                    t1 - t0,
                    cin,
                    u[u_index(e) * pl..].as_ptr(),
                    NU * pl,
                    v[e * vs..].as_ptr(),
                    NR * cin,
                    m[e * ms..].as_mut_ptr(),
                    TASK_TILES,
                    sgemm::Start::Zero,
                );
            }
        }
        for co in 0..cout {
            let b = bias.map_or(0.0, |b| b[co]);
            for run in runs {
                // SAFETY: AVX-512F; row co of each position's M block; this
                // task alone writes its tiles' outputs, inside channel co's
                // plane of image run.n.
                unsafe {
                    output_run(
                        geom,
                        run,
                        m[co * TASK_TILES..].as_ptr(),
                        ms,
                        b,
                        out.get().add((run.n * cout + co) * ohw),
                    )
                };
            }
        }
    });
}
