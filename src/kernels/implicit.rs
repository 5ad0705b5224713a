//! Implicit-GEMM forward for stride-1 convolutions (f32, AVX2 + FMA or
//! AVX-512F): the micro-kernel reads the input pixels straight from a
//! zero-padded copy of a band of input rows, with no column matrix at all.
//!
//! For image `n`, group `g` and a band of output rows `oy0..oy1`, the band's
//! input rows (with the `(kh - 1) * dh` halo and the padding) are copied into
//! a slab of `cig` planes of `slab_rows x wp` elements, `wp = pad_left + w +
//! pad_right`, zeros in the padding. In the slab, output pixel `(oy, ox)` of
//! the band sits at `q = (oy - oy0) * wp + ox`, and its input for channel
//! `ci`, tap `(ky, kx)` at `q + off[r]` with
//! `off[r] = ci * slab_rows * wp + ky * dh * wp + kx * dw`, `r = (ci * kh + ky) * kw + kx`.
//! So for 6 consecutive `q` the inputs of one tap are 6 consecutive slab
//! elements, and the GEMM `Y_g^T[q][co] = b[co] + sum over r of slab[q + off[r]] * W_g[co][r]`
//! runs on the slab in place: the micro-kernel broadcasts 6 pixels of one tap
//! ([`Taps`]) against a 16-channel panel of the packed weights (two panels on
//! AVX-512). The columns with `ox >= ow` (the `wp - ow` padding columns of
//! each row) are computed and dropped: 2 of 58 on a 56x56 layer.
//!
//! The reduction runs in chunks of [`IMPLICIT_KC`] taps over groups of
//! [`IMPLICIT_QG`] 6-pixel blocks, the group's sums kept in a small buffer
//! between chunks; then each pixel's output channels are placed into `Y`
//! (8 x 8 blocks transposed in registers). Each output element is `bias + sum over r
//! in order` of one fused multiply-add chain, whatever the band, so bands may
//! follow the thread count. The stride-1 input gradient runs the same code
//! on `dY` with the kernel flipped and transposed ([`Weights::Flipped`]).
//!
//! Where AVX-512F runs, the band goes to [`super::implicit_avx512`] instead:
//! the same slab, tap table and packed weights, with the pixels in the
//! vector lanes and the sums stored straight into `Y` (the same bits).

use super::parallel::{SharedMut, TASKS_PER_THREAD, parts_for, run_tasks};
use super::sgemm::{self, Init, MR, NR, Taps};
use crate::geometry::{Conv2dGeometry, Conv2dSpec, Padding};

/// Target bytes of one slab: the band of padded input rows the micro-kernel
/// reads in place. It and the packed weights (144 KiB for a 64 x 576 layer)
/// share the 512 KiB L2.
pub(crate) const SLAB_BYTES: usize = 192 * 1024;

/// Fewest output channels per group for the implicit forward: its weight
/// panels are 16 channels wide, so LeNet's first layer (20 output channels,
/// 2 panels of which 12 lanes idle) measured 27 against 39 GFLOP/s on the
/// packed im2col path (one alternating run, 1 thread). Between 20 and 32 no
/// suite row measures the crossover; 32 fills two panels.
pub(crate) const IMPLICIT_MIN_COG: usize = 32;

/// Largest weight block (`cog x K` f32) for the implicit forward: the
/// per-group weights are re-read for every 6-pixel block and must stay in
/// the 512 KiB L2. The 256 x 2304 layers (2.3 MiB: resnet_3x3_14,
/// infer_b1_3x3) measured 55 / 43 GFLOP/s against 58 / 47 on the packed
/// im2col path; the 64 x 576 ones (144 KiB) 70 against 64 (resnet_3x3_56),
/// cifar's 32 x 288 35 against 23.
pub(crate) const IMPLICIT_MAX_WEIGHT_BYTES: usize = 512 * 1024;

/// Longest reduction chunk of one implicit micro-kernel call: the taps of a
/// chunk (one cache line each) stay in L1 while every weight panel passes;
/// the 6 x 16 blocks are summed across chunks in `acc`.
pub(crate) const IMPLICIT_KC: usize = 128;

