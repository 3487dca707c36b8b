//! `shapelab study`: the whole thesis in one command, as resumable stages.
//!
//! A study is an experiment file with a `[study]` table (see `studies/default.toml`, the
//! embedded default). Its stages, each resumable:
//! 1. the datasets and their panels, contact sheets and factor histograms (`data/`);
//! 2. the sweep of the filter grid under every condition, into `shapelab.db`;
//! 3. the stuck runs trained further, recorded in the store;
//! 4. the case studies, picked from the runs that learned (the first learned seed of the
//!    architecture under the case condition; the best run if none learned), each analysed in
//!    full: activation and kernel sheets, filter statistics, greedy pruning, ranking,
//!    similarity, interaction, failures (`cases/`, results in the store);
//! 5. what the filters detect: every learned run of the sweep, and of the case nets, dissected
//!    on the held-out split against the generator's concept masks, summarised per cell
//!    (`dissection/`), and each case's sheets drawn (`cases/SLUG/dissection/`);
//! 6. do seeds agree: each case's runs aligned to its first learned seed and read as filter
//!    families, with the CKA between them (`seeds/cases/SLUG/`), and the loss barrier between
//!    disjoint pairs of learned seeds of every cell of the sweep, before and after alignment
//!    (`seeds/grid/`);
//! 7. `report.html`, built from the store and those files alone ([`crate::study::report`]).

use std::path::{Path, PathBuf};

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::experiments::experiment::DataSource;
use crate::experiments::store::{RunRow, Store, StoreUrl};
use crate::experiments::sweep::{SweepObserver, SweepOptions};

/// The embedded studies.
use super::config::{data_file, pick_case, plan_runs, Study};

/// Progress of a study.
pub trait StudyObserver: SweepObserver {
    /// A stage begins.
    fn stage(&self, _index: usize, _total: usize, _what: &str) {}
    /// Stage 3 will continue `total` stuck runs.
    fn continuing(&self, _total: usize) {}
    /// One stuck run was continued.
    fn continued(&self) {}
    /// A case study begins (`done` of `total` done before it).
    fn case(&self, _slug: &str, _done: usize, _total: usize) {}
    /// Stage 5 has dissected (or read back) `done` of at most `total` runs.
    fn dissected(&self, _done: usize, _total: usize) {}
    /// Stage 6 has measured `done` of `total` pairs of seeds.
    fn paired(&self, _done: usize, _total: usize) {}
}

/// Histograms of the factors that vary in a dataset's training split, as one bar chart each.
fn factor_histograms(d: &Dataset) -> Vec<(String, crate::draw::Canvas)> {
    let k = d.factor_names.len();
    let mut out = Vec::new();
    for j in (0..k).filter(|&j| d.factor_names[j] != "class") {
        let col: Vec<f32> = d.train.factors.chunks(k).map(|r| r[j]).collect();
        let Some(bins) = crate::data::bins::Bins::over(col.iter().copied(), 12) else {
            continue;
        };
        let mut counts = vec![0usize; bins.n];
        for &v in &col {
            counts[bins.of(v)] += 1;
        }
        let top = *counts.iter().max().unwrap_or(&1) as f64;
        let bars: Vec<(String, f64, usize)> = counts
            .iter()
            .enumerate()
            .map(|(b, &c)| {
                (
                    crate::data::contact::format_value(bins.edges(b).0),
                    c as f64 / top,
                    c,
                )
            })
            .collect();
        let name = d.factor_names[j].clone();
        out.push((
            name.clone(),
            crate::analyses::plots::bars(
                &format!("{name}: training images per bin (height relative to the largest)"),
                &bars,
            ),
        ));
    }
    out
}

