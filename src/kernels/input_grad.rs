//! Optimized input gradient: GEMM with the transposed weights, then col2im.
//!
//! For image `n`, group `g` and a block of input channels `c0..c1` of the group
//! (`rows = (c1 - c0) * kh * kw`), per pixel tile `p0..p1`:
//! `col[rows x tl] = W_g[:, c0*kh*kw ..][rows x cog]^T * dY[n][g*cog..][cog x tl]`,
//! then `col` is scatter-added into `dX[n][g*cig + c0 .. g*cig + c1]`
//! ([`col2im_tile`]). Pointwise convolutions write the GEMM straight into `dX`.
//!
//! Tasks are (image, group, channel block): their `dX` regions are disjoint
//! and contiguous, so no two tasks ever add into the same element. Each task
//! walks the pixel tiles in order; the tile size depends on the geometry only,
//! so the order of the scatter-adds, and every result bit, is the same for any
//! thread count.

use super::im2col::col2im_tile;
use super::implicit::{self, Weights};
use super::parallel::{Blocks, SharedMut, TASKS_PER_THREAD, Tiling, block_plan, parts_for, run_tasks};
use super::sgemm::{self, MR, NR};
use super::{f32s, f32s_mut};
use crate::element::Element;
use crate::geometry::Conv2dGeometry;
use crate::workspace::Workspace;

/// The forward geometry whose implicit-GEMM forward computes `geom`'s input
/// gradient (stride 1, see [`implicit::input_grad_geometry`]), where that
/// path is chosen: no scatter-adds, and `dY` read in place. On resnet_3x3_56
/// and cifar_3x3 it replaced GEMM + col2im.
pub(crate) fn implicit_geometry<T>(geom: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    if !super::packed_path::<T>() {
        return None;
    }
    implicit::input_grad_geometry(geom).filter(implicit::eligible::<T>)
}

/// How one input-gradient call is cut into tasks.
pub(crate) struct Plan {
    tiles: Tiling,
    blocks: Blocks,
    ntasks: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    /// Elements of the transposed weights packed for the f32 kernel (0 on
    /// the matrixmultiply path).
    pub(crate) packed_len: usize,
}

pub(crate) fn plan<T>(geom: &Conv2dGeometry) -> Plan {
    let cig = geom.cig();
    let packed = super::packed_path::<T>();
    let outer = geom.n() * geom.groups();
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    // The pixel tiles fix the order of the scatter-adds, so they come from
    // the geometry alone; the channel blocks change no bit (each block owns
    // its dX planes), so they may be split further to feed the threads.
    let (blocks, tiles) = block_plan::<T>(geom, packed);
    let blocks = Blocks::new(cig, blocks.nblocks.max(want.div_ceil(outer)));
    let ntasks = outer * blocks.nblocks;
    let parts = parts_for(ntasks);
    let khkw = geom.kh() * geom.kw();
    let col = if geom.is_pointwise() {
        0
    } else {
        blocks.max_len() * khkw * tiles.max_len()
    };
    let (scratch_len, packed_len) = if packed {
        let rows = if geom.is_pointwise() {
            blocks.max_len()
        } else {
            blocks.max_len() * khkw
        };
        (
            col + sgemm::packed_b_len(geom.cog(), tiles.max_len()) + 2 * NR,
            geom.groups() * blocks.nblocks * sgemm::packed_a_len(rows, geom.cog()) + NR,
        )
    } else {
        (col, 0)
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

/// `dx = conv_input_grad(dy, w)`; lengths already checked against `geom`.
pub(crate) fn input_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], w: &[T], dx: &mut [T], ws: &mut Workspace<T>) {
    if let Some((tg, tile)) = super::winograd::input_grad_geometry::<T>(geom) {
        let p = super::winograd::plan::<T>(&tg, tile);
        let (scratch, _, packed) = ws.parts_mut(p.parts * p.scratch_len, 0, p.packed_len);
        super::winograd::forward(&tg, &p, dy, w, true, None, dx, packed, scratch);
        return;
    }
    if let Some(tg) = implicit_geometry::<T>(geom) {
        let p = implicit::plan(&tg);
        let f = ws.f32_parts(p.parts * p.scratch_len, 0, p.packed_len, p.index_len);
        let (dy, w, dx) = (f32s(dy), Weights::Flipped(f32s(w), geom), f32s_mut(dx));
        implicit::forward(&tg, &p, dy, w, None, dx, f.packed, f.scratch, f.index);
        return;
    }
    let p = plan::<T>(geom);
    if p.packed_len > 0 {
        let f = ws.f32_parts(p.parts * p.scratch_len, 0, p.packed_len, 0);
        input_grad_packed(geom, &p, f32s(dy), f32s(w), f32s_mut(dx), f.packed, f.scratch);
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
    let khkw = geom.kh() * geom.kw();
    let hw = geom.h() * geom.w();
    let ohw = geom.oh() * geom.ow();
    let pointwise = geom.is_pointwise();
    let scratch = ws.scratch_mut(p.parts * p.scratch_len.max(1));
    let dx_all = SharedMut(dx.as_mut_ptr());
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, col| {
        let b = task % p.blocks.nblocks;
        let g = (task / p.blocks.nblocks) % groups;
        let n = task / (p.blocks.nblocks * groups);
        let (c0, c1) = p.blocks.range(b);
        let nch = c1 - c0;
        let rows = nch * khkw;
        // SAFETY: tasks are distinct (n, g, block) triples, so the channel
        // planes n, g*cig+c0 .. g*cig+c1 belong to this task alone; they lie
        // inside `dx` because n < batch and g*cig + c1 <= c_in.
        let dxb = unsafe { std::slice::from_raw_parts_mut(dx_all.get().add((n * c_in + g * cig + c0) * hw), nch * hw) };
        if !pointwise {
            dxb.fill(T::ZERO);
        }
        let a_ptr = w[g * cog * k + c0 * khkw..].as_ptr();
        for t in 0..p.tiles.ntiles {
            let (p0, p1) = p.tiles.range(t);
            let tl = p1 - p0;
            let dy_ptr = dy[(n * c_out + g * cog) * ohw + p0..].as_ptr();
            let (c_ptr, rsc) = if pointwise {
                (dxb[p0..].as_mut_ptr(), hw)
            } else {
                (col[..rows * tl].as_mut_ptr(), tl)
            };
            // SAFETY: A is W_g's columns c0*kh*kw.. read transposed (row stride
            // 1, column stride K), rows x cog elements inside `w`; B is the
            // cog x tl block of dY at row stride ohw inside `dy`; C is either
            // the rows x tl scratch tile or (pointwise, rows = nch) this task's
            // own dX planes at columns p0..p1. C aliases neither A nor B.
            unsafe {
                T::gemm(
                    rows,
                    cog,
                    tl,
                    T::ONE,
                    a_ptr,
                    1,
                    k as isize,
                    dy_ptr,
                    ohw as isize,
                    1,
                    T::ZERO,
                    c_ptr,
                    rsc as isize,
                    1,
                );
            }
            if !pointwise {
                col2im_tile(geom, &col[..rows * tl], nch, p0, p1, dxb);
            }
        }
    });
}

