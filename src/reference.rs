//! The naive reference: plain nested loops, written to be read.
//!
//! This module is the truth every optimized path is tested against. It uses
//! only the geometry and the error type, never the optimized kernels.
//!
//! Index names, used identically in the formulas and the code:
//! `n` image, `g` group, `co` output channel, `ci` input channel within the
//! group, `cig = c_in / groups`, `cog = c_out / groups`, `(oy, ox)` output pixel,
//! `(ky, kx)` kernel tap, `(iy, ix)` input pixel, with
//! `iy = oy*sh + ky*dh - pad_top`, `ix = ox*sw + kx*dw - pad_left`.
//! An input pixel outside `0..h` x `0..w` reads zero (it is padding) and takes
//! no gradient.

use crate::element::Element;
use crate::error::{ConvError, check_len};
use crate::geometry::Conv2dGeometry;

/// Input pixel `(iy, ix)` read by output pixel `(oy, ox)` through tap
/// `(ky, kx)`, or `None` when it falls into the padding.
fn input_pixel(geom: &Conv2dGeometry, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let (sh, sw) = geom.stride();
    let (dh, dw) = geom.dilation();
    let (pad_top, _, pad_left, _) = geom.padding();
    let iy = (oy * sh + ky * dh) as isize - pad_top as isize;
    let ix = (ox * sw + kx * dw) as isize - pad_left as isize;
    if iy < 0 || ix < 0 || iy >= geom.h() as isize || ix >= geom.w() as isize {
        None
    } else {
        Some((iy as usize, ix as usize))
    }
}

/// Forward pass:
///
/// `Y[n][co][oy][ox] = b[co] + sum over ci, ky, kx of
///  W[co][ci][ky][kx] * X[n][g*cig+ci][oy*sh+ky*dh-pad_top][ox*sw+kx*dw-pad_left]`
///
/// with `g = co / cog` and `b[co] = 0` when `bias` is `None`.
pub fn conv2d_forward<T: Element>(
    geom: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) -> Result<(), ConvError> {
    check_len("input", geom.input_len(), x.len())?;
    check_len("weight", geom.weight_len(), w.len())?;
    check_len("output", geom.output_len(), y.len())?;
    if let Some(b) = bias {
        check_len("bias", geom.bias_len(), b.len())?;
    }
    let (c_in, h, wd, c_out) = (geom.c_in(), geom.h(), geom.w(), geom.c_out());
    let (kh, kw, oh, ow, cig, cog) = (geom.kh(), geom.kw(), geom.oh(), geom.ow(), geom.cig(), geom.cog());
    for n in 0..geom.n() {
        for co in 0..c_out {
            let g = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(T::ZERO, |b| b[co]);
                    for ci in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                if let Some((iy, ix)) = input_pixel(geom, oy, ox, ky, kx) {
                                    let xv = x[((n * c_in + g * cig + ci) * h + iy) * wd + ix];
                                    let wv = w[((co * cig + ci) * kh + ky) * kw + kx];
                                    acc += wv * xv;
                                }
                            }
                        }
                    }
                    y[((n * c_out + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    Ok(())
}

/// Gradient with respect to the input (the forward pass transposed):
///
/// `dX[n][g*cig+ci][iy][ix] = sum over co in group g, ky, kx, and every (oy, ox)
///  with oy*sh+ky*dh-pad_top = iy and ox*sw+kx*dw-pad_left = ix, of
///  W[co][ci][ky][kx] * dY[n][co][oy][ox]`.
///
/// Written as the scatter it is: every output delta is spread back over the
/// input pixels its kernel window read.
pub fn conv2d_input_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], w: &[T], dx: &mut [T]) -> Result<(), ConvError> {
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("weight", geom.weight_len(), w.len())?;
    check_len("input gradient", geom.input_len(), dx.len())?;
    let (c_in, h, wd, c_out) = (geom.c_in(), geom.h(), geom.w(), geom.c_out());
    let (kh, kw, oh, ow, cig, cog) = (geom.kh(), geom.kw(), geom.oh(), geom.ow(), geom.cig(), geom.cog());
    dx.fill(T::ZERO);
    for n in 0..geom.n() {
        for co in 0..c_out {
            let g = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let d = dy[((n * c_out + co) * oh + oy) * ow + ox];
                    for ci in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                if let Some((iy, ix)) = input_pixel(geom, oy, ox, ky, kx) {
                                    let wv = w[((co * cig + ci) * kh + ky) * kw + kx];
                                    dx[((n * c_in + g * cig + ci) * h + iy) * wd + ix] += wv * d;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Gradient with respect to the weights: how the kernel weights get updated.
///
/// `dW[co][ci][ky][kx] = sum over n, oy, ox of
///  dY[n][co][oy][ox] * X[n][g*cig+ci][oy*sh+ky*dh-pad_top][ox*sw+kx*dw-pad_left]`
///
/// (zero outside the input): for every output position, the input patch the
/// kernel saw there, times that position's output delta, summed.
pub fn conv2d_weight_grad<T: Element>(geom: &Conv2dGeometry, x: &[T], dy: &[T], dw: &mut [T]) -> Result<(), ConvError> {
    check_len("input", geom.input_len(), x.len())?;
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("weight gradient", geom.weight_len(), dw.len())?;
    let (c_in, h, wd, c_out) = (geom.c_in(), geom.h(), geom.w(), geom.c_out());
    let (kh, kw, oh, ow, cig, cog) = (geom.kh(), geom.kw(), geom.oh(), geom.ow(), geom.cig(), geom.cog());
    for co in 0..c_out {
        let g = co / cog;
        for ci in 0..cig {
            for ky in 0..kh {
                for kx in 0..kw {
                    let mut acc = T::ZERO;
                    for n in 0..geom.n() {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                if let Some((iy, ix)) = input_pixel(geom, oy, ox, ky, kx) {
                                    let d = dy[((n * c_out + co) * oh + oy) * ow + ox];
                                    let xv = x[((n * c_in + g * cig + ci) * h + iy) * wd + ix];
                                    acc += d * xv;
                                }
                            }
                        }
                    }
                    dw[((co * cig + ci) * kh + ky) * kw + kx] = acc;
                }
            }
        }
    }
    Ok(())
}

/// Gradient with respect to the bias: `db[co] = sum over n, oy, ox of dY[n][co][oy][ox]`.
pub fn conv2d_bias_grad<T: Element>(geom: &Conv2dGeometry, dy: &[T], db: &mut [T]) -> Result<(), ConvError> {
    check_len("output gradient", geom.output_len(), dy.len())?;
    check_len("bias gradient", geom.bias_len(), db.len())?;
    let (c_out, ohw) = (geom.c_out(), geom.oh() * geom.ow());
    for co in 0..c_out {
        let mut acc = T::ZERO;
        for n in 0..geom.n() {
            for p in 0..ohw {
                acc += dy[(n * c_out + co) * ohw + p];
            }
        }
        db[co] = acc;
    }
    Ok(())
}
