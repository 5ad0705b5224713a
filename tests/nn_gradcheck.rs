//! Finite-difference gradient checks of every layer type and of small models,
//! in f64 (`h = 1e-6`; central differences are then accurate to about 1e-8
//! relative, so analytic gradients must agree to 1e-6).

use ferroconv::Padding;
use ferroconv::nn::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn input(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut r = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| r.random_range(-1.0..1.0)).collect()).unwrap()
}

fn check(name: &str, layer: &mut dyn Layer<f64>, x: &Tensor<f64>) {
    let r = gradcheck(layer, x, 1e-6, 42).unwrap();
    println!("{name}:\n{r}");
    assert!(r.passed(1e-7, 1e-6), "{name} failed gradcheck:\n{r}");
    assert!(!r.tensors.is_empty());
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn conv2d_layers() {
    let mut c = Conv2dBuilder::new(3, 4, 3, 2)
        .stride(2, 1)
        .padding(Padding::explicit(1, 0, 2, 1))
        .build::<f64>(&mut rng())
        .unwrap();
    check("conv", &mut c, &input(&[2, 3, 7, 6], 1));
    let mut c = Conv2dBuilder::new(4, 8, 3, 3)
        .groups(4)
        .dilation(2, 1)
        .padding(Padding::same())
        .bias(false)
        .build::<f64>(&mut rng())
        .unwrap();
    check("depthwise x2", &mut c, &input(&[1, 4, 6, 5], 2));
}

#[test]
fn linear_layer() {
    let mut l = Linear::<f64>::new(5, 3, &mut rng()).unwrap();
    check("linear", &mut l, &input(&[4, 5], 3));
    let mut l = Linear::<f64>::with_init(5, 3, false, Init::XavierNormal, &mut rng()).unwrap();
    check("linear no bias", &mut l, &input(&[2, 5], 4));
}

#[test]
fn activations_and_pools() {
    check("relu", &mut ReLU, &input(&[2, 3, 4, 4], 5));
    check("flatten", &mut Flatten, &input(&[2, 3, 2, 2], 6));
    check("maxpool", &mut MaxPool2d::new(2).unwrap(), &input(&[2, 2, 6, 6], 7));
    check(
        "maxpool padded",
        &mut MaxPool2d::with(3, 3, 2, 2, 1, 1).unwrap(),
        &input(&[1, 2, 7, 7], 8),
    );
    check(
        "avgpool padded",
        &mut AvgPool2d::with(3, 2, 2, 1, 1, 1).unwrap(),
        &input(&[2, 2, 5, 6], 9),
    );
}

#[test]
fn two_conv_model_with_stride_padding_groups() {
    let mut r = rng();
    let mut m = Sequential::<f64>::new()
        .push(
            Conv2dBuilder::new(2, 4, 3, 3)
                .stride(2, 2)
                .padding(Padding::symmetric(1))
                .build(&mut r)
                .unwrap(),
        )
        .push(ReLU)
        .push(
            Conv2dBuilder::new(4, 6, 3, 3)
                .groups(2)
                .padding(Padding::same())
                .build(&mut r)
                .unwrap(),
        )
        .push(AvgPool2d::new(2).unwrap())
        .push(Flatten)
        .push(Linear::new(6 * 2 * 2, 3, &mut r).unwrap());
    check("model", &mut m, &input(&[2, 2, 9, 8], 10));
}

#[test]
fn losses_match_finite_differences() {
    let logits = input(&[4, 5], 11);
    let labels = [0, 4, 2, 2];
    let mut d = Tensor::empty();
    softmax_cross_entropy(&logits, &labels, &mut d).unwrap();
    let h = 1e-6;
    for i in 0..logits.len() {
        let mut p = logits.clone();
        let mut scratch = Tensor::empty();
        p.data_mut()[i] += h;
        let up = softmax_cross_entropy(&p, &labels, &mut scratch).unwrap();
        p.data_mut()[i] -= 2.0 * h;
        let down = softmax_cross_entropy(&p, &labels, &mut scratch).unwrap();
        let num = (up - down) / (2.0 * h);
        assert!(
            (num - d.data()[i]).abs() < 1e-8,
            "CE grad {i}: {num} vs {}",
            d.data()[i]
        );
    }
    let t = input(&[4, 5], 12);
    mse_loss(&logits, &t, &mut d).unwrap();
    for i in 0..logits.len() {
        let mut p = logits.clone();
        let mut scratch = Tensor::empty();
        p.data_mut()[i] += h;
        let up = mse_loss(&p, &t, &mut scratch).unwrap();
        p.data_mut()[i] -= 2.0 * h;
        let down = mse_loss(&p, &t, &mut scratch).unwrap();
        assert!(((up - down) / (2.0 * h) - d.data()[i]).abs() < 1e-8);
    }
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let logits = Tensor::from_vec(&[1, 3], vec![1000.0f32, 0.0, -1000.0]).unwrap();
    let mut d = Tensor::empty();
    let l = softmax_cross_entropy(&logits, &[0], &mut d).unwrap();
    assert_eq!(l, 0.0);
    let l = softmax_cross_entropy(&logits, &[2], &mut d).unwrap();
    assert!((l - 2000.0).abs() < 1e-3 && d.data().iter().all(|v| v.is_finite()));
}
