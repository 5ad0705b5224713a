//! The parallel plan shared by the passes, and the tiling constants.
//!
//! One level of parallelism only: every pass splits its work into independent
//! tasks (image x group x pixel tile, or image x group x channel block) and runs
//! them on the current rayon pool with work stealing, each task using its
//! worker's scratch slice; matrixmultiply's own threading stays off. Callers pick
//! the thread count by running a pass inside their own `ThreadPool::install`.
//!
//! Determinism: the way tasks are split never changes the arithmetic of any
//! output element. Each element of a GEMM result is one dot product over the
//! GEMM's reduction dimension, computed the same way wherever the element lies
//! in the call (matrixmultiply uses one accumulator per element, blocks the
//! reduction at a fixed `KC`, and with `alpha = 1`, `beta` in `{0, 1}` its edge
//! tiles round exactly like full ones). The choices that do change the
//! summation order (the pixel tile of the input and weight gradients, the
//! number of weight-gradient partial sums) depend on the geometry only, never
//! on the thread count.

use rayon::prelude::*;

use crate::element::Element;
use crate::geometry::Conv2dGeometry;

/// Bytes of one column tile (`rows x pixels`): the 512 KiB L2 of one core of
/// the target machine. Larger tiles repack the weights (GEMM operand `A`) less
/// often, smaller ones stay in cache; on the suite 256 KiB, 512 KiB and 1 MiB
/// measured within the machine's noise of each other (bench_report, ratios to
/// sgemm 0.7-1.3 either way), and 512 KiB keeps the 7x7 stem under 1 MiB of
/// scratch per thread.
pub(crate) const COL_TILE_BYTES: usize = 512 * 1024;

/// Bytes of one column tile on the f32 packed-GEMM path: half the L2, so that
/// the packed weights (the `A` panels every `B` panel of the tile streams
/// past, 144 KiB for a 64 x 576 layer) stay in L2 beside the tile.
pub(crate) const PACKED_TILE_BYTES: usize = 256 * 1024;

/// Width of the GEMM micro-kernel's column panel: matrixmultiply's sgemm
/// kernels are 16 x 16 (AVX-512) and 8 x 8 (AVX2 + FMA), so 16 suits both.
/// Tiles are cut at multiples of it, so only the last tile of an image can end
/// in a partial panel.
pub(crate) const PANEL: usize = 16;

/// Smallest pixel tile: below 64 columns the GEMM's fixed costs (packing `A`,
/// the micro-kernel's edge) outweigh the cache benefit.
pub(crate) const MIN_TILE_PIXELS: usize = 64;

/// Elements `o0..o1` of block `part` when `len` elements, in panels of
/// `width` (the last one may be partial), are cut into `parts` blocks of
/// whole panels, as nearly equal as the panels allow: the output-channel
/// blocks of the many-thread splits (Winograd passes, weight gradients).
pub(crate) fn panel_block(part: usize, parts: usize, len: usize, width: usize) -> (usize, usize) {
    let panels = len.div_ceil(width);
    let (p0, p1) = (part * panels / parts, (part + 1) * panels / parts);
    (p0 * width, len.min(p1 * width))
}

/// Tasks per thread the planners aim for when images x groups alone are too
/// few, so that uneven task sizes still balance.
pub(crate) const TASKS_PER_THREAD: usize = 2;

/// Target GEMM reduction length of one forward channel block: matrixmultiply
/// packs and accumulates the reduction in blocks of `KC = 256`, so blocks of at
/// least that many rows cost no extra passes over the output, while letting a
/// small image keep all its pixels in one tile (the weights, GEMM operand `A`,
/// are then packed once per image instead of once per pixel tile).
pub(crate) const MIN_BLOCK_ROWS: usize = 256;

/// Weight-gradient work units (groups x channel blocks x image chunks) the
/// planner aims for, fixed so that the summation order never depends on the
/// thread count. With 8, a 16-core Xeon ran the weight gradients of the
/// big 3x3 rows no faster on 16 threads than on 8 (about 355 GFLOP/s on
/// resnet_3x3_56 both times); 16 units keep 16 threads busy where the batch
/// and channels allow it; on the 2-core machine 8 and 32 units measured
/// within its noise of each other on the big rows (one run each).
pub(crate) const WEIGHT_GRAD_UNITS: usize = 16;

