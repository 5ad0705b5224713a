//! Winograd F(2x2, 3x3) and F(4x4, 3x3) against the f64 reference, in f32
//! and f64, on 600 seeded random geometries per type and on edge shapes, with
//! NaN-poisoned outputs; the algorithm preference (`Auto` picks the
//! documented path, bitwise); bitwise determinism over thread counts.
//!
//! Error bound. Winograd mixes the elements of one 2x2 output tile (forward,
//! input gradient) or of one 3x3 kernel (weight gradient) through its
//! transforms, so an element's rounding error scales with the largest
//! magnitude in its tile or kernel rather than with its own. The test bound is
//! the GEMM paths' `2 (L + 1) eps M` with `M` the largest `sum |terms|` in the
//! element's 2x2 output tile (forward, input gradient) or 3x3 kernel (weight
//! gradient). Measured over these geometries: at most 1.03 (L + 1) eps M
//! (input gradient of a dilated layer; forward 0.43, weight gradient 0.68),
//! f32 and f64 together, so the GEMM bound's factor 2 holds with room.
//!
//! F(4x4, 3x3) mixes a 4x4 output tile (and the nine taps of a kernel
//! through 6x6 transforms), with transform entries up to 8 and the inexact
//! 1/6 and 1/24: `M` is then the largest `sum |terms|` in the element's 4x4
//! tile (forward, input gradient) or 3x3 kernel, and the measured largest
//! error was 3.97 (L + 1) eps M (f64 input gradient; forward 2.72 in f32,
//! 2.19 in f64; f32 input gradient 3.30; weight gradient 2.20 in f32, 1.95
//! in f64). The test bound is [`F4_FACTOR`] = 4 times the F(2x2, 3x3) one,
//! `8 (L + 1) eps M`, the same twofold room.

mod common;

use common::*;
use ferroconv::{
    Algorithm, Conv2dGeometry, Conv2dSpec, ConvError, Element, Padding, Workspace, conv2d_input_grad_into, conv2d_into,
    conv2d_weight_grad_into,
};
use rand::RngExt;

/// Random geometries per type and algorithm (a few under Miri, see
/// `common::cases`).
const RANDOM_CASES: u64 = cases(600, 6);

/// The F(4x4, 3x3) bound's factor over F(2x2, 3x3)'s (see the module docs).
const F4_FACTOR: f64 = 4.0;

fn random_winograd_geometry(r: &mut rand::rngs::StdRng) -> Conv2dGeometry {
    loop {
        let n = [1, 1, 2, 3][r.random_range(0..4)];
        let (ci, co) = (r.random_range(1..40), r.random_range(1..40));
        let (h, w) = (r.random_range(1..16), r.random_range(1..16));
        // Dilation 1 in half the cases, else 2 or 3 per axis.
        let (dh, dw) = if r.random_bool(0.5) {
            (1, 1)
        } else {
            (r.random_range(1..4), r.random_range(1..4))
        };
        let p = Padding::explicit(
            r.random_range(0..=2 * dh),
            r.random_range(0..=2 * dh),
            r.random_range(0..=2 * dw),
            r.random_range(0..=2 * dw),
        );
        if let Ok(g) = Conv2dSpec::new(n, ci, h, w, co, 3, 3)
            .padding(p)
            .dilation(dh, dw)
            .algorithm(Algorithm::Winograd)
            .build()
        {
            return g;
        }
    }
}

/// Each weight's magnitude replaced by the largest of its 3x3 kernel.
fn kernel_max(mag: &[f64]) -> Vec<f64> {
    mag.chunks(9)
        .flat_map(|k| [k.iter().cloned().fold(0.0, f64::max); 9])
        .collect()
}

/// The largest error of `got` in units of `(len + 1) eps mag`.
fn worst<T: Element>(got: &[T], want: &[f64], mag: &[f64], len: usize) -> f64 {
    let unit = (len as f64 + 1.0) * T::EPSILON.to_f64();
    got.iter()
        .zip(want)
        .zip(mag)
        .map(|((g, w), m)| (g.to_f64() - w).abs() / (unit * m + 1e-300))
        .fold(0.0, f64::max)
}

