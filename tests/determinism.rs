//! Outputs and gradients are bitwise identical for 1, 2 and 8 rayon threads,
//! and for repeated calls with a reused workspace.

mod common;

use common::*;
use ferroconv::{
    Conv2dGeometry, Conv2dSpec, Element, Padding, Workspace, conv2d_bias_grad_into, conv2d_input_grad_into,
    conv2d_into, conv2d_weight_grad_into,
};

fn run_all<T: Element>(geom: &Conv2dGeometry, threads: usize, seed: u64) -> Vec<Vec<u64>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut r = rng(seed);
    let x: Vec<T> = random_vec(&mut r, geom.input_len());
    let w: Vec<T> = random_vec(&mut r, geom.weight_len());
    let b: Vec<T> = random_vec(&mut r, geom.bias_len());
    let dy: Vec<T> = random_vec(&mut r, geom.output_len());
    pool.install(|| {
        let mut ws = Workspace::for_geometry(geom);
        let mut y = vec![T::NAN; geom.output_len()];
        let mut dx = vec![T::NAN; geom.input_len()];
        let mut dw = vec![T::NAN; geom.weight_len()];
        let mut db = vec![T::NAN; geom.bias_len()];
        let mut out = Vec::new();
        for _ in 0..2 {
            conv2d_into(geom, &x, &w, Some(&b), &mut y, &mut ws).unwrap();
            conv2d_input_grad_into(geom, &dy, &w, &mut dx, &mut ws).unwrap();
            conv2d_weight_grad_into(geom, &x, &dy, &mut dw, &mut ws).unwrap();
            conv2d_bias_grad_into(geom, &dy, &mut db).unwrap();
            out = [&y, &dx, &dw, &db]
                .iter()
                .map(|v| v.iter().map(|e| e.to_f64().to_bits()).collect())
                .collect();
        }
        out
    })
}

fn geometries() -> Vec<Conv2dGeometry> {
    let s = Conv2dSpec::new;
    let mut v: Vec<Conv2dGeometry> = [
        // batch 1, many channels: pixel tiles and channel blocks split
        s(1, 64, 20, 20, 32, 3, 3).padding(Padding::symmetric(1)),
        // c_in = 1: the weight gradient splits the batch into partial sums
        s(13, 1, 28, 28, 6, 5, 5),
        // stem-like c_in = 3, strided
        s(5, 3, 40, 36, 16, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
        // depthwise and pointwise
        s(3, 16, 19, 19, 16, 3, 3).padding(Padding::same()).groups(16),
        s(3, 24, 15, 15, 40, 1, 1),
        // K = 2304: every pass cuts the image into several pixel tiles
        s(2, 256, 16, 16, 16, 3, 3).padding(Padding::symmetric(1)),
        // weight-gradient chunks of several pixel tiles across images
        s(2, 256, 100, 100, 16, 1, 1),
        s(2, 3, 160, 160, 16, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
        // cifar-like 3x3 (Winograd where `Auto` picks it): the weight
        // gradient's tiles in two chunks on one thread, one chunk on more
        s(16, 32, 16, 16, 32, 3, 3).padding(Padding::symmetric(1)),
        // the implicit weight gradient: 9 chunks of two (image, band) pairs
        s(2, 32, 96, 96, 32, 3, 3).dilation(2, 2).padding(Padding::symmetric(2)),
        // grouped, dilated, long pixel rows (several tiles per image)
        s(2, 8, 40, 40, 8, 3, 3)
            .dilation(2, 2)
            .padding(Padding::symmetric(2))
            .groups(2),
    ]
    .into_iter()
    .map(|spec| spec.build().unwrap())
    .collect();
    v.extend((0..6).map(|i| random_geometry(&mut rng(900 + i))));
    v
}

fn check<T: Element>() {
    for (i, g) in geometries().iter().enumerate() {
        let one = run_all::<T>(g, 1, i as u64);
        for threads in [2, 8] {
            let many = run_all::<T>(g, threads, i as u64);
            for (pass, (a, b)) in ["forward", "input_grad", "weight_grad", "bias_grad"]
                .iter()
                .zip(one.iter().zip(&many))
            {
                assert!(
                    a == b,
                    "{pass} differs between 1 and {threads} threads on {}",
                    describe(g)
                );
            }
        }
    }
}

#[test]
fn bitwise_identical_across_thread_counts_f32() {
    check::<f32>();
}

#[test]
fn bitwise_identical_across_thread_counts_f64() {
    check::<f64>();
}

/// Calls from inside the caller's own parallel loop (nested rayon use, one
/// workspace per call) give the same bits as a plain call.
#[test]
fn nested_calls_from_a_parallel_loop() {
    use rayon::prelude::*;
    let g = Conv2dSpec::new(3, 16, 20, 20, 16, 3, 3)
        .padding(Padding::same())
        .build()
        .unwrap();
    let expect = run_all::<f32>(&g, 1, 77);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let all: Vec<Vec<Vec<u64>>> = pool.install(|| {
        (0..6)
            .into_par_iter()
            .map(|_| {
                let mut r = rng(77);
                let x: Vec<f32> = random_vec(&mut r, g.input_len());
                let w: Vec<f32> = random_vec(&mut r, g.weight_len());
                let b: Vec<f32> = random_vec(&mut r, g.bias_len());
                let dy: Vec<f32> = random_vec(&mut r, g.output_len());
                let mut ws = Workspace::new();
                let mut y = vec![f32::NAN; g.output_len()];
                let mut dx = vec![f32::NAN; g.input_len()];
                let mut dw = vec![f32::NAN; g.weight_len()];
                let mut db = vec![f32::NAN; g.bias_len()];
                conv2d_into(&g, &x, &w, Some(&b), &mut y, &mut ws).unwrap();
                conv2d_input_grad_into(&g, &dy, &w, &mut dx, &mut ws).unwrap();
                conv2d_weight_grad_into(&g, &x, &dy, &mut dw, &mut ws).unwrap();
                conv2d_bias_grad_into(&g, &dy, &mut db).unwrap();
                [&y, &dx, &dw, &db]
                    .iter()
                    .map(|v| v.iter().map(|e| e.to_f64().to_bits()).collect())
                    .collect()
            })
            .collect()
    });
    for got in all {
        assert!(got == expect, "a nested call differs");
    }
}