/// Fewest output pixels per weight-gradient chunk where chunks cut images
/// (a batch smaller than the chunks wanted): every chunk's sums are zeroed,
/// stored and added once more, which costs where a chunk is short.
/// down_3x3s2 (1152 x 128 sums) cut into half images of 392 pixels ran
/// 44.5 against 57.5 GFLOP/s in whole images (1 thread, medians of 5
/// alternating runs); the stem's half images (6272 pixels) and
/// dilated_3x3d2's (about 1000 per band pair) within noise.
pub(crate) const MIN_CHUNK_PIXELS: usize = 2048;

/// Image chunks of a weight gradient whose `units` (groups x channel blocks)
/// each run every chunk: [`WEIGHT_GRAD_UNITS`]` / units` where the batch has
/// them, else whole images, or runs of the (image, piece) pairs (`per_image`
/// pixel tiles or bands per image) of at least [`MIN_CHUNK_PIXELS`] output
/// pixels where that gives more. From the geometry alone.
pub(crate) fn weight_grad_chunks(geom: &Conv2dGeometry, units: usize, per_image: usize) -> usize {
    let (n, pixels) = (geom.n(), geom.n() * geom.oh() * geom.ow());
    let want = WEIGHT_GRAD_UNITS.div_ceil(units);
    want.min(n.max((n * per_image).min(pixels / MIN_CHUNK_PIXELS))).max(1)
}

/// The (image, piece) pairs of weight-gradient chunk `chunk` of `nchunks`,
/// in raster order: pairs `chunk * P / nchunks .. (chunk + 1) * P / nchunks`
/// of the `P = n * per_image` (pieces are pixel tiles or bands), image after
/// image.
pub(crate) fn chunk_pairs(
    chunk: usize,
    nchunks: usize,
    n: usize,
    per_image: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let total = n * per_image;
    (chunk * total / nchunks..(chunk + 1) * total / nchunks).map(move |i| (i / per_image, i % per_image))
}

/// The pairs of [`chunk_pairs`] grouped by image: `(n, pieces)` for each
/// image the chunk touches, in order, `pieces` its run of pieces of image `n`.
pub(crate) fn chunk_images(
    chunk: usize,
    nchunks: usize,
    n: usize,
    per_image: usize,
) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    let total = n * per_image;
    let (p0, p1) = (chunk * total / nchunks, (chunk + 1) * total / nchunks);
    let images = if p0 < p1 {
        p0 / per_image..(p1 - 1) / per_image + 1
    } else {
        0..0
    };
    images.map(move |img| {
        let first = img * per_image;
        (img, p0.max(first) - first..p1.min(first + per_image) - first)
    })
}

/// The pixel tiles of one image: `ntiles` ranges of whole [`PANEL`]s, as
/// even as possible (tile `t` covers panels `t*P/ntiles .. (t+1)*P/ntiles`
/// of the `P = ceil(ohw / 16)` panels).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tiling {
    ohw: usize,
    panels: usize,
    pub(crate) ntiles: usize,
}

impl Tiling {
    /// At least `ntiles` tiles (at most one per panel).
    pub(crate) fn new(ohw: usize, ntiles: usize) -> Self {
        let panels = ohw.div_ceil(PANEL);
        Tiling {
            ohw,
            panels,
            ntiles: ntiles.clamp(1, panels),
        }
    }

    /// Tiles whose column tiles of `rows` rows of `T` fit in [`COL_TILE_BYTES`]
    /// (but are at least [`MIN_TILE_PIXELS`] wide), and at least `min_tiles`.
    pub(crate) fn for_rows<T>(geom: &Conv2dGeometry, rows: usize, min_tiles: usize) -> Self {
        Self::for_rows_in::<T>(geom, rows, min_tiles, COL_TILE_BYTES)
    }

