//! What the kernels' tests share: reproducible values and labelled images, bit patterns, the plain product in a
//! given order (the oracle), and the blocks `gemm` chooses on the CPU running the tests.
//!
//! Test-only; must not be used by the engine.

/// `len` values in [-1, 1] from a xorshift stream, distinct per `seed`.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % 2001) as f32 - 1000.0) / 997.0
        })
        .collect()
}

/// `n` random 28x28 images with random labels of 3 classes, distinct per `seed`.
pub fn labelled_images(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let images = (0..n * 28 * 28).map(|_| (next() >> 56) as u8).collect();
    let labels = (0..n).map(|_| (next() % 3) as u8).collect();
    (images, labels)
}

/// The bit patterns of `v`, so that `-0.0`, `+0.0` and NaNs compare exactly.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `out [m, n] = a [m, q] x b [q, n]` one output at a time: summed over `q` in order with
/// `mul_add` from zero in blocks of `depth`, the blocks' sums added in order. The definition
/// the kernels must meet bit for bit.
pub fn reference(a: &[f32], b: &[f32], (m, q, n): (usize, usize, usize), depth: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut total = 0.0f32;
            for (block, q0) in (0..q.max(1)).step_by(depth).enumerate() {
                let mut acc = 0.0f32;
                for p in q0..(q0 + depth).min(q) {
                    acc = a[i * q + p].mul_add(b[p * n + j], acc);
                }
                total = if block == 0 { acc } else { total + acc };
            }
            out[i * n + j] = total;
        }
    }
    out
}

/// The depth of the blocks `gemm` uses on this CPU for a product of `m x q` by `q x n` with
/// its packed kernels (its f32 kernels are 16 x 4 on x86-64): where it equals
/// [`crate::direct::gemm_depth`], `gemm`'s results are the engine's.
pub fn gemm_depth_here(m: usize, q: usize, n: usize) -> usize {
    if m <= 64 && n <= 64 {
        q.min(512)
    } else {
        gemm_common::cache::kernel_params(m, n, q, 16, 4, std::mem::size_of::<f32>()).kc
    }
}