/// Checks that `dir` can hold the study `text`: new, empty, or a directory of the same study
/// (resumed). Another study's directory, a store without a study, or a directory of other
/// files is refused before anything is written.
pub fn check_dir(dir: &Path, text: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a file; give --out a directory for the study",
            dir.display()
        )));
    }
    let config = dir.join("study.toml");
    // A directory holds one study: resuming with another configuration would mix the two.
    if let Ok(old) = std::fs::read_to_string(&config) {
        if old != text {
            return Err(Error::Usage(format!(
                "{} holds a study with another configuration ({}); give --out a new directory, or delete {} to start over",
                dir.display(),
                config.display(),
                dir.display()
            )));
        }
    } else if dir.join("shapelab.db").exists() {
        return Err(Error::Usage(format!(
            "{} has a store but no study.toml: it was not written by `shapelab study`; give --out a new directory",
            dir.display()
        )));
    }
    if dir.is_dir() && !crate::files::output::is_ours(dir)? {
        return Err(Error::Usage(format!(
            "{} is not empty and was not written by shapelab; give --out a new or empty directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Runs (or resumes) a study into `dir`, its results into `store` (default: `DIR/shapelab.db`;
/// a resumed study keeps the store it began with, see [`crate::study::location`]): seven
/// stages, each skipping what is done.
pub fn run(
    text: &str,
    source: &str,
    dir: &Path,
    store: Option<&StoreUrl>,
    jobs: usize,
    cancel: &std::sync::atomic::AtomicBool,
    obs: &dyn StudyObserver,
) -> Result<PathBuf> {
    let config = dir.join("study.toml");
    let study = Study::parse(text, Path::new(source))?;
    check_dir(dir, text)?;
    let url = crate::study::location::choose(dir, store)?;
    // A database is opened and checked before DIR is made, so that a wrong URL or another
    // study's database leaves nothing behind; the default file needs DIR first.
    if !url.is_postgres() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // A study's model directories are under DIR whichever its store.
    let store = Store::open(&url)?.with_artifacts(Some(dir.to_path_buf()));
    check_models_here(&store, dir, &study)?;
    std::fs::create_dir_all(dir.join("data")).map_err(|e| Error::io(dir, e))?;
    crate::files::output::mark(dir)?;
    crate::files::fsio::write_file_atomic(&config, true, |w| {
        std::io::Write::write_all(w, text.as_bytes())
    })?;
    crate::study::location::record(dir, &url)?;
    let total = 7;
    obs.stage(1, total, "datasets, panels and contact sheets");
    datasets_stage(dir, &study)?;
    obs.stage(2, total, "the sweep");
    sweep_stage(&store, &study.plan, source, jobs, cancel, obs)?;
    let runs = plan_runs(&store, &study.plan)?;
    obs.stage(3, total, "the stuck runs, trained further");
    stuck_stage(&store, &study, &runs, jobs, obs)?;
    obs.stage(
        4,
        total,
        "the case studies: their nets trained the full epochs, then opened",
    );
    let case_plan = study.case_plan();
    sweep_stage(&store, &case_plan, source, jobs, cancel, obs)?;
    let case_runs = plan_runs(&store, &case_plan)?;
    cases_stage(dir, &store, &study, &case_runs, cancel, obs)?;
    obs.stage(
        5,
        total,
        "what the filters detect: every learned run dissected",
    );
    dissection_stage(dir, &store, &study, (&runs, &case_runs), (cancel, obs))?;
    obs.stage(
        6,
        total,
        "do seeds agree: families per case, barriers over the grid",
    );
    seeds_stage(dir, &store, &study, (&runs, &case_runs), (cancel, obs))?;
    obs.stage(7, total, "the report");
    crate::study::report::build(dir, &store)
}

/// What a stage returns once the user interrupted it.
fn interrupted() -> Error {
    Error::Interrupted("run the same command again to resume".into())
}

/// Refuses a store whose runs of this study have no model directory under `dir`: runs a study
/// in another directory trained into the same database (or directories deleted since), which
/// every later stage would need.
fn check_models_here(store: &Store, dir: &Path, study: &Study) -> Result<()> {
    let mut missing = Vec::new();
    for plan in [&study.plan, &study.case_plan()] {
        for r in plan_runs(store, plan)? {
            let path = store.resolve_model_dir(&r.model_dir)?;
            if !path.join("model.json").is_file() {
                missing.push(path);
            }
        }
    }
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(Error::Usage(format!(
            "{} holds {} of this study's runs whose model directories are not in {} (first: {}): a study's store and its directory go together; resume in the directory that trained them, or use a new database",
            store.url(),
            missing.len(),
            dir.display(),
            first.display()
        ))),
    }
}

/// Stage 1: every dataset as `data/LABEL.npz` with its contact sheet, factor histograms and
/// panel (each written once).
fn datasets_stage(dir: &Path, study: &Study) -> Result<()> {
    let plan = &study.plan;
    for d in &plan.datasets {
        let npz = data_file(dir, &d.label, ".npz");
        let dataset = if npz.exists() {
            Dataset::read_npz(&npz)?
        } else {
            let data = match &d.source {
                DataSource::Spec { spec, name } => {
                    Dataset::generate(spec, Some(name.clone()), &|_| {})
                }
                DataSource::File(p) => {
                    crate::models::training::resolve_data(&p.to_string_lossy(), &|_| {})?.0
                }
            };
            data.write_npz(&npz, true)?;
            data
        };
        let sheet = data_file(dir, &d.label, ".contact.png");
        if !sheet.exists() {
            crate::data::contact::dataset_sheet(&dataset, &d.label, 10).save_png(&sheet)?;
            for (name, c) in factor_histograms(&dataset) {
                c.save_png(&data_file(dir, &d.label, &format!("-{name}.png")))?;
            }
        }
        let panel_file = data_file(dir, &d.label, "-panel.npz");
        if !panel_file.exists() {
            if let Some(spec) = dataset.meta.as_ref().map(|m| m.spec.to_string()) {
                let spec = shapes::DatasetSpec::from_canonical_json(&spec)?;
                let v = spec.varying_factors();
                let name = if v.contains(&"rotation") && !v.contains(&"size") {
                    "thesis-rotation"
                } else {
                    "thesis-size"
                };
                let panel = crate::PanelData::from_panel(
                    &shapes::panel::find(name).expect("built in"),
                    spec.image_size,
                );
                panel.write_npz(&panel_file, true)?;
                crate::data::contact::panel_sheet(&panel, &format!("{} panel {name}", d.label))
                    .save_png(&data_file(dir, &d.label, "-panel.png"))?;
            }
        }
    }

    Ok(())
}

/// Stage 2 (and the case nets of stage 4): `plan` swept into the study's store.
fn sweep_stage(
    store: &Store,
    plan: &crate::experiments::experiment::Plan,
    source: &str,
    jobs: usize,
    cancel: &std::sync::atomic::AtomicBool,
    obs: &dyn StudyObserver,
) -> Result<()> {
    let opts = SweepOptions {
        shard: None,
        worker: None,
        jobs,
        cancel,
    };
    // The store records the file the study came from, so relative dataset paths in it keep
    // their meaning when the report is rebuilt.
    let source_path = match Path::new(source) {
        p if p.is_file() => crate::files::output::resolve(p),
        p => p.to_path_buf(),
    };
    let report = crate::experiments::sweep::run(plan, &source_path, store, &opts, obs)?;
    if report.cancelled {
        return Err(interrupted());
    }
    if let Some(f) = report.failures.first() {
        return Err(Error::RunsFailed {
            count: report.failures.len(),
            first: f.clone(),
        });
    }
    Ok(())
}

/// Stage 3: stuck runs trained `continue_epochs` more epochs with each rescue (once each; at
/// most `rescue_runs` per condition, picked by run seed).
fn stuck_stage(
    store: &Store,
    study: &Study,
    runs: &[RunRow],
    jobs: usize,
    obs: &dyn StudyObserver,
) -> Result<()> {
    let extra = study.table.continue_epochs;
    if extra == 0 {
        return first_steps(store, runs);
    }
    for &rescue in &study.table.rescues {
        let done = continued(store, extra, &rescue.label())?;
        let todo: Vec<RunRow> = rescue_sample(runs, study.table.rescue_runs)
            .into_iter()
            .filter(|r| !done.contains(&r.key))
            .collect();
        if !todo.is_empty() {
            obs.continuing(todo.len());
            crate::experiments::stuck::continue_runs(store, &todo, extra, rescue, jobs, &|| {
                obs.continued()
            })?;
        }
    }
    // Partial runs cut off by the epoch cap while still rising: do they learn given time?
    let done = continued(store, extra, "same")?;
    let mut rising = Vec::new();
    for r in runs.iter().filter(|r| {
        r.outcome == crate::experiments::outcome::Outcome::Partial && !done.contains(&r.key)
    }) {
        let h = store.history(&r.key)?;
        if let [.., a, b] = h.as_slice() {
            if b.val_acc > a.val_acc {
                rising.push(r.clone());
            }
        }
    }
    if !rising.is_empty() {
        obs.continuing(rising.len());
        crate::experiments::stuck::continue_runs(
            store,
            &rising,
            extra,
            crate::experiments::rescue::Rescue::Same,
            jobs,
            &|| obs.continued(),
        )?;
    }
    first_steps(store, runs)
}

/// Updates replayed per run, and training images in the probe of dead filters.
const FIRST_STEPS: (usize, usize) = (20, 200);

/// The first updates of up to 10 failed (stuck or collapsed) and 10 learned runs per
/// condition, picked by run seed, replayed and recorded (once each).
fn first_steps(store: &Store, runs: &[RunRow]) -> Result<()> {
    use crate::experiments::outcome::Outcome;
    let mut picked: Vec<&RunRow> = runs.iter().collect();
    picked.sort_by_key(|r| (r.condition.clone(), r.seed));
    let mut taken: std::collections::BTreeMap<(&str, bool), usize> = Default::default();
    let mut data: std::collections::BTreeMap<String, Dataset> = Default::default();
    for r in picked {
        let failed = matches!(r.outcome, Outcome::Stuck | Outcome::Collapsed);
        if !failed && r.outcome != Outcome::Learned {
            continue;
        }
        let n = taken.entry((r.condition.as_str(), failed)).or_default();
        if *n >= 10 {
            continue;
        }
        *n += 1;
        if store.first_steps(&r.key)?.is_some() {
            continue;
        }
        let run = crate::models::run::Run::load(&store.resolve_model_dir(&r.model_dir)?)?;
        if !data.contains_key(&r.dataset_hash) {
            let d = crate::experiments::stuck::dataset_of(store, r)?;
            data.insert(r.dataset_hash.clone(), d);
        }
        let f = crate::experiments::first_steps::replay(
            &run.meta.arch,
            &run.meta.train,
            &data[&r.dataset_hash],
            FIRST_STEPS.0,
            FIRST_STEPS.1,
        )?;
        store.put_first_steps(&r.key, &f)?;
    }
    Ok(())
}

/// The runs already continued `extra` epochs with the rescue labelled `label`.
fn continued(
    store: &Store,
    extra: usize,
    label: &str,
) -> Result<std::collections::HashSet<String>> {
    Ok(store
        .continuations()?
        .into_iter()
        .filter(|c| c.extra_epochs == extra && c.lr == label)
        .map(|c| c.run_key)
        .collect())
}

/// The stuck runs a rescue is tried on: per condition, the first `limit` by run seed (seeds
/// are hashes of the keys, so this is a fixed pseudo-random sample), or all.
fn rescue_sample(runs: &[RunRow], limit: Option<usize>) -> Vec<RunRow> {
    let mut stuck: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Stuck)
        .collect();
    stuck.sort_by_key(|r| (r.condition.clone(), r.seed));
    let mut taken: std::collections::BTreeMap<&str, usize> = Default::default();
    stuck
        .into_iter()
        .filter(|r| {
            let n = taken.entry(r.condition.as_str()).or_default();
            *n += 1;
            limit.is_none_or(|l| *n <= l)
        })
        .cloned()
        .collect()
}

/// Stage 4: every case study picked from its nets (`runs`: the case plan's, trained the full
/// epochs) and analysed in full into `cases/SLUG/`, its analysis recorded in the store (a case
/// done before is skipped); then the case's other learned seeds, up to `case_seeds` in all,
/// analysed and recorded (no pictures: they are measured, the first seed is the one shown).
///
/// The analyses run side by side, as many at a time as there are threads (one analysis alone
/// keeps two cores about 1.4 busy); each is the same whatever runs beside it, and each is
/// recorded by this thread as it finishes, so an interrupted stage keeps what was done.
fn cases_stage(
    dir: &Path,
    store: &Store,
    study: &Study,
    runs: &[RunRow],
    cancel: &std::sync::atomic::AtomicBool,
    obs: &dyn StudyObserver,
) -> Result<()> {
    let jobs = case_jobs(dir, store, study, runs)?;
    let mut data: std::collections::BTreeMap<&str, Dataset> = Default::default();
    for job in &jobs {
        if !data.contains_key(job.case.dataset.as_str()) {
            let d = Dataset::read_npz(&data_file(dir, &job.case.dataset, ".npz"))?;
            data.insert(&job.case.dataset, d);
        }
    }
    let ncases = study.table.cases.len();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut first_error = None;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            use rayon::prelude::*;
            jobs.par_iter().for_each_with(tx, |tx, job| {
                let report = if cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(interrupted())
                } else {
                    let what = match job.drawn {
                        true => job.case.slug(),
                        false => format!(
                            "{}, seed {} (measured)",
                            job.case.slug(),
                            job.row.seed_index
                        ),
                    };
                    obs.case(&what, job.index, ncases);
                    analyse_case(dir, job, &data[job.case.dataset.as_str()])
                };
                // The receiver lives until every job has sent.
                let _ = tx.send((job, report));
            });
        });
        for (job, report) in rx {
            let stored =
                report.and_then(|r| store.put_run_analysis(&job.row.key, &job.case.dataset, &r));
            if let Err(e) = stored {
                // Jobs not yet begun are not begun: the stage fails with its first error
                // (an interrupt only if nothing else went wrong).
                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                let replace = match &first_error {
                    None => true,
                    Some(Error::Interrupted(_)) => !matches!(e, Error::Interrupted(_)),
                    Some(_) => false,
                };
                if replace {
                    first_error = Some(e);
                }
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One analysis of stage 4.
struct CaseJob<'a> {
    /// The case's index in the study.
    index: usize,
    case: &'a crate::study::config::Case,
    row: RunRow,
    /// The run's model directory.
    model_dir: PathBuf,
    /// The case's shown seed, drawn in full into `cases/SLUG/`; else measured alone.
    drawn: bool,
}

/// The analyses stage 4 has still to make, case by case: the shown seed, then the others.
fn case_jobs<'a>(
    dir: &Path,
    store: &Store,
    study: &'a Study,
    runs: &[RunRow],
) -> Result<Vec<CaseJob<'a>>> {
    let condition = &study.table.case_condition;
    let mut jobs = Vec::new();
    for (index, case) in study.table.cases.iter().enumerate() {
        let Some((row, _learned)) = pick_case(runs, case, condition) else {
            continue;
        };
        let out = dir.join("cases").join(case.slug());
        let have = store.run_analysis(&row.key, &case.dataset)?.is_some();
        if !(have && out.join("analysis/analysis.json").exists()) {
            jobs.push(CaseJob {
                index,
                case,
                model_dir: store.resolve_model_dir(&row.model_dir)?,
                row,
                drawn: true,
            });
        }
        let members = crate::study::config::case_population(runs, case, condition);
        for row in members.into_iter().take(study.table.case_seeds).skip(1) {
            if store.run_analysis(&row.key, &case.dataset)?.is_none() {
                jobs.push(CaseJob {
                    index,
                    case,
                    model_dir: store.resolve_model_dir(&row.model_dir)?,
                    row: row.clone(),
                    drawn: false,
                });
            }
        }
    }
    Ok(jobs)
}