    /// As [`Tiling::for_rows`], for column tiles of at most `bytes`.
    pub(crate) fn for_rows_in<T>(geom: &Conv2dGeometry, rows: usize, min_tiles: usize, bytes: usize) -> Self {
        let ohw = geom.oh() * geom.ow();
        let fit = bytes / (rows.max(1) * std::mem::size_of::<T>());
        let pixels = fit.max(MIN_TILE_PIXELS);
        Tiling::new(ohw, ohw.div_ceil(pixels).max(min_tiles))
    }

    /// Pixels `p0..p1` of tile `t`.
    #[inline]
    pub(crate) fn range(&self, t: usize) -> (usize, usize) {
        let edge = |t: usize| (PANEL * (t * self.panels / self.ntiles)).min(self.ohw);
        (edge(t), edge(t + 1))
    }

    /// Pixels of the widest tile.
    pub(crate) fn max_len(&self) -> usize {
        (PANEL * self.panels.div_ceil(self.ntiles)).min(self.ohw)
    }
}

/// A raw pointer that tasks share; each task writes only its own disjoint
/// region (argued at every use).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline]
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: `SharedMut` is only a carrier; every dereference site argues that
// concurrent tasks touch disjoint elements.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// Scratch slots a call with `ntasks` tasks needs on the current pool: one
/// per worker thread (each runs one task at a time), or 1 to run inline.
pub(crate) fn parts_for(ntasks: usize) -> usize {
    if ntasks <= 1 {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Runs tasks `0..ntasks` on the current rayon pool with dynamic scheduling
/// (work stealing), each with the `scratch_len` slice of `scratch` that
/// belongs to the worker running it; `scratch` holds `parts * max(scratch_len,
/// 1)` elements, `parts` from [`parts_for`]. With `parts == 1` the tasks run
/// in order on the calling thread.
///
/// Work stealing matters on a shared machine: when one core is slowed by a
/// neighbour, the other worker takes over its remaining tasks instead of
/// waiting for a fixed half. Which worker runs a task changes no result bit.
pub(crate) fn run_tasks<T: Element>(
    scratch: &mut [T],
    scratch_len: usize,
    parts: usize,
    ntasks: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = scratch_len.max(1);
    if parts <= 1 {
        let s = &mut scratch[..chunk];
        (0..ntasks).for_each(|t| f(t, s));
        return;
    }
    let slots = scratch.len() / chunk;
    let base = SharedMut(scratch.as_mut_ptr());
    (0..ntasks).into_par_iter().for_each(|t| {
        let worker = rayon::current_thread_index().unwrap_or(0);
        assert!(
            worker < slots,
            "scratch sized for {slots} workers, running on worker {worker}"
        );
        // SAFETY: slot `worker` lies inside `scratch` (checked above). A rayon
        // worker runs one task at a time, and the tasks never call into rayon
        // (matrixmultiply's threading is off), so no two running tasks share
        // a slot: each slice is exclusively borrowed for the task's duration.
        let s = unsafe { std::slice::from_raw_parts_mut(base.get().add(worker * chunk), chunk) };
        f(t, s);
    });
}

/// Channel blocks `0..nch` cut into `nblocks` nearly equal ranges.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocks {
    nch: usize,
    pub(crate) nblocks: usize,
}

impl Blocks {
    /// At least `nblocks` blocks (at most one per channel).
    pub(crate) fn new(nch: usize, nblocks: usize) -> Self {
        Blocks {
            nch,
            nblocks: nblocks.clamp(1, nch),
        }
    }

    /// Blocks of at most `max_per_block` channels (at least one each).
    pub(crate) fn at_most(nch: usize, max_per_block: usize) -> Self {
        Blocks::new(nch, nch.div_ceil(max_per_block.max(1)))
    }

    /// Channels `c0..c1` of block `b`.
    #[inline]
    pub(crate) fn range(&self, b: usize) -> (usize, usize) {
        (b * self.nch / self.nblocks, (b + 1) * self.nch / self.nblocks)
    }

    /// Channels of the widest block.
    pub(crate) fn max_len(&self) -> usize {
        self.nch.div_ceil(self.nblocks)
    }
}

/// Channel blocks and pixel tiles for column tiles of `kh * kw` rows per
/// input channel, from the geometry alone (they fix the summation order):
/// blocks of at least [`MIN_BLOCK_ROWS`] rows where the group has that many,
/// pixel tiles as wide as fit in [`COL_TILE_BYTES`] with such a block (often
/// the whole image), then as many channels per block as fit with that tile.
/// Tiles are [`PACKED_TILE_BYTES`] on the packed f32 path, else
/// [`COL_TILE_BYTES`].
pub(crate) fn block_plan<T>(geom: &Conv2dGeometry, packed: bool) -> (Blocks, Tiling) {
    let (cig, khkw) = (geom.cig(), geom.kh() * geom.kw());
    let bytes = if packed { PACKED_TILE_BYTES } else { COL_TILE_BYTES };
    let min_ch = MIN_BLOCK_ROWS.div_ceil(khkw).min(cig);
    let tiles = Tiling::for_rows_in::<T>(geom, min_ch * khkw, 1, bytes);
    let per_block = bytes / (khkw * tiles.max_len() * std::mem::size_of::<T>());
    (Blocks::at_most(cig, per_block), tiles)
}

/// Smallest column block [`gemm_split_n`] gives a thread.
const MIN_SPLIT_COLUMNS: usize = 64;

/// `C <- A B + beta C` (`m x k` times `k x n`, strides in elements) with the
/// columns of `C` split into blocks of whole [`PANEL`]s run in parallel on the
/// current pool. Every element is computed exactly as one call would compute
/// it (see the module documentation), so the result does not depend on the
/// thread count.
///
/// # Safety
/// As [`Element::gemm`]: every addressed element of `A` and `B` readable, of
/// `C` writable, and `C` aliasing neither.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_split_n<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    (rsa, csa): (isize, isize),
    b: *const T,
    (rsb, csb): (isize, isize),
    beta: T,
    c: *mut T,
    (rsc, csc): (isize, isize),
) {
    let parts = rayon::current_num_threads().min(n / MIN_SPLIT_COLUMNS).max(1);
    let panels = n.div_ceil(PANEL);
    let (a, b, c) = (SharedMut(a as *mut T), SharedMut(b as *mut T), SharedMut(c));
    let run = |p: usize| {
        let j0 = (PANEL * (p * panels / parts)).min(n);
        let j1 = (PANEL * ((p + 1) * panels / parts)).min(n);
        // SAFETY: part p owns columns j0..j1 of C (the parts partition 0..n);
        // B and C are offset to that column range, inside the caller's
        // matrices; the caller guarantees the rest.
        unsafe {
            T::gemm(
                m,
                k,
                j1 - j0,
                T::ONE,
                a.get(),
                rsa,
                csa,
                b.get().offset(j0 as isize * csb),
                rsb,
                csb,
                beta,
                c.get().offset(j0 as isize * csc),
                rsc,
                csc,
            )
        }
    };
    if parts == 1 {
        run(0);
    } else {
        (0..parts).into_par_iter().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_images, chunk_pairs};

    /// `chunk_images` is `chunk_pairs` grouped by image, for chunks that cut
    /// images, hold several, or none.
    #[test]
    fn chunk_images_groups_chunk_pairs() {
        for (n, per, nchunks) in [(8, 1, 8), (8, 3, 16), (3, 4, 5), (1, 7, 3), (2, 1, 4), (5, 2, 1)] {
            for chunk in 0..nchunks {
                let flat: Vec<(usize, usize)> = chunk_images(chunk, nchunks, n, per)
                    .flat_map(|(img, pieces)| {
                        assert!(!pieces.is_empty() && pieces.end <= per);
                        pieces.map(move |p| (img, p))
                    })
                    .collect();
                assert_eq!(flat, chunk_pairs(chunk, nchunks, n, per).collect::<Vec<_>>());
            }
        }
    }
}
