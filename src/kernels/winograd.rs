//! Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (any dilation, see
//! [`Grid`]): forward, input gradient and weight gradient, f32 and f64.
//!
//! The output is cut into 2x2 tiles; tile `t = (n, ty, tx)` covers output
//! pixels `(2ty + a, 2tx + b)`, `a, b in 0..2`, and reads the 4x4 input patch
//! `d[r][c] = X[n][ci][2ty + r - pad_top][2tx + c - pad_left]` (zero outside
//! the image). With (Lavin and Gray, 2016)
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```
//!
//! the forward pass is, per tile and output channel,
//! `Y_t[co] = A^T [ sum over ci of U[co][ci] ⊙ V_t[ci] ] A + b[co]`, with the
//! transformed weights `U[co][ci] = G g[co][ci] G^T` and the transformed input
//! `V_t[ci] = B^T d_t[ci] B` (4x4 each, `⊙` elementwise). For each of the 16
//! positions `e = 4i + j` of the 4x4 the channel sum is one GEMM,
//! `M_e[co][t] = sum over ci of U_e[co][ci] * V_e[ci][t]`: 16 GEMMs with
//! `c_out x c_in x tiles` multiply-adds replace the direct `9 * 4 = 36` per
//! tile (2.25x fewer). The transforms add and subtract, and scale by 1/2
//! (exact), so all the rounding beyond the GEMMs' is a few additions per
//! element (`docs/design.md` states the measured error).
//!
//! The input gradient of a stride-1 layer is the forward convolution of `dY`
//! with the flipped, transposed kernel ([`super::implicit::input_grad_geometry`]),
//! so it runs the same forward with `U` built from `W[co][ci][2 - ky][2 - kx]`.
//!
//! The weight gradient differentiates the same formula: with
//! `dM_t[co] = A dY_t[co] A^T` (4x4 from the tile's 2x2 of `dY`, zero past the
//! output), `dU[co][ci] = sum over tiles t of dM_t[co] ⊙ V_t[ci]` (again one
//! GEMM per position, tiles as the reduction) and `dW[co][ci] = G^T dU[co][ci] G`.
//!
//! F(4x4, 3x3) ([`Tile::F4`], `Algorithm::Winograd4x4`; transforms in
//! [`super::winograd4`]) runs the same passes with 4x4 output tiles read
//! from 6x6 patches: 36 GEMMs of `c_out x c_in x tiles`, each tile now
//! covering 16 outputs (4x fewer multiplications than direct); the weight
//! gradient with `dM = A dY A^T` (6x6 from the tile's 4x4 of `dY`) and
//! `dW = G^T dU G`.
//!
//! Layout and parallelism. The forward cuts the tiles of the whole batch
//! (image-major, then row-major) into tasks of [`LANES`]-multiples; a task
//! transforms its tiles for every input channel in blocks of up to [`SEG`]
//! tiles (row by row along the tile rows, a tile per SIMD lane, see
//! [`input_rows`]) written straight into the GEMM's `B` panels, runs the 16
//! GEMMs against the weights transformed and packed once per call, and
//! transforms the 16 products back into `Y`. Each output element's
//! arithmetic depends on its tile alone, so tasks may follow the thread
//! count. The weight gradient walks the tiles in fixed chunks
//! ([`WGRAD_CHUNK_BYTES`], [`wgrad_min_chunk`], from the geometry alone): the
//! transforms of a chunk run in parallel over pieces of [`PIECE`] tiles, then
//! the 16 GEMMs in parallel
//! (one position each) accumulate the chunk onto `dU`; chunks are added in
//! order, so the result is bitwise the same for any thread count.

use std::ops::Range;

use rayon::prelude::*;

use super::isa::avx2_f32;
use super::parallel::{SharedMut, TASKS_PER_THREAD, panel_block, parts_for, run_tasks};
use super::sgemm::{self, MR, NR};
use super::winograd_simd::{
    even_elements, input_tiles, output_grad_tiles, output_tiles, store_channels, store_strided,
};
#[cfg(target_arch = "x86_64")]
use super::winograd_simd::{weight_grad_out8_avx2, weight_panel_avx2};
use super::winograd4::{
    NE4, Rows4, input_tiles4, output_grad_tiles4, output_tiles4, weight_grad_transform4, weight_tiles4,
    weight_transform4,
};
use super::{f32s, f32s_mut};
use crate::element::Element;
use crate::geometry::{Algorithm, Conv2dGeometry};

/// Positions of one transformed tile (4 x 4).
pub(crate) const NE: usize = 16;

/// The output tile of a Winograd pass: F(2x2, 3x3), or F(4x4, 3x3)
/// ([`super::winograd4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tile {
    /// 2x2 outputs from 4x4 inputs, 16 positions.
    F2,
    /// 4x4 outputs from 6x6 inputs, 36 positions.
    F4,
}

impl Tile {
    /// Output pixels per tile side.
    pub(crate) const fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Positions of a transformed tile, `(m + 2)^2`.
    pub(crate) const fn ne(self) -> usize {
        (self.m() + 2) * (self.m() + 2)
    }
}

/// Tiles transformed together, one per SIMD lane: one GEMM `B` panel.
pub(crate) const LANES: usize = NR;

/// Fewest tiles of one forward task where there are tiles enough for every
/// thread ([`TASKS_PER_THREAD`] tasks each), whatever [`TASK_BYTES`] says:
/// each task's GEMMs are then at least two 16-column panels wide (the 6 x 32
/// AVX-512F kernel, twelve accumulators, instead of the 6 x 16 kernel's
/// six), and every task reads all of `U` (36 x 256 x 256 values on
/// resnet_3x3_14) half as often. Blocks of 32 tiles against 16, per call
/// (medians of 20-30 alternating pairs), 1 / 2 threads: resnet_3x3_14
/// forward x1.09 / x1.19, input gradient x1.17 / x1.15; resnet_3x3_56
/// x1.20 / x1.16 and x1.16 / x1.13; dilated_3x3d2 x1.09 / x1.12 and x1.10 /
/// x1.14; cifar_3x3 1.00; forced AVX2 at 1
/// thread, resnet_3x3_14 x1.03 / x1.02, resnet_3x3_56 x1.04 / x1.08. Blocks
/// of 48 or 64 against 32: 0.97-1.01 on the same rows.
const MIN_BLOCK_TILES: usize = 2 * LANES;

/// Target bytes of one forward task's transformed input and products
/// (`16 * (c_in + c_out) * tiles` elements), above [`MIN_BLOCK_TILES`].
pub(crate) const TASK_BYTES: usize = 512 * 1024;

/// Elements (one cache line of f32) added to the stride between the
/// positions' planes of a task's transformed operands (`V_e`, `M_e`, and the
/// weight gradient's chunk planes). Their natural strides are often
/// multiples of 4 KiB (64 channels x 16 tiles of f32 is exactly 4 KiB), and
/// then all 16 or 36 planes map to the same L1 sets: the transforms, which
/// touch every position of a tile at once, kept missing L1. With the pad,
/// medians of 7 alternating runs, 1 thread, GFLOP/s: resnet_3x3_56
/// forward 106.6 -> 117.8, input gradient 104.0 -> 116.0; dilated_3x3d2
/// forward 72.5 -> 76.2; resnet_3x3_14 forward 86.5 -> 89.3; cifar_3x3
/// (6 KiB planes) 47.9 -> 49.0 and infer_b1_3x3 56.4 -> 56.3, unchanged.
/// Weight gradients (chunk planes), medians of 7 against the build before:
/// resnet_3x3_56 88.0 -> 90.2, resnet_3x3_14 65.3 -> 68.2, dilated_3x3d2
/// 58.1 -> 56.8 (within noise).
const PLANE_PAD: usize = 16;

/// Target bytes of one weight-gradient chunk's transformed input and output
/// gradient (`16 * (c_in + c_out) * tiles` elements) per thread (on the
/// packed kernel; one thread's worth on matrixmultiply), written by the
/// transforms and read back by the GEMMs: 1 MiB stays in L2 and L3's
/// nearest slices. resnet_3x3_56 (64 channels) measured 55-57 GFLOP/s with
/// 1 MiB chunks (128 tiles), 53 with 2 MiB and 37-39 with 8 MiB (1 thread,
/// alternating runs). Chunks of one thread's size held 16 threads of the
/// lent Xeon to 3.2x one thread on resnet_3x3_56 (343 GFLOP/s); with the
/// chunk grown per thread, 963-1114 GFLOP/s. The chunk's tiles are also the reduction length of its
/// 16 GEMMs, which reload `dU` (`16 * c_out * c_in`) once per chunk, so a
/// chunk has at least [`wgrad_min_chunk`] tiles.
pub(crate) const WGRAD_CHUNK_BYTES: usize = 1 << 20;

/// Largest call (all its transformed tiles, `16` or `36 * (c_in + c_out)`
/// elements each) that runs as one chunk when more than one thread runs the
/// packed kernel: each chunk costs two fork-joins of the threads, which on
/// a small layer outweigh the caches. cifar_3x3's weight gradient (F(4x4),
/// 512 tiles, 4.7 MB) at 2 threads, one chunk against three: x1.08-1.11
/// per call (medians of 300 alternating pairs, three runs; best of 300
/// calls in alternating processes 221 against 199 GFLOP/s). At 1 thread (no
/// fork-joins) one chunk read 111 against 113, so it keeps
/// [`WGRAD_CHUNK_BYTES`]; on the suite's bigger Winograd rows chunks of
/// 4 MiB per thread measured either way within the noise, so they keep it.
/// The chunks change no bit on the packed kernel (see [`wgrad_plan`]).
pub(crate) const WGRAD_ONE_CHUNK_BYTES: usize = 8 << 20;

/// Fewest tiles of a weight-gradient chunk: `2 c_out c_in / (c_in + c_out)`,
/// so that reloading `dU` costs at most half the chunk's own transformed
/// data. resnet_3x3_14 (256 channels): 256-tile chunks (8 MiB) measured
/// 83-89 GFLOP/s, 128 tiles 66-79, 64 tiles 47-52, 32 tiles 34-35.
fn wgrad_min_chunk(cin: usize, cout: usize) -> usize {
    2 * cout * cin / (cin + cout)
}

/// Fewest input and output channels for which [`Algorithm::Auto`] runs the
/// forward pass and the input gradient by Winograd. Medians of 3 alternating
/// runs, 1 thread, GFLOP/s counted as direct FLOPs, GEMM paths against
/// Winograd: resnet_3x3_56 (64 channels) forward 52.8 / 72.7, input gradient
/// 53.9 / 72.9; resnet_3x3_14 (256) 67.8 / 120.4 and 73.2 / 117.1;
/// cifar_3x3 (32) 41.2 / 34.2 and 45.9 / 38.8 (the transforms, not the
/// GEMMs, dominate at 32 channels).
pub(crate) const AUTO_MIN_CHANNELS: usize = 64;

/// Fewest tiles (`n * ceil(oh/2) * ceil(ow/2)`) for which `Auto` picks
/// Winograd. Batch-1 14x14 (49 tiles, infer_b1_3x3) first measured forward
/// 43.0 against 46.0 GFLOP/s on the GEMM path, input gradient 41.5 against
/// 33.7: its per-call weight transform (16 x 256 x 256) was then as long as
/// the GEMMs, and its 7-tile runs took the scalar transforms. With the
/// transform eight kernels per register and short runs on the AVX2
/// transforms, medians of 7-9 alternating runs (GFLOP/s, Winograd against
/// GEMM): 1 thread forward 67.1 / 60.4, input gradient 51.9 / 44.0; 2 threads
/// 109.9 / 83.2 and 116.4 / 83.0. No suite row has fewer tiles; below 48 the
/// crossover is not measured.
pub(crate) const AUTO_MIN_TILES: usize = 48;

