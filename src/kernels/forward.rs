//! Optimized forward pass: im2col tiles + GEMM. [`forward`] first hands
//! the geometries other paths serve better to them: Winograd
//! ([`super::winograd`]), few input channels ([`super::small_cin`]),
//! implicit GEMM ([`super::implicit`]).
//!
//! For image `n` and group `g`, with `K = cig * kh * kw`:
//! `Y[n][g*cog .. (g+1)*cog][p0..p1] = b + sum over channel blocks c0..c1 of
//! W_g[:, c0*kh*kw .. c1*kh*kw] * col(c0..c1, p0..p1)`,
//! where `col` is the [im2col tile](super::im2col) of those channels and
//! pixels. The GEMMs write straight into the output (row stride `oh * ow`):
//! the bias is written first and every block accumulates onto it
//! (`beta = 1`). The column tile (block rows x tile pixels) fits in
//! `COL_TILE_BYTES`; blocks have at least `MIN_BLOCK_ROWS` rows, so a small
//! image (resnet 14x14) stays one pixel tile and its weights are packed once,
//! while a large image (the 224x224 stem) is cut into pixel tiles. Pointwise
//! convolutions (1x1, stride 1, no padding) skip im2col: the input channels of
//! the group already are the column matrix (row stride `h * w`).
//!
//! Tasks are (image, group, pixel tile); when images x groups are fewer than
//! [`TASKS_PER_THREAD`] per thread the image is cut into more, smaller tiles so
//! batch 1 still uses every thread. The channel blocks depend on the geometry
//! only and the pixel tiles change no bit, so results do not depend on the
//! thread count.

use super::im2col::{im2col_panels, im2col_tile};
use super::implicit::Weights;
use super::parallel::{Blocks, SharedMut, TASKS_PER_THREAD, Tiling, block_plan, parts_for, run_tasks};
use super::sgemm::{self, MR, NR};
use super::{f32s, f32s_mut};
use crate::element::Element;
use crate::geometry::Conv2dGeometry;
use crate::workspace::Workspace;

/// How one forward call is cut into tasks and blocks.
pub(crate) struct Plan {
    tiles: Tiling,
    blocks: Blocks,
    ntasks: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    /// Elements of the weights packed for the f32 kernel (0 on the
    /// matrixmultiply path).
    pub(crate) packed_len: usize,
}

pub(crate) fn plan<T>(geom: &Conv2dGeometry) -> Plan {
    let (cig, khkw) = (geom.cig(), geom.kh() * geom.kw());
    let outer = geom.n() * geom.groups();
    let min_tiles = (rayon::current_num_threads() * TASKS_PER_THREAD).div_ceil(outer);
    // The channel blocks change the summation order, so they come from the
    // geometry alone; the thread count may only cut the pixels into more
    // tiles, which changes no bit.
    let packed = super::packed_path::<T>();
    let (blocks, base) = block_plan::<T>(geom, packed);
    let blocks = if geom.is_pointwise() {
        Blocks::new(cig, 1)
    } else {
        blocks
    };
    let tiles = if min_tiles > base.ntiles {
        Tiling::new(geom.oh() * geom.ow(), min_tiles)
    } else {
        base
    };
    let ntasks = outer * tiles.ntiles;
    let parts = parts_for(ntasks);
    let (scratch_len, packed_len) = if packed {
        // B panels of the widest block and tile, plus room to align them,
        // plus `im2col_panels`' scratch for one channel.
        let rows = if geom.is_pointwise() {
            cig
        } else {
            blocks.max_len() * khkw
        };
        let tmp = if geom.is_pointwise() {
            0
        } else {
            super::im2col::panels_tmp_len(geom, tiles.max_len())
        };
        (
            sgemm::packed_b_len(rows, tiles.max_len()) + NR + tmp,
            geom.groups() * (sgemm::packed_a_len(geom.cog(), geom.k_len()) + geom.cog().next_multiple_of(MR)) + NR,
        )
    } else if geom.is_pointwise() {
        (0, 0)
    } else {
        (blocks.max_len() * khkw * tiles.max_len(), 0)
    };
    Plan {
        tiles,
        blocks,
        ntasks,
        parts,
        scratch_len,
        packed_len,
    }
}

