//! Optimized forward pass: im2col tiles + GEMM.
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

use super::im2col::im2col_tile;
use super::parallel::{Blocks, SharedMut, TASKS_PER_THREAD, Tiling, block_plan, parts_for, run_tasks};
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
}

pub(crate) fn plan<T>(geom: &Conv2dGeometry) -> Plan {
    let (cig, khkw) = (geom.cig(), geom.kh() * geom.kw());
    let outer = geom.n() * geom.groups();
    let min_tiles = (rayon::current_num_threads() * TASKS_PER_THREAD).div_ceil(outer);
    // The channel blocks change the summation order, so they come from the
    // geometry alone; the thread count may only cut the pixels into more
    // tiles, which changes no bit.
    let (blocks, base) = block_plan::<T>(geom);
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
    let scratch_len = if geom.is_pointwise() {
        0
    } else {
        blocks.max_len() * khkw * tiles.max_len()
    };
    Plan {
        tiles,
        blocks,
        ntasks,
        parts,
        scratch_len,
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
    let p = plan::<T>(geom);
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