/// Fewest input and output channels for which `Auto` runs all three passes
/// by F(4x4, 3x3) ([`Tile::F4`]), where [`AUTO_MIN_TILES_F4`] and
/// [`AUTO_MAX_WASTE_F4`] allow it. 1 thread, medians of 5 alternating runs,
/// GFLOP/s, F(2x2, 3x3) / F(4x4, 3x3) / GEMM paths: cifar_3x3 (32 channels)
/// forward 38.0 / 66.0 / 50.4, input gradient 30.9 / 49.3 / 47.1, weight
/// gradient 41.7 / 45.9 / 41.7 (2 threads: forward 71.6 / 96.2 / 89.7,
/// weight gradient 86.1 against Auto's GEMM 75.1); resnet_3x3_56 (64)
/// 75.6 / 112.7 / 64.7, 69.1 / 109.1 / 57.0 and 73.7 / 100.7 / 58.3 (2
/// threads: forward 126.9 / 186.4 / 105.4, weight gradient 110.0 / 152.0);
/// dilated_3x3d2 (64, dilation 2) 55.5 / 76.5 / 55.0, 49.4 / 68.7 / 57.7
/// and 55.4 / 66.5 / 66.4 (2 threads: forward 123.1 / 164.1 / 105.7,
/// weight gradient 108.0 against Auto's GEMM 105.0). No suite row has fewer
/// channels.
pub(crate) const AUTO_MIN_CHANNELS_F4: usize = 32;

/// Fewest 4x4 tiles (`n * dh * dw * ceil(oh / dh / 4) * ceil(ow / dw / 4)`)
/// for which `Auto` picks F(4x4, 3x3). infer_b1_3x3 (one 14x14 image, 16
/// tiles, 256 channels) measured F(2x2, 3x3) 56.7 against 51.9 GFLOP/s
/// (forward, 1 thread, medians of 5): the per-call weight transform
/// (36 x 256 x 256 values) is not repaid by 16 tiles. The next suite row
/// with F(4x4) tiles has 512 (cifar_3x3); the crossover between is not
/// measured.
pub(crate) const AUTO_MIN_TILES_F4: usize = 64;

/// Most outputs (in eighths) that `Auto` lets F(4x4, 3x3)'s tiles cover
/// beyond those F(2x2, 3x3)'s cover: an output side of 14 takes four 4x4
/// tiles (16 outputs, 1.31x the area) against seven 2x2 tiles (exact).
/// resnet_3x3_14 (256 channels, 14x14) measured F(2x2, 3x3) against
/// F(4x4, 3x3) (1 thread, medians of 7): forward 97.7 / 94.0, input gradient
/// 95.0 / 78.2 (weight gradient 69.1 / 59.5, medians of 5); 2 threads
/// 180.7 / 212.6 and 187.9 / 202.7: a wash at 1.31x,
/// so the limit is 9/8 (every suite row but the 14x14 ones covers the same
/// outputs either way).
pub(crate) const AUTO_MAX_WASTE_F4: usize = 9;

/// [`AUTO_MAX_WASTE_F4`] for the forward pass and input gradient where the
/// AVX-512F micro-kernels run: there F(4x4, 3x3) wins resnet_3x3_14's 1.31x
/// anyway. On a Xeon with two 512-bit FMA units (1 thread, medians of 5
/// alternating per-run bests, GFLOP/s, F(2x2) / F(4x4)): forward 179.0 /
/// 201.4, input gradient 168.6 / 183.3; 2 threads 310.8 / 338.7 and 291.6 /
/// 324.2. Its weight gradient stays on F(2x2, 3x3) there: 189.4 / 146.1
/// (2 threads 353.2 / 290.3). So `Auto` may pick a different tile for the
/// same layer on AVX2 and on AVX-512F, and their results then differ in the
/// last bits.
pub(crate) const AUTO_MAX_WASTE_F4_AVX512: usize = 11;

/// [`AUTO_MIN_CHANNELS_F4`] for the forward pass and input gradient where
/// the AVX-512F micro-kernels run and the implicit forward takes the layer
/// (`implicit::eligible`; for the input gradient, its flipped geometry):
/// there the implicit forward with the pixels in the lanes
/// (`implicit_avx512`) beats F(4x4, 3x3) at 32 channels. cifar_3x3, implicit
/// against F(4x4) (medians of per-run ratios of alternating per-run bests):
/// forward x1.155 (5 runs) and input gradient x1.13 at 1 thread, x1.16 and
/// x1.10 at 2 (7 runs); resnet_3x3_56 (64 channels) 0.57 and dilated_3x3d2
/// (64) 0.83 the other way. Between 32 and 64 no suite row measures the
/// crossover. Not on a CPU that runs AVX-512F in 256-bit halves
/// ([`super::isa::avx512_halves`], Zen 4), where F(4x4, 3x3) wins cifar_3x3
/// at 32 channels (session 22, per call, medians of 150 alternating pairs:
/// forward x1.26 / x1.17 at 1 / 2 threads, input gradient x1.41 / x1.07),
/// so [`AUTO_MIN_CHANNELS_F4`] holds there.
pub(crate) const AUTO_MIN_CHANNELS_F4_AVX512_IMPLICIT: usize = 64;

/// [`AUTO_MIN_CHANNELS_F4`] for the weight gradient where the AVX-512F
/// micro-kernels run: there the GEMM path wins cifar_3x3's (32 channels)
/// weight gradient, GEMM against F(4x4, 3x3) (medians of 3 alternating
/// per-run bests, GFLOP/s): 104.3 / 85.2 at 1 thread, 141.5 / 86.9 at 2
/// (forced AVX2 the other way: 60.3 / 73.9). From 64 channels F(4x4) still
/// wins (resnet_3x3_56 123.4 / 159.9; dilated_3x3d2 123.0 / 128.5). Not
/// where AVX-512F runs in 256-bit halves ([`super::isa::avx512_halves`],
/// Zen 4): there F(4x4) wins cifar_3x3's weight gradient x1.18 / x1.15 at 1
/// / 2 threads (session 22, per call, medians of 150 alternating pairs), so
/// [`AUTO_MIN_CHANNELS_F4`] holds.
pub(crate) const AUTO_MIN_CHANNELS_F4_WEIGHT_GRAD_AVX512: usize = 64;

/// Fewest input and output channels for which `Auto` runs the weight
/// gradient of an undilated layer by Winograd. Since the chunk transforms
/// are stored through 8 x 8 transposes ([`store_channels`]), GEMM paths
/// against Winograd (1 thread, medians of 4-5 alternating runs, GFLOP/s):
/// resnet_3x3_56 (64 channels) 53.8 against 69.9 (56.4 before the
/// transposes), cifar_3x3 (32) 42.0 against 44.0, a wash that stays on
/// GEMM; resnet_3x3_14 (256) 49.8 against 63.1 before them.
pub(crate) const AUTO_MIN_CHANNELS_WEIGHT_GRAD: usize = 64;

/// As [`AUTO_MIN_CHANNELS_WEIGHT_GRAD`] for dilated layers, whose rows are
/// first gathered on their phase: dilated_3x3d2 (64 channels) measured 59.1
/// against 55.2 GFLOP/s (GEMM paths against Winograd, medians of 5
/// alternating runs) with the transposed stores and the gathered rows, 52.7
/// against 38.9 before them. Between 64 and 256 no suite row measures the
/// crossover.
pub(crate) const AUTO_MIN_CHANNELS_WEIGHT_GRAD_DILATED: usize = 128;

/// Fewest tiles for which `Auto` runs the weight gradient by Winograd: its
/// tiles are the GEMMs' reduction, and batch-1 14x14 (49 tiles) measured
/// 36.4 against 48.1 GFLOP/s on the GEMM path at 1 thread, 63.4 against
/// 91.0 at 2 (medians of 5-7 alternating runs). Those were the AVX2 paths
/// of session 3; see [`AUTO_MIN_TILES_WEIGHT_GRAD_HALVES`] for Zen 4 with
/// AVX-512F.
pub(crate) const AUTO_MIN_TILES_WEIGHT_GRAD: usize = 64;

/// [`AUTO_MIN_TILES_WEIGHT_GRAD`] where AVX-512F runs in 256-bit halves
/// ([`super::isa::avx512_halves`], Zen 4): there infer_b1_3x3's 49 tiles
/// run F(2x2, 3x3) x1.29 / x1.18 faster than the GEMM path at 1 / 2 threads
/// (session 22, per call, medians of 60 alternating pairs). No suite row
/// measures fewer tiles; 48 keeps that row's side of the crossover.
pub(crate) const AUTO_MIN_TILES_WEIGHT_GRAD_HALVES: usize = 48;

/// Whether `geom` can run Winograd at all for `T` under its algorithm
/// preference, and if `Auto`, whether it has the channels `min_c` and tiles
/// `min_tiles` ask for.
fn chosen<T>(geom: &Conv2dGeometry, min_c: usize, min_tiles: usize) -> bool {
    match geom.algorithm() {
        Algorithm::Gemm => false,
        // `Conv2dGeometry::new` rejects a geometry Winograd cannot run.
        Algorithm::Winograd | Algorithm::Winograd4x4 => geom.winograd_unsupported().is_none(),
        Algorithm::Auto => {
            let tiles = geom.n() * geom.oh().div_ceil(2) * geom.ow().div_ceil(2);
            super::packed_path::<T>()
                && geom.winograd_unsupported().is_none()
                && geom.c_in().min(geom.c_out()) >= min_c
                && tiles >= min_tiles
        }
    }
}

/// The tile the forward pass of `geom` (and its input gradient) runs
/// Winograd with for element type `T`, if it does. Under `Auto`:
/// F(4x4, 3x3) from [`AUTO_MIN_CHANNELS_F4`] channels (on AVX-512F
/// [`AUTO_MIN_CHANNELS_F4_AVX512_IMPLICIT`] where the implicit forward takes
/// the layer) and
/// [`AUTO_MIN_TILES_F4`] tiles where its tiles cover at most
/// [`AUTO_MAX_WASTE_F4`] / 8 of F(2x2, 3x3)'s outputs, else F(2x2, 3x3) where
/// [`AUTO_MIN_CHANNELS`] and [`AUTO_MIN_TILES`] allow it.
pub(crate) fn selected<T>(geom: &Conv2dGeometry) -> Option<Tile> {
    match geom.algorithm() {
        Algorithm::Winograd4x4 => chosen::<T>(geom, 0, 0).then_some(Tile::F4),
        Algorithm::Auto if auto_f4::<T>(geom, min_channels_f4_forward::<T>(geom), max_waste_forward()) => {
            Some(Tile::F4)
        }
        _ => chosen::<T>(geom, AUTO_MIN_CHANNELS, AUTO_MIN_TILES).then_some(Tile::F2),
    }
}

/// The channel limit of F(4x4, 3x3) on the forward pass and input gradient:
/// [`AUTO_MIN_CHANNELS_F4_AVX512_IMPLICIT`] where the AVX-512F micro-kernels
/// run at full width (not [`super::isa::avx512_halves`]) and the implicit
/// forward would take both passes, else [`AUTO_MIN_CHANNELS_F4`].
fn min_channels_f4_forward<T>(geom: &Conv2dGeometry) -> usize {
    let implicit_both = || {
        super::implicit::eligible::<T>(geom)
            && super::implicit::input_grad_geometry(geom).is_some_and(|g| super::implicit::eligible::<T>(&g))
    };
    if super::isa::isa() == super::isa::Isa::Avx512 && !super::isa::avx512_halves() && implicit_both() {
        AUTO_MIN_CHANNELS_F4_AVX512_IMPLICIT
    } else {
        AUTO_MIN_CHANNELS_F4
    }
}

