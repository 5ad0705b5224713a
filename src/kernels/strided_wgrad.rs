//! Weight gradient of strided convolutions read in place (f32, AVX2 + FMA):
//! the tap rows of the micro-kernel are the input image itself, read `sx`
//! elements apart, so no column matrix and no copy of the input is built.
//!
//! The weight gradient is the sum, over every output pixel, of the input
//! patch times the output delta: for group `g`, tap `r = (ci * kh + ky) * kw
//! + kx` and output channel `co`,
//!
//! `dW_g^T[r][co] = sum over n, oy, ox of x_pad[n][ci][sy oy + dh ky][sx ox + dw kx] * dY[n][co][oy][ox]`.
//!
//! **The inner region.** Output pixels `oy` in `oy_lo..oy_hi`, `ox` in
//! `ox_lo..ox_hi` ([`Region`]) read only taps inside the image (no padding).
//! Over a band of those rows, with `mw = ox_hi - ox_lo` pixels per row and
//! pixel `q = (oy - oy_first) * mw + (ox - ox_lo)`, tap `r` of pixel `q` is
//! `x[n][ci][sy oy_first - pad_top + dh ky + sy (q / mw)][sx ox_lo - pad_left + dw kx + sx (q % mw)]`:
//! a start per tap (`taps[r] = ci h w + dh ky w + dw kx`, plus the band's
//! origin) and a step table shared by all taps (`steps[q] = sy w (q / mw) +
//! sx (q % mw)`). The micro-kernel broadcasts 6 taps at a step through the
//! table against 16 or 32 output channels of `dYt` (the band's `dY`
//! transposed: `dYt[q][co]`), pixels as the reduction in chunks of
//! [`QC`](sgemm::QC) ([`sgemm::sum_rows_panels`] with a table).
//!
//! **The border.** The other pixels (a row at the top and a column at the
//! left: 55 of down_3x3s2's 784; 663 of the stem's 12,544) are listed once
//! per call in raster order. While a band's rows of `x` and `dY` are in
//! cache, its border pixels' taps are gathered with the padding's zeros into
//! a column tile (`tile[r][j]`: tap `r` of border pixel `j`, [`gather_taps`])
//! and their `dY` into `dYt` panels; after the bands of an image, the same
//! kernel runs on the tile with unit steps.
//!
//! Until session 23 the stride-2 layers read *phase planes*: the padded
//! input split into its four (row parity, column parity) planes so that the
//! taps became stride-1 reads. Filling them took about a tenth of
//! down_3x3s2's weight gradient, and each plane row carried a zero column.
//! Other strides built im2col column tiles.
//!
//! Summation order: every element is one fused multiply-add chain: per
//! image (in order) the inner pixels of each band in raster order, then the
//! border pixels of those bands in raster order. The (image, band) pairs are
//! cut into a geometry-fixed number of chunks whose partial sums are added
//! in chunk order, so the results do not depend on the thread count.
//! Threads split the taps, which changes no bit.

use super::implicit::SLAB_BYTES;
use super::implicit_wgrad::MIN_COG;
use super::parallel::{TASKS_PER_THREAD, chunk_images, parts_for, run_tasks, weight_grad_chunks};
use super::sgemm::{self, MR, NR};
use crate::geometry::Conv2dGeometry;

/// Largest block of sums (`rows x cog` f32) of one tap block: the sums, the
/// band's input rows and the `dYt` panels share L2 (down_3x3s2's 1152 x 128
/// sums are 576 KiB whole).
pub(crate) const ACC_BYTES: usize = 256 * 1024;

/// The output pixels whose taps all lie inside the image: rows
/// `oy_lo..oy_hi`, columns `ox_lo..ox_hi` (empty when `lo == hi`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    oy_lo: usize,
    oy_hi: usize,
    ox_lo: usize,
    ox_hi: usize,
}

