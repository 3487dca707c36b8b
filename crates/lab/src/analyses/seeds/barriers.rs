//! Is the loss barrier between two seeds a matter of filter order? Over a sweep's grid, pairs
//! of learned runs of each cell (dataset, architecture, condition) are joined by a straight
//! line in weight space, as trained and with the second permuted onto the first (Git
//! Re-Basin's activation matching, Ainsworth et al. 2022; barriers as in Frankle et al. 2020),
//! and the barriers are set against the architecture's width.
//!
//! The pairs are disjoint (seeds 1 and 2, 3 and 4, ... of the cell's learned runs in seed
//! order), so they are independent samples. The matching is chosen on one split (validation),
//! the barriers measured on another (the held-out split). The control for the aligned barrier
//! is the same pair's barrier as trained: alignment is not chosen to lower the loss (it
//! matches activations), so the aligned barrier is not lower by construction. Summaries are
//! per dataset and condition, never pooled across them.
//!
//! A pure function of models and a dataset, plus the files it writes; must not know stores.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;

use super::compare::{align, mean, paths, permutations, Alignment, Side};
use super::correlation::Captured;
use crate::analyses::stats::{nearest_rank, spearman, wilson};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::models::training::engine_data;

/// How the grid's barriers are measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Disjoint pairs of learned runs per cell, at most.
    pub pairs: usize,
    /// Points on each straight line, ends included.
    pub points: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            pairs: 2,
            points: 11,
        }
    }
}

/// One pair of runs of a cell: its barriers as trained and aligned, on the measured split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairBarrier {
    pub a: String,
    pub b: String,
    /// The two runs' seed indices.
    pub seeds: (usize, usize),
    pub loss_before: f64,
    pub loss_after: f64,
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// Per layer, the mean correlation of matched filters on the measured split.
    pub matched: Vec<f64>,
    /// Filters the alignment moved, over all layers: 0 when the matching kept the order, so
    /// that both lines are one and the barrier cannot change.
    pub moved: usize,
}

/// A cell of the grid and its pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellBarriers {
    pub dataset: String,
    pub condition: String,
    pub arch: String,
    /// Filters per conv layer.
    pub filters: Vec<usize>,
    /// Learned runs of the cell (the pairs are drawn from them).
    pub learned: usize,
    pub pairs: Vec<PairBarrier>,
}

impl CellBarriers {
    /// The width the barriers are set against: the cell's filters summed over its layers.
    pub fn width(&self) -> usize {
        self.filters.iter().sum()
    }
}

/// The barriers of a grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Barriers {
    pub schema: crate::files::schema::Schema<1>,
    pub chosen_on: Part,
    pub split: Part,
    pub settings: Settings,
    pub cells: Vec<CellBarriers>,
}

/// The run indices of the disjoint pairs of `learned` runs (in seed order): `(0, 1), (2, 3)`,
/// at most `max`.
pub fn disjoint_pairs(learned: usize, max: usize) -> Vec<(usize, usize)> {
    (0..learned / 2)
        .take(max)
        .map(|i| (2 * i, 2 * i + 1))
        .collect()
}

/// One pair measured: B matched to A on `choose`, and both lines measured on `split`.
///
/// # Shapes
/// Maps per layer `[n, C, H, W]` for the `n` images of a split; correlations `[C, C]`.
pub fn pair(
    a: &Side,
    b: &Side,
    seeds: (usize, usize),
    d: &Dataset,
    (choose, split): (Part, Part),
    points: usize,
) -> Result<PairBarrier> {
    if a.model.arch != b.model.arch || a.scaling != b.scaling {
        return Err(Error::Usage(format!(
            "{} and {} differ in architecture or input scaling; a barrier needs runs of one cell",
            a.name, b.name
        )));
    }
    let (chosen, measured) = (d.split(choose), d.split(split));
    let images = (&chosen.images[..], &measured.images[..]);
    let (on_chosen, on_measured) = Captured::both(a.model, a.scaling, images);
    let Alignment { picks, matched, .. } = align(
        (&on_chosen, &on_measured),
        (b.model, b.scaling),
        images,
        false,
    );
    let perms = permutations(&picks);
    let aligned = b.model.permuted(&perms)?;
    let data = engine_data(d, split);
    let path = paths((a.model, b.model, &aligned), &data, a.scaling, points)?;
    Ok(PairBarrier {
        a: a.name.into(),
        b: b.name.into(),
        seeds,
        loss_before: path.loss_barrier_before,
        loss_after: path.loss_barrier_after,
        accuracy_before: path.accuracy_barrier_before,
        accuracy_after: path.accuracy_barrier_after,
        matched: matched.iter().map(|m| mean(m.iter().copied())).collect(),
        moved: perms
            .iter()
            .flat_map(|p| p.iter().enumerate())
            .filter(|(i, j)| i != *j)
            .count(),
    })
}

