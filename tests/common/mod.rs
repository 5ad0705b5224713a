//! Shared helpers for the integration tests: random data and geometries, and
//! the error bound every optimized result is checked against.
#![allow(dead_code)]

use ferroconv::{Conv2dGeometry, Conv2dSpec, Element, Padding, reference};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How many random cases a test runs: `full` natively, `miri` under Miri
/// (`scripts/miri.sh`), which interprets every operation and runs about a
/// million times slower.
pub const fn cases(full: u64, miri: u64) -> u64 {
    if cfg!(miri) { miri } else { full }
}

/// Forward multiply-adds (`n * c_out * oh * ow * K`) above which Miri skips a
/// hand-picked geometry: its four passes and f64 reference would take
/// several minutes there. Natively every geometry runs.
pub const MIRI_MAX_MACS: usize = 150_000;

/// Whether this run checks `geom`: always natively; under Miri only where
/// its forward has at most [`MIRI_MAX_MACS`] multiply-adds.
pub fn runs_here(geom: &Conv2dGeometry) -> bool {
    !cfg!(miri) || geom.n() * geom.c_out() * geom.oh() * geom.ow() * geom.k_len() <= MIRI_MAX_MACS
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1), never all zero.
pub fn random_vec<T: Element>(rng: &mut StdRng, len: usize) -> Vec<T> {
    (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect()
}

pub fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

pub fn abs64(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// A random valid geometry with small sizes, covering stride 1-3, dilation
/// 1-3, asymmetric padding, groups (plain, multiplier 2, depthwise), 1x1,
/// batch 1 and odd batches, and non-square images and kernels. About one in
/// eight makes the dilated kernel exactly as large as the padded input.
pub fn random_geometry(rng: &mut StdRng) -> Conv2dGeometry {
    loop {
        let groups_kind = rng.random_range(0..6);
        let (c_in, c_out, groups) = match groups_kind {
            0 => {
                // depthwise, multiplier 1
                let c = rng.random_range(1..9);
                (c, c, c)
            }
            1 => {
                // depthwise, channel multiplier 2
                let c = rng.random_range(1..7);
                (c, 2 * c, c)
            }
            2 => {
                let g = rng.random_range(2..4);
                (g * rng.random_range(1..4), g * rng.random_range(1..4), g)
            }
            _ => (rng.random_range(1..9), rng.random_range(1..9), 1),
        };
        let n = [1, 1, 2, 3, 5][rng.random_range(0..5)];
        let pointwise = rng.random_range(0..8) == 0;
        let (kh, kw) = if pointwise {
            (1, 1)
        } else {
            (rng.random_range(1..6), rng.random_range(1..6))
        };
        let stride = if pointwise && rng.random_bool(0.5) {
            (1, 1)
        } else {
            (rng.random_range(1..4), rng.random_range(1..4))
        };
        let dilation = (rng.random_range(1..4), rng.random_range(1..4));
        let padding = if pointwise && rng.random_bool(0.5) {
            Padding::Valid
        } else {
            match rng.random_range(0..4) {
                0 => Padding::Valid,
                1 => Padding::Same,
                _ => Padding::explicit(
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                ),
            }
        };
        let (h, w) = if rng.random_range(0..8) == 0 {
            // kernel exactly as large as the padded input
            let (t, b, l, r) = match padding {
                Padding::Explicit {
                    top,
                    bottom,
                    left,
                    right,
                } => (top, bottom, left, right),
                _ => (0, 0, 0, 0),
            };
            let dkh = (kh - 1) * dilation.0 + 1;
            let dkw = (kw - 1) * dilation.1 + 1;
            if dkh <= t + b || dkw <= l + r {
                continue;
            }
            (dkh - t - b, dkw - l - r)
        } else {
            (rng.random_range(1..14), rng.random_range(1..14))
        };
        let spec = Conv2dSpec::new(n, c_in, h, w, c_out, kh, kw)
            .stride(stride.0, stride.1)
            .dilation(dilation.0, dilation.1)
            .padding(padding)
            .groups(groups);
        if let Ok(g) = spec.build() {
            return g;
        }
    }
}

/// Hand-picked edge shapes: tails around the 16-wide micro-kernel and the
/// 64-pixel tile, images cut into several tiles, kernel = input, pointwise, depthwise, the suite's small rows.
pub fn edge_geometries() -> Vec<Conv2dGeometry> {
    let s = Conv2dSpec::new;
    [
        s(1, 1, 1, 1, 1, 1, 1),
        s(1, 1, 5, 5, 1, 5, 5),
        s(2, 3, 7, 9, 5, 7, 9),
        s(1, 17, 15, 16, 17, 3, 3).padding(Padding::same()),
        s(3, 15, 9, 9, 16, 1, 1),
        s(2, 16, 11, 13, 15, 1, 1).stride(2, 2),
        s(1, 8, 17, 17, 8, 3, 3).padding(Padding::symmetric(1)).groups(8),
        s(2, 6, 12, 10, 12, 3, 3)
            .padding(Padding::explicit(0, 2, 1, 0))
            .groups(6),
        s(4, 1, 28, 28, 20, 5, 5),
        s(2, 20, 12, 12, 50, 5, 5),
        s(2, 3, 30, 30, 8, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
        s(1, 32, 9, 9, 32, 3, 3).padding(Padding::symmetric(2)).dilation(2, 2),
        s(1, 64, 14, 14, 64, 3, 3).padding(Padding::symmetric(1)),
        // Implicit-GEMM forward (stride 1, >= 32 output channels per group):
        // channel counts off the 16-wide panels, asymmetric padding, groups,
        // a 1x3 kernel on a wide image, an image narrower than a 6-pixel block.
        s(3, 7, 10, 23, 40, 3, 5).padding(Padding::explicit(2, 0, 1, 3)),
        s(2, 64, 9, 20, 64, 3, 3)
            .padding(Padding::same())
            .dilation(1, 2)
            .groups(2),
        s(1, 4, 3, 4, 33, 2, 2).padding(Padding::same()),
        s(2, 16, 20, 37, 48, 1, 3).padding(Padding::explicit(0, 0, 1, 1)),
        // Output channels off the 8 x 8 store blocks in both implicit passes
        // (forward 34, input gradient 35) on rows of 19 pixels.
        s(1, 35, 5, 19, 34, 3, 3).padding(Padding::same()),
        // Depthwise rows wide enough for the 32-pixel register blocks (and the
        // shifted last block), channel multiplier 2, dilation with asymmetric
        // padding, and padding wider than the kernel (no flipped form).
        s(2, 4, 9, 45, 8, 3, 3).padding(Padding::same()).groups(4),
        s(1, 3, 7, 70, 3, 3, 5)
            .padding(Padding::explicit(1, 2, 3, 1))
            .dilation(2, 2)
            .groups(3),
        s(1, 2, 6, 40, 2, 3, 3).padding(Padding::symmetric(3)).groups(2),
        s(3, 8, 13, 11, 8, 3, 2)
            .stride(3, 2)
            .dilation(2, 3)
            .padding(Padding::same()),
        // The direct forward for few input channels: a tall image cut into
        // two slab bands, stride 2 along the row only (two column phases),
        // output channels off the 3-channel blocks, 35-pixel rows (a 24-pixel
        // block then an 11-pixel one); stride 3 with asymmetric padding.
        s(1, 2, 300, 70, 5, 3, 4)
            .stride(1, 2)
            .padding(Padding::explicit(2, 1, 0, 3)),
        s(2, 3, 23, 29, 7, 5, 3)
            .stride(3, 3)
            .padding(Padding::explicit(1, 2, 2, 0)),
        // Strided layers with 32+ output channels per group (the packed
        // im2col panels and GEMM): stride 2, stride (2, 3) with asymmetric
        // padding and 5x5, stride (3, 1), groups with 'same' padding, a 1x1
        // stride-2 layer, and a tall image.
        s(2, 16, 23, 30, 40, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
        s(1, 8, 17, 40, 33, 5, 5)
            .stride(2, 3)
            .padding(Padding::explicit(2, 1, 2, 2)),
        s(2, 5, 20, 26, 48, 4, 3)
            .stride(3, 1)
            .padding(Padding::explicit(0, 2, 1, 1)),
        s(2, 16, 15, 30, 64, 3, 3)
            .stride(2, 2)
            .padding(Padding::same())
            .groups(2),
        s(2, 24, 12, 17, 32, 1, 1).stride(2, 2),
        // The strided weight gradient read in place: 1152 x 128 sums (three
        // tap blocks, two in one task on two threads), border pixels on
        // every side (asymmetric padding); stride 2 with dilation 2.
        s(2, 128, 13, 12, 128, 3, 3)
            .stride(2, 2)
            .padding(Padding::explicit(1, 2, 0, 1)),
        s(1, 16, 21, 19, 32, 3, 3)
            .stride(2, 2)
            .dilation(2, 2)
            .padding(Padding::explicit(2, 2, 2, 1)),
        s(1, 8, 150, 20, 32, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
        // col2im at column stride 2 with runs of 8 and 16 targets per row
        // (17 output columns, the first tap column skips one), which once
        // dropped a run's last 8 adds.
        s(1, 2, 33, 33, 3, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
        // Weight-gradient chunks that cut images (batches smaller than the
        // 16 work units, at least MIN_CHUNK_PIXELS per chunk): a 1x1 layer
        // whose 9 chunks are runs of about 4 (image, pixel tile) pairs
        // across image boundaries, and a stem-like stride-2 layer (the
        // implicit weight gradient on phase planes) of two bands per image.
        s(2, 256, 100, 100, 16, 1, 1),
        s(2, 3, 160, 160, 16, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
        // The dot-product weight gradient (K <= 32 on AVX-512F) with its
        // tap rows copied run by run (stride 1, no padding): 2 x 3 x 4 taps
        // dilated (2, 2) on 26 x 15 outputs, so that the 24 KiB column tiles
        // (192 and 198 pixels) start and end inside output rows; two groups
        // of 5 output channels (a partial 4-channel block).
        s(3, 4, 30, 21, 10, 3, 4).dilation(2, 2).groups(2),
        // The dot-product weight gradient reading padded copies of the input
        // (stride 1, output rows of 16+ pixels: a 16-pixel vector spans at
        // most two rows): LeNet's first layer on two images, and LeNet-5's
        // with 'same' padding; rows of exactly 16 (no vector crosses a row)
        // with 27 taps over 3 channels (a last tap block of 2) and 7 output
        // channels, one image cut into chunks that start inside rows;
        // 31-pixel rows, dilation (2, 3), two groups of 5 output channels;
        // 17-pixel rows (nearly every vector crosses one) with a 2 x 5
        // kernel; asymmetric padding on 3 channels, one image in chunks.
        s(2, 1, 28, 28, 20, 5, 5),
        s(3, 1, 28, 28, 6, 5, 5).padding(Padding::same()),
        s(1, 3, 130, 18, 7, 3, 3),
        s(3, 2, 12, 40, 10, 3, 4).dilation(2, 3).groups(2),
        s(2, 1, 9, 21, 6, 2, 5),
        s(1, 3, 90, 16, 10, 3, 3).padding(Padding::explicit(1, 0, 2, 1)),
        // The same through phase planes at strides above 1 (batches of 16+):
        // a MobileNet-like stem (3 channels, 3x3, stride 2, 'same', 18-pixel
        // rows); stride (3, 2) with dilation (2, 1) and asymmetric padding
        // (one input column short of the last phase row); stride (1, 2) on
        // 1-channel images whose width is odd. One image at stride 2 keeps
        // the column tiles.
        s(16, 3, 33, 35, 8, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
        s(17, 1, 40, 60, 5, 3, 5)
            .stride(3, 2)
            .dilation(2, 1)
            .padding(Padding::explicit(1, 2, 0, 3)),
        s(16, 1, 30, 41, 12, 4, 3)
            .stride(1, 2)
            .padding(Padding::explicit(0, 1, 1, 0)),
        s(1, 3, 40, 36, 8, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
    ]
    .into_iter()
    .map(|spec| spec.build().expect("edge geometry is valid"))
    .collect()
}

/// Checks `got` against the f64 reference `want` element by element:
/// `|got - want| <= 2 * len * eps * mag + tiny`, where `mag` is the same
/// reduction computed on absolute values (the classic bound for a sum of
/// `len` products is `len * eps * sum |a_i b_i|`, factor 2 for the f32
/// rounding of the stored result). Also fails on any non-finite element, so a
/// NaN-poisoned element left unwritten fails.
pub fn assert_close<T: Element>(what: &str, ctx: &str, got: &[T], want: &[f64], mag: &[f64], len: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length ({ctx})");
    let eps = T::EPSILON.to_f64();
    for i in 0..got.len() {
        let g = got[i].to_f64();
        assert!(g.is_finite(), "{what}[{i}] = {g} is not finite ({ctx})");
        let tol = 2.0 * (len as f64 + 1.0) * eps * mag[i] + 1e-300;
        assert!(
            approx::abs_diff_eq!(g, want[i], epsilon = tol),
            "{what}[{i}]: got {g}, reference {}, |diff| {:e} > tol {:e} (K-length {len}) ({ctx})",
            want[i],
            (g - want[i]).abs(),
            tol
        );
    }
}

/// The f64 reference results for all passes plus their magnitudes.
pub struct Expected {
    pub y: Vec<f64>,
    pub y_mag: Vec<f64>,
    pub dx: Vec<f64>,
    pub dx_mag: Vec<f64>,
    pub dw: Vec<f64>,
    pub dw_mag: Vec<f64>,
    pub db: Vec<f64>,
    pub db_mag: Vec<f64>,
}

pub fn expected(geom: &Conv2dGeometry, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> Expected {
    let (ax, aw, ab, ady) = (abs64(x), abs64(w), abs64(b), abs64(dy));
    let mut e = Expected {
        y: vec![0.0; geom.output_len()],
        y_mag: vec![0.0; geom.output_len()],
        dx: vec![0.0; geom.input_len()],
        dx_mag: vec![0.0; geom.input_len()],
        dw: vec![0.0; geom.weight_len()],
        dw_mag: vec![0.0; geom.weight_len()],
        db: vec![0.0; geom.bias_len()],
        db_mag: vec![0.0; geom.bias_len()],
    };
    reference::conv2d_forward(geom, x, w, Some(b), &mut e.y).unwrap();
    reference::conv2d_forward(geom, &ax, &aw, Some(&ab), &mut e.y_mag).unwrap();
    reference::conv2d_input_grad(geom, dy, w, &mut e.dx).unwrap();
    reference::conv2d_input_grad(geom, &ady, &aw, &mut e.dx_mag).unwrap();
    reference::conv2d_weight_grad(geom, x, dy, &mut e.dw).unwrap();
    reference::conv2d_weight_grad(geom, &ax, &ady, &mut e.dw_mag).unwrap();
    reference::conv2d_bias_grad(geom, dy, &mut e.db).unwrap();
    reference::conv2d_bias_grad(geom, &ady, &mut e.db_mag).unwrap();
    e
}

pub fn describe(geom: &Conv2dGeometry) -> String {
    format!(
        "n={} c_in={} h={} w={} c_out={} k={}x{} stride={:?} pad(t,b,l,r)={:?} dilation={:?} groups={} -> {}x{}",
        geom.n(),
        geom.c_in(),
        geom.h(),
        geom.w(),
        geom.c_out(),
        geom.kh(),
        geom.kw(),
        geom.stride(),
        geom.padding(),
        geom.dilation(),
        geom.groups(),
        geom.oh(),
        geom.ow()
    )
}

/// Each element's magnitude replaced by the largest in its Winograd tile of
/// `t x t` outputs (planes of `h x w`): with dilation `(dh, dw)` the tile of
/// pixel `(y, x)` is the `t x t` block of its phase sub-lattice, pixels
/// `(y % dh + dh * (t * (y / dh / t) + a), x % dw + dw * (t * (x / dw / t) + b))`.
pub fn tile_max(mag: &[f64], h: usize, w: usize, (dh, dw): (usize, usize), t: usize) -> Vec<f64> {
    let mut out = vec![0.0; mag.len()];
    for (pi, plane) in mag.chunks(h * w).enumerate() {
        for y in 0..h {
            for x in 0..w {
                let (y0, x0) = (y % dh + dh * (t * (y / dh / t)), x % dw + dw * (t * (x / dw / t)));
                let mut m: f64 = 0.0;
                for a in 0..t {
                    for b in 0..t {
                        let (yy, xx) = (y0 + dh * a, x0 + dw * b);
                        if yy < h && xx < w {
                            m = m.max(plane[yy * w + xx]);
                        }
                    }
                }
                out[pi * h * w + y * w + x] = m;
            }
        }
    }
    out
}
