//! The training API end to end: overfitting, a short real MNIST run,
//! checkpoints, optimizers, clipping, divergence reports and bad inputs.

use ferroconv::ConvError;
use ferroconv::data::Dataset;
use ferroconv::nn::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn random_tensor(shape: &[usize], seed: u64) -> Tensor<f32> {
    let mut r = rng(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| r.random_range(-1.0..1.0)).collect()).unwrap()
}

fn small_cnn(seed: u64) -> Sequential<f32> {
    let mut r = rng(seed);
    Sequential::new()
        .push(Conv2dBuilder::new(1, 8, 3, 3).build(&mut r).unwrap())
        .push(ReLU)
        .push(MaxPool2d::new(2).unwrap())
        .push(Conv2dBuilder::new(8, 8, 3, 3).groups(2).build(&mut r).unwrap())
        .push(ReLU)
        .push(Flatten)
        .push(Linear::new(8 * 2 * 2, 5, &mut r).unwrap())
}

fn train_step(m: &mut Sequential<f32>, opt: &mut dyn Optimizer<f32>, x: &Tensor<f32>, y: &[usize]) -> f32 {
    let mut d = Tensor::empty();
    let logits = m.forward(x).unwrap();
    let loss = softmax_cross_entropy(logits, y, &mut d).unwrap();
    m.zero_grad();
    m.backward(x, &d).unwrap();
    opt.step(m);
    loss
}

#[test]
fn overfits_a_tiny_batch() {
    let mut m = small_cnn(1);
    let x = random_tensor(&[8, 1, 10, 10], 2);
    let y = [0, 1, 2, 3, 4, 0, 1, 2];
    let mut opt = Adam::new(0.01).unwrap();
    let first = train_step(&mut m, &mut opt, &x, &y);
    let mut last = first;
    for _ in 0..300 {
        last = train_step(&mut m, &mut opt, &x, &y);
    }
    assert!(first > 1.0 && last < 0.01, "loss {first} -> {last}");
}

#[test]
fn same_seed_same_model_and_same_training() {
    let run = || {
        let mut m = small_cnn(3);
        let x = random_tensor(&[4, 1, 10, 10], 4);
        let mut opt = Sgd::new(0.05).unwrap().momentum(0.9).unwrap();
        for _ in 0..5 {
            train_step(&mut m, &mut opt, &x, &[1, 2, 3, 4]);
        }
        to_safetensors(&mut m).unwrap()
    };
    assert_eq!(run(), run());
    assert_ne!(
        to_safetensors(&mut small_cnn(3)).unwrap(),
        to_safetensors(&mut small_cnn(4)).unwrap()
    );
}

/// A short real run that CI can afford: LeNet on 4,000 MNIST digits for 3
/// epochs reaches well above 90% on the 1,000 held out (96.5%+ takes the
/// example's 15 epochs).
#[test]
fn lenet_learns_mnist_subset() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist_5k.csv.gz");
    let (train, test) = Dataset::mnist_csv(path).unwrap().shuffled(0).split(4000);
    assert_eq!((train.len(), test.len()), (4000, 1000));
    let mut r = rng(0);
    let mut m = lenet(&mut r).unwrap();
    let mut opt = Sgd::new(0.01).unwrap().momentum(0.9).unwrap();
    let (mut x, mut y, mut d) = (Tensor::empty(), Vec::new(), Tensor::empty());
    for _ in 0..3 {
        let mut order: Vec<usize> = (0..train.len()).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut r);
        for idx in order.chunks(64) {
            train.batch(idx, &mut x, &mut y);
            let logits = m.forward(&x).unwrap();
            softmax_cross_entropy(logits, &y, &mut d).unwrap();
            m.zero_grad();
            m.backward(&x, &d).unwrap();
            opt.step(&mut m);
        }
    }
    let idx: Vec<usize> = (0..test.len()).collect();
    test.batch(&idx, &mut x, &mut y);
    let pred = argmax_rows(m.forward(&x).unwrap());
    let acc = pred.iter().zip(&y).filter(|(p, l)| p == l).count() as f64 / y.len() as f64;
    assert!(acc >= 0.90, "held-out accuracy {acc}");
}

