//! ferroconv's own f32 GEMM on packed operands: an AVX2 + FMA micro-kernel.
//!
//! `C[m x n] = A[m x k] * B[k x n]` (or `C += A * B`), with
//! - `A` packed in panels of [`MR`] rows: element `A[i*MR + r][p]` lies at
//!   `a[i * a_stride + p * MR + r]` (rows past `m` are zero, see [`pack_a`]);
//! - `B` packed in panels of [`NR`] columns: `B[p][j*NR + c]` lies at
//!   `b[j * b_stride + p * NR + c]` (the convolution passes write these
//!   panels straight from the image, [`super::im2col::im2col_panels`], or from
//!   `dY`, [`pack_b`]); columns past `n` may hold anything, they only reach
//!   columns of `C` that are never stored;
//! - `C` row-major with row stride `rsc`.
//!
//! The micro-kernel keeps a 6 x 16 block of `C` in twelve 8-lane registers;
//! each step of the reduction loads 16 elements of `B` and broadcasts 6 of
//! `A` into 12 fused multiply-adds (the shape BLIS uses on AVX2 machines). The
//! loop nest keeps one `B` micro-panel of at most [`KC`] steps (16 KiB) in L1
//! while every `A` panel streams past it from L2. A last `A` panel of fewer
//! than `MR` rows runs a kernel of that many rows, and a last `B` panel of
//! at most [`TAIL_COLUMNS`] columns runs [`column_tail`], so neither pays
//! for its empty rows or lanes.
//!
//! Summation order: each element of `C` is `C0 + a0*b0 + a1*b1 + ...`, one
//! fused multiply-add after another, in chunks of the reduction cut from `k`
//! alone (`C0` is zero, or the old `C` when accumulating). Where an element
//! lies in `C`, and how the caller splits `m` and `n`, changes no bit.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

/// Rows of the micro-kernel's block of `C` (and of an `A` panel).
pub(crate) const MR: usize = 6;
/// Columns of the micro-kernel's block of `C` (and of a `B` panel).
pub(crate) const NR: usize = 16;
/// Longest reduction chunk: a `B` micro-panel of `KC * NR` f32 is 16 KiB, half
/// the 32 KiB L1 data cache, so it stays there while the `A` panels pass.
/// Longer reductions are cut into `ceil(k / KC)` nearly equal chunks.
pub(crate) const KC: usize = 256;

/// `A` panels per row block of [`gemm`]: every `B` panel passes one block of
/// `A` (at most `MC_PANELS * MR * KC` f32, 120 KiB) before the next, so a
/// tall `A` (the input gradient's `W^T`, 333 x 256 on a batch-1 14x14 layer,
/// 333 KiB; the forward weights of a 256 x 2304 layer, 2.3 MiB) stays in L2
/// instead of streaming from L3 for every panel of `B`.
pub(crate) const MC_PANELS: usize = 20;

/// Whether the packed kernel runs on this machine: AVX2 and FMA detected and
/// not disabled by `FERROCONV_ISA=generic` (then matrixmultiply runs).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use super::isa::{Isa, isa};
        use std::sync::OnceLock;
        static FMA: OnceLock<bool> = OnceLock::new();
        isa() >= Isa::Avx2 && *FMA.get_or_init(|| std::arch::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Elements of `A` packed for `m` rows and reduction length `k`.
pub(crate) fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k
}

/// Elements of `B` packed for reduction length `k` and `n` columns.
pub(crate) fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * NR * k
}

