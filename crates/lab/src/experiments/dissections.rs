//! Dissecting the learned runs of a store, each once: a dataset and its concept masks drawn
//! once, the chance level measured once per dataset, architecture and input scaling (it does
//! not depend on the trained weights; its first layer's once per first layer, shared by every
//! architecture that starts with it), and every dissection recorded in the store. A run
//! already dissected with the same split and settings is read back, not redone, so a second
//! call costs only the reading.
//!
//! Glue between the store and [`crate::analyses::dissection`]; must not summarise or print.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use shapes::Split as Part;

use crate::analyses::dissection::population::Member;
use crate::analyses::dissection::{
    chance, dissect, first_layer, Chance, Dissection, NullLayer, Settings,
};
use crate::data::masks::ConceptMasks;
use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use crate::experiments::store::{RunRow, Store};

/// The learned runs of `rows` dissected on split `part` of each run's own dataset (`None`:
/// its held-out split, test, or validation for data without one), in the order of `rows`;
/// `progress(done, total)` after each. Runs of a dataset without a generator spec are
/// refused: their concept masks are unknown. Dissections are recorded a few at a time (as many
/// as there are threads, twice), and `cancel` is read between them: an interrupted call keeps
/// what it recorded and returns [`Error::Interrupted`].
pub fn dissect_learned(
    store: &Store,
    rows: &[RunRow],
    part: Option<Part>,
    settings: &Settings,
    (cancel, progress): (&AtomicBool, &(dyn Fn(usize, usize) + Sync)),
) -> Result<Vec<Member>> {
    settings.check()?;
    let learned: Vec<&RunRow> = rows
        .iter()
        .filter(|r| r.outcome == Outcome::Learned)
        .collect();
    let held_out = |r: &RunRow| -> Result<Part> {
        Ok(match part {
            Some(p) => p,
            None => match store.dataset(&r.dataset_hash)?.and_then(|d| d.test) {
                Some(t) if t > 0 => Part::Test,
                _ => Part::Val,
            },
        })
    };
    let mut done: Vec<Option<Dissection>> = learned
        .iter()
        .map(|r| recorded(store, r, held_out(r)?, settings))
        .collect::<Result<_>>()?;
    let total = learned.len();
    let mut finished = done.iter().filter(|d| d.is_some()).count();
    progress(finished, total);
    // The rest, a dataset at a time.
    let mut hashes: Vec<&str> = Vec::new();
    for (r, d) in learned.iter().zip(&done) {
        if d.is_none() && !hashes.contains(&r.dataset_hash.as_str()) {
            hashes.push(&r.dataset_hash);
        }
    }
    for hash in hashes {
        let todo: Vec<usize> = (0..learned.len())
            .filter(|&i| done[i].is_none() && learned[i].dataset_hash == hash)
            .collect();
        let first = learned[todo[0]];
        let d = crate::experiments::stuck::dataset_of(store, first)?;
        let part = part.unwrap_or(d.held_out());
        let masks = ConceptMasks::of_dataset(&d, part)?.ok_or_else(|| {
            Error::Usage(format!(
                "dataset {} has no generator spec (a dataset from elsewhere), so its concept masks are unknown; dissect its runs one by one with `shapelab dissect RUN --masks FILE.npz`",
                first.dataset
            ))
        })?;
        let words = masks.part(part.name()).expect("drawn for the part");
        let split = d.split(part);
        let mut chances: Vec<(String, tinycnn::Scaling, Chance)> = Vec::new();
        let mut firsts: Vec<(tinycnn::Arch, tinycnn::Scaling, NullLayer)> = Vec::new();
        let counter = std::sync::atomic::AtomicUsize::new(finished);
        for batch in todo.chunks(2 * rayon::current_num_threads()) {
            let models: Vec<crate::models::run::Run> = batch
                .iter()
                .map(|&i| {
                    crate::models::run::Run::load(&store.resolve_model_dir(&learned[i].model_dir)?)
                })
                .collect::<Result<_>>()?;
            for run in &models {
                let (arch, scaling) = (run.model.arch.label(), run.meta.train.scaling);
                if !chances.iter().any(|(a, s, _)| *a == arch && *s == scaling) {
                    stopped(cancel)?;
                    let c = shared_chance(
                        &run.model.arch,
                        (&split.images, words),
                        scaling,
                        (settings, masks.concept_names.len()),
                        &mut firsts,
                    )?;
                    chances.push((arch, scaling, c));
                }
            }
            stopped(cancel)?;
            let results: Vec<Dissection> = batch
                .par_iter()
                .zip(&models)
                .map(|(&i, run)| {
                    let r = learned[i];
                    let (arch, scaling) = (run.model.arch.label(), run.meta.train.scaling);
                    let c = &chances
                        .iter()
                        .find(|(a, s, _)| *a == arch && *s == scaling)
                        .expect("measured above")
                        .2;
                    let out = dissect(
                        &run.model,
                        &d,
                        part,
                        (words, &masks.concept_names),
                        scaling,
                        settings,
                        (&r.key, &r.dataset),
                        Some(c),
                    )?;
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    progress(n, total);
                    Ok(out)
                })
                .collect::<Result<_>>()?;
            for (&i, result) in batch.iter().zip(results) {
                store.put_dissection(&learned[i].key, &result)?;
                done[i] = Some(result);
                finished += 1;
            }
        }
    }
    learned
        .iter()
        .zip(done)
        .map(|(r, d)| {
            Ok(Member {
                key: r.key.clone(),
                dataset: r.dataset.clone(),
                condition: r.condition.clone(),
                seed: r.seed_index,
                dissection: d.expect("every run dissected"),
                survivors: store
                    .run_analysis(&r.key, &r.dataset)?
                    .map(|a| a.pruning.survivors),
            })
        })
        .collect()
}

/// The chance level of `arch` on `data`, its first layer's measured once per first layer and
/// scaling (in `firsts`) and shared by every architecture that starts with that layer
/// ([`first_layer`]: the same initial weights at every seed, so the same level).
///
/// # Shapes
/// As [`chance`].
fn shared_chance(
    arch: &tinycnn::Arch,
    data: (&[u8], &[u16]),
    scaling: tinycnn::Scaling,
    (settings, concepts): (&Settings, usize),
    firsts: &mut Vec<(tinycnn::Arch, tinycnn::Scaling, NullLayer)>,
) -> Result<Chance> {
    let one = first_layer(arch);
    let first = match firsts.iter().find(|(a, s, _)| *a == one && *s == scaling) {
        Some((_, _, f)) => f.clone(),
        None => {
            let f = chance(&one, data, scaling, settings, concepts)?
                .layers
                .remove(0);
            firsts.push((one, scaling, f.clone()));
            f
        }
    };
    Chance::with_first(&first, arch, data, scaling, (settings, concepts))
}

/// The recorded dissection of run `r` on `part` with `settings`, if any (one that no longer
/// reads back, from an older version, is redone and replaced).
fn recorded(
    store: &Store,
    r: &RunRow,
    part: Part,
    settings: &Settings,
) -> Result<Option<Dissection>> {
    let Ok(all) = store.dissections(&r.key) else {
        return Ok(None);
    };
    Ok(all
        .into_iter()
        .find(|d| d.split == part && d.settings == *settings && d.data == r.dataset))
}

/// [`Error::Interrupted`] once `cancel` is set.
fn stopped(cancel: &AtomicBool) -> Result<()> {
    match cancel.load(Ordering::SeqCst) {
        true => Err(Error::Interrupted(
            "the dissections finished are recorded in the store; run the same command again to resume".into(),
        )),
        false => Ok(()),
    }
}
