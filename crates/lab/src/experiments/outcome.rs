//! What became of a run: learned, stuck, partial or diverged, and why a stuck run is stuck.
//!
//! The thesis saw runs end at 1.0 or stop at 0.333 or 0.667 with one or two classes never
//! predicted, and asked whether those were local minima (its future work 4). Classification:
//! - `diverged`: the loss became NaN or infinite;
//! - `learned`: final validation accuracy at least the threshold (0.99 by default);
//! - `collapsed`: below it at the end after being at least `COLLAPSE` higher at some epoch,
//!   with some class starved: it learned (or nearly), then fell to a plateau;
//! - `stuck`: below it, and some class is starved: predicted on fewer than 1% of the
//!   validation images (never, or on a handful, as in the thesis's 0.667 stall where one class
//!   is almost never predicted); the plateau is then the accuracy, about 1/3 or 2/3 for three
//!   balanced classes;
//! - `partial`: below it, with every class predicted more often than that.
//!
//! A stuck run's diagnosis records the dead filters per layer (ReLU output zero on every
//! training image in the last epoch), the gradient norm at the plateau (per tensor and in all,
//! on up to 1,000 training images), the classes that collapse, and the epoch from which
//! validation accuracy stayed at the plateau.

use serde::{Deserialize, Serialize};
use tinycnn::{Ending, EpochStats, Evaluation, Model, Scaling};

/// A run's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Learned,
    Stuck,
    Collapsed,
    Partial,
    Diverged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Learned => "learned",
            Outcome::Stuck => "stuck",
            Outcome::Collapsed => "collapsed",
            Outcome::Partial => "partial",
            Outcome::Diverged => "diverged",
        }
    }

    /// The outcome named `name` (as [`Outcome::name`] writes it).
    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }

    /// All outcomes, in report order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Learned,
        Outcome::Stuck,
        Outcome::Collapsed,
        Outcome::Partial,
        Outcome::Diverged,
    ];
}

/// The classification of a finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub outcome: Outcome,
    /// Validation accuracy of a stuck run.
    pub plateau: Option<f64>,
    /// Classes starved on the validation split: predicted on fewer than 1% of its images.
    pub never_predicted: Vec<String>,
    /// First epoch (1-based) whose validation accuracy reached the threshold.
    pub epochs_to_learn: Option<usize>,
}

/// A class predicted on fewer than this share of the validation images counts as starved.
pub const STARVED: f64 = 0.01;

/// A run whose best epoch's validation accuracy was at least this much above its final one,
/// and ends starved, collapsed.
pub const COLLAPSE: f64 = 0.25;

/// Classifies a run from how it ended, its history and its final validation evaluation.
pub fn classify(
    ending: Ending,
    history: &[EpochStats],
    eval: &Evaluation,
    class_names: &[String],
    threshold: f64,
) -> Classified {
    let classes = eval.confusion.len();
    let predicted = |c: usize| eval.confusion.iter().map(|row| row[c]).sum::<usize>();
    let never_predicted: Vec<String> = (0..classes)
        .filter(|&c| eval.total > 0 && (predicted(c) as f64) < STARVED * eval.total as f64)
        .map(|c| {
            class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("class{c}"))
        })
        .collect();
    let epochs_to_learn = history
        .iter()
        .find(|e| e.val_acc >= threshold)
        .map(|e| e.epoch);
    let outcome = if ending == Ending::Diverged || !eval.loss.is_finite() {
        Outcome::Diverged
    } else if eval.accuracy >= threshold {
        Outcome::Learned
    } else if !never_predicted.is_empty() {
        let best = history
            .iter()
            .map(|e| e.val_acc)
            .fold(f64::NEG_INFINITY, f64::max);
        if best >= eval.accuracy + COLLAPSE {
            Outcome::Collapsed
        } else {
            Outcome::Stuck
        }
    } else {
        Outcome::Partial
    };
    Classified {
        plateau: matches!(outcome, Outcome::Stuck | Outcome::Collapsed).then_some(eval.accuracy),
        never_predicted,
        epochs_to_learn,
        outcome,
    }
}

/// Why a stuck run is stuck.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Dead filters per conv layer in the last epoch.
    pub dead: Vec<usize>,
    /// Filters per conv layer, for the fractions.
    pub filters: Vec<usize>,
    /// L2 norm of the gradient of the mean loss, all parameters.
    pub grad_norm: f64,
    /// Per tensor, `(name, L2 norm)`.
    pub grad_norms: Vec<(String, f64)>,
    /// The training loss at which the gradient was measured.
    pub loss: f64,
    /// Classes never predicted on the validation split.
    pub collapsed: Vec<String>,
    /// The validation accuracy of the plateau.
    pub plateau: f64,
    /// First epoch from which validation accuracy stayed within 0.005 of the plateau.
    pub plateau_start: usize,
}

