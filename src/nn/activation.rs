//! Elementwise activations and reshapes.

use rayon::prelude::*;

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::{Layer, check_dy, shape_error};
use crate::nn::tensor::Tensor;

/// Elements per parallel task of the elementwise layers.
const CHUNK: usize = 1 << 15;

/// `y = max(x, 0)`; backward passes `dy` where `x > 0` and zero elsewhere
/// (PyTorch's convention at exactly 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU;

impl<T: Element> Layer<T> for ReLU {
    fn kind(&self) -> &'static str {
        "ReLU"
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        y.resize(x.shape());
        y.data_mut()
            .par_chunks_mut(CHUNK)
            .zip(x.data().par_chunks(CHUNK))
            .for_each(|(o, i)| {
                for (o, &i) in o.iter_mut().zip(i) {
                    // NaN stays NaN, so diagnostics still see it downstream.
                    *o = if i < T::ZERO { T::ZERO } else { i };
                }
            });
        Ok(())
    }

    fn backward(
        &mut self,
        x: &Tensor<T>,
        y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        check_dy("ReLU", y, dy)?;
        if let Some(dx) = dx {
            dx.resize(x.shape());
            dx.data_mut()
                .par_chunks_mut(CHUNK)
                .zip(x.data().par_chunks(CHUNK).zip(dy.data().par_chunks(CHUNK)))
                .for_each(|(o, (i, d))| {
                    for ((o, &i), &d) in o.iter_mut().zip(i).zip(d) {
                        *o = if i > T::ZERO { d } else { T::ZERO };
                    }
                });
        }
        Ok(())
    }
}

/// Flattens `[n, ...]` to `[n, product of the rest]` (PyTorch's `nn.Flatten()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl<T: Element> Layer<T> for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let Some((&n, rest)) = x.shape().split_first() else {
            return Err(shape_error("Flatten", "[n, ...]".into(), x.shape()));
        };
        y.resize(&[n, rest.iter().product()]);
        y.data_mut().copy_from_slice(x.data());
        Ok(())
    }

    fn backward(
        &mut self,
        x: &Tensor<T>,
        y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        check_dy("Flatten", y, dy)?;
        if let Some(dx) = dx {
            dx.resize(x.shape());
            dx.data_mut().copy_from_slice(dy.data());
        }
        Ok(())
    }
}
