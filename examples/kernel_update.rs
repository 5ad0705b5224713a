//! How do the kernel weights get updated in backprop? Answered in code.
//!
//! `cargo run --release --example kernel_update`
//!
//! 1. One 3x3 convolution on a 5x5 image: the weight gradient from the
//!    library next to the explicit sum, over every output position, of the
//!    input patch times that position's output delta.
//! 2. The same gradient checked against finite differences.
//! 3. A learning rate that diverges, how the diagnostics name the cause, and
//!    how gradient clipping keeps the same learning rate stable.

use ferroconv::nn::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn print_grid(title: &str, v: &[f64], w: usize) {
    println!("{title}");
    for row in v.chunks(w) {
        println!(
            "   {}",
            row.iter().map(|x| format!("{x:8.3}")).collect::<Vec<_>>().join(" ")
        );
    }
}

fn main() -> Result<(), ferroconv::ConvError> {
    // ---- 1. the weight gradient, two ways --------------------------------
    let mut rng = StdRng::seed_from_u64(1);
    let mut conv = Conv2dBuilder::new(1, 1, 3, 3).bias(false).build::<f64>(&mut rng)?;
    let x = Tensor::from_vec(&[1, 1, 5, 5], (0..25).map(|i| ((i * 7) % 11) as f64 - 5.0).collect())?;
    let mut y = Tensor::empty();
    conv.forward(&x, &mut y)?; // 3x3 output
    // Pretend the loss gradient with respect to the output is this delta:
    let delta = Tensor::from_vec(y.shape(), vec![0.5, -1.0, 0.25, 2.0, 0.0, -0.5, 1.0, 1.5, -2.0])?;
    conv.backward(&x, &y, &delta, None)?;
    let library = conv.weight().grad.clone();

    // dW[ky][kx] = sum over (oy, ox) of delta[oy][ox] * X[oy + ky][ox + kx]
    let mut explicit = [0.0f64; 9];
    for oy in 0..3 {
        for ox in 0..3 {
            let d = delta.data()[oy * 3 + ox];
            for ky in 0..3 {
                for kx in 0..3 {
                    explicit[ky * 3 + kx] += d * x.data()[(oy + ky) * 5 + ox + kx];
                }
            }
        }
    }
    print_grid("input X (5x5):", x.data(), 5);
    print_grid("output delta dL/dY (3x3):", delta.data(), 3);
    print_grid("dL/dW from ferroconv (Conv2d::backward):", &library, 3);
    print_grid(
        "dL/dW = sum over output positions of (input patch) * delta:",
        &explicit,
        3,
    );
    let max_diff = library
        .iter()
        .zip(&explicit)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("max |difference| = {max_diff:e}\n");

    // The common mistake: adding sum(delta .* output) to every kernel entry.
    let wrong: f64 = delta.data().iter().zip(y.data()).map(|(d, o)| d * o).sum();
    println!(
        "A common mistake adds sum(delta .* Y) = {wrong:.3} to every kernel entry: one number for all nine\n\
         weights, and the wrong one (it multiplies delta by the layer's output, not by the input each\n\
         weight actually touched). Each weight must see its own input patch.\n"
    );

    // ---- 2. finite differences --------------------------------------------
    let report = gradcheck(&mut conv, &x, 1e-6, 7)?;
    println!("finite-difference check (central, h = 1e-6, f64):\n{report}");

    // ---- 3. divergence, diagnosis, and the fix -----------------------------
    // A small regression with two stacked convolutions (no activation, so a
    // too-large step grows geometrically instead of dying in a ReLU).
    let run = |lr: f64, clip: Option<f64>| -> Result<(), ferroconv::ConvError> {
        let mut rng = StdRng::seed_from_u64(2);
        let mut model = Sequential::<f32>::new()
            .push(Conv2dBuilder::new(1, 4, 3, 3).build(&mut rng)?)
            .push(Conv2dBuilder::new(4, 1, 3, 3).build(&mut rng)?);
        model.set_check_finite(true);
        let xs = Tensor::from_vec(
            &[8, 1, 12, 12],
            (0..8 * 144).map(|i| ((i * 37) % 23) as f32 / 2.0).collect(),
        )?;
        let target = Tensor::from_vec(&[8, 1, 8, 8], (0..8 * 64).map(|i| ((i * 11) % 7) as f32).collect())?;
        let mut opt = Sgd::new(lr)?.momentum(0.9)?;
        let mut monitor = Monitor::new();
        let mut dpred = Tensor::empty();
        let mut warned = false;
        for step in 0..60 {
            let pred = model.forward(&xs)?;
            let loss = mse_loss(pred, &target, &mut dpred)?;
            model.zero_grad();
            model.backward(&xs, &dpred)?;
            if let Some(c) = clip {
                clip_grad_norm(&mut model, c);
            }
            monitor.before_step(&mut model);
            opt.step(&mut model);
            let nf = model.non_finite().cloned();
            let report = monitor.after_step(&mut model, step, loss as f64, nf);
            if report.non_finite.is_some() || !loss.is_finite() {
                print!("  {report}");
                println!("  (the run is lost: stopping)");
                return Ok(());
            }
            if !report.healthy() && !warned {
                println!("  first warning, long before any NaN:");
                print!("  {report}");
                warned = true;
            }
            if step % 20 == 0 || step == 59 || (warned && step < 12) {
                println!("  step {step:>2}: loss {loss:.4e}");
            }
        }
        Ok(())
    };
    println!("training with lr = 0.02 (too high for this data):");
    run(0.02, None)?;
    println!("\nthe same lr with clip_grad_norm(max_norm = 1.0):");
    run(0.02, Some(1.0))?;
    println!("\nand with lr = 1e-4:");
    run(1e-4, None)?;
    Ok(())
}
