//! Direct forward for layers with few input channels (f32, AVX2 + FMA, or
//! 16-lane vectors where AVX-512F runs, [`super::simd`]):
//! LeNet's first layer (1 channel, 5x5) and the ResNet stem (3 channels,
//! 7x7, stride 2).
//!
//! Why: with `K = c_in * kh * kw` of 25 or 147 the lowered GEMM is short
//! and wide: every micro-kernel call loads and stores its block of `Y` for
//! only 25 steps, and im2col writes a column matrix `K / c_out` times the size
//! of the output. Here each output element is computed straight from a
//! zero-padded copy of the input rows, with the block of `CB = 6` output
//! channels x `NV` vectors of pixels of one output row held in registers (16
//! pixels on AVX2, 32 on AVX-512F).
//!
//! For image `n` and a band of output rows `oy0..oy1`, the band's padded input
//! rows are copied into a slab, each row split into its `sw` column phases
//! (stride `sw`): slab row `r` (padded input row `oy0 * sh + r`), phase `ph`,
//! element `j` holds padded column `j * sw + ph` (zero outside the image).
//! Output pixel `(oy, ox)`, tap `(ci, ky, kx)` then reads slab element
//! `ci * chan_stride + ((oy - oy0) * sh + ky) * row_stride + (kx % sw) * wq +
//! kx / sw + ox`, so a vector of consecutive `ox` reads consecutive elements
//! whatever the stride. The offset splits into a row part
//! `rows[ci * kh + ky] = ci * chan_stride + ky * row_stride` and a column part
//! `cols[kx] = (kx % sw) * wq + kx / sw`: with `k = (ci * kh + ky) * kw + kx`,
//! `Y[co][oy][ox] = b[co] + sum over k of W[co][k] * slab[rows[..] + cols[kx] + ...]`,
//! one fused multiply-add chain per element in the order of `k`. The kernel
//! walks the rows with `kw` as a compile-time constant for the suite's widths
//! (3, 5, 7), so the `kx` loop unrolls: walking one flat offset per tap, as
//! it first did, left a loop that the generic x86-64 build does not unroll,
//! and the stem ran about 50 GFLOP/s where the unrolled walk runs about 66-70
//! (`docs/design.md`). A task runs
//! its band channel block by channel block (each channel's output rows then
//! follow each other in memory). Bands and channel blocks change no bit, so
//! results do not depend on the thread count.

use super::parallel::{SharedMut, TASKS_PER_THREAD, parts_for, run_tasks};
#[cfg(target_arch = "x86_64")]
use super::simd::F32x;
use super::winograd_simd::even_elements;
use crate::geometry::Conv2dGeometry;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Most input channels (per group) for the direct forward. LeNet's first
/// layer (1) and the stem (3) measured faster here than on the im2col
/// path (numbers in `docs/design.md`); lenet_c2 (20 channels, `K = 500`)
/// runs the GEMM well. No suite row has 4 or 5 to measure the crossover.
pub(crate) const SMALL_CIN_MAX: usize = 4;

/// Output channels per register block (broadcast weights). A channel
/// block of at most 3 (LeNet conv1's last 2 of 20) runs a 3-channel block.
const CB: usize = 6;

/// Pixel vectors (8 lanes on AVX2, 16 on AVX-512F) per register block: `CB x NV = 12`
/// accumulators, `NV` input vectors and one broadcast weight take 15 of the
/// 16 AVX2 registers, and 12 independent chains cover the FMA's latency
/// (4 cycles, 2 per cycle) with room to spare. The first kernel held
/// 3 x 3 (9 chains, 24 pixels): a copy of the stem's loop nest ran 66-69
/// GFLOP/s with it against 72-78 with 6 x 2 (medians, one process
/// alternating). 4 x 3 did not fit: LLVM kept accumulators on the stack.
/// Two vectors make the stem's 112-pixel rows seven whole blocks.
const NV: usize = 2;

/// Pixel vectors per register block on AVX-512F: its 32 registers hold
/// `CB x 4 = 24` accumulators, the 4 input vectors and the broadcast
/// weight, so each tap's 10 loads feed 24 fused multiply-adds instead of 12.
const NV_AVX512: usize = 4;