impl Region {
    fn new(geom: &Conv2dGeometry) -> Self {
        let (pt, _, pl, _) = geom.padding();
        // Output o reads inputs 2 o - pad .. 2 o - pad + k - 1: inside from
        // o >= ceil(pad / 2) to 2 o <= n + pad - k.
        let (sy, sx) = geom.stride();
        let (dh, dw) = geom.dilation();
        // Output o reads inputs s o - pad + d t for taps t < k: inside from
        // o >= ceil(pad / s) to s o <= n + pad - ext, ext = d (k - 1) + 1.
        let span = |n: usize, k: usize, s: usize, d: usize, pad: usize, o: usize| {
            let ext = d * (k - 1) + 1;
            let lo = pad.div_ceil(s).min(o);
            let hi = if n + pad >= ext {
                ((n + pad - ext) / s + 1).min(o)
            } else {
                0
            };
            (lo, hi.max(lo))
        };
        let (oy_lo, oy_hi) = span(geom.h(), geom.kh(), sy, dh, pt, geom.oh());
        let (ox_lo, ox_hi) = span(geom.w(), geom.kw(), sx, dw, pl, geom.ow());
        Region {
            oy_lo,
            oy_hi,
            ox_lo,
            ox_hi,
        }
    }

    fn width(&self) -> usize {
        self.ox_hi - self.ox_lo
    }

    fn pixels(&self) -> usize {
        (self.oy_hi - self.oy_lo) * self.width()
    }

    /// Border pixels (raster order) in the output rows before `oy`.
    fn border_before(&self, oy: usize, ow: usize) -> usize {
        let inner_rows = oy.clamp(self.oy_lo, self.oy_hi) - self.oy_lo;
        oy * ow - inner_rows * self.width()
    }

    fn inner(&self, oy: usize, ox: usize) -> bool {
        (self.oy_lo..self.oy_hi).contains(&oy) && (self.ox_lo..self.ox_hi).contains(&ox)
    }
}

/// Whether this path runs `geom` with element type `T`: f32 on the
/// packed-GEMM machine, a stride other than 1 x 1 (any kernel, dilation and
/// padding), at least [`MIN_COG`] output channels per group, offsets within
/// `u32`.
///
/// Against the paths before it (phase planes at stride 2 and dilation 1,
/// else im2col column tiles), best of 15-50 calls, 1 thread, GFLOP/s:
/// down_3x3s2 94.4 -> 98.3, the stem 93.6 -> 96.0, a 14 x 14 stride-2
/// layer of 256 -> 512 channels 46 -> 54, 8 x 8 of 128 -> 256 35.7 -> 44.1,
/// a 1x1 stride-2 layer of 256 -> 512 channels 73.0 -> 89.2, 3x3 stride 3
/// 48.1 -> 66.6, 11x11 stride 4 on 3 channels 70.6 -> 98.4, 3x3 stride 2
/// dilation 2 87.1 -> 95.9, 16 output channels 61.3 -> 84.3.
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    if !super::packed_path::<T>() || geom.stride() == (1, 1) || geom.cog() < MIN_COG {
        return false;
    }
    // Tap offsets within u32, plane indices within the gather's i32.
    let plane = geom.h() as u64 * geom.w() as u64;
    geom.cig() as u64 * plane + 2 * plane < u32::MAX as u64 && plane < i32::MAX as u64
}

/// How one call is cut into tasks.
///
/// The taps are cut into blocks of `kb_rows` whose sums fit [`ACC_BYTES`]
/// (more where the threads want them); a task runs `per_task` consecutive
/// blocks of one chunk and group, so that a band's `dY` is transposed once
/// for all of them.
pub(crate) struct Plan {
    region: Region,
    band: usize,
    nbands: usize,
    nborder: usize,
    nchunks: usize,
    kb_rows: usize,
    nkb: usize,
    per_task: usize,
    ntb: usize,
    ntasks: usize,
    q_max: usize,
    dyt_len: usize,
    border_dyt_len: usize,
    tile_len: usize,
    acc_len: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) partials_len: usize,
    pub(crate) index_len: usize,
}

pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    let (groups, cog, k) = (geom.groups(), geom.cog(), geom.k_len());
    let khkw = geom.kh() * geom.kw();
    let (oh, ow) = (geom.oh(), geom.ow());
    let region = Region::new(geom);
    let blocks = k.div_ceil(MR);
    let acc_row_bytes = cog.div_ceil(NR) * NR * std::mem::size_of::<f32>();
    let l2_blocks = (k * acc_row_bytes).div_ceil(ACC_BYTES).clamp(1, blocks);
    // Bands of output rows whose input rows (sy per output row) of one
    // L2-sized block's channels fit SLAB_BYTES: from the geometry alone, as
    // are the chunks (runs of (image, band) pairs).
    let nch = ((blocks.div_ceil(l2_blocks) * MR).div_ceil(khkw) + 1).min(geom.cig());
    let row_bytes = nch * geom.stride().0 * geom.w() * std::mem::size_of::<f32>();
    let fit = (SLAB_BYTES / row_bytes.max(1)).max(1);
    let band = oh.div_ceil(oh.div_ceil(fit));
    let nbands = oh.div_ceil(band);
    let nchunks = weight_grad_chunks(geom, groups, nbands);
    let want = rayon::current_num_threads() * TASKS_PER_THREAD;
    let tasks_kb = want.div_ceil(nchunks * groups);
    let nkb = tasks_kb.max(l2_blocks).clamp(1, blocks);
    let kb_rows = blocks.div_ceil(nkb) * MR;
    let nkb = k.div_ceil(kb_rows);
    let ntb = tasks_kb.clamp(1, nkb);
    let per_task = nkb.div_ceil(ntb);
    let ntb = nkb.div_ceil(per_task);
    let q_max = band * region.width();
    let nborder = oh * ow - region.pixels();
    let dyt_len = sgemm::packed_b_len(q_max, cog);
    let border_dyt_len = sgemm::packed_b_len(nborder, cog);
    let tile_len = per_task * kb_rows * nborder;
    let acc_len = per_task * kb_rows * cog.div_ceil(NR) * NR;
    let ntasks = nchunks * groups * ntb;
    Plan {
        region,
        band,
        nbands,
        nborder,
        nchunks,
        kb_rows,
        nkb,
        per_task,
        ntb,
        ntasks,
        q_max,
        dyt_len,
        border_dyt_len,
        tile_len,
        acc_len,
        parts: parts_for(ntasks),
        scratch_len: dyt_len + border_dyt_len + tile_len + acc_len + 4 * NR,
        partials_len: (nchunks - 1) * geom.weight_len(),
        // Tap starts, the step table, the border pixels and their first
        // input rows and columns.
        index_len: k + q_max + 3 * nborder,
    }
}

