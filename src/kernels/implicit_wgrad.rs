//! Implicit-GEMM weight gradient for stride-1 and stride-2 convolutions (f32, AVX2 + FMA):
//! the input patches are read in place from the zero-padded slabs of the
//! [implicit forward](super::implicit), never gathered into a column matrix.
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
//! Stride 2 (dilation 1) reads the same way from *phase planes*: channel
//! `ci` of the padded input is split into the four planes
//! `P[py][px][i][j] = x_pad[2i + py][2j + px]`, so tap `(ky, kx)` of output
//! `(oy, ox)`, `x_pad[2oy + ky][2ox + kx]`, is `P[ky % 2][kx % 2][oy + ky / 2]
//! [ox + kx / 2]`: a stride-1 read at a fixed offset of its plane, rows
//! `wp = ow + (kw - 1) / 2` wide. No column matrix is built (down_3x3s2 spent
//! about a fifth of its weight gradient building one).
//!
//! Summation order: every element is one fused multiply-add chain over the
//! pixels in raster order (images in order), whatever the bands; the
//! (image, band) pairs are cut into a geometry-fixed number of chunks whose
//! partial sums are added in chunk order, so results do not depend on the
//! thread count.
//! Threads split the taps, which changes no bit.

use super::implicit::{self, IMPLICIT_MAX_WEIGHT_BYTES, SLAB_BYTES, fill_slab, fill_taps};
use super::parallel::{TASKS_PER_THREAD, chunk_pairs, parts_for, run_tasks, weight_grad_chunks};
use super::sgemm::{self, MR, NR};
use super::winograd_simd::even_elements;
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
/// f32 on the packed-GEMM machine, stride 1 or (dilation 1, not 1x1) stride
/// 2, at least [`MIN_COG`] output channels per group, at least
/// [`MIN_USEFUL`] of every slab row an output column, tap offsets within
/// `u32`. At stride 1 the `K x cog` sums must also fit
/// [`IMPLICIT_MAX_WEIGHT_BYTES`] (the 256 x 2304 layers measured 33 and 32
/// against 50 and 42 GFLOP/s on the im2col path with their sums cut into
/// L2-sized blocks of taps); at stride 2 the taps are cut into blocks of at
/// most [`PHASED_ACC_BYTES`] of sums instead.
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    if !super::packed_path::<T>() || geom.is_pointwise() || geom.cog() < MIN_COG {
        return false;
    }
    let phased = phased(geom);
    if !phased && geom.stride() != (1, 1) {
        return false;
    }
    if !phased && geom.cog() * geom.k_len() * std::mem::size_of::<f32>() > IMPLICIT_MAX_WEIGHT_BYTES {
        return false;
    }
    // One channel gives the tallest bands, so the largest tap offsets any
    // plan of `geom` can have.
    let s = Slabs::new(geom, 1);
    if geom.ow() * MIN_USEFUL.1 < s.wp * MIN_USEFUL.0 {
        return false;
    }
    (geom.cig() as u64) * (s.chan_stride as u64) + (s.wp as u64) < u32::MAX as u64
}

/// Whether `geom` reads phase planes: stride 2, dilation 1, a kernel wider
/// than one tap (a 1x1 stride-2 layer would read one plane of four).
fn phased(geom: &Conv2dGeometry) -> bool {
    geom.stride() == (2, 2) && geom.dilation() == (1, 1) && geom.kh() * geom.kw() > 1
}

/// Largest block of sums (`rows x cog` f32) of one stride-2 task: the sums,
/// the slab and the `dYt` panels share the 512 KiB L2 (down_3x3s2's
/// 1152 x 128 sums are 576 KiB whole; the im2col path's block is 144 KiB).
pub(crate) const PHASED_ACC_BYTES: usize = 256 * 1024;

/// The slab layout of one call: bands of `band` output rows; each channel
/// (`chan_stride` elements) holds one plane of `slab_rows x wp` (stride 1:
/// the padded input rows of the band) or four (stride 2: the phase planes,
/// `plane` elements apart).
struct Slabs {
    band: usize,
    nbands: usize,
    wp: usize,
    slab_rows: usize,
    plane: usize,
    chan_stride: usize,
    /// Stride 1: the forward's band plan, whose slabs these are.
    rows: Option<implicit::Plan>,
}

