//! Weight gradient as dot products along the pixels, for layers whose
//! reduction per output channel is short (f32, AVX-512F):
//! LeNet's first layer has `K = c_in / groups * kh * kw = 25`.
//!
//! The weight gradient is the sum, over every output pixel, of the input patch
//! times the output delta. For group `g`, with `col_n` image `n`'s column
//! matrix (row `r = (ci * kh + ky) * kw + kx`, column `p`: the patch element
//! that tap `r` of pixel `p` reads):
//!
//! `dW_g[co][r] = sum over n, p of dY[n][g * cog + co][p] * col_n[r][p]`.
//!
//! Both operands are read along the pixels: `dY`'s channel planes in place,
//! and `col_n`'s rows either
//! - **from a padded copy of the input** ([`direct_chunk`]), where the
//!   output rows hold at least 16 pixels (and at strides above 1 the batch
//!   at least [`MIN_STRIDED_BATCH`] images): the copy is split into the
//!   stride's phase planes (one plane per channel at stride 1), and tap
//!   `r`'s row is then a phase plane read from the tap's offset, skipping
//!   `wq - ow` elements at the end of each output row, so 16 pixels are one
//!   or two runs of the plane, merged into one register; a few images'
//!   planes at a time stay in cache over all register blocks;
//! - or **copied** into a column tile one pixel tile at a time (tiles of
//!   [`COL_TILE_BYTES`], which stay in L1), for rows under 16 pixels: at
//!   stride 1 without padding run by run ([`tap_runs_avx512`]), else by
//!   [`im2col_tile`].
//!
//! A register block of [`CB`] output channels x [`RB`] taps keeps 20 vector
//! sums; each step loads 4 + 5 vectors for 20 fused multiply-adds, and lane
//! `l` of a sum adds the pixels `p0 + l, p0 + l + LANES, ...` of each tile
//! in turn. From the padded copies, the sums stay in registers over a group
//! of images; through column tiles, over one tile. No `dY^T` is packed: the
//! implicit path ([`super::implicit_wgrad`]) transposed `dY` for every output
//! row, which took a third of lenet_c1's pass there (20 channels, 25 taps:
//! little work per pixel to hide it under).
//!
//! Reading padded copies instead of building column tiles (1 thread, 8
//! alternating runs, ms a call): lenet_c1 0.55 -> 0.42 (88 GFLOP/s); LeNet's
//! first layer with 'same' padding 0.97 -> 0.72; 128 CIFAR images of 3 -> 32
//! channels, 3x3, no padding 3.65 -> 3.5, padding 1 5.0 -> 3.5; through
//! phase planes at stride 2 (5 alternating runs), a MobileNet stem (32 x 3 x
//! 224 x 224 -> 32, 3x3, padding 1) 16.4 -> 14.2 and the CIFAR layer at
//! stride 2 1.46 -> 1.27. The tile copies were a fifth of lenet_c1's pass,
//! the per-tile reloads of the sums and a left-to-right fold of their lanes
//! most of the rest. Sweeping each pixel tile through all blocks before the
//! next (rows in L1, sums reloaded per tile) instead of whole images (rows
//! from L2) was slower on those three: 14.2 -> 16.1, 1.27 -> 1.21 (the one
//! gain) and 3.3 -> 4.3 ms.
//!
//! Work units are (image chunk, group): chunks are runs of (image, tile)
//! pairs fixed by the geometry ([`weight_grad_chunks`]); a chunk's sums are
//! reduced lane by lane in a fixed tree ([`lane_sum`]) into `dW` (chunk 0)
//! or its own partial buffer, and the partial buffers into `dW` in chunk
//! order. So results do not depend on the thread count. (Forced to AVX2, the
//! implicit path runs these layers: its results differ in the last bits.)

use super::im2col::im2col_tile;
use super::parallel::{Tiling, chunk_images, chunk_pairs, parts_for, run_tasks, weight_grad_chunks};
use super::sgemm::split_aligned;
use crate::geometry::Conv2dGeometry;