/// Checks the three passes of `geom` against the f64 reference; returns the
/// largest errors of the forward, input gradient and weight gradient in
/// units of `(L + 1) eps M` (see the module docs).
fn check<T: Element>(geom: &Conv2dGeometry, seed: u64, ws: &mut Workspace<T>) -> [f64; 3] {
    let ctx = format!("seed {seed}, {:?}, {}", geom.algorithm(), describe(geom));
    // F(4x4, 3x3) mixes a 4x4 output tile, with a larger error constant.
    let (t, scale) = if geom.algorithm() == Algorithm::Winograd4x4 {
        (4, F4_FACTOR)
    } else {
        (2, 1.0)
    };
    let mut r = rng(seed);
    let x: Vec<T> = random_vec(&mut r, geom.input_len());
    let w: Vec<T> = random_vec(&mut r, geom.weight_len());
    let b: Vec<T> = random_vec(&mut r, geom.bias_len());
    let dy: Vec<T> = random_vec(&mut r, geom.output_len());
    let e = expected(geom, &to_f64(&x), &to_f64(&w), &to_f64(&b), &to_f64(&dy));
    let (oh, ow, ohw) = (geom.oh(), geom.ow(), geom.oh() * geom.ow());

    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, Some(&b), &mut y, ws).unwrap();
    let y_mag: Vec<f64> = tile_max(&e.y_mag, oh, ow, geom.dilation(), t);
    let y_tol: Vec<f64> = y_mag.iter().map(|m| m * scale).collect();
    assert_close("forward+bias", &ctx, &y, &e.y, &y_tol, geom.k_len() + 1);

    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, None, &mut y, ws).unwrap();
    let no_bias: Vec<f64> =
        e.y.iter()
            .enumerate()
            .map(|(i, v)| v - b[(i / ohw) % geom.c_out()].to_f64())
            .collect();
    assert_close("forward", &ctx, &y, &no_bias, &y_tol, geom.k_len() + 1);
    let fwd = worst(&y, &no_bias, &y_mag, geom.k_len() + 1);

    let mut dx = vec![T::NAN; geom.input_len()];
    conv2d_input_grad_into(geom, &dy, &w, &mut dx, ws).unwrap();
    let dx_mag = tile_max(&e.dx_mag, geom.h(), geom.w(), geom.dilation(), t);
    let dx_tol: Vec<f64> = dx_mag.iter().map(|m| m * scale).collect();
    assert_close("input_grad", &ctx, &dx, &e.dx, &dx_tol, geom.c_out() * 9);
    let igrad = worst(&dx, &e.dx, &dx_mag, geom.c_out() * 9);

    let mut dw = vec![T::NAN; geom.weight_len()];
    conv2d_weight_grad_into(geom, &x, &dy, &mut dw, ws).unwrap();
    let dw_mag = kernel_max(&e.dw_mag);
    let dw_tol: Vec<f64> = dw_mag.iter().map(|m| m * scale).collect();
    assert_close("weight_grad", &ctx, &dw, &e.dw, &dw_tol, geom.n() * ohw);
    [fwd, igrad, worst(&dw, &e.dw, &dw_mag, geom.n() * ohw)]
}

/// The random geometries under F(2x2, 3x3) and F(4x4, 3x3); prints the
/// largest errors seen (`--nocapture`).
fn run_random<T: Element>(seed_base: u64) {
    let mut ws = Workspace::new();
    for algo in [Algorithm::Winograd, Algorithm::Winograd4x4] {
        let mut most = [0.0f64; 3];
        for case in 0..RANDOM_CASES {
            let seed = seed_base + case;
            let g = random_winograd_geometry(&mut rng(seed)).with_algorithm(algo).unwrap();
            let errs = check::<T>(&g, seed, &mut ws);
            for (m, e) in most.iter_mut().zip(errs) {
                *m = m.max(e);
            }
        }
        eprintln!(
            "{algo:?} {}: largest error / ((L + 1) eps M): forward {:.3}, input gradient {:.3}, weight gradient {:.3}",
            std::any::type_name::<T>(),
            most[0],
            most[1],
            most[2]
        );
    }
}

#[test]
fn random_geometries_f32() {
    run_random::<f32>(30_000);
}

#[test]
fn random_geometries_f64() {
    run_random::<f64>(40_000);
}

