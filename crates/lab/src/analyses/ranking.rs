//! Ranking filters (thesis future work 1): per layer, the L1 norm of each filter's kernel (Li
//! et al. 2017, "Pruning Filters for Efficient ConvNets", the thesis's reference \[23\]), its
//! mean activation, and its first-order Taylor importance (Molchanov et al. 2017), each
//! compared with the greedy pruning order by Spearman's rho and Kendall's tau-b.
//!
//! A pure function of a model, a dataset and a pruning; must not write files.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::prune::Pruning;
use tinycnn::{Model, Scaling};

use crate::analyses::pruning::FilterRef;
use crate::analyses::stats::{kendall, spearman};
use crate::data::dataset::Dataset;

/// One filter's importance by each criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub filter: FilterRef,
    pub l1_norm: f64,
    pub mean_activation: f64,
    pub taylor: f64,
    /// The step at which greedy pruning removed it (`None`: it survived, the most important).
    pub pruned_at: Option<usize>,
}

/// Agreement of one criterion with the pruning order within one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub layer: usize,
    pub criterion: Criterion,
    pub spearman: Option<f64>,
    pub kendall: Option<f64>,
}

/// A way of ranking filters without pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// The L1 norm of the kernel (Li et al. 2017).
    L1Norm,
    /// The mean activation over the validation split.
    MeanActivation,
    /// First-order Taylor importance (Molchanov et al. 2017).
    Taylor,
}

impl Criterion {
    /// The name as stored and shown (`l1-norm`, `mean-activation`, `taylor`).
    pub fn name(self) -> &'static str {
        match self {
            Criterion::L1Norm => "l1-norm",
            Criterion::MeanActivation => "mean-activation",
            Criterion::Taylor => "taylor",
        }
    }
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Ranking of filters and its agreement with greedy pruning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub filters: Vec<Importance>,
    pub agreement: Vec<Agreement>,
}

/// Computes [`Ranking`]: importances on split `part` of `d` (the held-out split, so that the
/// criteria are measured on images that did not choose the pruning order) and agreement with
/// `pruning` (pruning importance: the step a filter was removed at, survivors last). `stats`
/// must be measured on the same split.
pub fn ranking(
    model: &Model,
    d: &Dataset,
    part: Part,
    scaling: Scaling,
    pruning: &Pruning,
    stats: &crate::inside::filterstats::FilterReport,
) -> Ranking {
    let val = d.split(part);
    let taylor = tinycnn::train::taylor_importance(model, &val.images, &val.labels, scaling);
    let steps = pruning.steps.len();
    let mut filters = Vec::new();
    for (l, s) in model.arch.layers().iter().enumerate() {
        let k2 = model.arch.kernel * model.arch.kernel;
        let w = model.conv_weight(l);
        for f in 0..s.cout {
            let l1 = w[f * s.cin * k2..(f + 1) * s.cin * k2]
                .iter()
                .map(|v| v.abs() as f64)
                .sum();
            let pruned_at = pruning
                .steps
                .iter()
                .position(|st| st.removed.contains(&(l, f)))
                .map(|i| i + 1);
            filters.push(Importance {
                filter: FilterRef::of((l, f)),
                l1_norm: l1,
                mean_activation: stats
                    .filters
                    .iter()
                    .find(|x| x.layer == l + 1 && x.filter == f + 1)
                    .map_or(0.0, |x| x.mean),
                taylor: taylor[l][f],
                pruned_at,
            });
        }
    }
    let mut agreement = Vec::new();
    for l in 1..=model.arch.filters.len() {
        let fs: Vec<&Importance> = filters.iter().filter(|x| x.filter.layer == l).collect();
        let order: Vec<f64> = fs
            .iter()
            .map(|x| x.pruned_at.unwrap_or(steps + 1) as f64)
            .collect();
        for (name, v) in [
            (
                Criterion::L1Norm,
                fs.iter().map(|x| x.l1_norm).collect::<Vec<_>>(),
            ),
            (
                Criterion::MeanActivation,
                fs.iter().map(|x| x.mean_activation).collect(),
            ),
            (Criterion::Taylor, fs.iter().map(|x| x.taylor).collect()),
        ] {
            agreement.push(Agreement {
                layer: l,
                criterion: name,
                spearman: spearman(&v, &order),
                kendall: kendall(&v, &order),
            });
        }
    }
    Ranking { filters, agreement }
}