/// The widest vector's lanes (AVX-512F): slab rows are rounded up to it, so
/// that every vector a row's last block loads lies in the slab.
const LANES_MAX: usize = 64;

/// Target bytes of one band's slab: the padded, phase-split input rows a
/// task reads (the stem's 37 rows of 3 channels at 16 output rows are
/// about 100 KiB), kept in L2 while every channel block passes.
const SLAB_BYTES: usize = 128 * 1024;

/// Whether the direct forward runs `geom` for element type `T`: f32 on the
/// packed-GEMM machine (AVX2 + FMA), one group, at most [`SMALL_CIN_MAX`]
/// input channels, no dilation, and slab offsets that fit in `u32`.
pub(crate) fn eligible<T>(geom: &Conv2dGeometry) -> bool {
    if !super::packed_path::<T>() || geom.groups() != 1 || geom.c_in() > SMALL_CIN_MAX || geom.dilation() != (1, 1) {
        return false;
    }
    let p = plan_bands(geom, 1);
    (p.slab_len as u64) < u32::MAX as u64
}

/// How one call is cut into tasks.
pub(crate) struct Plan {
    band: usize,
    nbands: usize,
    ntasks: usize,
    /// Elements of one slab row phase (output columns rounded up to 16, plus
    /// the kernel's reach).
    wq: usize,
    row_stride: usize,
    chan_stride: usize,
    slab_rows: usize,
    slab_len: usize,
    pub(crate) parts: usize,
    pub(crate) scratch_len: usize,
    pub(crate) packed_len: usize,
    pub(crate) index_len: usize,
}

fn plan_bands(geom: &Conv2dGeometry, want: usize) -> Plan {
    let (sh, sw) = geom.stride();
    let (kh, kw) = (geom.kh(), geom.kw());
    let (oh, ow) = (geom.oh(), geom.ow());
    let wq = ow.div_ceil(LANES_MAX) * LANES_MAX + (kw - 1) / sw;
    let row_stride = sw * wq;
    let row_bytes = geom.c_in() * row_stride * std::mem::size_of::<f32>() * sh;
    let fit = (SLAB_BYTES / row_bytes.max(1)).max(1);
    let nbands = oh.div_ceil(fit).max(want.div_ceil(geom.n())).min(oh);
    let band = oh.div_ceil(nbands);
    let nbands = oh.div_ceil(band);
    let slab_rows = (band - 1) * sh + kh;
    let chan_stride = slab_rows * row_stride;
    let slab_len = geom.c_in() * chan_stride;
    let ntasks = geom.n() * nbands;
    Plan {
        band,
        nbands,
        ntasks,
        wq,
        row_stride,
        chan_stride,
        slab_rows,
        slab_len,
        parts: parts_for(ntasks),
        scratch_len: slab_len + LANES_MAX,
        packed_len: geom.c_out().div_ceil(CB) * CB * geom.k_len() + 8,
        index_len: geom.c_in() * kh + kw,
    }
}

/// The plan on the current pool: bands from the slab size, cut further
/// until there are [`TASKS_PER_THREAD`] tasks per thread.
pub(crate) fn plan(geom: &Conv2dGeometry) -> Plan {
    plan_bands(geom, rayon::current_num_threads() * TASKS_PER_THREAD)
}