impl Slabs {
    /// Stride 1: the forward's bands (all the group's channels); stride 2:
    /// bands whose phase planes for `nch` channels fit [`SLAB_BYTES`].
    fn new(geom: &Conv2dGeometry, nch: usize) -> Self {
        if !phased(geom) {
            let b = implicit::plan_geometry_only(geom);
            return Slabs {
                band: b.band,
                nbands: b.nbands,
                wp: b.wp,
                slab_rows: b.slab_rows,
                plane: b.chan_stride,
                chan_stride: b.chan_stride,
                rows: Some(b),
            };
        }
        let (oh, halo) = (geom.oh(), (geom.kh() - 1) / 2);
        let wp = geom.ow() + (geom.kw() - 1) / 2;
        let row_bytes = nch * 4 * wp * std::mem::size_of::<f32>();
        let fit = (SLAB_BYTES / row_bytes.max(1)).saturating_sub(halo).max(1);
        let band = oh.div_ceil(oh.div_ceil(fit));
        let slab_rows = band + halo;
        Slabs {
            band,
            nbands: oh.div_ceil(band),
            wp,
            slab_rows,
            plane: slab_rows * wp,
            chan_stride: 4 * slab_rows * wp,
            rows: None,
        }
    }

    /// The tap table: `offs[(ci * kh + ky) * kw + kx]` is the slab offset of
    /// tap `(ci, ky, kx)` for the band's first output pixel.
    fn fill_taps(&self, geom: &Conv2dGeometry, offs: &mut [u32]) {
        if let Some(b) = &self.rows {
            return fill_taps(geom, b, offs);
        }
        let (kh, kw) = (geom.kh(), geom.kw());
        for ci in 0..geom.cig() {
            for ky in 0..kh {
                for kx in 0..kw {
                    let phase = (ky % 2) * 2 + kx % 2;
                    let off = ci * self.chan_stride + phase * self.plane + (ky / 2) * self.wp + kx / 2;
                    offs[(ci * kh + ky) * kw + kx] = off as u32;
                }
            }
        }
    }

    /// Readies a task's slab before its first [`Slabs::fill`]: phase planes
    /// are zeroed whole once, since their padding columns (and the slack)
    /// hold zeros whatever the band.
    fn prepare(&self, slab: &mut [f32]) {
        if self.rows.is_none() {
            slab.fill(0.0);
        }
    }

