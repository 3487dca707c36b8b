//! Which vector instructions the engine's own kernels use, chosen once per process.
//!
//! The direct product ([`crate::direct`]), the thin weight gradient ([`crate::wgrad`]), the
//! transpose ([`crate::transpose`]), pooling and its backward pass ([`crate::ops`]) and
//! pruning's fused kernel each come compiled for AVX-512, for AVX2 with FMA, and for the
//! baseline of the target (SSE2 on x86-64, NEON on aarch64). Every version sums in the same order with exactly rounded multiply-adds, so the
//! choice changes speed, never a bit of a result; tests run every version the CPU has.
//!
//! The default is the widest the CPU has ([`Isa::detected`]). That holds on Zen 4 too, which
//! executes a 512-bit instruction as two 256-bit halves: its 8 x 32 tile measured faster than
//! the 6 x 16 AVX2 tile there (README, "Speed"). A caller may pick a narrower version before
//! the first kernel runs ([`choose`]), to measure it or to run as an AVX2-only CPU would.
//!
//! The GEMM crates (`matrixmultiply`, `gemm`) that compute the dense layer and the thinnest
//! convolutions choose their own kernels and do not follow this choice.
//!
//! Must not read the environment: the binary does, and calls [`choose`].

use std::sync::OnceLock;

/// A version of the engine's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// 512-bit vectors (AVX-512 F, BW, VL with FMA): 8 x 32 tiles.
    Avx512,
    /// 256-bit vectors (AVX2 with FMA): 6 x 16 tiles.
    Avx2,
    /// The target's baseline (SSE2, NEON), vectorised by the compiler: 6 x 8 tiles. On
    /// x86-64, whose baseline has no fused multiply-add, every exactly rounded `mul_add` is a
    /// call to `fmaf` and nothing vectorises: about 80x slower than AVX-512 (16-16 at one
    /// thread on an Intel Xeon, 343 against some 28,000 training images/s; `perf`: 40% of the
    /// time in `fmaf`). It is there for the exact bits on any CPU, not for speed.
    Baseline,
}

impl Isa {
    /// Every version, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Baseline];

    /// The name used by `TINYCNN_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Baseline => "baseline",
        }
    }

    /// The version named `name` (`avx512`, `avx2`, `baseline`).
    pub fn parse(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run this version.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Isa::Avx512 => {
                    has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("fma")
                }
                Isa::Avx2 => has!("avx2") && has!("fma"),
                Isa::Baseline => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Baseline
        }
    }

    /// The widest version this CPU runs.
    pub fn detected() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Baseline)
    }

    /// The versions this CPU runs, widest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// The widest version without 512-bit vectors: what an AVX2-only CPU runs.
    pub fn portable() -> Isa {
        if Isa::Avx2.supported() {
            Isa::Avx2
        } else {
            Isa::Baseline
        }
    }
}

static CHOSEN: OnceLock<Isa> = OnceLock::new();

/// The version the kernels use: [`Isa::detected`] unless [`choose`] ran first.
#[inline]
pub fn isa() -> Isa {
    *CHOSEN.get_or_init(Isa::detected)
}

/// Why [`choose`] refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChooseError {
    /// The CPU lacks the instructions.
    #[error("this CPU cannot run the {} kernels; it runs {}", .0.name(), names(&Isa::available()))]
    Unsupported(Isa),
    /// A kernel already ran with another version.
    #[error("the {} kernels are already in use; choose before the first kernel runs", .0.name())]
    AlreadyChosen(Isa),
}

fn names(isas: &[Isa]) -> String {
    isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

/// Makes the kernels use `want` for the rest of the process. Fails when the CPU lacks it, or
/// when a kernel already ran with another version (the choice is made once).
pub fn choose(want: Isa) -> Result<(), ChooseError> {
    if !want.supported() {
        return Err(ChooseError::Unsupported(want));
    }
    match *CHOSEN.get_or_init(|| want) {
        got if got == want => Ok(()),
        got => Err(ChooseError::AlreadyChosen(got)),
    }
}

/// Defines `pub fn $name(args) -> ret` that runs `$body(args)` compiled for the chosen
/// [`Isa`]: `$body` must be `#[inline(always)]`, so that each clone's loops are vectorised
/// for its instructions.
macro_rules! kernel {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            match $crate::isa::isa() {
                // SAFETY: `isa()` is AVX-512 or AVX2 only where the CPU has them.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}
pub(crate) use kernel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_baseline_always_runs() {
        for i in Isa::ALL {
            assert_eq!(Isa::parse(i.name()), Some(i));
        }
        assert_eq!(Isa::parse("sse9"), None);
        assert!(Isa::Baseline.supported());
        assert!(Isa::available().contains(&Isa::detected()));
        assert_ne!(Isa::portable(), Isa::Avx512);
    }
}
