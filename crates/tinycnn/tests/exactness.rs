//! The fast engine against the naive f64 reference, the reference against finite
//! differences, masked evaluation against smaller networks, and reproducibility.

mod reference;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tinycnn::train::{capture, evaluate_masked, logits, loss_and_gradient, train, Silent};
use tinycnn::{Activation, Arch, Data, Init, Model, Scaling, TrainConfig};

/// Normwise relative error `max|a - b| / max|b|`.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A random architecture, model, and batch of `n` images with labels.
fn random_case(seed: u64) -> (Model, Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pick = |n: u64| (rng.next_u64() % n) as usize;
    let layers = 1 + pick(3);
    let filters: Vec<usize> = (0..layers).map(|_| 1 + pick(6)).collect();
    let kernel = [1, 3, 3, 5][pick(4)];
    let activation = [Activation::Relu, Activation::LeakyRelu, Activation::Tanh][pick(3)];
    let (h, w) = (4 + pick(17), 4 + pick(17));
    let mut pool: Vec<bool> = (0..layers).map(|_| pick(4) != 0).collect();
    let classes = 2 + pick(3);
    let n = 1 + pick(13);
    // Keep at least a 1x1 map at the end.
    let (mut hh, mut ww) = (h, w);
    for p in pool.iter_mut() {
        if *p && hh >= 2 && ww >= 2 {
            (hh, ww) = (hh / 2, ww / 2);
        } else {
            *p = false;
        }
    }
    let arch = Arch {
        height: h,
        width: w,
        filters,
        kernel,
        activation,
        pool,
        classes,
    };
    let mut model = Model::init(&arch, Init::He, seed).unwrap();
    // Non-zero biases exercise the bias paths.
    let layout = model.layout().clone();
    for r in layout.conv_b.iter().chain([&layout.fc_b]) {
        for p in &mut model.params[r.clone()] {
            *p = (pick(200) as f32 - 100.0) / 400.0;
        }
    }
    let images: Vec<u8> = (0..n * h * w).map(|_| pick(256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|_| pick(classes as u64) as u8).collect();
    (model, images, labels)
}

fn scaled(images: &[u8], px: usize) -> Vec<Vec<f64>> {
    images
        .chunks(px)
        .map(|c| c.iter().map(|&v| v as f64 / 255.0).collect())
        .collect()
}

#[test]
fn reference_gradient_matches_finite_differences() {
    for seed in 0..12 {
        let (model, images, labels) = random_case(seed);
        let arch = &model.arch;
        let xs = scaled(&images, arch.height * arch.width);
        let p = reference::Params::of(&model);
        let analytic = reference::gradient(arch, &p, &xs, &labels);
        let flat = p.flat();
        let h = 1e-6;
        let mut numeric = vec![0.0; flat.len()];
        // All parameters of small nets; a spread subset of larger ones.
        let step = (flat.len() / 150).max(1);
        let mut checked_a = Vec::new();
        for i in (0..flat.len()).step_by(step) {
            let mut up = flat.clone();
            up[i] += h;
            let mut down = flat.clone();
            down[i] -= h;
            let lu = reference::loss(arch, &reference::Params::from_flat(&p, &up), &xs, &labels);
            let ld = reference::loss(arch, &reference::Params::from_flat(&p, &down), &xs, &labels);
            numeric[i] = (lu - ld) / (2.0 * h);
            checked_a.push((analytic[i], numeric[i]));
        }
        let (a, nmr): (Vec<f64>, Vec<f64>) = checked_a.into_iter().unzip();
        let e = rel_err(&a, &nmr);
        assert!(
            e < 1e-5,
            "seed {seed} ({} {:?}): finite differences disagree by {e:e}",
            arch.label(),
            arch.activation
        );
    }
}

#[test]
fn fast_path_equals_reference_on_random_shapes() {
    let mut worst = (0.0f64, 0.0f64);
    for seed in 100..160 {
        let (model, images, labels) = random_case(seed);
        let arch = &model.arch;
        let xs = scaled(&images, arch.height * arch.width);
        let p = reference::Params::of(&model);
        let want_logits: Vec<f64> = reference::logits(arch, &p, &xs).concat();
        let data = Data {
            images: &images,
            labels: &labels,
            height: arch.height,
            width: arch.width,
        };
        let got_logits = to64(&logits(&model, &data, Scaling::Unit));
        let e1 = rel_err(&got_logits, &want_logits);
        let want_grad = reference::gradient(arch, &p, &xs, &labels);
        let (loss, grad) = loss_and_gradient(&model, &images, &labels, Scaling::Unit);
        let e2 = rel_err(&to64(&grad), &want_grad);
        let want_loss = reference::loss(arch, &p, &xs, &labels);
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0),
            "seed {seed}: loss {loss} vs {want_loss}"
        );
        assert!(
            e1 < 1e-5 && e2 < 1e-5,
            "seed {seed} {} k{} {:?} pool {:?} {}x{}: logits {e1:e}, gradient {e2:e}",
            arch.label(),
            arch.kernel,
            arch.activation,
            arch.pool,
            arch.height,
            arch.width
        );
        worst = (worst.0.max(e1), worst.1.max(e2));
    }
    eprintln!(
        "worst normwise relative error: logits {:e}, gradient {:e}",
        worst.0, worst.1
    );
}