/// `dw = conv_weight_grad(x, dy)` for an [`eligible`] geometry; lengths
/// already checked; `scratch`, `partials` and `index` hold the plan's
/// lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    scratch: &mut [f32],
    partials: &mut [f32],
    index: &mut [u32],
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
    let (h, w, kh, kw) = (geom.h(), geom.w(), geom.kh(), geom.kw());
    let (pt, _, pl, _) = geom.padding();
    let ((sy, sx), (dh, dl)) = (geom.stride(), geom.dilation());
    let hw = h * w;
    let (oh, ow) = (geom.oh(), geom.ow());
    let ohw = oh * ow;
    let reg = p.region;
    let mw = reg.width();
    // The index: tap starts, steps of the inner pixels, border pixels.
    let (taps, rest) = index.split_at_mut(k);
    let (steps, rest) = rest.split_at_mut(p.q_max);
    let (border, rest) = rest.split_at_mut(p.nborder);
    // Border pixel j's first input row sy oy - pad_top and column sx ox -
    // pad_left, wrapped (negative in the padding).
    let (first_y, rest) = rest.split_at_mut(p.nborder);
    let first_x = &mut rest[..p.nborder];
    for ci in 0..cig {
        for ky in 0..kh {
            for kx in 0..kw {
                taps[(ci * kh + ky) * kw + kx] = (ci * hw + ky * dh * w + kx * dl) as u32;
            }
        }
    }
    for (q, s) in steps.iter_mut().enumerate() {
        *s = (sy * w * (q / mw) + sx * (q % mw)) as u32;
    }
    let mut nb = 0;
    for oy in 0..oh {
        for ox in 0..ow {
            if !reg.inner(oy, ox) {
                border[nb] = (oy * ow + ox) as u32;
                first_y[nb] = (sy * oy).wrapping_sub(pt) as u32;
                first_x[nb] = (sx * ox).wrapping_sub(pl) as u32;
                nb += 1;
            }
        }
    }
    debug_assert_eq!(nb, p.nborder);
    let (taps, steps, border, first_y, first_x) = (&*taps, &*steps, &*border, &*first_y, &*first_x);
    let targets = super::weight_grad::ChunkTargets::new(dw, partials, p.nchunks);
    let npanels = cog.div_ceil(NR);
    let ld = npanels * NR;
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let tb = task % p.ntb;
        let g = (task / p.ntb) % groups;
        let chunk = task / (p.ntb * groups);
        // This task's tap blocks kb0..kb1: taps rt0..rt1.
        let (kb0, kb1) = (tb * p.per_task, ((tb + 1) * p.per_task).min(p.nkb));
        let (rt0, rt1) = (kb0 * p.kb_rows, (kb1 * p.kb_rows).min(k));
        let (dyt, rest) = sgemm::split_aligned(slot, p.dyt_len);
        let (bdyt, rest) = sgemm::split_aligned(rest, p.border_dyt_len);
        let (tile, rest) = sgemm::split_aligned(rest, p.tile_len);
        let (acc, _) = sgemm::split_aligned(rest, p.acc_len);
        acc.fill(0.0);
        for (n, bands) in chunk_images(chunk, p.nchunks, batch, p.nbands) {
            let xg = &x[(n * c_in + g * cig) * hw..(n * c_in + (g + 1) * cig) * hw];
            let dyg = &dy[(n * c_out + g * cog) * ohw..(n * c_out + (g + 1) * cog) * ohw];
            let rows_of = |band: usize| (band * p.band, ((band + 1) * p.band).min(oh));
            // The border pixels of these bands: jr0..jr1 (tile columns and
            // border dYt pixels from jr0).
            let jr0 = reg.border_before(rows_of(bands.start).0, ow);
            let jr1 = reg.border_before(rows_of(bands.end - 1).1, ow);
            let nbr = jr1 - jr0;
            for band in bands.clone() {
                let (oy0, oy1) = rows_of(band);
                // The band's inner rows m0..m1 and border pixels jb0..jb1,
                // both gathered while its rows of x and dY are in cache.
                let (m0, m1) = (oy0.max(reg.oy_lo), oy1.min(reg.oy_hi));
                let (jb0, jb1) = (reg.border_before(oy0, ow), reg.border_before(oy1, ow));
                let q_len = if m0 < m1 { (m1 - m0) * mw } else { 0 };
                // dYt panels: [jp][q][16] (q_max pixels each), zero past
                // cog; the border's [jp][j][16] (nbr pixels each).
                for jp in 0..npanels {
                    let panel = &mut dyt[jp * p.q_max * NR..(jp * p.q_max + q_len) * NR];
                    let nch = NR.min(cog - jp * NR);
                    for oy in m0..m1 {
                        let src = &dyg[jp * NR * ohw + oy * ow + reg.ox_lo..];
                        // SAFETY: the plan chose this path only where AVX2 runs.
                        unsafe { sgemm::pack_panel_transposed(src, ohw, nch, mw, &mut panel[(oy - m0) * mw * NR..]) };
                    }
                    let bpanel = &mut bdyt[jp * nbr * NR..(jp + 1) * nbr * NR];
                    for j in jb0..jb1 {
                        let q = border[j] as usize;
                        for c in 0..NR {
                            let co = jp * NR + c;
                            bpanel[(j - jr0) * NR + c] = if co < cog { dyg[co * ohw + q] } else { 0.0 };
                        }
                    }
                }
                // Input element of the band's first inner pixel for tap
                // (0, 0, 0): inside the image (rows from sy oy_lo >= pad_top).
                let origin = (sy * m0).saturating_sub(pt) * w + sx * reg.ox_lo - pl;
                for kb in kb0..kb1 {
                    let (r0, r1) = (kb * p.kb_rows, ((kb + 1) * p.kb_rows).min(k));
                    if q_len > 0 {
                        let xp = xg.as_ptr();
                        // SAFETY: tap r's reads, origin + taps[r] + steps[q]
                        // for q < q_len, are inner pixels' taps: inside the
                        // group's channels of image n, which `xg` holds.
                        let row = |i: usize| unsafe { xp.add(origin + taps[r0 + i] as usize) };
                        // SAFETY: the plan chose this path only where AVX2
                        // and FMA run; every row read at steps[..q_len] lies
                        // in `xg` (above); the dYt panels hold q_max >= q_len
                        // pixels each; the block's sums lie in `acc`.
                        unsafe {
                            sgemm::sum_rows_panels(
                                r1 - r0,
                                row,
                                Some(&steps[..q_len]),
                                dyt,
                                p.q_max,
                                q_len,
                                npanels,
                                &mut acc[(r0 - rt0) * ld..],
                            )
                        };
                    }
                    // The taps of the band's border pixels, with the
                    // padding's zeros: tile row r - rt0, columns j - jr0.
                    let (fy, fx) = (&first_y[jb0..jb1], &first_x[jb0..jb1]);
                    for r in r0..r1 {
                        let (ci, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                        let plane = &xg[ci * hw..(ci + 1) * hw];
                        let at = (r - rt0) * nbr + jb0 - jr0;
                        let dst = &mut tile[at..at + (jb1 - jb0)];
                        // SAFETY: the plan chose this path only where AVX2 runs.
                        unsafe { gather_taps(dst, plane, fy, fx, ky * dh, kx * dl, h, w) };
                    }
                }
            }
            if nbr == 0 {
                continue;
            }
            // The border pixels of the bands, after their inner pixels.
            for kb in kb0..kb1 {
                let (r0, r1) = (kb * p.kb_rows, ((kb + 1) * p.kb_rows).min(k));
                let tp = tile.as_ptr();
                // SAFETY: the plan chose this path only where AVX2 and FMA
                // run; tile row r - rt0 holds the nbr border pixels' taps;
                // the border dYt panels hold nbr pixels each; the block's
                // sums lie in `acc`.
                unsafe {
                    sgemm::sum_rows_panels(
                        r1 - r0,
                        |i| tp.add((r0 - rt0 + i) * nbr),
                        None,
                        bdyt,
                        nbr,
                        nbr,
                        npanels,
                        &mut acc[(r0 - rt0) * ld..],
                    )
                };
            }
        }
        let target = targets.get(chunk);
        // SAFETY: columns rt0..rt1 of rows g*cog.. of this chunk's target: no
        // other task of the chunk has this (g, tap range).
        unsafe { super::weight_grad::store_sums(acc, rt1 - rt0, cog, target.add(g * cog * k + rt0), k) };
    });
    if p.nchunks > 1 {
        super::weight_grad::add_partials(dw, partials, p.nchunks - 1);
    }
}

