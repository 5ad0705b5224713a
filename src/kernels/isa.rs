//! Run-time choice of the instruction set for ferroconv's own loops.
//!
//! The crate is compiled for baseline x86-64 (SSE2); hot loops are written
//! once, generically, and compiled again inside `#[target_feature]` wrappers
//! for AVX2 and AVX-512F. [`isa`] detects the best one once and caches it;
//! `FERROCONV_ISA=avx512|avx2|generic` forces a path (at most the detected
//! one), so tests can run every path on one machine. The depthwise wrappers
//! use the same scalar operations in the same order (a multiply, then an add:
//! no fused multiply-add), only wider, so the generic and AVX2 paths give
//! bitwise the same results there; AVX-512F's undilated 3x3 depthwise loops
//! ([`super::depthwise_avx512`]) fuse them and differ in the last bits. The f32 GEMM micro-kernels ([`super::sgemm`]: 6 x 32 on
//! AVX-512F, 6 x 16 on AVX2 + FMA) run the same chain of fused multiply-adds
//! per element, so those two agree bitwise; `generic` runs matrixmultiply
//! instead (it picks its own kernels the same way), whose results differ in
//! the last bits. Within one path, results never depend on the thread count.

use std::sync::OnceLock;

/// An instruction-set level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Baseline x86-64 (SSE2) or another architecture.
    Generic,
    /// AVX2.
    Avx2,
    /// AVX-512F.
    Avx512,
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Generic
}

/// The instruction set in use: the best detected, or the one forced by
/// `FERROCONV_ISA` when the CPU has it.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = detect();
        let forced = match std::env::var("FERROCONV_ISA").as_deref() {
            Ok("generic") => Some(Isa::Generic),
            Ok("avx2") => Some(Isa::Avx2),
            Ok("avx512") => Some(Isa::Avx512),
            _ => None,
        };
        forced.map_or(best, |f| f.min(best))
    })
}

/// Whether AVX-512F is in use ([`isa`]) on a CPU that executes each 512-bit
/// operation as two 256-bit halves: AMD's Zen 4 (family 19h), whose FMA
/// peak is the same with AVX2 (`examples/fma_peak.rs`: 115.5 GFLOP/s per
/// core with AVX-512F, 113.8 with AVX2, on the project's EPYC), unlike a
/// Xeon's two 512-bit FMA units. `Auto` picks some paths differently there
/// (`winograd::selected`, `winograd::selected_weight_grad`), where measured
/// so. `FERROCONV_AVX512_HALVES=1` or `0` overrides the detection (with
/// AVX-512F in use; without it this is always false).
pub(crate) fn avx512_halves() -> bool {
    static HALVES: OnceLock<bool> = OnceLock::new();
    isa() == Isa::Avx512
        && *HALVES.get_or_init(|| match std::env::var("FERROCONV_AVX512_HALVES").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => zen4(),
        })
}

/// Whether the CPU is an AMD family 19h part (Zen 3 and Zen 4; only Zen 4
/// has AVX-512F). Zen 5 (family 1Ah) executes 512-bit operations whole.
/// Under Miri (which cannot run CPUID) false.
fn zen4() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::__cpuid;
        let v = __cpuid(0);
        let amd = (v.ebx, v.edx, v.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163); // "AuthenticAMD"
        let eax = __cpuid(1).eax;
        let base = (eax >> 8) & 0xf;
        let family = if base == 0xf { base + ((eax >> 20) & 0xff) } else { base };
        amd && family == 0x19
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    {
        false
    }
}

/// Whether the explicit f32 AVX2 loops run for element type `T`: `T` is
/// f32 and the instruction set in use ([`isa`]) has AVX2.
#[inline(always)]
pub(crate) fn avx2_f32<T>() -> bool {
    cfg!(target_arch = "x86_64") && std::mem::size_of::<T>() == 4 && isa() >= Isa::Avx2
}

/// Whether the explicit f32 AVX-512F loops run for element type `T`: `T` is
/// f32 and the instruction set in use ([`isa`]) is AVX-512F.
#[inline(always)]
pub(crate) fn avx512_f32<T>() -> bool {
    cfg!(target_arch = "x86_64") && std::mem::size_of::<T>() == 4 && isa() == Isa::Avx512
}

/// Defines `$name`, which runs the `#[inline(always)]` generic function
/// `$body` compiled for the instruction set of [`isa`].
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$t:ident>($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$t: $crate::element::Element>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512<$t: $crate::element::Element>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2<$t: $crate::element::Element>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match $crate::kernels::isa::isa() {
                    // SAFETY: `isa()` returns a level only when the CPU has it.
                    $crate::kernels::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::kernels::isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::isa::Isa::Generic => {}
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;