/// `y = conv(x, w) + bias`; lengths already checked against `geom`.
pub(crate) fn forward<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    ws: &mut Workspace<T>,
) {
    if super::winograd_s2::selected::<T>(geom) {
        let p = super::winograd_s2::plan(geom);
        let (scratch, _, packed) = ws.parts_mut(p.parts * p.scratch_len, 0, p.packed_len);
        super::winograd_s2::forward(geom, &p, x, w, bias, y, packed, scratch);
        return;
    }
    if let Some(tile) = super::winograd::selected::<T>(geom) {
        let p = super::winograd::plan::<T>(geom, tile);
        let (scratch, _, packed) = ws.parts_mut(p.parts * p.scratch_len, 0, p.packed_len);
        super::winograd::forward(geom, &p, x, w, false, bias, y, packed, scratch);
        return;
    }
    if super::small_cin::eligible::<T>(geom) {
        let p = super::small_cin::plan(geom);
        let f = ws.f32_parts(p.parts * p.scratch_len, 0, p.packed_len, p.index_len);
        let (x, w, bias, y) = (f32s(x), f32s(w), bias.map(f32s), f32s_mut(y));
        super::small_cin::forward(geom, &p, x, w, bias, y, f.packed, f.scratch, f.index);
        return;
    }
    if super::implicit::eligible::<T>(geom) {
        let p = super::implicit::plan(geom);
        let f = ws.f32_parts(p.parts * p.scratch_len, 0, p.packed_len, p.index_len);
        let (x, w, bias, y) = (f32s(x), Weights::Oihw(f32s(w)), bias.map(f32s), f32s_mut(y));
        super::implicit::forward(geom, &p, x, w, bias, y, f.packed, f.scratch, f.index);
        return;
    }
    let p = plan::<T>(geom);
    if p.packed_len > 0 {
        let f = ws.f32_parts(p.parts * p.scratch_len, 0, p.packed_len, 0);
        forward_packed(
            geom,
            &p,
            f32s(x),
            f32s(w),
            bias.map(f32s),
            f32s_mut(y),
            f.packed,
            f.scratch,
        );
        return;
    }
    let (c_in, c_out, groups, cig, cog, k) = (
        geom.c_in(),
        geom.c_out(),
        geom.groups(),
        geom.cig(),
        geom.cog(),
        geom.k_len(),
    );
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
    let pointwise = geom.is_pointwise();
    let scratch = ws.scratch_mut(p.parts * p.scratch_len.max(1));
    let out = SharedMut(y.as_mut_ptr());
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, col| {
        let t = task % p.tiles.ntiles;
        let g = (task / p.tiles.ntiles) % groups;
        let n = task / (p.tiles.ntiles * groups);
        let (p0, p1) = p.tiles.range(t);
        let tl = p1 - p0;
        let xg = &x[(n * c_in + g * cig) * hw..(n * c_in + (g + 1) * cig) * hw];
        let wg = &w[g * cog * k..(g + 1) * cog * k];
        let c_off = (n * c_out + g * cog) * ohw + p0;
        // SAFETY: this task alone owns rows g*cog..(g+1)*cog, columns p0..p1 of
        // image n of the output (tasks are distinct (n, g, tile) triples), and
        // every addressed element lies inside `y`: row co of the block starts
        // at c_off + co*ohw and spans tl <= ohw - p0 elements.
        let c = unsafe { out.get().add(c_off) };
        let mut beta = T::ZERO;
        if let Some(b) = bias {
            for co in 0..cog {
                // SAFETY: row co of this task's output block, as argued above.
                unsafe { std::slice::from_raw_parts_mut(c.add(co * ohw), tl) }.fill(b[g * cog + co]);
            }
            beta = T::ONE;
        }
        // Y_block = sum over channel blocks of W_g[:, block] * col(block).
        for blk in 0..p.blocks.nblocks {
            let (c0, c1) = p.blocks.range(blk);
            let rows = (c1 - c0) * khkw;
            let (b_ptr, rsb) = if pointwise {
                (xg[p0..].as_ptr(), hw)
            } else {
                im2col_tile(geom, &xg[c0 * hw..c1 * hw], c1 - c0, p0, p1, &mut col[..rows * tl]);
                (col.as_ptr(), tl)
            };
            // SAFETY: A is the cog x rows block of W_g at column c0*kh*kw (row
            // stride K), inside `w`; B is rows x tl, either the column tile or
            // (pointwise) the group's input channels at columns p0.. (row stride
            // h*w); C is this task's block of `y` (above). C aliases neither.
            unsafe {
                T::gemm(
                    cog,
                    rows,
                    tl,
                    T::ONE,
                    wg[c0 * khkw..].as_ptr(),
                    k as isize,
                    1,
                    b_ptr,
                    rsb as isize,
                    1,
                    beta,
                    c,
                    ohw as isize,
                    1,
                );
            }
            beta = T::ONE;
        }
    });
}