#[test]
fn checkpoint_round_trip_is_exact_and_bad_files_leave_the_model_untouched() {
    let dir = std::env::temp_dir().join(format!("ferroconv-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let mut a = small_cnn(5);
    save_safetensors(&mut a, &path).unwrap();
    let mut b = small_cnn(6);
    load_safetensors(&mut b, &path).unwrap();
    assert_eq!(to_safetensors(&mut a).unwrap(), to_safetensors(&mut b).unwrap());

    let bytes = std::fs::read(&path).unwrap();
    let before = to_safetensors(&mut b).unwrap();
    let mut c = small_cnn(7);
    let c_before = to_safetensors(&mut c).unwrap();
    // truncated
    let e = from_safetensors(&mut c, &bytes[..bytes.len() - 10]).unwrap_err();
    assert!(matches!(e, ConvError::Checkpoint { .. }), "{e}");
    // garbage header
    let mut bad = bytes.clone();
    bad[10] = b'!';
    assert!(matches!(
        from_safetensors(&mut c, &bad),
        Err(ConvError::Checkpoint { .. })
    ));
    assert!(from_safetensors(&mut c, b"nonsense").is_err());
    // a model with other shapes: mismatch, named
    let mut other = Sequential::<f32>::new().push(Conv2dBuilder::new(1, 9, 3, 3).build(&mut rng(1)).unwrap());
    let e = from_safetensors(&mut other, &bytes).unwrap_err();
    assert!(e.to_string().contains("0.weight"), "{e}");
    // missing tensor: a model with one more layer
    let mut bigger = small_cnn(5).push(ReLU).push(Linear::new(5, 2, &mut rng(2)).unwrap());
    let e = from_safetensors(&mut bigger, &bytes).unwrap_err();
    assert!(e.to_string().contains("missing tensor 8.weight"), "{e}");
    // unexpected tensors: a smaller model
    let mut smaller = Sequential::<f32>::new().push(Conv2dBuilder::new(1, 8, 3, 3).build(&mut rng(1)).unwrap());
    let e = from_safetensors(&mut smaller, &bytes).unwrap_err();
    assert!(e.to_string().contains("unexpected"), "{e}");
    // f64 model reading an f32 file: dtype named
    let mut r = rng(5);
    let mut m64 = Sequential::<f64>::new().push(Conv2dBuilder::new(1, 8, 3, 3).build(&mut r).unwrap());
    assert!(
        from_safetensors(&mut m64, &bytes)
            .unwrap_err()
            .to_string()
            .contains("dtype")
    );
    // missing file
    assert!(load_safetensors(&mut c, dir.join("nope")).is_err());
    assert_eq!(to_safetensors(&mut c).unwrap(), c_before);
    assert_eq!(to_safetensors(&mut b).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parameter_names_follow_pytorch() {
    let mut m = lenet(&mut rng(0)).unwrap();
    assert_eq!(
        m.param_names(),
        [
            "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"
        ]
    );
    assert_eq!(
        m.num_params(),
        20 * 25 + 20 + 50 * 500 + 50 + 800 * 500 + 500 + 5000 + 10
    );
    let mut named = Sequential::<f32>::new()
        .push_named(
            "conv1",
            Conv2dBuilder::new(1, 2, 3, 3).bias(false).build(&mut rng(0)).unwrap(),
        )
        .push_named("act", ReLU);
    assert_eq!(named.param_names(), ["conv1.weight"]);
}

/// A layer that passes values through forward and hands back NaN gradients.
struct NanGrad;

impl Layer<f32> for NanGrad {
    fn kind(&self) -> &'static str {
        "NanGrad"
    }
    fn forward(&mut self, x: &Tensor<f32>, y: &mut Tensor<f32>) -> Result<(), ConvError> {
        y.assign(x);
        Ok(())
    }
    fn backward(
        &mut self,
        x: &Tensor<f32>,
        _y: &Tensor<f32>,
        _dy: &Tensor<f32>,
        dx: Option<&mut Tensor<f32>>,
    ) -> Result<(), ConvError> {
        if let Some(dx) = dx {
            dx.resize(x.shape());
            dx.data_mut().fill(f32::NAN);
        }
        Ok(())
    }
}

#[test]
fn injected_nan_is_reported_at_the_right_layer_and_pass() {
    let x = random_tensor(&[2, 1, 10, 10], 8);
    let mut d = Tensor::empty();

    // Forward: a NaN weight in layer 3.
    let mut m = small_cnn(9);
    m.set_check_finite(true);
    let mut k = 0;
    m.visit_params("", &mut |_, _, p| {
        if k == 2 {
            p.value[5] = f32::NAN;
        }
        k += 1;
    });
    m.forward(&x).unwrap();
    let nf = m.non_finite().unwrap();
    assert_eq!((nf.layer.as_str(), nf.kind, nf.pass), ("3", "Conv2d", Pass::Forward));

    // Backward: a layer whose input gradient is NaN; found in its input-gradient pass.
    let mut r = rng(10);
    let mut m = Sequential::<f32>::new()
        .push(Conv2dBuilder::new(1, 2, 3, 3).build(&mut r).unwrap())
        .push_named("bad", NanGrad)
        .push(Flatten)
        .push(Linear::new(2 * 8 * 8, 3, &mut r).unwrap());
    m.set_check_finite(true);
    let logits = m.forward(&x).unwrap();
    softmax_cross_entropy(logits, &[0, 1], &mut d).unwrap();
    assert!(m.non_finite().is_none());
    m.backward(&x, &d).unwrap();
    let nf = m.non_finite().unwrap().clone();
    assert_eq!((nf.layer.as_str(), nf.pass), ("bad", Pass::InputGrad));
    assert!(nf.to_string().contains("layer bad (NanGrad)"), "{nf}");

    // The checks are off by default.
    let mut m = small_cnn(9);
    let mut xn = x.clone();
    xn.data_mut()[0] = f32::INFINITY;
    m.forward(&xn).unwrap();
    assert!(m.non_finite().is_none());
}

#[test]
fn diagnostics_blame_a_too_high_learning_rate() {
    let mut m = small_cnn(11);
    let x = random_tensor(&[4, 1, 10, 10], 12);
    let mut d = Tensor::empty();
    let mut mon = Monitor::new();
    let mut opt = Sgd::new(50.0).unwrap();
    m.set_check_finite(true);
    let mut reports = Vec::new();
    for step in 0..6 {
        let logits = m.forward(&x).unwrap();
        let loss = softmax_cross_entropy(logits, &[0, 1, 2, 3], &mut d).unwrap();
        m.zero_grad();
        m.backward(&x, &d).unwrap();
        mon.before_step(&mut m);
        opt.step(&mut m);
        let nf = m.non_finite().cloned();
        reports.push(mon.after_step(&mut m, step, loss as f64, nf));
    }
    let first_bad = reports.iter().find(|r| !r.healthy()).expect("lr 50 must be flagged");
    let text = first_bad.to_string();
    assert!(
        text.contains("learning rate is too high") || text.contains("non-finite"),
        "{text}"
    );

    // A sane learning rate is healthy.
    let mut m = small_cnn(11);
    let mut opt = Sgd::new(1e-3).unwrap();
    let logits = m.forward(&x).unwrap();
    let loss = softmax_cross_entropy(logits, &[0, 1, 2, 3], &mut d).unwrap();
    m.backward(&x, &d).unwrap();
    mon.before_step(&mut m);
    opt.step(&mut m);
    let rep = mon.after_step(&mut m, 0, loss as f64, None);
    assert!(rep.healthy(), "{rep}");
    assert_eq!(rep.params.len(), 6);
}

fn single_param_model(v: Vec<f32>, g: Vec<f32>) -> Linear<f32> {
    let mut l = Linear::with_init(v.len(), 1, false, Init::Constant(0.0), &mut rng(0)).unwrap();
    l.visit_params("", &mut |_, _, p| {
        p.value.copy_from_slice(&v);
        p.grad.copy_from_slice(&g);
    });
    l
}

fn values(l: &mut Linear<f32>) -> Vec<f32> {
    let mut out = Vec::new();
    l.visit_params("", &mut |_, _, p| out = p.value.clone());
    out
}

#[test]
fn optimizers_follow_pytorch_update_rules() {
    // SGD, momentum 0.9, weight decay 0.1, two steps with gradient 1:
    // g1 = 1 + 0.1*1 = 1.1, buf = 1.1, p = 1 - 0.1*1.1 = 0.89
    // g2 = 1 + 0.1*0.89 = 1.089, buf = 0.9*1.1 + 1.089 = 2.079, p = 0.89 - 0.2079
    let mut l = single_param_model(vec![1.0], vec![1.0]);
    let mut o = Sgd::new(0.1).unwrap().momentum(0.9).unwrap().weight_decay(0.1).unwrap();
    o.step(&mut l);
    assert!((values(&mut l)[0] - 0.89).abs() < 1e-6);
    o.step(&mut l);
    assert!((values(&mut l)[0] - (0.89 - 0.2079)).abs() < 1e-6);
    // Nesterov: first step u = g + 0.9 * g = 1.9 -> p = 1 - 0.19
    let mut l = single_param_model(vec![1.0], vec![1.0]);
    let mut o = Sgd::new(0.1).unwrap().momentum(0.9).unwrap().nesterov(true);
    o.step(&mut l);
    assert!((values(&mut l)[0] - 0.81).abs() < 1e-6);
    // Adam, first step moves every weight by lr (sign of the gradient).
    let mut l = single_param_model(vec![1.0, -2.0], vec![0.5, -3.0]);
    let mut o = Adam::new(0.01).unwrap();
    o.step(&mut l);
    let v = values(&mut l);
    assert!((v[0] - 0.99).abs() < 1e-6 && (v[1] + 1.99).abs() < 1e-6, "{v:?}");
    // AdamW decays the weight first: p = 1 * (1 - 0.01 * 0.5) - 0.01
    let mut l = single_param_model(vec![1.0], vec![0.5]);
    let mut o = Adam::adamw(0.01).unwrap().weight_decay(0.5).unwrap();
    o.step(&mut l);
    assert!((values(&mut l)[0] - (0.995 - 0.01)).abs() < 1e-6);
    // Bad hyper-parameters are errors.
    assert!(Sgd::<f32>::new(-1.0).is_err());
    assert!(Sgd::<f32>::new(0.1).unwrap().momentum(1.5).is_err());
    assert!(Adam::<f32>::new(f64::NAN).is_err());
}

#[test]
fn gradient_clipping() {
    let mut l = single_param_model(vec![0.0, 0.0], vec![3.0, 4.0]);
    let norm = clip_grad_norm(&mut l, 1.0);
    assert!((norm - 5.0).abs() < 1e-9);
    let mut g = Vec::new();
    l.visit_params("", &mut |_, _, p| g = p.grad.clone());
    assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
    // below the threshold: unchanged
    assert!((clip_grad_norm(&mut l, 10.0) - 1.0).abs() < 1e-5);
    let mut l = single_param_model(vec![0.0, 0.0], vec![3.0, -4.0]);
    clip_grad_value(&mut l, 2.0);
    l.visit_params("", &mut |_, _, p| g = p.grad.clone());
    assert_eq!(g, [2.0, -2.0]);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let mut m = small_cnn(13);
    // wrong channel count
    let e = m.forward(&random_tensor(&[2, 3, 10, 10], 1)).unwrap_err();
    assert!(e.to_string().contains("layer 0 (Conv2d) expects [n, 1, h, w]"), "{e}");
    // wrong rank
    assert!(matches!(
        m.forward(&random_tensor(&[2, 100], 1)),
        Err(ConvError::InputShape { .. })
    ));
    // image too small for the kernels
    assert!(m.forward(&random_tensor(&[1, 1, 3, 3], 1)).is_err());
    // an image size that makes the Linear layer's input wrong
    let e = m.forward(&random_tensor(&[1, 1, 12, 12], 1)).unwrap_err();
    assert!(e.to_string().contains("Linear"), "{e}");
    // labels
    let logits = random_tensor(&[2, 5], 1);
    let mut d = Tensor::empty();
    assert_eq!(
        softmax_cross_entropy(&logits, &[1, 5], &mut d),
        Err(ConvError::LabelOutOfRange {
            index: 1,
            label: 5,
            classes: 5
        })
    );
    assert!(matches!(
        softmax_cross_entropy(&logits, &[1], &mut d),
        Err(ConvError::LengthMismatch { .. })
    ));
    assert!(mse_loss(&logits, &random_tensor(&[5, 2], 1), &mut d).is_err());
    // backward with a mis-shaped gradient
    let x = random_tensor(&[2, 1, 10, 10], 1);
    m.forward(&x).unwrap();
    assert!(m.backward(&x, &random_tensor(&[2, 4], 1)).is_err());
    // invalid layer configurations
    assert!(
        Conv2dBuilder::new(3, 4, 3, 3)
            .groups(2)
            .build::<f32>(&mut rng(0))
            .is_err()
    );
    assert!(Conv2dBuilder::new(3, 4, 0, 3).build::<f32>(&mut rng(0)).is_err());
    assert!(MaxPool2d::new(0).is_err());
    assert!(MaxPool2d::with(2, 2, 2, 2, 2, 0).is_err());
    assert!(Linear::<f32>::new(0, 3, &mut rng(0)).is_err());
    assert!(Sequential::<f32>::new().forward(&x).is_err());
    assert!(Tensor::from_vec(&[2, 3], vec![0.0f32; 5]).is_err());
    // corrupt data file
    let dir = std::env::temp_dir().join(format!("ferroconv-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.csv"), "1,2,3\n").unwrap();
    assert!(matches!(
        Dataset::mnist_csv(dir.join("bad.csv")),
        Err(ConvError::Data { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn init_schemes_have_the_documented_scale() {
    let mut r = rng(0);
    let n = 100_000;
    let std = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let fan_in = 50;
    let v: Vec<f64> = Init::KaimingNormal.sample(n, fan_in, 10, &mut r);
    assert!((std(&v) / (2.0 / 50.0f64).sqrt() - 1.0).abs() < 0.02);
    let v: Vec<f64> = Init::XavierUniform.sample(n, fan_in, 10, &mut r);
    let b = (6.0 / 60.0f64).sqrt();
    assert!(v.iter().all(|x| x.abs() <= b) && (std(&v) / (b / 3.0f64.sqrt()) - 1.0).abs() < 0.02);
    let v: Vec<f64> = Init::PyTorchDefault.sample(n, fan_in, 10, &mut r);
    assert!(v.iter().all(|x| x.abs() <= 1.0 / 50.0f64.sqrt()));
    // groups: a depthwise conv's fan_in is kh*kw
    let c = Conv2dBuilder::new(8, 8, 3, 3).groups(8).build::<f64>(&mut r).unwrap();
    assert!(c.weight().value.iter().all(|x| x.abs() <= 1.0 / 3.0));
    assert_eq!(c.weight().shape, [8, 1, 3, 3]);
}

#[test]
fn training_is_bitwise_identical_across_thread_counts() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut m = lenet(&mut rng(21)).unwrap();
            let x = {
                let t = random_tensor(&[16, 1, 28, 28], 22);
                Tensor::from_vec(&[16, 1, 28, 28], t.data().iter().map(|v| v.abs()).collect()).unwrap()
            };
            let y: Vec<usize> = (0..16).map(|i| i % 10).collect();
            let mut opt = Sgd::new(0.01).unwrap().momentum(0.9).unwrap();
            for _ in 0..3 {
                train_step(&mut m, &mut opt, &x, &y);
            }
            to_safetensors(&mut m).unwrap()
        })
    };
    let one = run(1);
    assert!(one == run(2), "1 vs 2 threads differ");
    assert!(one == run(8), "1 vs 8 threads differ");
}

#[test]
fn idx_files_plain_and_gzipped() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("ferroconv-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (n, rows, cols) = (3usize, 2usize, 4usize);
    let mut images = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        images.extend_from_slice(&(v as u32).to_be_bytes());
    }
    images.extend((0..n * rows * cols).map(|i| (i * 10) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    labels.extend([7u8, 0, 9]);
    // training files plain, test files gzipped
    std::fs::write(dir.join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    for (name, bytes) in [
        ("t10k-images-idx3-ubyte.gz", &images),
        ("t10k-labels-idx1-ubyte.gz", &labels),
    ] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        std::fs::write(dir.join(name), e.finish().unwrap()).unwrap();
    }
    let (train, test) = Dataset::mnist_idx_dir(&dir).unwrap();
    assert_eq!(train, test);
    assert_eq!((train.len(), train.rows, train.cols), (3, 2, 4));
    assert_eq!(train.labels, [7, 0, 9]);
    assert_eq!(train.images[1], 10.0 / 255.0);
    // a mismatched label count is an error, not a panic
    let mut short = labels.clone();
    short.pop();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &short).unwrap();
    assert!(matches!(Dataset::mnist_idx_dir(&dir), Err(ConvError::Data { .. })));
    std::fs::remove_dir_all(&dir).ok();
}
