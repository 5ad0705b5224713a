//! Criterion benches: every row of the public suite (`benches/bench-shapes.csv`,
//! copied from `shared/`), for each pass, optimized and naive.
//!
//! The naive reference is benched only on rows of at most
//! [`suite::NAIVE_MAX_FLOPS`] FLOPs per pass (lenet_c1, lenet_c2, cifar_3x3,
//! depthwise_3x3, infer_b1_3x3): it runs at about 1 GFLOP/s, so the big rows
//! would take seconds per sample. Throughput is in FLOPs, so criterion reports
//! FLOP/s. The optimized passes run on the global rayon pool (all cores); set
//! `RAYON_NUM_THREADS=1` for single-thread figures.

#[path = "suite/mod.rs"]
mod suite;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferroconv::{Workspace, conv2d_input_grad_into, conv2d_into, conv2d_weight_grad_into, reference};
use std::hint::black_box;
use std::time::Duration;

fn bench_pass(c: &mut Criterion, pass: &str) {
    let mut group = c.benchmark_group(pass);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for row in suite::rows() {
        let g = row.geom;
        let x = suite::data(g.input_len(), 1);
        let w = suite::data(g.weight_len(), 2);
        let b = suite::data(g.bias_len(), 4);
        let dy = suite::data(g.output_len(), 3);
        let mut y = vec![0f32; g.output_len()];
        let mut dx = vec![0f32; g.input_len()];
        let mut dw = vec![0f32; g.weight_len()];
        let mut ws = Workspace::for_geometry(&g);
        group.throughput(Throughput::Elements(g.flops()));
        group.bench_function(format!("optimized/{}", row.name), |bch| match pass {
            "forward" => bch.iter(|| conv2d_into(&g, black_box(&x), &w, Some(&b), &mut y, &mut ws).unwrap()),
            "input_grad" => bch.iter(|| conv2d_input_grad_into(&g, black_box(&dy), &w, &mut dx, &mut ws).unwrap()),
            _ => bch.iter(|| conv2d_weight_grad_into(&g, black_box(&x), &dy, &mut dw, &mut ws).unwrap()),
        });
        if g.flops() <= suite::NAIVE_MAX_FLOPS {
            group.bench_function(format!("naive/{}", row.name), |bch| match pass {
                "forward" => bch.iter(|| reference::conv2d_forward(&g, black_box(&x), &w, Some(&b), &mut y).unwrap()),
                "input_grad" => bch.iter(|| reference::conv2d_input_grad(&g, black_box(&dy), &w, &mut dx).unwrap()),
                _ => bch.iter(|| reference::conv2d_weight_grad(&g, black_box(&x), &dy, &mut dw).unwrap()),
            });
        }
    }
    group.finish();
}

fn forward(c: &mut Criterion) {
    bench_pass(c, "forward");
}

fn input_grad(c: &mut Criterion) {
    bench_pass(c, "input_grad");
}

fn weight_grad(c: &mut Criterion) {
    bench_pass(c, "weight_grad");
}

criterion_group!(benches, forward, input_grad, weight_grad);
criterion_main!(benches);