/// The analysis of one job of stage 4 on its dataset `data`; a drawn job also writes its
/// activation and kernel sheets, filter statistics and analysis files into `cases/SLUG/`.
fn analyse_case(
    dir: &Path,
    job: &CaseJob,
    data: &Dataset,
) -> Result<crate::analyses::analysis::Report> {
    let (case, row) = (job.case, &job.row);
    let run = crate::models::run::Run::load(&job.model_dir)?;
    let scaling = run.meta.train.scaling;
    // The run's name in titles: its dataset and seed (the analysis adds the architecture).
    let run_name = format!("{} seed {}", case.dataset, row.seed_index);
    if !job.drawn {
        return crate::analyses::analysis::analyze(
            &run.model,
            data,
            scaling,
            &run_name,
            &case.dataset,
        );
    }
    if data
        .meta
        .as_ref()
        .is_some_and(|m| m.hash != row.dataset_hash)
    {
        return Err(Error::Usage(format!(
            "{} is not the dataset run {} was trained on; delete it and run the study again to regenerate it",
            data_file(dir, &case.dataset, ".npz").display(),
            row.key
        )));
    }
    let out = dir.join("cases").join(case.slug());
    let name = format!("{} {}", case.dataset, case.arch);
    crate::files::fsio::derived_dir(&out)?;
    if let Ok(panel) = crate::PanelData::read_npz(&data_file(dir, &case.dataset, "-panel.npz")) {
        crate::inside::maps::write_sheets(
            &run.model,
            &panel,
            scaling,
            &name,
            &crate::inside::maps::SheetOptions::default(),
            &out.join("activations"),
            true,
        )?;
    }
    crate::inside::kernels::write_kernel_sheets(&run.model, &name, 30, &out.join("kernels"), true)?;
    let stats =
        crate::inside::filterstats::filter_stats(&run.model, data, data.held_out(), scaling, 5);
    stats.save(&out, data.held_out())?;
    let report =
        crate::analyses::analysis::analyze(&run.model, data, scaling, &run_name, &case.dataset)?;
    crate::analyses::analysis::write(&report, data, &out.join("analysis"))?;
    Ok(report)
}

