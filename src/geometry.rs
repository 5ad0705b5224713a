//! The validated shape of one 2-D convolution.
//!
//! Layouts (row-major, last index fastest):
//! - input `X[n][c_in][h][w]` (NCHW),
//! - weight `W[c_out][c_in / groups][kh][kw]` (OIHW, as PyTorch),
//! - output `Y[n][c_out][oh][ow]`, bias `b[c_out]`.
//!
//! Output channel `co` belongs to group `g = co / cog` and sees input channels
//! `g * cig .. (g + 1) * cig`, where `cig = c_in / groups` and
//! `cog = c_out / groups`. Output pixel `(oy, ox)` reads input pixel
//! `(oy * sh + ky * dh - pad_top, ox * sw + kx * dw - pad_left)` for kernel tap
//! `(ky, kx)`; taps outside the input read zero. The output size is
//! `oh = (h + pad_top + pad_bottom - ((kh - 1) * dh + 1)) / sh + 1`, and the same
//! for `ow`.

use crate::error::ConvError;

/// Which algorithm the optimized passes may use (`Conv2dSpec::algorithm`).
///
/// Every algorithm computes the same convolution; they differ in speed and
/// in rounding. The GEMM lowering (im2col, implicit GEMM, the direct
/// depthwise kernels) computes each output as one plain dot product over the
/// reduction length `L`, with the error bound `2 (L + 1) eps sum |terms|`
/// per element. Winograd F(2x2, 3x3) computes a 2x2 output tile from a 4x4
/// input tile with 16 multiplications instead of 36 (2.25x fewer), after
/// exact-in-structure linear transforms with coefficients 0, ±1 and ±1/2;
/// its rounding error is a small constant factor larger (measured and stated
/// in `docs/design.md`, tested in `tests/winograd.rs`). A dilated 3x3 layer
/// runs as one undilated Winograd convolution per dilation phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// ferroconv picks per pass, shape and element type, among the paths
    /// that measured fastest (`kernels/winograd.rs` has the numbers), for
    /// f32 3x3 stride-1 layers (any dilation, one group, padding at most 2 x
    /// dilation):
    /// - every pass: Winograd F(4x4, 3x3) with at least 32 input and output
    ///   channels and 64 tiles of 4x4 outputs, unless its tiles cover more
    ///   than 9/8 of the outputs F(2x2, 3x3)'s do (an output side of 14 or
    ///   7);
    /// - else forward pass and input gradient: F(2x2, 3x3) with at least 64
    ///   channels and 48 tiles of 2x2 outputs; weight gradient: F(2x2, 3x3)
    ///   with at least 64 channels (128 when dilated) and 64 tiles of 2x2.
    ///
    /// Some limits depend on the CPU, where measured so: with AVX-512F at
    /// full width (a Xeon), F(4x4, 3x3) needs 64 channels for the weight
    /// gradient, and for the other passes where the implicit GEMM forward
    /// takes the layer, and the 4x4 tiles may cover up to 11/8; where
    /// AVX-512F runs in 256-bit halves (AMD Zen 4), the 11/8 holds and the
    /// weight gradient's F(2x2, 3x3) starts at 48 tiles.
    ///
    /// For f32 3x3 stride-2 layers (dilation 1, one group) where AVX-512F
    /// runs, the forward pass by a Winograd decomposition into the input's
    /// four phases (F(2, 2) per axis, 25 multiplications per 2x2 output
    /// tile instead of 36), with at least 16 input and output channels and
    /// 192 tiles of 2x2 outputs covering at most 9/8 of the outputs; its
    /// rounding is F(2x2, 3x3)'s (`tests/winograd_s2.rs`). The gradients of
    /// these layers run the GEMM paths.
    ///
    /// The GEMM lowering everywhere else, and always for f64. F(4x4, 3x3)
    /// rounds more than the other paths (see [`Algorithm::Winograd4x4`]);
    /// pick [`Algorithm::Gemm`] or [`Algorithm::Winograd`] to rule it out.
    #[default]
    Auto,
    /// Never Winograd: every output element is one dot product (the
    /// tightest error bound, and the same rounding as the GEMM paths of
    /// other libraries).
    Gemm,
    /// Winograd F(2x2, 3x3) for the forward pass and both gradients, for f32
    /// and f64 on every instruction set. [`Conv2dSpec::build`] returns
    /// [`ConvError::UnsupportedAlgorithm`] unless the kernel is 3x3 with
    /// stride 1, one group and padding at most 2 x the dilation on every
    /// side (any dilation).
    Winograd,
    /// Winograd F(4x4, 3x3) for the forward pass and both gradients (a 4x4
    /// output tile from a 6x6 input tile: 36 multiplications instead of 144,
    /// 4x fewer), for f32 and f64 on every instruction set; the same
    /// geometries as [`Algorithm::Winograd`]. Its transforms have entries up
    /// to 8 and the inexact 1/6 and 1/24, so its rounding error is larger
    /// than F(2x2, 3x3)'s (measured and stated in `docs/design.md`).
    Winograd4x4,
}

