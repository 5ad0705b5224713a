//! One full training step of the MNIST example's LeNet at batch 64: forward,
//! softmax cross-entropy, backward, SGD momentum update. Throughput is in
//! images, so criterion reports images/s. Runs on the global rayon pool; set
//! `RAYON_NUM_THREADS=1` for the single-thread figure.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferroconv::data::Dataset;
use ferroconv::nn::*;
use rand::SeedableRng;
use std::time::Duration;

fn train_step(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz");
    let data = Dataset::mnist_csv(path).expect("data/mnist_5k.csv.gz");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut model = lenet(&mut rng).expect("lenet");
    let mut opt = Sgd::new(0.01).unwrap().momentum(0.9).unwrap();
    let idx: Vec<usize> = (0..64).collect();
    let (mut x, mut y, mut d) = (Tensor::empty(), Vec::new(), Tensor::empty());
    data.batch(&idx, &mut x, &mut y);
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(64));
    group.bench_function("lenet_batch64", |b| {
        b.iter(|| {
            let logits = model.forward(&x).unwrap();
            softmax_cross_entropy(logits, &y, &mut d).unwrap();
            model.zero_grad();
            model.backward(&x, &d).unwrap();
            opt.step(&mut model);
        })
    });
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
