//! Per-filter statistics over a dataset split: the numbers behind the activation sheets.
//!
//! For every conv filter, on its maps after the activation (before pooling), over every image
//! of the split:
//! - `mean`: mean activation over images and positions;
//! - `active_fraction`: fraction of (image, position) pairs where the activation is non-zero;
//! - `silent_fraction`: fraction of images on which the filter's whole map is zero (it is dead
//!   for that image);
//! - `per_class`: mean activation over the images of each class;
//! - `by_factor`: for each latent factor that varies in the split, the mean activation in
//!   equal-width bins of the factor's range (e.g. size or angle), with the bin counts.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::data::bins::Bins;
use crate::data::dataset::Dataset;

/// One bin of a factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub low: f32,
    pub high: f32,
    pub images: usize,
    /// Mean activation over the bin's images (NaN-free: 0 for an empty bin).
    pub mean: f64,
}

/// A filter's response along one factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorResponse {
    pub factor: String,
    pub bins: Vec<Bin>,
}

/// The statistics of one filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterStats {
    /// 1-based, as in the thesis (L1 F3).
    pub layer: usize,
    pub filter: usize,
    pub mean: f64,
    pub active_fraction: f64,
    pub silent_fraction: f64,
    /// Per class, in label order.
    pub per_class: Vec<f64>,
    pub by_factor: Vec<FactorResponse>,
}

/// Statistics of every filter of a model over a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterReport {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub split: String,
    pub images: usize,
    pub class_names: Vec<String>,
    pub filters: Vec<FilterStats>,
}

/// Images per capture batch: bounds memory whatever the split size (a 16-16's maps of 64 images
/// are about 9 MB). The sums run image by image, so the batch changes no result.
const BATCH: usize = 64;

