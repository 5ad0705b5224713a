//! Implicit-GEMM weight gradient for stride-1 convolutions (f32, AVX2 + FMA):
//! the input patches are read in place from the zero-padded slabs of the
//! [implicit forward](super::implicit), never gathered into a column matrix.
//! (Strided layers read the image itself: [`super::strided_wgrad`].)
//!
//! The weight gradient is the sum, over every output pixel, of the input patch
//! times the output delta. In a slab of band rows (`wp` columns per row, pixel
//! `q = (oy - oy0) * wp + ox`), tap `r = (ci * kh + ky) * kw + kx` of pixel `q`
//! is `slab[off[r] + q]`, so for group `g`
//!
//! `dW_g^T[r][co] = sum over images, bands, q of slab[off[r] + q] * dYt[q][co]`,
//!
//! where `dYt[q][co] = dY[n][g*cog + co][oy][ox]` for the band's pixels and
//! zero in the `wp - ow` padding columns of each row (so they add nothing).
//! The micro-kernel takes 6 taps (rows of `A`, six streams along `q`) times
//! 16 output channels (a packed panel of `dYt`), reducing over pixels in
//! chunks of [`QC`](sgemm::QC) ([`sgemm::sum_rows_panels`]), and keeps the `K x cog` sums in a per-task buffer.
//!
//! Summation order: every element is one fused multiply-add chain over the
//! pixels in raster order (images in order), whatever the bands; the
//! (image, band) pairs are cut into a geometry-fixed number of chunks whose
//! partial sums are added in chunk order, so results do not depend on the
//! thread count.
//! Threads split the taps, which changes no bit.

use super::implicit::{self, IMPLICIT_MAX_WEIGHT_BYTES, fill_slab, fill_taps};
use super::parallel::{TASKS_PER_THREAD, chunk_pairs, parts_for, run_tasks, weight_grad_chunks};
use super::sgemm::{self, MR, NR};
use crate::geometry::Conv2dGeometry;

/// Fewest output channels per group: the `dYt` panels are 16 channels wide,
/// and below one panel most lanes would idle (a rule, not a measured
/// crossover). LeNet's second layer (50 channels) measured 26.5 against 24.6
/// GFLOP/s on the im2col + matrixmultiply path (medians of 5 alternating
/// runs, 1 thread); its first layer (20 channels) runs here too.
pub(crate) const MIN_COG: usize = 16;

/// Least share `(num, den)` of the padded row width that must be output
/// columns: the slab's other columns are multiplied by zeros of `dYt`.
/// lenet_c2 (8 of 12 useful) measured 36.2 GFLOP/s here against 43.6 on
/// the im2col path once its stride-1 tiles were built channel-shared
/// (78.1 M -> 62.5 M instructions; medians of 7 alternating runs, 1
/// thread); lenet_c1 (24 of 28, one input channel, so the old tile walk)
/// 17.8 here against 14.2 there (medians of 5).
pub(crate) const MIN_USEFUL: (usize, usize) = (3, 4);

/// Whether the implicit weight gradient runs `geom` with element type `T`:
/// f32 on the packed-GEMM machine, stride 1, not 1x1, at least [`MIN_COG`]
/// output channels per group, at least [`MIN_USEFUL`] of every slab row an
/// output column, tap offsets within `u32`, and `K x cog` sums within
/// [`IMPLICIT_MAX_WEIGHT_BYTES`] (the 256 x 2304 layers measured 33 and 32
/// against 50 and 42 GFLOP/s on the im2col path with their sums cut into
/// L2-sized blocks of taps).
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    if !super::packed_path::<T>() || geom.is_pointwise() || geom.cog() < MIN_COG || geom.stride() != (1, 1) {
        return false;
    }
    if geom.cog() * geom.k_len() * std::mem::size_of::<f32>() > IMPLICIT_MAX_WEIGHT_BYTES {
        return false;
    }
    let s = implicit::plan_geometry_only(geom);
    if geom.ow() * MIN_USEFUL.1 < s.wp * MIN_USEFUL.0 {
        return false;
    }
    (geom.cig() as u64) * (s.chan_stride as u64) + (s.wp as u64) < u32::MAX as u64
}

