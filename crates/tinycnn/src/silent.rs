//! Products not multiplied where one side is all zeros: a layer whose filters are all silent.
//!
//! A stuck run's last conv layer is often dead for whole epochs, and then every value of its
//! `dz` is zero (its ReLU passes no gradient); a dead first layer makes the second layer's
//! input all zero. In the thesis-scale study, 67% of the sweep's run time went to epochs whose
//! last conv layer output nothing on any training image, 34% to epochs whose first did (the
//! store's per-epoch dead-filter counts). Those chunks multiplied zeros: the input gradient,
//! the weight gradients, the second layer's forward product.
//!
//! **Same bits.** The engine's own products ([`crate::direct`], [`crate::wgrad`],
//! [`crate::sparse`]) sum every output from `+0` with fused multiply-adds in blocks whose sums
//! are added. For a finite `w`, `±0 x w` is a zero and `+0 + ±0` is `+0`, so a product whose
//! one side is all zeros (of either sign) is `+0` everywhere, and a forward product
//! `[W | b] x [col; 1]` whose `col` is all zeros is each filter's bias (`+0` for a bias of
//! either zero: the bias's term is added to a `+0` sum). Where the other side is not finite
//! (`0 x inf` is NaN) the products run.
//!
//! Must only stand in for the engine's own products: the GEMM crates do not document that
//! their sums start from `+0`.

/// Whether every value is a zero of either sign; a fold over runs of 64, so that it
/// vectorises and still stops at the first run with a non-zero (a layer's `dz` is rarely all
/// zero: a fold over the whole of it took 2% of a 32-32's training, `perf record`).
pub(crate) fn all_zero(v: &[f32]) -> bool {
    v.chunks(64)
        .all(|run| run.iter().fold(true, |z, &x| z & (x == 0.0)))
}

/// Whether every value is finite; a fold, not `all`: no early exit, so that it vectorises.
pub(crate) fn all_finite(v: &[f32]) -> bool {
    v.iter().fold(true, |ok, x| ok & x.is_finite())
}

/// Whether any value is `-0`; a fold, not `any`, for the same reason.
pub(crate) fn any_negative_zero(v: &[f32]) -> bool {
    v.iter()
        .fold(false, |any, x| any | (x.to_bits() == (-0.0f32).to_bits()))
}