/// How to pad the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: only positions where the whole (dilated) kernel fits.
    Valid,
    /// Pad so that `oh = ceil(h / sh)` and `ow = ceil(w / sw)`. When the total
    /// padding of an axis is odd, the extra pixel goes to the bottom / right
    /// (the `SAME_UPPER` convention of ONNX and TensorFlow).
    Same,
    /// Explicit, possibly asymmetric, padding in pixels.
    Explicit {
        /// Rows of zeros above the input.
        top: usize,
        /// Rows of zeros below the input.
        bottom: usize,
        /// Columns of zeros left of the input.
        left: usize,
        /// Columns of zeros right of the input.
        right: usize,
    },
}

impl Padding {
    /// No padding (same as [`Padding::Valid`]).
    pub fn valid() -> Self {
        Padding::Valid
    }

    /// `SAME_UPPER` padding (same as [`Padding::Same`]).
    pub fn same() -> Self {
        Padding::Same
    }

    /// The same padding `p` on all four sides (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// `ph` rows above and below, `pw` columns left and right
    /// (PyTorch's `padding=(ph, pw)`).
    pub fn symmetric2(ph: usize, pw: usize) -> Self {
        Padding::Explicit {
            top: ph,
            bottom: ph,
            left: pw,
            right: pw,
        }
    }

    /// Explicit asymmetric padding.
    pub fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        }
    }
}

/// An unvalidated description of a convolution; [`Conv2dSpec::build`] checks
/// it and returns a [`Conv2dGeometry`].
///
/// ```
/// use ferroconv::{Conv2dSpec, Padding};
/// let g = Conv2dSpec::new(8, 64, 56, 56, 128, 3, 3)
///     .stride(2, 2)
///     .padding(Padding::same())
///     .build()
///     .unwrap();
/// assert_eq!((g.oh(), g.ow()), (28, 28));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Padding.
    pub padding: Padding,
    /// Dilation `(dh, dw)`.
    pub dilation: (usize, usize),
    /// Number of groups (`c_in` for depthwise).
    pub groups: usize,
    /// Which algorithm the optimized passes may use.
    pub algorithm: Algorithm,
}

