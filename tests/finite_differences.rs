//! The reference's gradients checked against central finite differences in
//! f64 on small cases: the reference is the truth, so it is checked on its own.
//!
//! For the scalar loss `L = sum(Y .* R)` with a fixed random `R`, `dL/dY = R`,
//! so `dX`, `dW`, `db` from the reference (fed `dY = R`) must match
//! `(L(p + h) - L(p - h)) / 2h` for every element `p`. The forward pass is
//! linear in each argument, so the central difference has no truncation error;
//! what remains is rounding, about `eps * |L| / h`. With `h = 1e-3` and `|L|`
//! at most a few hundred, that is below 1e-10; we allow 1e-8.

mod common;

use common::*;
use ferroconv::{Conv2dGeometry, Conv2dSpec, Padding, reference};

fn loss(geom: &Conv2dGeometry, x: &[f64], w: &[f64], b: &[f64], r: &[f64]) -> f64 {
    let mut y = vec![0.0; geom.output_len()];
    reference::conv2d_forward(geom, x, w, Some(b), &mut y).unwrap();
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

fn numeric_grad(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    const H: f64 = 1e-3;
    let mut p = v.to_vec();
    (0..v.len())
        .map(|i| {
            p[i] = v[i] + H;
            let up = f(&p);
            p[i] = v[i] - H;
            let down = f(&p);
            p[i] = v[i];
            (up - down) / (2.0 * H)
        })
        .collect()
}

fn check(geom: &Conv2dGeometry, seed: u64) {
    let ctx = describe(geom);
    let mut r = rng(seed);
    let x: Vec<f64> = random_vec(&mut r, geom.input_len());
    let w: Vec<f64> = random_vec(&mut r, geom.weight_len());
    let b: Vec<f64> = random_vec(&mut r, geom.bias_len());
    let dy: Vec<f64> = random_vec(&mut r, geom.output_len());

    let mut dx = vec![f64::NAN; geom.input_len()];
    let mut dw = vec![f64::NAN; geom.weight_len()];
    let mut db = vec![f64::NAN; geom.bias_len()];
    reference::conv2d_input_grad(geom, &dy, &w, &mut dx).unwrap();
    reference::conv2d_weight_grad(geom, &x, &dy, &mut dw).unwrap();
    reference::conv2d_bias_grad(geom, &dy, &mut db).unwrap();

    let ndx = numeric_grad(&x, |p| loss(geom, p, &w, &b, &dy));
    let ndw = numeric_grad(&w, |p| loss(geom, &x, p, &b, &dy));
    let ndb = numeric_grad(&b, |p| loss(geom, &x, &w, p, &dy));
    for (name, a, n) in [("dX", &dx, &ndx), ("dW", &dw, &ndw), ("db", &db, &ndb)] {
        for i in 0..a.len() {
            assert!(
                approx::abs_diff_eq!(a[i], n[i], epsilon = 1e-8),
                "{name}[{i}]: analytic {} vs finite difference {} ({ctx})",
                a[i],
                n[i]
            );
        }
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let s = Conv2dSpec::new;
    let cases = [
        s(2, 3, 6, 5, 4, 3, 2).padding(Padding::explicit(1, 0, 2, 1)),
        s(1, 4, 7, 7, 6, 3, 3).stride(2, 2).padding(Padding::same()).groups(2),
        s(2, 3, 8, 6, 3, 2, 3).dilation(2, 1).stride(1, 2).groups(3),
        s(1, 2, 5, 5, 4, 5, 5).padding(Padding::symmetric(1)).groups(2),
        s(3, 2, 4, 6, 2, 1, 1),
    ];
    for (i, spec) in cases.into_iter().enumerate() {
        check(&spec.build().unwrap(), 500 + i as u64);
    }
    for seed in 0..20 {
        let g = random_geometry(&mut rng(77_000 + seed));
        if g.input_len() + g.weight_len() <= 600 {
            check(&g, seed);
        }
    }
}