/// 6-pixel blocks the implicit forward runs on one weight chunk before the
/// next: each chunk of a 16-channel weight panel (`IMPLICIT_KC` steps, 8 KiB)
/// is read from L2 once per group instead of once per block.
pub(crate) const IMPLICIT_QG: usize = 8;

/// Least share `(num, den)` of the padded row width `wp` that must be output
/// columns (`ow / wp`): the other `wp - ow` columns of every row are computed
/// and dropped. LeNet's second layer (8 of 12, unpadded 5x5 on 12x12):
/// forward 35 GFLOP/s on the im2col path against 31 implicit, input gradient
/// (12 of 16) 36 against 37, within noise (1 thread, medians of 5 alternating
/// runs). cifar_3x3 (16 of 18) and the 56x56 rows (56 of 58-60) are above.
pub(crate) const IMPLICIT_MIN_USEFUL: (usize, usize) = (7, 8);

/// Whether the implicit forward runs `geom` with element type `T`: f32 on
/// the packed-GEMM machine, stride 1, not pointwise (which needs no im2col)
/// and the tap offsets fit in `u32`.
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    if !super::packed_path::<T>() || geom.stride() != (1, 1) || geom.is_pointwise() {
        return false;
    }
    if geom.cog() < IMPLICIT_MIN_COG
        || geom.cog() * geom.k_len() * std::mem::size_of::<f32>() > IMPLICIT_MAX_WEIGHT_BYTES
    {
        return false;
    }
    let (_, _, pl, pr) = geom.padding();
    if geom.ow() * IMPLICIT_MIN_USEFUL.1 < (geom.w() + pl + pr) * IMPLICIT_MIN_USEFUL.0 {
        return false;
    }
    let p = plan_bands(geom, 1);
    (geom.cig() as u64) * (p.chan_stride as u64) + (p.wp as u64) < u32::MAX as u64
}

/// Elements the slab holds past its last plane's rows and one more row
/// width: the reads of the last pixel block past the band (a 16-lane panel
/// on the packed-GEMM orientation, 48 pixels on AVX-512F's
/// `implicit_avx512`) land in that zeroed slack.
const SLAB_SLACK: usize = 3 * NR;

#[cfg(target_arch = "x86_64")]
const _: () = assert!(super::implicit_avx512::PIXELS <= SLAB_SLACK && NR <= SLAB_SLACK);

/// How one implicit forward call is cut into tasks.
pub(crate) struct Plan {
    pub(crate) band: usize,
    pub(crate) nbands: usize,
    ntasks: usize,
    pub(crate) wp: usize,
    pub(crate) slab_rows: usize,
    pub(crate) chan_stride: usize,
    slab_len: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) packed_len: usize,
    pub(crate) index_len: usize,
}

fn plan_bands(geom: &Conv2dGeometry, want: usize) -> Plan {
    let (_, _, pl, pr) = geom.padding();
    let wp = geom.w() + pl + pr;
    let halo = (geom.kh() - 1) * geom.dilation().0;
    let oh = geom.oh();
    let row_bytes = geom.cig() * wp * std::mem::size_of::<f32>();
    let fit = (SLAB_BYTES / row_bytes.max(1)).saturating_sub(halo).max(1);
    let outer = geom.n() * geom.groups();
    let nbands = oh.div_ceil(fit).max(want.div_ceil(outer)).min(oh);
    let band = oh.div_ceil(nbands);
    let nbands = oh.div_ceil(band);
    let slab_rows = band + halo;
    let chan_stride = slab_rows * wp;
    let slab_len = geom.cig() * chan_stride + wp + SLAB_SLACK;
    let ntasks = outer * nbands;
    let parts = parts_for(ntasks);
    Plan {
        band,
        nbands,
        ntasks,
        wp,
        slab_rows,
        chan_stride,
        slab_len,
        parts,
        scratch_len: slab_len + NR + geom.cog().div_ceil(NR) * NR * MR * IMPLICIT_QG,
        packed_len: geom.groups() * sgemm::packed_b_len(geom.k_len(), geom.cog()) + NR,
        index_len: geom.k_len(),
    }
}

