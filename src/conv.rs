//! The public entry points of the optimized passes.
//!
//! Each `*_into` function checks every slice length against the geometry,
//! then runs the optimized kernel on the current rayon pool, writing every
//! element of its output slice and using `ws` for scratch (no allocation once
//! `ws` is sized). The functions without `_into` allocate their results.
//!
//! To choose the thread count, run them inside your own pool:
//! `pool.install(|| conv2d_into(..))`.

use crate::element::Element;
use crate::error::{ConvError, check_len};
use crate::geometry::Conv2dGeometry;
use crate::kernels;
use crate::workspace::Workspace;

/// Forward pass into `y` (`n * c_out * oh * ow` elements):
/// `Y[n][co][oy][ox] = b[co] + sum over ci, ky, kx of W[co][ci][ky][kx] * X[n][g*cig+ci][iy][ix]`
/// (see [`reference::conv2d_forward`](crate::reference::conv2d_forward)).
pub fn conv2d_into<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    ws: &mut Workspace<T>,
) -> Result<(), ConvError> {
    check_len("input", geom.input_len(), x.len())?;
    check_len("weight", geom.weight_len(), w.len())?;
    if let Some(b) = bias {
        check_len("bias", geom.bias_len(), b.len())?;
    }
    check_len("output", geom.output_len(), y.len())?;
    if kernels::direct::eligible(geom) {
        let scratch = ws.scratch_mut(kernels::direct::scratch_len::<T>(geom));
        kernels::direct::forward(geom, x, w, bias, y, scratch);
    } else {
        kernels::forward::forward(geom, x, w, bias, y, ws);
    }
    Ok(())
}

/// Gradient with respect to the input, into `dx` (overwritten), from the
/// output gradient `dy` and the weights
/// (see [`reference::conv2d_input_grad`](crate::reference::conv2d_input_grad)).
pub fn conv2d_input_grad_into<T: Element>(
    geom: &Conv2dGeometry,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    ws: &mut Workspace<T>,
) -> Result<(), ConvError> {
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("weight", geom.weight_len(), w.len())?;
    check_len("input gradient", geom.input_len(), dx.len())?;
    if kernels::direct::eligible(geom) {
        let scratch = ws.scratch_mut(kernels::direct::scratch_len::<T>(geom));
        kernels::direct::input_grad(geom, dy, w, dx, scratch);
    } else {
        kernels::input_grad::input_grad(geom, dy, w, dx, ws);
    }
    Ok(())
}

/// Gradient with respect to the weights, into `dw` (overwritten):
/// `dW[co][ci][ky][kx] = sum over n, oy, ox of dY[n][co][oy][ox] * X[n][g*cig+ci][iy][ix]`
/// (see [`reference::conv2d_weight_grad`](crate::reference::conv2d_weight_grad)).
/// To accumulate over several calls, add the result to your own buffer.
pub fn conv2d_weight_grad_into<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    ws: &mut Workspace<T>,
) -> Result<(), ConvError> {
    check_len("input", geom.input_len(), x.len())?;
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("weight gradient", geom.weight_len(), dw.len())?;
    if kernels::direct::eligible(geom) {
        let scratch = ws.scratch_mut(kernels::direct::scratch_len::<T>(geom));
        kernels::direct::weight_grad(geom, x, dy, dw, scratch);
    } else {
        kernels::weight_grad::weight_grad(geom, x, dy, dw, ws);
    }
    Ok(())
}

/// Gradient with respect to the bias, into `db` (overwritten):
/// `db[co] = sum over n, oy, ox of dY[n][co][oy][ox]`.
pub fn conv2d_bias_grad_into<T: Element>(geom: &Conv2dGeometry, dy: &[T], db: &mut [T]) -> Result<(), ConvError> {
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("bias gradient", geom.bias_len(), db.len())?;
    kernels::weight_grad::bias_grad(geom, dy, db);
    Ok(())
}

/// Forward pass, allocating the output.
pub fn conv2d<T: Element>(geom: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Result<Vec<T>, ConvError> {
    let mut y = vec![T::ZERO; geom.output_len()];
    conv2d_into(geom, x, w, bias, &mut y, &mut Workspace::new())?;
    Ok(y)
}

/// All three gradients of one convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dGrads<T> {
    /// Gradient with respect to the input, `n * c_in * h * w` elements.
    pub dx: Vec<T>,
    /// Gradient with respect to the weights, `c_out * cig * kh * kw` elements.
    pub dw: Vec<T>,
    /// Gradient with respect to the bias, `c_out` elements.
    pub db: Vec<T>,
}

/// Backward pass, allocating all three gradients.
pub fn conv2d_backward<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    dy: &[T],
) -> Result<Conv2dGrads<T>, ConvError> {
    let mut ws = Workspace::new();
    let mut g = Conv2dGrads {
        dx: vec![T::ZERO; geom.input_len()],
        dw: vec![T::ZERO; geom.weight_len()],
        db: vec![T::ZERO; geom.bias_len()],
    };
    conv2d_input_grad_into(geom, dy, w, &mut g.dx, &mut ws)?;
    conv2d_weight_grad_into(geom, x, dy, &mut g.dw, &mut ws)?;
    conv2d_bias_grad_into(geom, dy, &mut g.db)?;
    Ok(g)
}