/// `dst[j]` = `plane[(fy[j] + ky) * w + fx[j] + kx]`, or +0.0 where that row
/// or column lies in the padding (`fy`, `fx` wrapped: then at least `h`,
/// `w` once the tap is added): the taps of border pixels. Eight at a time
/// by a masked AVX2 gather; a scalar loop whose branches followed the
/// border's pattern took 6% of down_3x3s2's weight gradient and 12% of the
/// stem's.
///
/// # Safety
/// AVX2 must be available; `plane` must hold `h * w < 2^31` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn gather_taps(
    dst: &mut [f32],
    plane: &[f32],
    fy: &[u32],
    fx: &[u32],
    ky: usize,
    kx: usize,
    h: usize,
    w: usize,
) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(fy.len() >= n && fx.len() >= n && plane.len() >= h * w && h * w < i32::MAX as usize);
    let (vky, vkx) = (_mm256_set1_epi32(ky as i32), _mm256_set1_epi32(kx as i32));
    let (last_y, last_x) = (_mm256_set1_epi32(h as i32 - 1), _mm256_set1_epi32(w as i32 - 1));
    let vw = _mm256_set1_epi32(w as i32);
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: elements j..j + 8 of fy, fx and dst exist (n <= their
        // lengths); the gather reads only lanes whose row and column lie
        // inside the plane (unsigned iy <= h - 1 and ix <= w - 1), so their
        // index iy * w + ix < h * w <= plane.len(); other lanes read nothing.
        unsafe {
            let iy = _mm256_add_epi32(_mm256_loadu_si256(fy.as_ptr().add(j).cast()), vky);
            let ix = _mm256_add_epi32(_mm256_loadu_si256(fx.as_ptr().add(j).cast()), vkx);
            let in_y = _mm256_cmpeq_epi32(_mm256_max_epu32(iy, last_y), last_y);
            let in_x = _mm256_cmpeq_epi32(_mm256_max_epu32(ix, last_x), last_x);
            let inside = _mm256_castsi256_ps(_mm256_and_si256(in_y, in_x));
            let idx = _mm256_add_epi32(_mm256_mullo_epi32(iy, vw), ix);
            let v = _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), plane.as_ptr(), idx, inside);
            _mm256_storeu_ps(dst.as_mut_ptr().add(j), v);
        }
        j += 8;
    }
    for j in j..n {
        let (iy, ix) = (
            fy[j].wrapping_add(ky as u32) as usize,
            fx[j].wrapping_add(kx as u32) as usize,
        );
        dst[j] = if iy < h && ix < w { plane[iy * w + ix] } else { 0.0 };
    }
}