/// A dataset and condition's pairs, summarised.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub dataset: String,
    pub condition: String,
    pub cells: usize,
    pub pairs: usize,
    /// Pairs whose alignment kept every filter in place (their barrier cannot change).
    pub unmoved: usize,
    /// Of the others, the pairs whose loss barrier alignment lowered, and its Wilson 95%
    /// interval.
    pub lowered: usize,
    pub lowered_interval: (f64, f64),
    /// Loss barriers as trained and aligned: (25th, 50th, 75th percentile, nearest rank).
    pub before: (f64, f64, f64),
    pub after: (f64, f64, f64),
    /// Spearman correlation of width with the aligned loss barrier over the pairs, with its
    /// approximate 95% interval (Fisher z with standard error 1.06 / sqrt(n - 3), Fieller et
    /// al. 1957); absent under 5 pairs or when either is constant.
    pub width_rho: Option<(f64, f64, f64)>,
}

impl Barriers {
    /// The (dataset, condition) groups in order of first appearance.
    pub fn groups(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = Vec::new();
        for c in &self.cells {
            let g = (c.dataset.as_str(), c.condition.as_str());
            if !v.contains(&g) {
                v.push(g);
            }
        }
        v
    }

    /// The cells of one dataset and condition with at least one pair, narrowest first.
    pub fn cells_of(&self, dataset: &str, condition: &str) -> Vec<&CellBarriers> {
        let mut v: Vec<&CellBarriers> = self
            .cells
            .iter()
            .filter(|c| c.dataset == dataset && c.condition == condition && !c.pairs.is_empty())
            .collect();
        v.sort_by_key(|c| (c.width(), c.filters.len(), c.filters.clone()));
        v
    }

    /// One dataset and condition summarised; `None` when it has no pair.
    pub fn summary(&self, dataset: &str, condition: &str) -> Option<Summary> {
        let cells = self.cells_of(dataset, condition);
        let pairs: Vec<(usize, &PairBarrier)> = cells
            .iter()
            .flat_map(|c| c.pairs.iter().map(move |p| (c.width(), p)))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let quartiles = |f: &dyn Fn(&PairBarrier) -> f64| {
            let mut v: Vec<f64> = pairs.iter().map(|(_, p)| f(p)).collect();
            v.sort_by(f64::total_cmp);
            (
                nearest_rank(&v, 0.25),
                nearest_rank(&v, 0.5),
                nearest_rank(&v, 0.75),
            )
        };
        let unmoved = pairs.iter().filter(|(_, p)| p.moved == 0).count();
        let lowered = pairs
            .iter()
            .filter(|(_, p)| p.moved > 0 && p.loss_after < p.loss_before)
            .count();
        let widths: Vec<f64> = pairs.iter().map(|(w, _)| *w as f64).collect();
        let after: Vec<f64> = pairs.iter().map(|(_, p)| p.loss_after).collect();
        Some(Summary {
            dataset: dataset.into(),
            condition: condition.into(),
            cells: cells.len(),
            pairs: pairs.len(),
            unmoved,
            lowered,
            lowered_interval: wilson(lowered, pairs.len() - unmoved),
            before: quartiles(&|p| p.loss_before),
            after: quartiles(&|p| p.loss_after),
            width_rho: rho_interval(&widths, &after),
        })
    }

    /// Writes `barriers.json`, `barriers.csv` and a figure per dataset and condition
    /// (`barriers-DATASET-CONDITION.png`) into `out`; returns the files written.
    pub fn write(&self, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        let mut written =
            crate::files::fsio::write_json_and_csv(out, "barriers", self, self.to_csv())?;
        for (dataset, condition) in self.groups() {
            let cells = self.cells_of(dataset, condition);
            if cells.is_empty() {
                continue;
            }
            let p = out.join(figure_name(dataset, condition));
            super::figures::barriers(&format!("{dataset}, {condition}"), &cells).save_png(&p)?;
            written.push(p);
        }
        Ok(written)
    }

    /// One row per pair.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "dataset",
            "condition",
            "arch",
            "width",
            "seed_a",
            "seed_b",
            "moved",
            "loss_barrier_before",
            "loss_barrier_after",
            "accuracy_barrier_before",
            "accuracy_barrier_after",
        ])
        .expect("in-memory csv");
        for c in &self.cells {
            for p in &c.pairs {
                w.write_record([
                    c.dataset.clone(),
                    c.condition.clone(),
                    c.arch.clone(),
                    c.width().to_string(),
                    p.seeds.0.to_string(),
                    p.seeds.1.to_string(),
                    p.moved.to_string(),
                    format!("{:.6}", p.loss_before),
                    format!("{:.6}", p.loss_after),
                    format!("{:.6}", p.accuracy_before),
                    format!("{:.6}", p.accuracy_after),
                ])
                .expect("in-memory csv");
            }
        }
        w.into_inner().expect("in-memory csv")
    }
}

