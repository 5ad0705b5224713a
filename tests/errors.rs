//! Every invalid input returns its typed error, and nothing panics.

use ferroconv::{
    Conv2dSpec, ConvError, Padding, Workspace, conv2d, conv2d_backward, conv2d_bias_grad_into, conv2d_input_grad_into,
    conv2d_into, conv2d_weight_grad_into, reference,
};

fn err(spec: Conv2dSpec) -> ConvError {
    spec.build().expect_err("must be rejected")
}

#[test]
fn zero_sizes() {
    let s = || Conv2dSpec::new(2, 3, 8, 8, 4, 3, 3);
    let cases = [
        (Conv2dSpec { n: 0, ..s() }, "batch size n"),
        (Conv2dSpec { c_in: 0, ..s() }, "c_in"),
        (Conv2dSpec { h: 0, ..s() }, "input height"),
        (Conv2dSpec { w: 0, ..s() }, "input width"),
        (Conv2dSpec { c_out: 0, ..s() }, "c_out"),
        (Conv2dSpec { kh: 0, ..s() }, "kernel height"),
        (Conv2dSpec { kw: 0, ..s() }, "kernel width"),
        (s().groups(0), "groups"),
    ];
    for (spec, what) in cases {
        assert_eq!(err(spec), ConvError::ZeroSize { what });
    }
}

#[test]
fn zero_stride_and_dilation() {
    let s = Conv2dSpec::new(1, 1, 5, 5, 1, 3, 3);
    assert_eq!(err(s.stride(0, 1)), ConvError::ZeroStride { sh: 0, sw: 1 });
    assert_eq!(err(s.stride(2, 0)), ConvError::ZeroStride { sh: 2, sw: 0 });
    assert_eq!(err(s.dilation(1, 0)), ConvError::ZeroDilation { dh: 1, dw: 0 });
    assert_eq!(err(s.dilation(0, 0)), ConvError::ZeroDilation { dh: 0, dw: 0 });
    // 'same' padding with a zero stride must not divide by zero
    assert_eq!(
        err(s.stride(0, 0).padding(Padding::same())),
        ConvError::ZeroStride { sh: 0, sw: 0 }
    );
}

#[test]
fn groups_must_divide_channels() {
    let s = Conv2dSpec::new(1, 6, 5, 5, 4, 3, 3);
    assert_eq!(
        err(s.groups(4)),
        ConvError::GroupsDoNotDivide {
            groups: 4,
            c_in: 6,
            c_out: 4
        }
    );
    assert_eq!(
        err(s.groups(3)),
        ConvError::GroupsDoNotDivide {
            groups: 3,
            c_in: 6,
            c_out: 4
        }
    );
    assert!(s.groups(2).build().is_ok());
}

#[test]
fn kernel_larger_than_padded_input() {
    let s = Conv2dSpec::new(1, 1, 4, 6, 1, 5, 3);
    assert_eq!(
        err(s),
        ConvError::KernelTooLarge {
            axis: "height",
            dilated_kernel: 5,
            padded_input: 4
        }
    );
    assert!(s.padding(Padding::explicit(1, 0, 0, 0)).build().is_ok());
    assert_eq!(
        err(Conv2dSpec::new(1, 1, 9, 4, 1, 3, 3).dilation(1, 2)),
        ConvError::KernelTooLarge {
            axis: "width",
            dilated_kernel: 5,
            padded_input: 4
        }
    );
}

#[test]
fn overflowing_sizes() {
    let big = usize::MAX / 2;
    let cases = [
        Conv2dSpec::new(big, 4, 4, 4, 1, 1, 1),
        Conv2dSpec::new(1, 1, 1 << 40, 1 << 30, 1, 1, 1),
        Conv2dSpec::new(1, 1, 4, 4, 1, 1, 1).padding(Padding::explicit(usize::MAX, 1, 0, 0)),
        Conv2dSpec::new(1, 1, 4, 4, 1, usize::MAX, 1).dilation(3, 1),
        Conv2dSpec::new(1, 1, 4, 4, 1, 3, 3).dilation(usize::MAX, 1),
        Conv2dSpec::new(1, 1, 4, 4, 1, 3, 3)
            .dilation(usize::MAX / 2, 1)
            .padding(Padding::same()),
        Conv2dSpec::new(1 << 20, 1 << 20, 1 << 10, 1, 1 << 20, 1, 1),
        Conv2dSpec::new(1, 1 << 31, 1, 1, 1 << 31, 1, 1),
    ];
    for spec in cases {
        match spec.build() {
            Err(ConvError::Overflow { .. }) | Err(ConvError::KernelTooLarge { .. }) => {}
            other => panic!("{spec:?} gave {other:?}"),
        }
    }
}

