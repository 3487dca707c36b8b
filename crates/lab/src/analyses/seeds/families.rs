//! Which filters does every run of a cell learn, and which are one seed's own? Every run of
//! one dataset, architecture and training condition aligned to a reference run, and the
//! reference's filters read as families: a run has family `i` when its filter matched to the
//! reference's filter `i` correlates with it above what initial filters reach for that same
//! filter.
//!
//! The method follows convergent learning (Li, Yosinski et al. 2016: one-to-one matching of
//! units by activation correlation), with a measured null: the same matching of the reference
//! with Glorot initialisations of the architecture. Each reference filter has its own bar, the
//! 95th percentile (nearest rank) of its matched correlation over the initialisations: a blur
//! that any random filter approximates needs a near-perfect match, an edge detector that no
//! random filter resembles a much weaker one. The matching is chosen on one split (validation) and
//! the correlations measured on another (the held-out test split). The reference is the
//! learned run with the lowest seed index; a family's share counts the other learned runs
//! only, since the reference has all of its own filters by construction. Runs that did not
//! learn are aligned the same way and counted apart: a family that learned runs have and
//! stuck runs lack shows as a difference of shares with its interval.
//!
//! Also per layer: debiased linear CKA between every two runs ([`cka`](super::cka)), on the
//! first `cka_images` images of the measured split, and of the reference with the
//! initialisations.
//!
//! A pure function of models and a dataset; must not know stores or write files.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use super::cka;
use super::compare::{grams, mean, permutations, NULL_SEEDS};
use super::correlation::Captured;
use crate::analyses::stats::{median_range, newcombe, wilson};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

/// How families are found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Glorot initialisations matched with the reference, as the null.
    pub null_seeds: u64,
    /// Images of the measured split the CKA matrix is computed on (at most).
    pub cka_images: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            null_seeds: 20,
            cka_images: 300,
        }
    }
}

/// One run of the cell.
pub struct Member<'a> {
    pub key: &'a str,
    pub seed: usize,
    pub learned: bool,
    pub model: &'a Model,
    pub scaling: Scaling,
    /// Its dissection's label per layer and filter, when it was dissected.
    pub labels: Option<Vec<Vec<Option<String>>>>,
}

/// A run's filter in a family: the run, its filter (1-based) and the correlation with the
/// reference's filter on the measured split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub run: String,
    pub filter: usize,
    pub correlation: f64,
}

/// One family: the reference's filter and the runs whose matched filter clears the bar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// The reference's filter, 1-based.
    pub filter: usize,
    /// Constant over the measured images in the reference (a dead filter): a family of no
    /// one, since it correlates with nothing.
    pub silent: bool,
    /// The bar a run's matched filter must reach: the 95th percentile of the initialisations'
    /// matched correlations with this filter (`null`).
    pub bar: f64,
    pub null: Vec<f64>,
    /// Of the other learned runs, how many have it; the share with its 95% Wilson interval.
    pub learned_with: usize,
    pub learned_runs: usize,
    pub share: f64,
    pub interval: (f64, f64),
    /// Of the runs that did not learn, how many have it.
    pub stuck_with: usize,
    pub stuck_runs: usize,
    /// Learned share minus not-learned share, with Newcombe's 95% interval; absent without
    /// runs that did not learn.
    pub difference: Option<(f64, f64, f64)>,
    /// The members' (and the reference's) kernel averaged after alignment, `[C_in, k, k]`.
    pub mean_kernel: Vec<f32>,
    /// The family's typical maps: on each image of [`Families::shown`], the map of the
    /// reference's filter and its members' matched filters, averaged, `[shown][H x W]`.
    pub typical_maps: Vec<Vec<f32>>,
    /// The most frequent dissection label among the reference and the members, and how
    /// many carry it, of how many were dissected.
    pub label: Option<(String, usize, usize)>,
    /// The mean correlation of the other learned runs' matched filters with it.
    pub mean_correlation: f64,
    /// Every learned run's matched filter, member or not.
    pub matches: Vec<Match>,
}

/// The families of one conv layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerFamilies {
    pub layer: usize,
    pub families: Vec<Family>,
    /// Filters of the other learned runs that belong to no family (a seed's own), and all.
    pub own: usize,
    pub filters: usize,
    /// CKA between every two runs (in [`Families::runs`] order), and of the reference with
    /// each initialisation.
    pub cka: Vec<Vec<f64>>,
    pub cka_null: Vec<f64>,
}