impl Conv2dSpec {
    /// A convolution with stride 1, no padding, dilation 1 and one group.
    pub fn new(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, kh: usize, kw: usize) -> Self {
        Conv2dSpec {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            groups: 1,
            algorithm: Algorithm::Auto,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the algorithm preference ([`Algorithm::Auto`] unless set).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Sets the batch size (handy when one layer sees several batch sizes).
    pub fn batch(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Validates the description; see [`ConvError`] for what is rejected.
    pub fn build(self) -> Result<Conv2dGeometry, ConvError> {
        Conv2dGeometry::new(self)
    }
}

/// A validated convolution geometry. All its element counts fit in `isize`
/// (for any element type up to 8 bytes), so kernels can index freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pad_top: usize,
    pad_bottom: usize,
    pad_left: usize,
    pad_right: usize,
    dh: usize,
    dw: usize,
    groups: usize,
    algorithm: Algorithm,
    oh: usize,
    ow: usize,
}

fn mul(a: usize, b: usize, what: &'static str) -> Result<usize, ConvError> {
    a.checked_mul(b).ok_or(ConvError::Overflow { what })
}

fn add(a: usize, b: usize, what: &'static str) -> Result<usize, ConvError> {
    a.checked_add(b).ok_or(ConvError::Overflow { what })
}

/// Largest element count we accept: `count * 8` bytes must fit in `isize`.
const MAX_ELEMENTS: usize = (isize::MAX as usize) / 8;

fn count(dims: &[usize], what: &'static str) -> Result<usize, ConvError> {
    let mut c = 1usize;
    for &d in dims {
        c = mul(c, d, what)?;
    }
    if c > MAX_ELEMENTS {
        return Err(ConvError::Overflow { what });
    }
    Ok(c)
}

/// `SAME_UPPER` padding of one axis: returns `(before, after)`.
fn same_padding(input: usize, k: usize, s: usize, d: usize, axis: &'static str) -> Result<(usize, usize), ConvError> {
    let dk = add(mul(k - 1, d, axis)?, 1, axis)?;
    let out = input.div_ceil(s);
    let needed = add(mul(out - 1, s, axis)?, dk, axis)?;
    let total = needed.saturating_sub(input);
    Ok((total / 2, total - total / 2))
}

impl Conv2dGeometry {
    /// Validates `spec`. Equivalent to [`Conv2dSpec::build`].
    pub fn new(spec: Conv2dSpec) -> Result<Self, ConvError> {
        let Conv2dSpec {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: (sh, sw),
            padding,
            dilation: (dh, dw),
            groups,
            algorithm,
        } = spec;
        for (v, what) in [
            (n, "batch size n"),
            (c_in, "c_in"),
            (h, "input height"),
            (w, "input width"),
            (c_out, "c_out"),
            (kh, "kernel height"),
            (kw, "kernel width"),
            (groups, "groups"),
        ] {
            if v == 0 {
                return Err(ConvError::ZeroSize { what });
            }
        }
        if sh == 0 || sw == 0 {
            return Err(ConvError::ZeroStride { sh, sw });
        }
        if dh == 0 || dw == 0 {
            return Err(ConvError::ZeroDilation { dh, dw });
        }
        if c_in % groups != 0 || c_out % groups != 0 {
            return Err(ConvError::GroupsDoNotDivide { groups, c_in, c_out });
        }
        let (pad_top, pad_bottom, pad_left, pad_right) = match padding {
            Padding::Valid => (0, 0, 0, 0),
            Padding::Same => {
                let (t, b) = same_padding(h, kh, sh, dh, "same padding (height)")?;
                let (l, r) = same_padding(w, kw, sw, dw, "same padding (width)")?;
                (t, b, l, r)
            }
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => (top, bottom, left, right),
        };
        let out_size = |input: usize, before: usize, after: usize, k: usize, d: usize, s: usize, axis: &'static str| {
            let padded = add(add(input, before, "padded input")?, after, "padded input")?;
            let dk = add(mul(k - 1, d, "dilated kernel")?, 1, "dilated kernel")?;
            if dk > padded {
                return Err(ConvError::KernelTooLarge {
                    axis,
                    dilated_kernel: dk,
                    padded_input: padded,
                });
            }
            // Pixel offsets are computed in isize: keep every coordinate addressable.
            if padded > MAX_ELEMENTS || dk > MAX_ELEMENTS {
                return Err(ConvError::Overflow { what: "padded input" });
            }
            Ok((padded - dk) / s + 1)
        };
        let oh = out_size(h, pad_top, pad_bottom, kh, dh, sh, "height")?;
        let ow = out_size(w, pad_left, pad_right, kw, dw, sw, "width")?;
        let g = Conv2dGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            sh,
            sw,
            pad_top,
            pad_bottom,
            pad_left,
            pad_right,
            dh,
            dw,
            groups,
            algorithm,
            oh,
            ow,
        };
        if matches!(algorithm, Algorithm::Winograd | Algorithm::Winograd4x4)
            && let Some(reason) = g.winograd_unsupported()
        {
            return Err(ConvError::UnsupportedAlgorithm { algorithm, reason });
        }
        count(&[n, c_in, h, w], "input element count")?;
        count(&[c_out, c_in / groups, kh, kw], "weight element count")?;
        count(&[n, c_out, oh, ow], "output element count")?;
        // The lowered column matrix of one image and group, and the FLOP count.
        count(&[c_in / groups, kh, kw, oh, ow], "im2col matrix element count")?;
        count(&[2, n, c_out, c_in / groups, kh, kw, oh, ow], "FLOP count")?;
        Ok(g)
    }