/// Diagnoses a stuck run from its final model, history and training images.
///
/// # Shapes
/// `images [n, H, W]`, `labels [n]`; at most the first 1,000 are used.
pub fn diagnose(
    model: &Model,
    history: &[EpochStats],
    images: &[u8],
    labels: &[u8],
    scaling: Scaling,
    c: &Classified,
) -> Diagnosis {
    let px = model.arch.height * model.arch.width;
    let n = labels.len().min(1000);
    let (loss, grad) =
        tinycnn::train::loss_and_gradient(model, &images[..n * px], &labels[..n], scaling);
    let norm = |g: &[f32]| {
        g.iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
    };
    let plateau = c.plateau.unwrap_or(0.0);
    let plateau_start = history
        .iter()
        .rposition(|e| (e.val_acc - plateau).abs() > 0.005)
        .map_or(1, |i| i + 2)
        .min(history.len().max(1));
    Diagnosis {
        dead: history.last().map(|e| e.dead.clone()).unwrap_or_default(),
        filters: model.arch.filters.clone(),
        grad_norm: norm(&grad),
        grad_norms: model
            .tensors()
            .into_iter()
            .map(|(name, _, r)| (name, norm(&grad[r])))
            .collect(),
        loss,
        collapsed: c.never_predicted.clone(),
        plateau,
        plateau_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(confusion: Vec<Vec<usize>>) -> Evaluation {
        let total: usize = confusion.iter().flatten().sum();
        let correct: usize = (0..confusion.len()).map(|i| confusion[i][i]).sum();
        Evaluation {
            loss: 1.0,
            accuracy: correct as f64 / total as f64,
            correct,
            total,
            confusion,
        }
    }

    fn epochs(accs: &[f64]) -> Vec<EpochStats> {
        accs.iter()
            .enumerate()
            .map(|(i, &a)| EpochStats {
                epoch: i + 1,
                train_loss: 1.0,
                train_acc: a,
                val_loss: 1.0,
                val_acc: a,
                dead: vec![0],
                grad_norms: None,
            })
            .collect()
    }

    fn names() -> Vec<String> {
        vec!["ellipse".into(), "rectangle".into(), "triangle".into()]
    }

    #[test]
    fn the_five_outcomes() {
        let c = classify(
            Ending::Completed,
            &epochs(&[0.5, 1.0]),
            &eval(vec![vec![10, 0, 0], vec![0, 10, 0], vec![0, 0, 10]]),
            &names(),
            0.99,
        );
        assert_eq!((c.outcome, c.epochs_to_learn), (Outcome::Learned, Some(2)));
        // Everything predicted as a rectangle: the thesis's 0.333.
        let c = classify(
            Ending::Completed,
            &epochs(&[0.33]),
            &eval(vec![vec![0, 10, 0], vec![0, 10, 0], vec![0, 10, 0]]),
            &names(),
            0.99,
        );
        assert_eq!(c.outcome, Outcome::Stuck);
        assert!((c.plateau.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.never_predicted, vec!["ellipse", "triangle"]);
        // Two classes told apart, the third never predicted: 0.667.
        let c = classify(
            Ending::Completed,
            &epochs(&[0.6]),
            &eval(vec![vec![10, 0, 0], vec![0, 10, 0], vec![0, 10, 0]]),
            &names(),
            0.99,
        );
        assert_eq!(
            (c.outcome, c.never_predicted.clone()),
            (Outcome::Stuck, vec!["triangle".to_string()])
        );
        let c = classify(
            Ending::Completed,
            &epochs(&[0.9]),
            &eval(vec![vec![9, 1, 0], vec![0, 9, 1], vec![1, 0, 9]]),
            &names(),
            0.99,
        );
        assert_eq!(c.outcome, Outcome::Partial);
        // The thesis's 0.667: the third class predicted on 1 image of 300 (0.3%, starved).
        let c = classify(
            Ending::Completed,
            &epochs(&[0.66]),
            &eval(vec![vec![100, 0, 0], vec![0, 100, 0], vec![0, 99, 1]]),
            &names(),
            0.99,
        );
        assert_eq!(c.outcome, Outcome::Stuck);
        assert!((c.plateau.unwrap() - 201.0 / 300.0).abs() < 1e-12);
        assert_eq!(c.never_predicted, vec!["triangle"]);
        // 3 of 300 (1%) is predicted often enough: partial.
        let c = classify(
            Ending::Completed,
            &epochs(&[0.67]),
            &eval(vec![vec![100, 0, 0], vec![0, 100, 0], vec![0, 97, 3]]),
            &names(),
            0.99,
        );
        assert_eq!(c.outcome, Outcome::Partial);
        // 0.963 at epoch 2, then everything a rectangle: learned, then collapsed.
        let c = classify(
            Ending::Completed,
            &epochs(&[0.5, 0.963, 0.333]),
            &eval(vec![vec![0, 10, 0], vec![0, 10, 0], vec![0, 10, 0]]),
            &names(),
            0.99,
        );
        assert_eq!((c.outcome, c.epochs_to_learn), (Outcome::Collapsed, None));
        assert!(c.plateau.is_some());
        let c = classify(
            Ending::Diverged,
            &epochs(&[0.9]),
            &eval(vec![vec![9, 1, 0], vec![0, 9, 1], vec![1, 0, 9]]),
            &names(),
            0.99,
        );
        assert_eq!(c.outcome, Outcome::Diverged);
    }
}