/// Shapes the random ones do not reach: several forward tasks, several
/// transformed-weight chunks of one task, several
/// weight-gradient chunks (3 x 20 x 20 tiles of 64 + 64 channels: 1,200 tiles
/// against 1,024 per chunk), channel counts off the 6-row and 16-column
/// panels, one-pixel rows, asymmetric padding up to 2, and runs of 8 or more
/// tiles along a row (the explicit-SIMD transforms, eight tiles a register,
/// with a last overlapping group) in odd widths and heights, with row-only
/// dilation.
fn edge_geometries() -> Vec<Conv2dGeometry> {
    [
        Conv2dSpec::new(2, 5, 9, 37, 6, 3, 3).padding(Padding::explicit(0, 1, 2, 0)),
        Conv2dSpec::new(1, 3, 13, 50, 4, 3, 3)
            .padding(Padding::explicit(2, 2, 1, 1))
            .dilation(2, 1),
        Conv2dSpec::new(1, 2, 4, 16, 3, 3, 3),
        Conv2dSpec::new(3, 64, 40, 40, 64, 3, 3).padding(Padding::symmetric(1)),
        Conv2dSpec::new(2, 33, 9, 7, 70, 3, 3).padding(Padding::explicit(2, 0, 1, 2)),
        Conv2dSpec::new(1, 130, 5, 5, 7, 3, 3),
        // One tile block whose tasks transform their own weights in chunks
        // (1,100 input channels: one 6-row panel per chunk), 67 output
        // channels (a last panel of one row, two tasks' halves at 2 threads).
        Conv2dSpec::new(1, 1100, 4, 4, 67, 3, 3).padding(Padding::symmetric(1)),
        Conv2dSpec::new(2, 64, 1, 23, 65, 3, 3).padding(Padding::symmetric(1)),
        Conv2dSpec::new(4, 128, 8, 8, 128, 3, 3).padding(Padding::same()),
        // dilated_3x3d2's shape, smaller; and an odd dilated one.
        Conv2dSpec::new(2, 64, 20, 20, 64, 3, 3)
            .padding(Padding::symmetric(2))
            .dilation(2, 2),
        Conv2dSpec::new(1, 17, 11, 9, 33, 3, 3)
            .padding(Padding::explicit(1, 3, 0, 2))
            .dilation(3, 2),
    ]
    .into_iter()
    .map(|s| s.build().unwrap())
    .collect()
}

#[test]
fn edge_shapes() {
    for (i, g) in edge_geometries().iter().enumerate().filter(|(_, g)| runs_here(g)) {
        for algo in [Algorithm::Winograd, Algorithm::Winograd4x4, Algorithm::Auto] {
            let g = g.with_algorithm(algo).unwrap();
            check::<f32>(&g, 500 + i as u64, &mut Workspace::new());
            check::<f64>(&g, 600 + i as u64, &mut Workspace::new());
        }
    }
}

/// All three passes of `geom` with fresh inputs (fixed seed).
fn passes<T: Element>(geom: &Conv2dGeometry) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut r = rng(7);
    let x: Vec<T> = random_vec(&mut r, geom.input_len());
    let w: Vec<T> = random_vec(&mut r, geom.weight_len());
    let dy: Vec<T> = random_vec(&mut r, geom.output_len());
    let mut ws = Workspace::new();
    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, None, &mut y, &mut ws).unwrap();
    let mut dx = vec![T::NAN; geom.input_len()];
    conv2d_input_grad_into(geom, &dy, &w, &mut dx, &mut ws).unwrap();
    let mut dw = vec![T::NAN; geom.weight_len()];
    conv2d_weight_grad_into(geom, &x, &dy, &mut dw, &mut ws).unwrap();
    (y, dx, dw)
}

fn bits<T: Element>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64().to_bits()).collect()
}

