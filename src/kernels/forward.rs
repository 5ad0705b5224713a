//! Optimized forward pass: im2col tiles + GEMM.
//!
//! For image `n` and group `g`, with `K = cig * kh * kw`:
//! `Y[n][g*cog .. (g+1)*cog][p0..p1] = W_g[cog x K] * col[K x (p1 - p0)] (+ b)`,
//! where `col` is the [im2col tile](super::im2col) of pixels `p0..p1`. The
//! GEMM writes straight into the output (row stride `oh * ow`); the bias is
//! written first and the GEMM accumulates onto it (`beta = 1`). Pointwise
//! convolutions (1x1, stride 1, no padding) skip im2col: the input channels of
//! the group already are the column matrix (row stride `h * w`).
//!
//! Tasks are (image, group, pixel tile); when images x groups are fewer than
//! [`TASKS_PER_THREAD`] per thread the image is cut into more, smaller tiles so
//! batch 1 still uses every thread. Tile choice does not change any output bit.

use super::im2col::im2col_tile;
use super::parallel::{SharedMut, TASKS_PER_THREAD, Tiling, parts_for, run_tasks};
use crate::element::Element;
use crate::geometry::Conv2dGeometry;
use crate::workspace::Workspace;

/// How one forward call is cut into tasks.
pub(crate) struct Plan {
    tiles: Tiling,
    ntasks: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
}

pub(crate) fn plan<T>(geom: &Conv2dGeometry) -> Plan {
    let k = geom.k_len();
    let outer = geom.n() * geom.groups();
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    let tiles = Tiling::for_rows::<T>(geom, k, want.div_ceil(outer));
    let ntasks = outer * tiles.ntiles;
    let parts = parts_for(ntasks);
    let scratch_len = if geom.is_pointwise() { 0 } else { k * tiles.max_len() };
    Plan {
        tiles,
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
        let (b_ptr, rsb) = if pointwise {
            (xg[p0..].as_ptr(), hw)
        } else {
            im2col_tile(geom, xg, cig, p0, p1, &mut col[..k * tl]);
            (col.as_ptr(), tl)
        };
        let wg = &w[g * cog * k..(g + 1) * cog * k];
        let c_off = (n * c_out + g * cog) * ohw + p0;
        // SAFETY: this task alone owns rows g*cog..(g+1)*cog, columns p0..p1 of
        // image n of the output (tasks are distinct (n, g, tile) triples), and
        // every addressed element lies inside `y`: row co of the block starts
        // at c_off + co*ohw and spans tl <= ohw - p0 elements. `W_g`, `col` /
        // `x` are read-only here and do not alias `y`.
        unsafe {
            let c = out.get().add(c_off);
            let beta = match bias {
                Some(b) => {
                    for co in 0..cog {
                        std::slice::from_raw_parts_mut(c.add(co * ohw), tl).fill(b[g * cog + co]);
                    }
                    T::ONE
                }
                None => T::ZERO,
            };
            T::gemm(
                cog,
                k,
                tl,
                T::ONE,
                wg.as_ptr(),
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
    });
}