/// The waste limit (eighths) of the forward pass and input gradient:
/// [`AUTO_MAX_WASTE_F4_AVX512`] where the AVX-512F micro-kernels run, else
/// [`AUTO_MAX_WASTE_F4`].
fn max_waste_forward() -> usize {
    if super::isa::isa() == super::isa::Isa::Avx512 {
        AUTO_MAX_WASTE_F4_AVX512
    } else {
        AUTO_MAX_WASTE_F4
    }
}

/// Whether `Auto` runs `geom` by F(4x4, 3x3): `min_c` input and output
/// channels, [`AUTO_MIN_TILES_F4`], and F(4x4)'s tiles covering at most
/// `max_waste` eighths of the outputs F(2x2)'s cover.
fn auto_f4<T>(geom: &Conv2dGeometry, min_c: usize, max_waste: usize) -> bool {
    if geom.algorithm() != Algorithm::Auto || !chosen::<T>(geom, min_c, 0) {
        return false;
    }
    let (dh, dw) = geom.dilation();
    let (ph, pw) = (geom.oh().div_ceil(dh), geom.ow().div_ceil(dw));
    let cover = |m: usize| ph.div_ceil(m) * m * pw.div_ceil(m) * m;
    let tiles4 = geom.n() * dh * dw * ph.div_ceil(4) * pw.div_ceil(4);
    tiles4 >= AUTO_MIN_TILES_F4 && 8 * cover(4) <= max_waste * cover(2)
}

/// The tile the weight gradient of `geom` runs Winograd with for element
/// type `T`, if it does.
pub(crate) fn selected_weight_grad<T>(geom: &Conv2dGeometry) -> Option<Tile> {
    if geom.algorithm() == Algorithm::Winograd4x4 {
        return chosen::<T>(geom, 0, 0).then_some(Tile::F4);
    }
    let halves = super::isa::avx512_halves();
    let min_c4 = if super::isa::isa() == super::isa::Isa::Avx512 && !halves {
        AUTO_MIN_CHANNELS_F4_WEIGHT_GRAD_AVX512
    } else {
        AUTO_MIN_CHANNELS_F4
    };
    if auto_f4::<T>(geom, min_c4, AUTO_MAX_WASTE_F4) {
        return Some(Tile::F4);
    }
    let min_c = if geom.dilation() == (1, 1) {
        AUTO_MIN_CHANNELS_WEIGHT_GRAD
    } else {
        AUTO_MIN_CHANNELS_WEIGHT_GRAD_DILATED
    };
    let min_tiles = if halves {
        AUTO_MIN_TILES_WEIGHT_GRAD_HALVES
    } else {
        AUTO_MIN_TILES_WEIGHT_GRAD
    };
    chosen::<T>(geom, min_c, min_tiles).then_some(Tile::F2)
}

/// The forward geometry whose Winograd forward is `geom`'s input gradient,
/// where Winograd is [`selected`] for `geom`.
pub(crate) fn input_grad_geometry<T>(geom: &Conv2dGeometry) -> Option<(Conv2dGeometry, Tile)> {
    let tile = selected::<T>(geom)?;
    super::implicit::input_grad_geometry(geom).map(|g| (g, tile))
}

/// How one forward call is cut into tasks.
pub(crate) struct Plan {
    tile: Tile,
    grid: Grid,
    ntiles: usize,
    /// Tiles per task (a multiple of [`LANES`]).
    block: usize,
    /// Blocks of output channels each tile block is cut into
    /// ([`OUTPUT_SPLIT_MIN_CHANNELS`]).
    splits: usize,
    ntasks: usize,
    packed: bool,
    /// Output rows per transformed-weight chunk where each task transforms
    /// its own weights chunk by chunk ([`FUSED_U_BYTES`]); 0 where the
    /// weights are transformed once for every task.
    fused_rows: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) packed_len: usize,
}

/// Elements to skip so that `s[offset..]` starts on a 64-byte line.
fn align64<T>(s: &[T]) -> usize {
    let size = std::mem::size_of::<T>();
    let mis = (s.as_ptr() as usize) % 64;
    if mis == 0 { 0 } else { (64 - mis) / size }
}

/// Elements of one position's transformed weights.
fn u_len(packed: bool, cout: usize, cin: usize) -> usize {
    if packed {
        sgemm::packed_a_len(cout, cin)
    } else {
        cout * cin
    }
}

/// The forward plan of `geom` (the geometry the Winograd forward runs: the
/// layer's own, or its input gradient's).
pub(crate) fn plan<T>(geom: &Conv2dGeometry, tile: Tile) -> Plan {
    let packed = super::packed_path::<T>();
    let (cin, cout) = (geom.c_in(), geom.c_out());
    let grid = Grid::new(geom.oh(), geom.ow(), geom.dilation(), tile.m());
    let ntiles = geom.n() * grid.per_image;
    let ne = tile.ne();
    let per_tile = ne * (cin + cout) * std::mem::size_of::<T>();
    let by_bytes = (TASK_BYTES / per_tile / LANES).max(1) * LANES;
    let threads = rayon::current_num_threads().max(1);
    let by_tasks = ntiles.div_ceil(threads * TASKS_PER_THREAD).div_ceil(LANES) * LANES;
    // Few tiles, and output-channel blocks enough for every thread: one tile
    // block, cut by output channel only ([`ONE_BLOCK_MAX_TILES`]).
    let one_block = ntiles <= ONE_BLOCK_MAX_TILES && threads <= cout / OUTPUT_SPLIT_MIN_CHANNELS;
    let block = if one_block {
        ntiles.div_ceil(LANES) * LANES
    } else {
        by_bytes.max(MIN_BLOCK_TILES).min(by_tasks).max(LANES)
    };
    let nblocks = ntiles.div_ceil(block);
    // Too few tile blocks to go round (batch 1 on small images): cut each
    // into blocks of output channels too. Each such task transforms its
    // tiles' input again, so only where threads would otherwise idle.
    let splits = if one_block {
        threads
    } else if nblocks < threads {
        (threads * TASKS_PER_THREAD)
            .div_ceil(nblocks)
            .min(cout / OUTPUT_SPLIT_MIN_CHANNELS)
            .max(1)
    } else {
        1
    };
    let ntasks = nblocks * splits;
    // One tile block: each task transforms its own output rows' weights
    // (nobody else needs them), a chunk at a time ([`FUSED_U_BYTES`]).
    let fused_rows = if nblocks == 1 {
        (FUSED_U_BYTES / (ne * cin * std::mem::size_of::<T>()) / MR).max(1) * MR
    } else {
        0
    };
    let chunk = if fused_rows > 0 {
        ne * (fused_rows * cin + 16) + 64
    } else {
        0
    };
    Plan {
        tile,
        grid,
        ntiles,
        block,
        splits,
        ntasks,
        packed,
        parts: parts_for(ntasks),
        // A task's `V` (unless transformed once for every split, in the
        // packed region) and `M`.
        scratch_len: ne * (if splits > 1 { 0 } else { cin * block + PLANE_PAD } + cout * block + PLANE_PAD)
            + 64
            + chunk,
        fused_rows,
        packed_len: if fused_rows > 0 {
            0
        } else {
            ne * u_len(packed, cout, cin)
        } + 64
            + if splits > 1 {
                nblocks * ne * (cin * block + PLANE_PAD) + 64
            } else {
                0
            },
    }
}

/// Most tiles (F(2x2): batch 1 up to 16x16 outputs) that a forward plan
/// keeps in one tile block, giving each thread a block of output channels
/// instead (when there are [`OUTPUT_SPLIT_MIN_CHANNELS`] per thread): cut
/// into blocks of 16 tiles (the [`TASK_BYTES`] and tasks-per-thread limits),
/// every task's GEMMs were 16 columns wide and re-read all the transformed
/// weights (4 MiB on infer_b1_3x3). infer_b1_3x3 on the AVX-512 Xeon
/// (medians of 3 alternating per-run bests of 30, GFLOP/s, before -> after):
/// 1 thread forward 121.7 -> 148.1, input gradient 115.8 -> 138.6; 2
/// threads (two output-channel halves) 158.3 -> 200.0 and 180.6 -> 233.1.
/// In a slower stretch, 2 threads in four quarters instead of halves
/// measured 135.2 against 161.5 (forward), tile blocks of 32 in halves
/// 154.4. Where the output channels cannot go round the threads (16
/// threads, 256 channels: at most 8 blocks of 32), the plan stays as it was.
const ONE_BLOCK_MAX_TILES: usize = 64;

/// Most bytes of one task's chunk of transformed weights (every position,
/// whole panels) where each task transforms its own weights
/// ([`Plan::fused_rows`]): the chunk's products run while it is still in
/// L2, so the transformed weights never go out to memory and back (4 MiB on
/// infer_b1_3x3 at F(2x2), whose transform had taken about a quarter of the
/// pass). infer_b1_3x3 against transforming every weight first (per call,
/// median of 300 alternating pairs, 1 / 2 threads): input gradient x1.14 /
/// x1.07, forward x1.03 / x1.03. Chunks of 96 / 192 / 512 / 768 KiB against
/// 384: 0.90 / 0.97 / 1.00 / 0.98 on the input gradient at 1 thread, the
/// forward alike.
const FUSED_U_BYTES: usize = 384 * 1024;

/// Fewest output channels of one forward task when a plan cuts its tile
/// blocks by output channel (fewer tile blocks than threads: infer_b1_3x3
/// has 4 of 16 tiles at F(2x2)). Each such task transforms its tiles' input
/// again (about 1/16 of its products' work at 32 channels, F(2x2)).
const OUTPUT_SPLIT_MIN_CHANNELS: usize = 32;

/// Weight-gradient GEMM tasks per thread and chunk: positions times blocks
/// of output channels, so that 16 threads do not wait on a last round of
/// 36 or 16 position GEMMs.
const WGRAD_GEMM_TASKS: usize = 4;

/// Tiles per parallel piece of a weight-gradient chunk's transforms.
const PIECE: usize = 64;

/// Longest run of tiles one transform call handles (part of one tile row).
pub(crate) const SEG: usize = 64;

/// A run of tiles along one tile row: image `n`, tile row `ty`, tiles
/// `tx0 .. tx0 + len`, the first being tile `t` of the call's range.
#[derive(Clone, Copy)]
struct Segment {
    n: usize,
    /// The dilation phase: the run's outputs are rows `py + dh * k` and
    /// columns `px + dw * k` of the output.
    py: usize,
    px: usize,
    ty: usize,
    tx0: usize,
    len: usize,
    t: usize,
}

