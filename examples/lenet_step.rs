//! Times one LeNet training step at batch 64 (forward, cross-entropy,
//! backward, SGD momentum) like the last line of `shared/compare/torch_lenet.py`:
//! the model is first trained for `--epochs` epochs (default 1, what
//! `scripts/compare_lenet.sh` asks of `torch_lenet.py`) on the 4,000-digit
//! training split in shuffled batches, then the median of 50 steps after 5
//! warm-up steps on the split's first 64 digits is printed.
//!
//! Why the epochs first: trained from its initialization on one batch, a model
//! fits that batch within a few dozen steps, its gradients then underflow into
//! subnormal floats, and on Intel CPUs every multiply-add that meets one takes
//! a slow path. PyTorch and ferroconv both slow down 2-4x there (PyTorch 53-56
//! ms a step from initialization against 24 ms with `torch.set_flush_denormal`,
//! 1 thread). Timing both after the same training compares like with like.
//!
//! `cargo run --release --example lenet_step [-- --threads 1,2] [--steps 50] [--epochs 1]`

use std::time::Instant;

use ferroconv::data::Dataset;
use ferroconv::nn::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt_arg = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let threads: Vec<usize> =
        opt_arg("--threads").map_or(vec![1, 2], |s| s.split(',').map(|t| t.parse().unwrap()).collect());
    let steps: usize = opt_arg("--steps").map_or(50, |s| s.parse().unwrap());
    let epochs: usize = opt_arg("--epochs").map_or(1, |s| s.parse().unwrap());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz");
    let (train, _) = Dataset::mnist_csv(path)
        .expect("data/mnist_5k.csv.gz")
        .shuffled(0)
        .split(4000);
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        pool.install(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let mut model = lenet(&mut rng).unwrap();
            let mut opt = Sgd::new(0.01).unwrap().momentum(0.9).unwrap();
            let (mut x, mut y, mut d) = (Tensor::empty(), Vec::new(), Tensor::empty());
            let mut step = |x: &Tensor<f32>, y: &[usize]| {
                let logits = model.forward(x).unwrap();
                softmax_cross_entropy(logits, y, &mut d).unwrap();
                model.zero_grad();
                model.backward(x, &d).unwrap();
                opt.step(&mut model);
            };
            let mut order: Vec<usize> = (0..train.len()).collect();
            for _ in 0..epochs {
                order.shuffle(&mut rng);
                for idx in order.chunks(64) {
                    train.batch(idx, &mut x, &mut y);
                    step(&x, &y);
                }
            }
            let idx: Vec<usize> = (0..64).collect();
            train.batch(&idx, &mut x, &mut y);
            let mut ts = Vec::new();
            for i in 0..steps + 5 {
                let t0 = Instant::now();
                step(&x, &y);
                if i >= 5 {
                    ts.push(t0.elapsed().as_secs_f64());
                }
            }
            ts.sort_by(|a, b| a.total_cmp(b));
            let med = ts[ts.len() / 2];
            println!(
                "ferroconv threads {t} train_step batch64 median {:.2} ms = {:.0} img/s",
                med * 1e3,
                64.0 / med
            );
        });
    }
}
