//! This machine's f32 FMA peak per core: independent fused multiply-adds on
//! 16-wide AVX-512 registers (or 8-wide AVX2), enough independent chains (12)
//! to cover the FMA latency on both pipes. The figure the suite's GFLOP/s are
//! judged against (issue 4: resnet_3x3_14 forward at >= 85% of it).
//!
//! `cargo run --release --example fma_peak`

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `iters` rounds of 64 x 12 independent 16-lane FMAs: 24,576 FLOPs per round.
    #[target_feature(enable = "avx512f")]
    pub fn avx512(iters: u64) -> f32 {
        let m = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let a = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(std::hint::black_box(1.0)); 12];
        for _ in 0..iters {
            for _ in 0..64 {
                for r in &mut acc {
                    *r = _mm512_fmadd_ps(*r, m, a);
                }
            }
            acc = std::hint::black_box(acc);
        }
        let mut s = _mm512_setzero_ps();
        for r in acc {
            s = _mm512_add_ps(s, r);
        }
        _mm512_reduce_add_ps(s)
    }

    /// `iters` rounds of 64 x 12 independent 8-lane FMAs: 12,288 FLOPs per round.
    #[target_feature(enable = "avx2,fma")]
    pub fn avx2(iters: u64) -> f32 {
        let m = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let a = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(std::hint::black_box(1.0)); 12];
        for _ in 0..iters {
            for _ in 0..64 {
                for r in &mut acc {
                    *r = _mm256_fmadd_ps(*r, m, a);
                }
            }
            acc = std::hint::black_box(acc);
        }
        let mut out = [0f32; 8];
        let mut s = _mm256_setzero_ps();
        for r in acc {
            s = _mm256_add_ps(s, r);
        }
        // SAFETY: `out` holds 8 f32, the width of one __m256 store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let iters = 600_000u64;
        let runs = |f: &dyn Fn() -> f32, flops: f64, name: &str| {
            let mut best = 0.0f64;
            for _ in 0..5 {
                let t = Instant::now();
                let r = f();
                let g = flops / t.elapsed().as_secs_f64() / 1e9;
                std::hint::black_box(r);
                best = best.max(g);
            }
            println!("{name}: {best:.1} GFLOP/s per core (best of 5)");
        };
        let has512 = std::arch::is_x86_feature_detected!("avx512f");
        println!(
            "AVX-512F {}",
            if has512 {
                "available"
            } else {
                "not exposed by this CPU/VM"
            }
        );
        if has512 {
            // SAFETY: avx512f was just detected.
            runs(
                &|| unsafe { x86::avx512(iters) },
                iters as f64 * 24576.0,
                "AVX-512 FMA peak",
            );
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: avx2 and fma were just detected.
            runs(&|| unsafe { x86::avx2(iters) }, iters as f64 * 12288.0, "AVX2 FMA peak");
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak measures x86-64 only");
}