    /// Fills the slab of the `nch` channel planes `planes` for output rows
    /// `oy0..oy1` (zeros in the padding, below the image and in the slack;
    /// for phase planes, on a slab readied by [`Slabs::prepare`]).
    fn fill(&self, geom: &Conv2dGeometry, planes: &[f32], nch: usize, oy0: usize, oy1: usize, slab: &mut [f32]) {
        if let Some(b) = &self.rows {
            return fill_slab(geom, planes, nch, oy0, oy1, b, slab);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the plan chose this path only where AVX2 runs.
        unsafe {
            fill_phases_avx2(self, geom, planes, nch, oy0, oy1, slab)
        };
        #[cfg(not(target_arch = "x86_64"))]
        fill_phases(self, geom, planes, nch, oy0, oy1, slab);
    }
}

/// [`fill_phases`] compiled for AVX2, so that its even-element copies
/// inline instead of being a call per 8 elements (the fill's share of
/// down_3x3s2's weight gradient stayed about the same, 13-16%: the copies
/// wait on the input, see the prefetch in [`fill_phases`]).
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_phases_avx2(
    s: &Slabs,
    geom: &Conv2dGeometry,
    planes: &[f32],
    nch: usize,
    oy0: usize,
    oy1: usize,
    slab: &mut [f32],
) {
    fill_phases(s, geom, planes, nch, oy0, oy1, slab);
}

/// The phase planes of [`Slabs::fill`]: plane `(py, px)` of channel `ci`,
/// slab row `sr`, column `j` holds padded input `(2 (oy0 + sr) + py,
/// 2 j + px)`.
#[inline(always)]
fn fill_phases(s: &Slabs, geom: &Conv2dGeometry, planes: &[f32], nch: usize, oy0: usize, oy1: usize, slab: &mut [f32]) {
    let (h, w) = (geom.h(), geom.w());
    let (pt, _, pl, _) = geom.padding();
    let used = oy1 - oy0 + (geom.kh() - 1) / 2;
    let wp = s.wp;
    // Columns j0[px]..j1[px] of plane column phase px read input columns
    // 2 j + px - pl inside the row.
    let cols = |px: usize| {
        let j0 = (pl.saturating_sub(px)).div_ceil(2);
        let j1 = ((w + pl - px).div_ceil(2)).clamp(j0, wp);
        (j0, j1)
    };
    let spans = [cols(0), cols(1)];
    // Input rows the band reads: padded rows 2 oy0 .. 2 (oy0 + used).
    let iy0 = (2 * oy0).saturating_sub(pt).min(h);
    let iy1 = (2 * (oy0 + used)).saturating_sub(pt).min(h);
    let steps = 2 * s.slab_rows;
    for ci in 0..nch {
        // The next channel's rows are asked for a share per plane row:
        // arriving from L3 on demand, they stalled the copies (down_3x3s2:
        // the fill's share of the pass 14.5% -> 10.5%).
        let next = if ci + 1 < nch {
            &planes[(ci + 1) * h * w + iy0 * w..(ci + 1) * h * w + iy1 * w]
        } else {
            &planes[..0]
        };
        for py in 0..2 {
            for sr in 0..s.slab_rows {
                super::prefetch_part(next, py * s.slab_rows + sr, steps);
                // Padded row 2 (oy0 + sr) + py.
                let iy = (2 * (oy0 + sr) + py) as isize - pt as isize;
                let inside = sr < used && iy >= 0 && iy < h as isize;
                for (px, &(j0, j1)) in spans.iter().enumerate() {
                    // Columns outside j0..j1 stay zero from `prepare`.
                    let at = ci * s.chan_stride + (py * 2 + px) * s.plane + sr * wp;
                    let dst = &mut slab[at + j0..at + j1];
                    if !inside {
                        dst.fill(0.0);
                        continue;
                    }
                    if j0 == j1 {
                        continue;
                    }
                    // From the row's first element read on: `even_elements`
                    // may read past the row, copying only its own elements.
                    let x0 = 2 * j0 + px - pl;
                    even_elements(dst, &planes[ci * h * w + iy as usize * w + x0..]);
                }
            }
        }
    }
}

/// How one implicit weight-gradient call is cut into tasks.
pub(crate) struct Plan {
    slabs: Slabs,
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
    // Tap blocks change no bit (each element keeps its own chain): at stride
    // 2 enough to keep each block's sums within PHASED_ACC_BYTES, then as
    // many as the threads want.
    let acc_row_bytes = cog.div_ceil(NR) * NR * std::mem::size_of::<f32>();
    let l2_blocks = if phased(geom) {
        (k * acc_row_bytes).div_ceil(PHASED_ACC_BYTES).clamp(1, blocks)
    } else {
        1
    };
    // The bands come from the geometry alone (at stride 2 sized for the
    // channels of the L2-sized tap blocks; thread-made blocks only have
    // fewer), and so do the chunks: runs of (image, band) pairs, so that 8
    // images of many bands still give 16 (the stem on 16 threads), each of
    // at least MIN_CHUNK_PIXELS.
    let nch_max = (blocks.div_ceil(l2_blocks) * MR).div_ceil(khkw) + 1;
    let slabs = Slabs::new(geom, nch_max.min(geom.cig()));
    let nchunks = weight_grad_chunks(geom, groups, slabs.nbands);
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    let nkb = want.div_ceil(nchunks * groups).max(l2_blocks).clamp(1, blocks);
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
    b.fill_taps(geom, offs);
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
        b.prepare(slab);
        for (n, band) in chunk_pairs(chunk, p.nchunks, batch, b.nbands) {
            let xb = &x[(n * c_in + g * cig + ci0) * hw..(n * c_in + g * cig + ci1) * hw];
            let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
            let (oy0, oy1) = (band * b.band, ((band + 1) * b.band).min(oh));
            let q_len = (oy1 - oy0) * wp;
            b.fill(geom, xb, ci1 - ci0, oy0, oy1, slab);
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
            unsafe { sgemm::sum_rows_panels(r1 - r0, row, dyt, p.q_max, q_len, npanels, acc) };
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
        // Stride 2 reads phase planes (27 of every 28 columns are outputs);
        // not with dilation, nor 1x1.
        assert!(eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3).stride(2, 2))));
        assert!(!eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3)
            .stride(2, 2)
            .dilation(2, 2))));
        assert!(!eligible::<f32>(&g(s(8, 64, 56, 56, 128, 1, 1).stride(2, 2))));
        assert!(!eligible::<f32>(&g(
            s(8, 256, 14, 14, 256, 3, 3).padding(Padding::symmetric(1))
        )));
    }
}