/// Packs the `m x k` matrix with element `(i, p)` at `src[i * rs + p * cs]`
/// into `MR`-row panels (`dst[i/MR * MR*k + p*MR + i%MR]`, panel stride
/// `MR * k`), zero-filling the rows past `m` of the last panel.
pub(crate) fn pack_a(src: &[f32], m: usize, k: usize, rs: usize, cs: usize, dst: &mut [f32]) {
    debug_assert!(dst.len() >= packed_a_len(m, k));
    if k == 0 {
        return;
    }
    let dst = &mut dst[..packed_a_len(m, k)];
    if rs == 1 {
        // Columns contiguous (A = W^T): read each source column once, in
        // order, and drop MR elements into every panel (walking panel by
        // panel instead reads the whole matrix in a cache-hostile order:
        // 24 bytes per 64-byte line).
        let (full, rest) = (m / MR, m % MR);
        for p in 0..k {
            let col = &src[p * cs..p * cs + m];
            for ip in 0..full {
                let d: &mut [f32; MR] = (&mut dst[ip * MR * k + p * MR..ip * MR * k + (p + 1) * MR])
                    .try_into()
                    .unwrap();
                *d = col[ip * MR..(ip + 1) * MR].try_into().unwrap();
            }
            if rest > 0 {
                let d = &mut dst[full * MR * k + p * MR..full * MR * k + (p + 1) * MR];
                d[..rest].copy_from_slice(&col[full * MR..]);
                d[rest..].fill(0.0);
            }
        }
        return;
    }
    for (ip, panel) in dst.chunks_exact_mut(MR * k).enumerate() {
        let rows = MR.min(m - ip * MR);
        if cs == 1 && rows == MR {
            // Rows contiguous: the panel's MR rows are read as MR sequential
            // streams, one element of each per step, and the panel is
            // written in order.
            let r: [&[f32]; MR] = std::array::from_fn(|r| &src[(ip * MR + r) * rs..(ip * MR + r) * rs + k]);
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                let out: &mut [f32; MR] = out.try_into().unwrap();
                *out = std::array::from_fn(|i| r[i][p]);
            }
        } else if cs == 1 {
            // The last, partial panel: read each row once, write it strided.
            for r in 0..MR {
                if r < rows {
                    let row = &src[(ip * MR + r) * rs..(ip * MR + r) * rs + k];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * MR + r] = v;
                    }
                } else {
                    for p in 0..k {
                        panel[p * MR + r] = 0.0;
                    }
                }
            }
        } else {
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = if r < rows {
                        src[(ip * MR + r) * rs + p * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Packs the `k x n` matrix with row `p` at `src[p * rs ..][..n]` into
/// `NR`-column panels (`dst[j/NR * NR*k + p*NR + j%NR]`, panel stride
/// `NR * k`), zero-filling the columns past `n` of the last panel.
pub(crate) fn pack_b(src: &[f32], k: usize, n: usize, rs: usize, dst: &mut [f32]) {
    debug_assert!(dst.len() >= packed_b_len(k, n));
    let (full, rest) = (n / NR, n % NR);
    let pstride = NR * k;
    // Row by row, so the source is read as `k` sequential streams one after
    // another (a panel-major walk would touch `k` rows at once and defeat the
    // hardware prefetcher: 2x slower on the 1x1 layer).
    for p in 0..k {
        if p + PACK_PREFETCH_ROWS < k {
            super::prefetch(&src[(p + PACK_PREFETCH_ROWS) * rs..(p + PACK_PREFETCH_ROWS) * rs + n]);
        }
        let row = &src[p * rs..p * rs + n];
        for jp in 0..full {
            let d: &mut [f32; NR] = (&mut dst[jp * pstride + p * NR..jp * pstride + (p + 1) * NR])
                .try_into()
                .unwrap();
            let s: &[f32; NR] = row[jp * NR..(jp + 1) * NR].try_into().unwrap();
            *d = *s;
        }
        if rest > 0 {
            let d = &mut dst[full * pstride + p * NR..full * pstride + (p + 1) * NR];
            d[..rest].copy_from_slice(&row[full * NR..]);
            d[rest..].fill(0.0);
        }
    }
}

/// How many rows ahead [`pack_b`] asks for its source rows: each row is a
/// separate stream (the 1x1 layer's 256 input-channel rows of a pixel tile lie
/// 12 KiB apart, mostly in DRAM: the layer's input is 25 MiB), and the
/// hardware prefetcher only ramps up a stream after its first misses.
/// resnet_1x1_56 forward, 1 thread, medians of 7 alternating: none 39.9,
/// 4 rows 43.1, 16 rows 43.3-47.3, 32 rows 48.8, 64 rows 44.2 GFLOP/s (two
/// sets); its input gradient (which packs `dY` the same way) 31.1 -> 34.9.
const PACK_PREFETCH_ROWS: usize = 16;

/// Fewest packed elements worth spreading over the pool: below this, one
/// thread packs faster than rayon splits the work.
const PAR_PACK_MIN: usize = 1 << 16;

/// Runs `pack(i, panel)` for each `panel_len`-element panel `i` of `dst`, in
/// parallel over the current pool when `dst` holds at least
/// [`PAR_PACK_MIN`] elements (every weight pack goes through here).
pub(crate) fn for_each_panel(dst: &mut [f32], panel_len: usize, pack: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if panel_len == 0 {
        return;
    }
    if dst.len() >= PAR_PACK_MIN {
        dst.par_chunks_mut(panel_len).enumerate().for_each(|(i, p)| pack(i, p));
    } else {
        dst.chunks_mut(panel_len).enumerate().for_each(|(i, p)| pack(i, p));
    }
}

/// Packs the weights of every group, `w` holding `groups` row-major `m x k`
/// blocks, as `A` panels (group `g` at `dst[g * packed_a_len(m, k)..]`), in
/// parallel over panels when large: a 256 x 2304 layer is 2.3 MiB, and
/// packing it on one thread held batch-1 forward calls to 3.8x on 16 threads.
pub(crate) fn pack_a_groups(w: &[f32], groups: usize, m: usize, k: usize, dst: &mut [f32]) {
    let dst = &mut dst[..groups * packed_a_len(m, k)];
    let panels = m.div_ceil(MR);
    for_each_panel(dst, MR * k, |i, panel| {
        let (g, ip) = (i / panels, i % panels);
        let rows = MR.min(m - ip * MR);
        let src = &w[g * m * k + ip * MR * k..g * m * k + (ip * MR + rows) * k];
        pack_a(src, rows, k, k, 1, panel);
    });
}

/// Packs the weights of every group, `w` holding `groups` row-major `n x k`
/// blocks, transposed as `B` panels (group `g` at `dst[g * packed_b_len(k, n)..]`),
/// in parallel over panels when large.
pub(crate) fn pack_b_transposed_groups(w: &[f32], groups: usize, n: usize, k: usize, dst: &mut [f32]) {
    let dst = &mut dst[..groups * packed_b_len(k, n)];
    let panels = n.div_ceil(NR);
    for_each_panel(dst, NR * k, |i, panel| {
        let (g, jp) = (i / panels, i % panels);
        let cols = NR.min(n - jp * NR);
        let src = &w[g * n * k + jp * NR * k..g * n * k + (jp * NR + cols) * k];
        pack_b_transposed(src, k, cols, panel);
    });
}

/// Elements ahead (4 cache lines) that [`transpose_f32`] asks for in each
/// source row when packing `dY^T` panels ([`pack_panel_transposed`]), up to
/// 16 rows: 16 concurrent streams (the stem's
/// `dY`, 25 MiB, mostly from DRAM) are more than the hardware prefetcher
/// follows. Weight gradient, 1 thread, medians of 7-9 alternating runs
/// against the 8 x 8 transposes without it: resnet_stem_7x7s2 39.9 -> 44.6,
/// down_3x3s2 42.9 -> 43.6, resnet_1x1_56 45.1 -> 47.6 GFLOP/s (256 pixels
/// ahead: 42.7 on the stem).
const PANEL_PREFETCH: usize = 64;

/// One `B` panel from `nch <= NR` rows of `src` (row stride `rs`) read
/// transposed: `dst[q * NR + j] = src[j * rs + q]` for `q < len`, zero for
/// `j >= nch` (the weight gradients' `dY^T` panels: rows are output
/// channels, steps are pixels), through [`transpose_f32`] with its prefetch,
/// or on AVX-512F, for full panels of at least 16 pixels,
/// [`transpose16_avx512`]. Only `dst[..len * NR]` is written.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn pack_panel_transposed(src: &[f32], rs: usize, nch: usize, len: usize, dst: &mut [f32]) {
    assert!(nch <= NR && dst.len() >= len * NR);
    if nch < NR {
        dst[..len * NR].fill(0.0);
    }
    let mut done = 0;
    if nch == NR && len >= NR && super::isa::isa() == super::isa::Isa::Avx512 {
        assert!(src.len() >= (NR - 1) * rs + len);
        while done < len {
            // Past 16 pixels, a last block ends at the last pixel (it
            // overlaps the one before and writes the same values again).
            done = done.min(len - NR);
            if done + PANEL_PREFETCH < len {
                for r in 0..NR {
                    // SAFETY: a prefetch never faults and only reads; the
                    // address is inside `src` (column < len of row r).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(src.as_ptr().add(r * rs + done + PANEL_PREFETCH).cast()) };
                }
            }
            // SAFETY: AVX-512F (`isa`); rows r < NR, columns done..done + 16
            // <= len of `src` (the assert); dst rows done..done + 16 (len
            // rows of NR, the assert above).
            unsafe { transpose16_avx512(src.as_ptr().add(done), rs, dst.as_mut_ptr().add(done * NR)) };
            done += NR;
        }
    }
    if done < len {
        // SAFETY: AVX2 (the caller); dst holds len rows of NR >= nch elements.
        unsafe {
            transpose_f32(
                &src[done..],
                rs,
                nch,
                len - done,
                dst.as_mut_ptr().add(done * NR),
                NR,
                true,
            )
        };
    }
}

/// `dst[c * 16 + r] = src[r * rs + c]` for `r, c < 16`: a 16 x 16 register
/// transpose (16 loads, 64 shuffles, 16 stores of whole cache lines), for
/// full `dY^T` panels, where the 8 x 8 blocks of [`transpose_f32`] take 96
/// shuffles and 64 half-line accesses for the same 256 elements.
///
/// # Safety
/// AVX-512F must be available; `src + r * rs + c` readable and `dst + i`
/// writable for `r, c < 16`, `i < 256`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16_avx512(src: *const f32, rs: usize, dst: *mut f32) {
    // SAFETY: rows r < 16 of 16 elements (the contract).
    let r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * rs)) });
    // Within each 128-bit lane L: t[2i] = rows 2i, 2i+1 interleaved at
    // columns 4L, 4L+1; t[2i+1] at columns 4L+2, 4L+3.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4i + j], lane L: column 4L + j of rows 4i .. 4i + 4.
    let u: [__m512; 16] = std::array::from_fn(|n| {
        let (i, j) = (n / 4, n % 4);
        let (a, b) = (t[4 * i + j / 2], t[4 * i + 2 + j / 2]);
        if j % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    });
    for j in 0..4 {
        let v1 = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
        let v2 = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
        let w1 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
        let w2 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
        // Column 4L + j: lane L of u[j], u[4 + j], u[8 + j], u[12 + j].
        let cols = [
            _mm512_shuffle_f32x4::<0x88>(v1, w1),
            _mm512_shuffle_f32x4::<0xDD>(v1, w1),
            _mm512_shuffle_f32x4::<0x88>(v2, w2),
            _mm512_shuffle_f32x4::<0xDD>(v2, w2),
        ];
        for (l, c) in cols.into_iter().enumerate() {
            // SAFETY: row 4l + j < 16 of the 16 x 16 destination.
            unsafe { _mm512_storeu_ps(dst.add((4 * l + j) * 16), c) };
        }
    }
}

/// `dst[c * ds + r] = src[r * ss + c]` for `r < rows`, `c < cols`: 8 x 8
/// blocks through a register transpose (each of 8 loads and 8 stores moves
/// 8 elements; past 8 columns the last block ends at the last column), the
/// rest one element at a time. With `prefetch`, each source
/// row is asked for [`PANEL_PREFETCH`] elements ahead (rows that stream from
/// memory). The `dY^T` panels of the weight gradients and the implicit
/// forward's pixel-major sums going into `Y` both go through here.
///
/// # Safety
/// AVX2 must be available; `dst + c * ds + r` must be writable for every
/// `r < rows`, `c < cols`, not alias `src`, and be written by no other thread.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn transpose_f32(
    src: &[f32],
    ss: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ds: usize,
    prefetch: bool,
) {
    assert!(rows == 0 || src.len() >= (rows - 1) * ss + cols);
    let (full_r, full_c) = (rows / 8 * 8, cols / 8 * 8);
    // Past 8 columns, a last block ends at the last column (it overlaps the
    // one before and writes the same values again), so only rows past the
    // last 8-row block go one element at a time (the 28-pixel rows of the
    // implicit weight gradient: 3 blocks and 4 columns -> 4 blocks).
    let shifted = cols > 8 && !cols.is_multiple_of(8);
    let covered = if shifted { cols } else { full_c };
    // `then`, not `then_some`: `cols - 8` is evaluated only when `shifted`
    // (it underflows for `cols < 8`, a panic in a debug build).
    let starts = (0..full_c).step_by(8).chain(shifted.then(|| cols - 8));
    for c0 in starts {
        if prefetch && c0 % 16 == 0 && c0 + PANEL_PREFETCH < cols {
            for r in 0..rows {
                // SAFETY: a prefetch never faults and only reads; the address
                // is inside `src` (column c0 + PANEL_PREFETCH < cols of row r).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(src.as_ptr().add(r * ss + c0 + PANEL_PREFETCH).cast()) };
            }
        }
        for r0 in (0..full_r).step_by(8) {
            // SAFETY: rows r0..r0 + 8 <= rows, columns c0..c0 + 8 <= cols (the assert).
            let v: [__m256; 8] =
                std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src[(r0 + i) * ss + c0..][..8].as_ptr()) });
            for (l, t) in super::winograd_simd::transpose8(v).into_iter().enumerate() {
                // SAFETY: column c0 + l < cols, rows r0..r0 + 8 <= rows: the
                // caller's contract.
                unsafe { _mm256_storeu_ps(dst.add((c0 + l) * ds + r0), t) };
            }
        }
    }
    for r in 0..rows {
        let row = &src[r * ss..][..cols];
        for (c, &v) in row.iter().enumerate().skip(if r < full_r { covered } else { 0 }) {
            // SAFETY: r < rows, c < cols: the caller's contract.
            unsafe { *dst.add(c * ds + r) = v };
        }
    }
}

