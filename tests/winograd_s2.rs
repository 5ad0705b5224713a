//! The stride-2 Winograd forward (`kernels/winograd_s2.rs`: polyphase
//! decomposition, F(2, 2) per axis, 25 products per 2x2 output tile) against
//! the f64 reference, in f32 on seeded random geometries and edge shapes,
//! with NaN-poisoned outputs; which layers `Auto` sends there; bitwise
//! determinism over thread counts.
//!
//! Error bound. As F(2x2, 3x3), the transforms mix the elements of one 2x2
//! output tile (and of its 5x5 input patch), so an element's rounding error
//! scales with the largest magnitude in its tile: the test bound is the GEMM
//! paths' `2 (L + 1) eps M` with `M` the largest `sum |terms|` in the
//! element's 2x2 output tile. Measured over these geometries: at most
//! 0.005 (L + 1) eps M (printed with `--nocapture`; the reductions are
//! 144-360 long, so `(L + 1) eps M` is loose for them), far inside the
//! factor 2.
//!
//! The path runs where AVX-512F does (f32, `Algorithm::Auto`); elsewhere,
//! and under `FERROCONV_ISA=avx2` or `generic`, these tests check that
//! `Auto` stays on the GEMM path.

mod common;

use common::*;
use ferroconv::{Algorithm, Conv2dGeometry, Conv2dSpec, Element, Padding, Workspace, conv2d_into};
use rand::RngExt;

/// Random geometries (a few under Miri, see `common::cases`).
const RANDOM_CASES: u64 = cases(150, 2);

/// Whether the stride-2 Winograd forward runs here: the CPU has AVX-512F and
/// `FERROCONV_ISA` does not force a narrower path.
fn s2_in_use() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && !matches!(std::env::var("FERROCONV_ISA").as_deref(), Ok("avx2") | Ok("generic"))
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    {
        false
    }
}

/// Whether `Auto` should pick the path for `geom` (the documented rule:
/// 3x3, stride 2, dilation 1, one group, at least 16 channels each way, 192
/// tiles of 2x2 outputs, tiles covering at most 9/8 of the outputs).
fn auto_picks(geom: &Conv2dGeometry) -> bool {
    let (th, tw) = (geom.oh().div_ceil(2), geom.ow().div_ceil(2));
    s2_in_use()
        && (geom.kh(), geom.kw(), geom.stride(), geom.dilation(), geom.groups()) == (3, 3, (2, 2), (1, 1), 1)
        && geom.c_in().min(geom.c_out()) >= 16
        && geom.n() * th * tw >= 192
        && 32 * th * tw <= 9 * geom.oh() * geom.ow()
}

/// A random stride-2 3x3 layer `Auto` sends to the path (where it runs):
/// 16-40 channels, 9-70 pixels a side, 0-2 pixels of padding per side, a
/// batch of at least 192 tiles.
fn random_s2_geometry(r: &mut rand::rngs::StdRng) -> Conv2dGeometry {
    loop {
        let (cin, cout) = (r.random_range(16..=40), r.random_range(16..=40));
        let (h, w) = (r.random_range(9..=70), r.random_range(9..=70));
        let pad = Padding::explicit(
            r.random_range(0..=2),
            r.random_range(0..=2),
            r.random_range(0..=2),
            r.random_range(0..=2),
        );
        let Ok(g) = Conv2dSpec::new(1, cin, h, w, cout, 3, 3)
            .stride(2, 2)
            .padding(pad)
            .build()
        else {
            continue;
        };
        let tiles = g.oh().div_ceil(2) * g.ow().div_ceil(2);
        let n = 192usize.div_ceil(tiles) + r.random_range(0..=1);
        let g = Conv2dSpec::new(n, cin, h, w, cout, 3, 3)
            .stride(2, 2)
            .padding(pad)
            .build()
            .unwrap();
        if auto_picks(&g) || !s2_in_use() {
            return g;
        }
    }
}

/// The forward pass of `geom` (with and without bias) on seeded random
/// inputs, into NaN-poisoned outputs.
fn forward<T: Element>(geom: &Conv2dGeometry, seed: u64, ws: &mut Workspace<T>) -> (Vec<T>, Vec<T>) {
    let mut r = rng(seed);
    let x: Vec<T> = random_vec(&mut r, geom.input_len());
    let w: Vec<T> = random_vec(&mut r, geom.weight_len());
    let b: Vec<T> = random_vec(&mut r, geom.bias_len());
    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, Some(&b), &mut y, ws).unwrap();
    let mut y0 = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, None, &mut y0, ws).unwrap();
    (y, y0)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Checks `geom`'s forward (f32, `Auto`) against the f64 reference and