/// The figure of one dataset and condition.
pub fn figure_name(dataset: &str, condition: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("barriers-{}-{}.png", safe(dataset), safe(condition))
}

/// Spearman's rho of `x` and `y` with the Fisher-z interval of Fieller et al. (1957).
fn rho_interval(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    let n = x.len();
    if n < 5 {
        return None;
    }
    let rho = spearman(x, y)?;
    let z = rho.clamp(-0.999_999, 0.999_999).atanh();
    let se = 1.06 / ((n - 3) as f64).sqrt();
    Some((rho, (z - 1.96 * se).tanh(), (z + 1.96 * se).tanh()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run and a permuted copy of itself: the alignment undoes the permutation, so the
    /// aligned line is the run itself all along (barrier 0) and the matched filters are equal.
    #[test]
    fn a_permuted_copy_has_no_barrier_after_alignment() {
        use super::super::compare::tests::{data, trained};
        let d = data();
        let m = trained(&d, "6-5", 1);
        let copy = m
            .permuted(&[vec![4, 2, 5, 0, 1, 3], vec![3, 0, 4, 2, 1]])
            .unwrap();
        let side = |name, model| Side {
            name,
            model,
            scaling: tinycnn::Scaling::Unit,
        };
        let p = pair(
            &side("a", &m),
            &side("b", &copy),
            (1, 2),
            &d,
            (Part::Val, Part::Test),
            5,
        )
        .unwrap();
        assert_eq!((p.loss_after, p.accuracy_after), (0.0, 0.0));
        assert!(p.loss_before > 0.0);
        assert!(p.matched.iter().all(|&r| r > 0.999999), "{:?}", p.matched);
        assert_eq!(p.moved, 6 + 5);
        // Runs of two cells are refused.
        let other = trained(&d, "3-5", 2);
        let e = pair(
            &side("a", &m),
            &side("c", &other),
            (1, 2),
            &d,
            (Part::Val, Part::Test),
            5,
        )
        .unwrap_err();
        assert!(e.to_string().contains("one cell"), "{e}");
    }

    #[test]
    fn pairs_are_disjoint_and_capped() {
        assert_eq!(disjoint_pairs(5, 2), vec![(0, 1), (2, 3)]);
        assert_eq!(disjoint_pairs(5, 1), vec![(0, 1)]);
        assert_eq!(disjoint_pairs(1, 2), Vec::<(usize, usize)>::new());
        assert_eq!(disjoint_pairs(4, 9), vec![(0, 1), (2, 3)]);
    }

    fn cell(arch: &str, filters: Vec<usize>, before: f64, after: f64) -> CellBarriers {
        CellBarriers {
            dataset: "d".into(),
            condition: "c".into(),
            arch: arch.into(),
            filters,
            learned: 2,
            pairs: vec![PairBarrier {
                a: "a".into(),
                b: "b".into(),
                seeds: (1, 2),
                loss_before: before,
                loss_after: after,
                accuracy_before: 0.0,
                accuracy_after: 0.0,
                matched: vec![],
                moved: usize::from(before != after),
            }],
        }
    }

    #[test]
    fn summary_counts_lowered_pairs_and_orders_cells_by_width() {
        let b = Barriers {
            schema: crate::files::schema::Schema::CURRENT,
            chosen_on: Part::Val,
            split: Part::Test,
            settings: Settings::default(),
            cells: vec![
                cell("16", vec![16], 1.0, 0.1),
                cell("2", vec![2], 1.0, 0.9),
                cell("8", vec![8], 1.0, 0.3),
                cell("4", vec![4], 1.0, 0.5),
                cell("2-2", vec![2, 2], 0.2, 0.4),
            ],
        };
        let order: Vec<&str> = b
            .cells_of("d", "c")
            .iter()
            .map(|c| c.arch.as_str())
            .collect();
        assert_eq!(order, ["2", "4", "2-2", "8", "16"]);
        let s = b.summary("d", "c").expect("pairs");
        assert_eq!((s.cells, s.pairs, s.unmoved, s.lowered), (5, 5, 0, 4));
        assert_eq!(s.before.1, 1.0);
        let rho = s.width_rho.expect("five pairs").0;
        assert!(rho < -0.8, "{rho}");
        assert!(b.summary("d", "other").is_none());
    }
}