/// Unreachable off x86-64 ([`available`] is false there).
///
/// # Safety
/// Never callable.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn pack_panel_transposed(_: &[f32], _: usize, _: usize, _: usize, _: &mut [f32]) {
    unreachable!("the packed kernels run only where `available()` is true");
}

/// Stand-in for [`transpose_f32`] where there is no AVX2: never called (the
/// packed kernels, its only callers, run only where [`available`] is true).
///
/// # Safety
/// Never callable.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn transpose_f32(_: &[f32], _: usize, _: usize, _: usize, _: *mut f32, _: usize, _: bool) {
    unreachable!("the packed kernels run only where `available()` is true");
}

/// Packs the transpose of the row-major `n x k` matrix `src` (row stride
/// `k`) as `B` panels: `B[p][j] = src[j * k + p]`, columns past `n` zero
/// (the implicit forward's weights, output channels as the columns).
pub(crate) fn pack_b_transposed(src: &[f32], k: usize, n: usize, dst: &mut [f32]) {
    debug_assert!(dst.len() >= packed_b_len(k, n));
    if k == 0 {
        return;
    }
    for (jp, panel) in dst[..packed_b_len(k, n)].chunks_exact_mut(NR * k).enumerate() {
        for j in 0..NR {
            let col = jp * NR + j;
            if col < n {
                for (p, &v) in src[col * k..(col + 1) * k].iter().enumerate() {
                    panel[p * NR + j] = v;
                }
            } else {
                for p in 0..k {
                    panel[p * NR + j] = 0.0;
                }
            }
        }
    }
}

/// Repacks the row-major `rows x tl` tile `src` (row stride `tl`) into `NR`-column
/// panels of `rows` steps starting at step `r0` (`dst[j/NR * pstride + (r0 + r)*NR + j%NR]`),
/// leaving the columns past `tl` of the last panel as they were.
pub(crate) fn repack_rows(src: &[f32], rows: usize, tl: usize, r0: usize, pstride: usize, dst: &mut [f32]) {
    let (full, rest) = (tl / NR, tl % NR);
    for r in 0..rows {
        let row = &src[r * tl..(r + 1) * tl];
        let o = (r0 + r) * NR;
        for jp in 0..full {
            let d: &mut [f32; NR] = (&mut dst[jp * pstride + o..jp * pstride + o + NR]).try_into().unwrap();
            let s: &[f32; NR] = row[jp * NR..(jp + 1) * NR].try_into().unwrap();
            *d = *s;
        }
        if rest > 0 {
            dst[full * pstride + o..full * pstride + o + rest].copy_from_slice(&row[full * NR..]);
        }
    }
}

/// What [`gemm`] does with the old `C`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Start {
    /// `C = A * B`, `C` likely in cache (a scratch tile).
    Zero,
    /// `C = A * B` into memory that is likely not in cache (a layer's output
    /// or input gradient): the kernel prefetches each block's lines of `C`
    /// before its multiply-adds, so that its stores do not wait for them.
    /// resnet_1x1_56's input gradient (which writes `dX` directly) measured
    /// 37.0 -> 45.0 GFLOP/s at 1 thread and 65.3 -> 83.5 at 2 (medians of 7
    /// alternating runs against the build before); where `C` is a cached
    /// scratch tile the prefetches cost 1-5% (the col2im and Winograd
    /// paths), so they ask for [`Start::Zero`].
    ZeroCold,
    /// `C = bias + A * B`, `bias[i]` in every column of row `i` (a layer's
    /// output rows are its output channels), `C` cold as with
    /// [`Start::ZeroCold`]: the accumulators start from the bias, so the
    /// chain is the one a bias written into `C` first and accumulated onto
    /// would run, without that extra pass over `C` (resnet_1x1_56 forward
    /// with bias, 1 thread: 7% slower than without it through the pass).
    /// `m` rounded up to [`MR`] values must be readable.
    RowBias(*const f32),
    /// `C += A * B`.
    Accumulate,
}

/// `C = A * B` or `C += A * B` on packed operands (module documentation), as
/// `start` says. Runs only where [`available`] is true.
///
/// # Safety
/// [`available`] must be true; `a` must address `ceil(m / MR)` panels of
/// `a_stride` elements each holding at least `MR * k`, `b` likewise
/// `ceil(n / NR)` panels of `b_stride >= NR * k`; every element `C[i][j]`,
/// `i < m`, `j < n`, at `c + i * rsc + j` must be writable (and readable with
/// [`Start::Accumulate`]) and alias neither operand; with [`Start::RowBias`],
/// `m` rounded up to [`MR`] bias values must be readable.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    rsc: usize,
    start: Start,
) {
    // SAFETY: the caller's contract, which is `gemm_prefetching`'s.
    unsafe { gemm_prefetching(m, n, k, a, a_stride, b, b_stride, c, rsc, start, Prefetch::NONE) }
}

/// Rows of memory that a [`gemm_prefetching`] call asks for while it
/// multiplies: `rows` rows of `len` elements from `base`, `stride`
/// elements apart (the next pixel tile's input rows of a 1x1 layer, which
/// its `B` packing reads next). Only prefetched, never read, so any address
/// will do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefetch {
    /// The first row.
    pub(crate) base: *const f32,
    /// Rows.
    pub(crate) rows: usize,
    /// Elements from one row to the next.
    pub(crate) stride: usize,
    /// Elements per row.
    pub(crate) len: usize,
}

impl Prefetch {
    /// No rows.
    pub(crate) const NONE: Prefetch = Prefetch {
        base: std::ptr::null(),
        rows: 0,
        stride: 0,
        len: 0,
    };
}

/// [`gemm`], also asking for `pf`'s lines, a few dozen before each
/// micro-kernel block, row after row, so that they arrive while the
/// multiply-adds run instead of stalling the packing that reads them next.
/// resnet_1x1_56's forward (whose input, 25 MiB, streams from memory)
/// measured 11.1 -> 10.4 ms a call at 1 thread and 6.3 -> 5.5 at 2 (medians
/// of 6 alternating runs); asked into L2 only (`_MM_HINT_T1`) the lines made
/// no difference. Packing from an input held in cache (a bound: wrong
/// results) ran 8.9 ms.
///
/// # Safety
/// As [`gemm`] (`pf` may address anything: prefetches never fault).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_prefetching(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    rsc: usize,
    start: Start,
    pf: Prefetch,
) {
    #[cfg(target_arch = "x86_64")]
    {
        debug_assert!(available());
        // SAFETY: the caller guarantees AVX2 + FMA (`available`) and the
        // operand extents `gemm` documents.
        unsafe { gemm_avx2(m, n, k, a, a_stride, b, b_stride, c, rsc, start, pf) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, n, k, a, a_stride, b, b_stride, c, rsc, start, pf);
        unreachable!("the packed f32 GEMM runs only where `available()` is true");
    }
}