/// The plan on the current pool: bands from the slab size, cut further
/// until there are [`TASKS_PER_THREAD`] tasks per thread.
pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    plan_bands(geom, rayon::current_num_threads() * TASKS_PER_THREAD)
}

/// The bands from the slab size alone (what the weight gradient uses).
pub(crate) fn plan_geometry_only(geom: &Conv2dGeometry) -> Plan {
    plan_bands(geom, 1)
}

/// The tap table of `geom` on slabs of plan `p`, the same for every band:
/// `offs[(ci * kh + ky) * kw + kx] = ci * chan_stride + ky * dh * wp + kx * dw`.
pub(crate) fn fill_taps(geom: &Conv2dGeometry, p: &Plan, offs: &mut [u32]) {
    let (kh, kw) = (geom.kh(), geom.kw());
    let (dh, dw) = geom.dilation();
    for ci in 0..geom.cig() {
        for ky in 0..kh {
            for kx in 0..kw {
                offs[(ci * kh + ky) * kw + kx] = (ci * p.chan_stride + ky * dh * p.wp + kx * dw) as u32;
            }
        }
    }
}

/// Copies output rows `oy0..oy1` worth of padded input rows of the `nch`
/// channel planes `planes` into `slab` (`nch` planes of `p.slab_rows x p.wp`,
/// channel stride `p.chan_stride`, zeros in the padding and below the
/// image), and zeros the slack after them.
pub(crate) fn fill_slab(
    geom: &Conv2dGeometry,
    planes: &[f32],
    nch: usize,
    oy0: usize,
    oy1: usize,
    p: &Plan,
    slab: &mut [f32],
) {
    let (h, w) = (geom.h(), geom.w());
    let hw = h * w;
    let (pt, _, pl, _) = geom.padding();
    let halo = (geom.kh() - 1) * geom.dilation().0;
    let wp = p.wp;
    for ci in 0..nch {
        for sr in 0..p.slab_rows {
            let dst = &mut slab[ci * p.chan_stride + sr * wp..ci * p.chan_stride + (sr + 1) * wp];
            let iy = (oy0 + sr) as isize - pt as isize;
            if sr >= oy1 - oy0 + halo || iy < 0 || iy >= h as isize {
                dst.fill(0.0);
            } else {
                let iy = iy as usize;
                dst[..pl].fill(0.0);
                dst[pl..pl + w].copy_from_slice(&planes[ci * hw + iy * w..ci * hw + (iy + 1) * w]);
                dst[pl + w..].fill(0.0);
            }
        }
    }
    slab[nch * p.chan_stride..].fill(0.0);
}

/// The weights of an implicit call.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// `W[c_out][cig][kh][kw]` of the geometry itself (a forward pass).
    Oihw(&'a [f32]),
    /// The weights of `orig`, whose input gradient the call computes as the
    /// forward convolution of [`input_grad_geometry`]`(orig)`: output channel
    /// `ci`, input channel `co`, tap `(ky, kx)` of that convolution is
    /// `W[co][ci][kh - 1 - ky][kw - 1 - kx]` of `orig` (flipped, transposed).
    Flipped(&'a [f32], &'a Conv2dGeometry),
}