/// Longest reduction per output channel (`c_in / groups * kh * kw`) for the
/// dot-product weight gradient. LeNet's first layer (25) measured 31.4 ->
/// 37.3 GFLOP/s at 1 thread against the implicit path (per-run ratio median
/// 1.18, 9 alternating runs) and 55.4 -> 69.9 at 2. The next suite layer,
/// cifar_3x3 (288), is far above; no suite row measures the crossover
/// between. (Session 17 made lenet_c1's x1.39 faster again; the
/// crossover was not measured again.)
pub(crate) const MAX_K: usize = 32;

/// Bytes of one column tile: the tile's `K` rows stay in L1 (48 KiB here)
/// beside the block's rows of `dY` while every register block passes over
/// them (LeNet's first layer: 25 rows of 240 pixels, 23 KiB).
const COL_TILE_BYTES: usize = 24 * 1024;

/// Bytes of the padded input planes of one group of images, over which
/// the sums stay in registers ([`direct_chunk`]): three CIFAR images of 3
/// channels (34 x 34 padded), a whole chunk of LeNet's. On 128 CIFAR
/// images, 3 -> 32 channels with padding 1, 48 KiB ran 3.4-3.7 ms a call
/// against 3.6-4.0 for 16 KiB (one image) and 4.1-4.9 for 8 KiB.
const GROUP_BYTES: usize = 48 * 1024;

/// Output channels per register block.
const CB: usize = 4;

/// Taps per register block.
const RB: usize = 5;

/// Whether the dot-product weight gradient runs `geom` with element type
/// `T`: f32 with AVX-512F in use, a reduction of at most [`MAX_K`] per
/// output channel, not pointwise (which needs no column tile and goes to
/// the GEMM path). Its 20 sums and 9 operands need 29 vector registers: on
/// AVX2's 16 they spill, and lenet_c1 measured a per-run ratio of 0.93
/// against the implicit path there (5 alternating runs), which AVX2 keeps.
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    super::packed_path::<T>()
        && super::isa::isa() == super::isa::Isa::Avx512
        && !geom.is_pointwise()
        && geom.k_len() <= MAX_K
}

/// How one dot-product weight-gradient call is cut into tasks.
pub(crate) struct Plan {
    tiles: Tiling,
    /// Whether the sums read padded phase planes of the input ([`direct_eligible`]).
    direct: bool,
    /// Images per group of padded copies ([`direct_chunk`]).
    group_images: usize,
    nchunks: usize,
    ntasks: usize,
    /// Register blocks of output channels and of taps.
    cblocks: usize,
    rblocks: usize,
    col_len: usize,
    zero_len: usize,
    acc_len: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) partials_len: usize,
}

/// Lanes of the sums' vectors (AVX-512F).
const LANES: usize = 16;

pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    let (groups, k) = (geom.groups(), geom.k_len());
    let direct = direct_eligible(geom);
    // Through a column tile, a tile's bytes are its K rows. From padded
    // copies, tiles only cut images into chunks where the batch is short;
    // they are sized by the register block's rows of dY and the input rows
    // its taps read.
    let rows = if direct { CB + geom.cig() * geom.kh() } else { k };
    let tiles = Tiling::for_rows_in::<f32>(geom, rows, 1, COL_TILE_BYTES);
    let nchunks = weight_grad_chunks(geom, groups, tiles.ntiles);
    let ntasks = nchunks * groups;
    let (cblocks, rblocks) = (geom.cog().div_ceil(CB), k.div_ceil(RB));
    // The padded copies of a group of images stand in the column tile's
    // place, and no zero row exists.
    let group_images = (GROUP_BYTES / (padded_image_len(geom) * std::mem::size_of::<f32>())).max(1);
    let (col_len, zero_len) = if direct {
        (group_images * padded_image_len(geom), 0)
    } else {
        (k * tiles.max_len(), tiles.max_len())
    };
    let acc_len = cblocks * rblocks * CB * RB * LANES;
    Plan {
        tiles,
        direct,
        group_images,
        nchunks,
        ntasks,
        cblocks,
        rblocks,
        col_len,
        zero_len,
        acc_len,
        parts: parts_for(ntasks),
        // The column tile, a zero row standing in for the rows past `cog`
        // or `K` in the last blocks, and the sums, each from a 64-byte line.
        scratch_len: col_len + zero_len + acc_len + 3 * LANES,
        partials_len: (nchunks - 1) * geom.weight_len(),
    }
}