/// `Auto` runs exactly the path `Algorithm::Auto` documents: bitwise the
/// results of the forced algorithm it should pick, pass by pass.
#[test]
fn auto_picks_the_documented_path() {
    let same = |a: &[f32], b: &[f32]| bits(a) == bits(b);
    let spec = |c: usize, d: usize| {
        Conv2dSpec::new(2, c, 16, 16, c, 3, 3)
            .padding(Padding::symmetric(d))
            .dilation(d, d)
    };
    for (c, d, fwd_winograd, wgrad_winograd) in [
        (32, 1, false, false),
        (64, 1, true, true),
        (64, 2, true, false),
        (128, 2, true, true),
    ] {
        let auto = passes::<f32>(&spec(c, d).build().unwrap());
        let wino = passes::<f32>(&spec(c, d).algorithm(Algorithm::Winograd).build().unwrap());
        let gemm = passes::<f32>(&spec(c, d).algorithm(Algorithm::Gemm).build().unwrap());
        // Only where the packed f32 kernels run (FERROCONV_ISA=generic keeps
        // `Auto` on GEMM).
        let packed = !same(&wino.0, &gemm.0) && std::env::var("FERROCONV_ISA").as_deref() != Ok("generic");
        let want_fwd = if fwd_winograd && packed { &wino } else { &gemm };
        let want_w = if wgrad_winograd && packed { &wino } else { &gemm };
        assert!(same(&auto.0, &want_fwd.0), "{c} channels, dilation {d}: forward");
        assert!(same(&auto.1, &want_fwd.1), "{c} channels, dilation {d}: input gradient");
        assert!(same(&auto.2, &want_w.2), "{c} channels, dilation {d}: weight gradient");
    }
    // f64 stays on GEMM under Auto.
    let g = spec(128, 1).build().unwrap();
    let auto = passes::<f64>(&g);
    let gemm = passes::<f64>(&g.with_algorithm(Algorithm::Gemm).unwrap());
    assert_eq!(
        (bits(&auto.0), bits(&auto.1), bits(&auto.2)),
        (bits(&gemm.0), bits(&gemm.1), bits(&gemm.2))
    );
    // Batch 1 on 14x14 (49 tiles): forward and input gradient by Winograd,
    // the weight gradient (tiles as its reduction) on GEMM, except where
    // AVX-512F runs in 256-bit halves (Zen 4: from 48 tiles); 5x5 (9 tiles)
    // all on GEMM.
    let g = Conv2dSpec::new(1, 256, 14, 14, 256, 3, 3).padding(Padding::symmetric(1));
    let auto = passes::<f32>(&g.build().unwrap());
    let wino = passes::<f32>(&g.algorithm(Algorithm::Winograd).build().unwrap());
    let gemm = passes::<f32>(&g.algorithm(Algorithm::Gemm).build().unwrap());
    let packed = !same(&wino.0, &gemm.0) && std::env::var("FERROCONV_ISA").as_deref() != Ok("generic");
    let want = if packed { &wino } else { &gemm };
    let want_w = if packed && avx512_halves_in_use() { &wino } else { &gemm };
    assert!(same(&auto.0, &want.0) && same(&auto.1, &want.1) && same(&auto.2, &want_w.2));
    let g = Conv2dSpec::new(1, 64, 5, 5, 64, 3, 3).padding(Padding::symmetric(1));
    let auto = passes::<f32>(&g.build().unwrap());
    let gemm = passes::<f32>(&g.algorithm(Algorithm::Gemm).build().unwrap());
    assert!(same(&auto.0, &gemm.0) && same(&auto.1, &gemm.1) && same(&auto.2, &gemm.2));
    // F(4x4, 3x3) for all three passes from 32 channels and 64 tiles of 4x4
    // (here 4 x 16), where the AVX-512F kernels run the weight gradient from
    // 64 channels (32 on GEMM), and the forward pass and input gradient too
    // where the implicit forward takes them (32 on GEMM, 16 of 18 padded
    // columns; 8 of 10 are too few); 14x14 outputs (four 4x4 tiles covering
    // 16 per side) stay on F(2x2, 3x3), except the forward pass and input
    // gradient on AVX-512F; 2 images of 16x16 (32 tiles of 4x4) stay too.
    // Where AVX-512F runs in 256-bit halves (Zen 4), 32 channels take
    // F(4x4, 3x3) for every pass, as on AVX2.
    let avx512 = avx512_in_use();
    let full = avx512 && !avx512_halves_in_use();
    for (g, f4, f4_w, w_wino) in [
        (Conv2dSpec::new(4, 32, 16, 16, 32, 3, 3), !full, !full, !full),
        (Conv2dSpec::new(16, 32, 8, 8, 32, 3, 3), true, !full, !full),
        (Conv2dSpec::new(4, 64, 16, 16, 64, 3, 3), true, true, true),
        (Conv2dSpec::new(4, 64, 14, 14, 64, 3, 3), avx512, false, true),
        (Conv2dSpec::new(2, 64, 16, 16, 64, 3, 3), false, false, true),
    ] {
        let g = g.padding(Padding::symmetric(1));
        let auto = passes::<f32>(&g.build().unwrap());
        let wino = passes::<f32>(&g.algorithm(Algorithm::Winograd).build().unwrap());
        let wino4 = passes::<f32>(&g.algorithm(Algorithm::Winograd4x4).build().unwrap());
        let gemm = passes::<f32>(&g.algorithm(Algorithm::Gemm).build().unwrap());
        let packed = !same(&wino.0, &gemm.0) && std::env::var("FERROCONV_ISA").as_deref() != Ok("generic");
        // Below 64 channels F(2x2, 3x3) does not run: GEMM where not F(4x4).
        let f2 = g.build().unwrap().c_in() >= 64;
        let want = match (packed, f4, f2) {
            (false, _, _) | (true, false, false) => &gemm,
            (true, true, _) => &wino4,
            (true, false, true) => &wino,
        };
        let want_w = match (packed && w_wino, f4_w) {
            (false, _) => &gemm,
            (true, true) => &wino4,
            (true, false) => &wino,
        };
        let ctx = format!("{:?}", g.build().unwrap());
        assert!(same(&auto.0, &want.0), "forward: {ctx}");
        assert!(same(&auto.1, &want.1), "input gradient: {ctx}");
        assert!(same(&auto.2, &want_w.2), "weight gradient: {ctx}");
    }
}

