//! The implicit forward's band on AVX-512F (x86-64 only), with the pixels in
//! the vector lanes: `Y` is written in its own layout, with no transposes.
//!
//! [`super::implicit`] describes the slab: output pixel `q = (oy - oy0) * wp + ox`
//! of the band reads its input for tap `r` at `slab[q + off[r]]`. The packed-GEMM
//! orientation of that path broadcasts 6 pixels of a tap against 16 output
//! channels, so its sums come out pixel-major and are transposed into `Y`
//! (a tenth of cifar_3x3's forward) after being carried across reduction
//! chunks in a buffer. Here the roles are swapped:
//!
//! `Y[co][q .. q + 48] = b[co] + sum over r of W[co][r] * slab[q + off[r] .. q + off[r] + 48]`
//!
//! for [`ROWS`] output channels at a time: per tap, three 16-lane loads of
//! the slab (48 consecutive pixels, unaligned) and eight broadcast weights
//! give 24 fused multiply-adds into 24 accumulators, held over the whole
//! reduction. The weights are read from the packed panels of the GEMM path
//! (16 channels per panel, step `r` at `panel + 16 r`): output-channel block
//! `b` is half `b % 2` of panel `b / 2`.
//!
//! The 48 sums of a row are stored through lane masks, one masked store per
//! run of lanes that lie in one output row and left of `ow` (the `wp - ow`
//! padding columns and pixels past the band are computed and dropped, as on
//! the GEMM orientation). The runs depend on the pixel block only, so they
//! are found once per block for all its output channels.
//!
//! Each element is `b[co]` followed by one fused multiply-add per tap in
//! `r` order, exactly the chain of the packed-GEMM orientation (whose
//! chunks reload the exact partial sums): both give the same bits, on any
//! thread count.

use std::arch::x86_64::*;

use super::sgemm::NR;

/// Output channels per block (broadcast weights): half a packed panel.
const ROWS: usize = 8;
const _: () = assert!(2 * ROWS == NR);

/// 16-lane vectors of pixels per block.
const VECS: usize = 3;

/// Pixels per block: the slab must hold this many elements past its last
/// plane's rows plus `wp` (see [`super::implicit`]'s plan).
pub(crate) const PIXELS: usize = 16 * VECS;

/// One run of a pixel block's lanes that lie in one output row: vector `v`,
/// lanes `mask`, written at `dst + lane` (relative to the band's first
/// output element of channel 0).
#[derive(Clone, Copy, Default)]
struct Run {
    v: usize,
    mask: __mmask16,
    dst: isize,
}

/// The runs of pixel block `q0 .. q0 + PIXELS` of a band of `q_len` pixels
/// in rows of `wp` (of which the first `ow` are output columns); returns
/// how many were written into `runs`.
fn runs(q0: usize, q_len: usize, wp: usize, ow: usize, runs: &mut [Run; PIXELS]) -> usize {
    let mut n = 0;
    for v in 0..VECS {
        let mut l = 0;
        while l < 16 {
            let q = q0 + 16 * v + l;
            if q >= q_len {
                break;
            }
            let (oy, ox) = (q / wp, q % wp);
            if ox >= ow {
                // Padding columns: skip to the next row's first pixel.
                l += wp - ox;
                continue;
            }
            let len = (ow - ox).min(16 - l).min(q_len - q);
            let mask = (((1u32 << len) - 1) << l) as __mmask16;
            runs[n] = Run {
                v,
                mask,
                dst: (oy * ow + ox) as isize - l as isize,
            };
            n += 1;
            l += len;
        }
    }
    n
}

/// The band's `cog` output channels: `Y[co][oy * ow + ox]` at `y + co * ohw
/// + (oy - oy0) * ow + ox`.
///
/// # Safety
/// AVX-512F must be available. `a` holds the group's packed weight panels
/// (`cog.div_ceil(16)` panels of `k` steps of 16, zero past `cog`); `offs`
/// holds `k` tap offsets; every `slab[q + off + j]` for `q < q_len` rounded
/// up to a multiple of [`PIXELS`], `j < PIXELS`, lies in the slab; `bias`, if
/// any, holds `cog` values; `y` addresses the band's `cog x (q_len / wp) x ow`
/// outputs (channel stride `ohw`), which no other thread touches.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn band(
    k: usize,
    cog: usize,
    a: *const f32,
    slab: *const f32,
    offs: *const u32,
    q_len: usize,
    wp: usize,
    ow: usize,
    ohw: usize,
    bias: Option<&[f32]>,
    y: *mut f32,
) {
    let mut rs = [Run::default(); PIXELS];
    let nblocks = cog.div_ceil(ROWS);
    for q0 in (0..q_len).step_by(PIXELS) {
        let nruns = runs(q0, q_len, wp, ow, &mut rs);
        let sq = slab.wrapping_add(q0);
        for b in 0..nblocks {
            let rows = (cog - b * ROWS).min(ROWS);
            // SAFETY: block b's weights are half b % 2 of panel b / 2, k
            // steps of NR (the caller's contract).
            let w = unsafe { a.add((b / 2) * NR * k + (b % 2) * ROWS) };
            let mut acc = [[_mm512_setzero_ps(); VECS]; ROWS];
            if let Some(bias) = bias {
                for (r, row) in acc.iter_mut().enumerate().take(rows) {
                    *row = [_mm512_set1_ps(bias[b * ROWS + r]); VECS];
                }
            }
            for p in 0..k {
                // SAFETY: step p < k of the tap table and of the panel; the
                // slab holds PIXELS elements from q0 + off (the contract).
                unsafe {
                    let s = sq.add(*offs.add(p) as usize);
                    let x = [
                        _mm512_loadu_ps(s),
                        _mm512_loadu_ps(s.add(16)),
                        _mm512_loadu_ps(s.add(32)),
                    ];
                    let wr = w.add(p * NR);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*wr.add(r));
                        for (v, xv) in row.iter_mut().zip(x) {
                            *v = _mm512_fmadd_ps(av, xv, *v);
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(rows) {
                let yc = y.wrapping_add((b * ROWS + r) * ohw);
                for run in &rs[..nruns] {
                    // SAFETY: the run's lanes map to output pixels of this
                    // band (`runs`), channel b*ROWS + r < cog: inside the
                    // caller's block; masked-off lanes touch no memory.
                    unsafe { _mm512_mask_storeu_ps(yc.wrapping_offset(run.dst), run.mask, row[run.v]) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PIXELS, Run, runs};

    /// Every output pixel of a band is in exactly one run, at its own
    /// place, and nothing else is.
    #[test]
    fn runs_cover_each_output_pixel_once() {
        for (wp, ow) in [(18, 16), (58, 56), (5, 3), (16, 16), (12, 8), (3, 1), (49, 47)] {
            for band_rows in [1, 2, 3, 7] {
                let q_len = band_rows * wp;
                let mut seen = vec![0u32; band_rows * ow];
                let mut rs = [Run::default(); PIXELS];
                for q0 in (0..q_len).step_by(PIXELS) {
                    let n = runs(q0, q_len, wp, ow, &mut rs);
                    for run in &rs[..n] {
                        for l in 0..16 {
                            if run.mask & (1 << l) != 0 {
                                let q = q0 + 16 * run.v + l;
                                let dst = run.dst + l as isize;
                                assert_eq!(dst, ((q / wp) * ow + q % wp) as isize, "wp {wp} ow {ow}");
                                seen[dst as usize] += 1;
                            }
                        }
                    }
                }
                assert!(seen.iter().all(|&s| s == 1), "wp {wp} ow {ow} rows {band_rows}");
            }
        }
    }
}
