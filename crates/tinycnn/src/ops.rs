//! The kernels: im2col/col2im, matrix products, max-pooling, activations.
//!
//! Activations inside a chunk of `b` images are stored channel-major, `[C, b, H, W]`
//! ("CNHW"): one matrix row per channel, so a convolution is a single matrix product
//! `Z [Cout, b*H*W] = W [Cout, Cin*k*k] x col [Cin*k*k, b*H*W]` and its gradients are two
//! more. Matrix products come from the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON
//! kernels), always single-threaded inside one call: parallelism is over fixed chunks of
//! images, which keeps every sum in the same order whatever the thread count.
//!
//! im2col, col2im and pooling are written here because they are a few lines each for this
//! one layout, and no maintained crate offers them for plain slices.

/// `c = a x b` (or `c += a x b` with `accumulate`), all row-major with the given row strides:
/// `a` is `[m, k]`, `b` is `[k, n]`, `c` is `[m, n]`. Transposes are expressed by passing
/// `(row stride, column stride)` pairs; see [`Mat`].
#[inline]
pub fn matmul(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], c_rs: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(c.len() >= (m - 1) * c_rs + n);
    debug_assert!(a.data.len() > (m - 1) * a.rs + (k.max(1) - 1) * a.cs || k == 0);
    debug_assert!(b.data.len() > (k.max(1) - 1) * b.rs + (n - 1) * b.cs || k == 0);
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                c[row * c_rs..row * c_rs + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the debug assertions above state the bounds every index of gemm stays within:
    // a[i*rs + p*cs] for i < m, p < k, b likewise for p < k, j < n, and c[i*c_rs + j]. The
    // callers in this crate size their buffers from the same m, n, k.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
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
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn t(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: cols }
    }
}

/// Unfolds `x` `[cin, b, h, w]` into `col` `[cin*k*k, b*h*w]` for a "same" convolution
/// (zero padding `k/2`): row `(ci, dy, dx)`, column `(img, y, x)` holds
/// `x[ci, img, y + dy - k/2, x + dx - k/2]` or 0 outside the image.
pub fn im2col(x: &[f32], cin: usize, b: usize, h: usize, w: usize, k: usize, col: &mut [f32]) {
    let (hw, n, pad) = (h * w, b * h * w, k / 2);
    debug_assert_eq!(x.len(), cin * n);
    debug_assert_eq!(col.len(), cin * k * k * n);
    for ci in 0..cin {
        for dy in 0..k {
            for dx in 0..k {
                let row = &mut col[((ci * k + dy) * k + dx) * n..][..n];
                let shift = dx as isize - pad as isize;
                for img in 0..b {
                    let src = &x[(ci * b + img) * hw..][..hw];
                    let dst = &mut row[img * hw..][..hw];
                    for y in 0..h {
                        let sy = y as isize + dy as isize - pad as isize;
                        let out = &mut dst[y * w..(y + 1) * w];
                        if sy < 0 || sy >= h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &src[sy as usize * w..][..w];
                        copy_shifted(line, out, shift);
                    }
                }
            }
        }
    }
}

/// `out[x] = line[x + shift]`, zero where `x + shift` falls outside.
#[inline]
fn copy_shifted(line: &[f32], out: &mut [f32], shift: isize) {
    let w = line.len() as isize;
    let lo = (-shift).clamp(0, w) as usize;
    let hi = (w - shift).clamp(0, w) as usize;
    out[..lo].fill(0.0);
    out[hi..].fill(0.0);
    if lo < hi {
        out[lo..hi].copy_from_slice(&line[(lo as isize + shift) as usize..(hi as isize + shift) as usize]);
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` back to the input position it came
/// from. `dx` `[cin, b, h, w]` is overwritten.
pub fn col2im(col: &[f32], cin: usize, b: usize, h: usize, w: usize, k: usize, dx: &mut [f32]) {
    let (hw, n, pad) = (h * w, b * h * w, k / 2);
    debug_assert_eq!(dx.len(), cin * n);
    dx.fill(0.0);
    for ci in 0..cin {
        for dy in 0..k {
            for ddx in 0..k {
                let row = &col[((ci * k + dy) * k + ddx) * n..][..n];
                let shift = ddx as isize - pad as isize;
                for img in 0..b {
                    let dst = &mut dx[(ci * b + img) * hw..][..hw];
                    let src = &row[img * hw..][..hw];
                    for y in 0..h {
                        let sy = y as isize + dy as isize - pad as isize;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let line = &mut dst[sy as usize * w..][..w];
                        let from = &src[y * w..(y + 1) * w];
                        // line[x + shift] += from[x] for x where x + shift is inside.
                        let lo = (-shift).clamp(0, w as isize) as usize;
                        let hi = (w as isize - shift).clamp(0, w as isize) as usize;
                        for x in lo..hi {
                            line[(x as isize + shift) as usize] += from[x];
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
    let (oh, ow) = (h / 2, w / 2);
    debug_assert_eq!(y.len(), planes * h * w);
    debug_assert_eq!(p.len(), planes * oh * ow);
    for pl in 0..planes {
        let src = &y[pl * h * w..][..h * w];
        let dst = &mut p[pl * oh * ow..][..oh * ow];
        let a = &mut arg[pl * oh * ow..][..oh * ow];
        for oy in 0..oh {
            let r0 = &src[2 * oy * w..][..w];
            let r1 = &src[(2 * oy + 1) * w..][..w];
            for ox in 0..ow {
                let c = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
                let mut best = 0;
                for i in 1..4 {
                    if c[i] > c[best] {
                        best = i;
                    }
                }
                dst[oy * ow + ox] = c[best];
                a[oy * ow + ox] = best as u8;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn im2col_and_col2im_are_adjoint() {
        // <im2col(x), c> == <x, col2im(c)> for arbitrary x, c.
        let (cin, b, h, w, k) = (2, 3, 5, 4, 3);
        let x: Vec<f32> = (0..cin * b * h * w).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let c: Vec<f32> = (0..cin * k * k * b * h * w).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let mut col = vec![0.0; c.len()];
        im2col(&x, cin, b, h, w, k, &mut col);
        let mut dx = vec![0.0; x.len()];
        col2im(&c, cin, b, h, w, k, &mut dx);
        let lhs: f32 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        // Centre tap of the kernel is the image itself.
        let centre = &col[(k * k / 2) * b * h * w..][..b * h * w];
        assert_eq!(centre, &x[..b * h * w]);
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
        matmul(2, 2, 3, Mat::rows(&a, 3), Mat::rows(&b, 2), &mut c, 2, false);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // a^T [3,2] x a [2,3] -> [3,3]
        let mut d = [0.0; 9];
        matmul(3, 3, 2, Mat::t(&a, 3), Mat::rows(&a, 3), &mut d, 3, false);
        assert_eq!(d, [17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
        matmul(3, 3, 2, Mat::t(&a, 3), Mat::rows(&a, 3), &mut d, 3, true);
        assert_eq!(d[0], 34.0);
    }
}