/// A run as the families list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub key: String,
    pub seed: usize,
    pub learned: bool,
}

/// The families of a cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Families {
    pub schema: crate::files::schema::Schema<1>,
    pub data: String,
    pub arch: String,
    pub condition: String,
    pub reference: String,
    pub chosen_on: Part,
    pub split: Part,
    pub images: usize,
    pub cka_images: usize,
    pub settings: Settings,
    pub runs: Vec<RunEntry>,
    /// The measured split's images whose maps show each family (its first image of each
    /// class), by index.
    pub shown: Vec<usize>,
    pub layers: Vec<LayerFamilies>,
}

/// What aligning one run to the reference gives: per layer, per reference filter, the run's
/// matched filter and their correlation on the measured split; and the run permuted.
struct Aligned {
    matched: Vec<Vec<(usize, f64)>>,
    model: Model,
}

/// A run aligned to the reference, whose maps over the choosing and the measuring images
/// are `reference`: matched on `choose`, measured on `measure`.
fn align(
    reference: (&Captured, &Captured),
    member: (&Model, Scaling),
    images: (&[u8], &[u8]),
) -> Result<Aligned> {
    let super::compare::Alignment { picks, matched, .. } =
        super::compare::align(reference, member, images, false);
    let matched = picks
        .iter()
        .zip(&matched)
        .map(|(pairs, r)| pairs.iter().zip(r).map(|(&(_, j), &r)| (j, r)).collect())
        .collect();
    Ok(Aligned {
        matched,
        model: member.0.permuted(&permutations(&picks))?,
    })
}