/// Unreachable off x86-64 (the packed kernels run only where AVX2 does).
///
/// # Safety
/// Never callable.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn gather_taps(_: &mut [f32], _: &[f32], _: &[u32], _: &[u32], _: usize, _: usize, _: usize, _: usize) {
    unreachable!("the packed kernels run only where AVX2 does");
}

#[cfg(test)]
mod tests {
    use super::{Region, eligible};
    use crate::geometry::{Conv2dSpec, Padding};

    #[test]
    fn chosen_for_strided_layers_with_16_channels() {
        if !crate::kernels::packed_path::<f32>() {
            return;
        }
        let g = |s: Conv2dSpec| s.build().unwrap();
        let s = Conv2dSpec::new;
        let down = s(8, 128, 56, 56, 128, 3, 3).stride(2, 2).padding(Padding::symmetric(1));
        assert!(eligible::<f32>(&g(down)));
        assert!(!eligible::<f64>(&g(down)));
        assert!(eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3)
            .stride(2, 2)
            .dilation(2, 2))));
        assert!(eligible::<f32>(&g(s(2, 5, 20, 26, 48, 4, 3).stride(3, 1))));
        // A 1x1 stride-2 layer (ResNet's shortcut) too.
        assert!(eligible::<f32>(&g(s(8, 64, 56, 56, 128, 1, 1).stride(2, 2))));
        // Not stride 1 (the slabs of `implicit_wgrad`) nor under 16 output
        // channels per group.
        assert!(!eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3))));
        assert!(!eligible::<f32>(&g(s(8, 3, 224, 224, 8, 7, 7).stride(2, 2))));
    }

    /// The inner region is exactly the output pixels whose taps all lie
    /// inside the image, on strides, dilations and asymmetric padding.
    #[test]
    fn region_is_the_pixels_reading_no_padding() {
        let s = Conv2dSpec::new;
        for spec in [
            s(1, 1, 56, 56, 1, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
            s(1, 1, 224, 224, 1, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
            s(1, 1, 13, 12, 1, 3, 3)
                .stride(2, 2)
                .padding(Padding::explicit(1, 2, 0, 1)),
            s(1, 1, 21, 19, 1, 3, 3)
                .stride(2, 2)
                .dilation(2, 2)
                .padding(Padding::explicit(2, 2, 2, 1)),
            s(1, 1, 20, 26, 1, 4, 3)
                .stride(3, 1)
                .padding(Padding::explicit(0, 2, 1, 1)),
            s(1, 1, 4, 4, 1, 3, 3).stride(2, 2).padding(Padding::symmetric(3)),
        ] {
            let geom = spec.build().unwrap();
            let reg = Region::new(&geom);
            let (pt, _, pl, _) = geom.padding();
            let ((sy, sx), (dh, dw)) = (geom.stride(), geom.dilation());
            let inside = |o: usize, s: usize, d: usize, k: usize, pad: usize, n: usize| {
                (0..k).all(|t| (s * o + d * t).checked_sub(pad).is_some_and(|i| i < n))
            };
            for oy in 0..geom.oh() {
                for ox in 0..geom.ow() {
                    let want =
                        inside(oy, sy, dh, geom.kh(), pt, geom.h()) && inside(ox, sx, dw, geom.kw(), pl, geom.w());
                    assert_eq!(reg.inner(oy, ox), want, "{geom:?} ({oy}, {ox})");
                }
                assert_eq!(
                    reg.border_before(oy, geom.ow()),
                    (0..oy)
                        .map(|y| (0..geom.ow()).filter(|&x| !reg.inner(y, x)).count())
                        .sum::<usize>()
                );
            }
        }
    }
}
