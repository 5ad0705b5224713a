//! Train the Caffe-style LeNet on real MNIST digits.
//!
//! `cargo run --release --example train_mnist [-- OPTIONS]`
//!
//! Options: `--epochs N` (15), `--threads N` (all cores), `--lr X` (0.01),
//! `--batch N` (64), `--seed N` (0), `--data FILE` (data/mnist_5k.csv.gz:
//! 4,000 digits for training, 1,000 held out), `--idx-dir DIR` (the full
//! MNIST IDX files instead: 60,000 / 10,000), `--out DIR` (target/mnist).
//!
//! Per epoch: a progress bar, the mean training loss, held-out accuracy and
//! training images/s. At the end: `DIR/curves.svg` (loss and accuracy per
//! epoch) and `DIR/lenet.safetensors` (PyTorch names and layouts).

use std::path::PathBuf;
use std::time::Instant;

use ferroconv::data::Dataset;
use ferroconv::nn::*;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

struct Args {
    epochs: usize,
    threads: usize,
    lr: f64,
    batch: usize,
    seed: u64,
    data: PathBuf,
    idx_dir: Option<PathBuf>,
    out: PathBuf,
}

fn parse_args() -> Args {
    let a: Vec<String> = std::env::args().collect();
    let get = |k: &str| a.iter().position(|x| x == k).and_then(|i| a.get(i + 1)).cloned();
    let num = |k: &str, d: f64| get(k).map_or(d, |v| v.parse().unwrap_or_else(|_| panic!("{k} takes a number")));
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Args {
        epochs: num("--epochs", 15.0) as usize,
        threads: num("--threads", 0.0) as usize,
        lr: num("--lr", 0.01),
        batch: num("--batch", 64.0) as usize,
        seed: num("--seed", 0.0) as u64,
        data: get("--data").map_or(manifest.join("data/mnist_5k.csv.gz"), PathBuf::from),
        idx_dir: get("--idx-dir").map(PathBuf::from),
        out: get("--out").map_or(manifest.join("target/mnist"), PathBuf::from),
    }
}

fn evaluate(model: &mut Sequential<f32>, set: &Dataset, x: &mut Tensor<f32>, y: &mut Vec<usize>) -> f64 {
    let mut correct = 0;
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(500) {
        set.batch(chunk, x, y);
        let logits = model.forward(x).expect("forward");
        correct += argmax_rows(logits).iter().zip(y.iter()).filter(|(p, l)| p == l).count();
    }
    correct as f64 / set.len() as f64
}

fn plot(path: &std::path::Path, losses: &[f64], accs: &[f64]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let n = losses.len().max(1) as f64;
    let lmax = losses.iter().cloned().fold(0.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..n, 0f64..lmax.max(1e-3))?;
    c.configure_mesh().x_desc("epoch").y_desc("mean cross-entropy").draw()?;
    c.draw_series(LineSeries::new(
        losses.iter().enumerate().map(|(i, &l)| (i as f64 + 1.0, l)),
        &BLUE,
    ))?;
    let amin = accs.iter().cloned().fold(1.0, f64::min).min(0.9) * 100.0;
    let mut c = ChartBuilder::on(&right)
        .caption("held-out accuracy (%)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..n, amin..100f64)?;
    c.configure_mesh().x_desc("epoch").y_desc("accuracy %").draw()?;
    c.draw_series(LineSeries::new(
        accs.iter().enumerate().map(|(i, &a)| (i as f64 + 1.0, a * 100.0)),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let (train, test) = match &args.idx_dir {
        Some(dir) => Dataset::mnist_idx_dir(dir)?,
        None => Dataset::mnist_csv(&args.data)?.shuffled(0).split(4000),
    };
    println!(
        "LeNet on MNIST: {} training / {} held-out digits, batch {}, SGD lr {} momentum 0.9, {} thread(s)",
        train.len(),
        test.len(),
        args.batch,
        args.lr,
        threads
    );
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut model = lenet(&mut rng)?;
    println!("{}", model.summary());
    let mut opt = Sgd::new(args.lr)?.momentum(0.9)?;
    let (mut x, mut y, mut dlogits) = (Tensor::empty(), Vec::new(), Tensor::empty());
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let t_all = Instant::now();
    let mut train_secs = 0.0;
    pool.install(|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for epoch in 1..=args.epochs {
            order.shuffle(&mut rng);
            let batches = order.len().div_ceil(args.batch);
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(ProgressStyle::with_template(
                "epoch {prefix:>2} [{bar:30}] {pos}/{len} batches  {msg}",
            )?);
            bar.set_prefix(epoch.to_string());
            let t0 = Instant::now();
            let mut sum_loss = 0.0;
            for (b, idx) in order.chunks(args.batch).enumerate() {
                train.batch(idx, &mut x, &mut y);
                let logits = model.forward(&x)?;
                let loss = softmax_cross_entropy(logits, &y, &mut dlogits)?;
                model.zero_grad();
                model.backward(&x, &dlogits)?;
                opt.step(&mut model);
                sum_loss += loss as f64;
                if b % 8 == 0 {
                    bar.set_message(format!("loss {:.4}", sum_loss / (b + 1) as f64));
                }
                bar.inc(1);
            }
            let dt = t0.elapsed().as_secs_f64();
            train_secs += dt;
            bar.finish_and_clear();
            let acc = evaluate(&mut model, &test, &mut x, &mut y);
            let mean_loss = sum_loss / batches as f64;
            losses.push(mean_loss);
            accs.push(acc);
            println!(
                "epoch {epoch:>2}  loss {mean_loss:.4}  held-out accuracy {:.2}%  train {:.0} images/s",
                acc * 100.0,
                train.len() as f64 / dt
            );
        }
        Ok(())
    })
    .map_err(|e| e as Box<dyn std::error::Error>)?;
    let total = t_all.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)?;
    let svg = args.out.join("curves.svg");
    plot(&svg, &losses, &accs)?;
    let ckpt = args.out.join("lenet.safetensors");
    save_safetensors(&mut model, &ckpt)?;
    println!(
        "threads {threads}  total {total:.1} s (training {train_secs:.1} s)  final held-out accuracy {:.2}%",
        accs.last().copied().unwrap_or(0.0) * 100.0
    );
    println!("wrote {} and {}", svg.display(), ckpt.display());
    Ok(())
}