/// The families of `members` (one cell: same architecture; at least two learned runs) on
/// dataset `d`.
///
/// # Shapes
/// Maps per layer `[n, C, H, W]`; correlations `[C, C]`; kernels `[C_in, k, k]`.
pub fn families(
    members: &[Member],
    d: &Dataset,
    (choose, split): (Part, Part),
    settings: &Settings,
    (data, condition): (&str, &str),
) -> Result<Families> {
    let learned: Vec<&Member> = members.iter().filter(|m| m.learned).collect();
    if learned.len() < 2 {
        return Err(Error::Usage(format!(
            "the cell ({data}{}) has {} learned run{}; families need at least two",
            if condition.is_empty() {
                String::new()
            } else {
                format!(", {condition}")
            },
            learned.len(),
            if learned.len() == 1 { "" } else { "s" }
        )));
    }
    let reference = *learned.iter().min_by_key(|m| m.seed).expect("two runs");
    if let Some(m) = members
        .iter()
        .find(|m| m.model.arch != reference.model.arch)
    {
        return Err(Error::Usage(format!(
            "{} is a {} and {} a {}: a cell's runs share one architecture",
            m.key,
            m.model.arch.label(),
            reference.key,
            reference.model.arch.label()
        )));
    }
    let part = |p: Part| {
        d.try_split(p)
            .ok_or_else(|| Error::Usage(format!("{data} has no {} split", p.name())))
    };
    let (chosen, measured) = (part(choose)?, part(split)?);
    let others: Vec<&Member> = members.iter().filter(|m| m.key != reference.key).collect();
    let images = (&chosen.images[..], &measured.images[..]);
    // The reference's maps once, for every alignment.
    let (on_chosen, on_measured) = Captured::both(reference.model, reference.scaling, images);
    let captured = (&on_chosen, &on_measured);
    let aligned: Vec<Aligned> = others
        .par_iter()
        .map(|m| align(captured, (m.model, m.scaling), images))
        .collect::<Result<_>>()?;
    let null: Vec<Aligned> = (0..settings.null_seeds)
        .into_par_iter()
        .map(|s| {
            let init = Model::init(&reference.model.arch, tinycnn::Init::Glorot, NULL_SEEDS + s)?;
            align(captured, (&init, reference.scaling), images)
        })
        .collect::<Result<_>>()?;
    let px = d.pixels();
    let k = settings.cka_images.min(measured.len());
    if k < 4 {
        return Err(Error::Usage(format!(
            "CKA needs at least 4 images; the {} split of {data} has {}",
            split.name(),
            measured.len()
        )));
    }
    let cka_imgs = &measured.images[..k * px];
    let centred = |g: Vec<Vec<f64>>| -> Vec<cka::Centred> {
        g.iter().map(|x| cka::Centred::of(x, k)).collect()
    };
    let run_grams: Vec<Vec<cka::Centred>> = members
        .par_iter()
        .map(|m| centred(grams(m.model, cka_imgs, m.scaling)))
        .collect();
    let null_grams: Vec<Vec<cka::Centred>> = (0..settings.null_seeds)
        .into_par_iter()
        .map(|s| {
            let init = Model::init(&reference.model.arch, tinycnn::Init::Glorot, NULL_SEEDS + s)?;
            Ok(centred(grams(&init, cka_imgs, reference.scaling)))
        })
        .collect::<Result<_>>()?;
    let ref_index = members
        .iter()
        .position(|m| m.key == reference.key)
        .expect("a member");
    let shown = first_of_each_class(&measured.labels);
    let shown_images: Vec<u8> = shown
        .iter()
        .flat_map(|&i| measured.images[i * px..(i + 1) * px].iter().copied())
        .collect();
    // Every run's maps on the shown images, its filters in the reference's order.
    let maps_of = |m: &Model, s: Scaling| tinycnn::train::capture(m, &shown_images, s).0;
    let ref_maps = maps_of(reference.model, reference.scaling);
    let member_maps: Vec<Vec<tinycnn::train::LayerMaps>> = others
        .iter()
        .zip(&aligned)
        .map(|(m, a)| maps_of(&a.model, m.scaling))
        .collect();
    let layers = (0..reference.model.arch.filters.len())
        .map(|l| {
            let typical = |i: usize, f: &Family| -> Vec<Vec<f32>> {
                let s = reference.model.arch.layers()[l];
                let hw = s.hw();
                let sources: Vec<&Vec<f32>> = std::iter::once(&ref_maps[l].post)
                    .chain(
                        member_maps
                            .iter()
                            .zip(&others)
                            .zip(&aligned)
                            .filter(|((_, m), a)| {
                                m.learned && !f.silent && a.matched[l][i].1 >= f.bar
                            })
                            .map(|((mm, _), _)| &mm[l].post),
                    )
                    .collect();
                (0..shown.len())
                    .map(|img| {
                        let at = (img * s.cout + i) * hw;
                        (0..hw)
                            .map(|p| {
                                sources.iter().map(|m| m[at + p]).sum::<f32>()
                                    / sources.len() as f32
                            })
                            .collect()
                    })
                    .collect()
            };
            let families: Vec<Family> = (0..reference.model.arch.filters[l])
                .map(|i| {
                    let nulls: Vec<f64> = null.iter().map(|a| a.matched[l][i].1).collect();
                    let silent = on_measured.constant(l, i);
                    let mut f = family((l, i, silent), nulls, reference, &others, &aligned);
                    f.typical_maps = typical(i, &f);
                    f
                })
                .collect();
            let (mut own, mut filters) = (0, 0);
            for (_, a) in others.iter().zip(&aligned).filter(|(m, _)| m.learned) {
                filters += a.matched[l].len();
                own += (a.matched[l].iter().zip(&families))
                    .filter(|(x, f)| f.silent || x.1 < f.bar)
                    .count();
            }
            let cka_matrix = (0..members.len())
                .into_par_iter()
                .map(|x| {
                    (0..members.len())
                        .map(|y| run_grams[x][l].cka(&run_grams[y][l]))
                        .collect()
                })
                .collect();
            LayerFamilies {
                layer: l + 1,
                families,
                own,
                filters,
                cka: cka_matrix,
                cka_null: null_grams
                    .iter()
                    .map(|g| run_grams[ref_index][l].cka(&g[l]))
                    .collect(),
            }
        })
        .collect();
    Ok(Families {
        schema: crate::files::schema::Schema::CURRENT,
        data: data.into(),
        arch: reference.model.arch.label(),
        condition: condition.into(),
        reference: reference.key.into(),
        chosen_on: choose,
        split,
        images: measured.len(),
        cka_images: k,
        settings: settings.clone(),
        runs: members
            .iter()
            .map(|m| RunEntry {
                key: m.key.into(),
                seed: m.seed,
                learned: m.learned,
            })
            .collect(),
        shown,
        layers,
    })
}