#[test]
fn masked_evaluation_equals_a_smaller_network() {
    for seed in 200..230 {
        let (model, images, labels) = random_case(seed);
        let arch = model.arch.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let keep: Vec<Vec<bool>> = arch
            .filters
            .iter()
            .map(|&f| {
                let mut k: Vec<bool> = (0..f).map(|_| rng.next_u32() % 3 != 0).collect();
                k[(rng.next_u32() as usize) % f] = true;
                k
            })
            .collect();
        // The reference: the full network with the removed filters' weights and bias zeroed
        // and the weights reading them zeroed. Every activation maps 0 to 0, so this is the
        // same function as the network without those filters.
        let mut zeroed = model.clone();
        let layers = arch.layers();
        let k2 = arch.kernel * arch.kernel;
        let layout = model.layout().clone();
        for (l, s) in layers.iter().enumerate() {
            for co in 0..s.cout {
                for ci in 0..s.cin {
                    let removed = !keep[l][co] || (l > 0 && !keep[l - 1][ci]);
                    if removed {
                        let at = layout.conv_w[l].start + (co * s.cin + ci) * k2;
                        zeroed.params[at..at + k2].fill(0.0);
                    }
                }
                if !keep[l][co] {
                    zeroed.params[layout.conv_b[l].start + co] = 0.0;
                }
            }
        }
        let last = layers.last().unwrap();
        for c in 0..arch.classes {
            for ch in (0..last.cout).filter(|&ch| !keep[layers.len() - 1][ch]) {
                let at = layout.fc_w.start + c * arch.features() + ch * last.out_hw();
                zeroed.params[at..at + last.out_hw()].fill(0.0);
            }
        }
        let xs = scaled(&images, arch.height * arch.width);
        let want: Vec<f64> =
            reference::logits(&arch, &reference::Params::of(&zeroed), &xs).concat();
        let small = model.pruned(&keep).unwrap();
        assert_eq!(small.params.len(), small.arch.param_count());
        let data = Data {
            images: &images,
            labels: &labels,
            height: arch.height,
            width: arch.width,
        };
        let got = to64(&logits(&small, &data, Scaling::Unit));
        assert!(rel_err(&got, &want) < 1e-5, "seed {seed}");
        // evaluate_masked is the smaller network's evaluation, bit for bit.
        let masked = evaluate_masked(&model, &keep, &data, Scaling::Unit).unwrap();
        let direct = tinycnn::train::evaluate(&small, &data, Scaling::Unit);
        assert_eq!(masked, direct);
    }
}

#[test]
fn capture_returns_every_stage_and_agrees_with_logits() {
    for seed in 300..310 {
        let (model, images, labels) = random_case(seed);
        let arch = &model.arch;
        let (maps, caught) = capture(&model, &images, Scaling::Unit);
        let data = Data {
            images: &images,
            labels: &labels,
            height: arch.height,
            width: arch.width,
        };
        assert_eq!(caught, logits(&model, &data, Scaling::Unit));
        // The post-only capture is the same maps, into reused (here: oversized) buffers.
        let mut post = vec![vec![7.0f32; 3]; maps.len()];
        tinycnn::train::capture_post_into(&model, &images, Scaling::Unit, &mut post);
        for (p, m) in post.iter().zip(&maps) {
            assert_eq!(p, &m.post);
        }
        let px = arch.height * arch.width;
        let p = reference::Params::of(&model);
        for (i, x) in scaled(&images, px).iter().enumerate() {
            for (l, (pre, out)) in reference::layer_maps(arch, &p, x).iter().enumerate() {
                let s = arch.layers()[l];
                let got_pre = to64(&maps[l].pre[i * s.cout * s.hw()..(i + 1) * s.cout * s.hw()]);
                let got_out =
                    to64(&maps[l].pooled[i * s.cout * s.out_hw()..(i + 1) * s.cout * s.out_hw()]);
                assert!(rel_err(&got_pre, pre) < 1e-5, "seed {seed} layer {l} pre");
                assert!(
                    rel_err(&got_out, out) < 1e-5 || out.iter().all(|&v| v == 0.0),
                    "seed {seed} layer {l} pooled"
                );
            }
        }
        for (l, m) in maps.iter().enumerate() {
            if arch.activation == Activation::Relu {
                assert!(
                    m.pre.iter().zip(&m.post).all(|(z, y)| *y == z.max(0.0)),
                    "layer {l}"
                );
            }
        }
    }
}

