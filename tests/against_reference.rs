//! Every optimized pass against the f64 reference, in f32 and f64, on edge
//! shapes and on 600 seeded random geometries per type, with NaN-poisoned
//! outputs. The tolerance is the per-element dot-product bound of
//! `common::assert_close`: it scales with the reduction length of each pass
//! (forward `K = cig*kh*kw`, input gradient `cog*kh*kw`, weight gradient
//! `n*oh*ow`, bias `n*oh*ow`).

mod common;

use common::*;
use ferroconv::{
    Conv2dGeometry, Conv2dSpec, Element, Padding, Workspace, conv2d_bias_grad_into, conv2d_input_grad_into,
    conv2d_into, conv2d_weight_grad_into,
};

/// Random geometries per type natively.
const RANDOM_CASES_FULL: u64 = 600;
/// Random geometries per type this run (a few under Miri, see `common::cases`).
const RANDOM_CASES: u64 = cases(RANDOM_CASES_FULL, 12);

fn check_geometry<T: Element>(geom: &Conv2dGeometry, seed: u64, ws: &mut Workspace<T>) {
    let ctx = format!("seed {seed}, {}", describe(geom));
    let mut r = rng(seed);
    let x: Vec<T> = random_vec(&mut r, geom.input_len());
    let w: Vec<T> = random_vec(&mut r, geom.weight_len());
    let b: Vec<T> = random_vec(&mut r, geom.bias_len());
    let dy: Vec<T> = random_vec(&mut r, geom.output_len());
    let e = expected(geom, &to_f64(&x), &to_f64(&w), &to_f64(&b), &to_f64(&dy));
    let ohw = geom.oh() * geom.ow();

    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, Some(&b), &mut y, ws).unwrap();
    assert_close("forward+bias", &ctx, &y, &e.y, &e.y_mag, geom.k_len() + 1);

    // Without bias: the reference without bias is y - b.
    let mut y = vec![T::NAN; geom.output_len()];
    conv2d_into(geom, &x, &w, None, &mut y, ws).unwrap();
    let no_bias: Vec<f64> =
        e.y.iter()
            .enumerate()
            .map(|(i, v)| v - b[(i / ohw) % geom.c_out()].to_f64())
            .collect();
    assert_close("forward", &ctx, &y, &no_bias, &e.y_mag, geom.k_len() + 1);

    let mut dx = vec![T::NAN; geom.input_len()];
    conv2d_input_grad_into(geom, &dy, &w, &mut dx, ws).unwrap();
    assert_close(
        "input_grad",
        &ctx,
        &dx,
        &e.dx,
        &e.dx_mag,
        geom.cog() * geom.kh() * geom.kw(),
    );

    let mut dw = vec![T::NAN; geom.weight_len()];
    conv2d_weight_grad_into(geom, &x, &dy, &mut dw, ws).unwrap();
    assert_close("weight_grad", &ctx, &dw, &e.dw, &e.dw_mag, geom.n() * ohw);

    let mut db = vec![T::NAN; geom.bias_len()];
    conv2d_bias_grad_into(geom, &dy, &mut db).unwrap();
    assert_close("bias_grad", &ctx, &db, &e.db, &e.db_mag, geom.n() * ohw);
}

fn run_random<T: Element>(seed_base: u64) {
    // One workspace for all cases: also checks that a workspace sized by an
    // earlier, different geometry is reused correctly.
    let mut ws = Workspace::new();
    for case in 0..RANDOM_CASES {
        let seed = seed_base + case;
        let geom = random_geometry(&mut rng(seed));
        check_geometry::<T>(&geom, seed, &mut ws);
    }
}

#[test]
fn edge_shapes_f32() {
    for (i, g) in edge_geometries().iter().enumerate().filter(|(_, g)| runs_here(g)) {
        check_geometry::<f32>(g, 1000 + i as u64, &mut Workspace::new());
    }
}

#[test]
fn edge_shapes_f64() {
    for (i, g) in edge_geometries().iter().enumerate().filter(|(_, g)| runs_here(g)) {
        check_geometry::<f64>(g, 2000 + i as u64, &mut Workspace::new());
    }
}

/// Every row of the public benchmark suite (`benches/bench-shapes.csv`) at
/// batch 2 (1 where the row has 1), f32: the shapes the figures in
/// docs/benchmarks.md time take the same paths (Winograd, implicit, the
/// small-channel direct forward, depthwise, GEMM + col2im at stride 2).
#[test]
#[cfg_attr(miri, ignore = "the suite's rows take hours under Miri")]
fn bench_suite_rows_f32() {
    let mut ws = Workspace::new();
    for (i, line) in include_str!("../benches/bench-shapes.csv")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
    {
        let f: Vec<&str> = line.split(',').collect();
        let v: Vec<usize> = f[1..12].iter().map(|s| s.parse().unwrap()).collect();
        let geom = Conv2dSpec::new(v[0].min(2), v[1], v[2], v[3], v[4], v[5], v[6])
            .stride(v[7], v[7])
            .padding(Padding::symmetric(v[8]))
            .dilation(v[9], v[9])
            .groups(v[10])
            .build()
            .unwrap();
        check_geometry::<f32>(&geom, 3000 + i as u64, &mut ws);
    }
}

#[test]
fn random_geometries_f32() {
    run_random::<f32>(10_000);
}

#[test]
fn random_geometries_f64() {
    run_random::<f64>(20_000);
}

/// The random generator really covers the geometry classes it promises.
#[test]
fn random_geometries_cover_all_classes() {
    let (mut depthwise, mut mult2, mut grouped, mut pointwise, mut strided, mut dilated) = (0, 0, 0, 0, 0, 0);
    let (mut asym, mut tight, mut batch1, mut odd_batch, mut nonsquare) = (0, 0, 0, 0, 0);
    for case in 0..RANDOM_CASES_FULL {
        let g = random_geometry(&mut rng(10_000 + case));
        let (t, b, l, r) = g.padding();
        depthwise += (g.groups() == g.c_in() && g.groups() == g.c_out()) as u32;
        mult2 += (g.groups() == g.c_in() && g.c_out() == 2 * g.c_in()) as u32;
        grouped += (g.groups() > 1) as u32;
        pointwise += g.is_pointwise() as u32;
        strided += (g.stride().0 > 1 || g.stride().1 > 1) as u32;
        dilated += (g.dilation().0 > 1 || g.dilation().1 > 1) as u32;
        asym += (t != b || l != r) as u32;
        tight += (g.oh() == 1 && g.ow() == 1 && g.kh() > 1) as u32;
        batch1 += (g.n() == 1) as u32;
        odd_batch += (g.n() % 2 == 1 && g.n() > 1) as u32;
        nonsquare += (g.h() != g.w() || g.kh() != g.kw()) as u32;
    }
    for (name, c) in [
        ("depthwise", depthwise),
        ("multiplier 2", mult2),
        ("grouped", grouped),
        ("pointwise", pointwise),
        ("strided", strided),
        ("dilated", dilated),
        ("asymmetric padding", asym),
        ("kernel = padded input", tight),
        ("batch 1", batch1),
        ("odd batch", odd_batch),
        ("non-square", nonsquare),
    ] {
        assert!(c >= 10, "only {c} random geometries are {name}");
    }
}