/// The tile grid of one call. A dilated convolution (dilation `dh x dw`) is
/// `dh * dw` undilated ones on the phase sub-lattices: phase `(py, px)`
/// owns the outputs `(py + dh * i, px + dw * j)` and reads the inputs on the
/// same sub-lattice, so each phase is tiled on its own: with tiles of
/// `m x m` outputs ([`Tile::m`]), tile `(ty, tx)` of phase `(py, px)` covers
/// outputs `(py + dh (m ty + a), px + dw (m tx + b))` and reads the padded
/// input rows `py + dh (m ty + r)`, columns `px + dw (m tx + c)`.
/// Undilated, the one phase is the whole output. Each phase has `nty x ntx`
/// tiles (enough for the largest phase; outputs past the image are dropped).
/// Tiles are numbered image by image, then by tile row `ty`, then by phase
/// (`py`, then `px`), then along the row (`tx`): the `dh * dw` phases of one
/// tile row read the same input rows (every `dh`-th, interleaved) and write
/// the same output rows, so a task covers them together and each input and
/// output line passes through L3 once instead of once per phase. Against
/// phase-major numbering (each phase's whole sub-image in turn), this order
/// with the stride-2 stores of [`store_strided`] measured dilated_3x3d2's
/// forward x1.10 at 1 thread (median per-run ratio, 11 alternating runs),
/// its input gradient x1.10. Undilated, the order is row-major.
#[derive(Clone, Copy)]
struct Grid {
    ntx: usize,
    /// Tile rows per phase.
    nty: usize,
    /// Phases (`dh * dw`).
    phases: usize,
    /// Tiles of one tile row of every phase (`dh * dw * ntx`).
    per_row: usize,
    /// Phases per image row of phases (`dw`).
    pw: usize,
    /// Tiles per image (`nty * per_row`).
    per_image: usize,
}

impl Grid {
    /// The grid of `m x m` tiles of a geometry with `oh x ow` outputs and
    /// dilation `(dh, dw)`.
    fn new(oh: usize, ow: usize, (dh, dw): (usize, usize), m: usize) -> Self {
        let (nty, ntx) = (oh.div_ceil(dh).div_ceil(m), ow.div_ceil(dw).div_ceil(m));
        Grid {
            ntx,
            nty,
            phases: dh * dw,
            per_row: dh * dw * ntx,
            pw: dw,
            per_image: dh * dw * nty * ntx,
        }
    }
}

impl Grid {
    /// The runs covering tiles `t0..t1`, in order.
    #[inline(always)]
    fn segments(self, t0: usize, t1: usize) -> Segments {
        Segments {
            grid: self,
            t: t0,
            t1,
            at: None,
        }
    }
}

/// Iterator over the runs of [`Grid::segments`].
struct Segments {
    grid: Grid,
    t: usize,
    t1: usize,
    /// Image, tile row, phase and column of tile `t`: divided out of `t`
    /// for the first run, then stepped along (the runs of a 16x16 layer's
    /// F(4x4) are 4 tiles, and a run's own work is a few hundred cycles).
    at: Option<[usize; 4]>,
}

impl Iterator for Segments {
    type Item = Segment;

    #[inline(always)]
    fn next(&mut self) -> Option<Segment> {
        if self.t >= self.t1 {
            return None;
        }
        let t = self.t;
        let g = self.grid;
        let [n, ty, phase, tx0] = self.at.unwrap_or_else(|| {
            let (n, r) = (t / g.per_image, t % g.per_image);
            let (ty, r) = (r / g.per_row, r % g.per_row);
            [n, ty, r / g.ntx, r % g.ntx]
        });
        let (py, px) = if g.pw == 1 {
            (phase, 0)
        } else {
            (phase / g.pw, phase % g.pw)
        };
        let len = (g.ntx - tx0).min(self.t1 - t).min(SEG);
        self.t += len;
        // Tile t + len: further along the row, or the next row's first.
        self.at = Some(if tx0 + len < g.ntx {
            [n, ty, phase, tx0 + len]
        } else if phase + 1 < g.phases {
            [n, ty, phase + 1, 0]
        } else if ty + 1 < g.nty {
            [n, ty + 1, 0, 0]
        } else {
            [n + 1, 0, 0, 0]
        });
        Some(Segment {
            n,
            py,
            px,
            ty,
            tx0,
            len,
            t,
        })
    }
}

/// The plane a transform reads: `nch` channels of `h x w` per image,
/// `pt` / `pl` rows / columns of zero padding before it, and the dilation
/// `(dh, dw)` that spaces the tile's rows and columns (see [`Grid`]).
#[derive(Clone, Copy)]
struct Plane {
    nch: usize,
    h: usize,
    w: usize,
    pt: usize,
    pl: usize,
    dh: usize,
    dw: usize,
}

/// Transformed values of a block of at most [`SEG`] tiles: `v[e][i]` for
/// position `e`, tile `i`.
pub(crate) type Rows<T> = [[T; SEG]; NE];

/// Padded columns `c0 + dw * j`, `j < span`, of padded row `iy` of
/// `plane` (zero outside the image; `dw` the dilation): undilated, the row
/// itself where they all lie inside it, else a copy in `buf`. The copy and
/// its zeros go through [`super::copy_run`] and [`super::zero_run`], so
/// short rows (a 16-wide layer's 18 padded columns) cost a few vector moves
/// instead of `memset` and `memcpy` calls.
#[inline(always)]
fn padded_run<'a, T: Element>(
    plane: &'a [T],
    src: &Plane,
    iy: usize,
    c0: usize,
    span: usize,
    buf: &'a mut [T],
) -> &'a [T] {
    let buf = &mut buf[..span];
    if iy < src.pt || iy >= src.h + src.pt {
        super::zero_run(buf);
        return buf;
    }
    let row = &plane[(iy - src.pt) * src.w..];
    let dw = src.dw;
    // Steps lo..hi lie inside the row: c0 + dw j >= pl, c0 + dw j < w + pl.
    // (Undilated without a division: a few per run add up on small layers.)
    let steps = |cols: usize| if dw == 1 { cols } else { cols.div_ceil(dw) };
    let lo = steps(src.pl.saturating_sub(c0)).min(span);
    let hi = steps((src.w + src.pl).saturating_sub(c0)).clamp(lo, span);
    if dw == 1 && lo == 0 && hi == span {
        return &row[c0 - src.pl..c0 - src.pl + span];
    }
    super::zero_run(&mut buf[..lo]);
    super::zero_run(&mut buf[hi..]);
    if dw == 1 {
        super::copy_run(&mut buf[lo..hi], &row[c0 + lo - src.pl..c0 + hi - src.pl]);
    } else if dw == 2 {
        even_elements(&mut buf[lo..hi], &row[c0 + 2 * lo - src.pl..]);
    } else {
        for (j, v) in buf[lo..hi].iter_mut().enumerate() {
            *v = row[c0 + dw * (lo + j) - src.pl];
        }
    }
    buf
}

/// Asks the cache for the elements [`padded_run`] would read from `plane`
/// for the same arguments (a hint: no effect on results).
#[inline(always)]
fn prefetch_run<T>(plane: &[T], src: &Plane, iy: usize, c0: usize, span: usize) {
    if iy < src.pt || iy >= src.h + src.pt || span == 0 {
        return;
    }
    let lo = c0.max(src.pl) - src.pl;
    let hi = (c0 + src.dw * (span - 1) + 1)
        .min(src.w + src.pl)
        .saturating_sub(src.pl);
    if lo < hi {
        super::prefetch(&plane[(iy - src.pt) * src.w + lo..(iy - src.pt) * src.w + hi]);
    }
}

super::isa::dispatch!(
    /// `V = B^T d B` of channel `ch` for `tiles` (at most [`SEG`]) into
    /// `v[e][..tiles.len()]` (lanes past it may be overwritten): each run of tiles along a tile row in one step
    /// ([`input_tiles`], eight tiles per register) from its four patch rows
    /// ([`padded_run`]; a dilated layer's rows are gathered on the run's
    /// phase). `d` is scratch. Compiled for the widest instruction set;
    /// additions only, so every path gives the same bits.
    fn input_rows<T>(x: &[T], src: &Plane, grid: Grid, ch: usize, tiles: Range<usize>, d: &mut Rows<T>, v: &mut Rows<T>) => input_rows_impl
);

#[inline(always)]
fn input_rows_impl<T: Element>(
    x: &[T],
    src: &Plane,
    grid: Grid,
    ch: usize,
    tiles: Range<usize>,
    d: &mut Rows<T>,
    v: &mut Rows<T>,
) {
    let (a, b) = (tiles.start, tiles.end);
    // `d` (16 x SEG) holds the four padded runs (2 SEG + 2 each).
    let pb: &mut [T] = d.as_flattened_mut();
    let (p0, rest) = pb.split_at_mut(2 * SEG + 2);
    let (p1, rest) = rest.split_at_mut(2 * SEG + 2);
    let (p2, p3) = rest.split_at_mut(2 * SEG + 2);
    for s in grid.segments(a, b) {
        let plane = &x[(s.n * src.nch + ch) * src.h * src.w..][..src.h * src.w];
        // Tile i reads padded columns c0 + dw (2i + c), c < 4, of patch rows
        // py + dh (2 ty + r) (see [`Grid`]).
        let c0 = s.px + 2 * src.dw * s.tx0;
        // A run shorter than a register (7 tiles per row on a 14x14 layer)
        // is transformed as 8 tiles where they fit in `v`: the extra tiles
        // read further columns of the same padded rows (zeros past the
        // image) and land in lanes the next run, or nobody, overwrites.
        let len = if s.len < 8 && s.t - a + 8 <= SEG && avx2_f32::<T>() {
            8
        } else {
            s.len
        };
        let span = 2 * len + 2;
        let iy = |r: usize| s.py + src.dh * (2 * s.ty + r);
        let p = [
            padded_run(plane, src, iy(0), c0, span, p0),
            padded_run(plane, src, iy(1), c0, span, p1),
            padded_run(plane, src, iy(2), c0, span, p2),
            padded_run(plane, src, iy(3), c0, span, p3),
        ];
        input_tiles(p, v, s.t - a, len);
    }
}

super::isa::dispatch!(
    /// [`input_rows`] for F(4x4, 3x3) ([`Tile::F4`]): each run of tiles from
    /// its six patch rows by [`input_tiles4`].
    fn input_rows4<T>(x: &[T], src: &Plane, grid: Grid, ch: usize, tiles: Range<usize>, d: &mut Rows4<T>, v: &mut Rows4<T>) => input_rows4_impl
);

#[inline(always)]
fn input_rows4_impl<T: Element>(
    x: &[T],
    src: &Plane,
    grid: Grid,
    ch: usize,
    tiles: Range<usize>,
    d: &mut Rows4<T>,
    v: &mut Rows4<T>,
) {
    let (a, b) = (tiles.start, tiles.end);
    // `d` (36 x SEG) holds the six padded runs (4 SEG + 2 each).
    const RUN: usize = 4 * SEG + 2;
    let (pb, _) = d.as_flattened_mut().split_at_mut(6 * RUN);
    let mut bufs = pb.chunks_exact_mut(RUN);
    let mut bufs: [&mut [T]; 6] = std::array::from_fn(|_| bufs.next().unwrap());
    for s in grid.segments(a, b) {
        let plane = &x[(s.n * src.nch + ch) * src.h * src.w..][..src.h * src.w];
        // Tile i reads padded columns c0 + dw (4i + c), c < 6, of patch rows
        // py + dh (4 ty + r) (see [`Grid`]).
        let c0 = s.px + 4 * src.dw * s.tx0;
        // A run shorter than a register (4 tiles per row on a 14x14 or
        // 16x16 layer) is transformed as 8 tiles where they fit in `v`, as
        // in [`input_rows`].
        let len = if s.len < 8 && s.t - a + 8 <= SEG && avx2_f32::<T>() {
            8
        } else {
            s.len
        };
        let span = 4 * len + 2;
        let iy = |r: usize| s.py + src.dh * (4 * s.ty + r);
        // The next channel's six rows, asked for while this channel's are
        // transformed: resnet_3x3_56's input gradient x1.04 and x1.055 at 1
        // thread (median per-run ratios, 9 and 11 alternating runs), 1.01
        // at 2; its forward 1.02, dilated_3x3d2's 1.00. The same for
        // F(2x2)'s four rows measured 0.99-1.02 (resnet_3x3_14,
        // infer_b1_3x3): not asked there.
        if ch + 1 < src.nch {
            let next = &x[(s.n * src.nch + ch + 1) * src.h * src.w..][..src.h * src.w];
            for r in 0..6 {
                prefetch_run(next, src, iy(r), c0, span);
            }
        }
        let [b0, b1, b2, b3, b4, b5] = &mut bufs;
        let p = [
            padded_run(plane, src, iy(0), c0, span, b0),
            padded_run(plane, src, iy(1), c0, span, b1),
            padded_run(plane, src, iy(2), c0, span, b2),
            padded_run(plane, src, iy(3), c0, span, b3),
            padded_run(plane, src, iy(4), c0, span, b4),
            padded_run(plane, src, iy(5), c0, span, b5),
        ];
        input_tiles4(p, v, s.t - a, len);
    }
}

