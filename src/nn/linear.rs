//! `Linear`: a fully connected layer on matrixmultiply's GEMM.

use rand::rngs::StdRng;

use crate::element::Element;
use crate::error::ConvError;
use crate::kernels::parallel::gemm_split_n;
use crate::nn::init::{Init, default_bias};
use crate::nn::layer::{Layer, check_dy, shape_error};
use crate::nn::param::Param;
use crate::nn::tensor::Tensor;

/// `y = x W^T + b` (PyTorch's `nn.Linear`): input `[n, in]`, weight
/// `[out, in]`, bias `[out]`, output `[n, out]`.
///
/// Backward: `dx = dy W`, `dW += dy^T x`, `db += sum over n of dy`.
pub struct Linear<T> {
    inf: usize,
    outf: usize,
    weight: Param<T>,
    bias: Option<Param<T>>,
}

impl<T: Element> Linear<T> {
    /// A layer with PyTorch's default initialization and a bias.
    pub fn new(inf: usize, outf: usize, rng: &mut StdRng) -> Result<Self, ConvError> {
        Self::with_init(inf, outf, true, Init::PyTorchDefault, rng)
    }

    /// A layer with a chosen initialization, with or without a bias.
    pub fn with_init(inf: usize, outf: usize, bias: bool, init: Init, rng: &mut StdRng) -> Result<Self, ConvError> {
        if inf == 0 || outf == 0 {
            return Err(ConvError::InvalidConfig {
                what: format!("Linear({inf}, {outf}): features must be at least 1"),
            });
        }
        let len = inf.checked_mul(outf).ok_or(ConvError::Overflow {
            what: "Linear weight element count",
        })?;
        Ok(Linear {
            inf,
            outf,
            weight: Param::new(&[outf, inf], init.sample(len, inf, outf, rng)),
            bias: bias.then(|| Param::new(&[outf], default_bias(outf, inf, rng))),
        })
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Param<T> {
        &self.weight
    }

    fn check(&self, x: &Tensor<T>) -> Result<usize, ConvError> {
        match *x.shape() {
            [n, f] if f == self.inf => Ok(n),
            _ => Err(shape_error("Linear", format!("[n, {}]", self.inf), x.shape())),
        }
    }
}

impl<T: Element> Layer<T> for Linear<T> {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn describe(&self) -> String {
        format!("Linear({}, {}, bias={})", self.inf, self.outf, self.bias.is_some())
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let n = self.check(x)?;
        y.resize(&[n, self.outf]);
        let beta = match &self.bias {
            Some(b) => {
                for row in y.data_mut().chunks_exact_mut(self.outf) {
                    row.copy_from_slice(&b.value);
                }
                T::ONE
            }
            None => T::ZERO,
        };
        // SAFETY: x is n x in (row-major), W is out x in read transposed
        // (row stride 1, column stride in) and y is n x out, all sized by the
        // checks above; y aliases neither input.
        unsafe {
            gemm_split_n(
                n,
                self.inf,
                self.outf,
                x.data().as_ptr(),
                (self.inf as isize, 1),
                self.weight.value.as_ptr(),
                (1, self.inf as isize),
                beta,
                y.data_mut().as_mut_ptr(),
                (self.outf as isize, 1),
            );
        }
        Ok(())
    }

    fn backward(
        &mut self,
        x: &Tensor<T>,
        y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        let n = self.check(x)?;
        check_dy("Linear", y, dy)?;
        if let Some(dx) = dx {
            dx.resize(x.shape());
            // SAFETY: dy is n x out, W is out x in, dx is n x in; dx aliases neither.
            unsafe {
                gemm_split_n(
                    n,
                    self.outf,
                    self.inf,
                    dy.data().as_ptr(),
                    (self.outf as isize, 1),
                    self.weight.value.as_ptr(),
                    (self.inf as isize, 1),
                    T::ZERO,
                    dx.data_mut().as_mut_ptr(),
                    (self.inf as isize, 1),
                );
            }
        }
        // dW += dy^T x: (out x n) * (n x in), accumulated in place (beta = 1).
        // SAFETY: dy read transposed (row stride 1, column stride out), x is
        // n x in, the gradient is out x in and aliases neither.
        unsafe {
            gemm_split_n(
                self.outf,
                n,
                self.inf,
                dy.data().as_ptr(),
                (1, self.outf as isize),
                x.data().as_ptr(),
                (self.inf as isize, 1),
                T::ONE,
                self.weight.grad.as_mut_ptr(),
                (self.inf as isize, 1),
            );
        }
        if let Some(b) = &mut self.bias {
            for row in dy.data().chunks_exact(self.outf) {
                for (g, &d) in b.grad.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
        Ok(())
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &str, &mut Param<T>)) {
        f(prefix, "weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(prefix, "bias", b);
        }
    }
}