/// `dw = conv_weight_grad(x, dy)` for an [`eligible`] geometry; lengths
/// already checked; `scratch` and `partials` hold the plan's lengths.
pub(crate) fn weight_grad(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    scratch: &mut [f32],
    partials: &mut [f32],
) {
    let (c_in, c_out, cig, cog, k) = (geom.c_in(), geom.c_out(), geom.cig(), geom.cog(), geom.k_len());
    let (hw, ohw) = (geom.h() * geom.w(), geom.oh() * geom.ow());
    let groups = geom.groups();
    let targets = super::weight_grad::ChunkTargets::new(dw, partials, p.nchunks);
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let (g, chunk) = (task % groups, task / groups);
        let (col, rest) = split_aligned(slot, p.col_len);
        let (zero, rest) = split_aligned(rest, p.zero_len);
        let (acc, _) = split_aligned(rest, p.acc_len);
        zero.fill(0.0);
        acc.fill(0.0);
        if p.direct {
            // SAFETY: AVX-512F (`eligible`), a `direct_eligible` geometry;
            // `x` and `dy` hold the whole batch (checked by the caller),
            // `acc` the plan's sums.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                direct_chunk(geom, p, x, dy, g, chunk, col, acc)
            };
        } else {
            for (n, t) in chunk_pairs(chunk, p.nchunks, geom.n(), p.tiles.ntiles) {
                let (p0, p1) = p.tiles.range(t);
                let tl = p1 - p0;
                let xg = &x[(n * c_in + g * cig) * hw..(n * c_in + (g + 1) * cig) * hw];
                let col = &mut col[..k * tl];
                #[cfg(target_arch = "x86_64")]
                if runs_eligible(geom) {
                    // SAFETY: AVX-512F (`eligible`).
                    unsafe { tap_runs_avx512(geom, xg, cig, p0, p1, col) };
                } else {
                    im2col_tile(geom, xg, cig, p0, p1, col);
                }
                #[cfg(not(target_arch = "x86_64"))]
                im2col_tile(geom, xg, cig, p0, p1, col);
                let col = &*col;
                let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
                // Row pointers: output channel co's row of dY (in place), tap
                // r's row of the tile; the zero row past cog or K.
                let dy_row = |co: usize| {
                    if co < cog {
                        dyg[co * ohw + p0..].as_ptr()
                    } else {
                        zero.as_ptr()
                    }
                };
                let col_row = |r: usize| if r < k { col[r * tl..].as_ptr() } else { zero.as_ptr() };
                // Each register block sums the whole tile: its 4 rows of dY
                // stay in L1 while the tile's rows pass, and its sums are
                // loaded and stored once per tile.
                for cb in 0..p.cblocks {
                    let d: [*const f32; CB] = std::array::from_fn(|c| dy_row(cb * CB + c));
                    for rb in 0..p.rblocks {
                        let c: [*const f32; RB] = std::array::from_fn(|r| col_row(rb * RB + r));
                        let at = (cb * p.rblocks + rb) * CB * RB * LANES;
                        let sums = acc[at..at + CB * RB * LANES].as_mut_ptr();
                        // SAFETY: the plan chose this path only where AVX-512F
                        // runs (`eligible`); every row holds tl readable
                        // elements (the tile's pixels of dY's planes and of the
                        // column tile's rows, the zero row of max_len >= tl);
                        // `sums` addresses CB * RB * LANES elements of this
                        // task's scratch.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            block_avx512(d, c, tl, sums)
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        let _ = (d, c, sums);
                    }
                }
            }
        }
        let target = targets.get(chunk);
        for co in 0..cog {
            for r in 0..k {
                let (cb, c, rb, rr) = (co / CB, co % CB, r / RB, r % RB);
                let at = (cb * p.rblocks + rb) * CB * RB * LANES + (c * RB + rr) * LANES;
                let v = lane_sum(acc[at..at + LANES].try_into().expect("16 lanes"));
                // SAFETY: row g*cog + co, column r of this chunk's target:
                // no other task of the chunk has group g.
                unsafe { *target.add((g * cog + co) * k + r) = v };
            }
        }
    });
    if p.nchunks > 1 {
        super::weight_grad::add_partials(dw, partials, p.nchunks - 1);
    }
}