/// The loop nest (BLIS's order): reduction chunks of at most `KC` steps
/// outermost, then blocks of [`MC_PANELS`] `A` panels (one block's chunk,
/// 120 KiB, stays in L2), then `B` panels (one chunk, 16 KiB, stays in L1),
/// then the block's `A` panels. `C` is reloaded once per chunk. The blocking
/// changes no element's arithmetic: each element's chain of fused
/// multiply-adds still runs in reduction order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    rsc: usize,
    start: Start,
    pf: Prefetch,
) {
    // A last panel of one or two columns (infer_b1's 49 Winograd tiles: 48
    // + 1) goes to `column_tail` instead of a micro-kernel block.
    let tail = n % NR;
    if tail > 0 && tail <= TAIL_COLUMNS {
        let main = n - tail;
        // SAFETY: the caller's contract for the first `main` columns, and
        // for the last `tail` (panel main / NR of B, columns main.. of C).
        unsafe {
            if main > 0 {
                gemm_avx2(m, main, k, a, a_stride, b, b_stride, c, rsc, start, pf);
            }
            column_tail(
                m,
                k,
                a,
                a_stride,
                b.add(main / NR * b_stride),
                tail,
                c.add(main),
                rsc,
                start,
            );
        }
        return;
    }
    let nk = k.div_ceil(KC).max(1);
    let mpanels = m.div_ceil(MR);
    let npanels = n.div_ceil(NR);
    let w = panels_per_call();
    // pf's lines, row after row, spread evenly over the micro-kernel calls.
    let line_len = 64 / std::mem::size_of::<f32>();
    let row_lines = pf.len.div_ceil(line_len);
    let calls = nk * mpanels * npanels.div_ceil(w);
    let per_call = (pf.rows * row_lines).div_ceil(calls.max(1));
    let (mut pf_row, mut pf_line) = (0, 0);
    for kc in 0..nk {
        let (k0, k1) = (kc * k / nk, (kc + 1) * k / nk);
        for ic in (0..mpanels).step_by(MC_PANELS) {
            for jp in (0..npanels).step_by(w) {
                let nr = (w * NR).min(n - jp * NR);
                let jq = if jp + 1 < npanels { jp + 1 } else { jp };
                for ip in ic..mpanels.min(ic + MC_PANELS) {
                    let mr = MR.min(m - ip * MR);
                    for _ in 0..per_call {
                        if pf_row == pf.rows {
                            break;
                        }
                        let at = pf.base.wrapping_add(pf_row * pf.stride + pf_line * line_len);
                        // A prefetch never faults and only reads.
                        _mm_prefetch::<_MM_HINT_T0>(at.cast());
                        pf_line += 1;
                        if pf_line == row_lines {
                            (pf_row, pf_line) = (pf_row + 1, 0);
                        }
                    }
                    // SAFETY: panel ip of A and panels jp, jq of B exist and
                    // hold steps k0..k1; the C block (ip*MR.., jp*NR..) of
                    // mr x nr lies in C (all by the caller's contract).
                    unsafe {
                        micro(
                            k1 - k0,
                            Packed::<MR>(a.add(ip * a_stride + k0 * MR)),
                            b.add(jp * b_stride + k0 * NR),
                            b.add(jq * b_stride + k0 * NR),
                            match (kc, start) {
                                (0, Start::Zero) => Init::Zero,
                                (0, Start::ZeroCold) => Init::ZeroCold,
                                (0, Start::RowBias(bias)) => Init::RowBias(bias.add(ip * MR)),
                                _ => Init::Load,
                            },
                            c.add(ip * MR * rsc + jp * NR),
                            rsc,
                            mr,
                            nr,
                        );
                    }
                }
            }
        }
    }
}

/// Most columns [`gemm`] leaves past its last whole `B` panel to
/// [`column_tail`] rather than to a micro-kernel block of that panel.
/// Such a block costs the 6 x 16 kernel's six fused multiply-adds per step
/// (or, beside a whole panel, doubles the 6 x 32 kernel's); `column_tail`
/// costs one per column and `A` panel. infer_b1_3x3's forward and input
/// gradient (49 tiles per position) measured 1.16-1.17 per call with the
/// 49th column dropped (a bound: wrong results); see `column_tail` for the
/// kept figures. Two: at six panels, two columns' accumulators take
/// twelve of AVX2's sixteen registers. Wider tails stay on the
/// micro-kernels (no suite row has one, so no crossover was measured).
const TAIL_COLUMNS: usize = 2;

/// `C[.., 0..cols] = A * B[.., 0..cols]` (as [`gemm`] with `start`) for the
/// first `cols <= TAIL_COLUMNS` columns of one `B` panel (at `b`): the `A`
/// panels' six rows in the lanes, each column's element broadcast, so a
/// step costs one fused multiply-add per `A` panel and column (six panels
/// at a time: six chains in flight per column). Each element's chain is the
/// one the micro-kernels run (from zero, its row bias or `C`, then every
/// step in order), so the bits are the same.
///
/// It reads all of `A` again for one or two columns, at about 0.6 ns per
/// panel and step whether `A` comes from L1 or L2: a 256 x 256 x 1 product
/// took 8.0 us against the 6 x 16 kernel's 21.2 (in cache, best of 100);
/// 256 x 256 x 49, 65.0 against 73.0 us. Per call, infer_b1_3x3 (49 tiles per Winograd position):
/// forward 1.029 / 1.054 at 1 / 2 threads, input gradient 1.054 / 1.067.
///
/// # Safety
/// As [`gemm`] for an `m x cols` block: `a` holds `ceil(m / MR)` panels
/// `a_stride` apart of `k` steps, `b` one panel of `k` steps, `C`'s rows
/// `rsc` apart hold `cols` writable (readable with `Start::Accumulate`)
/// elements; with `Start::RowBias`, `m` rounded up to `MR` bias values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn column_tail(
    m: usize,
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    cols: usize,
    c: *mut f32,
    rsc: usize,
    start: Start,
) {
    const G: usize = 6;
    // Each group of up to G panels runs with that many chains at once (a
    // last group of fewer as one block too, not panel by panel).
    macro_rules! group {
        ($ip:expr, $g:expr, $($p:literal),*) => {
            match ($g, cols) {
                $(($p, 1) => column_block::<$p, 1>(m, k, a, a_stride, $ip, b, c, rsc, start),
                  ($p, _) => column_block::<$p, 2>(m, k, a, a_stride, $ip, b, c, rsc, start),)*
                _ => unreachable!("at most G panels a group"),
            }
        };
    }
    let mpanels = m.div_ceil(MR);
    for ip in (0..mpanels).step_by(G) {
        // SAFETY: panels ip..ip + g of A (g <= G, all < mpanels), the
        // caller's contract for the rest.
        unsafe { group!(ip, G.min(mpanels - ip), 1, 2, 3, 4, 5, 6) }
    }
}

/// [`column_tail`] for `A` panels `ip .. ip + P` and columns `0..COLS`.
///
/// # Safety
/// As [`column_tail`], with panels `ip .. ip + P` inside `A`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn column_block<const P: usize, const COLS: usize>(
    m: usize,
    k: usize,
    a: *const f32,
    a_stride: usize,
    ip: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    start: Start,
) {
    // Lanes 0..MR of a panel's step (the two past it are not read).
    let six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    let rows = |g: usize| MR.min(m - (ip + g) * MR);
    let mut acc = [[_mm256_setzero_ps(); COLS]; P];
    match start {
        Start::Zero | Start::ZeroCold => {}
        Start::RowBias(bias) => {
            for (g, row) in acc.iter_mut().enumerate() {
                // SAFETY: the caller provides m rounded up to MR bias values.
                *row = [unsafe { _mm256_maskload_ps(bias.add((ip + g) * MR), six) }; COLS];
            }
        }
        Start::Accumulate => {
            for (g, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let mut e = [0.0f32; 8];
                    for (r, x) in e.iter_mut().enumerate().take(rows(g)) {
                        // SAFETY: row (ip + g) MR + r < m, column j < cols of C.
                        *x = unsafe { *c.add(((ip + g) * MR + r) * rsc + j) };
                    }
                    // SAFETY: `e` holds 8 elements.
                    *v = unsafe { _mm256_loadu_ps(e.as_ptr()) };
                }
            }
        }
    }
    for p in 0..k {
        // SAFETY: step p of panel ip + g of A (six lanes, masked) and of
        // the B panel (columns j < COLS).
        unsafe {
            let bv: [__m256; COLS] = std::array::from_fn(|j| _mm256_broadcast_ss(&*b.add(p * NR + j)));
            for (g, row) in acc.iter_mut().enumerate() {
                let av = _mm256_maskload_ps(a.add((ip + g) * a_stride + p * MR), six);
                for (v, &bj) in row.iter_mut().zip(&bv) {
                    *v = _mm256_fmadd_ps(av, bj, *v);
                }
            }
        }
    }
    for (g, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let mut e = [0.0f32; 8];
            // SAFETY: `e` holds 8 elements.
            unsafe { _mm256_storeu_ps(e.as_mut_ptr(), *v) };
            for (r, &x) in e.iter().enumerate().take(rows(g)) {
                // SAFETY: row (ip + g) MR + r < m, column j < cols of C.
                unsafe { *c.add(((ip + g) * MR + r) * rsc + j) = x };
            }
        }
    }
}