super::isa::dispatch!(
    /// `dM = A dY A^T` of channel `ch` (of an `h x w` output gradient) for
    /// `tiles` into `dm[e][..tiles.len()]`; `dY` past the plane is zero. Each
    /// run of tiles along a tile row in one step ([`output_grad_tiles`],
    /// eight tiles per register) from its two `dY` rows ([`padded_run`],
    /// gathered on the run's phase when dilated). `d` is scratch. Compiled
    /// for the widest instruction set.
    fn output_grad_rows<T>(dy: &[T], src: &Plane, grid: Grid, ch: usize, tiles: Range<usize>, d: &mut Rows<T>, dm: &mut Rows<T>) => output_grad_rows_impl
);

#[inline(always)]
fn output_grad_rows_impl<T: Element>(
    dy: &[T],
    src: &Plane,
    grid: Grid,
    ch: usize,
    tiles: Range<usize>,
    d: &mut Rows<T>,
    dm: &mut Rows<T>,
) {
    let (a, b) = (tiles.start, tiles.end);
    // `d` (16 x SEG) holds the two row runs (2 SEG each).
    let (p0, p1) = d.as_flattened_mut().split_at_mut(2 * SEG);
    for s in grid.segments(a, b) {
        let plane = &dy[(s.n * src.nch + ch) * src.h * src.w..][..src.h * src.w];
        // Tile i's pixel (a, b) is dY[py + dh (2 ty + a)][c0 + dw (2i + b)].
        let c0 = s.px + 2 * src.dw * s.tx0;
        let y = |r: usize| s.py + src.dh * (2 * s.ty + r);
        let p = [
            padded_run(plane, src, y(0), c0, 2 * s.len, p0),
            padded_run(plane, src, y(1), c0, 2 * s.len, p1),
        ];
        output_grad_tiles(p, dm, s.t - a, s.len);
    }
}

super::isa::dispatch!(
    /// [`output_grad_rows`] for F(4x4, 3x3) ([`Tile::F4`]): each run of
    /// tiles from its four `dY` rows by [`output_grad_tiles4`].
    fn output_grad_rows4<T>(dy: &[T], src: &Plane, grid: Grid, ch: usize, tiles: Range<usize>, d: &mut Rows4<T>, dm: &mut Rows4<T>) => output_grad_rows4_impl
);

#[inline(always)]
fn output_grad_rows4_impl<T: Element>(
    dy: &[T],
    src: &Plane,
    grid: Grid,
    ch: usize,
    tiles: Range<usize>,
    d: &mut Rows4<T>,
    dm: &mut Rows4<T>,
) {
    let (a, b) = (tiles.start, tiles.end);
    // `d` (36 x SEG) holds the four row runs (4 SEG each).
    const RUN: usize = 4 * SEG;
    let (pb, _) = d.as_flattened_mut().split_at_mut(4 * RUN);
    let mut bufs = pb.chunks_exact_mut(RUN);
    let mut bufs: [&mut [T]; 4] = std::array::from_fn(|_| bufs.next().unwrap());
    for s in grid.segments(a, b) {
        let plane = &dy[(s.n * src.nch + ch) * src.h * src.w..][..src.h * src.w];
        // Tile i's pixel (a, b) is dY[py + dh (4 ty + a)][c0 + dw (4i + b)].
        let c0 = s.px + 4 * src.dw * s.tx0;
        // A run shorter than a register is transformed as 8 tiles where they
        // fit in `dm`, as in [`input_rows`] (`dY` past the plane is zero).
        let len = if s.len < 8 && s.t - a + 8 <= SEG && avx2_f32::<T>() {
            8
        } else {
            s.len
        };
        let y = |r: usize| s.py + src.dh * (4 * s.ty + r);
        // The next channel's four rows, as in [`input_rows4`]: the weight
        // gradient x1.06 / x1.015 on dilated_3x3d2, x1.03 / x1.04 on
        // resnet_3x3_56 at 1 thread (two sets of 9 and 11 alternating runs),
        // 1.00 at 2.
        if ch + 1 < src.nch {
            let next = &dy[(s.n * src.nch + ch + 1) * src.h * src.w..][..src.h * src.w];
            for r in 0..4 {
                prefetch_run(next, src, y(r), c0, 4 * len);
            }
        }
        let [b0, b1, b2, b3] = &mut bufs;
        let p = [
            padded_run(plane, src, y(0), c0, 4 * len, b0),
            padded_run(plane, src, y(1), c0, 4 * len, b1),
            padded_run(plane, src, y(2), c0, 4 * len, b2),
            padded_run(plane, src, y(3), c0, 4 * len, b3),
        ];
        output_grad_tiles4(p, dm, s.t - a, len);
    }
}

/// `U = G g G^T` for one 3x3 kernel `g[ky][kx]` (positions `4i + j`).
fn weight_transform<T: Element>(g: [[T; 3]; 3]) -> [T; NE] {
    let half = T::from_f64(0.5);
    let mut t = [[T::ZERO; 3]; 4];
    for c in 0..3 {
        t[0][c] = g[0][c];
        t[1][c] = (g[0][c] + g[1][c] + g[2][c]) * half;
        t[2][c] = (g[0][c] - g[1][c] + g[2][c]) * half;
        t[3][c] = g[2][c];
    }
    let mut u = [T::ZERO; NE];
    for i in 0..4 {
        u[i * 4] = t[i][0];
        u[i * 4 + 1] = (t[i][0] + t[i][1] + t[i][2]) * half;
        u[i * 4 + 2] = (t[i][0] - t[i][1] + t[i][2]) * half;
        u[i * 4 + 3] = t[i][2];
    }
    u
}

/// Transforms the weights of `geom`'s forward into the GEMM operands `U_e`
/// (`c_out x c_in`, one per position of `tile`), packed as `A` panels on the
/// packed path, row-major otherwise. With `flipped`, `w` holds the weights
/// of the layer whose input gradient `geom` is: `geom`'s kernel
/// `(o, i, ky, kx)` is `w[i][o][2 - ky][2 - kx]`.
fn transform_weights<T: Element>(geom: &Conv2dGeometry, tile: Tile, w: &[T], flipped: bool, packed: bool, u: &mut [T]) {
    let (cout, cin) = (geom.c_out(), geom.c_in());
    let ne = tile.ne();
    let ulen = u_len(packed, cout, cin);
    let base = SharedMut(u.as_mut_ptr());
    let ulen_all = u.len();
    (0..cout.div_ceil(MR)).into_par_iter().for_each(|ip| {
        let o0 = ip * MR;
        let len = panel_len(packed, cout, cin, ip);
        assert!((ne - 1) * ulen + o0 * cin + len <= ulen_all);
        let mut planes: [&mut [T]; NE4] = std::array::from_fn(|e| {
            if e >= ne {
                return &mut [][..];
            }
            // SAFETY: inside `u` (checked above); the `ne` ranges lie in
            // different positions' planes, and no other task writes rows
            // o0..o1 (or panel ip) of any plane.
            unsafe { std::slice::from_raw_parts_mut(base.get().add(e * ulen + o0 * cin), len) }
        });
        transform_panel((cout, cin), tile, w, flipped, packed, ip, &mut planes[..ne]);
    });
}

/// Elements of panel `ip`'s share of one position's transformed weights:
/// packed, the whole panel (`MR` rows, the ones past `c_out` zero);
/// row-major, its rows.
fn panel_len(packed: bool, cout: usize, cin: usize, ip: usize) -> usize {
    if packed {
        MR * cin
    } else {
        (cout.min((ip + 1) * MR) - ip * MR) * cin
    }
}

/// Transforms the kernels of output rows `ip * MR ..` (one packed panel) of
/// [`transform_weights`] into `planes[e]`, position `e`'s elements of that
/// panel ([`panel_len`] of them, laid out as in `U_e` from the panel's
/// first element).
#[allow(clippy::too_many_arguments)]
fn transform_panel<T: Element>(
    (cout, cin): (usize, usize),
    tile: Tile,
    w: &[T],
    flipped: bool,
    packed: bool,
    ip: usize,
    planes: &mut [&mut [T]],
) {
    let (o0, o1) = (ip * MR, cout.min((ip + 1) * MR));
    // Input channel outer: the task's MR output rows are then read as
    // MR sequential streams (flipped: one contiguous run of MR kernels
    // per input channel) and the packed panel is written in order. On
    // AVX2, four input channels (24 kernels, three registers) at a time
    // ([`weight_panel_avx2`], F(2x2, 3x3) only).
    let mut i0 = 0;
    #[cfg(target_arch = "x86_64")]
    if packed && tile == Tile::F2 && avx2_f32::<T>() && cin >= 4 {
        let w = f32s(w);
        let (rs, ls) = if flipped { (9, cout * 9) } else { (cin * 9, 9) };
        // Kernel (o0 + r, l) starts at w0 + r * rs + l * ls.
        let w0 = if flipped { o0 * 9 } else { o0 * cin * 9 };
        let quads = cin / 4;
        let last = w0 + (o1 - o0 - 1) * rs + (4 * quads - 1) * ls + 8;
        assert!(last < w.len());
        let ptrs: [*mut f32; NE] = std::array::from_fn(|e| f32s_mut(&mut planes[e][..4 * quads * MR]).as_mut_ptr());
        // SAFETY: AVX2 (`avx2_f32`); every kernel's taps lie in `w` (the
        // last element checked above); each pointer addresses the first
        // 4 * quads * MR elements of this panel's own slice of a plane; the
        // rows past o1 (garbage there) are zeroed below.
        unsafe { weight_panel_avx2(w[w0..].as_ptr(), (rs, ls), flipped, o1 - o0, quads, &ptrs) };
        i0 = 4 * quads;
    }
    if packed && tile == Tile::F4 {
        // F(4x4, 3x3): the panel's kernels of up to WCH input channels
        // gathered tap by tap in panel order (`i * MR + o - o0`, zeros
        // past `c_out`), then transformed eight at a time
        // ([`weight_tiles4`]) straight into the panel rows.
        const WCH: usize = 32;
        let mut taps = [[T::ZERO; WCH * MR]; 9];
        while i0 < cin {
            let ic = WCH.min(cin - i0);
            for i in 0..ic {
                for r in 0..MR {
                    let o = o0 + r;
                    let l = i * MR + r;
                    for (t, tap) in taps.iter_mut().enumerate() {
                        tap[l] = if o >= o1 {
                            T::ZERO
                        } else if flipped {
                            w[((i0 + i) * cout + o) * 9 + 8 - t]
                        } else {
                            w[(o * cin + i0 + i) * 9 + t]
                        };
                    }
                }
            }
            let g: [&[T]; 9] = std::array::from_fn(|t| &taps[t][..ic * MR]);
            let mut rows = planes.iter_mut();
            let mut out: [&mut [T]; NE4] = std::array::from_fn(|_| &mut rows.next().unwrap()[i0 * MR..(i0 + ic) * MR]);
            weight_tiles4(&g, &mut out, ic * MR);
            i0 += ic;
        }
    }
    for i in i0..cin {
        for o in o0..o1 {
            let g = if flipped {
                let k = &w[(i * cout + o) * 9..][..9];
                [[k[8], k[7], k[6]], [k[5], k[4], k[3]], [k[2], k[1], k[0]]]
            } else {
                let k = &w[(o * cin + i) * 9..][..9];
                [[k[0], k[1], k[2]], [k[3], k[4], k[5]], [k[6], k[7], k[8]]]
            };
            let ue = match tile {
                Tile::F2 => {
                    let mut ue = [T::ZERO; NE4];
                    ue[..NE].copy_from_slice(&weight_transform(g));
                    ue
                }
                Tile::F4 => weight_transform4(g),
            };
            let at = if packed { i * MR + o - o0 } else { (o - o0) * cin + i };
            for (plane, &val) in planes.iter_mut().zip(&ue) {
                plane[at] = val;
            }
        }
    }
    if packed && o1 - o0 < MR {
        for plane in planes {
            for i in 0..cin {
                plane[i * MR + (o1 - o0)..(i + 1) * MR].fill(T::ZERO);
            }
        }
    }
}

