//! Ready-made models.

use rand::rngs::StdRng;

use crate::error::ConvError;
use crate::nn::{Conv2dBuilder, Flatten, Linear, MaxPool2d, ReLU, Sequential};

/// The Caffe-style LeNet for 28x28 digits, as in PyTorch's
/// `nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
/// nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
/// nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))`, with the same
/// parameter names (`0.weight`, `3.weight`, `7.weight`, `9.weight` and biases)
/// and PyTorch's default initialization drawn from `rng`.
pub fn lenet(rng: &mut StdRng) -> Result<Sequential<f32>, ConvError> {
    Ok(Sequential::new()
        .push(Conv2dBuilder::new(1, 20, 5, 5).build(rng)?)
        .push(ReLU)
        .push(MaxPool2d::new(2)?)
        .push(Conv2dBuilder::new(20, 50, 5, 5).build(rng)?)
        .push(ReLU)
        .push(MaxPool2d::new(2)?)
        .push(Flatten)
        .push(Linear::new(800, 500, rng)?)
        .push(ReLU)
        .push(Linear::new(500, 10, rng)?))
}
