//! Logits files: what `shapelab predict --data ... --out LOGITS.npz` writes, and activation
//! files: what `shapelab filters --npz FILE` writes (`x`, `y`, `factors`, `factor_names`,
//! `class_names`, and per conv layer `l1_pre`, `l1_post`, `l1_pooled` as float32 `(N, C, H, W)`).
//!
//! | array | dtype | shape |
//! |---|---|---|
//! | `logits` | float32 | (N, classes), in dataset order |
//! | `y` | uint8 | (N,) the true labels |
//! | `class_names` | unicode | (classes,) |

use std::path::Path;

use crate::error::Result;
use crate::files::fsio::write_file_atomic;
use crate::files::npz::NpzWriter;

/// One image's prediction: probabilities by softmax of its logits, and the most probable
/// class (the lowest class index wins an exact tie).
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Index into the class names.
    pub best: usize,
    /// `[K]`, summing to 1.
    pub probabilities: Vec<f64>,
    /// `[K]`, as the network computed them.
    pub logits: Vec<f32>,
}

/// Predictions from logits `[n, K]` (a numerically stable softmax in f64 per row).
pub fn predictions(logits: &[f32], classes: usize) -> Vec<Prediction> {
    logits
        .chunks(classes)
        .map(|l| {
            let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = l.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let probabilities: Vec<f64> = e.into_iter().map(|v| v / sum).collect();
            let best = (0..classes)
                .max_by(|&a, &b| {
                    probabilities[a]
                        .total_cmp(&probabilities[b])
                        .then(b.cmp(&a))
                })
                .expect("at least one class");
            Prediction {
                best,
                probabilities,
                logits: l.to_vec(),
            }
        })
        .collect()
}

/// Writes logits `[n, K]` with their labels, atomically.
pub fn write_logits(
    path: &Path,
    force: bool,
    logits: &[f32],
    labels: &[u8],
    class_names: &[String],
) -> Result<()> {
    let (n, k) = (labels.len() as u64, class_names.len() as u64);
    debug_assert_eq!(logits.len() as u64, n * k);
    let names: Vec<&str> = class_names.iter().map(String::as_str).collect();
    write_file_atomic(path, force, |out| {
        let mut z = NpzWriter::new(out);
        z.add_f32("logits", &[n, k], logits)?;
        z.add_u8("y", &[n], labels)?;
        z.add_strings("class_names", &[k], &names)?;
        z.finish()?;
        Ok(())
    })
}

/// Writes every layer's maps of a split (see the module docs), atomically.
pub fn write_activations(
    path: &Path,
    force: bool,
    model: &tinycnn::Model,
    d: &crate::Dataset,
    part: shapes::Split,
    scaling: tinycnn::Scaling,
) -> Result<()> {
    let s = d.split(part);
    let (maps, _) = tinycnn::train::capture(model, &s.images, scaling);
    let n = s.len() as u64;
    let k = d.factor_names.len() as u64;
    let names: Vec<&str> = d.class_names.iter().map(String::as_str).collect();
    let fnames: Vec<&str> = d.factor_names.iter().map(String::as_str).collect();
    write_file_atomic(path, force, |out| {
        let mut z = NpzWriter::new(out);
        z.add_u8("x", &[n, d.height as u64, d.width as u64], &s.images)?;
        z.add_u8("y", &[n], &s.labels)?;
        if k > 0 {
            z.add_f32("factors", &[n, k], &s.factors)?;
            z.add_strings("factor_names", &[k], &fnames)?;
        }
        z.add_strings("class_names", &[names.len() as u64], &names)?;
        for (l, (m, sh)) in maps.iter().zip(model.arch.layers()).enumerate() {
            let (c, h, w, oh, ow) = (
                sh.cout as u64,
                sh.h as u64,
                sh.w as u64,
                sh.out_h as u64,
                sh.out_w as u64,
            );
            z.add_f32(&format!("l{}_pre", l + 1), &[n, c, h, w], &m.pre)?;
            z.add_f32(&format!("l{}_post", l + 1), &[n, c, h, w], &m.post)?;
            z.add_f32(&format!("l{}_pooled", l + 1), &[n, c, oh, ow], &m.pooled)?;
        }
        z.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_ties() {
        let p = predictions(&[0.0, 0.0, 1000.0, 2.0, 2.0, -1.0], 3);
        assert_eq!(p[0].best, 2);
        assert!((p[0].probabilities[2] - 1.0).abs() < 1e-12, "no overflow");
        assert_eq!(p[1].best, 0, "a tie goes to the lower class");
        assert!((p[1].probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(p[1].logits, vec![2.0, 2.0, -1.0]);
    }
}