/// The f32 forward on ferroconv's own GEMM ([`sgemm`]): the weights are
/// packed once per call, and each channel block's column tile is written by
/// [`im2col_panels`] straight in the GEMM's packed-`B` layout (pointwise
/// convolutions pack the input rows instead). Same tasks and blocks as the
/// matrixmultiply path.
#[allow(clippy::too_many_arguments)]
fn forward_packed(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    packed: &mut [f32],
    scratch: &mut [f32],
) {
    let (c_in, c_out, groups, cig, cog, k) = (
        geom.c_in(),
        geom.c_out(),
        geom.groups(),
        geom.cig(),
        geom.cog(),
        geom.k_len(),
    );
    let hw = geom.h() * geom.w();
    let khkw = geom.kh() * geom.kw();
    let ohw = geom.oh() * geom.ow();
    let pointwise = geom.is_pointwise();
    // W_g (cog x K, row stride K) packed in MR-row panels, one region per group.
    let a_len = sgemm::packed_a_len(cog, k);
    let off = sgemm::align_offset(packed);
    let (packed, biases) = packed[off..].split_at_mut(groups * a_len);
    sgemm::pack_a_groups(w, groups, cog, k, packed);
    let packed = &*packed;
    // Each group's bias, zero-padded to whole MR-row panels: the kernels'
    // accumulators start from it (`Start::RowBias`).
    let bias_len = cog.next_multiple_of(MR);
    let biases = &mut biases[..groups * bias_len];
    if let Some(b) = bias {
        for (g, bg) in biases.chunks_exact_mut(bias_len).enumerate() {
            bg[..cog].copy_from_slice(&b[g * cog..(g + 1) * cog]);
            bg[cog..].fill(0.0);
        }
    }
    let biases = &*biases;
    let out = SharedMut(y.as_mut_ptr());
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let t = task % p.tiles.ntiles;
        let g = (task / p.tiles.ntiles) % groups;
        let n = task / (p.tiles.ntiles * groups);
        let (p0, p1) = p.tiles.range(t);
        let tl = p1 - p0;
        let al = sgemm::align_offset(slot);
        let slot = &mut slot[al..];
        let xg = &x[(n * c_in + g * cig) * hw..(n * c_in + (g + 1) * cig) * hw];
        let ag = &packed[g * a_len..(g + 1) * a_len];
        let c_off = (n * c_out + g * cog) * ohw + p0;
        // SAFETY: this task alone owns rows g*cog..(g+1)*cog, columns p0..p1 of
        // image n of the output (tasks are distinct (n, g, tile) triples), and
        // every addressed element lies inside `y`: row co of the block starts
        // at c_off + co*ohw and spans tl <= ohw - p0 elements.
        let c = unsafe { out.get().add(c_off) };
        // A 1x1 layer's next task (on this thread, most likely) packs its
        // input rows first thing: they come from memory, so the GEMM asks
        // for them while it runs.
        let pf = if pointwise && p.blocks.nblocks == 1 && task + 1 < p.ntasks {
            let next = task + 1;
            let (t, g) = (next % p.tiles.ntiles, (next / p.tiles.ntiles) % groups);
            let n = next / (p.tiles.ntiles * groups);
            let (q0, q1) = p.tiles.range(t);
            sgemm::Prefetch {
                base: x[(n * c_in + g * cig) * hw + q0..].as_ptr(),
                rows: cig,
                stride: hw,
                len: q1 - q0,
            }
        } else {
            sgemm::Prefetch::NONE
        };
        let mut accumulate = false;
        for blk in 0..p.blocks.nblocks {
            let (c0, c1) = p.blocks.range(blk);
            let rows = if pointwise { c1 - c0 } else { (c1 - c0) * khkw };
            let (bp, tmp) = slot.split_at_mut(sgemm::packed_b_len(rows, tl));
            if pointwise {
                sgemm::pack_b(&xg[c0 * hw + p0..], rows, tl, hw, bp);
            } else {
                im2col_panels(geom, &xg[c0 * hw..c1 * hw], c1 - c0, p0, p1, tmp, bp);
            }
            let k0 = if pointwise { c0 } else { c0 * khkw };
            // SAFETY: the packed kernel is available (the plan chose it); A is
            // W_g's panels from column k0 (panel stride MR*K, each holding
            // steps k0..k0+rows); B holds ceil(tl/NR) panels of `rows` steps;
            // C is this task's cog x tl block of `y` (above), aliasing neither;
            // the group's padded bias holds cog rounded up to MR values.
            unsafe {
                sgemm::gemm_prefetching(
                    cog,
                    tl,
                    rows,
                    ag[k0 * MR..].as_ptr(),
                    MR * k,
                    bp.as_ptr(),
                    NR * rows,
                    c,
                    ohw,
                    // The first block writes the output, which is cold,
                    // from the bias.
                    match (accumulate, bias) {
                        (true, _) => sgemm::Start::Accumulate,
                        (false, Some(_)) => sgemm::Start::RowBias(biases[g * bias_len..].as_ptr()),
                        (false, None) => sgemm::Start::ZeroCold,
                    },
                    pf,
                );
            }
            accumulate = true;
        }
    });
}