/// The stride-1 input gradient as a forward convolution: for `orig` with
/// stride 1, `dX = conv(dY, W')` where `W'` is `orig`'s kernel flipped and
/// transposed ([`Weights::Flipped`]), with the same dilation and groups and
/// padding `(kh - 1) * dh - pad_top` (and so on for each side), since
/// `dX[ci][iy][ix] = sum over co, ky, kx of dY[co][iy + pad_top - ky*dh][ix + pad_left - kx*dw] * W[co][ci][ky][kx]`.
/// `None` where that padding would be negative (padding wider than the
/// dilated kernel) or `orig` is not stride 1.
pub(crate) fn input_grad_geometry(orig: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    if orig.stride() != (1, 1) {
        return None;
    }
    let (pt, pb, pl, pr) = orig.padding();
    let (dh, dw) = orig.dilation();
    let (eh, ew) = ((orig.kh() - 1) * dh, (orig.kw() - 1) * dw);
    if pt > eh || pb > eh || pl > ew || pr > ew {
        return None;
    }
    let g = Conv2dSpec::new(
        orig.n(),
        orig.c_out(),
        orig.oh(),
        orig.ow(),
        orig.c_in(),
        orig.kh(),
        orig.kw(),
    )
    .padding(Padding::explicit(eh - pt, eh - pb, ew - pl, ew - pr))
    .dilation(dh, dw)
    .groups(orig.groups())
    .build()
    .ok()?;
    (g.oh() == orig.h() && g.ow() == orig.w()).then_some(g)
}

/// `y = conv(x, w) + bias` for an [`eligible`] geometry; lengths already
/// checked. `packed`, `scratch` and `offs` hold the plan's lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    packed: &mut [f32],
    scratch: &mut [f32],
    offs: &mut [u32],
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
    let (oh, ow) = (geom.oh(), geom.ow());
    let ohw = oh * ow;
    let wp = p.wp;
    fill_taps(geom, p, offs);
    let offs = &*offs;
    // W_g^T packed in NR-column panels (16 output channels each), one region per group.
    let a_len = sgemm::packed_b_len(k, cog);
    let al = sgemm::align_offset(packed);
    let packed = &mut packed[al..al + groups * a_len];
    match w {
        Weights::Oihw(w) => sgemm::pack_b_transposed_groups(w, groups, cog, k, packed),
        Weights::Flipped(w, orig) => pack_flipped(w, orig, packed),
    }
    let packed = &*packed;
    let out = SharedMut(y.as_mut_ptr());
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slot| {
        let b = task % p.nbands;
        let g = (task / p.nbands) % groups;
        let n = task / (p.nbands * groups);
        let (oy0, oy1) = (b * p.band, ((b + 1) * p.band).min(oh));
        let (slab, acc) = sgemm::split_aligned(slot, p.slab_len);
        let xg = &x[(n * c_in + g * cig) * hw..(n * c_in + (g + 1) * cig) * hw];
        fill_slab(geom, xg, cig, oy0, oy1, p, slab);
        let slab = &*slab;
        let bias_g = bias.map(|b| &b[g * cog..(g + 1) * cog]);
        // SAFETY: rows g*cog.. of image n, output rows oy0..oy1 belong to
        // this task alone (tasks are distinct (n, g, band) triples).
        let y_band = unsafe { out.get().add((n * c_out + g * cog) * ohw + oy0 * ow) };
        let a = &packed[g * a_len..(g + 1) * a_len];
        let q_len = (oy1 - oy0) * wp;
        #[cfg(target_arch = "x86_64")]
        if super::isa::isa() == super::isa::Isa::Avx512 {
            // SAFETY: AVX-512F (`isa`); the group's panels hold k steps of
            // cog.div_ceil(16) panels; the slab holds PIXELS elements past
            // every tap of every pixel block (`SLAB_SLACK`); the band's
            // output block lies inside `y` (above) and is this task's alone.
            unsafe {
                super::implicit_avx512::band(
                    k,
                    cog,
                    a.as_ptr(),
                    slab.as_ptr(),
                    offs.as_ptr(),
                    q_len,
                    wp,
                    ow,
                    ohw,
                    bias_g,
                    y_band,
                )
            };
            return;
        }
        let mut band = Band {
            k,
            cog,
            a,
            slab,
            offs,
            q_len,
            wp,
            ow,
            ohw,
            bias: bias_g,
            acc: &mut acc[..cog.div_ceil(NR) * NR * MR * IMPLICIT_QG],
        };
        // SAFETY: the plan chose this path only where AVX2 and FMA run; the
        // band's output block lies inside `y` (above) and the slab covers
        // every tap of every column (`slab_len`, see `plan`).
        unsafe { band.run(y_band) };
    });
}