/// Where the micro-kernel finds the operand elements of each reduction step:
/// `MR` consecutive elements of `A` (broadcast one by one) or `NR` of `B`.
pub(crate) trait Steps: Copy {
    /// The elements of step `p`.
    ///
    /// # Safety
    /// `p` must be a step of the operand this value describes.
    unsafe fn at(self, p: usize) -> *const f32;

    /// Element `r` of step `p` (for `A`): `at(p) + r` unless the rows lie apart.
    ///
    /// # Safety
    /// As [`Steps::at`], and `r < MR`.
    #[inline(always)]
    unsafe fn elem(self, p: usize, r: usize) -> *const f32 {
        // SAFETY: the caller passes a step of this operand and r < MR.
        unsafe { self.at(p).add(r) }
    }
}

/// `A` rows that lie apart: row `r` of step `p` at `rows[r] + p` (the
/// implicit weight gradient, where row `r` is one tap of one input channel
/// and the steps are pixels).
#[derive(Clone, Copy)]
struct TapRows([*const f32; MR]);

impl Steps for TapRows {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> *const f32 {
        // SAFETY: the caller passes a step of row 0.
        unsafe { self.0[0].add(p) }
    }

    #[inline(always)]
    unsafe fn elem(self, p: usize, r: usize) -> *const f32 {
        // SAFETY: the caller passes a step of row r.
        unsafe { self.0[r].add(p) }
    }
}

/// `A` rows read through a table of steps: row `r` of step `p` at
/// `rows[r] + steps[p]` (the strided weight gradient, where row `r` is one
/// tap of one input channel read in place and the steps are the output
/// pixels of a region, the stride apart along a row).
#[derive(Clone, Copy)]
struct TableRows {
    rows: [*const f32; MR],
    steps: *const u32,
}

impl Steps for TableRows {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> *const f32 {
        // SAFETY: the caller passes a step of the table and of row 0.
        unsafe { self.rows[0].add(*self.steps.add(p) as usize) }
    }

    #[inline(always)]
    unsafe fn elem(self, p: usize, r: usize) -> *const f32 {
        // SAFETY: the caller passes a step of the table and of row r.
        unsafe { self.rows[r].add(*self.steps.add(p) as usize) }
    }
}

/// A packed panel `W` elements wide: step `p` at `ptr + p * W`.
#[derive(Clone, Copy)]
struct Packed<const W: usize>(*const f32);

impl<const W: usize> Steps for Packed<W> {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> *const f32 {
        // SAFETY: the caller passes a step of this panel.
        unsafe { self.0.add(p * W) }
    }
}

/// `A` read in place from an image: step `p` at `base + offs[p]` (the
/// implicit-GEMM forward, where step `p` is one kernel tap of one channel
/// and the `MR` rows are `MR` neighbouring pixels of a zero-padded input).
#[derive(Clone, Copy)]
pub(crate) struct Taps {
    pub(crate) base: *const f32,
    pub(crate) offs: *const u32,
}

impl Steps for Taps {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> *const f32 {
        // SAFETY: the caller passes a step of the tap table, whose offsets
        // stay inside the image the base points into.
        unsafe { self.base.add(*self.offs.add(p) as usize) }
    }
}

/// What the micro-kernel's accumulators start from.
#[derive(Clone, Copy)]
pub(crate) enum Init {
    /// Zero.
    Zero,
    /// Zero, with the block's lines of `C` prefetched ([`Start::ZeroCold`]).
    ZeroCold,
    /// The old `C` (accumulate).
    Load,
    /// `bias[j]` in every row of column `j` (`NR` readable values per panel).
    ColBias(*const f32),
    /// `bias[r]` in every column of row `r` (`MR` readable values), the
    /// block's lines of `C` prefetched as with [`Init::ZeroCold`].
    RowBias(*const f32),
}

/// `B` panels one micro-kernel call covers: 2 (a 6 x 32 block of `C`) where
/// the AVX-512 kernel runs, else 1 (6 x 16, AVX2). `FERROCONV_PANELS=2`
/// forces the two-panel loops on an AVX2 machine (each call then runs the
/// 6 x 16 kernel twice), so the tests cover that bookkeeping everywhere.
pub(crate) fn panels_per_call() -> usize {
    use std::sync::OnceLock;
    static W: OnceLock<usize> = OnceLock::new();
    *W.get_or_init(|| {
        if wide_kernel() || std::env::var("FERROCONV_PANELS").as_deref() == Ok("2") {
            2
        } else {
            1
        }
    })
}

/// Whether the 6 x 32 AVX-512 micro-kernel runs (AVX-512F detected and not
/// disabled by `FERROCONV_ISA`).
fn wide_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::isa::isa() == super::isa::Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One `mr x nr` block of `C` (`mr <= MR`, `nr <= NR * panels_per_call()`)
/// from `k` steps: `A` from `a`, columns `0..16` of `B` from the panel at
/// `b0`, columns `16..32` from the panel at `b1` (pass `b1 = b0` when there
/// is no second panel). Stored at `c` (row stride `rsc`). A block of
/// `mr < MR` rows runs a kernel compiled for that many rows, so the panel's
/// zero rows cost no fused multiply-adds (down_3x3s2's 128 output channels
/// are 21 panels of 6 and one of 2). Per call, against running all `MR`
/// rows: down_3x3s2's forward 1.019-1.030, lenet_c2's (50 channels)
/// 1.017-1.036, resnet_1x1_56's (64) 1.013-1.041, 1 thread; rows whose
/// channels are multiples of 6 or that run other paths, unchanged. Each
/// element's chain of fused multiply-adds is the same, so are the bits.
///
/// # Safety
/// [`available`] must be true; `a` must hold `k` steps, `b0` and `b1` `k`
/// steps of `NR` elements; with `Init::ColBias`, `nr` rounded up to 16 bias
/// values must be readable; the `mr x nr` block at `c` must be writable (and
/// readable with `Init::Load`) and alias neither operand.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro<A: Steps>(
    k: usize,
    a: A,
    b0: *const f32,
    b1: *const f32,
    init: Init,
    c: *mut f32,
    rsc: usize,
    mr: usize,
    nr: usize,
) {
    // A block of fewer than MR rows (a layer's last output channels: 128 =
    // 21 * 6 + 2) runs a kernel of that many rows, whose unused rows cost
    // no fused multiply-adds.
    macro_rules! rows {
        ($kernel:ident $(::<$($g:ty),*>)?, $($arg:expr),*) => {
            match mr {
                MR => $kernel::<$($($g,)*)? MR>($($arg),*),
                5 => $kernel::<$($($g,)*)? 5>($($arg),*),
                4 => $kernel::<$($($g,)*)? 4>($($arg),*),
                3 => $kernel::<$($($g,)*)? 3>($($arg),*),
                2 => $kernel::<$($($g,)*)? 2>($($arg),*),
                _ => $kernel::<$($($g,)*)? 1>($($arg),*),
            }
        };
    }
    debug_assert!((1..=MR).contains(&mr));
    if wide_kernel() {
        // SAFETY: AVX-512F detected; the operands as the caller guarantees;
        // each kernel computes the block's first `mr` rows.
        unsafe {
            if nr > NR {
                rows!(kernel_6x32_avx512::<A>, k, a, b0, b1, init, c, rsc, nr);
            } else {
                rows!(kernel_6x16_avx512::<A>, k, a, b0, init, c, rsc, nr);
            }
        }
        return;
    }
    // SAFETY: AVX2 and FMA (`available`); the operands as the caller guarantees.
    unsafe {
        rows!(
            kernel_6x16::<A, Packed<NR>>,
            k,
            a,
            Packed::<NR>(b0),
            init,
            c,
            rsc,
            nr.min(NR)
        );
        if nr > NR {
            let init = match init {
                Init::ColBias(bias) => Init::ColBias(bias.add(NR)),
                other => other,
            };
            rows!(
                kernel_6x16::<A, Packed<NR>>,
                k,
                a,
                Packed::<NR>(b1),
                init,
                c.add(NR),
                rsc,
                nr - NR
            );
        }
    }
}

