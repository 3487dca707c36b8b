//! The kernels: im2col, matrix products, max-pooling.
//!
//! Activations inside a chunk of `b` images are stored channel-major, `[C, b, H, W]`
//! ("CNHW"): one matrix row per channel, so a convolution is a single matrix product
//! `Z [Cout, b*H*W] = W [Cout, Cin*k*k] x col [Cin*k*k, b*H*W]` and its gradients are two
//! more. Matrix products come from the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON
//! kernels), always single-threaded inside one call: parallelism is over fixed chunks of
//! images, which keeps every sum in the same order whatever the thread count.
//!
//! im2col and pooling are written here because they are a few lines each for this one
//! layout, and no maintained crate offers them for plain slices. The pooling loops are
//! compiled for several instruction sets and picked by [`crate::isa`]; Rust
//! never fuses a multiply and an add on its own, so every variant computes the same bits.

use crate::isa::kernel;

/// `c = a x b` (or `c += a x b` with `accumulate`), all row-major with the given row strides:
/// `a` is `[m, k]`, `b` is `[k, n]`, `c` is `[m, n]`. Transposes are expressed by passing
/// `(row stride, column stride)` pairs; see [`Mat`].
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    matmul_strided(m, n, k, a, b, c, c_rs, 1, accumulate)
}

/// [`matmul`] with a strided output: element `(i, j)` of `c` is `c[i * c_rs + j * c_cs]`, so
/// a product can be written straight into a transposed layout.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    c_cs: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The raw-pointer products below rely on these bounds, so they hold in release builds
    // too (three comparisons against a product of at least m*n*k multiply-adds).
    assert!(
        c.len() > (m - 1) * c_rs + (n - 1) * c_cs,
        "matmul: c holds {} values, {m}x{n} strided ({c_rs}, {c_cs}) needs more",
        c.len()
    );
    assert!(
        k == 0 || a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs,
        "matmul: a holds {} values, {m}x{k} strided ({}, {}) needs more",
        a.data.len(),
        a.rs,
        a.cs
    );
    assert!(
        k == 0 || b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs,
        "matmul: b holds {} values, {k}x{n} strided ({}, {}) needs more",
        b.data.len(),
        b.rs,
        b.cs
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c[i * c_rs + j * c_cs] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY (both branches): the assertions above state the bounds every index stays
    // within: a[i*rs + p*cs] for i < m, p < k, b likewise for p < k, j < n, and
    // c[i*c_rs + j*c_cs]. The callers in this crate size their buffers from the same m, n, k.
    if m >= 8 && n >= 8 {
        // matrixmultiply's kernels are the faster on these shapes (measured with `shapelab
        // bench train`); with beta = 0 it does not read c.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data.as_ptr(),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                if accumulate { 1.0 } else { 0.0 },
                c.as_mut_ptr(),
                c_rs as isize,
                c_cs as isize,
            );
        }
        return;
    }
    // gemm handles very thin products (a handful of rows or columns) better.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A strided matrix view for [`matmul`]: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn t(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// Unfolds `x` `[cin, b, h, w]` into `col` `[cin*k*k, b*h*w]` for a "same" convolution
/// (zero padding `k/2`): row `(ci, dy, dx)`, column `(img, y, x)` holds
/// `x[ci, img, y + dy - k/2, x + dx - k/2]` or 0 outside the image.
///
/// Each row is the channel's `b` planes, stored back to back, shifted by one constant offset:
/// one bulk copy, then the few rows and columns that wrapped around are zeroed.
pub fn im2col(x: &[f32], cin: usize, b: usize, h: usize, w: usize, k: usize, col: &mut [f32]) {
    let (hw, n, pad) = (h * w, b * h * w, (k / 2) as isize);
    debug_assert_eq!(x.len(), cin * n);
    debug_assert!(col.len() >= cin * k * k * n);
    for ci in 0..cin {
        let src = &x[ci * n..(ci + 1) * n];
        for dy in 0..k as isize {
            for dx in 0..k as isize {
                let row = &mut col[((ci * k + dy as usize) * k + dx as usize) * n..][..n];
                let (sy, sx) = (dy - pad, dx - pad);
                let off = sy * w as isize + sx;
                // row[i] = src[i + off] where that index exists...
                let lo = (-off).clamp(0, n as isize) as usize;
                let hi = (n as isize - off).clamp(0, n as isize) as usize;
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if lo < hi {
                    row[lo..hi].copy_from_slice(
                        &src[(lo as isize + off) as usize..(hi as isize + off) as usize],
                    );
                }
                // ...then zero what crossed an image's top or bottom edge...
                if sy != 0 {
                    let rows = (sy.unsigned_abs() * w).min(hw);
                    for img in 0..b {
                        let plane = &mut row[img * hw..(img + 1) * hw];
                        let band = if sy < 0 {
                            &mut plane[..rows]
                        } else {
                            &mut plane[hw - rows..]
                        };
                        for v in band {
                            *v = 0.0;
                        }
                    }
                }
                // ...or its left or right edge.
                if sx != 0 {
                    // A strided store per zeroed column (one or two columns for 3x3 and 5x5
                    // kernels); a loop over each line's few elements would become a memset
                    // call per line.
                    let cols = sx.unsigned_abs().min(w);
                    let first = if sx < 0 { 0 } else { w - cols };
                    for c in first..first + cols {
                        let mut i = c;
                        while i < n {
                            row[i] = 0.0;
                            i += w;
                        }
                    }
                }
            }
        }
    }
}