/// How one implicit weight-gradient call is cut into tasks.
pub(crate) struct Plan {
    /// The forward's band plan, whose slabs these are.
    slabs: implicit::Plan,
    nchunks: usize,
    kb_rows: usize,
    nkb: usize,
    ntasks: usize,
    q_max: usize,
    slab_len: usize,
    dyt_len: usize,
    acc_len: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) partials_len: usize,
    pub(crate) index_len: usize,
}

pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    let (groups, cog, k) = (geom.groups(), geom.cog(), geom.k_len());
    let khkw = geom.kh() * geom.kw();
    let blocks = k.div_ceil(MR);
    // The bands come from the geometry alone, and so do the chunks: runs of
    // (image, band) pairs, each of at least MIN_CHUNK_PIXELS. Tap blocks
    // change no bit (each element keeps its own chain): as many as the
    // threads want.
    let slabs = implicit::plan_geometry_only(geom);
    let nchunks = weight_grad_chunks(geom, groups, slabs.nbands);
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    let nkb = want.div_ceil(nchunks * groups).clamp(1, blocks);
    let kb_rows = blocks.div_ceil(nkb) * MR;
    let nkb = k.div_ceil(kb_rows);
    // Channels a block of taps touches: at most its rows / khkw + 2.
    let nch = (kb_rows.div_ceil(khkw) + 1).min(geom.cig());
    let q_max = slabs.band * slabs.wp;
    let slab_len = nch * slabs.chan_stride + slabs.wp + NR;
    let dyt_len = sgemm::packed_b_len(q_max, cog);
    let acc_len = kb_rows * cog.div_ceil(NR) * NR;
    let ntasks = nchunks * groups * nkb;
    Plan {
        nchunks,
        kb_rows,
        nkb,
        ntasks,
        q_max,
        slab_len,
        dyt_len,
        acc_len,
        parts: parts_for(ntasks),
        scratch_len: slab_len + dyt_len + acc_len + 3 * NR,
        partials_len: (nchunks - 1) * geom.weight_len(),
        index_len: k,
        slabs,
    }
}

