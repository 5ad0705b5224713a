//! `Conv2d`: the convolution layer, on the optimized kernels.

use rand::rngs::StdRng;

use crate::conv::{conv2d_bias_grad_into, conv2d_input_grad_into, conv2d_into, conv2d_weight_grad_into};
use crate::element::Element;
use crate::error::ConvError;
use crate::geometry::{Algorithm, Conv2dGeometry, Conv2dSpec, Padding};
use crate::nn::init::{Init, default_bias};
use crate::nn::layer::{Layer, check_dy, shape_error};
use crate::nn::param::Param;
use crate::nn::tensor::Tensor;
use crate::workspace::Workspace;

/// A 2-D convolution layer (PyTorch's `nn.Conv2d`): weight
/// `[c_out, c_in / groups, kh, kw]`, optional bias `[c_out]`, input
/// `[n, c_in, h, w]`.
///
/// Backward adds `dW[co][ci][ky][kx] = sum over n, oy, ox of dY[n][co][oy][ox] *
/// X[n][g*cig+ci][oy*sh+ky*dh-pad_top][ox*sw+kx*dw-pad_left]` to the weight's
/// gradient: every output position contributes its input patch times its
/// output delta.
pub struct Conv2d<T> {
    c_in: usize,
    c_out: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
    groups: usize,
    algorithm: Algorithm,
    weight: Param<T>,
    bias: Option<Param<T>>,
    geom: Option<Conv2dGeometry>,
    ws: Workspace<T>,
    dw: Vec<T>,
    db: Vec<T>,
}

/// Builder for [`Conv2d`] (PyTorch's defaults: stride 1, no padding,
/// dilation 1, one group, a bias, PyTorch's default initialization).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dBuilder {
    c_in: usize,
    c_out: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
    groups: usize,
    algorithm: Algorithm,
    bias: bool,
    init: Init,
}

impl Conv2dBuilder {
    /// Starts a `c_in -> c_out` convolution with a `kh x kw` kernel
    /// (same as [`Conv2d::builder`]; the element type comes from `build`).
    pub fn new(c_in: usize, c_out: usize, kh: usize, kw: usize) -> Self {
        Conv2dBuilder {
            c_in,
            c_out,
            kernel: (kh, kw),
            stride: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            groups: 1,
            algorithm: Algorithm::Auto,
            bias: true,
            init: Init::PyTorchDefault,
        }
    }

    /// Sets the algorithm preference ([`Algorithm::Auto`] by default;
    /// [`Algorithm::Gemm`] forbids Winograd, [`Algorithm::Winograd`] and
    /// [`Algorithm::Winograd4x4`] require F(2x2, 3x3) or F(4x4, 3x3) and make
    /// `build` fail for a layer they cannot run).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }
    /// Sets the number of groups (`c_in` for depthwise).
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// With or without a bias.
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }
    /// Sets the weight initialization.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Validates the configuration and draws the parameters from `rng`.
    pub fn build<T: Element>(self, rng: &mut StdRng) -> Result<Conv2d<T>, ConvError> {
        let (kh, kw) = self.kernel;
        // Validate everything that does not depend on the input size with a
        // stand-in input just large enough for the kernel.
        let dk = |k: usize, d: usize| k.saturating_sub(1).saturating_mul(d).saturating_add(1);
        Conv2dSpec::new(
            1,
            self.c_in,
            dk(kh, self.dilation.0),
            dk(kw, self.dilation.1),
            self.c_out,
            kh,
            kw,
        )
        .stride(self.stride.0, self.stride.1)
        .padding(self.padding)
        .dilation(self.dilation.0, self.dilation.1)
        .groups(self.groups)
        .algorithm(self.algorithm)
        .build()?;
        let cig = self.c_in / self.groups;
        let fan_in = cig * kh * kw;
        let fan_out = self.c_out / self.groups * kh * kw;
        let wlen = self.c_out * fan_in;
        let weight = Param::new(&[self.c_out, cig, kh, kw], self.init.sample(wlen, fan_in, fan_out, rng));
        let bias = self
            .bias
            .then(|| Param::new(&[self.c_out], default_bias(self.c_out, fan_in, rng)));
        Ok(Conv2d {
            c_in: self.c_in,
            c_out: self.c_out,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
            algorithm: self.algorithm,
            weight,
            bias,
            geom: None,
            ws: Workspace::new(),
            dw: vec![T::ZERO; wlen],
            db: vec![T::ZERO; self.c_out],
        })
    }
}

impl<T: Element> Conv2d<T> {
    /// Starts a `c_in -> c_out` convolution with a `kh x kw` kernel.
    pub fn builder(c_in: usize, c_out: usize, kh: usize, kw: usize) -> Conv2dBuilder {
        Conv2dBuilder::new(c_in, c_out, kh, kw)
    }

    /// The weight.
    pub fn weight(&self) -> &Param<T> {
        &self.weight
    }

    /// The weight, mutable.
    pub fn weight_mut(&mut self) -> &mut Param<T> {
        &mut self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    /// The geometry for an input of shape `[n, c_in, h, w]`.
    pub fn geometry(&self, input_shape: &[usize]) -> Result<Conv2dGeometry, ConvError> {
        let &[n, c, h, w] = input_shape else {
            return Err(shape_error("Conv2d", format!("[n, {}, h, w]", self.c_in), input_shape));
        };
        if c != self.c_in {
            return Err(shape_error("Conv2d", format!("[n, {}, h, w]", self.c_in), input_shape));
        }
        Conv2dSpec::new(n, c, h, w, self.c_out, self.kernel.0, self.kernel.1)
            .stride(self.stride.0, self.stride.1)
            .padding(self.padding)
            .dilation(self.dilation.0, self.dilation.1)
            .groups(self.groups)
            .algorithm(self.algorithm)
            .build()
    }

    fn geom_for(&mut self, shape: &[usize]) -> Result<Conv2dGeometry, ConvError> {
        if let Some(g) = self.geom
            && [g.n(), g.c_in(), g.h(), g.w()] == shape
        {
            return Ok(g);
        }
        let g = self.geometry(shape)?;
        self.geom = Some(g);
        Ok(g)
    }
}

impl<T: Element> Layer<T> for Conv2d<T> {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn describe(&self) -> String {
        format!(
            "Conv2d({}, {}, kernel={:?}, stride={:?}, padding={:?}, dilation={:?}, groups={}, bias={})",
            self.c_in,
            self.c_out,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias.is_some()
        )
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let g = self.geom_for(x.shape())?;
        y.resize(&[g.n(), g.c_out(), g.oh(), g.ow()]);
        let bias = self.bias.as_ref().map(|b| b.value.as_slice());
        conv2d_into(&g, x.data(), &self.weight.value, bias, y.data_mut(), &mut self.ws)
    }

    fn backward(
        &mut self,
        x: &Tensor<T>,
        y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        let g = self.geom_for(x.shape())?;
        check_dy("Conv2d", y, dy)?;
        if let Some(dx) = dx {
            dx.resize(x.shape());
            conv2d_input_grad_into(&g, dy.data(), &self.weight.value, dx.data_mut(), &mut self.ws)?;
        }
        conv2d_weight_grad_into(&g, x.data(), dy.data(), &mut self.dw, &mut self.ws)?;
        for (acc, d) in self.weight.grad.iter_mut().zip(&self.dw) {
            *acc += *d;
        }
        if let Some(b) = &mut self.bias {
            conv2d_bias_grad_into(&g, dy.data(), &mut self.db)?;
            for (acc, d) in b.grad.iter_mut().zip(&self.db) {
                *acc += *d;
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