/// The 16 lanes of one sum added in a fixed tree, halves first (lane `l`
/// with lane `l + 8`, then `l + 4`, `l + 2`, `l + 1`): the same order on
/// every call, and short dependency chains, unlike a left-to-right fold
/// (the chunks' 500 folds of lenet_c1 took 7% of its pass).
fn lane_sum(lanes: &[f32; LANES]) -> f32 {
    let mut v = *lanes;
    for half in [8, 4, 2, 1] {
        for i in 0..half {
            v[i] += v[i + half];
        }
    }
    v[0]
}

/// Whether the sums read the input from padded phase planes, with no
/// column tile ([`direct_chunk`]): output rows of at least 16 pixels, so
/// that a vector of 16 pixels spans at most two of them, and at strides
/// above 1 a batch of at least [`MIN_STRIDED_BATCH`] images.
fn direct_eligible(geom: &Conv2dGeometry) -> bool {
    geom.ow() >= LANES && (geom.stride() == (1, 1) || geom.n() >= MIN_STRIDED_BATCH)
}

/// Fewest images for the phase planes at strides above 1. A MobileNet stem
/// (3 -> 32 channels, 3x3, stride 2, 224 x 224) measured 16.4 -> 14.2 ms
/// against the column tiles on 32 images, but 0.38 -> 0.42-0.55 ms on one
/// (6 chunks of one image, each copying its rows into phase planes): at
/// batch 16 the chunks hold whole images. The crossover between was not
/// measured.
const MIN_STRIDED_BATCH: usize = 16;

/// Height and width of the phase planes of the padded input: at stride
/// `(sh, sw)`, phase `(a, b)` of padded plane `xp` holds `xp[a + i * sh][b +
/// j * sw]` (zero past `xp`'s edge), `ceil(hp / sh) x ceil(wp / sw)`.
fn phase_dims(geom: &Conv2dGeometry) -> (usize, usize) {
    let (top, bottom, left, right) = geom.padding();
    let (sh, sw) = geom.stride();
    (
        (geom.h() + top + bottom).div_ceil(sh),
        (geom.w() + left + right).div_ceil(sw),
    )
}

/// Elements of one image's phase planes of one group: `sh * sw` per input
/// channel.
fn padded_image_len(geom: &Conv2dGeometry) -> usize {
    let (hq, wq) = phase_dims(geom);
    let (sh, sw) = geom.stride();
    geom.cig() * sh * sw * hq * wq
}