/// The index of the first image of each class, in class order.
fn first_of_each_class(labels: &[u8]) -> Vec<usize> {
    let mut seen: Vec<(u8, usize)> = Vec::new();
    for (i, &c) in labels.iter().enumerate() {
        if !seen.iter().any(|&(k, _)| k == c) {
            seen.push((c, i));
        }
    }
    seen.sort_unstable();
    seen.into_iter().map(|(_, i)| i).collect()
}

/// The family of the reference's filter `i` of layer `l`.
fn family(
    (l, i, silent): (usize, usize, bool),
    mut null: Vec<f64>,
    reference: &Member,
    others: &[&Member],
    aligned: &[Aligned],
) -> Family {
    null.sort_by(f64::total_cmp);
    let bar = crate::analyses::stats::nearest_rank(&null, 0.95);
    let has = |a: &Aligned| !silent && a.matched[l][i].1 >= bar;
    let count = |learned: bool| {
        let runs: Vec<&Aligned> = others
            .iter()
            .zip(aligned)
            .filter(|(m, _)| m.learned == learned)
            .map(|(_, a)| a)
            .collect();
        (runs.iter().filter(|a| has(a)).count(), runs.len())
    };
    let ((lw, ln), (sw, sn)) = (count(true), count(false));
    let share = if ln == 0 { 0.0 } else { lw as f64 / ln as f64 };
    // The kernel of filter i in the reference and in every aligned member.
    let kernels: Vec<&[f32]> = std::iter::once(reference.model)
        .chain(
            aligned
                .iter()
                .zip(others)
                .filter(|(a, m)| m.learned && has(a))
                .map(|(a, _)| &a.model),
        )
        .map(|m| kernel(m, l, i))
        .collect();
    let mean_kernel = (0..kernels[0].len())
        .map(|x| kernels.iter().map(|k| k[x]).sum::<f32>() / kernels.len() as f32)
        .collect();
    let mut labels: Vec<Option<String>> = Vec::new();
    let mut dissected = 0;
    let mut note = |m: &Member, f: usize| {
        if let Some(ls) = &m.labels {
            dissected += 1;
            labels.push(ls.get(l).and_then(|v| v.get(f)).cloned().flatten());
        }
    };
    note(reference, i);
    for (m, a) in others.iter().zip(aligned) {
        if m.learned && has(a) {
            note(m, a.matched[l][i].0);
        }
    }
    Family {
        filter: i + 1,
        silent,
        bar,
        null,
        learned_with: lw,
        learned_runs: ln,
        share,
        interval: wilson(lw, ln),
        stuck_with: sw,
        stuck_runs: sn,
        difference: (sn > 0).then(|| newcombe(lw, ln, sw, sn)),
        mean_kernel,
        typical_maps: Vec::new(),
        label: most_common(&labels).map(|(s, c)| (s, c, dissected)),
        mean_correlation: mean(
            others
                .iter()
                .zip(aligned)
                .filter(|(m, _)| m.learned)
                .map(|(_, a)| a.matched[l][i].1),
        ),
        matches: others
            .iter()
            .zip(aligned)
            .filter(|(m, _)| m.learned)
            .map(|(m, a)| Match {
                run: m.key.into(),
                filter: a.matched[l][i].0 + 1,
                correlation: a.matched[l][i].1,
            })
            .collect(),
    }
}

/// Filter `f`'s kernel in conv layer `l`, `[C_in, k, k]`.
fn kernel(m: &Model, l: usize, f: usize) -> &[f32] {
    let w = m.conv_weight(l);
    let per = w.len() / m.arch.filters[l];
    &w[f * per..(f + 1) * per]
}

/// The most frequent label and its count (ties to the first in sorted order); none when no
/// one carries a label.
fn most_common(labels: &[Option<String>]) -> Option<(String, usize)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in labels.iter().flatten() {
        *counts.entry(l).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, c)| *c == best)
        .map(|(s, c)| (s.to_string(), c))
}

