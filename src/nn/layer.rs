//! The `Layer` trait every building block implements.

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::param::Param;
use crate::nn::tensor::Tensor;

/// Which pass produced a value (for divergence reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The layer's output in the forward pass.
    Forward,
    /// The gradient the layer passed back to its input.
    InputGrad,
    /// The gradient of one of the layer's parameters.
    ParamGrad,
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pass::Forward => "forward output",
            Pass::InputGrad => "input gradient (backward)",
            Pass::ParamGrad => "parameter gradient (backward)",
        })
    }
}

/// A differentiable building block.
///
/// The contract, as in PyTorch's autograd but explicit:
/// - [`forward`](Layer::forward) reads `x` and writes `y` (resizing it);
/// - [`backward`](Layer::backward) gets the same `x` and `y` back with the
///   gradient of the loss with respect to `y`, **adds** the parameter
///   gradients into each [`Param::grad`], and, when asked, **writes** the
///   gradient with respect to `x` into `dx`.
///
/// Layers keep what they need between the two calls (a pooling layer its
/// argmax, a convolution its workspace), so `backward` must follow the
/// `forward` of the same input.
pub trait Layer<T: Element>: Send {
    /// The layer's type, e.g. `"Conv2d"`.
    fn kind(&self) -> &'static str;

    /// A one-line description with the layer's configuration.
    fn describe(&self) -> String {
        self.kind().to_string()
    }

    /// Forward pass: `y = layer(x)`.
    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError>;

    /// Backward pass; see the trait documentation. `dx` is `None` when no one
    /// needs the input gradient (the first layer of a model), which saves the
    /// work.
    fn backward(
        &mut self,
        x: &Tensor<T>,
        y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError>;

    /// Calls `f(prefix, name, param)` for every parameter, in a fixed order,
    /// with PyTorch's local names (`"weight"`, `"bias"`); the full name is
    /// [`full_name(prefix, name)`](crate::nn::full_name).
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &str, &mut Param<T>)) {}

    /// Switches between training and evaluation behavior (a no-op for the
    /// layers here; kept for layers such as dropout).
    fn set_train(&mut self, _train: bool) {}
}

/// Returns `Err(InputShape)` naming `layer`, what it expects and what it got.
pub(crate) fn shape_error(layer: &str, expected: String, actual: &[usize]) -> ConvError {
    ConvError::InputShape {
        layer: layer.to_string(),
        expected,
        actual: actual.to_vec(),
    }
}

/// Checks that `dy` has `y`'s shape.
pub(crate) fn check_dy<T: Element>(layer: &str, y: &Tensor<T>, dy: &Tensor<T>) -> Result<(), ConvError> {
    if y.shape() == dy.shape() {
        Ok(())
    } else {
        Err(shape_error(
            layer,
            format!("output gradient of shape {:?}", y.shape()),
            dy.shape(),
        ))
    }
}
