//! Optimized weight and bias gradients.
//!
//! The weight gradient is the sum, over every image and output pixel, of the
//! input patch times the output delta:
//! `dW_g[cog x K] = sum over n, tiles of dY[n][g*cog..][cog x tl] * col[K x tl]^T`.
//! Each GEMM reduces over the pixels of one tile; successive tiles and images
//! accumulate into the same block (`beta = 1`).
//!
//! Work units are (image chunk, group, input-channel block). Channel blocks
//! write disjoint columns of `dW`, so they need no reduction, but they shrink
//! the GEMM; they keep at least `MIN_BLOCK_ROWS` rows. When groups x channel
//! blocks are too few to keep threads busy (LeNet's layers, the ResNet stem,
//! the 56x56 layers), the batch is cut into chunks (runs of images and pixel
//! tiles, so 8 images can still give 16) whose partial sums go to
//! separate buffers and are then added in chunk order (lenet_c2, 1 thread:
//! 21 -> 28 GFLOP/s against 8 channel blocks of 75 rows). The chunk count, block
//! size and pixel tile all depend on the geometry only
//! ([`WEIGHT_GRAD_UNITS`]), so every result bit is the same for any thread
//! count.

use rayon::prelude::*;

use super::im2col::im2col_tile;
use super::implicit_wgrad;
use super::parallel::{
    MIN_BLOCK_ROWS, SharedMut, TASKS_PER_THREAD, Tiling, WEIGHT_GRAD_UNITS, chunk_pairs, panel_block, parts_for,
    run_tasks, weight_grad_chunks,
};
use super::sgemm::{self, MR, NR};
use super::{f32s, f32s_mut};
use crate::element::Element;
use crate::geometry::Conv2dGeometry;
use crate::workspace::Workspace;

/// How one weight-gradient call is cut into tasks.
pub(crate) struct Plan {
    tiles: Tiling,
    cib: usize,
    nblocks: usize,
    nchunks: usize,
    /// Blocks of whole 16-channel panels the output channels are cut into
    /// where chunks x groups x channel blocks leave threads idle.
    osplits: usize,
    ntasks: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) partials_len: usize,
    /// Whether the f32 kernel runs (else matrixmultiply).
    packed: bool,
}

/// Largest block of sums (`rows x cog` f32) for the f32 kernel path: the
/// sums, the column tile and the `dY^T` panels must share the 512 KiB L2.
/// infer_b1_3x3 (270 KiB of sums) measured 37 against 44 GFLOP/s on
/// matrixmultiply; resnet_1x1_56 (64 KiB) 46 against 37, and the stem,
/// down_3x3s2 and lenet_c1 (9-147 KiB) within noise (1 thread, medians of 5
/// alternating runs).
pub(crate) const PACKED_ACC_BYTES: usize = 256 * 1024;

pub(crate) fn plan<T>(geom: &Conv2dGeometry) -> Plan {
    let (groups, cig) = (geom.groups(), geom.cig());
    let khkw = geom.kh() * geom.kw();
    // Channel blocks need no reduction but shrink the GEMM's N to the block's
    // rows; keep blocks at least MIN_BLOCK_ROWS rows and split the batch into
    // chunks (one partial sum each) for the rest of the parallelism.
    let max_blocks = (cig * khkw / MIN_BLOCK_ROWS).clamp(1, cig);
    let nblocks = WEIGHT_GRAD_UNITS.div_ceil(groups).min(max_blocks);
    let cib = cig.div_ceil(nblocks);
    let nblocks = cig.div_ceil(cib);
    let units = groups * nblocks;
    let tiles = Tiling::for_rows::<T>(geom, cib * khkw, 1);
    // Chunks are runs of (image, pixel tile) pairs in raster order, so a
    // batch smaller than the units still gives them all (the 1x1: 8 images,
    // one channel block, 16 chunks of half an image), each of at least
    // MIN_CHUNK_PIXELS.
    let nchunks = weight_grad_chunks(geom, units, tiles.ntiles);
    // The units above fix the summation order. Where they are fewer than the
    // threads want (8 images, one channel block: the stem and the 1x1 on 16
    // threads), the output channels are cut too: that changes no sum, and
    // costs only the column tile built again per block (nothing for 1x1).
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    let osplits = want.div_ceil(nchunks * units).min(geom.cog().div_ceil(NR));
    let ntasks = nchunks * units * osplits;
    let parts = parts_for(ntasks);
    let col = if geom.is_pointwise() {
        0
    } else {
        cib * khkw * tiles.max_len()
    };
    let acc_bytes = (cib * khkw).div_ceil(MR) * MR * geom.cog().div_ceil(NR) * NR * std::mem::size_of::<f32>();
    let packed = super::packed_path::<T>() && acc_bytes <= PACKED_ACC_BYTES;
    let scratch_len = if packed {
        // Column tile, dY^T panels and the block's sums, each aligned.
        col + sgemm::packed_b_len(tiles.max_len(), geom.cog())
            + (cib * khkw).div_ceil(MR) * MR * geom.cog().div_ceil(NR) * NR
            + 3 * NR
    } else {
        col
    };
    Plan {
        tiles,
        cib,
        nblocks,
        nchunks,
        osplits,
        ntasks,
        parts,
        scratch_len,
        partials_len: (nchunks - 1) * geom.weight_len(),
        packed,
    }
}