/// Packs `orig`'s weights flipped and transposed ([`Weights::Flipped`]) as the
/// `B` panels of its input-gradient convolution: per group, step
/// `p = (co * kh + ky) * kw + kx`, column `ci`, value
/// `W[g*cog + co][ci][kh - 1 - ky][kw - 1 - kx]`; columns past `cig` zero.
fn pack_flipped(w: &[f32], orig: &Conv2dGeometry, dst: &mut [f32]) {
    let (cig, cog, kh, kw) = (orig.cig(), orig.cog(), orig.kh(), orig.kw());
    let khkw = kh * kw;
    let k = cog * khkw;
    let panels = cig.div_ceil(NR);
    let dst = &mut dst[..orig.groups() * sgemm::packed_b_len(k, cig)];
    sgemm::for_each_panel(dst, NR * k, |i, panel| {
        let (g, jp) = (i / panels, i % panels);
        for co in 0..cog {
            for t in 0..khkw {
                let out = &mut panel[(co * khkw + t) * NR..(co * khkw + t + 1) * NR];
                // Tap t = ky*kw + kx of W' is tap khkw - 1 - t of W.
                let src = ((g * cog + co) * cig) * khkw + (khkw - 1 - t);
                for (j, o) in out.iter_mut().enumerate() {
                    let ci = jp * NR + j;
                    *o = if ci < cig { w[src + ci * khkw] } else { 0.0 };
                }
            }
        }
    });
}

/// One task's operands.
struct Band<'a> {
    k: usize,
    cog: usize,
    a: &'a [f32],
    slab: &'a [f32],
    offs: &'a [u32],
    q_len: usize,
    wp: usize,
    ow: usize,
    ohw: usize,
    bias: Option<&'a [f32]>,
    /// The pixel group's sums over the reduction chunks, `MR * IMPLICIT_QG` rows of the
    /// output channels rounded up to 16.
    acc: &'a mut [f32],
}