/// Computes [`FilterReport`] for `model` on a split of `d`, with `bins` bins per factor.
///
/// # Shapes
/// `d`'s images must be the model's `H x W`.
pub fn filter_stats(
    model: &Model,
    d: &Dataset,
    part: Part,
    scaling: Scaling,
    bins: usize,
) -> FilterReport {
    let split = d.split(part);
    let n = split.len();
    let px = d.pixels();
    let k = d.factor_names.len();
    let layers = model.arch.layers();
    let classes = d.class_names.len();
    // Factors that vary in this split, with their ranges.
    let factors: Vec<(usize, Bins)> = (0..k)
        .filter(|&j| d.factor_names[j] != "class")
        .filter_map(|j| Some((j, Bins::over(split.factors.chunks(k).map(|r| r[j]), bins)?)))
        .collect();
    let class_count: Vec<usize> = (0..classes)
        .map(|c| split.labels.iter().filter(|&&l| l as usize == c).count())
        .collect();
    let mut bin_count = vec![vec![0usize; bins]; factors.len()];
    for r in split
        .factors
        .chunks(k.max(1))
        .take(if k == 0 { 0 } else { n })
    {
        for (fi, (j, b)) in factors.iter().enumerate() {
            bin_count[fi][b.of(r[*j])] += 1;
        }
    }
    // Accumulators per layer and filter.
    struct Acc {
        sum: f64,
        active: usize,
        silent: usize,
        class_sum: Vec<f64>,
        bin_sum: Vec<Vec<f64>>,
    }
    let mut acc: Vec<Vec<Acc>> = layers
        .iter()
        .map(|s| {
            (0..s.cout)
                .map(|_| Acc {
                    sum: 0.0,
                    active: 0,
                    silent: 0,
                    class_sum: vec![0.0; classes],
                    bin_sum: vec![vec![0.0; bins]; factors.len()],
                })
                .collect()
        })
        .collect();
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let (maps, _) =
            tinycnn::train::capture(model, &split.images[start * px..end * px], scaling);
        for (l, s) in layers.iter().enumerate() {
            let hw = s.hw();
            for img in 0..end - start {
                let i = start + img;
                let label = split.labels[i] as usize;
                for (f, a) in acc[l].iter_mut().enumerate() {
                    let m = &maps[l].post[(img * s.cout + f) * hw..][..hw];
                    let sum: f64 = m.iter().map(|&v| v as f64).sum();
                    let active = m.iter().filter(|&&v| v != 0.0).count();
                    a.sum += sum;
                    a.active += active;
                    a.silent += (active == 0) as usize;
                    let mean = sum / hw as f64;
                    a.class_sum[label] += mean;
                    for (fi, (j, b)) in factors.iter().enumerate() {
                        a.bin_sum[fi][b.of(split.factors[i * k + j])] += mean;
                    }
                }
            }
        }
    }
    let div = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    let mut filters = Vec::new();
    for (l, s) in layers.iter().enumerate() {
        for (f, a) in acc[l].iter().enumerate() {
            filters.push(FilterStats {
                layer: l + 1,
                filter: f + 1,
                mean: div(a.sum, n * s.hw()),
                active_fraction: div(a.active as f64, n * s.hw()),
                silent_fraction: div(a.silent as f64, n),
                per_class: (0..classes)
                    .map(|c| div(a.class_sum[c], class_count[c]))
                    .collect(),
                by_factor: factors
                    .iter()
                    .enumerate()
                    .map(|(fi, (j, edges))| FactorResponse {
                        factor: d.factor_names[*j].clone(),
                        bins: (0..bins)
                            .map(|b| Bin {
                                low: edges.edges(b).0,
                                high: edges.edges(b).1,
                                images: bin_count[fi][b],
                                mean: div(a.bin_sum[fi][b], bin_count[fi][b]),
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
    }
    FilterReport {
        schema: crate::files::schema::Schema::CURRENT,
        split: part.name().into(),
        images: n,
        class_names: d.class_names.clone(),
        filters,
    }
}

/// Per conv layer and filter, whether the filter's activation is zero everywhere on every
/// one of `images` (`[n, H, W]`): a silent (dead) filter on those images.
pub fn silent_filters(model: &Model, images: &[u8], scaling: Scaling) -> Vec<Vec<bool>> {
    let (maps, _) = tinycnn::train::capture(model, images, scaling);
    model
        .arch
        .layers()
        .iter()
        .zip(&maps)
        .map(|(s, m)| {
            let per = s.hw();
            let n = m.post.len() / (s.cout * per).max(1);
            (0..s.cout)
                .map(|f| {
                    (0..n).all(|i| {
                        m.post[(i * s.cout + f) * per..][..per]
                            .iter()
                            .all(|&v| v == 0.0)
                    })
                })
                .collect()
        })
        .collect()
}

impl FilterReport {
    /// The file the report is kept in: `filters-<split>.json`, the one name `shapelab
    /// filters` (beside the model) and the study (in each case's directory) both use.
    pub fn file_name(split: Part) -> String {
        format!("filters-{}.json", split.name())
    }

    /// Writes the report as pretty JSON to `dir/filters-<split>.json` (replacing an older
    /// one); returns the path and the text written.
    pub fn save(
        &self,
        dir: &std::path::Path,
        split: Part,
    ) -> crate::Result<(std::path::PathBuf, String)> {
        let json = serde_json::to_string_pretty(self).expect("json") + "\n";
        let path = dir.join(FilterReport::file_name(split));
        crate::files::fsio::write_file_atomic(&path, true, |w| {
            std::io::Write::write_all(w, json.as_bytes())
        })?;
        Ok((path, json))
    }

    /// The text table: one row per filter.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "per-filter statistics over {} {} images (after the activation)\n",
            self.images, self.split
        );
        out += &format!(
            "{:>6}  {:>9}  {:>7}  {:>7}",
            "filter", "mean", "active", "silent"
        );
        for c in &self.class_names {
            out += &format!("  {:>10}", format!("mean {}", crate::text::prefix(c, 5)));
        }
        out += "\n";
        for f in &self.filters {
            out += &format!(
                "{:>6}  {:>9.4}  {:>6.1}%  {:>6.1}%",
                format!("L{} F{}", f.layer, f.filter),
                f.mean,
                100.0 * f.active_fraction,
                100.0 * f.silent_fraction
            );
            for v in &f.per_class {
                out += &format!("  {v:>10.4}");
            }
            out += "\n";
        }
        if let Some(f) = self.filters.first() {
            for r in &f.by_factor {
                out += &format!("\nmean activation by {} bin:\n{:>6}", r.factor, "filter");
                for b in &r.bins {
                    out += &format!("  {:>11}", format!("{:.2}-{:.2}", b.low, b.high));
                }
                out += "\n";
                for f in &self.filters {
                    let resp = f
                        .by_factor
                        .iter()
                        .find(|x| x.factor == r.factor)
                        .expect("same factors");
                    out += &format!("{:>6}", format!("L{} F{}", f.layer, f.filter));
                    for b in &resp.bins {
                        out += &format!("  {:>11.4}", b.mean);
                    }
                    out += "\n";
                }
            }
        }
        out
    }

    /// The CSV view: one row per filter with per-class means and `factor[low-high]` columns.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = [
            "layer",
            "filter",
            "mean",
            "active_fraction",
            "silent_fraction",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        header.extend(self.class_names.iter().map(|c| format!("mean_{c}")));
        if let Some(f) = self.filters.first() {
            for r in &f.by_factor {
                header.extend(
                    r.bins
                        .iter()
                        .map(|b| format!("{}[{}-{}]", r.factor, b.low, b.high)),
                );
            }
        }
        w.write_record(&header).expect("in-memory csv");
        for f in &self.filters {
            let mut row = vec![
                f.layer.to_string(),
                f.filter.to_string(),
                f.mean.to_string(),
                f.active_fraction.to_string(),
                f.silent_fraction.to_string(),
            ];
            row.extend(f.per_class.iter().map(|v| v.to_string()));
            for r in &f.by_factor {
                row.extend(r.bins.iter().map(|b| b.mean.to_string()));
            }
            w.write_record(&row).expect("in-memory csv");
        }
        w.into_inner().expect("in-memory csv")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::Split;

    #[test]
    fn every_number_matches_a_direct_computation() {
        let arch = tinycnn::Arch::parse("3-2", 10, 10, 3).unwrap();
        let mut model = Model::init(&arch, tinycnn::Init::He, 9).unwrap();
        let r = model.layout().conv_b[0].clone();
        model.params[r].copy_from_slice(&[-0.3, 0.1, -5.0]); // F3 of layer 1 mostly silent
        let n = 300;
        let images: Vec<u8> = (0..n * 100).map(|i| ((i * 7919) % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        let factors: Vec<f32> = (0..n)
            .flat_map(|i| [(i % 3) as f32, 0.3 + (i % 7) as f32 * 0.1])
            .collect();
        let d = Dataset {
            height: 10,
            width: 10,
            class_names: vec!["a".into(), "b".into(), "c".into()],
            factor_names: vec!["class".into(), "size".into()],
            train: Split::default(),
            val: Split {
                images: images.clone(),
                labels: labels.clone(),
                factors: factors.clone(),
            },
            test: None,
            meta: None,
            skipped: Vec::new(),
        };
        let rep = filter_stats(&model, &d, Part::Val, Scaling::Unit, 3);
        assert_eq!(rep.filters.len(), 5);
        // Direct: one image at a time, plain loops.
        let (maps, _) = tinycnn::train::capture(&model, &images, Scaling::Unit);
        for fs in &rep.filters {
            let (l, f) = (fs.layer - 1, fs.filter - 1);
            let s = arch.layers()[l];
            let hw = s.hw();
            let map = |i: usize| &maps[l].post[(i * s.cout + f) * hw..][..hw];
            let mean: f64 = (0..n)
                .map(|i| map(i).iter().map(|&v| v as f64).sum::<f64>())
                .sum::<f64>()
                / (n * hw) as f64;
            let active = (0..n)
                .map(|i| map(i).iter().filter(|&&v| v > 0.0).count())
                .sum::<usize>() as f64
                / (n * hw) as f64;
            let silent =
                (0..n).filter(|&i| map(i).iter().all(|&v| v == 0.0)).count() as f64 / n as f64;
            assert!((fs.mean - mean).abs() < 1e-9, "{fs:?}");
            assert!((fs.active_fraction - active).abs() < 1e-12);
            assert!((fs.silent_fraction - silent).abs() < 1e-12);
            for c in 0..3 {
                let imgs: Vec<usize> = (0..n).filter(|&i| labels[i] as usize == c).collect();
                let m = imgs
                    .iter()
                    .map(|&i| map(i).iter().map(|&v| v as f64).sum::<f64>() / hw as f64)
                    .sum::<f64>()
                    / imgs.len() as f64;
                assert!((fs.per_class[c] - m).abs() < 1e-9);
            }
            // size spans 0.3..0.9 in 3 bins of 0.2: values 0.3,0.4 | 0.5,0.6 | 0.7,0.8,0.9
            let resp = &fs.by_factor[0];
            assert_eq!(resp.factor, "size");
            let want_counts: Vec<usize> = (0..3)
                .map(|b| {
                    (0..n)
                        .filter(|&i| {
                            (((factors[2 * i + 1] - 0.3) / 0.6 * 3.0) as usize).min(2) == b
                        })
                        .count()
                })
                .collect();
            assert_eq!(
                resp.bins.iter().map(|b| b.images).collect::<Vec<_>>(),
                want_counts
            );
            assert_eq!(want_counts.iter().sum::<usize>(), n);
        }
        let l1f3 = &rep.filters[2];
        assert!(
            l1f3.silent_fraction > 0.5,
            "a bias of -5 silences it: {l1f3:?}"
        );
        assert!(rep.to_text().contains("L1 F3"));
        assert!(String::from_utf8(rep.to_csv())
            .unwrap()
            .starts_with("layer,filter,mean,active_fraction,silent_fraction,mean_a"));
    }
}