impl Families {
    /// A layer's CKA between every two learned runs (each pair once).
    pub fn learned_cka(&self, l: &LayerFamilies) -> Vec<f64> {
        (0..l.cka.len())
            .flat_map(|x| (x + 1..l.cka.len()).map(move |y| (x, y)))
            .filter(|&(x, y)| self.runs[x].learned && self.runs[y].learned)
            .map(|(x, y)| l.cka[x][y])
            .collect()
    }

    /// Per layer: the families by share, the seed-own filters, and the CKA between runs
    /// against the control's.
    pub fn to_text(&self) -> String {
        let learned = self.runs.iter().filter(|r| r.learned).count();
        let mut t = format!(
            "{} on {}{}: {} runs, {} learned; reference {}; matching chosen on {}, correlations measured on {} ({} images).\n",
            self.arch,
            self.data,
            if self.condition.is_empty() { String::new() } else { format!(" ({})", self.condition) },
            self.runs.len(),
            learned,
            self.reference,
            self.chosen_on.name(),
            self.split.name(),
            self.images
        );
        for l in &self.layers {
            t += &format!(
                "\nLayer {}: a run has a family when its filter matched to the reference's correlates with it at or above the bar, the 95th percentile of {} initialisations' matched correlations with that filter.\n",
                l.layer,
                self.settings.null_seeds
            );
            let mut order: Vec<&Family> = l.families.iter().collect();
            order.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.filter.cmp(&b.filter)));
            let silent: Vec<String> = order
                .iter()
                .filter(|f| f.silent)
                .map(|f| format!("F{}", f.filter))
                .collect();
            if !silent.is_empty() {
                t += &format!(
                    "  Silent in the reference (no family): {}.\n",
                    silent.join(", ")
                );
            }
            for f in order.into_iter().filter(|f| !f.silent) {
                let label = f
                    .label
                    .as_ref()
                    .map(|(s, c, n)| format!(" [{s}: {c} of {n} dissected]"))
                    .unwrap_or_default();
                t += &format!(
                    "  F{}{label}: bar r >= {:.3}; {} of {} other learned runs ({:.0}%, 95% CI {:.0}-{:.0}%), mean r {:.3}",
                    f.filter,
                    f.bar,
                    f.learned_with,
                    f.learned_runs,
                    100.0 * f.share,
                    100.0 * f.interval.0,
                    100.0 * f.interval.1,
                    f.mean_correlation
                );
                if let Some((d, lo, hi)) = f.difference {
                    t += &format!(
                        "; runs that did not learn {} of {} (difference {:+.0} points, 95% CI {:+.0} to {:+.0})",
                        f.stuck_with,
                        f.stuck_runs,
                        100.0 * d,
                        100.0 * lo,
                        100.0 * hi
                    );
                }
                t += "\n";
            }
            let pairs = self.learned_cka(l);
            t += &format!(
                "  Seed-own filters: {} of the other learned runs' {} filters ({:.0}%) match no family. CKA between learned runs: {}; the reference against initialisations: {}.\n",
                l.own,
                l.filters,
                100.0 * l.own as f64 / l.filters.max(1) as f64,
                spread(&pairs),
                spread(&l.cka_null)
            );
        }
        t
    }

    /// One row per family and learned run: layer, the reference's filter, the run, its
    /// matched filter, the correlation, and whether it clears the bar.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["layer", "family", "run", "filter", "correlation", "member"])
            .expect("in-memory csv");
        for l in &self.layers {
            for f in &l.families {
                for m in &f.matches {
                    w.write_record([
                        l.layer.to_string(),
                        f.filter.to_string(),
                        m.run.clone(),
                        m.filter.to_string(),
                        format!("{:.6}", m.correlation),
                        (!f.silent && m.correlation >= f.bar).to_string(),
                    ])
                    .expect("in-memory csv");
                }
            }
        }
        w.into_inner().expect("in-memory csv")
    }

    /// Writes `families.json`, `families.csv` and a sheet per layer (`families-layer-L.png`)
    /// into `out`; `d` is the dataset the families were read on. Returns the files written.
    pub fn write(&self, out: &std::path::Path, d: &Dataset) -> Result<Vec<std::path::PathBuf>> {
        let mut written =
            crate::files::fsio::write_json_and_csv(out, "families", self, self.to_csv())?;
        let (px, split) = (d.pixels(), d.split(self.split));
        let images: Vec<u8> = self
            .shown
            .iter()
            .flat_map(|&i| split.images[i * px..(i + 1) * px].iter().copied())
            .collect();
        for l in &self.layers {
            let p = out.join(format!("families-layer-{}.png", l.layer));
            super::figures::families(self, l, &images, d.height).save_png(&p)?;
            written.push(p);
        }
        Ok(written)
    }
}