/// `y = conv(x, w) + bias` for an [`eligible`] geometry; lengths already
/// checked. `packed`, `scratch` and `offs` hold the plan's lengths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    geom: &Conv2dGeometry,
    p: &Plan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    packed: &mut [f32],
    scratch: &mut [f32],
    offs: &mut [u32],
) {
    let (c_in, c_out, k) = (geom.c_in(), geom.c_out(), geom.k_len());
    let (kh, kw) = (geom.kh(), geom.kw());
    let (sh, sw) = geom.stride();
    let (h, wd, oh, ow) = (geom.h(), geom.w(), geom.oh(), geom.ow());
    let (pt, _, pl, _) = geom.padding();
    // offs: the c_in * kh row offsets, then the kw column offsets.
    let (rows, cols) = offs[..c_in * kh + kw].split_at_mut(c_in * kh);
    for ci in 0..c_in {
        for ky in 0..kh {
            rows[ci * kh + ky] = (ci * p.chan_stride + ky * p.row_stride) as u32;
        }
    }
    for (kx, c) in cols.iter_mut().enumerate() {
        *c = ((kx % sw) * p.wq + kx / sw) as u32;
    }
    let (rows, cols) = (&*rows, &*cols);
    let reach = |o: &[u32]| o.iter().max().map_or(0, |&v| v as usize);
    let max_off = reach(rows) + reach(cols);
    // W in blocks of CB output channels (the last one `cb` wide: 3 when it
    // holds at most 3): step s of block b at b * CB * k + s * cb, zeros past
    // c_out.
    let nblk = c_out.div_ceil(CB);
    let width = |b: usize| if c_out - b * CB <= 3 { 3 } else { CB };
    let packed = &mut packed[..nblk * CB * k];
    for (b, blk) in packed.chunks_exact_mut(CB * k).enumerate() {
        let cb = width(b);
        for (s, step) in blk[..cb * k].chunks_exact_mut(cb).enumerate() {
            for (c, v) in step.iter_mut().enumerate() {
                let co = b * CB + c;
                *v = if co < c_out { w[co * k + s] } else { 0.0 };
            }
        }
    }
    let packed = &*packed;
    let out = SharedMut(y.as_mut_ptr());
    let (hw, ohw) = (h * wd, oh * ow);
    run_tasks(scratch, p.scratch_len, p.parts, p.ntasks, |task, slab| {
        let (n, b) = (task / p.nbands, task % p.nbands);
        let (oy0, oy1) = (b * p.band, ((b + 1) * p.band).min(oh));
        // The band's padded rows oy0*sh .. + slab_rows, phase-split.
        for ci in 0..c_in {
            let plane = &x[(n * c_in + ci) * hw..(n * c_in + ci + 1) * hw];
            for r in 0..p.slab_rows {
                let dst = &mut slab[ci * p.chan_stride + r * p.row_stride..][..p.row_stride];
                let iy = (oy0 * sh + r) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let row = &plane[iy as usize * wd..(iy as usize + 1) * wd];
                for (ph, d) in dst.chunks_exact_mut(p.wq).enumerate() {
                    // d[j] = row[j * sw + c0] for j0 <= j < j1 (the columns
                    // inside the image), zero elsewhere.
                    let c0 = ph as isize - pl as isize;
                    let j0 = if c0 >= 0 { 0 } else { c0.unsigned_abs().div_ceil(sw) }.min(p.wq);
                    let j1 = (wd as isize - c0).max(0).unsigned_abs().div_ceil(sw).clamp(j0, p.wq);
                    d[..j0].fill(0.0);
                    d[j1..].fill(0.0);
                    if j1 > j0 {
                        let first = (j0 as isize * sw as isize + c0) as usize;
                        let (d, src) = (&mut d[j0..j1], &row[first..first + (j1 - j0 - 1) * sw + 1]);
                        if sw == 1 {
                            d.copy_from_slice(src);
                        } else if sw == 2 {
                            // The rest of the row: the gather's last group
                            // may read past `src`.
                            even_elements(d, &row[first..]);
                        } else {
                            for (j, v) in d.iter_mut().enumerate() {
                                *v = src[j * sw];
                            }
                        }
                    }
                }
            }
        }
        let slab = &*slab;
        for blk in 0..nblk {
            let nc = CB.min(c_out - blk * CB);
            let mut init = [0.0f32; CB];
            if let Some(bias) = bias {
                init[..nc].copy_from_slice(&bias[blk * CB..blk * CB + nc]);
            }
            for oy in oy0..oy1 {
                let base = (oy - oy0) * sh * p.row_stride;
                // SAFETY: rows blk*CB .. + nc of image n, output row oy, belong
                // to this task alone (tasks are distinct (n, band) pairs).
                let y_row = unsafe { out.get().add((n * c_out + blk * CB) * ohw + oy * ow) };
                let wb = &packed[blk * CB * k..blk * CB * k + width(blk) * k];
                let block = Block {
                    x: &slab[base..],
                    rows,
                    cols,
                    max_off,
                    w: wb,
                    init,
                    nc,
                    width: ow,
                };
                // SAFETY: the packed kernel's machine (`eligible`); every tap
                // of the row's pixels lies in the slab (`wq` covers the
                // rounded-up row plus the kernel's reach, the band's rows
                // `slab_rows`); the output row lies in `y`: nc channel rows
                // ohw apart, ow pixels each.
                unsafe { block.row(y_row, ohw) };
            }
        }
    });
}