/// `dw = conv_weight_grad(x, dy)`; lengths already checked against `geom`.
pub(crate) fn weight_grad<T: Element>(geom: &Conv2dGeometry, x: &[T], dy: &[T], dw: &mut [T], ws: &mut Workspace<T>) {
    if let Some(tile) = super::winograd::selected_weight_grad::<T>(geom) {
        let p = super::winograd::wgrad_plan::<T>(geom, tile);
        let (scratch, partials, _) = ws.parts_mut(p.scratch_len, p.partials_len, 0);
        super::winograd::weight_grad(geom, &p, x, dy, dw, scratch, partials);
        return;
    }
    if super::dot_wgrad::eligible::<T>(geom) {
        let p = super::dot_wgrad::plan(geom);
        let f = ws.f32_parts(p.parts * p.scratch_len, p.partials_len, 0, 0);
        super::dot_wgrad::weight_grad(geom, &p, f32s(x), f32s(dy), f32s_mut(dw), f.scratch, f.partials);
        return;
    }
    if super::strided_wgrad::eligible::<T>(geom) {
        let p = super::strided_wgrad::plan(geom);
        let f = ws.f32_parts(p.parts * p.scratch_len, p.partials_len, 0, p.index_len);
        super::strided_wgrad::weight_grad(
            geom,
            &p,
            f32s(x),
            f32s(dy),
            f32s_mut(dw),
            f.scratch,
            f.partials,
            f.index,
        );
        return;
    }
    if implicit_wgrad::eligible::<T>(geom) {
        let p = implicit_wgrad::plan(geom);
        let f = ws.f32_parts(p.parts * p.scratch_len, p.partials_len, 0, p.index_len);
        implicit_wgrad::weight_grad(
            geom,
            &p,
            f32s(x),
            f32s(dy),
            f32s_mut(dw),
            f.scratch,
            f.partials,
            f.index,
        );
        return;
    }
    let p = plan::<T>(geom);
    if p.packed {
        let f = ws.f32_parts(p.parts * p.scratch_len, p.partials_len, 0, 0);
        weight_grad_packed(geom, &p, f32s(x), f32s(dy), f32s_mut(dw), f.scratch, f.partials);
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
    ws.scratch_mut(p.parts * p.scratch_len.max(1));
    ws.partials_mut(p.partials_len);
    let (scratch, partials) = (
        &mut ws.scratch[..p.parts * p.scratch_len.max(1)],
        &mut ws.partials[..p.partials_len],
    );
    let targets = ChunkTargets::new(dw, partials, p.nchunks);
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, col| {
        let (task, s) = (task / p.osplits, task % p.osplits);
        let b = task % p.nblocks;
        let g = (task / p.nblocks) % groups;
        let chunk = task / (p.nblocks * groups);
        // Output channels co0..co1: whole panels of 16.
        let (co0, co1) = panel_block(s, p.osplits, cog, NR);
        let (c0, c1) = (b * p.cib, ((b + 1) * p.cib).min(cig));
        let rows = (c1 - c0) * khkw;
        let target = targets.get(chunk);
        let mut beta = T::ZERO;
        for (n, t) in chunk_pairs(chunk, p.nchunks, geom.n(), p.tiles.ntiles) {
            let xb = &x[(n * c_in + g * cig + c0) * hw..(n * c_in + g * cig + c1) * hw];
            let (p0, p1) = p.tiles.range(t);
            let tl = p1 - p0;
            let (b_ptr, csb) = if pointwise {
                (xb[p0..].as_ptr(), hw)
            } else {
                im2col_tile(geom, xb, c1 - c0, p0, p1, &mut col[..rows * tl]);
                (col.as_ptr(), tl)
            };
            let a_ptr = dy[(n * c_out + g * cog + co0) * ohw + p0..].as_ptr();
            // SAFETY: C is the (co1 - co0) x rows block of this unit's
            // target buffer at rows g*cog + co0.., columns c0*kh*kw..
            // (row stride K), which no other task with the same chunk
            // touches (distinct (g, block, output channels)) and which
            // tasks of other chunks never address (separate buffers). A
            // (co1 - co0 rows of dY, row stride ohw) and B (col or x read
            // transposed) are read-only and do not alias it.
            unsafe {
                T::gemm(
                    co1 - co0,
                    tl,
                    rows,
                    T::ONE,
                    a_ptr,
                    ohw as isize,
                    1,
                    b_ptr,
                    1,
                    csb as isize,
                    beta,
                    target.add((g * cog + co0) * k + c0 * khkw),
                    k as isize,
                    1,
                );
            }
            beta = T::ONE;
        }
    });
    if p.nchunks > 1 {
        add_partials(dw, &ws.partials[..p.partials_len], p.nchunks - 1);
    }
}

