//! Max and average pooling over `[n, c, h, w]` inputs.
//!
//! Output size, as PyTorch computes it (`ceil_mode = False`):
//! `oh = (h + 2 * pad - kh) / sh + 1`, and the same for `ow`.

use rayon::prelude::*;

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::{Layer, check_dy, shape_error};
use crate::nn::tensor::Tensor;

#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
}

impl PoolGeom {
    fn new(kind: &str, kernel: (usize, usize), stride: (usize, usize), pad: (usize, usize)) -> Result<Self, ConvError> {
        if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(ConvError::InvalidConfig {
                what: format!("{kind}: kernel {kernel:?} and stride {stride:?} must be at least 1"),
            });
        }
        if 2 * pad.0 > kernel.0 || 2 * pad.1 > kernel.1 {
            return Err(ConvError::InvalidConfig {
                what: format!("{kind}: padding {pad:?} must be at most half the kernel {kernel:?}"),
            });
        }
        Ok(PoolGeom { kernel, stride, pad })
    }

    /// `(n, c, h, w, oh, ow)` for input shape `s`.
    fn dims(&self, kind: &str, s: &[usize]) -> Result<(usize, usize, usize, usize, usize, usize), ConvError> {
        let &[n, c, h, w] = s else {
            return Err(shape_error(kind, "[n, c, h, w]".into(), s));
        };
        let (ph, pw) = (h + 2 * self.pad.0, w + 2 * self.pad.1);
        if ph < self.kernel.0 || pw < self.kernel.1 || n * c * h * w == 0 {
            return Err(shape_error(
                kind,
                format!(
                    "a non-empty [n, c, h, w] at least as large as the kernel {:?}",
                    self.kernel
                ),
                s,
            ));
        }
        Ok((
            n,
            c,
            h,
            w,
            (ph - self.kernel.0) / self.stride.0 + 1,
            (pw - self.kernel.1) / self.stride.1 + 1,
        ))
    }

    /// Input rows (or columns) `lo..hi` of the window starting at output `o`.
    #[inline]
    fn window(o: usize, s: usize, k: usize, pad: usize, len: usize) -> (usize, usize) {
        let start = (o * s) as isize - pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(len);
        (lo, hi)
    }
}

/// The common 2x2, stride 2, unpadded window, unrolled: the first maximum of
/// each window (a NaN wins), with its index (offset by `base`) in `ap`.
#[inline]
fn max_pool_2x2<T: Element>(x: &[T], w: usize, base: usize, oh: usize, ow: usize, yp: &mut [T], ap: &mut [usize]) {
    for oy in 0..oh {
        let r0 = 2 * oy * w;
        let (row0, row1) = (&x[r0..r0 + w], &x[r0 + w..r0 + 2 * w]);
        let (yr, ar) = (&mut yp[oy * ow..(oy + 1) * ow], &mut ap[oy * ow..(oy + 1) * ow]);
        for ox in 0..ow {
            let c = 2 * ox;
            let cand = [
                (row0[c], r0 + c),
                (row0[c + 1], r0 + c + 1),
                (row1[c], r0 + w + c),
                (row1[c + 1], r0 + w + c + 1),
            ];
            let mut best = cand[0];
            for &(v, i) in &cand[1..] {
                if v > best.0 || (v.is_nan() && !best.0.is_nan()) {
                    best = (v, i);
                }
            }
            yr[ox] = best.0;
            ar[ox] = base + best.1;
        }
    }
}

/// Max pooling (PyTorch's `nn.MaxPool2d`, padding with `-inf`); backward
/// routes each output gradient to the input element that was the maximum
/// (the first one on ties).
pub struct MaxPool2d {
    g: PoolGeom,
    argmax: Vec<usize>,
}

impl MaxPool2d {
    /// A `k x k` pool with stride `k` and no padding.
    pub fn new(k: usize) -> Result<Self, ConvError> {
        Self::with(k, k, k, k, 0, 0)
    }

    /// Kernel `kh x kw`, stride `(sh, sw)`, padding `(ph, pw)` on both sides.
    pub fn with(kh: usize, kw: usize, sh: usize, sw: usize, ph: usize, pw: usize) -> Result<Self, ConvError> {
        Ok(MaxPool2d {
            g: PoolGeom::new("MaxPool2d", (kh, kw), (sh, sw), (ph, pw))?,
            argmax: Vec::new(),
        })
    }
}