/// The f32 input gradient on ferroconv's own GEMM ([`sgemm`]): `W_g^T` is
/// packed once per call for every (group, channel block), and each tile of
/// `dY` is packed into `B` panels; the GEMM writes the column tile (or, 1x1,
/// `dX` itself), then col2im as on the matrixmultiply path. Same tasks and
/// tiles, so the same order of scatter-adds.
#[allow(clippy::too_many_arguments)]
fn input_grad_packed(
    geom: &Conv2dGeometry,
    p: &Plan,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
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
    let khkw = geom.kh() * geom.kw();
    let hw = geom.h() * geom.w();
    let ohw = geom.oh() * geom.ow();
    let pointwise = geom.is_pointwise();
    let nblocks = p.blocks.nblocks;
    // Region (g, b): W_g^T rows c0*kh*kw .. c1*kh*kw (A[r][co] = W[g*cog + co][c0*kh*kw + r]).
    let a_len = sgemm::packed_a_len(p.blocks.max_len() * khkw, cog);
    let al = sgemm::align_offset(packed);
    let packed = &mut packed[al..al + groups * nblocks * a_len];
    sgemm::for_each_panel(packed, a_len, |i, dst| {
        let (g, b) = (i / nblocks, i % nblocks);
        let (c0, c1) = p.blocks.range(b);
        let rows = (c1 - c0) * khkw;
        sgemm::pack_a(&w[g * cog * k + c0 * khkw..], rows, cog, 1, k, dst);
    });
    let packed = &*packed;
    let dx_all = SharedMut(dx.as_mut_ptr());
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let b = task % nblocks;
        let g = (task / nblocks) % groups;
        let n = task / (nblocks * groups);
        let (c0, c1) = p.blocks.range(b);
        let nch = c1 - c0;
        let rows = nch * khkw;
        let (bp_all, col) = sgemm::split_aligned(slot, sgemm::packed_b_len(cog, p.tiles.max_len()) + NR);
        // SAFETY: tasks are distinct (n, g, block) triples, so the channel
        // planes n, g*cig+c0 .. g*cig+c1 belong to this task alone; they lie
        // inside `dx` because n < batch and g*cig + c1 <= c_in.
        let dxb = unsafe { std::slice::from_raw_parts_mut(dx_all.get().add((n * c_in + g * cig + c0) * hw), nch * hw) };
        if !pointwise {
            dxb.fill(0.0);
        }
        let a = &packed[(g * nblocks + b) * a_len..(g * nblocks + b + 1) * a_len];
        let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
        for t in 0..p.tiles.ntiles {
            let (p0, p1) = p.tiles.range(t);
            let tl = p1 - p0;
            let bp = &mut bp_all[..sgemm::packed_b_len(cog, tl)];
            sgemm::pack_b(&dyg[p0..], cog, tl, ohw, bp);
            let (c_ptr, rsc) = if pointwise {
                (dxb[p0..].as_mut_ptr(), hw)
            } else {
                (col[..rows * tl].as_mut_ptr(), tl)
            };
            // SAFETY: the packed kernel is available (the plan chose it); A
            // holds ceil(rows/MR) panels of cog steps, B ceil(tl/NR) panels of
            // cog steps; C is the rows x tl column tile or (1x1) this task's
            // own dX planes at columns p0..p1, aliasing neither.
            unsafe {
                sgemm::gemm(
                    rows,
                    tl,
                    cog,
                    a.as_ptr(),
                    MR * cog,
                    bp.as_ptr(),
                    NR * cog,
                    c_ptr,
                    rsc,
                    // dX itself (1x1) is cold; the column tile is not.
                    if pointwise {
                        sgemm::Start::ZeroCold
                    } else {
                        sgemm::Start::Zero
                    },
                )
            };
            if !pointwise {
                col2im_tile(geom, &col[..rows * tl], nch, p0, p1, dxb);
            }
        }
    });
}