/// The f32 weight gradient on ferroconv's own kernel where the implicit path
/// does not run: per (image chunk, group, channel block), the block's sums
/// `dW_g^T[rows x cog]` accumulate [`sgemm::sum_rows_panels`] of the
/// row-major column tiles (rows read in place) times `dY^T` panels of the
/// tile, pixel after pixel, then go transposed into `dW` or the chunk's
/// partial buffer. Same tasks, chunks and tiles as the matrixmultiply path.
#[allow(clippy::too_many_arguments)]
fn weight_grad_packed(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    scratch: &mut [f32],
    partials: &mut [f32],
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
    let tl_max = p.tiles.max_len();
    let col_len = if pointwise { 0 } else { p.cib * khkw * tl_max };
    let dyt_len = sgemm::packed_b_len(tl_max, cog);
    let acc_len = (p.cib * khkw).div_ceil(MR) * MR * cog.div_ceil(NR) * NR;
    let targets = ChunkTargets::new(dw, partials, p.nchunks);
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let (task, s) = (task / p.osplits, task % p.osplits);
        let b = task % p.nblocks;
        let g = (task / p.nblocks) % groups;
        let chunk = task / (p.nblocks * groups);
        // Output channels co0..co1: whole panels of 16.
        let (co0, co1) = panel_block(s, p.osplits, cog, NR);
        let (c0, c1) = (b * p.cib, ((b + 1) * p.cib).min(cig));
        let rows = (c1 - c0) * khkw;
        let (col, rest) = sgemm::split_aligned(slot, col_len);
        let (dyt, rest) = sgemm::split_aligned(rest, dyt_len);
        let (acc, _) = sgemm::split_aligned(rest, acc_len);
        let npanels = (co1 - co0).div_ceil(NR);
        acc.fill(0.0);
        for (n, t) in chunk_pairs(chunk, p.nchunks, geom.n(), p.tiles.ntiles) {
            let xb = &x[(n * c_in + g * cig + c0) * hw..(n * c_in + g * cig + c1) * hw];
            let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
            let (p0, p1) = p.tiles.range(t);
            let tl = p1 - p0;
            // dY^T panels of the tile: dyt[(jp * tl_max + q) * NR + j] = dY[jp*16 + j][p0 + q].
            for jp in 0..npanels {
                let panel = &mut dyt[jp * tl_max * NR..(jp * tl_max + tl) * NR];
                let nch = NR.min(co1 - co0 - jp * NR);
                // SAFETY: the plan chose this path only where AVX2 runs.
                unsafe { sgemm::pack_panel_transposed(&dyg[(co0 + jp * NR) * ohw + p0..], ohw, nch, tl, panel) };
            }
            let (rows_ptr, rs) = if pointwise {
                (xb[p0..].as_ptr(), hw)
            } else {
                im2col_tile(geom, xb, c1 - c0, p0, p1, &mut col[..rows * tl]);
                (col.as_ptr(), tl)
            };
            // SAFETY: the packed kernel is available (the plan chose it);
            // row i of A is the column tile's row i (or, 1x1, input plane
            // i at pixel p0), tl readable elements each; dyt holds npanels
            // panels of tl_max >= tl steps; acc holds the block's tiles.
            unsafe {
                sgemm::sum_rows_panels(rows, |i| rows_ptr.add(i * rs), None, dyt, tl_max, tl, npanels, acc);
            }
        }
        let target = targets.get(chunk);
        // SAFETY: this task alone writes columns c0*khkw.. of rows
        // g*cog + co0 .. g*cog + co1 of its chunk's target (distinct (g,
        // block, output channels) within a chunk).
        unsafe { store_sums(acc, rows, co1 - co0, target.add((g * cog + co0) * k + c0 * khkw), k) };
    });
    if p.nchunks > 1 {
        add_partials(dw, partials, p.nchunks - 1);
    }
}