impl<T: Element> Layer<T> for MaxPool2d {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }

    fn describe(&self) -> String {
        format!(
            "MaxPool2d(kernel={:?}, stride={:?}, padding={:?})",
            self.g.kernel, self.g.stride, self.g.pad
        )
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let (n, c, h, w, oh, ow) = self.g.dims("MaxPool2d", x.shape())?;
        y.resize(&[n, c, oh, ow]);
        self.argmax.resize(n * c * oh * ow, 0);
        let g = self.g;
        let xd = x.data();
        y.data_mut()
            .par_chunks_mut(oh * ow)
            .zip(self.argmax.par_chunks_mut(oh * ow))
            .enumerate()
            .for_each(|(plane, (yp, ap))| {
                let base = plane * h * w;
                if g.kernel == (2, 2) && g.stride == (2, 2) && g.pad == (0, 0) {
                    max_pool_2x2(&xd[base..base + h * w], w, base, oh, ow, yp, ap);
                    return;
                }
                for oy in 0..oh {
                    let (y0, y1) = PoolGeom::window(oy, g.stride.0, g.kernel.0, g.pad.0, h);
                    for ox in 0..ow {
                        let (x0, x1) = PoolGeom::window(ox, g.stride.1, g.kernel.1, g.pad.1, w);
                        let mut best = base + y0 * w + x0;
                        let mut bv = xd[best];
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let i = base + iy * w + ix;
                                // NaN propagates as in PyTorch: a NaN wins.
                                if xd[i] > bv || (xd[i].is_nan() && !bv.is_nan()) {
                                    bv = xd[i];
                                    best = i;
                                }
                            }
                        }
                        yp[oy * ow + ox] = bv;
                        ap[oy * ow + ox] = best;
                    }
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
        check_dy("MaxPool2d", y, dy)?;
        let (_, _, h, w, oh, ow) = self.g.dims("MaxPool2d", x.shape())?;
        if self.argmax.len() != dy.len() {
            return Err(shape_error(
                "MaxPool2d",
                "backward after a forward of the same input".into(),
                x.shape(),
            ));
        }
        if let Some(dx) = dx {
            dx.resize(x.shape());
            let am = &self.argmax;
            dx.data_mut()
                .par_chunks_mut(h * w)
                .zip(dy.data().par_chunks(oh * ow))
                .enumerate()
                .for_each(|(plane, (dxp, dyp))| {
                    dxp.fill(T::ZERO);
                    let base = plane * h * w;
                    for (i, &d) in dyp.iter().enumerate() {
                        dxp[am[plane * oh * ow + i] - base] += d;
                    }
                });
        }
        Ok(())
    }
}

/// Average pooling (PyTorch's `nn.AvgPool2d` with `count_include_pad=True`:
/// every window is divided by `kh * kw`, padding counted as zeros).
pub struct AvgPool2d {
    g: PoolGeom,
}

impl AvgPool2d {
    /// A `k x k` pool with stride `k` and no padding.
    pub fn new(k: usize) -> Result<Self, ConvError> {
        Self::with(k, k, k, k, 0, 0)
    }

    /// Kernel `kh x kw`, stride `(sh, sw)`, padding `(ph, pw)` on both sides.
    pub fn with(kh: usize, kw: usize, sh: usize, sw: usize, ph: usize, pw: usize) -> Result<Self, ConvError> {
        Ok(AvgPool2d {
            g: PoolGeom::new("AvgPool2d", (kh, kw), (sh, sw), (ph, pw))?,
        })
    }
}

impl<T: Element> Layer<T> for AvgPool2d {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }

    fn describe(&self) -> String {
        format!(
            "AvgPool2d(kernel={:?}, stride={:?}, padding={:?})",
            self.g.kernel, self.g.stride, self.g.pad
        )
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let (n, c, h, w, oh, ow) = self.g.dims("AvgPool2d", x.shape())?;
        y.resize(&[n, c, oh, ow]);
        let g = self.g;
        let inv = T::ONE / T::from_f64((g.kernel.0 * g.kernel.1) as f64);
        y.data_mut()
            .par_chunks_mut(oh * ow)
            .zip(x.data().par_chunks(h * w))
            .for_each(|(yp, xp)| {
                for oy in 0..oh {
                    let (y0, y1) = PoolGeom::window(oy, g.stride.0, g.kernel.0, g.pad.0, h);
                    for ox in 0..ow {
                        let (x0, x1) = PoolGeom::window(ox, g.stride.1, g.kernel.1, g.pad.1, w);
                        let mut s = T::ZERO;
                        for row in xp[y0 * w..y1 * w].chunks_exact(w) {
                            for &v in &row[x0..x1] {
                                s += v;
                            }
                        }
                        yp[oy * ow + ox] = s * inv;
                    }
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
        check_dy("AvgPool2d", y, dy)?;
        let (_, _, h, w, oh, ow) = self.g.dims("AvgPool2d", x.shape())?;
        let g = self.g;
        let inv = T::ONE / T::from_f64((g.kernel.0 * g.kernel.1) as f64);
        if let Some(dx) = dx {
            dx.resize(x.shape());
            dx.data_mut()
                .par_chunks_mut(h * w)
                .zip(dy.data().par_chunks(oh * ow))
                .for_each(|(dxp, dyp)| {
                    dxp.fill(T::ZERO);
                    for oy in 0..oh {
                        let (y0, y1) = PoolGeom::window(oy, g.stride.0, g.kernel.0, g.pad.0, h);
                        for ox in 0..ow {
                            let (x0, x1) = PoolGeom::window(ox, g.stride.1, g.kernel.1, g.pad.1, w);
                            let d = dyp[oy * ow + ox] * inv;
                            for row in dxp[y0 * w..y1 * w].chunks_exact_mut(w) {
                                for v in &mut row[x0..x1] {
                                    *v += d;
                                }
                            }
                        }
                    }
                });
        }
        Ok(())
    }
}