/// Adds chunk `chunk`'s (image, tile) pairs of group `g` to the sums of
/// every register block, reading `dY`'s planes in place and the input from
/// padded copies: images are taken in groups of the plan's `group_images`,
/// whose group-`g` planes are copied into `pad` with zero borders, split
/// into the stride's phase planes ([`phase_dims`], `hq x wq`; one plane per
/// channel at stride 1).
///
/// Tap `r = (ci * kh + ky) * kw + kx` reads padded row `oy * sh + ky * dh`
/// and column `ox * sw + kx * dw` for pixel `p = oy * ow + ox`. That is
/// phase `(ky * dh % sh, kx * dw % sw)`, row `oy + ky * dh / sh` and column
/// `ox + kx * dw / sw`, so the pixel reads `xq[off_r + oy * wq + ox]`, which
/// is `xq[off_r + p + oy * gap]`, with `off_r` the phase plane's start plus
/// `(ky * dh / sh) * wq + kx * dw / sw` and `gap` equal to `wq - ow`: every
/// stride reads like stride 1.
///
/// A vector of 16 pixels from `p` is contiguous in `dY`; in `xq` it is two
/// runs, the lanes still in row `oy` from `off_r + p + oy * gap` and those
/// in row `oy + 1` from `gap` further on: two loads blended into one
/// register, or one load where the row does not end (masked loads only in
/// a tile's last step: they made lenet_c1 7% slower where used throughout).
/// Each register block keeps its sums in registers over a whole group. The
/// copies cost about 2% of lenet_c1's pass and make padding free (no bounds
/// in the loop). Rows past `cog` and taps past `K` in the last blocks read
/// channel 0 and tap 0 again, into sums that are never read.
///
/// # Safety
/// AVX-512F; a [`direct_eligible`] geometry; `x` and `dy` hold at least the
/// batch's input and `dY` (asserted); `pad` and `acc` hold the plan's
/// padded copies and sums (asserted).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn direct_chunk(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    dy: &[f32],
    g: usize,
    chunk: usize,
    pad: &mut [f32],
    acc: &mut [f32],
) {
    let (c_in, c_out, cig, cog, k) = (geom.c_in(), geom.c_out(), geom.cig(), geom.cog(), geom.k_len());
    let (h, w, kh, kw, oh, ow) = (geom.h(), geom.w(), geom.kh(), geom.kw(), geom.oh(), geom.ow());
    let (hq, wq) = phase_dims(geom);
    let (sh, sw) = geom.stride();
    let (top, _, left, _) = geom.padding();
    let (ohw, img, plane) = (oh * ow, padded_image_len(geom), hq * wq);
    let (dh, dw) = geom.dilation();
    let tap = |r: usize| {
        let r = if r < k { r } else { 0 };
        let (ci, yk, xk) = (r / (kh * kw), r / kw % kh * dh, r % kw * dw);
        ((ci * sh + yk % sh) * sw + xk % sw) * plane + yk / sh * wq + xk / sw
    };
    // Every pixel reads inside its image's copy (each tap's last pixel:
    // off_r + (oh - 1) * wq + ow - 1) and inside `dy`.
    assert!(g < geom.groups() && acc.len() >= p.acc_len && pad.len() >= p.group_images * img);
    assert!((0..k).all(|r| tap(r) + (oh - 1) * wq + ow <= img) && ow <= wq);
    assert!(geom.n() * c_out * ohw <= dy.len() && geom.n() * c_in * h * w <= x.len());
    let images = || chunk_images(chunk, p.nchunks, geom.n(), p.tiles.ntiles);
    let nimages = images().count();
    let mut a = 0;
    while a < nimages {
        let group = || images().skip(a).take(p.group_images).enumerate();
        // An image's tiles in the chunk are one run of its pixels.
        let run = |tiles: std::ops::Range<usize>| (p.tiles.range(tiles.start).0, p.tiles.range(tiles.end - 1).1);
        for (j, (n, tiles)) in group() {
            // Only the padded rows the run's output rows read (a chunk may
            // hold part of an image), oy0 * sh ..= oy1 * sh + (kh - 1) * dh,
            // each written whole: zeros, then the image row if it is one.
            // The other rows are never read.
            let (p0, p1) = run(tiles);
            let (oy0, oy1) = (p0 / ow, (p1 - 1) / ow);
            // Where an image row fills its phase row, no zeros are needed.
            let whole = sw == 1 && wq == w;
            for ci in 0..cig {
                let src = &x[(n * c_in + g * cig + ci) * h * w..][..h * w];
                let dst = &mut pad[j * img + ci * sh * sw * plane..][..sh * sw * plane];
                for yp in oy0 * sh..=oy1 * sh + (kh - 1) * dh {
                    // Padded row yp is row i of the phases (a, b).
                    let (a, i) = (yp % sh, yp / sh);
                    let row = yp.checked_sub(top).filter(|&y| y < h).map(|y| &src[y * w..][..w]);
                    if !(whole && row.is_some()) {
                        for b in 0..sw {
                            dst[(a * sw + b) * plane + i * wq..][..wq].fill(0.0);
                        }
                    }
                    let Some(row) = row else { continue };
                    if sw == 1 {
                        dst[a * plane + i * wq + left..][..w].copy_from_slice(row);
                        continue;
                    }
                    for b in 0..sw {
                        // Its columns x with (x + left) % sw == b, from x0.
                        let x0 = (b + sw - left % sw) % sw;
                        let at = (a * sw + b) * plane + i * wq + (x0 + left) / sw;
                        let dst = &mut dst[at..at + (w.saturating_sub(x0)).div_ceil(sw)];
                        for (d, &v) in dst.iter_mut().zip(row.iter().skip(x0).step_by(sw)) {
                            *d = v;
                        }
                    }
                }
            }
        }
        let pairs = || {
            group().map(|(j, (n, tiles))| {
                let (p0, p1) = run(tiles);
                (j * img, (n * c_out + g * cog) * ohw, p0, p1)
            })
        };
        for cb in 0..p.cblocks {
            let d: [usize; CB] = std::array::from_fn(|c| {
                let co = cb * CB + c;
                if co < cog { co * ohw } else { 0 }
            });
            for rb in 0..p.rblocks {
                let taps: [usize; RB] = std::array::from_fn(|r| tap(rb * RB + r));
                let at = (cb * p.rblocks + rb) * CB * RB * LANES;
                // SAFETY: AVX-512F; every pair's pixels read inside `dy`'s
                // planes and, at the tap offsets, inside its image's copy
                // in `pad` (asserted above); the sums lie in `acc`.
                unsafe {
                    block_direct(
                        pad.as_ptr(),
                        dy.as_ptr(),
                        d,
                        taps,
                        (ow, wq - ow),
                        pairs(),
                        acc[at..at + CB * RB * LANES].as_mut_ptr(),
                    )
                };
            }
        }
        a += p.group_images;
    }
}