#[test]
fn same_padding_matches_the_same_upper_convention() {
    // stride 1, odd kernel: symmetric
    let g = Conv2dSpec::new(1, 1, 7, 7, 1, 3, 3)
        .padding(Padding::same())
        .build()
        .unwrap();
    assert_eq!((g.padding(), g.oh(), g.ow()), ((1, 1, 1, 1), 7, 7));
    // even kernel: the extra pixel goes bottom/right
    let g = Conv2dSpec::new(1, 1, 7, 7, 1, 4, 2)
        .padding(Padding::same())
        .build()
        .unwrap();
    assert_eq!((g.padding(), g.oh(), g.ow()), ((1, 2, 0, 1), 7, 7));
    // stride 2: out = ceil(in / 2), total = (out-1)*s + k - in
    let g = Conv2dSpec::new(1, 1, 8, 7, 1, 3, 3)
        .stride(2, 2)
        .padding(Padding::same())
        .build()
        .unwrap();
    assert_eq!((g.padding(), g.oh(), g.ow()), ((0, 1, 1, 1), 4, 4));
    // dilation widens the kernel
    let g = Conv2dSpec::new(1, 1, 9, 9, 1, 3, 3)
        .dilation(2, 2)
        .padding(Padding::same())
        .build()
        .unwrap();
    assert_eq!((g.padding(), g.oh(), g.ow()), ((2, 2, 2, 2), 9, 9));
    let g = Conv2dSpec::new(1, 1, 5, 5, 1, 3, 3).build().unwrap();
    assert_eq!((g.oh(), g.ow()), (3, 3));
}

#[test]
fn mismatched_lengths_are_errors_in_every_entry_point() {
    let g = Conv2dSpec::new(2, 3, 6, 6, 4, 3, 3).build().unwrap();
    let x = vec![0.5f32; g.input_len()];
    let w = vec![0.5f32; g.weight_len()];
    let b = vec![0.5f32; g.bias_len()];
    let mut y = vec![0f32; g.output_len()];
    let mut dx = vec![0f32; g.input_len()];
    let mut dw = vec![0f32; g.weight_len()];
    let db = vec![0f32; g.bias_len()];
    let mut ws = Workspace::new();
    let short = |v: &[f32]| v[..v.len() - 1].to_vec();
    let mm = |what: &'static str, expected: usize| ConvError::LengthMismatch {
        what,
        expected,
        actual: expected - 1,
    };

    assert_eq!(
        conv2d_into(&g, &short(&x), &w, None, &mut y, &mut ws),
        Err(mm("input", g.input_len()))
    );
    assert_eq!(
        conv2d_into(&g, &x, &short(&w), None, &mut y, &mut ws),
        Err(mm("weight", g.weight_len()))
    );
    assert_eq!(
        conv2d_into(&g, &x, &w, Some(&short(&b)), &mut y, &mut ws),
        Err(mm("bias", 4))
    );
    assert_eq!(
        conv2d_into(&g, &x, &w, None, &mut short(&y), &mut ws),
        Err(mm("output", g.output_len()))
    );
    assert_eq!(
        conv2d_input_grad_into(&g, &short(&y), &w, &mut dx, &mut ws),
        Err(mm("output gradient", g.output_len()))
    );
    assert_eq!(
        conv2d_input_grad_into(&g, &y, &w, &mut short(&dx), &mut ws),
        Err(mm("input gradient", g.input_len()))
    );
    assert_eq!(
        conv2d_weight_grad_into(&g, &x, &y, &mut short(&dw), &mut ws),
        Err(mm("weight gradient", g.weight_len()))
    );
    assert_eq!(
        conv2d_bias_grad_into(&g, &y, &mut short(&db)),
        Err(mm("bias gradient", 4))
    );
    assert!(conv2d(&g, &x, &short(&w), None).is_err());
    assert!(conv2d_backward(&g, &x, &w, &short(&y)).is_err());
    assert_eq!(
        reference::conv2d_forward(&g, &x, &w, None, &mut short(&y)),
        Err(mm("output", g.output_len()))
    );
    assert!(reference::conv2d_input_grad(&g, &y, &short(&w), &mut dx).is_err());
    assert!(reference::conv2d_weight_grad(&g, &short(&x), &y, &mut dw).is_err());
    assert!(reference::conv2d_bias_grad(&g, &y, &mut short(&db)).is_err());
    // nothing was half-written on error
    assert!(y.iter().all(|&v| v == 0.0) && dx.iter().all(|&v| v == 0.0));
}

#[test]
fn errors_display_the_offending_values() {
    let e = err(Conv2dSpec::new(1, 6, 5, 5, 4, 3, 3).groups(4));
    assert_eq!(e.to_string(), "groups = 4 must divide both c_in = 6 and c_out = 4");
    let e = err(Conv2dSpec::new(1, 1, 4, 6, 1, 5, 3));
    assert_eq!(
        e.to_string(),
        "dilated kernel height 5 is larger than the padded input height 4"
    );
    let e: Box<dyn std::error::Error> = Box::new(ConvError::Overflow { what: "x" });
    assert!(e.to_string().contains("overflow"));
}

/// Random specs, valid or not, never panic: they build or return an error, and
/// valid ones run every pass.
#[test]
fn random_specs_never_panic() {
    use rand::{RngExt, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(5);
    let mut ok = 0;
    for _ in 0..3000 {
        let mut d = || [0usize, 1, 2, 3, 5, 7][r.random_range(0..6)];
        let spec = Conv2dSpec::new(d(), d(), d(), d(), d(), d(), d())
            .stride(d(), d())
            .dilation(d(), d())
            .groups([0usize, 1, 1, 1, 1, 2, 3, 5][d()])
            .padding(Padding::explicit(d(), d(), d(), d()));
        if let Ok(g) = spec.build() {
            ok += 1;
            let x = vec![1.0f64; g.input_len()];
            let w = vec![1.0f64; g.weight_len()];
            let y = conv2d(&g, &x, &w, None).unwrap();
            conv2d_backward(&g, &x, &w, &y).unwrap();
        }
    }
    assert!(ok > 50, "only {ok} valid specs");
}