/// Whether the AVX-512F kernels run: the CPU has AVX-512F and
/// `FERROCONV_ISA` does not force a narrower path.
fn avx512_in_use() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && !matches!(std::env::var("FERROCONV_ISA").as_deref(), Ok("avx2") | Ok("generic"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether AVX-512F is in use in 256-bit halves: `FERROCONV_AVX512_HALVES`
/// if set to 1 or 0, else an AMD family 19h CPU (Zen 4), read here from
/// CPUID independently of the crate (under Miri, which cannot run CPUID,
/// false, as in the crate).
fn avx512_halves_in_use() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::__cpuid;
        let detected = || {
            let v = __cpuid(0);
            let eax = __cpuid(1).eax;
            let family = ((eax >> 8) & 0xf) + if (eax >> 8) & 0xf == 0xf { (eax >> 20) & 0xff } else { 0 };
            &[v.ebx.to_le_bytes(), v.edx.to_le_bytes(), v.ecx.to_le_bytes()].concat()[..] == b"AuthenticAMD"
                && family == 0x19
        };
        avx512_in_use()
            && match std::env::var("FERROCONV_AVX512_HALVES").as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => detected(),
            }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    {
        false
    }
}

#[test]
fn winograd_is_bitwise_deterministic_across_thread_counts() {
    // The second geometry (batch 1, 36 or 9 tiles) has fewer tile blocks
    // than 8 or 16 threads, so its forward and input-gradient tasks are cut
    // by output channel too (100 and 70 channels: uneven panel blocks), and
    // its weight-gradient GEMMs by output channel; 1 thread cuts neither.
    let specs = [
        Conv2dSpec::new(3, 64, 40, 40, 64, 3, 3),
        Conv2dSpec::new(1, 70, 12, 12, 100, 3, 3),
    ];
    for spec in specs {
        for algo in [Algorithm::Winograd, Algorithm::Winograd4x4] {
            let g = spec.padding(Padding::symmetric(1)).algorithm(algo).build().unwrap();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| passes::<f32>(&g))
            };
            let one = run(1);
            for threads in [2, 3, 8, 16] {
                let t = run(threads);
                let ctx = format!("{algo:?}, {threads} threads, {g:?}");
                assert!(bits(&one.0) == bits(&t.0), "forward, {ctx}");
                assert!(bits(&one.1) == bits(&t.1), "input gradient, {ctx}");
                assert!(bits(&one.2) == bits(&t.2), "weight gradient, {ctx}");
            }
        }
    }
}

#[test]
fn winograd_rejects_geometries_it_cannot_run() {
    let base = || Conv2dSpec::new(1, 4, 9, 9, 4, 3, 3).algorithm(Algorithm::Winograd);
    match base().algorithm(Algorithm::Winograd4x4).stride(2, 1).build() {
        Err(ConvError::UnsupportedAlgorithm {
            algorithm: Algorithm::Winograd4x4,
            reason,
        }) => assert!(reason.contains("stride 1"), "{reason}"),
        other => panic!("expected UnsupportedAlgorithm (stride 1), got {other:?}"),
    }
    let cases = [
        (
            Conv2dSpec::new(1, 4, 9, 9, 4, 5, 5).algorithm(Algorithm::Winograd),
            "3x3 kernel",
        ),
        (base().stride(2, 2), "stride 1"),
        (base().groups(2), "groups = 1"),
        (
            base().padding(Padding::explicit(0, 3, 0, 0)),
            "padding of at most 2 x dilation",
        ),
        (
            base().dilation(2, 1).padding(Padding::explicit(0, 0, 3, 0)),
            "padding of at most 2 x dilation",
        ),
    ];
    for (spec, reason) in cases {
        match spec.build() {
            Err(ConvError::UnsupportedAlgorithm {
                algorithm: Algorithm::Winograd,
                reason: r,
            }) => assert!(r.contains(reason), "{r}"),
            other => panic!("expected UnsupportedAlgorithm ({reason}), got {other:?}"),
        }
    }
    // Dilation is fine, with padding up to 2 x dilation.
    assert!(
        base()
            .dilation(2, 3)
            .padding(Padding::explicit(4, 3, 6, 0))
            .build()
            .is_ok()
    );
    // The same shapes build under Auto and Gemm.
    assert!(base().stride(2, 2).algorithm(Algorithm::Auto).build().is_ok());
    assert!(base().groups(2).algorithm(Algorithm::Gemm).build().is_ok());
}