/// 2x2 max-pool with stride 2, flooring odd sizes: `y` `[c, b, h, w]` to `p`
/// `[c, b, h/2, w/2]`, recording in `arg` which of the four inputs (0..4, row-major) won.
/// Ties go to the first in row-major order, as in PyTorch.
pub fn maxpool(y: &[f32], planes: usize, h: usize, w: usize, p: &mut [f32], arg: &mut [u8]) {
    pool(y, (planes, h, w), p, arg, true)
}

/// [`maxpool`] for a pass with no backward: the same `p`, and `arg` written only where that
/// costs nothing (the AVX-512 kernel skips it; `arg` is then left as it was).
pub fn maxpool_values(y: &[f32], planes: usize, h: usize, w: usize, p: &mut [f32], arg: &mut [u8]) {
    pool(y, (planes, h, w), p, arg, false)
}

/// [`maxpool`], recording the winners in `arg` if `winners`.
fn pool(
    y: &[f32],
    (planes, h, w): (usize, usize, usize),
    p: &mut [f32],
    arg: &mut [u8],
    winners: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::isa() == crate::isa::Isa::Avx512 {
        let arg = winners.then_some(arg);
        // SAFETY: `isa()` is AVX-512 only where the CPU runs it.
        return unsafe { crate::pool512::maxpool(y, (planes, h, w), p, arg) };
    }
    let _ = winners;
    maxpool_compiled(y, planes, h, w, p, arg)
}

kernel! {
    /// [`maxpool`] as compiled loops, for the CPUs without AVX-512.
    fn maxpool_compiled(y: &[f32], planes: usize, h: usize, w: usize, p: &mut [f32], arg: &mut [u8])
        => maxpool_body
}

#[inline(always)]
pub(crate) fn maxpool_body(
    y: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    p: &mut [f32],
    arg: &mut [u8],
) {
    let (oh, ow) = (h / 2, w / 2);
    debug_assert_eq!(y.len(), planes * h * w);
    debug_assert_eq!(p.len(), planes * oh * ow);
    for pl in 0..planes {
        let src = &y[pl * h * w..][..h * w];
        for oy in 0..oh {
            let r0 = &src[2 * oy * w..][..2 * ow];
            let r1 = &src[(2 * oy + 1) * w..][..2 * ow];
            let o = (pl * oh + oy) * ow;
            let (d, ar) = (&mut p[o..o + ow], &mut arg[o..o + ow]);
            // Branch-free "first maximum in row-major order": strict comparisons keep the
            // earlier element on ties. Written over exact pairs so it vectorises.
            for (((d, ar), t), u) in d
                .iter_mut()
                .zip(ar.iter_mut())
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                let (m1, i1) = if t[1] > t[0] { (t[1], 1) } else { (t[0], 0) };
                let (m2, i2) = if u[1] > u[0] { (u[1], 3) } else { (u[0], 2) };
                let (m, i) = if m2 > m1 { (m2, i2) } else { (m1, i1) };
                *d = m;
                *ar = i;
            }
        }
    }
}

/// The adjoint of [`maxpool`]: routes each pooled gradient to the input that won; `dy` is
/// overwritten (zero elsewhere, including the floored last row and column).
pub fn unpool(dp: &[f32], arg: &[u8], planes: usize, h: usize, w: usize, dy: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    dy.fill(0.0);
    for pl in 0..planes {
        let dst = &mut dy[pl * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let i = pl * oh * ow + oy * ow + ox;
                let a = arg[i] as usize;
                dst[(2 * oy + a / 2) * w + 2 * ox + a % 2] = dp[i];
            }
        }
    }
}