/// Writes the sums `acc` of [`sgemm::sum_rows_panels`] (`rows x cog`,
/// row stride `cog` rounded up to 16) transposed: `dst[co * ldd + r] = acc(r, co)`.
///
/// 8 x 8 blocks at a time ([`sgemm::transpose_f32`]): one element at a time,
/// each store to another line of `dst`, took about a tenth of down_3x3s2's
/// weight gradient.
///
/// # Safety
/// AVX2 must be available (the packed path); `dst + co * ldd + r` must be
/// writable for `co < cog`, `r < rows`, and touched by no other thread.
pub(crate) unsafe fn store_sums(acc: &[f32], rows: usize, cog: usize, dst: *mut f32, ldd: usize) {
    let ld = cog.div_ceil(NR) * NR;
    // SAFETY: the packed kernels (the only callers) run only where AVX2
    // does; `acc` holds `rows` rows of `ld >= cog` sums; the caller's
    // contract covers `dst`.
    unsafe { sgemm::transpose_f32(acc, ld, rows, cog, dst, ldd, false) };
}

/// Where each weight-gradient chunk puts its sums: `dW` itself for chunk 0,
/// else its own buffer of `dW`'s length in `partials`, which
/// [`add_partials`] adds into `dW` in chunk order.
#[derive(Clone, Copy)]
pub(crate) struct ChunkTargets<T> {
    dw: SharedMut<T>,
    partials: SharedMut<T>,
    wlen: usize,
    nchunks: usize,
}

impl<T> ChunkTargets<T> {
    /// The targets of `nchunks` chunks; `partials` holds the buffers of
    /// chunks 1.. (checked).
    pub(crate) fn new(dw: &mut [T], partials: &mut [T], nchunks: usize) -> Self {
        assert!(partials.len() >= nchunks.saturating_sub(1) * dw.len());
        ChunkTargets {
            dw: SharedMut(dw.as_mut_ptr()),
            partials: SharedMut(partials.as_mut_ptr()),
            wlen: dw.len(),
            nchunks,
        }
    }

    /// The first of the `dW`-sized run of elements chunk `chunk` writes.
    /// Which of them a task may write is for its call site to argue.
    pub(crate) fn get(&self, chunk: usize) -> *mut T {
        assert!(chunk < self.nchunks);
        if chunk == 0 {
            self.dw.get()
        } else {
            // SAFETY: chunk >= 1 has its own buffer of `wlen` elements at
            // (chunk - 1) * wlen inside `partials` (checked in `new`).
            unsafe { self.partials.get().add((chunk - 1) * self.wlen) }
        }
    }
}

/// `dw += partials[0] + partials[1] + ...` for `count` buffers of
/// `dw.len()` elements, added in buffer order for every element (so the
/// result does not depend on how the pool splits `dw`).
pub(crate) fn add_partials<T: Element>(dw: &mut [T], partials: &[T], count: usize) {
    let wlen = dw.len();
    dw.par_chunks_mut(4096).enumerate().for_each(|(i, d)| {
        let base = i * 4096;
        for c in 0..count {
            let src = &partials[c * wlen + base..c * wlen + base + d.len()];
            for (d, &s) in d.iter_mut().zip(src) {
                *d += s;
            }
        }
    });
}

/// `db[co] = sum over n, oy, ox of dY[n][co][oy][ox]`, summed in that order
/// for every thread count (tasks are whole output channels).
pub(crate) fn bias_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], db: &mut [T]) {
    let (c_out, ohw) = (geom.c_out(), geom.oh() * geom.ow());
    db.par_iter_mut().enumerate().for_each(|(co, d)| {
        let mut acc = T::ZERO;
        for n in 0..geom.n() {
            for &v in &dy[(n * c_out + co) * ohw..(n * c_out + co + 1) * ohw] {
                acc += v;
            }
        }
        *d = acc;
    });
}