/// Asks for the lines of the `mr x nr` block of `C` at `c` (row stride
/// `rsc`) before a [`Init::ZeroCold`] block's multiply-adds, so that its
/// stores find them: every 16th element of each row and its last (a block
/// row spans at most 32 elements, three lines).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_block(c: *mut f32, rsc: usize, mr: usize, nr: usize) {
    for r in 0..mr {
        let row = c.wrapping_add(r * rsc);
        for j in (0..nr).step_by(NR).chain(std::iter::once(nr.saturating_sub(1))) {
            // SAFETY: a prefetch never faults; the address (element j of
            // row r of the block) is computed without being dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(j).cast()) };
        }
    }
}

/// One `R x nr` (at most 6 x 16) block of `C` on AVX2: [`kernel_6xv`]
/// with two vectors per row, or one where `nr <= 8` (a panel's last
/// columns: infer_b1's 49th tile, lenet_c2's 49th and 50th output channels)
/// so that the empty half costs no fused multiply-adds. Each element's chain
/// is the same either way.
///
/// # Safety
/// As [`kernel_6xv`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16<A: Steps, B: Steps, const R: usize>(
    k: usize,
    a: A,
    b: B,
    init: Init,
    c: *mut f32,
    rsc: usize,
    nr: usize,
) {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        if nr <= 8 {
            kernel_6xv::<A, B, 1, R>(k, a, b, init, c, rsc, nr)
        } else {
            kernel_6xv::<A, B, 2, R>(k, a, b, init, c, rsc, nr)
        }
    }
}

/// One `R x nr` (at most 6 x `8 V`) block of `C` from `k` steps of `R V`
/// FMAs (AVX2), stored at `c` (row stride `rsc`); `B`'s steps are read for
/// their first `8 V` columns. Partial blocks load and store `C` through lane
/// masks, as [`kernel_6x32_avx512`] does.
///
/// # Safety
/// As [`micro`] for one panel: `a` holds `k` steps, `b` `k` steps of `NR`
/// elements, `nr <= 8 V`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6xv<A: Steps, B: Steps, const V: usize, const R: usize>(
    k: usize,
    a: A,
    b: B,
    init: Init,
    c: *mut f32,
    rsc: usize,
    nr: usize,
) {
    // The block's rows: R of them, at most MR.
    let mr = R;
    debug_assert!(nr <= 8 * V && V <= 2);
    let full = mr == MR && nr == 8 * V;
    // A partial block's columns j < nr: lanes of vector h where 8 h + lane < nr.
    let masks: [__m256i; V] = std::array::from_fn(|h| {
        let n = nr.saturating_sub(8 * h).min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    });
    let mut acc = [[_mm256_setzero_ps(); V]; MR];
    match init {
        Init::Zero => {}
        Init::ZeroCold => prefetch_block(c, rsc, mr, nr),
        Init::RowBias(bias) => {
            prefetch_block(c, rsc, mr, nr);
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                // SAFETY: the caller provides MR bias values.
                *row = [unsafe { _mm256_broadcast_ss(&*bias.add(r)) }; V];
            }
        }
        Init::ColBias(bias) => {
            // SAFETY: the caller provides NR >= 8 V bias values.
            let v: [__m256; V] = std::array::from_fn(|h| unsafe { _mm256_loadu_ps(bias.add(8 * h)) });
            acc = [v; MR];
        }
        Init::Load if full => {
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                for (h, v) in row.iter_mut().enumerate() {
                    // SAFETY: a full block: row r, columns 0..8 V lie in C.
                    *v = unsafe { _mm256_loadu_ps(c.add(r * rsc + 8 * h)) };
                }
            }
        }
        Init::Load => {
            for (r, row) in acc.iter_mut().enumerate().take(mr) {
                for (h, v) in row.iter_mut().enumerate() {
                    // SAFETY: row r < mr of C; the mask reads columns j < nr
                    // only (masked-off lanes are not accessed).
                    *v = unsafe { _mm256_maskload_ps(c.add(r * rsc + 8 * h), masks[h]) };
                }
            }
        }
    }
    for p in 0..k {
        // SAFETY: step p of the operands: MR elements of A, NR >= 8 V of B.
        unsafe {
            let bp = b.at(p);
            let bv: [__m256; V] = std::array::from_fn(|h| _mm256_loadu_ps(bp.add(8 * h)));
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                let av = _mm256_broadcast_ss(&*a.elem(p, r));
                for (v, &b) in row.iter_mut().zip(&bv) {
                    *v = _mm256_fmadd_ps(av, b, *v);
                }
            }
        }
    }
    if full {
        for (r, row) in acc.iter().enumerate().take(R) {
            for (h, v) in row.iter().enumerate() {
                // SAFETY: a full block, as above.
                unsafe { _mm256_storeu_ps(c.add(r * rsc + 8 * h), *v) };
            }
        }
        return;
    }
    for (r, row) in acc.iter().enumerate().take(mr) {
        for (h, v) in row.iter().enumerate() {
            // SAFETY: row r < mr of C, columns j < nr (the mask).
            unsafe { _mm256_maskstore_ps(c.add(r * rsc + 8 * h), masks[h], *v) };
        }
    }
}

/// One `R x nr` (at most 6 x 32) block of `C` from `k` steps of `2 R` FMAs on
/// 16-lane registers (AVX-512F): two adjacent `B` panels at once, the same
/// chain of fused multiply-adds per element as [`kernel_6x16`], so both
/// kernels give bitwise the same results. Partial blocks load and store
/// their rows through two lane masks (they went through a copy on the
/// stack, element by element: infer_b1's Winograd products, 49 tiles in
/// panels of 32, are half such blocks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x32_avx512<A: Steps, const R: usize>(
    k: usize,
    a: A,
    b0: *const f32,
    b1: *const f32,
    init: Init,
    c: *mut f32,
    rsc: usize,
    nr: usize,
) {
    // The block's rows: R of them, at most MR.
    let mr = R;
    debug_assert!(nr <= 2 * NR && mr <= MR);
    let full = mr == MR && nr == 2 * NR;
    // Columns j < nr of a partial block: the first panel's lanes, the second's.
    let mask = |from: usize| -> __mmask16 {
        let n = nr.saturating_sub(from).min(NR);
        ((1u32 << n) - 1) as u16
    };
    let (m0, m1) = (mask(0), mask(NR));
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    match init {
        Init::Zero => {}
        Init::ZeroCold => prefetch_block(c, rsc, mr, nr),
        Init::RowBias(bias) => {
            prefetch_block(c, rsc, mr, nr);
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                // SAFETY: the caller provides MR bias values.
                *row = [unsafe { _mm512_set1_ps(*bias.add(r)) }; 2];
            }
        }
        Init::ColBias(bias) => {
            // SAFETY: the caller provides nr rounded up to 16 bias values;
            // the second half is read only when nr > 16.
            let v0 = unsafe { _mm512_loadu_ps(bias) };
            let v1 = if nr > NR {
                // SAFETY: as above.
                unsafe { _mm512_loadu_ps(bias.add(NR)) }
            } else {
                _mm512_setzero_ps()
            };
            acc = [[v0, v1]; MR];
        }
        Init::Load if full => {
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                // SAFETY: a full block: row r, columns 0..32 lie in C.
                unsafe {
                    row[0] = _mm512_loadu_ps(c.add(r * rsc));
                    row[1] = _mm512_loadu_ps(c.add(r * rsc + NR));
                }
            }
        }
        Init::Load => {
            for (r, row) in acc.iter_mut().enumerate().take(mr) {
                // SAFETY: row r < mr of C; the masks read columns j < nr
                // only (masked-off lanes are not accessed).
                unsafe {
                    row[0] = _mm512_maskz_loadu_ps(m0, c.add(r * rsc));
                    row[1] = _mm512_maskz_loadu_ps(m1, c.add(r * rsc + NR));
                }
            }
        }
    }
    for p in 0..k {
        // SAFETY: step p of the operands: MR elements of A, NR of each panel.
        unsafe {
            let z0 = _mm512_loadu_ps(b0.add(p * NR));
            let z1 = _mm512_loadu_ps(b1.add(p * NR));
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                let av = _mm512_set1_ps(*a.elem(p, r));
                row[0] = _mm512_fmadd_ps(av, z0, row[0]);
                row[1] = _mm512_fmadd_ps(av, z1, row[1]);
            }
        }
    }
    if full {
        for (r, row) in acc.iter().enumerate().take(R) {
            // SAFETY: a full block, as above.
            unsafe {
                _mm512_storeu_ps(c.add(r * rsc), row[0]);
                _mm512_storeu_ps(c.add(r * rsc + NR), row[1]);
            }
        }
        return;
    }
    for (r, row) in acc.iter().enumerate().take(mr) {
        // SAFETY: row r < mr of C, columns j < nr (the masks).
        unsafe {
            _mm512_mask_storeu_ps(c.add(r * rsc), m0, row[0]);
            _mm512_mask_storeu_ps(c.add(r * rsc + NR), m1, row[1]);
        }
    }
}

