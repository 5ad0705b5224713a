// The public benchmark suite, shared by `benches/conv.rs` and
// `examples/bench_report.rs` (included with `#[path]`).
#![allow(dead_code)]

use ferroconv::{Conv2dGeometry, Conv2dSpec, Padding};

/// The suite file, copied from `shared/bench-shapes.csv` so benches need nothing outside the crate.
pub const SHAPES_CSV: &str = include_str!("../bench-shapes.csv");

/// One row of the suite.
pub struct Row {
    pub name: String,
    pub geom: Conv2dGeometry,
}

/// Parses `name,n,c_in,h,w,c_out,kh,kw,stride,pad,dilation,groups` rows.
pub fn rows() -> Vec<Row> {
    SHAPES_CSV
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v: Vec<usize> = f[1..12].iter().map(|s| s.parse().expect("integer field")).collect();
            let geom = Conv2dSpec::new(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
                .stride(v[7], v[7])
                .padding(Padding::symmetric(v[8]))
                .dilation(v[9], v[9])
                .groups(v[10])
                .build()
                .expect("suite row is a valid geometry");
            Row {
                name: f[0].to_string(),
                geom,
            }
        })
        .collect()
}

/// The passes every row is timed on.
pub const PASSES: [&str; 3] = ["forward", "input_grad", "weight_grad"];

/// Rows whose naive reference takes more FLOPs than this are too slow to
/// bench with criterion's repeated samples (the naive loops run at about
/// 1 GFLOP/s, so these take seconds per call).
pub const NAIVE_MAX_FLOPS: u64 = 300_000_000;

/// Deterministic inputs uniform in [-1, 1).
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// `(M, K, N)` of the GEMM a pass lowers to for one image and group:
/// forward `cog x K x ohw`, input gradient `K x cog x ohw`, weight gradient
/// `cog x ohw x K`.
pub fn gemm_shape(g: &Conv2dGeometry, pass: &str) -> (usize, usize, usize) {
    let ohw = g.oh() * g.ow();
    match pass {
        "forward" => (g.cog(), g.k_len(), ohw),
        "input_grad" => (g.k_len(), g.cog(), ohw),
        _ => (g.cog(), ohw, g.k_len()),
    }
}