/// Stage 5: every learned run of the sweep and of the case nets dissected on the held-out
/// split (each recorded in the store, so a resumed study reads them back), both populations
/// summarised, and each case's first learned seed drawn as sheets.
fn dissection_stage(
    dir: &Path,
    store: &Store,
    study: &Study,
    (runs, case_runs): (&[RunRow], &[RunRow]),
    (cancel, obs): (&std::sync::atomic::AtomicBool, &dyn StudyObserver),
) -> Result<()> {
    use crate::analyses::dissection::population::summarize;
    let settings = crate::analyses::dissection::Settings::default();
    let (sweep_out, cases_out) = crate::study::config::dissection_dirs(dir);
    let total = runs.len() + case_runs.len();
    let progress = |done: usize, _: usize| obs.dissected(done, total);
    let members = crate::experiments::dissections::dissect_learned(
        store,
        runs,
        None,
        &settings,
        (cancel, &progress),
    )?;
    let split_of = |m: &[crate::analyses::dissection::population::Member]| {
        m.first()
            .map_or(shapes::Split::Test, |m| m.dissection.split)
    };
    summarize(&members, split_of(&members), &settings).write(&sweep_out)?;
    let offset = runs.len();
    let case_members = crate::experiments::dissections::dissect_learned(
        store,
        case_runs,
        None,
        &settings,
        (cancel, &|done, _| obs.dissected(offset + done, total)),
    )?;
    summarize(&case_members, split_of(&case_members), &settings).write(&cases_out)?;
    for case in &study.table.cases {
        let Some((row, true)) = pick_case(case_runs, case, &study.table.case_condition) else {
            continue;
        };
        let Some(m) = case_members.iter().find(|m| m.key == row.key) else {
            continue;
        };
        let out = dir.join("cases").join(case.slug()).join("dissection");
        if out.join("sheet-layer-1.png").exists() {
            continue;
        }
        let run = crate::models::run::Run::load(&store.resolve_model_dir(&row.model_dir)?)?;
        let data = Dataset::read_npz(&data_file(dir, &case.dataset, ".npz"))?;
        let part = m.dissection.split;
        let masks =
            crate::data::masks::ConceptMasks::of_dataset(&data, part)?.ok_or_else(|| {
                Error::Usage(format!("dataset {} has no generator spec", case.dataset))
            })?;
        let words = masks.part(part.name()).expect("drawn for the part");
        m.dissection.write(&out)?;
        crate::analyses::dissection::sheet::write_sheets(
            &m.dissection,
            &run.model,
            &data.split(part).images,
            words,
            run.meta.train.scaling,
            &out,
        )?;
    }
    Ok(())
}

