//! Once a `Workspace` has seen a geometry, the f32 passes allocate nothing:
//! after a warm-up, three more steps of every pass inside the same pool must
//! not touch the heap (counted by a global allocator in this test binary, which holds this
//! one test so that nothing else allocates meanwhile).
//!
//! This holds on ferroconv's own kernels (AVX2 + FMA or AVX-512F). Under
//! `FERROCONV_ISA=generic`, or without those instructions, the passes run on
//! matrixmultiply, which allocates its packing buffers on every call; the
//! test then checks nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ferroconv::*;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn own_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::env::var("FERROCONV_ISA").as_deref() != Ok("generic")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn steady_state_steps_of_every_f32_pass_allocate_nothing() {
    if !own_kernels() {
        return;
    }
    // The counter is live.
    let start = ALLOCATIONS.load(Ordering::SeqCst);
    let probe: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > start && probe.capacity() >= 16);
    // Pools made once and kept: a dropped pool's threads exit in the
    // background, and their exit allocates while the next measurement runs.
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|t| (t, rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()))
        .collect();
    let s = Conv2dSpec::new;
    let geometries = [
        // Implicit GEMM (forward, input and weight gradients).
        s(2, 64, 12, 12, 64, 3, 3)
            .padding(Padding::symmetric(1))
            .algorithm(Algorithm::Gemm),
        // Winograd, all three passes (several weight-gradient chunks).
        s(2, 128, 12, 12, 128, 3, 3)
            .padding(Padding::symmetric(1))
            .algorithm(Algorithm::Winograd),
        s(3, 64, 40, 40, 64, 3, 3)
            .padding(Padding::symmetric(1))
            .algorithm(Algorithm::Winograd),
        // Winograd F(4x4, 3x3) forward and input gradient (Auto's choice
        // here: 32 channels, 4 x 25 tiles of 4x4), GEMM weight gradient.
        s(4, 32, 20, 20, 32, 3, 3).padding(Padding::symmetric(1)),
        // Strided: im2col panels, own GEMM + col2im, column-tile sums.
        s(2, 32, 15, 15, 48, 3, 3).stride(2, 2).padding(Padding::same()),
        // Strided 3x3 with 196 tiles of 2x2: the stride-2 Winograd forward
        // where AVX-512F runs.
        s(4, 32, 28, 28, 32, 3, 3).stride(2, 2).padding(Padding::symmetric(1)),
        // Pointwise.
        s(2, 24, 10, 10, 40, 1, 1),
        // Depthwise (direct loops).
        s(2, 16, 40, 40, 16, 3, 3).padding(Padding::symmetric(1)).groups(16),
        // LeNet's first layer: tiny c_in, 20 output channels (the direct
        // small-channel forward, the dot-product weight gradient reading
        // the input in place).
        s(4, 1, 28, 28, 20, 5, 5),
        // A stem-like layer: 3 channels, 7x7, stride 2 (phase-split slab).
        s(2, 3, 30, 30, 8, 7, 7).stride(2, 2).padding(Padding::symmetric(3)),
        // Batch 1 on 14x14 with Auto: Winograd forward and input gradient
        // (49 tiles), GEMM weight gradient.
        s(1, 64, 14, 14, 64, 3, 3).padding(Padding::symmetric(1)),
    ];
    for spec in geometries {
        let g = spec.build().unwrap();
        let v = |n: usize, k: usize| {
            (0..n)
                .map(|i| ((i * 7 + k) % 13) as f32 / 6.0 - 1.0)
                .collect::<Vec<f32>>()
        };
        let (x, w, b, dy) = (
            v(g.input_len(), 1),
            v(g.weight_len(), 2),
            v(g.bias_len(), 3),
            v(g.output_len(), 4),
        );
        let (mut y, mut dx, mut dw, mut db) = (
            vec![0f32; g.output_len()],
            vec![0f32; g.input_len()],
            vec![0f32; g.weight_len()],
            vec![0f32; g.bias_len()],
        );
        for (threads, pool) in &pools {
            pool.install(|| {
                let mut step = |ws: &mut Workspace<f32>| {
                    conv2d_into(&g, &x, &w, Some(&b), &mut y, ws).unwrap();
                    conv2d_input_grad_into(&g, &dy, &w, &mut dx, ws).unwrap();
                    conv2d_weight_grad_into(&g, &x, &dy, &mut dw, ws).unwrap();
                    conv2d_bias_grad_into(&g, &dy, &mut db).unwrap();
                };
                // Warm-up: sizes the workspace, and lets every worker of the
                // pool take part at least once (rayon's and crossbeam's
                // per-thread state is set up lazily, on a worker's first
                // steal, and a pool's threads may still be starting during
                // the first step).
                let mut ws = Workspace::new();
                for _ in 0..5 {
                    step(&mut ws);
                }
                // A real allocation in ferroconv's steady state happens on
                // every step; one clean window out of three rules out stray
                // allocations of other threads in the process.
                let mut counts = Vec::with_capacity(3);
                for _ in 0..3 {
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    for _ in 0..3 {
                        step(&mut ws);
                    }
                    counts.push(ALLOCATIONS.load(Ordering::SeqCst) - before);
                    if counts.last() == Some(&0) {
                        break;
                    }
                }
                assert_eq!(
                    counts.last(),
                    Some(&0),
                    "allocations in each window of three steady-state steps: {counts:?}, {g:?}, {threads} threads"
                );
            });
        }
    }
}
