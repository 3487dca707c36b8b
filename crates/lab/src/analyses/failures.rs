//! Failures by latent factor (the thesis's Table 12): the misclassified validation images with
//! their factors and prediction, and accuracy per class and per factor bin.
//!
//! A pure function of a model and a dataset; must not write files.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::data::dataset::Dataset;
use crate::models::training::engine_data;

/// A misclassified image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Index in the validation split.
    pub index: usize,
    pub true_class: String,
    pub predicted: String,
    /// `(factor, value)` for every factor of the dataset.
    pub factors: Vec<(String, f32)>,
}

/// Accuracy in one bin of one factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorBin {
    pub low: f32,
    pub high: f32,
    pub images: usize,
    pub accuracy: f64,
}

/// Failures by latent factor (the thesis's Table 12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    pub images: usize,
    pub accuracy: f64,
    pub failures: Vec<Failure>,
    /// Per varying factor, accuracy in equal-width bins.
    pub by_factor: Vec<(String, Vec<FactorBin>)>,
    /// Per class, accuracy.
    pub by_class: Vec<(String, f64)>,
}

/// Computes [`Failures`] on split `part` of `d` with `bins` bins per factor.
pub fn failures(model: &Model, d: &Dataset, part: Part, scaling: Scaling, bins: usize) -> Failures {
    let data = engine_data(d, part);
    let logits = tinycnn::train::logits(model, &data, scaling);
    let preds: Vec<usize> = logits
        .chunks(d.class_names.len())
        .map(tinycnn::train::prediction)
        .collect();
    of_predictions(d, part, &preds, bins)
}

/// [`Failures`] on split `part` of `d` from the class predicted for each of its images
/// (`preds [n]`), with `bins` bins per factor.
pub fn of_predictions(d: &Dataset, part: Part, preds: &[usize], bins: usize) -> Failures {
    let val = d.split(part);
    let kk = d.class_names.len();
    let k = d.factor_names.len();
    let ok: Vec<bool> = preds
        .iter()
        .zip(&val.labels)
        .map(|(&p, &y)| p == y as usize)
        .collect();
    let failures = (0..val.len())
        .filter(|&i| !ok[i])
        .map(|i| Failure {
            index: i,
            true_class: d.class_names[val.labels[i] as usize].clone(),
            predicted: d.class_names[preds[i]].clone(),
            factors: (0..k)
                .map(|j| (d.factor_names[j].clone(), val.factors[i * k + j]))
                .collect(),
        })
        .collect();
    let mut by_factor = Vec::new();
    for j in (0..k).filter(|&j| d.factor_names[j] != "class") {
        let col: Vec<f32> = (0..val.len()).map(|i| val.factors[i * k + j]).collect();
        let Some(edges) = crate::data::bins::Bins::over(col.iter().copied(), bins) else {
            continue;
        };
        let mut count = vec![0usize; bins];
        let mut right = vec![0usize; bins];
        for (i, &v) in col.iter().enumerate() {
            let b = edges.of(v);
            count[b] += 1;
            right[b] += ok[i] as usize;
        }
        by_factor.push((
            d.factor_names[j].clone(),
            (0..bins)
                .map(|b| FactorBin {
                    low: edges.edges(b).0,
                    high: edges.edges(b).1,
                    images: count[b],
                    accuracy: if count[b] == 0 {
                        0.0
                    } else {
                        right[b] as f64 / count[b] as f64
                    },
                })
                .collect(),
        ));
    }
    let by_class = (0..kk)
        .map(|c| {
            let idx: Vec<usize> = (0..val.len())
                .filter(|&i| val.labels[i] as usize == c)
                .collect();
            let acc = if idx.is_empty() {
                0.0
            } else {
                idx.iter().filter(|&&i| ok[i]).count() as f64 / idx.len() as f64
            };
            (d.class_names[c].clone(), acc)
        })
        .collect();
    Failures {
        images: val.len(),
        accuracy: ok.iter().filter(|&&x| x).count() as f64 / val.len().max(1) as f64,
        failures,
        by_factor,
        by_class,
    }
}