/// The register block of [`direct_chunk`]: for each pair `(xo, dyo, p0,
/// p1)`, `sums[(c * RB + r) * LANES + l] += dy[dyo + d[c] + q] * x[xo +
/// taps[r] + q + oy(q) * gap]` for the pixels `q = p0 + 16 s + l < p1`, `oy(q)
/// = q / ow`.
///
/// # Safety
/// AVX-512F; `ow >= 16`; `p0 <= p1 <= oh * ow`; every element named above
/// is readable; `sums` addresses `CB * RB * LANES` elements.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn block_direct(
    x: *const f32,
    dy: *const f32,
    d: [usize; CB],
    taps: [usize; RB],
    (ow, gap): (usize, usize),
    pairs: impl Iterator<Item = (usize, usize, usize, usize)>,
    sums: *mut f32,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract throughout. Full loads run only where
    // all 16 pixels are below p1: each lane's address then lies between
    // lane 0's of the run in row oy and lane 15's of the run in row oy + 1
    // (or of the same run), both readable elements of one buffer. Masked-off
    // lanes are not read, and pointers that only masked loads use are formed
    // with `wrapping_add`.
    unsafe {
        let mut s: [[__m512; RB]; CB] =
            std::array::from_fn(|c| std::array::from_fn(|r| _mm512_loadu_ps(sums.add((c * RB + r) * LANES))));
        for (xo, dyo, p0, p1) in pairs {
            let dc: [*const f32; CB] = d.map(|o| dy.add(dyo + o));
            let xr: [*const f32; RB] = taps.map(|t| x.add(xo + t));
            let (mut q, mut oy, mut c0) = (p0, p0 / ow, p0 % ow);
            while q < p1 {
                let m = super::lanes16(0, (p1 - q) as isize);
                // Lanes still in row oy, and those in row oy + 1.
                let ma = m & super::lanes16(0, (ow - c0) as isize);
                let mb = m & !ma;
                let off = q + oy * gap;
                let dv: [__m512; CB] = if m == !0 {
                    dc.map(|r| _mm512_loadu_ps(r.add(q)))
                } else {
                    dc.map(|r| _mm512_maskz_loadu_ps(m, r.wrapping_add(q)))
                };
                let xv: [__m512; RB] = if ma == !0 {
                    xr.map(|r| _mm512_loadu_ps(r.add(off)))
                } else if m == !0 {
                    xr.map(|r| _mm512_mask_blend_ps(mb, _mm512_loadu_ps(r.add(off)), _mm512_loadu_ps(r.add(off + gap))))
                } else {
                    xr.map(|r| {
                        let v = _mm512_maskz_loadu_ps(ma, r.add(off));
                        _mm512_mask_loadu_ps(v, mb, r.wrapping_add(off + gap))
                    })
                };
                for (row, dv) in s.iter_mut().zip(dv) {
                    for (v, xv) in row.iter_mut().zip(xv) {
                        *v = _mm512_fmadd_ps(dv, xv, *v);
                    }
                }
                q += LANES;
                c0 += LANES;
                if c0 >= ow {
                    (c0, oy) = (c0 - ow, oy + 1);
                }
            }
        }
        for (c, row) in s.iter().enumerate() {
            for (r, v) in row.iter().enumerate() {
                _mm512_storeu_ps(sums.add((c * RB + r) * LANES), *v);
            }
        }
    }
}