/// that `Auto` took the path exactly where [`auto_picks`] says (its bits
/// differ from `Algorithm::Gemm`'s there, equal them elsewhere); returns the
/// largest error in units of `(L + 1) eps M`.
fn check(geom: &Conv2dGeometry, seed: u64, ws: &mut Workspace<f32>) -> f64 {
    let ctx = format!("seed {seed}, {}", describe(geom));
    let mut r = rng(seed);
    let x: Vec<f32> = random_vec(&mut r, geom.input_len());
    let w: Vec<f32> = random_vec(&mut r, geom.weight_len());
    let b: Vec<f32> = random_vec(&mut r, geom.bias_len());
    let dy: Vec<f32> = random_vec(&mut r, geom.output_len());
    let e = expected(geom, &to_f64(&x), &to_f64(&w), &to_f64(&b), &to_f64(&dy));
    let mag = tile_max(&e.y_mag, geom.oh(), geom.ow(), (1, 1), 2);
    let len = geom.k_len() + 1;

    let (y, y0) = forward::<f32>(geom, seed, ws);
    assert_close("forward+bias", &ctx, &y, &e.y, &mag, len);
    let ohw = geom.oh() * geom.ow();
    let no_bias: Vec<f64> =
        e.y.iter()
            .enumerate()
            .map(|(i, v)| v - b[(i / ohw) % geom.c_out()].to_f64())
            .collect();
    assert_close("forward", &ctx, &y0, &no_bias, &mag, len);

    let gemm = forward::<f32>(
        &geom.with_algorithm(Algorithm::Gemm).unwrap(),
        seed,
        &mut Workspace::new(),
    );
    let picked = bits(&y) != bits(&gemm.0);
    assert_eq!(picked, auto_picks(geom), "Auto's path ({ctx})");

    let unit = len as f64 * f32::EPSILON as f64;
    y0.iter()
        .zip(&no_bias)
        .zip(&mag)
        .map(|((g, w), m)| (*g as f64 - w).abs() / (unit * m + 1e-300))
        .fold(0.0, f64::max)
}

#[test]
fn random_geometries_f32() {
    let mut ws = Workspace::new();
    let mut most: f64 = 0.0;
    for case in 0..RANDOM_CASES {
        let seed = 9_000 + case;
        let g = random_s2_geometry(&mut rng(seed));
        if runs_here(&g) {
            most = most.max(check(&g, seed, &mut ws));
        }
    }
    eprintln!("stride-2 Winograd forward: largest error / ((L + 1) eps M) {most:.3}");
}

/// Runs of exactly 16 tiles (a 32-wide output, whose last lane reads the
/// patch row's 65th element), runs cut at 16 (35-wide, odd), tile rows of
/// one tile, asymmetric and no padding, channel counts off the kernels'
/// multiples of 6 and 16, tasks crossing images, and the thresholds' edges.
#[test]
fn edge_shapes() {
    let s = Conv2dSpec::new;
    let p1 = Padding::symmetric(1);
    let specs = [
        s(2, 16, 64, 64, 16, 3, 3).padding(p1),
        // A run of 16 whose last lane's column 4 is right padding.
        s(4, 32, 11, 70, 19, 3, 3).padding(Padding::explicit(2, 1, 2, 1)),
        s(1, 17, 70, 70, 23, 3, 3).padding(p1),
        s(1, 16, 65, 63, 16, 3, 3).padding(Padding::explicit(0, 2, 1, 0)),
        s(4, 20, 30, 30, 20, 3, 3),
        s(2, 16, 40, 41, 16, 3, 3).padding(Padding::symmetric(2)),
        s(7, 16, 28, 28, 40, 3, 3).padding(p1),
        s(2, 16, 200, 4, 16, 3, 3).padding(p1),
        s(2, 24, 56, 56, 19, 3, 3).padding(Padding::Same),
        // 4 x 49 = 196 tiles: picked; 3 x 49 = 147: not.
        s(4, 32, 28, 28, 32, 3, 3).padding(p1),
        s(3, 32, 28, 28, 32, 3, 3).padding(p1),
        // 15 input channels: not picked.
        s(4, 15, 28, 28, 32, 3, 3).padding(p1),
        // A 7x7 output: its 4x4 tiles cover 64 outputs for 49, not picked.
        s(16, 16, 14, 14, 16, 3, 3).padding(p1),
    ];
    let mut ws = Workspace::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let g = spec.stride(2, 2).build().unwrap();
        if runs_here(&g) {
            check(&g, 500 + i as u64, &mut ws);
        }
    }
}

/// `Gemm` rules the path out, f64 never takes it, and the output is the
/// same bits on 1, 2, 3 and 8 threads.
#[test]
fn algorithm_choice_and_determinism() {
    let g = Conv2dSpec::new(3, 32, 40, 40, 48, 3, 3)
        .stride(2, 2)
        .padding(Padding::symmetric(1))
        .build()
        .unwrap();
    if !runs_here(&g) {
        return;
    }
    let run = |threads: usize, g: &Conv2dGeometry| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| forward::<f32>(g, 7, &mut Workspace::new()).0)
    };
    let one = run(1, &g);
    for threads in [2, 3, 8] {
        assert!(bits(&one) == bits(&run(threads, &g)), "{threads} threads");
    }
    let gemm = run(1, &g.with_algorithm(Algorithm::Gemm).unwrap());
    assert_eq!(bits(&one) != bits(&gemm), s2_in_use(), "Auto against Gemm");
    let as_f64 = |g: &Conv2dGeometry| forward::<f64>(g, 7, &mut Workspace::new()).0;
    let (auto64, gemm64) = (as_f64(&g), as_f64(&g.with_algorithm(Algorithm::Gemm).unwrap()));
    assert!(
        auto64.iter().zip(&gemm64).all(|(a, b)| a.to_bits() == b.to_bits()),
        "f64 stays on GEMM"
    );
}
