//! # ferroconv
//!
//! Fast, checkable 2-D convolution for training CNNs on the CPU.
//!
//! - [`reference`](mod@reference): plain nested loops for every pass, the truth the
//!   optimized code is tested against, with each formula in its doc comment.
//! - [`conv2d_into`], [`conv2d_input_grad_into`], [`conv2d_weight_grad_into`],
//!   [`conv2d_bias_grad_into`]: the optimized passes (im2col tiles + GEMM,
//!   parallel with rayon), writing into caller slices with a reusable
//!   [`Workspace`]; [`conv2d`] and [`conv2d_backward`] allocate their results.
//! - [`Conv2dSpec`] / [`Conv2dGeometry`]: a validated description of one
//!   convolution (NCHW input, OIHW weights, stride, asymmetric padding,
//!   dilation, groups); every invalid input is a [`ConvError`].
//! - [`nn`]: layers, losses, initialization, optimizers, gradient clipping and
//!   checking, divergence diagnostics and safetensors checkpoints for training.
//! - [`data`]: MNIST loading for the examples.
//!
//! How do the kernel weights get updated? The weight gradient is the sum,
//! over every output position, of the input patch the kernel saw there times
//! that position's output delta:
//! `dW[co][ci][ky][kx] = sum over n, oy, ox of dY[n][co][oy][ox] * X[n][g*cig+ci][oy*sh+ky*dh-pad_top][ox*sw+kx*dw-pad_left]`.
//!
//! ```
//! use ferroconv::{Conv2dSpec, Padding, conv2d, conv2d_backward, reference};
//! let geom = Conv2dSpec::new(2, 3, 8, 8, 4, 3, 3).padding(Padding::same()).build()?;
//! let x: Vec<f32> = (0..geom.input_len()).map(|i| (i % 7) as f32 - 3.0).collect();
//! let w: Vec<f32> = (0..geom.weight_len()).map(|i| (i % 5) as f32 - 2.0).collect();
//! let y = conv2d(&geom, &x, &w, None)?;
//! let mut y_ref = vec![0.0; geom.output_len()];
//! reference::conv2d_forward(&geom, &x, &w, None, &mut y_ref)?;
//! assert_eq!(y, y_ref); // small integers: exact
//! let grads = conv2d_backward(&geom, &x, &w, &y)?;
//! assert_eq!(grads.dw.len(), 4 * 3 * 3 * 3);
//! # Ok::<(), ferroconv::ConvError>(())
//! ```
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod conv;
pub mod data;
mod element;
mod error;
mod geometry;
mod kernels;
pub mod nn;
pub mod reference;
mod workspace;

pub use conv::{
    Conv2dGrads, conv2d, conv2d_backward, conv2d_bias_grad_into, conv2d_input_grad_into, conv2d_into,
    conv2d_weight_grad_into,
};
pub use element::Element;
pub use error::ConvError;
pub use geometry::{Algorithm, Conv2dGeometry, Conv2dSpec, Padding};
pub use workspace::Workspace;

/// The README's example, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