/// One `R x nr` (at most 6 x 16) block of `C` from `k` steps of `R` FMAs on
/// 16-lane registers (AVX-512F): the blocks of one `B` panel that
/// [`kernel_6x32_avx512`] would run half empty (the Winograd products of 16
/// tiles, a last odd panel). Partial rows load and store through a lane
/// mask. Same chain of fused multiply-adds per element as the other kernels,
/// so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16_avx512<A: Steps, const R: usize>(
    k: usize,
    a: A,
    b: *const f32,
    init: Init,
    c: *mut f32,
    rsc: usize,
    nr: usize,
) {
    // The block's rows: R of them, at most MR.
    let mr = R;
    debug_assert!(nr <= NR && mr <= MR);
    let mask: __mmask16 = if nr >= NR { !0 } else { (1u16 << nr) - 1 };
    let mut acc = [_mm512_setzero_ps(); MR];
    match init {
        Init::Zero => {}
        Init::ZeroCold => prefetch_block(c, rsc, mr, nr),
        Init::RowBias(bias) => {
            prefetch_block(c, rsc, mr, nr);
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                // SAFETY: the caller provides MR bias values.
                *row = unsafe { _mm512_set1_ps(*bias.add(r)) };
            }
        }
        Init::ColBias(bias) => {
            // SAFETY: the caller provides nr rounded up to 16 bias values.
            acc = [unsafe { _mm512_loadu_ps(bias) }; MR];
        }
        Init::Load => {
            for (r, row) in acc.iter_mut().enumerate().take(mr) {
                // SAFETY: row r < mr of C; the mask reads columns j < nr
                // only (masked-off lanes are not accessed).
                *row = unsafe { _mm512_maskz_loadu_ps(mask, c.add(r * rsc)) };
            }
        }
    }
    for p in 0..k {
        // SAFETY: step p of the operands: MR elements of A, NR of the panel.
        unsafe {
            let z = _mm512_loadu_ps(b.add(p * NR));
            for (r, row) in acc.iter_mut().enumerate().take(R) {
                *row = _mm512_fmadd_ps(_mm512_set1_ps(*a.elem(p, r)), z, *row);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(mr) {
        // SAFETY: row r < mr of C, columns j < nr (the mask).
        unsafe { _mm512_mask_storeu_ps(c.add(r * rsc), mask, *row) };
    }
}

/// Pixels per micro-kernel call of [`sum_rows_panels`]: a row block's six
/// rows of them are 3 KiB, which stay in L1 while the `dYt` panels (8 KiB
/// per 16 channels, from L2) pass. Row blocks outermost (session 22, on the
/// Zen 4; before, the panels were outermost and the rows streamed past
/// them): down_3x3s2's weight gradient 91.1 -> 92.6 GFLOP/s at 1 thread and
/// 172 -> 184 at 2, resnet_1x1_56's 96 -> 98 and 194 -> 200, the stem's
/// 92.3 -> 93.2 and 183 -> 184, lenet_c2's 72.7 -> 71.2 and unchanged at 2
/// (best of 30-40 calls, 3-4 alternating processes each; the same bits).
pub(crate) const QC: usize = 128;

/// The weight-gradient product `acc += A * B` with `A` given as `rows`
/// separate rows of `q_len` elements (`row(i)` points at row `i`; the tap
/// rows of a slab or of a column tile; with `steps`, step `q` of row `i` at
/// `row(i) + steps[q]` instead of `row(i) + q`) and `B` as `npanels` packed
/// panels of `q_len` steps (`dyt[jp * q_max * NR ..]`: 16 output channels
/// per step).
/// `acc` is row-major, `ceil(rows / MR) * MR` rows of `npanels * NR`:
/// element `(r, co)` of `A * B` at `acc[r * npanels * NR + co]`. The
/// reduction runs in chunks of [`QC`] steps, each continuing every element's
/// chain of fused multiply-adds, so the result does not depend on `QC`.
///
/// # Safety
/// AVX2 and FMA must be available; `row(i)` for `i < rows` must address
/// `q_len` readable elements (at its `steps[..q_len]` with a table, which
/// must hold `q_len` entries); `dyt` must hold `npanels` panels of `q_max >=
/// q_len` steps; `acc` must hold the rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sum_rows_panels(
    rows: usize,
    row: impl Fn(usize) -> *const f32,
    steps: Option<&[u32]>,
    dyt: &[f32],
    q_max: usize,
    q_len: usize,
    npanels: usize,
    acc: &mut [f32],
) {
    let ld = npanels * NR;
    debug_assert!(acc.len() >= rows.div_ceil(MR) * MR * ld);
    debug_assert!(dyt.len() >= (npanels - 1) * q_max * NR + q_len * NR);
    let w = panels_per_call();
    for q0 in (0..q_len).step_by(QC) {
        let len = QC.min(q_len - q0);
        for rb in 0..rows.div_ceil(MR) {
            // Rows past the last repeat it; their sums are never read.
            let mut ptrs = [std::ptr::null::<f32>(); MR];
            for (i, ptr) in ptrs.iter_mut().enumerate() {
                let r = row((rb * MR + i).min(rows - 1));
                // SAFETY: row(..) addresses q_len elements (steps); q0 + len
                // <= q_len.
                *ptr = if steps.is_some() { r } else { unsafe { r.add(q0) } };
            }
            // Each row's next chunk is asked for (into L2: the whole next
            // chunk of `A` does not fit L1): the rows lie far apart (a 1x1
            // layer's input channels, 12 KiB), each a short stream the
            // hardware prefetcher barely starts on.
            if q0 + QC < q_len {
                let n = QC.min(q_len - q0 - QC);
                // With a table the rows are an image read in place, whose
                // lines the hardware prefetcher finds (asking for them
                // measured no faster on down_3x3s2's weight gradient).
                if steps.is_none() {
                    for &ptr in &ptrs {
                        for j in (0..n).step_by(16) {
                            // Element q0 + QC + j < q_len of the row; a
                            // prefetch never faults or dereferences.
                            _mm_prefetch::<_MM_HINT_T2>(ptr.wrapping_add(QC + j).cast());
                        }
                    }
                }
            }
            for jp in (0..npanels).step_by(w) {
                let jq = if jp + 1 < npanels { jp + 1 } else { jp };
                let nr = (w * NR).min(ld - jp * NR);
                let b0 = dyt.as_ptr().wrapping_add((jp * q_max + q0) * NR);
                let b1 = dyt.as_ptr().wrapping_add((jq * q_max + q0) * NR);
                let c = acc.as_mut_ptr().wrapping_add(rb * MR * ld + jp * NR);
                // SAFETY: steps 0..len of each row and of panels jp, jq from
                // pixel q0 lie in the operands; the C block lies in `acc`.
                unsafe {
                    match steps {
                        None => micro(len, TapRows(ptrs), b0, b1, Init::Load, c, ld, MR, nr),
                        Some(t) => micro(
                            len,
                            TableRows {
                                rows: ptrs,
                                steps: t.as_ptr().add(q0),
                            },
                            b0,
                            b1,
                            Init::Load,
                            c,
                            ld,
                            MR,
                            nr,
                        ),
                    }
                }
            }
        }
    }
}

/// Unreachable off x86-64 ([`available`] is false there).
///
/// # Safety
/// Never callable.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sum_rows_panels(
    _rows: usize,
    _row: impl Fn(usize) -> *const f32,
    _steps: Option<&[u32]>,
    _dyt: &[f32],
    _q_max: usize,
    _q_len: usize,
    _npanels: usize,
    _acc: &mut [f32],
) {
    unreachable!("the packed f32 kernels run only where `available()` is true");
}

