//! Weight initialization from a seeded generator.
//!
//! Fans, as PyTorch computes them, with groups accounted for:
//! a convolution weight `[c_out, c_in / groups, kh, kw]` has
//! `fan_in = (c_in / groups) * kh * kw` (what one output sums over) and
//! `fan_out = (c_out / groups) * kh * kw` (how many outputs one input feeds);
//! a linear weight `[out, in]` has `fan_in = in`, `fan_out = out`.

use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::element::Element;

/// How to draw a weight tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// PyTorch's default for `Conv2d` and `Linear`: Kaiming uniform with
    /// `a = sqrt(5)`, i.e. `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    PyTorchDefault,
    /// He/Kaiming uniform for ReLU: `U(-b, b)`, `b = sqrt(6 / fan_in)`.
    KaimingUniform,
    /// He/Kaiming normal for ReLU: `N(0, 2 / fan_in)`.
    KaimingNormal,
    /// Xavier/Glorot uniform: `U(-b, b)`, `b = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// Xavier/Glorot normal: `N(0, 2 / (fan_in + fan_out))`.
    XavierNormal,
    /// Every weight equal to this value (tests, teaching).
    Constant(f64),
}

impl Init {
    /// Draws `len` weights for a tensor with the given fans.
    pub fn sample<T: Element>(self, len: usize, fan_in: usize, fan_out: usize, rng: &mut StdRng) -> Vec<T> {
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let uniform = |b: f64, rng: &mut StdRng| -> Vec<T> {
            let d = Uniform::new_inclusive(-b, b).expect("finite bound");
            (0..len).map(|_| T::from_f64(d.sample(rng))).collect()
        };
        let normal = |sd: f64, rng: &mut StdRng| -> Vec<T> {
            let d = Normal::new(0.0, sd).expect("finite standard deviation");
            (0..len).map(|_| T::from_f64(d.sample(rng))).collect()
        };
        match self {
            Init::PyTorchDefault => uniform(1.0 / fi.sqrt(), rng),
            Init::KaimingUniform => uniform((6.0 / fi).sqrt(), rng),
            Init::KaimingNormal => normal((2.0 / fi).sqrt(), rng),
            Init::XavierUniform => uniform((6.0 / (fi + fo)).sqrt(), rng),
            Init::XavierNormal => normal((2.0 / (fi + fo)).sqrt(), rng),
            Init::Constant(c) => vec![T::from_f64(c); len],
        }
    }
}

/// PyTorch's default bias: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
pub(crate) fn default_bias<T: Element>(len: usize, fan_in: usize, rng: &mut StdRng) -> Vec<T> {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    (0..len).map(|_| T::from_f64(rng.random_range(-b..=b))).collect()
}
