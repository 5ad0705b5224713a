//! A minimal owned tensor: a flat buffer plus its shape.

use crate::element::Element;
use crate::error::ConvError;

/// A dense row-major tensor (`NCHW` for images, `[n, features]` for vectors).
///
/// Layers write their outputs into tensors they are handed and resize them with
/// [`Tensor::resize`], which reuses the existing allocation: once every buffer
/// of a model has seen the batch shape, a training step allocates nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor<T> {
    data: Vec<T>,
    shape: Vec<usize>,
}

impl<T: Element> Tensor<T> {
    /// An empty tensor of shape `[0]`.
    pub fn empty() -> Self {
        Tensor {
            data: Vec::new(),
            shape: vec![0],
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        let mut t = Self::empty();
        t.resize(shape);
        t.data.fill(T::ZERO);
        t
    }

    /// Wraps `data`; its length must be the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Result<Self, ConvError> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n {
            Some(n) if n == data.len() => Ok(Tensor {
                data,
                shape: shape.to_vec(),
            }),
            Some(n) => Err(ConvError::LengthMismatch {
                what: "tensor data",
                expected: n,
                actual: data.len(),
            }),
            None => Err(ConvError::Overflow { what: "tensor shape" }),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Changes the shape, growing or shrinking the buffer; the allocation is
    /// kept, so resizing to a shape seen before allocates nothing. Element
    /// values after a resize are unspecified: the caller overwrites them.
    ///
    /// # Panics
    /// If the element count overflows `usize` (shapes come from validated
    /// geometries, so this is an internal invariant).
    pub fn resize(&mut self, shape: &[usize]) {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .expect("tensor shape overflows usize");
        self.data.resize(n, T::ZERO);
        self.shape.clear();
        self.shape.extend_from_slice(shape);
    }

    /// Copies `other` into `self` (shape and values), reusing the allocation.
    pub fn assign(&mut self, other: &Tensor<T>) {
        self.resize(other.shape());
        self.data.copy_from_slice(other.data());
    }

    /// The batch size (first dimension).
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
}