/// `y = conv(x, W) + bias` by Winograd for the forward geometry `geom`;
/// `w` as in [`transform_weights`]. `packed` and `scratch` hold the plan's
/// lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Element>(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[T],
    w: &[T],
    flipped: bool,
    bias: Option<&[T]>,
    y: &mut [T],
    packed: &mut [T],
    scratch: &mut [T],
) {
    let (cin, cout) = (geom.c_in(), geom.c_out());
    let (h, wd, oh, ow) = (geom.h(), geom.w(), geom.oh(), geom.ow());
    let (pt, _, pl, _) = geom.padding();
    let (dh, dw) = geom.dilation();
    let src = Plane {
        nch: cin,
        h,
        w: wd,
        pt,
        pl,
        dh,
        dw,
    };
    let (tile, ne) = (p.tile, p.tile.ne());
    let ulen = u_len(p.packed, cout, cin);
    let uo = align64(packed);
    let fused = p.fused_rows > 0;
    let (u, packed_rest) = packed[uo..].split_at_mut(if fused { 0 } else { ne * ulen });
    if !fused {
        transform_weights(geom, tile, w, flipped, p.packed, u);
    }
    let u: &[T] = u;
    let grid = p.grid;
    let ybase = SharedMut(y.as_mut_ptr());
    let ylen = y.len();
    let block = p.block;
    let (ve, me) = (cin * block + PLANE_PAD, cout * block + PLANE_PAD);
    let splits = p.splits;
    let job = InputJob {
        x,
        src,
        grid,
        tile,
        packed: p.packed,
        cin,
        block,
        ve,
    };
    // Where the plan cuts each tile block by output channel, the tasks of a
    // block would each transform its whole input: transform it once, in
    // parallel over channel ranges, before the products. infer_b1_3x3 at 2
    // threads (two output-channel halves): forward x1.02 / x1.05, input
    // gradient x1.07 / x1.02 (median per-run ratios, two sets of 9 and 11
    // alternating runs); each element is transformed exactly as before.
    let v_shared = (splits > 1).then(|| {
        let nblocks = p.ntasks / splits;
        let vo = align64(packed_rest);
        let vs = &mut packed_rest[vo..vo + nblocks * ne * ve];
        let base = SharedMut(vs.as_mut_ptr());
        let pieces = (rayon::current_num_threads() * TASKS_PER_THREAD).min(cin).max(1);
        (0..nblocks * pieces).into_par_iter().for_each(|j| {
            let (b, q) = (j / pieces, j % pieces);
            let (t0, t1) = (b * block, ((b + 1) * block).min(p.ntiles));
            // SAFETY: block b's `ne * ve` elements of `vs`; each piece
            // writes only its own channels' elements of them.
            unsafe {
                input_block(
                    &job,
                    (t0, t1),
                    q * cin / pieces..(q + 1) * cin / pieces,
                    base.get().add(b * ne * ve),
                )
            };
        });
        base
    });
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, s| {
        // Tile block `task / splits`, output channels o0..o1 (whole `MR`
        // panels; all of them unless the plan splits).
        let (task, part) = (task / splits, task % splits);
        let (o0, o1) = panel_block(part, splits, cout, MR);
        let t0 = task * block;
        let t1 = (t0 + block).min(p.ntiles);
        let nt = t1 - t0;
        let so = align64(s);
        let (vm, rest) = s[so..].split_at_mut(ne * (if v_shared.is_some() { 0 } else { ve } + me));
        let (v, m): (&[T], &mut [T]) = if let Some(vs) = v_shared {
            // Transformed by the pass before (every channel, every task).
            // SAFETY: tile block `task`'s `ne * ve` elements of the shared
            // region, written before this pass and only read now.
            let v = unsafe { std::slice::from_raw_parts(vs.get().add(task * ne * ve).cast_const(), ne * ve) };
            (v, vm)
        } else {
            let (v, m) = vm.split_at_mut(ne * ve);
            // SAFETY: `v` is this task's own scratch of `ne * ve` elements.
            unsafe { input_block(&job, (t0, t1), 0..cin, v.as_mut_ptr()) };
            (v, m)
        };
        // M_e's rows r0..r1 = U_e's rows r0..r1 (from `a`, `lda` apart:
        // packed, the panel stride) times V_e.
        let mut product = |e: usize, a: &[T], r0: usize, r1: usize| {
            assert!(e * me + r1 * block <= m.len() && (e + 1) * ve <= v.len());
            if p.packed {
                let (a, v, m) = (f32s(a), f32s(v), f32s_mut(m));
                assert!(a.len() >= (r1 - r0).div_ceil(MR) * MR * cin);
                // SAFETY: `a` holds the rows' panels of `cin` steps, `V_e`
                // npan panels of `cin` steps, and `M_e` cout rows of
                // `block >= nt` elements (asserted above); the packed kernel
                // runs (plan).
                unsafe {
                    sgemm::gemm(
                        r1 - r0,
                        nt,
                        cin,
                        a.as_ptr(),
                        MR * cin,
                        v.as_ptr().add(e * ve),
                        NR * cin,
                        m.as_mut_ptr().add(e * me + r0 * block),
                        block,
                        sgemm::Start::Zero,
                    );
                }
            } else {
                assert!(a.len() >= (r1 - r0) * cin);
                // SAFETY: row-major rows of `U_e` (r1 - r0 x cin), `V_e`
                // (cin x block) and `M_e` (cout x block), all inside their
                // slices (asserted above).
                unsafe {
                    T::gemm(
                        r1 - r0,
                        cin,
                        nt,
                        T::ONE,
                        a.as_ptr(),
                        cin as isize,
                        1,
                        v.as_ptr().add(e * ve),
                        block as isize,
                        1,
                        T::ZERO,
                        m.as_mut_ptr().add(e * me + r0 * block),
                        block as isize,
                        1,
                    );
                }
            }
        };
        if fused {
            // This task's weights, a chunk of whole panels at a time, each
            // chunk's products run while it is in cache.
            let co = align64(rest);
            // One line more per position, so that the positions' panels
            // do not all fall in the same L1 sets.
            let clen = p.fused_rows * cin + 16;
            let chunk = &mut rest[co..co + ne * clen];
            let mut c0 = o0;
            while c0 < o1 {
                let c1 = o1.min(c0 + p.fused_rows);
                for ip in c0 / MR..c1.div_ceil(MR) {
                    let len = panel_len(p.packed, cout, cin, ip);
                    let at = (ip * MR - c0) * cin;
                    let mut parts = chunk.chunks_mut(clen);
                    let mut planes: [&mut [T]; NE4] = std::array::from_fn(|e| {
                        if e < ne {
                            &mut parts.next().unwrap()[at..at + len]
                        } else {
                            &mut [][..]
                        }
                    });
                    transform_panel((cout, cin), tile, w, flipped, p.packed, ip, &mut planes[..ne]);
                }
                for e in 0..ne {
                    product(e, &chunk[e * clen..(e + 1) * clen], c0, c1);
                }
                c0 = c1;
            }
        } else {
            for e in 0..ne {
                product(e, &u[e * ulen + o0 * cin..(e + 1) * ulen], o0, o1);
            }
        }
        // Each run of tiles along a tile row goes into its `mt` output rows
        // ([`output_tiles`], [`output_tiles4`]): directly when undilated,
        // else through `line` and out with stride `dw` (the run's columns of
        // its phase).
        let mt = tile.m();
        let mut line = [[T::ZERO; 4 * SEG]; 4];
        for sg in grid.segments(t0, t1) {
            let ox0 = sg.px + mt * dw * sg.tx0;
            if ox0 >= ow {
                continue;
            }
            let wlen = (ow - ox0).div_ceil(dw).min(mt * sg.len);
            for co in o0..o1 {
                let b = bias.map_or(T::ZERO, |b| b[co]);
                let at: [Option<usize>; 4] = std::array::from_fn(|a| {
                    let oy = sg.py + dh * (mt * sg.ty + a);
                    (a < mt && oy < oh).then(|| ((sg.n * cout + co) * oh + oy) * ow + ox0)
                });
                // The next channel's output rows (one plane further), which
                // are not in cache: asked for while this channel's tiles are
                // transformed (resnet_3x3_14 forward 89.1 -> 98.2 GFLOP/s at
                // 1 thread, 186.2 -> 200.3 at 2; resnet_3x3_56 117.9 ->
                // 120.9; the input gradients unchanged; medians of 7
                // alternating runs).
                if dw == 1 && co + 1 < o1 {
                    for &at in at.iter().flatten() {
                        // SAFETY: a prefetch never faults; the next
                        // channel's row segment lies in `y`.
                        unsafe { super::prefetch_raw(ybase.get().add(at + oh * ow), wlen) };
                    }
                }
                let at_m = co * block + sg.t - t0;
                let rows: [Option<&mut [T]>; 4] = if dw == 1 {
                    at.map(|at| {
                        at.map(|at| {
                            assert!(at + wlen <= ylen);
                            // SAFETY: `at .. at + wlen` lies inside `y`
                            // (checked) and holds pixels of this task's
                            // tiles and output channel only, which no other
                            // task touches; the rows are distinct.
                            unsafe { std::slice::from_raw_parts_mut(ybase.get().add(at), wlen) }
                        })
                    })
                } else {
                    let mut lines = line.iter_mut();
                    std::array::from_fn(|a| {
                        let l = lines.next().unwrap();
                        at[a].map(|_| &mut l[..wlen])
                    })
                };
                match tile {
                    Tile::F2 => {
                        let [r0, r1, _, _] = rows;
                        output_tiles(m, me, at_m, sg.len, b, [r0, r1]);
                    }
                    Tile::F4 => output_tiles4(m, me, at_m, sg.len, b, rows),
                }
                if dw == 1 {
                    continue;
                }
                for (at, l) in at.iter().zip(&line) {
                    let Some(at) = *at else { continue };
                    assert!(at + dw * (wlen - 1) < ylen);
                    // SAFETY: at + dw * j, j < wlen, lies inside `y` (checked
                    // for the last); the pixels and channel belong to this
                    // task alone.
                    unsafe { store_strided(&l[..wlen], ybase.get().add(at), dw) };
                }
            }
        }
    });
}