/// One register block: `nc <= CB` output channels (`w.len() / k` wide),
/// `width <= NV` vectors
/// pixels of one output row (or a whole row, for [`Block::row`]).
#[derive(Clone, Copy)]
struct Block<'a> {
    /// The slab from the block's first pixel, for tap offset 0.
    x: &'a [f32],
    /// Offset of each tap row `(ci, ky)`, in the order of `k`.
    rows: &'a [u32],
    /// Offset of each tap column `kx` from its row's.
    cols: &'a [u32],
    /// The largest tap offset.
    max_off: usize,
    /// The channel block's packed weights, `CB` (or 3, where `nc <= 3`)
    /// per step.
    w: &'a [f32],
    init: [f32; CB],
    nc: usize,
    width: usize,
}

impl Block<'_> {
    /// Computes one output row (`width` pixels) into `y` in register blocks
    /// of `NV` vectors (the last one narrower), 16-lane vectors on AVX-512F
    /// and 8-lane ones on AVX2 (the same chain of fused multiply-adds per
    /// element, so the same bits), in one call so that the blocks' loops
    /// follow each other without a call between them.
    ///
    /// # Safety
    /// As [`Block::run`] for the whole row: `x` holds `max_off + width`
    /// rounded up to 16 elements, `y + c * ohw + 0..width` is writable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn row(&self, y: *mut f32, ohw: usize) {
        let reach = |o: &[u32]| o.iter().max().map_or(0, |&v| v as usize);
        assert!(reach(self.rows) + reach(self.cols) <= self.max_off);
        // SAFETY: this function's contract; `max_off` bounds every tap
        // offset (asserted above), as `run` requires; `eligible` chose this
        // path only on a machine with AVX2 and FMA, and `isa()` reports
        // AVX-512F only where the CPU has it.
        unsafe {
            if super::isa::isa() == super::isa::Isa::Avx512 {
                self.row_avx512(y, ohw)
            } else {
                self.row_avx2(y, ohw)
            }
        }
    }

    /// [`Block::row`] on 16-lane vectors.
    ///
    /// # Safety
    /// As [`Block::row`], on a CPU with AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn row_avx512(&self, y: *mut f32, ohw: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.row_width::<__m512, NV_AVX512>(y, ohw) }
    }

    /// [`Block::row`] on 8-lane vectors.
    ///
    /// # Safety
    /// As [`Block::row`], on a CPU with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2(&self, y: *mut f32, ohw: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.row_width::<__m256, NV>(y, ohw) }
    }

    /// [`Block::row`] on vectors `S`, with the suite's kernel widths as
    /// compile-time constants.
    ///
    /// # Safety
    /// As [`Block::row`], with `S`'s instruction set available.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn row_width<S: F32x, const NVM: usize>(&self, y: *mut f32, ohw: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            match self.cols.len() {
                7 => self.row_kw::<S, NVM, 7>(y, ohw),
                5 => self.row_kw::<S, NVM, 5>(y, ohw),
                3 => self.row_kw::<S, NVM, 3>(y, ohw),
                _ => self.row_kw::<S, NVM, 0>(y, ohw),
            }
        }
    }

    /// [`Block::row`] with `KW` taps per row known at compile time (0: read
    /// from `cols`).
    ///
    /// # Safety
    /// As [`Block::row`]; `KW` is 0 or `cols.len()`; `S`'s instruction set
    /// available.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn row_kw<S: F32x, const NVM: usize, const KW: usize>(&self, y: *mut f32, ohw: usize) {
        let mut ox = 0;
        while ox < self.width {
            let nv = (self.width - ox).div_ceil(S::LANES).min(NVM);
            let b = Block {
                x: &self.x[ox..],
                width: (self.width - ox).min(S::LANES * nv),
                ..*self
            };
            // SAFETY: the block's pixels ox.. of the row (this function's
            // contract); `run` checks its reads against `x`.
            unsafe {
                match (nv, self.nc <= 3) {
                    (4, false) => b.run::<S, 4, KW, CB>(y.add(ox), ohw),
                    (3, false) => b.run::<S, 3, KW, CB>(y.add(ox), ohw),
                    (2, false) => b.run::<S, 2, KW, CB>(y.add(ox), ohw),
                    (_, false) => b.run::<S, 1, KW, CB>(y.add(ox), ohw),
                    (4, true) => b.run::<S, 4, KW, 3>(y.add(ox), ohw),
                    (3, true) => b.run::<S, 3, KW, 3>(y.add(ox), ohw),
                    (2, true) => b.run::<S, 2, KW, 3>(y.add(ox), ohw),
                    (_, true) => b.run::<S, 1, KW, 3>(y.add(ox), ohw),
                }
            }
            ox += S::LANES * nv;
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn row(&self, _y: *mut f32, _ohw: usize) {
        unreachable!("the direct small-channel forward runs only where AVX2 and FMA do");
    }

    /// Computes the block into `y` (channel `c`'s pixels at `y + c * ohw`),
    /// with `V` vectors `S` per channel, `KW` taps per row (0:
    /// `cols.len()`) and `C` channels per weight step (`CB`, or 3 for a
    /// block of at most 3).
    ///
    /// # Safety
    /// `S`'s instruction set must be available; `max_off` must bound every
    /// tap offset `rows[r] + cols[kx]` ([`Block::row`] checks it; `x` is
    /// checked to hold `max_off + V * LANES` elements); `y + c * ohw +
    /// 0..width` must be writable for `c < nc`, and no other thread touch
    /// them.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn run<S: F32x, const V: usize, const KW: usize, const C: usize>(&self, y: *mut f32, ohw: usize) {
        let kw = if KW == 0 { self.cols.len() } else { KW };
        assert!(kw == self.cols.len() && self.w.len() >= self.rows.len() * kw * C);
        assert!(V <= NV_AVX512 && self.width <= S::LANES * V && self.nc <= C && C <= CB);
        assert!(self.max_off + S::LANES * V <= self.x.len());
        // SAFETY: the instruction set (this function's contract).
        let mut acc: [[S; V]; C] = std::array::from_fn(|c| [unsafe { S::splat(self.init[c]) }; V]);
        let (x, mut w) = (self.x.as_ptr(), self.w.as_ptr());
        for &r in self.rows {
            for kx in 0..kw {
                // SAFETY: rows[..] + cols[kx] <= max_off, so x[that .. +
                // V * LANES] lies in x, and w advances C per tap over
                // rows.len() * kw taps (asserted above).
                unsafe {
                    let xs = x.add(r as usize + *self.cols.get_unchecked(kx) as usize);
                    let xv: [S; V] = std::array::from_fn(|v| S::load(xs.add(S::LANES * v)));
                    for (c, row) in acc.iter_mut().enumerate() {
                        let wv = S::splat(*w.add(c));
                        for (a, &xv) in row.iter_mut().zip(&xv) {
                            *a = wv.mul_add(xv, *a);
                        }
                    }
                    w = w.add(C);
                }
            }
        }
        for (c, row) in acc.iter().enumerate().take(self.nc) {
            for (v, a) in row.iter().enumerate() {
                let (p0, p1) = (S::LANES * v, (S::LANES * (v + 1)).min(self.width));
                if p0 >= p1 {
                    break;
                }
                // SAFETY: pixels p0..p1 < width of channel row c < nc
                // (this function's contract).
                unsafe { a.store_first(y.add(c * ohw + p0), p1 - p0) };
            }
        }
    }
}