/// `pre [C, n]` of a forward product `[W | b] x [col; 1]` whose `col` is all zeros and `W`
/// finite: each filter's bias, `+0` where the bias is a zero.
///
/// # Shapes
/// `bias [C]`, `pre [C, n]`.
pub(crate) fn bias_only(bias: &[f32], n: usize, pre: &mut [f32]) {
    for (row, &b) in pre.chunks_exact_mut(n).zip(bias) {
        row.fill(if b == 0.0 { 0.0 } else { b });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::{block_depth, product, KC};
    use crate::testkit::{bits, reference, values};

    /// Zeros of both signs.
    fn zeros(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
            .collect()
    }

    /// A product with one side all zeros is +0 everywhere: the plain sum's bits and the
    /// direct product's, in one block and in several.
    #[test]
    fn a_side_of_zeros_gives_positive_zeros() {
        for (i, &(m, q, n)) in [(16, 145, 784), (32, 289, 784), (8, 600, 40), (289, 784, 32)]
            .iter()
            .enumerate()
        {
            let a = values(m * q, i as u64);
            let b = zeros(q * n);
            let depth = block_depth(m, q, n).unwrap_or(KC);
            let want = reference(&a, &b, (m, q, n), depth);
            let mut got = vec![f32::NAN; m * n];
            product(&a, &b, (m, q, n), &mut got);
            assert_eq!(bits(&got), bits(&want));
            assert!(want.iter().all(|v| v.to_bits() == 0), "{m}x{q}x{n}");
        }
    }

    /// The forward product of an all-zero input is the bias, +0 for a bias of -0 or +0, as
    /// the direct product computes it with the ones row last, over one block and two.
    #[test]
    fn the_forward_of_a_zero_input_is_the_bias() {
        for (m, cin, n) in [(16, 16, 784), (32, 32, 784), (9, 40, 50)] {
            let q = cin * 9 + 1;
            let mut wb = values(m * q, 7);
            let bias: Vec<f32> = (0..m)
                .map(|c| match c % 4 {
                    0 => -0.0,
                    1 => 0.0,
                    _ => wb[c * q + q - 1],
                })
                .collect();
            for (c, &b) in bias.iter().enumerate() {
                wb[c * q + q - 1] = b;
            }
            let mut col = zeros(q * n);
            col[(q - 1) * n..].fill(1.0);
            let mut want = vec![f32::NAN; m * n];
            product(&wb, &col, (m, q, n), &mut want);
            let mut got = vec![f32::NAN; m * n];
            bias_only(&bias, n, &mut got);
            assert_eq!(bits(&got), bits(&want), "{m} filters, {cin} inputs");
        }
    }

    /// A chunk through a network whose layer `dead` is silent (biases far below zero): every
    /// gradient of that layer and those below is +0, as the products give it (a sum of -0s
    /// written instead would fail), and the layer above computes its biases.
    #[test]
    fn a_dead_layer_backpropagates_positive_zeros() {
        use crate::arch::Arch;
        use crate::model::{Init, Model};
        use crate::net::{Scaling, Workspace, CHUNK};
        for label in ["16-16", "32-32", "8-16", "16-4", "16-8-8"] {
            for dead in 0..label.split('-').count() {
                let arch = Arch::parse(label, 28, 28, 3).unwrap();
                let mut model = Model::init(&arch, Init::Glorot, 3).unwrap();
                let layout = model.layout().clone();
                for p in &mut model.params[layout.conv_b[dead].clone()] {
                    *p = -50.0;
                }
                let px = 28 * 28;
                let images: Vec<u8> = values(CHUNK * px, 9)
                    .iter()
                    .map(|v| ((v + 1.0) * 127.0) as u8)
                    .collect();
                let mut ws = Workspace::new(&arch, CHUNK);
                ws.load(&images, Scaling::Unit);
                ws.forward(&model, false);
                let dl = values(CHUNK * 3, 11);
                ws.dlogits[..dl.len()].copy_from_slice(&dl);
                let mut grad = vec![f32::NAN; model.params.len()];
                ws.backward(&model, &mut grad);
                for r in layout.conv_w[..=dead].iter().chain(&layout.conv_b[..=dead]) {
                    assert!(
                        grad[r.clone()].iter().all(|v| v.to_bits() == 0),
                        "{label}, layer {dead} dead: a gradient at or below it is not +0"
                    );
                }
                assert!(
                    grad.iter().all(|v| v.is_finite()),
                    "{label}, layer {dead} dead"
                );
            }
        }
    }

    /// A chunk whose first layer has some silent filters gives the full computation's
    /// pre-activations, logits and gradient bit for bit, with the second layer's forward terms
    /// and input gradient rows of the silent channels left out: one live channel, three (thin
    /// blocks, where a product of so few rows alone would be summed in other blocks; terms in
    /// both of a 32-channel product's blocks), half, all but one.
    #[test]
    fn silent_channels_rows_are_left_out_with_the_same_bits() {
        use crate::arch::Arch;
        use crate::model::{Init, Model};
        use crate::net::{Scaling, Workspace, CHUNK};
        for label in ["32-32", "16-16", "32-4", "32-2", "8-16", "16-8-8"] {
            let arch = Arch::parse(label, 28, 28, 3).unwrap();
            let f1 = arch.filters[0];
            let patterns: [&dyn Fn(usize) -> bool; 4] =
                [&|c| c != 5, &|c| c % 5 != 1, &|c| c % 2 == 0, &|c| c == 3];
            for (p, dead) in patterns.iter().enumerate() {
                let mut model = Model::init(&arch, Init::Glorot, 3).unwrap();
                let layout = model.layout().clone();
                for c in (0..f1).filter(|&c| dead(c)) {
                    model.params[layout.conv_b[0].start + c] = -50.0;
                }
                let images: Vec<u8> = values(CHUNK * 28 * 28, 9)
                    .iter()
                    .map(|v| ((v + 1.0) * 127.0) as u8)
                    .collect();
                let dl = values(CHUNK * 3, 11);
                let grad = |every_row: bool| {
                    let mut ws = Workspace::new(&arch, CHUNK);
                    ws.every_row = every_row;
                    ws.load(&images, Scaling::Unit);
                    ws.forward(&model, false);
                    ws.dlogits[..dl.len()].copy_from_slice(&dl);
                    let mut grad = vec![f32::NAN; model.params.len()];
                    let mut out: Vec<u32> = ws.pre.iter().flat_map(|p| bits(p)).collect();
                    out.extend(bits(&ws.logits));
                    ws.backward(&model, &mut grad);
                    out.extend(bits(&grad));
                    out
                };
                let (got, want) = (grad(false), grad(true));
                assert_eq!(got, want, "{label}, pattern {p}");
                let g = &want[want.len() - model.params.len()..];
                let w1 = &g[layout.conv_w[0].clone()];
                assert!(
                    w1.iter().any(|&b| b != 0),
                    "{label}, pattern {p}: a live filter learns"
                );
            }
        }
    }

    #[test]
    fn scans() {
        assert!(all_zero(&[0.0, -0.0, 0.0]));
        assert!(!all_zero(&[0.0, 1e-40, 0.0]));
        assert!(!all_zero(&[f32::NAN]));
        assert!(all_finite(&[0.0, -1e38, 3.0]));
        assert!(!all_finite(&[0.0, f32::INFINITY]));
        assert!(!all_finite(&[f32::NAN, 1.0]));
        assert!(any_negative_zero(&[0.0, 1.0, -0.0]));
        assert!(!any_negative_zero(&[0.0, -1e-45, f32::NAN]));
    }
}