/// What [`input_block`] transforms: the forward's input, its grid and tile,
/// and the layout of `V` (`packed`: B panels of [`LANES`] tiles, panel stride
/// `LANES * cin`; else a row of `block` tiles per channel), `ve` elements per
/// position.
struct InputJob<'a, T> {
    x: &'a [T],
    src: Plane,
    grid: Grid,
    tile: Tile,
    packed: bool,
    cin: usize,
    block: usize,
    ve: usize,
}

/// `V_e` of tiles `t0..t1` (one tile block, `t1 - t0 <= block`), input
/// channels `chans`, into the `ne` planes at `v` (plane `e` at `v + e * ve`),
/// run by run ([`input_rows`], [`input_rows4`]).
///
/// # Safety
/// `v` must address `ne * job.ve` writable elements, of which no other thread
/// writes those of channels `chans` during the call.
unsafe fn input_block<T: Element>(job: &InputJob<T>, (t0, t1): (usize, usize), chans: Range<usize>, v: *mut T) {
    let (cin, ve, ne) = (job.cin, job.ve, job.tile.ne());
    assert!(t1 - t0 <= job.block && chans.end <= cin);
    let mut rows: Rows4<T> = [[T::ZERO; SEG]; NE4];
    let mut tmp: Rows4<T> = [[T::ZERO; SEG]; NE4];
    for ba in (t0..t1).step_by(SEG) {
        let bb = (ba + SEG).min(t1);
        let (t, len) = (ba - t0, bb - ba);
        for ci in chans.clone() {
            match job.tile {
                Tile::F2 => input_rows(
                    job.x,
                    &job.src,
                    job.grid,
                    ci,
                    ba..bb,
                    first16(&mut tmp),
                    first16(&mut rows),
                ),
                Tile::F4 => input_rows4(job.x, &job.src, job.grid, ci, ba..bb, &mut tmp, &mut rows),
            }
            for (e, row) in rows.iter().enumerate().take(ne) {
                let plane = v.wrapping_add(e * ve);
                if job.packed {
                    // B panels of 16 tiles, step `ci` (`t` is a multiple of
                    // 16, so the pieces are whole panel rows but the last).
                    let (full, rest) = (len / LANES, len % LANES);
                    let at0 = t / LANES * LANES * cin + ci * LANES;
                    assert!(at0 + (len.div_ceil(LANES) - 1) * LANES * cin + LANES <= ve);
                    for k in 0..full {
                        // SAFETY: inside plane e (asserted), channel ci's
                        // elements (the caller's contract).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                row[k * LANES..].as_ptr(),
                                plane.add(at0 + k * LANES * cin),
                                LANES,
                            )
                        };
                    }
                    if rest > 0 {
                        // SAFETY: as above.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                row[full * LANES..].as_ptr(),
                                plane.add(at0 + full * LANES * cin),
                                rest,
                            )
                        };
                    }
                } else {
                    assert!(ci * job.block + t + len <= ve);
                    // SAFETY: as above.
                    unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), plane.add(ci * job.block + t), len) };
                }
            }
        }
    }
}

/// The first 16 rows of a block: the [`Rows`] of an F(2x2, 3x3) tile.
fn first16<T>(rows: &mut Rows4<T>) -> &mut Rows<T> {
    (&mut rows[..NE]).try_into().unwrap()
}

/// How one weight-gradient call walks the tiles.
pub(crate) struct WgradPlan {
    tile: Tile,
    grid: Grid,
    ntiles: usize,
    /// Tiles per chunk (a multiple of [`LANES`]); from the geometry alone.
    chunk: usize,
    packed: bool,
    pub(crate) scratch_len: usize,
    pub(crate) partials_len: usize,
}

/// Elements of one position's transformed input and output gradient for a
/// chunk of `k` tiles (`k` a multiple of [`LANES`]).
fn wgrad_planes(packed: bool, cin: usize, cout: usize, k: usize) -> (usize, usize) {
    let (v, m) = if packed {
        (sgemm::packed_b_len(k, cin), sgemm::packed_a_len(cout, k))
    } else {
        (cin * k, cout * k)
    };
    (v + PLANE_PAD, m + PLANE_PAD)
}

pub(crate) fn wgrad_plan<T>(geom: &Conv2dGeometry, tile: Tile) -> WgradPlan {
    let packed = super::packed_path::<T>();
    let (cin, cout) = (geom.c_in(), geom.c_out());
    let grid = Grid::new(geom.oh(), geom.ow(), geom.dilation(), tile.m());
    let ntiles = geom.n() * grid.per_image;
    let ne = tile.ne();
    let per_tile = ne * (cin + cout) * std::mem::size_of::<T>();
    // All threads share a chunk, so on the packed kernel it grows with them
    // (each thread's share stays WGRAD_CHUNK_BYTES). That changes no bits
    // there: every element of `dU` is one chain of fused multiply-adds over
    // the tiles in order, whichever chunks they fall in. matrixmultiply adds
    // each chunk's product to `dU` as a whole, so there the chunks must not
    // depend on the thread count.
    let share = if packed { rayon::current_num_threads().max(1) } else { 1 };
    let chunk = if share > 1 && ntiles * per_tile <= WGRAD_ONE_CHUNK_BYTES {
        ntiles
    } else {
        WGRAD_CHUNK_BYTES * share / per_tile
    };
    let chunk = chunk
        .max(wgrad_min_chunk(cin, cout))
        .div_ceil(LANES)
        .min(ntiles.div_ceil(LANES))
        * LANES;
    let (vp, mp) = wgrad_planes(packed, cin, cout, chunk);
    WgradPlan {
        tile,
        grid,
        ntiles,
        chunk,
        packed,
        scratch_len: ne * (vp + mp) + 64,
        partials_len: ne * cout * cin,
    }
}

/// `dW` of a geometry by Winograd ([`selected_weight_grad`]); `scratch` and `partials`
/// hold the plan's lengths.
pub(crate) fn weight_grad<T: Element>(
    geom: &Conv2dGeometry,
    p: &WgradPlan,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    scratch: &mut [T],
    du: &mut [T],
) {
    let (cin, cout) = (geom.c_in(), geom.c_out());
    let (h, wd, oh, ow) = (geom.h(), geom.w(), geom.oh(), geom.ow());
    let (pt, _, pl, _) = geom.padding();
    let (dil_h, dil_w) = geom.dilation();
    let src = Plane {
        nch: cin,
        h,
        w: wd,
        pt,
        pl,
        dh: dil_h,
        dw: dil_w,
    };
    let out = Plane {
        nch: cout,
        h: oh,
        w: ow,
        pt: 0,
        pl: 0,
        dh: dil_h,
        dw: dil_w,
    };
    let grid = p.grid;
    let ne = p.tile.ne();
    let so = align64(scratch);
    let scratch = &mut scratch[so..];
    let du = &mut du[..ne * cout * cin];
    let nchunks = p.ntiles.div_ceil(p.chunk);
    for c in 0..nchunks {
        let t0 = c * p.chunk;
        let t1 = (t0 + p.chunk).min(p.ntiles);
        let k = (t1 - t0).div_ceil(LANES) * LANES;
        let (vp, mp) = wgrad_planes(p.packed, cin, cout, k);
        let (v, m) = scratch[..ne * (vp + mp)].split_at_mut(ne * vp);
        // Pieces small enough for two per thread (F(4x4, 3x3) chunks hold
        // fewer tiles); they only split the transforms, so the result does
        // not depend on them.
        let piece = (t1 - t0)
            .div_ceil(2 * rayon::current_num_threads())
            .next_multiple_of(8)
            .clamp(8, PIECE);
        let chunk = Chunk {
            t0,
            t1,
            k,
            piece,
            cin,
            cout,
            packed: p.packed,
            v: (SharedMut(v.as_mut_ptr()), v.len(), vp),
            m: (SharedMut(m.as_mut_ptr()), m.len(), mp),
        };
        match p.tile {
            Tile::F2 => chunk.transform::<NE>(
                |ci, r, tmp, rows| input_rows(x, &src, grid, ci, r, tmp, rows),
                |co, r, tmp, rows| output_grad_rows(dy, &out, grid, co, r, tmp, rows),
            ),
            Tile::F4 => chunk.transform::<NE4>(
                |ci, r, tmp, rows| input_rows4(x, &src, grid, ci, r, tmp, rows),
                |co, r, tmp, rows| output_grad_rows4(dy, &out, grid, co, r, tmp, rows),
            ),
        }
        if k > t1 - t0 {
            // The chunk's last panel is partly past the tiles: zero its
            // tail steps in both operands.
            zero_tail(v, ne, vp, cin, k, t1 - t0, p.packed, NR);
            zero_tail(m, ne, mp, cout, k, t1 - t0, p.packed, MR);
        }
        let dub = SharedMut(du.as_mut_ptr());
        let (v, m): (&[T], &[T]) = (v, m);
        // One task per position and block of output channels (whole `MR`
        // panels): enough tasks for every thread (36 or 16 positions alone
        // leave 16 threads a third idle in the last round).
        let nb = (WGRAD_GEMM_TASKS * rayon::current_num_threads())
            .div_ceil(ne)
            .min(cout.div_ceil(MR));
        (0..ne * nb).into_par_iter().for_each(|task| {
            let (e, b) = (task / nb, task % nb);
            let (o0, o1) = panel_block(b, nb, cout, MR);
            // SAFETY: task (e, b) owns rows o0..o1 of `dU_e` (rows
            // e*cout + o0 .. e*cout + o1 of `du`); no other task touches them.
            let du_e = unsafe { std::slice::from_raw_parts_mut(dub.get().add((e * cout + o0) * cin), (o1 - o0) * cin) };
            if p.packed {
                let (v, m, du_e) = (f32s(v), f32s(m), f32s_mut(du_e));
                // SAFETY: `dM_e` holds ceil(cout/MR) panels of `k` steps (the
                // block's from row o0), `V_e` ceil(cin/NR) panels of `k`
                // steps, and `du_e` the block's o1 - o0 rows of cin.
                unsafe {
                    sgemm::gemm(
                        o1 - o0,
                        cin,
                        k,
                        m.as_ptr().add(e * mp + o0 * k),
                        MR * k,
                        v.as_ptr().add(e * vp),
                        NR * k,
                        du_e.as_mut_ptr(),
                        cin,
                        if c > 0 {
                            sgemm::Start::Accumulate
                        } else {
                            sgemm::Start::Zero
                        },
                    );
                }
            } else {
                // SAFETY: row-major `dM_e` (cout x k, the block's rows from
                // o0), `V_e` (cin x k) read transposed, `du_e` the block's
                // o1 - o0 rows of cin.
                unsafe {
                    T::gemm(
                        o1 - o0,
                        k,
                        cin,
                        T::ONE,
                        m.as_ptr().add(e * mp + o0 * k),
                        k as isize,
                        1,
                        v.as_ptr().add(e * vp),
                        1,
                        k as isize,
                        if c > 0 { T::ONE } else { T::ZERO },
                        du_e.as_mut_ptr(),
                        cin as isize,
                        1,
                    );
                }
            }
        });
    }
    let du: &[T] = du;
    let tile = p.tile;
    #[cfg(target_arch = "x86_64")]
    let fast = tile == Tile::F2 && avx2_f32::<T>();
    dw.par_chunks_mut(cin * 9).enumerate().for_each(|(co, dwo)| {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut c0 = 0;
        #[cfg(target_arch = "x86_64")]
        if fast {
            // Eight input channels at a time ([`weight_grad_out8_avx2`]):
            // resnet_3x3_14's weight gradient x1.10 / x1.11 at 1 / 2 threads
            // (per call, medians of 30 alternating pairs) against the
            // scalar loop below.
            let (du, dwo) = (f32s(du), f32s_mut(dwo));
            while c0 + 8 <= cin {
                let at = co * cin + c0;
                assert!((NE - 1) * cout * cin + at + 8 <= du.len());
                // SAFETY: AVX2 (`avx2_f32`); the 16 positions' eight values
                // lie in `du` (the last checked above); kernels c0..c0 + 8
                // of `dwo`.
                unsafe { weight_grad_out8_avx2(du[at..].as_ptr(), cout * cin, dwo[c0 * 9..(c0 + 8) * 9].as_mut_ptr()) };
                c0 += 8;
            }
        }
        for (ci, g) in dwo.chunks_exact_mut(9).enumerate().skip(c0) {
            let at = |e: usize| du[(e * cout + co) * cin + ci];
            g.copy_from_slice(&match tile {
                Tile::F2 => weight_grad_transform(&std::array::from_fn(at)),
                Tile::F4 => weight_grad_transform4(&std::array::from_fn(at)),
            });
        }
    });
}

