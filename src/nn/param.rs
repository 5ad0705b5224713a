//! Trainable parameters.

use crate::element::Element;

/// One trainable tensor and its gradient, with the PyTorch layout of its
/// owner (`[c_out, c_in / groups, kh, kw]` for a convolution weight,
/// `[out, in]` for a linear weight, `[out]` for a bias).
#[derive(Debug, Clone, PartialEq)]
pub struct Param<T> {
    /// The values.
    pub value: Vec<T>,
    /// The accumulated gradient (`backward` adds to it; `zero_grad` clears it).
    pub grad: Vec<T>,
    /// The shape.
    pub shape: Vec<usize>,
}

impl<T: Element> Param<T> {
    /// A parameter with the given values and a zero gradient.
    pub fn new(shape: &[usize], value: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), value.len());
        Param {
            grad: vec![T::ZERO; value.len()],
            value,
            shape: shape.to_vec(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True when the parameter holds no element.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(T::ZERO);
    }
}

/// `prefix.name`, or `name` when the prefix is empty: the PyTorch-style full
/// name of a parameter (`0.weight`, `conv1.bias`).
pub fn full_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