/// Stage 6: each case's runs (the case nets under the case condition) read as families, and
/// the barriers between disjoint pairs of learned seeds of every cell of the sweep. Each file
/// written once: a resumed study keeps what is there.
fn seeds_stage(
    dir: &Path,
    store: &Store,
    study: &Study,
    (runs, case_runs): (&[RunRow], &[RunRow]),
    (cancel, obs): (&std::sync::atomic::AtomicBool, &dyn StudyObserver),
) -> Result<()> {
    use crate::analyses::seeds::{barriers, families};
    let stopped = || {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            Err(interrupted())
        } else {
            Ok(())
        }
    };
    let (cases_out, grid_out) = crate::study::config::seeds_dirs(dir);
    for case in &study.table.cases {
        let out = cases_out.join(case.slug());
        let rows = crate::study::config::case_cell(case_runs, case, &study.table.case_condition);
        let learned = rows
            .iter()
            .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Learned)
            .count();
        if learned < 2 || out.join("families.json").exists() {
            continue;
        }
        stopped()?;
        let rows = rows.into_iter().cloned().collect();
        let cell = crate::experiments::families::load_cell(store, rows, shapes::Split::Test)?;
        let f = families::families(
            &cell.members(),
            &cell.dataset,
            (shapes::Split::Val, cell.dataset.held_out()),
            &families::Settings::default(),
            (&case.dataset, &cell.condition),
        )?;
        f.write(&out, &cell.dataset)?;
    }
    if grid_out.join("barriers.json").exists() {
        return Ok(());
    }
    let grid = crate::experiments::barriers::grid(
        store,
        runs,
        &barriers::Settings::default(),
        &|r| Dataset::read_npz(&data_file(dir, &r.dataset, ".npz")),
        (&|done, total| obs.paired(done, total), cancel),
    )?;
    grid.write(&grid_out)?;
    Ok(())
}