/// One weight-gradient chunk: tiles `t0..t1` (`k` steps, a multiple of
/// [`LANES`]); its transformed input `V` and output gradient `dM` buffers,
/// each as (start, length, elements per position).
struct Chunk<T> {
    t0: usize,
    t1: usize,
    k: usize,
    /// Tiles per parallel piece of the transforms (at most [`PIECE`]).
    piece: usize,
    cin: usize,
    cout: usize,
    packed: bool,
    v: (SharedMut<T>, usize, usize),
    m: (SharedMut<T>, usize, usize),
}

impl<T: Element> Chunk<T> {
    /// Writes the chunk's transforms (`P` positions per tile) into `V` and
    /// `dM`, in parallel over pieces of `piece` tiles: `input(ci, tiles,
    /// scratch, rows)` transforms input channel `ci`, `grad(co, ...)` output
    /// gradient channel `co`. Element (channel `ch`, chunk tile `tt`) of
    /// position `e` lies at `e * plane + base(ch) + tt * stride`: packed
    /// `V_e` is `B` (tiles x cin, 16-channel panels), packed `dM_e` is `A`
    /// (cout x tiles, MR-channel panels); otherwise both are row-major, a row
    /// per channel.
    fn transform<const P: usize>(
        &self,
        input: impl Fn(usize, Range<usize>, &mut [[T; SEG]; P], &mut [[T; SEG]; P]) + Sync,
        grad: impl Fn(usize, Range<usize>, &mut [[T; SEG]; P], &mut [[T; SEG]; P]) + Sync,
    ) {
        let (t0, t1, k) = (self.t0, self.t1, self.k);
        let (vb, vlen, vp) = (&self.v.0, self.v.1, self.v.2);
        let (mb, mlen, mp) = (&self.m.0, self.m.1, self.m.2);
        let v_at = |ci: usize| {
            if self.packed {
                ((ci / NR) * NR * k + ci % NR, NR)
            } else {
                (ci * k, 1)
            }
        };
        let m_at = |co: usize| {
            if self.packed {
                ((co / MR) * MR * k + co % MR, MR)
            } else {
                (co * k, 1)
            }
        };
        let size = self.piece;
        (0..(t1 - t0).div_ceil(size)).into_par_iter().for_each(|piece| {
            let (a, b) = (t0 + piece * size, (t0 + (piece + 1) * size).min(t1));
            let mut tmp = [[T::ZERO; SEG]; P];
            if self.packed && avx2_f32::<T>() {
                // Groups of 8 input channels (half a `V` panel) and 6 output
                // channels (one `dM` panel), stored tile by tile through
                // transposes ([`store_channels`]).
                let mut group = [[[T::ZERO; SEG]; P]; 8];
                for ba in (a..b).step_by(SEG) {
                    let bb = (ba + SEG).min(b);
                    for ci0 in (0..self.cin).step_by(8) {
                        let g = (self.cin - ci0).min(8);
                        for (c, rows) in group.iter_mut().enumerate().take(g) {
                            input(ci0 + c, ba..bb, &mut tmp, rows);
                        }
                        // SAFETY: AVX2 and f32 (checked); the piece's tiles
                        // ba..bb of channels ci0..ci0 + 8 are this task's
                        // alone, and `store_channels` checks the extent.
                        unsafe { store_channels(vb.get(), vlen, vp, v_at(ci0), 8, ba - t0, &group, g, bb - ba) };
                    }
                    for co0 in (0..self.cout).step_by(MR) {
                        let g = (self.cout - co0).min(MR);
                        for (c, rows) in group.iter_mut().enumerate().take(g) {
                            grad(co0 + c, ba..bb, &mut tmp, rows);
                        }
                        // SAFETY: as above, for the MR-row panel of co0.
                        unsafe { store_channels(mb.get(), mlen, mp, m_at(co0), MR, ba - t0, &group, g, bb - ba) };
                    }
                }
                return;
            }
            let mut rows = [[T::ZERO; SEG]; P];
            for ba in (a..b).step_by(SEG) {
                let bb = (ba + SEG).min(b);
                for ci in 0..self.cin {
                    input(ci, ba..bb, &mut tmp, &mut rows);
                    store_rows(vb, vlen, vp, v_at(ci), ba - t0, &rows, bb - ba);
                }
                for co in 0..self.cout {
                    grad(co, ba..bb, &mut tmp, &mut rows);
                    store_rows(mb, mlen, mp, m_at(co), ba - t0, &rows, bb - ba);
                }
            }
        });
    }
}

/// Writes `rows[e][..n]` (one channel's transformed run) into a chunk
/// buffer of `len` elements: position `e`'s plane starts at `e * plane`,
/// the run's first element at `base + tt * stride` in it, the next ones
/// `stride` apart.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store_rows<T: Element, const P: usize>(
    dst: &SharedMut<T>,
    len: usize,
    plane: usize,
    (base, stride): (usize, usize),
    tt: usize,
    rows: &[[T; SEG]; P],
    n: usize,
) {
    assert!(P > 0 && (P - 1) * plane + base + (tt + n - 1) * stride < len);
    for (e, row) in rows.iter().enumerate() {
        // SAFETY: every element written lies inside the buffer (checked
        // above for the last position, the largest index); the run's tiles
        // belong to one piece of the chunk, and no other piece writes their
        // elements.
        unsafe {
            let mut p = dst.get().add(e * plane + base + tt * stride);
            for &val in &row[..n] {
                *p = val;
                p = p.add(stride);
            }
        }
    }
}

/// Zeroes steps `from..k` of every channel of each of the `ne` positions
/// (the tiles past the chunk's end in its last 16-tile panel), in a chunk
/// plane laid out as [`weight_grad`] describes (`width`-channel panels when
/// packed).
#[allow(clippy::too_many_arguments)]
fn zero_tail<T: Element>(
    buf: &mut [T],
    ne: usize,
    plane: usize,
    nch: usize,
    k: usize,
    from: usize,
    packed: bool,
    width: usize,
) {
    for e in 0..ne {
        let pl = &mut buf[e * plane..(e + 1) * plane];
        if packed {
            for panel in pl[..nch.div_ceil(width) * width * k].chunks_exact_mut(width * k) {
                panel[from * width..].fill(T::ZERO);
            }
        } else {
            for row in pl[..nch * k].chunks_exact_mut(k) {
                row[from..].fill(T::ZERO);
            }
        }
    }
}

/// `dg = G^T dU G` for one kernel (`du` at positions `4i + j`), as `dg[3ky + kx]`.
fn weight_grad_transform<T: Element>(du: &[T; NE]) -> [T; 9] {
    let half = T::from_f64(0.5);
    let mut r = [[T::ZERO; 3]; 4];
    for i in 0..4 {
        let (u0, u1, u2, u3) = (du[i * 4], du[i * 4 + 1], du[i * 4 + 2], du[i * 4 + 3]);
        r[i][0] = u0 + (u1 + u2) * half;
        r[i][1] = (u1 - u2) * half;
        r[i][2] = (u1 + u2) * half + u3;
    }
    let mut g = [T::ZERO; 9];
    for b in 0..3 {
        g[b] = r[0][b] + (r[1][b] + r[2][b]) * half;
        g[3 + b] = (r[1][b] - r[2][b]) * half;
        g[6 + b] = (r[1][b] + r[2][b]) * half + r[3][b];
    }
    g
}

#[cfg(test)]
mod tests {
    use super::{
        MR, NE, NE4, Tile, transform_weights, u_len, weight_grad_transform, weight_transform, weight_transform4,
    };
    use crate::geometry::{Conv2dSpec, Padding};

    /// The AVX2 inverse weight transform of eight kernels gives bitwise
    /// [`weight_grad_transform`] of each.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn weight_grad_out8_is_the_scalar_one() {
        if !crate::kernels::isa::avx2_f32::<f32>() {
            return;
        }
        let plane = 21;
        let du: Vec<f32> = (0..NE * plane)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let mut got = [f32::NAN; 72];
        // SAFETY: AVX2; 16 positions of 8 values each in `du`, 72 in `got`.
        unsafe { super::weight_grad_out8_avx2(du[3..].as_ptr(), plane, got.as_mut_ptr()) };
        for l in 0..8 {
            let want = weight_grad_transform(&std::array::from_fn(|e| du[3 + e * plane + l]));
            for t in 0..9 {
                assert_eq!(got[9 * l + t].to_bits(), want[t].to_bits(), "kernel {l}, tap {t}");
            }
        }
    }

    /// The packed weight transforms (F(2x2): four input channels at a time
    /// on AVX2, the rest one by one; F(4x4): 32 channels at a time) give
    /// bitwise [`weight_transform`] and [`weight_transform4`] of every
    /// kernel, zeros in a partial panel's rows past `c_out`, plain and
    /// flipped, with input channels off the groups.
    #[test]
    fn packed_weight_transform_is_the_scalar_one() {
        // 37 input channels: a first gather of 32 channels and one of 5 at
        // F(4x4), four-channel groups and a remainder of one at F(2x2).
        let (cin, cout) = (37, 13);
        let geom = Conv2dSpec::new(1, cin, 5, 5, cout, 3, 3)
            .padding(Padding::symmetric(1))
            .build()
            .unwrap();
        let w: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let ulen = u_len(true, cout, cin);
        for (tile, ne) in [(Tile::F2, NE), (Tile::F4, NE4)] {
            for flipped in [false, true] {
                let mut u = vec![f32::NAN; ne * ulen];
                transform_weights(&geom, tile, &w, flipped, true, &mut u);
                for o in 0..cout.div_ceil(MR) * MR {
                    for i in 0..cin {
                        let g = if flipped {
                            // `w` is then the layer (i, o)'s weights of c_in x c_out.
                            let k = &w[(i * cout + o.min(cout - 1)) * 9..][..9];
                            [[k[8], k[7], k[6]], [k[5], k[4], k[3]], [k[2], k[1], k[0]]]
                        } else {
                            let k = &w[(o.min(cout - 1) * cin + i) * 9..][..9];
                            [[k[0], k[1], k[2]], [k[3], k[4], k[5]], [k[6], k[7], k[8]]]
                        };
                        let want = match tile {
                            Tile::F2 => {
                                let mut ue = [0.0; NE4];
                                ue[..NE].copy_from_slice(&weight_transform(g));
                                ue
                            }
                            Tile::F4 => weight_transform4(g),
                        };
                        for (e, &v) in want[..ne].iter().enumerate() {
                            let v = if o >= cout { 0.0 } else { v };
                            let got = u[e * ulen + (o / MR) * MR * cin + i * MR + o % MR];
                            assert_eq!(
                                got.to_bits(),
                                v.to_bits(),
                                "{tile:?}, flipped {flipped}, o {o}, i {i}, e {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