/// Whether [`tap_runs_avx512`] builds the column tiles of `geom`: stride 1
/// and no padding, so that every tap's row is, output row by output row, a
/// run of an input row.
fn runs_eligible(geom: &Conv2dGeometry) -> bool {
    geom.stride() == (1, 1) && geom.padding() == (0, 0, 0, 0)
}

/// The column tile of [`im2col_tile`] for pixels `p0..p1` (the same values)
/// for a [`runs_eligible`] geometry: row `r = (ci * kh + ky) * kw + kx`,
/// output row `oy`'s columns `c0..c1` copied from input row `oy + ky * dh`
/// of channel `ci`, columns `c0 + kx * dw ..`, sixteen lanes at a time
/// through masks. LeNet's first layer has 24-pixel runs; `im2col_tile`'s
/// general walk took a third of its weight gradient.
///
/// # Safety
/// AVX-512F must be available (every run is checked to lie inside `x` and
/// `col`: `x` holds the `nch` planes, `col` the `nch * kh * kw x (p1 - p0)`
/// tile).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tap_runs_avx512(geom: &Conv2dGeometry, x: &[f32], nch: usize, p0: usize, p1: usize, col: &mut [f32]) {
    use std::arch::x86_64::*;
    let (w, hw, ow, kh, kw) = (geom.w(), geom.h() * geom.w(), geom.ow(), geom.kh(), geom.kw());
    let (dh, dw) = geom.dilation();
    let tl = p1 - p0;
    let mut p = p0;
    while p < p1 {
        let (oy, c0) = (p / ow, p % ow);
        let len = (ow - c0).min(p1 - p);
        let q = p - p0;
        for ci in 0..nch {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = (ci * kh + ky) * kw + kx;
                    // Stride 1, no padding: input row oy + ky*dh < h and
                    // columns c0 + kx*dw .. + len <= w lie in the plane.
                    let src = ci * hw + (oy + ky * dh) * w + c0 + kx * dw;
                    let dst = r * tl + q;
                    assert!(src + len <= x.len() && dst + len <= col.len());
                    let mut j = 0;
                    while j < len {
                        let m: __mmask16 = if len - j >= LANES { !0 } else { (1u16 << (len - j)) - 1 };
                        // SAFETY: lanes j .. min(len, j + 16) of the run,
                        // inside `x` and `col` (checked above); masked-off
                        // lanes are not accessed.
                        unsafe {
                            let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(src + j));
                            _mm512_mask_storeu_ps(col.as_mut_ptr().add(dst + j), m, v);
                        }
                        j += LANES;
                    }
                }
            }
        }
        p += len;
    }
}