/// The offset (in f32) from `s` to its first 64-byte-aligned element, so
/// that packed panels start on a cache line. At most 15.
pub(crate) fn align_offset(s: &[f32]) -> usize {
    let off = s.as_ptr().align_offset(64);
    if off < 16 { off } else { 0 }
}

/// The first `len` elements of `s` from its first 64-byte-aligned one, and
/// what follows them (a task's scratch slot cut into aligned parts; each
/// part needs up to 15 elements of slack in the plan's length).
pub(crate) fn split_aligned(s: &mut [f32], len: usize) -> (&mut [f32], &mut [f32]) {
    let al = align_offset(s);
    s[al..].split_at_mut(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// The packed kernel against a plain triple loop, on edge sizes and
    /// strides, accumulating or not, with C poisoned outside the block.
    #[test]
    fn matches_plain_loops() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (6, 16, 1),
            (7, 17, 3),
            (13, 40, 300),
            (64, 33, 576),
            (5, 15, 0),
            (12, 32, 257),
            // Edge panels of 1-8 columns (one vector per row) and 9-15.
            (9, 13, 20),
            (6, 25, 31),
            (11, 8, 5),
            // Tails of one or two columns (`column_tail`): after whole
            // panels, alone, over more and fewer than six A panels.
            (43, 49, 256),
            (13, 18, 300),
            (37, 2, 9),
            (75, 34, 40),
            (3, 17, 0),
        ] {
            let bias: Vec<f32> = (0..usize::next_multiple_of(m, MR))
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            for start in [
                Start::Zero,
                Start::ZeroCold,
                Start::RowBias(bias.as_ptr()),
                Start::Accumulate,
            ] {
                let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let bm: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
                let rsc = n + 3;
                let mut c: Vec<f32> = (0..m * rsc).map(|_| rng.random_range(-1.0..1.0)).collect();
                for i in 0..m {
                    c[i * rsc + n..(i + 1) * rsc].fill(f32::NAN);
                }
                let mut want = c.clone();
                for i in 0..m {
                    for j in 0..n {
                        let mut s = match start {
                            Start::Accumulate => want[i * rsc + j] as f64,
                            Start::RowBias(_) => bias[i] as f64,
                            _ => 0.0,
                        };
                        for p in 0..k {
                            s += a[i * k + p] as f64 * bm[p * n + j] as f64;
                        }
                        want[i * rsc + j] = s as f32;
                    }
                }
                let mut pa = vec![f32::NAN; packed_a_len(m, k)];
                pack_a(&a, m, k, k, 1, &mut pa);
                let mut pa_t = vec![f32::NAN; packed_a_len(m, k)];
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                pack_a(&at, m, k, 1, m, &mut pa_t);
                assert_eq!(
                    pa.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    pa_t.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                let mut pb = vec![f32::NAN; packed_b_len(k, n)];
                pack_b(&bm, k, n, n, &mut pb);
                packed_gemm(m, n, k, &pa, &pb, &mut c, rsc, start);
                for i in 0..m {
                    for j in 0..rsc {
                        let (g, w) = (c[i * rsc + j], want[i * rsc + j]);
                        if j >= n {
                            assert!(g.is_nan(), "wrote outside C at ({i}, {j})");
                        } else {
                            let tol = 4.0 * (k as f32 + 2.0) * f32::EPSILON * (k as f32 + 1.0);
                            assert!((g - w).abs() <= tol, "m={m} n={n} k={k} ({i},{j}): {g} vs {w}");
                        }
                    }
                }
            }
        }
    }

    /// [`gemm`] on operands packed by [`pack_a`] and [`pack_b`] (panel
    /// strides `MR * k` and `NR * k`) into `c` (row stride `rsc`).
    #[allow(clippy::too_many_arguments)]
    fn packed_gemm(m: usize, n: usize, k: usize, pa: &[f32], pb: &[f32], c: &mut [f32], rsc: usize, start: Start) {
        assert!(pa.len() >= packed_a_len(m, k) && pb.len() >= NR * k * n.div_ceil(NR));
        assert!(m == 0 || c.len() >= (m - 1) * rsc + n);
        // SAFETY: the packed operands and C have the documented extents
        // (asserted above; `start`'s bias is the caller's).
        unsafe {
            gemm(
                m,
                n,
                k,
                pa.as_ptr(),
                MR * k,
                pb.as_ptr(),
                NR * k,
                c.as_mut_ptr(),
                rsc,
                start,
            )
        }
    }

    /// A last panel of one or two columns ([`column_tail`]) gives bitwise
    /// what the micro-kernels give those columns within a wider product, for
    /// every start and reductions longer than `KC`.
    #[test]
    fn column_tail_matches_micro_kernels_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(11);
        for &(m, n, k) in &[(43usize, 49usize, 256usize), (20, 17, 600), (7, 2, 33), (64, 34, 100)] {
            let wide = n.next_multiple_of(NR) + NR;
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let bm: Vec<f32> = (0..k * wide).map(|_| rng.random_range(-1.0..1.0)).collect();
            let bias: Vec<f32> = (0..m.next_multiple_of(MR))
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let c0: Vec<f32> = (0..m * wide).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut pa = vec![0.0; packed_a_len(m, k)];
            pack_a(&a, m, k, k, 1, &mut pa);
            let mut pb = vec![0.0; packed_b_len(k, wide)];
            pack_b(&bm, k, wide, wide, &mut pb);
            for start in [Start::Zero, Start::RowBias(bias.as_ptr()), Start::Accumulate] {
                let (mut narrow, mut full) = (c0.clone(), c0.clone());
                packed_gemm(m, n, k, &pa, &pb, &mut narrow, wide, start);
                packed_gemm(m, wide, k, &pa, &pb, &mut full, wide, start);
                for i in 0..m {
                    for j in 0..wide {
                        let want = if j < n { full[i * wide + j] } else { c0[i * wide + j] };
                        assert_eq!(
                            narrow[i * wide + j].to_bits(),
                            want.to_bits(),
                            "m={m} n={n} k={k} ({i},{j})"
                        );
                    }
                }
            }
        }
    }

    /// `dY^T` panels against a plain loop for 1 to 16 channels and lengths
    /// up to 100 (the 16 x 16 AVX-512F blocks and the tails after them),
    /// with the panel poisoned past its `len` rows.
    #[test]
    fn panels_match_plain_loop() {
        if !available() {
            return;
        }
        let rs = 131;
        let src: Vec<f32> = (0..NR * rs).map(|i| i as f32 * 0.5 - 7.0).collect();
        for nch in [1, 5, 15, 16] {
            for len in (0..40).chain([63, 64, 65, 100]) {
                let mut dst = vec![f32::NAN; len * NR + 2 * NR];
                // SAFETY: AVX2 is available; src holds nch rows of rs >= len,
                // dst len rows of NR.
                unsafe { pack_panel_transposed(&src[..(nch.max(1) - 1) * rs + len], rs, nch, len, &mut dst) };
                for q in 0..len + 2 {
                    for j in 0..NR {
                        let got = dst[q * NR + j];
                        if q >= len {
                            assert!(got.is_nan(), "nch {nch} len {len}: wrote ({q}, {j})");
                        } else if j < nch {
                            assert_eq!(got, src[j * rs + q], "nch {nch} len {len} at ({q}, {j})");
                        } else {
                            assert_eq!(got, 0.0, "nch {nch} len {len} at ({q}, {j})");
                        }
                    }
                }
            }
        }
    }

    /// The transpose against a plain loop on every shape up to 20 x 20 (the
    /// 8 x 8 blocks, the shifted last column block, the tails), with the
    /// destination poisoned around the block.
    #[test]
    fn transpose_matches_plain_loop() {
        if !available() {
            return;
        }
        for rows in 0..21 {
            for cols in 0..21 {
                let (ss, ds) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
                let mut dst = vec![f32::NAN; cols.max(1) * ds];
                for prefetch in [false, true] {
                    // SAFETY: AVX2 is available; dst holds cols rows of ds >= rows.
                    unsafe { transpose_f32(&src, ss, rows, cols, dst.as_mut_ptr(), ds, prefetch) };
                    for c in 0..cols {
                        for r in 0..ds {
                            let got = dst[c * ds + r];
                            if r < rows {
                                assert_eq!(got, src[r * ss + c], "rows {rows} cols {cols} at ({r}, {c})");
                            } else {
                                assert!(got.is_nan(), "rows {rows} cols {cols}: wrote ({r}, {c})");
                            }
                        }
                    }
                }
            }
        }
    }
}
