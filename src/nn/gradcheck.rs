//! Gradient checking by central finite differences, in f64.
//!
//! For a layer or model `f` and an input `x`, take the scalar loss
//! `L = sum over i of f(x)[i] * r[i]` with a fixed random `r` (so that every
//! output element matters, with its own weight). Backward with `dy = r` gives
//! the analytic gradients; for every element `e` of the input and of every
//! parameter, `(L(e + h) - L(e - h)) / 2h` gives the numeric one. Central
//! differences err by `O(h^2)` from curvature plus `O(eps * |L| / h)` from
//! rounding; `h = 1e-6` in f64 balances the two at about 1e-9 relative.
//! ReLU and max pooling have kinks: an element within `h` of a kink can show
//! a large error; with random inputs that is rare, and the worst index is
//! reported so it can be looked at.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::ConvError;
use crate::nn::layer::Layer;
use crate::nn::param::full_name;
use crate::nn::tensor::Tensor;

/// The comparison for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// `"input"` or the parameter's full name.
    pub name: String,
    /// Largest `|analytic - numeric|`.
    pub max_abs_err: f64,
    /// Largest `|analytic - numeric| / max(|analytic|, |numeric|, 1e-8)`.
    pub max_rel_err: f64,
    /// Element with the largest relative error.
    pub worst_index: usize,
    /// Analytic gradient at that element.
    pub analytic: f64,
    /// Numeric gradient at that element.
    pub numeric: f64,
}

/// The result of [`gradcheck`]: one entry for the input, then one per parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// Per-tensor results.
    pub tensors: Vec<TensorCheck>,
}

impl GradCheck {
    /// Largest relative error over all tensors.
    pub fn max_rel_err(&self) -> f64 {
        self.tensors.iter().map(|t| t.max_rel_err).fold(0.0, f64::max)
    }

    /// True when every tensor's largest absolute error is at most `atol` or
    /// its largest relative error at most `rtol`.
    pub fn passed(&self, atol: f64, rtol: f64) -> bool {
        self.tensors
            .iter()
            .all(|t| t.max_abs_err <= atol || t.max_rel_err <= rtol)
    }
}

impl std::fmt::Display for GradCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for t in &self.tensors {
            writeln!(
                f,
                "{:<16} max abs err {:.2e}  max rel err {:.2e}  worst [{}]: analytic {:.6e} numeric {:.6e}",
                t.name, t.max_abs_err, t.max_rel_err, t.worst_index, t.analytic, t.numeric
            )?;
        }
        Ok(())
    }
}

fn loss(layer: &mut dyn Layer<f64>, x: &Tensor<f64>, r: &[f64], y: &mut Tensor<f64>) -> Result<f64, ConvError> {
    layer.forward(x, y)?;
    Ok(y.data().iter().zip(r).map(|(a, b)| a * b).sum())
}

fn compare(name: String, analytic: &[f64], numeric: &[f64]) -> TensorCheck {
    let mut t = TensorCheck {
        name,
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        worst_index: 0,
        analytic: analytic.first().copied().unwrap_or(0.0),
        numeric: numeric.first().copied().unwrap_or(0.0),
    };
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let abs = (a - n).abs();
        let rel = abs / a.abs().max(n.abs()).max(1e-8);
        t.max_abs_err = t.max_abs_err.max(abs);
        if rel > t.max_rel_err || !rel.is_finite() {
            t.max_rel_err = rel;
            t.worst_index = i;
            t.analytic = a;
            t.numeric = n;
        }
    }
    t
}

/// Checks every gradient of `layer` (any layer or a whole model) at input
/// `x` against central finite differences with step `h` (1e-6 is a good
/// default); `seed` draws the output weights `r`. Parameter gradients are
/// zeroed first and left holding the analytic gradient.
pub fn gradcheck(layer: &mut dyn Layer<f64>, x: &Tensor<f64>, h: f64, seed: u64) -> Result<GradCheck, ConvError> {
    let mut y = Tensor::empty();
    layer.forward(x, &mut y)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let r: Vec<f64> = (0..y.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let dy = Tensor::from_vec(y.shape(), r.clone())?;

    // Analytic.
    layer.visit_params("", &mut |_, _, p| p.zero_grad());
    let mut dx = Tensor::empty();
    layer.backward(x, &y, &dy, Some(&mut dx))?;
    let mut names = Vec::new();
    let mut analytic = Vec::new();
    layer.visit_params("", &mut |pre, n, p| {
        names.push(full_name(pre, n));
        analytic.push(p.grad.clone());
    });

    // Numeric, input.
    let mut xp = x.clone();
    let mut num_x = vec![0.0; x.len()];
    for (i, nx) in num_x.iter_mut().enumerate() {
        let orig = x.data()[i];
        xp.data_mut()[i] = orig + h;
        let up = loss(layer, &xp, &r, &mut y)?;
        xp.data_mut()[i] = orig - h;
        let down = loss(layer, &xp, &r, &mut y)?;
        xp.data_mut()[i] = orig;
        *nx = (up - down) / (2.0 * h);
    }
    let mut tensors = vec![compare("input".into(), dx.data(), &num_x)];

    // Numeric, each parameter.
    for (k, (name, an)) in names.into_iter().zip(&analytic).enumerate() {
        let mut num = vec![0.0; an.len()];
        for (i, ni) in num.iter_mut().enumerate() {
            let mut eval = |delta: f64, layer: &mut dyn Layer<f64>| -> Result<f64, ConvError> {
                let mut idx = 0;
                let mut orig = 0.0;
                layer.visit_params("", &mut |_, _, p| {
                    if idx == k {
                        orig = p.value[i];
                        p.value[i] = orig + delta;
                    }
                    idx += 1;
                });
                let l = loss(layer, x, &r, &mut y);
                let mut idx = 0;
                layer.visit_params("", &mut |_, _, p| {
                    if idx == k {
                        p.value[i] = orig;
                    }
                    idx += 1;
                });
                l
            };
            let up = eval(h, layer)?;
            let down = eval(-h, layer)?;
            *ni = (up - down) / (2.0 * h);
        }
        tensors.push(compare(name, an, &num));
    }
    Ok(GradCheck { tensors })
}