/// `sums[(c * RB + r) * LANES + l] += sum over steps s of d[c][s LANES + l] *
/// x[r][s LANES + l]` for `tl` elements of each row (the last step masked).
///
/// # Safety
/// The width's instruction set; each row holds `tl` readable elements;
/// `sums` addresses `CB * RB * V::LANES` elements.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block<V: super::simd::F32x>(d: [*const f32; CB], x: [*const f32; RB], tl: usize, sums: *mut f32) {
    // SAFETY: the caller's contract throughout.
    unsafe {
        let mut s: [[V; RB]; CB] =
            std::array::from_fn(|c| std::array::from_fn(|r| V::load(sums.add((c * RB + r) * V::LANES))));
        let full = tl / V::LANES * V::LANES;
        let mut q = 0;
        while q < full {
            let dv: [V; CB] = std::array::from_fn(|c| V::load(d[c].add(q)));
            let xv: [V; RB] = std::array::from_fn(|r| V::load(x[r].add(q)));
            for (row, dc) in s.iter_mut().zip(dv) {
                for (v, xr) in row.iter_mut().zip(xv) {
                    *v = dc.mul_add(xr, *v);
                }
            }
            q += V::LANES;
        }
        if q < tl {
            let m = tl - q;
            let dv: [V; CB] = std::array::from_fn(|c| V::load_range(d[c].add(q), 0, m));
            let xv: [V; RB] = std::array::from_fn(|r| V::load_range(x[r].add(q), 0, m));
            for (row, dc) in s.iter_mut().zip(dv) {
                for (v, xr) in row.iter_mut().zip(xv) {
                    *v = dc.mul_add(xr, *v);
                }
            }
        }
        for (c, row) in s.iter().enumerate() {
            for (r, v) in row.iter().enumerate() {
                v.store(sums.add((c * RB + r) * V::LANES));
            }
        }
    }
}

/// [`block`] on 16 lanes.
///
/// # Safety
/// AVX-512F; as [`block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(d: [*const f32; CB], x: [*const f32; RB], tl: usize, sums: *mut f32) {
    // SAFETY: the caller's contract.
    unsafe { block::<std::arch::x86_64::__m512>(d, x, tl, sums) }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dSpec, Padding};

    /// The runs give `im2col_tile`'s column tile, bit for bit, on tiles that
    /// start and end inside output rows, with dilation and two channels;
    /// every element of a NaN-poisoned tile is written.
    #[test]
    fn tap_runs_match_im2col() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for (spec, tiles) in [
            (
                Conv2dSpec::new(1, 2, 30, 21, 3, 3, 4).dilation(2, 2),
                [(0, 192), (192, 390), (17, 50)],
            ),
            (
                Conv2dSpec::new(1, 1, 28, 28, 20, 5, 5),
                [(0, 576), (0, 192), (200, 397)],
            ),
            (
                Conv2dSpec::new(1, 3, 9, 40, 4, 2, 3).padding(Padding::Valid),
                [(0, 304), (33, 34), (1, 300)],
            ),
        ] {
            let geom = spec.build().unwrap();
            assert!(runs_eligible(&geom));
            let (nch, k) = (geom.c_in(), geom.k_len());
            let x: Vec<f32> = (0..nch * geom.h() * geom.w())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            for (p0, p1) in tiles {
                let tl = p1 - p0;
                let mut want = vec![f32::NAN; k * tl];
                im2col_tile(&geom, &x, nch, p0, p1, &mut want);
                let mut got = vec![f32::NAN; k * tl];
                // SAFETY: AVX-512F (checked above); `x` holds the planes,
                // `got` the tile.
                unsafe { tap_runs_avx512(&geom, &x, nch, p0, p1, &mut got) };
                let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{geom:?} tile {p0}..{p1}");
            }
        }
    }
}