/// [`unpool`] fused with ReLU's derivative: routes each pooled gradient to its winner only
/// where the pooled (post-ReLU) value is positive, which is exactly where ReLU passes the
/// gradient. Every 2x2 block is written whole, so `dz` needs no clearing pass (only the
/// floored last row and column of odd sizes are cleared).
pub fn unpool_relu(
    dp: &[f32],
    pooled: &[f32],
    arg: &[u8],
    planes: usize,
    h: usize,
    w: usize,
    dz: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::isa() == crate::isa::Isa::Avx512 {
        // SAFETY: `isa()` is AVX-512 only where the CPU runs it.
        return unsafe { crate::pool512::unpool_relu(dp, pooled, arg, (planes, h, w), dz) };
    }
    unpool_relu_compiled(dp, pooled, arg, planes, h, w, dz)
}

/// Whether [`unpool_relu_transposed`] runs for `c` filters on `h x w` maps: with the
/// AVX-512 kernels, whole vectors of filters, even sizes.
pub(crate) fn unpools_transposed(c: usize, h: usize, w: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::isa() == crate::isa::Isa::Avx512 {
        return crate::pool512::transposes(c, h, w);
    }
    let _ = (c, h, w);
    false
}

/// [`unpool_relu`] of `c` filters on `b` maps of `h x w` written transposed, `dzt [b*h*w, c]`
/// (`dz^T`, which the direct weight gradient reads), where [`unpools_transposed`]; panics
/// elsewhere.
pub(crate) fn unpool_relu_transposed(
    dp: &[f32],
    pooled: &[f32],
    arg: &[u8],
    (c, b, h, w): (usize, usize, usize, usize),
    dzt: &mut [f32],
) {
    assert!(
        unpools_transposed(c, h, w),
        "unpool_relu_transposed: not for {c} filters of {h}x{w} with these kernels"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `isa()` is AVX-512 (asserted) only where the CPU runs it.
    unsafe {
        crate::pool512::unpool_relu_transposed(dp, pooled, arg, (c, b, h, w), dzt)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dp, pooled, arg, b, dzt);
}

kernel! {
    /// [`unpool_relu`] as compiled loops, for the CPUs without AVX-512.
    fn unpool_relu_compiled(
        dp: &[f32],
        pooled: &[f32],
        arg: &[u8],
        planes: usize,
        h: usize,
        w: usize,
        dz: &mut [f32],
    ) => unpool_relu_body
}

#[inline(always)]
pub(crate) fn unpool_relu_body(
    dp: &[f32],
    pooled: &[f32],
    arg: &[u8],
    planes: usize,
    h: usize,
    w: usize,
    dz: &mut [f32],
) {
    let (oh, ow) = (h / 2, w / 2);
    for pl in 0..planes {
        let dst = &mut dz[pl * h * w..][..h * w];
        for oy in 0..oh {
            let (top, bottom) = dst[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
            let o = (pl * oh + oy) * ow;
            let (dp, pooled, arg) = (&dp[o..o + ow], &pooled[o..o + ow], &arg[o..o + ow]);
            for ((((t, u), &g), &p), &a) in top
                .chunks_exact_mut(2)
                .zip(bottom.chunks_exact_mut(2))
                .zip(dp)
                .zip(pooled)
                .zip(arg)
            {
                let g = if p > 0.0 { g } else { 0.0 };
                t[0] = if a == 0 { g } else { 0.0 };
                t[1] = if a == 1 { g } else { 0.0 };
                u[0] = if a == 2 { g } else { 0.0 };
                u[1] = if a == 3 { g } else { 0.0 };
            }
            if w % 2 == 1 {
                top[w - 1] = 0.0;
                bottom[w - 1] = 0.0;
            }
        }
        if h % 2 == 1 {
            dst[(h - 1) * w..].fill(0.0);
        }
    }
}

/// The weights of the convolution that maps a layer's output gradient back to its input:
/// `w [cout, cin, k, k]` to `wt [cin, cout, k, k]` with each kernel turned by 180 degrees.
/// A "same" convolution of `dZ` with `wt` is the input gradient (stride 1, odd k).
pub fn flip_transpose(w: &[f32], cout: usize, cin: usize, k: usize, wt: &mut [f32]) {
    let k2 = k * k;
    if cout * k2 == 0 {
        return;
    }
    // `wt` written in order, a kernel at a time, each read reversed: no index per value.
    for (ci, row) in wt[..cin * cout * k2]
        .chunks_exact_mut(cout * k2)
        .enumerate()
    {
        for (co, dst) in row.chunks_exact_mut(k2).enumerate() {
            let src = &w[(co * cin + ci) * k2..][..k2];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_check_their_bounds_in_every_build() {
        let a = vec![1.0f32; 8 * 8];
        let b = vec![1.0f32; 8 * 8];
        let short_b = vec![1.0f32; 8 * 7];
        for (b, c_len) in [(&b, 8 * 8 - 1), (&short_b, 8 * 8)] {
            let r = std::panic::catch_unwind(|| {
                let mut c = vec![0.0f32; c_len];
                matmul(8, 8, 8, Mat::rows(&a, 8), Mat::rows(b, 8), &mut c, 8, false);
            });
            assert!(r.is_err(), "a product past the end of a buffer is refused");
        }
        let mut c = vec![0.0f32; 64];
        matmul(
            8,
            8,
            8,
            Mat::rows(&a, 8),
            Mat::rows(&b, 8),
            &mut c,
            8,
            false,
        );
        assert!(c.iter().all(|&v| v == 8.0));
    }

    #[test]
    fn im2col_centre_tap_is_the_image_and_edges_are_zero() {
        let (cin, b, h, w, k) = (2, 3, 5, 4, 3);
        let x: Vec<f32> = (0..cin * b * h * w).map(|i| i as f32 + 1.0).collect();
        let n = b * h * w;
        let mut col = vec![f32::NAN; cin * k * k * n];
        im2col(&x, cin, b, h, w, k, &mut col);
        assert!(col.iter().all(|v| v.is_finite()), "every entry written");
        assert_eq!(&col[4 * n..5 * n], &x[..n], "centre tap of channel 0");
        // Tap (dy=0, dx=0) reads up-left: the first row and column of every image are padding.
        let tap = &col[..n];
        for img in 0..b {
            for x_ in 0..w {
                assert_eq!(tap[img * h * w + x_], 0.0);
            }
            assert_eq!(tap[img * h * w + w + 1], x[img * h * w]);
        }
    }

    #[test]
    fn flip_transpose_turns_kernels() {
        // w [cout=2, cin=1, 3, 3]
        let w: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let mut t = vec![0.0; 18];
        flip_transpose(&w, 2, 1, 3, &mut t);
        assert_eq!(&t[..9], &[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(t[9], 17.0);
        // The definition, on more than one input channel: wt[ci][co][k2-1-i] = w[co][ci][i].
        let (cout, cin, k2) = (3, 4, 9);
        let w: Vec<f32> = (0..cout * cin * k2).map(|i| i as f32).collect();
        let mut t = vec![f32::NAN; w.len()];
        flip_transpose(&w, cout, cin, 3, &mut t);
        for co in 0..cout {
            for ci in 0..cin {
                for i in 0..k2 {
                    let want = w[(co * cin + ci) * k2 + i];
                    assert_eq!(t[(ci * cout + co) * k2 + k2 - 1 - i], want);
                }
            }
        }
        flip_transpose(&[], 0, 4, 3, &mut []);
    }

    #[test]
    fn pool_picks_the_max_and_routes_back() {
        let y = [1.0, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 9.0, 0.5]; // 3x3: floors to 1x1
        let (mut p, mut a) = ([0.0], [0u8]);
        maxpool(&y, 1, 3, 3, &mut p, &mut a);
        assert_eq!((p[0], a[0]), (5.0, 1));
        let mut dy = [7.0; 9];
        unpool(&[2.0], &a, 1, 3, 3, &mut dy);
        assert_eq!(dy, [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn matmul_handles_transposes() {
        // a [2,3], b [3,2]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [0.0; 4];
        matmul(
            2,
            2,
            3,
            Mat::rows(&a, 3),
            Mat::rows(&b, 2),
            &mut c,
            2,
            false,
        );
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // a^T [3,2] x a [2,3] -> [3,3]
        let mut d = [0.0; 9];
        matmul(3, 3, 2, Mat::t(&a, 3), Mat::rows(&a, 3), &mut d, 3, false);
        assert_eq!(d, [17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
        matmul(3, 3, 2, Mat::t(&a, 3), Mat::rows(&a, 3), &mut d, 3, true);
        assert_eq!(d[0], 34.0);
    }
}