/// `median (min-max)` of `v`, or "none".
fn spread(v: &[f64]) -> String {
    match median_range(v) {
        None => "none".into(),
        Some((median, lo, hi)) => format!("median {median:.4} ({lo:.4}-{hi:.4})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell of one trained run and permuted copies of it (each "learned"), and initial
    /// networks (not learned): every family is shared by every copy, matched at r = 1, and
    /// the initial networks lack the families that no random filter resembles.
    #[test]
    fn permuted_copies_share_every_family() {
        let mut f = shapes::presets::find("thesis-1.3")
            .expect("preset exists")
            .spec_file();
        (f.train, f.val, f.test) = (Some(300), Some(120), Some(150));
        let d = Dataset::generate(&f.resolve().unwrap(), None, &|_| {});
        let arch = tinycnn::Arch::parse("6-4", 28, 28, 3).unwrap();
        let cfg = tinycnn::TrainConfig {
            epochs: 3,
            seed: 1,
            ..tinycnn::TrainConfig::default()
        };
        let (train, val) = (
            crate::models::training::engine_data(&d, Part::Train),
            crate::models::training::engine_data(&d, Part::Val),
        );
        let m = tinycnn::train::train(&arch, &cfg, &train, &val, &mut tinycnn::train::Silent)
            .unwrap()
            .model;
        let copies: Vec<Model> = [
            vec![vec![5, 4, 3, 2, 1, 0], vec![1, 0, 3, 2]],
            vec![vec![1, 2, 0, 4, 5, 3], vec![3, 2, 1, 0]],
        ]
        .iter()
        .map(|p| m.permuted(p).unwrap())
        .collect();
        let inits: Vec<Model> = (0..2)
            .map(|s| Model::init(&arch, tinycnn::Init::Glorot, 100 + s).unwrap())
            .collect();
        let keys = ["ref", "copy1", "copy2", "init1", "init2"];
        let models: Vec<&Model> = std::iter::once(&m).chain(&copies).chain(&inits).collect();
        let members: Vec<Member> = models
            .iter()
            .enumerate()
            .map(|(i, model)| Member {
                key: keys[i],
                seed: i,
                learned: i < 3,
                model,
                scaling: Scaling::Unit,
                labels: None,
            })
            .collect();
        let settings = Settings {
            null_seeds: 5,
            cka_images: 60,
        };
        let fam = families(&members, &d, (Part::Val, Part::Test), &settings, ("d", "c")).unwrap();
        assert_eq!(fam.reference, "ref");
        for l in &fam.layers {
            assert_eq!(
                l.own, 0,
                "layer {}: a copy has no filter of its own",
                l.layer
            );
            for f in &l.families {
                assert_eq!((f.learned_with, f.learned_runs), (2, 2));
                assert!(f.mean_correlation > 0.999999, "{}", f.mean_correlation);
                assert_eq!(f.stuck_runs, 2);
                // The mean kernel of identical kernels is the kernel.
                let per = m.conv_weight(l.layer - 1).len() / m.arch.filters[l.layer - 1];
                let k = &m.conv_weight(l.layer - 1)[(f.filter - 1) * per..f.filter * per];
                for (a, b) in f.mean_kernel.iter().zip(k) {
                    assert!((a - b).abs() < 1e-6);
                }
                if f.stuck_with == 0 {
                    assert!(f.difference.unwrap().0 == 1.0);
                }
            }
            // Copies are the same representation: CKA 1 between them.
            assert!((l.cka[0][1] - 1.0).abs() < 1e-6 && (l.cka[1][2] - 1.0).abs() < 1e-6);
        }
        // Fewer than two learned runs: refused, naming the count.
        let e = families(
            &members[2..],
            &d,
            (Part::Val, Part::Test),
            &settings,
            ("d", "c"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("1 learned run;") && e.contains("at least two"),
            "{e}"
        );
    }
}