impl Band<'_> {
    /// Computes the band into `y` (its first output row of channel 0 of the
    /// group; channel rows `ohw` apart).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `y` must address the band's
    /// `cog x (q_len / wp) x ow` output elements (row stride `ohw`), which no
    /// other thread touches. The slab holds `cig * chan_stride + wp + NR`
    /// elements, so every tap of every column block lies inside it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run(&mut self, y: *mut f32) {
        let mut bias_v = [0.0f32; 2 * NR];
        let npanels = self.cog.div_ceil(NR);
        let ld = npanels * NR;
        let w = sgemm::panels_per_call();
        let nk = self.k.div_ceil(IMPLICIT_KC).max(1);
        let nqb = self.q_len.div_ceil(MR);
        for qg in (0..nqb).step_by(IMPLICIT_QG) {
            let qbs = qg..nqb.min(qg + IMPLICIT_QG);
            for kc in 0..nk {
                let (k0, k1) = (kc * self.k / nk, (kc + 1) * self.k / nk);
                for jp in (0..npanels).step_by(w) {
                    let nr = (w * NR).min(self.cog - jp * NR);
                    let jq = if jp + 1 < npanels { jp + 1 } else { jp };
                    let init = match (kc, self.bias) {
                        (0, Some(b)) => {
                            bias_v[..nr].copy_from_slice(&b[jp * NR..jp * NR + nr]);
                            Init::ColBias(bias_v.as_ptr())
                        }
                        (0, None) => Init::Zero,
                        _ => Init::Load,
                    };
                    // The group's pixel blocks one after another on the same
                    // weight chunk, which stays in L1 between the calls.
                    for qb in qbs.clone() {
                        // SAFETY: the taps k0..k1 of pixels qb*MR..+MR lie in
                        // the slab (see the function's contract); weight
                        // panels jp and jq hold k steps; C is columns jp*NR..
                        // of block qb - qg of `acc`.
                        unsafe {
                            sgemm::micro(
                                k1 - k0,
                                Taps {
                                    base: self.slab.as_ptr().add(qb * MR),
                                    offs: self.offs.as_ptr().add(k0),
                                },
                                self.a.as_ptr().add(jp * NR * self.k + k0 * NR),
                                self.a.as_ptr().add(jq * NR * self.k + k0 * NR),
                                init,
                                self.acc.as_mut_ptr().add((qb - qg) * MR * ld + jp * NR),
                                ld,
                                MR,
                                nr,
                            );
                        }
                    }
                }
            }
            // The group's pixels, one output-row run at a time.
            let (q0, q1) = (qg * MR, (qbs.end * MR).min(self.q_len));
            let mut q = q0;
            while q < q1 {
                let (oy, ox) = (q / self.wp, q % self.wp);
                let len = if ox < self.ow { (self.ow - ox).min(q1 - q) } else { 0 };
                // SAFETY: AVX2 (this function's contract); pixels q..q+len
                // are output row oy < band rows, columns ox..ox+len <= ow,
                // channels < cog (`ohw` apart): inside the band's block,
                // which no other task writes; their sums are rows q-q0.. of
                // `acc` (pixel-major, row length ld >= cog).
                unsafe {
                    let sums = &self.acc[(q - q0) * ld..(q - q0 + len) * ld];
                    sgemm::transpose_f32(sums, ld, len, self.cog, y.add(oy * self.ow + ox), self.ohw, false);
                }
                q = (oy + 1) * self.wp;
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run(&mut self, _y: *mut f32) {
        unreachable!("the implicit forward runs only where AVX2 and FMA do");
    }
}

#[cfg(test)]
mod tests {
    use super::{eligible, input_grad_geometry};
    use crate::geometry::{Conv2dSpec, Padding};

    /// The input gradient's convolution maps dY's plane back onto X's.
    #[test]
    fn input_grad_geometry_restores_the_input_size() {
        let s = Conv2dSpec::new;
        let g = s(2, 8, 13, 9, 24, 3, 5)
            .padding(Padding::explicit(2, 0, 1, 3))
            .dilation(2, 1)
            .groups(2)
            .build()
            .unwrap();
        let t = input_grad_geometry(&g).unwrap();
        assert_eq!((t.n(), t.c_in(), t.h(), t.w()), (2, 24, g.oh(), g.ow()));
        assert_eq!((t.c_out(), t.oh(), t.ow(), t.groups()), (8, 13, 9, 2));
        assert_eq!(t.padding(), (2, 4, 3, 1));
        // Padding wider than the dilated kernel, or stride 2: no such convolution.
        assert!(input_grad_geometry(&s(1, 4, 8, 8, 4, 3, 3).padding(Padding::symmetric(3)).build().unwrap()).is_none());
        assert!(input_grad_geometry(&s(1, 4, 8, 8, 4, 3, 3).stride(2, 2).build().unwrap()).is_none());
    }

    /// The dispatch rule on the suite's shapes (where the packed GEMM runs).
    #[test]
    fn chosen_for_mid_sized_stride_1_layers_only() {
        if !crate::kernels::packed_path::<f32>() {
            return;
        }
        let g = |s: Conv2dSpec| s.build().unwrap();
        let s = Conv2dSpec::new;
        assert!(eligible::<f32>(&g(
            s(8, 64, 56, 56, 64, 3, 3).padding(Padding::symmetric(1))
        )));
        assert!(eligible::<f32>(&g(
            s(8, 32, 32, 32, 32, 3, 3).padding(Padding::symmetric(1))
        )));
        assert!(!eligible::<f64>(&g(
            s(8, 64, 56, 56, 64, 3, 3).padding(Padding::symmetric(1))
        )));
        // LeNet conv1 (6 output channels), stride 2, 1x1, 2.3 MiB of weights.
        assert!(!eligible::<f32>(&g(s(8, 1, 28, 28, 6, 5, 5))));
        assert!(!eligible::<f32>(&g(s(8, 64, 56, 56, 128, 3, 3).stride(2, 2))));
        assert!(!eligible::<f32>(&g(s(8, 256, 56, 56, 64, 1, 1))));
        assert!(!eligible::<f32>(&g(
            s(8, 256, 14, 14, 256, 3, 3).padding(Padding::symmetric(1))
        )));
    }
}