    /// Batch size.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.c_in
    }
    /// Input height.
    pub fn h(&self) -> usize {
        self.h
    }
    /// Input width.
    pub fn w(&self) -> usize {
        self.w
    }
    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }
    /// Kernel height.
    pub fn kh(&self) -> usize {
        self.kh
    }
    /// Kernel width.
    pub fn kw(&self) -> usize {
        self.kw
    }
    /// Stride `(sh, sw)`.
    pub fn stride(&self) -> (usize, usize) {
        (self.sh, self.sw)
    }
    /// Dilation `(dh, dw)`.
    pub fn dilation(&self) -> (usize, usize) {
        (self.dh, self.dw)
    }
    /// Resolved padding `(top, bottom, left, right)`.
    pub fn padding(&self) -> (usize, usize, usize, usize) {
        (self.pad_top, self.pad_bottom, self.pad_left, self.pad_right)
    }
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }
    /// Output height.
    pub fn oh(&self) -> usize {
        self.oh
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        self.ow
    }
    /// Input channels per group, `cig = c_in / groups`.
    pub fn cig(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels per group, `cog = c_out / groups`.
    pub fn cog(&self) -> usize {
        self.c_out / self.groups
    }
    /// GEMM reduction length of the forward pass, `K = cig * kh * kw`.
    pub fn k_len(&self) -> usize {
        self.cig() * self.kh * self.kw
    }
    /// Elements of the input `X`: `n * c_in * h * w`.
    pub fn input_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    /// Elements of the weight `W`: `c_out * cig * kh * kw`.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.k_len()
    }
    /// Elements of the output `Y`: `n * c_out * oh * ow`.
    pub fn output_len(&self) -> usize {
        self.n * self.c_out * self.oh * self.ow
    }
    /// Elements of the bias: `c_out`.
    pub fn bias_len(&self) -> usize {
        self.c_out
    }
    /// Floating-point operations of one pass (forward, input gradient or
    /// weight gradient): `2 * n * c_out * K * oh * ow`.
    pub fn flops(&self) -> u64 {
        2 * (self.n * self.c_out * self.k_len() * self.oh * self.ow) as u64
    }
    /// True for 1x1 kernels with stride 1 and no padding: the input image
    /// already is the column matrix, so no im2col is needed.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pad_top == 0
            && self.pad_bottom == 0
            && self.pad_left == 0
            && self.pad_right == 0
    }
    /// The same geometry with another batch size.
    pub fn with_batch(&self, n: usize) -> Result<Self, ConvError> {
        Conv2dGeometry::new(self.spec().batch(n))
    }
    /// The description this geometry was built from, with padding made explicit.
    pub fn spec(&self) -> Conv2dSpec {
        Conv2dSpec {
            n: self.n,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.c_out,
            kh: self.kh,
            kw: self.kw,
            stride: (self.sh, self.sw),
            padding: Padding::explicit(self.pad_top, self.pad_bottom, self.pad_left, self.pad_right),
            dilation: (self.dh, self.dw),
            groups: self.groups,
            algorithm: self.algorithm,
        }
    }
    /// The algorithm preference the geometry was built with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The same geometry with another algorithm preference (an `Err` where
    /// the algorithm cannot run this geometry).
    pub fn with_algorithm(&self, algorithm: Algorithm) -> Result<Self, ConvError> {
        Conv2dGeometry::new(self.spec().algorithm(algorithm))
    }
    /// Why Winograd (F(2x2, 3x3) or F(4x4, 3x3)) cannot run this geometry,
    /// or `None` if it can.
    pub(crate) fn winograd_unsupported(&self) -> Option<&'static str> {
        if (self.kh, self.kw) != (3, 3) {
            Some("Winograd needs a 3x3 kernel")
        } else if (self.sh, self.sw) != (1, 1) {
            Some("Winograd needs stride 1")
        } else if self.groups != 1 {
            Some("Winograd needs groups = 1")
        } else if self.pad_top.max(self.pad_bottom) > 2 * self.dh || self.pad_left.max(self.pad_right) > 2 * self.dw {
            Some("Winograd needs padding of at most 2 x dilation on every side")
        } else {
            None
        }
    }
}