/// Three easy classes: a bright bar on the left, the right, or the top of a noisy image.
fn bars(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = vec![0u8; n * 144];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let c = (i % 3) as u8;
        labels[i] = c;
        for y in 0..12 {
            for x in 0..12 {
                let on = match c {
                    0 => x < 4,
                    1 => x >= 8,
                    _ => y < 4,
                };
                let noise = (rng.next_u32() % 60) as u8;
                images[i * 144 + y * 12 + x] = if on { 180 + noise } else { noise };
            }
        }
    }
    (images, labels)
}

#[test]
fn training_learns_and_is_bitwise_reproducible_at_any_thread_count() {
    let (ti, tl) = bars(300, 1);
    let (vi, vl) = bars(90, 2);
    let train_d = Data {
        images: &ti,
        labels: &tl,
        height: 12,
        width: 12,
    };
    let val_d = Data {
        images: &vi,
        labels: &vl,
        height: 12,
        width: 12,
    };
    let arch = Arch::parse("4-4", 12, 12, 3).unwrap();
    let cfg = TrainConfig {
        epochs: 4,
        seed: 7,
        ..TrainConfig::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| train(&arch, &cfg, &train_d, &val_d, &mut Silent).unwrap())
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(
        one.model.params, two.model.params,
        "weights differ between 1 and 2 threads"
    );
    assert_eq!(
        one.history, two.history,
        "history differs between 1 and 2 threads"
    );
    assert_eq!(one, run(3));
    assert!(
        one.history.last().unwrap().val_acc > 0.95,
        "{:?}",
        one.history
    );
    let other = train(
        &arch,
        &TrainConfig {
            seed: 8,
            ..cfg.clone()
        },
        &train_d,
        &val_d,
        &mut Silent,
    )
    .unwrap();
    assert_ne!(one.model.params, other.model.params);
    // The trained weights' evaluation handed on is evaluating them again, bit for bit.
    let again = tinycnn::train::evaluate(&one.model, &val_d, cfg.scaling);
    assert_eq!(one.val.as_ref(), Some(&again));
    assert_eq!(
        one.val.as_ref().unwrap().loss.to_bits(),
        again.loss.to_bits()
    );
}

#[test]
fn gradient_norms_are_those_of_the_applied_updates() {
    // Plain SGD with one batch per epoch: the update of each weight tensor is lr times its
    // gradient, so the recorded norm must equal |w_after - w_before| / lr, tensor by tensor.
    let (ti, tl) = bars(60, 3);
    let d = Data {
        images: &ti,
        labels: &tl,
        height: 12,
        width: 12,
    };
    let arch = Arch::parse("3-2", 12, 12, 3).unwrap();
    let lr = 0.05;
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 60,
        optimizer: tinycnn::Optimizer::sgd(lr, 0.0),
        seed: 3,
        ..TrainConfig::default()
    };
    let before = Model::init(&arch, cfg.init, cfg.seed).unwrap();
    let after = train(&arch, &cfg, &d, &d, &mut Silent).unwrap();
    let norms = after.history[0].grad_norms.clone().expect("recorded");
    let layout = before.layout().clone();
    let tensors: Vec<_> = layout.conv_w.iter().chain([&layout.fc_w]).collect();
    assert_eq!(norms.len(), tensors.len());
    for (r, &got) in tensors.into_iter().zip(&norms) {
        let step: f64 = before.params[r.clone()]
            .iter()
            .zip(&after.model.params[r.clone()])
            .map(|(a, b)| ((b - a) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            / lr;
        assert!(got > 0.0);
        assert!((got - step).abs() <= 1e-4 * step, "{got} against {step}");
    }
}

/// A layer whose filters are all silent (biases far below zero, as a stuck run's dead layer)
/// leaves products of zeros, which the engine writes without multiplying (`silent.rs`, whose
/// tests check the bits per chunk): the gradient is still the f64 reference's.
#[test]
fn silent_layers_give_the_reference_gradient() {
    for (i, label) in ["16-16", "32-32", "8-16", "16-4", "16-8-8"]
        .iter()
        .enumerate()
    {
        for dead in 0..label.split('-').count() {
            let arch = Arch::parse(label, 28, 28, 3).unwrap();
            let mut model = Model::init(&arch, Init::Glorot, 40 + i as u64).unwrap();
            let layout = model.layout().clone();
            for p in &mut model.params[layout.conv_b[dead].clone()] {
                *p = -50.0;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let n = 9;
            let px = arch.height * arch.width;
            let images: Vec<u8> = (0..n * px).map(|_| (rng.next_u32() % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|_| (rng.next_u32() % 3) as u8).collect();
            let xs = scaled(&images, px);
            let p = reference::Params::of(&model);
            let want = reference::gradient(&arch, &p, &xs, &labels);
            let (_, grad) = loss_and_gradient(&model, &images, &labels, Scaling::Unit);
            assert!(
                rel_err(&to64(&grad), &want) < 1e-5,
                "{label} layer {dead} dead"
            );
            for r in layout.conv_w[..=dead].iter().chain(&layout.conv_b[..=dead]) {
                assert!(want[r.clone()].iter().all(|&v| v == 0.0));
            }
        }
    }
}