/// `dw = conv_weight_grad(x, dy)` for an [`eligible`] geometry; lengths
/// already checked; `scratch`, `partials` and `offs` hold the plan's lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    scratch: &mut [f32],
    partials: &mut [f32],
    offs: &mut [u32],
) {
    let (batch, c_in, c_out, groups, cig, cog, k) = (
        geom.n(),
        geom.c_in(),
        geom.c_out(),
        geom.groups(),
        geom.cig(),
        geom.cog(),
        geom.k_len(),
    );
    let khkw = geom.kh() * geom.kw();
    let hw = geom.h() * geom.w();
    let (oh, ow) = (geom.oh(), geom.ow());
    let ohw = oh * ow;
    let b = &p.slabs;
    let wp = b.wp;
    fill_taps(geom, b, offs);
    let offs = &*offs;
    let targets = super::weight_grad::ChunkTargets::new(dw, partials, p.nchunks);
    let npanels = cog.div_ceil(NR);
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let kb = task % p.nkb;
        let g = (task / p.nkb) % groups;
        let chunk = task / (p.nkb * groups);
        let (r0, r1) = (kb * p.kb_rows, ((kb + 1) * p.kb_rows).min(k));
        let (ci0, ci1) = (r0 / khkw, (r1 - 1) / khkw + 1);
        let (slab, rest) = sgemm::split_aligned(slot, p.slab_len);
        let (dyt, rest) = sgemm::split_aligned(rest, p.dyt_len);
        let (acc, _) = sgemm::split_aligned(rest, p.acc_len);
        acc.fill(0.0);
        for (n, band) in chunk_pairs(chunk, p.nchunks, batch, b.nbands) {
            let xb = &x[(n * c_in + g * cig + ci0) * hw..(n * c_in + g * cig + ci1) * hw];
            let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
            let (oy0, oy1) = (band * b.band, ((band + 1) * b.band).min(oh));
            let q_len = (oy1 - oy0) * wp;
            fill_slab(geom, xb, ci1 - ci0, oy0, oy1, b, slab);
            // dYt panels: [jp][q][16], zero in the padding columns and
            // past cog.
            for jp in 0..npanels {
                let panel = &mut dyt[jp * p.q_max * NR..(jp * p.q_max + q_len) * NR];
                let nch = NR.min(cog - jp * NR);
                for oy in oy0..oy1 {
                    let q = (oy - oy0) * wp;
                    let src = &dyg[jp * NR * ohw + oy * ow..];
                    // SAFETY: the plan chose this path only where AVX2 runs.
                    unsafe { sgemm::pack_panel_transposed(src, ohw, nch, ow, &mut panel[q * NR..]) };
                    panel[(q + ow) * NR..(q + wp) * NR].fill(0.0);
                }
            }
            let base = ci0 * b.chan_stride;
            let slab_ptr = slab.as_ptr();
            // Row i of the block: tap r0 + i, relative to the slab's first channel ci0.
            let row = |i: usize| {
                // SAFETY: the tap's offset minus the block's first
                // channel lies inside the slab (it holds channels ci0..ci1).
                unsafe { slab_ptr.add(offs[r0 + i] as usize - base) }
            };
            // SAFETY: the plan chose this path only where AVX2 and FMA
            // run; every tap row of the block, read at pixels < q_len,
            // lies in the slab (its channels ci0..ci1 plus the wp + NR
            // slack, as in the forward); the dYt panels hold q_max >=
            // q_len pixels each; `acc` holds the block's sums.
            unsafe { sgemm::sum_rows_panels(r1 - r0, row, None, dyt, p.q_max, q_len, npanels, acc) };
        }
        let target = targets.get(chunk);
        // SAFETY: columns r0..r1 of rows g*cog.. of this chunk's target: no
        // other task of the chunk has this (g, tap block).
        unsafe { super::weight_grad::store_sums(acc, r1 - r0, cog, target.add(g * cog * k + r0), k) };
    });
    if p.nchunks > 1 {
        super::weight_grad::add_partials(dw, partials, p.nchunks - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::eligible;

    use crate::geometry::{Conv2dSpec, Padding};

    #[test]
    fn chosen_for_stride_1_layers_with_16_channels_l2_sized_sums_and_useful_rows() {
        if !crate::kernels::packed_path::<f32>() {
            return;
        }
        let g = |s: Conv2dSpec| s.build().unwrap();
        let s = Conv2dSpec::new;
        assert!(eligible::<f32>(&g(
            s(8, 64, 56, 56, 64, 3, 3).padding(Padding::symmetric(1))
        )));
        assert!(eligible::<f32>(&g(s(64, 6, 24, 24, 16, 5, 5))));
        assert!(!eligible::<f64>(&g(s(64, 6, 24, 24, 16, 5, 5))));
        // LeNet conv2: 8 of every 12 slab columns are outputs (< 3/4).
        assert!(!eligible::<f32>(&g(s(64, 20, 12, 12, 50, 5, 5))));
        assert!(!eligible::<f32>(&g(s(8, 1, 28, 28, 6, 5, 5))));
        // Strided layers read the image in place (`strided_wgrad`).
        assert!(!eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3).stride(2, 2))));
        assert!(!eligible::<f32>(&g(
            s(8, 256, 14, 14, 256, 3, 3).padding(Padding::symmetric(1))
        )));
    }
}
