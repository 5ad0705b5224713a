//! One full training step of the MNIST example's LeNet at batch 64: forward,
//! softmax cross-entropy, backward, SGD momentum update. Throughput is in
//! images, so criterion reports images/s. Runs on the global rayon pool; set
//! `RAYON_NUM_THREADS=1` for the single-thread figure.
//!
//! Each step takes the next of the 62 batches of the example's 4,000-digit
//! training split, as training does. Steps repeated on one batch fit it within
//! a few dozen steps; the gradients then underflow into subnormal floats, which
//! Intel CPUs multiply on a slow path (2-4x slower steps, PyTorch's too), so
//! such a bench would time that instead of training.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferroconv::data::Dataset;
use ferroconv::nn::*;
use rand::SeedableRng;
use std::time::Duration;

fn train_step(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz");
    let (train, _) = Dataset::mnist_csv(path)
        .expect("data/mnist_5k.csv.gz")
        .shuffled(0)
        .split(4000);
    let batches: Vec<(Tensor<f32>, Vec<usize>)> = (0..train.len() / 64)
        .map(|b| {
            let idx: Vec<usize> = (b * 64..(b + 1) * 64).collect();
            let (mut x, mut y) = (Tensor::empty(), Vec::new());
            train.batch(&idx, &mut x, &mut y);
            (x, y)
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut model = lenet(&mut rng).expect("lenet");
    let mut opt = Sgd::new(0.01).unwrap().momentum(0.9).unwrap();
    let mut d = Tensor::empty();
    let mut next = 0;
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(64));
    group.bench_function("lenet_batch64", |b| {
        b.iter(|| {
            let (x, y) = &batches[next % batches.len()];
            next += 1;
            let logits = model.forward(x).unwrap();
            softmax_cross_entropy(logits, y, &mut d).unwrap();
            model.zero_grad();
            model.backward(x, &d).unwrap();
            opt.step(&mut model);
        })
    });
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
