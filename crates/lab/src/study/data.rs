//! Everything the report states, gathered typed from a study directory before anything is
//! drawn: the configuration, the runs and their histories, the datasets, the stuck groups and
//! each case study's run and analysis.
//!
//! Reading is strict: a store that lacks a run's dataset, or a stored analysis that does not
//! read back, is an error naming the file and the fix, never a silent zero. Must not format
//! HTML; the pictures the study drew are embedded by the renderer (`report`), which notes any
//! that is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analyses::analysis::Report as Analysis;
use crate::analyses::dissection::population::Population;
use crate::analyses::seeds::barriers::Barriers;
use crate::analyses::seeds::families::Families;
use crate::error::{Error, Result};
use crate::experiments::outcome::Diagnosis;
use crate::experiments::store::{DatasetRow, RunRow, Store};
use crate::experiments::stuck::StuckGroup;
use crate::study::config::{pick_case, plan_runs, Case, Study};

/// The report's data.
pub struct ReportData {
    /// The study directory, as the user named it.
    pub dir: PathBuf,
    /// The study's store (a database's URL without its password).
    pub store: crate::experiments::store::StoreUrl,
    /// `study.toml`, as run.
    pub text: String,
    pub study: Study,
    /// The study's runs, by key.
    pub runs: Vec<RunRow>,
    /// The case nets ([`Study::case_plan`]): the case cells' seeds trained the full epochs.
    pub case_runs: Vec<RunRow>,
    /// Each dataset of the plan by label, with its stored description once a run used it.
    pub datasets: Vec<(String, Option<DatasetRow>)>,
    /// Every run's per-epoch history, by run key.
    pub histories: BTreeMap<String, Vec<tinycnn::EpochStats>>,
    pub stuck: Vec<StuckGroup>,
    /// Stuck runs' diagnoses, by run key.
    pub diagnoses: BTreeMap<String, Diagnosis>,
    /// Every continuation the store holds.
    pub continuations: Vec<crate::experiments::store::ContinuationRow>,
    /// The replayed first updates of the runs that have them, by run key.
    pub first_steps: BTreeMap<String, crate::experiments::first_steps::FirstSteps>,
    pub cases: Vec<CaseData>,
    /// The dissection stage's summaries: the sweep's learned runs, and the case nets'
    /// (absent until the stage has run).
    pub dissection: Option<Population>,
    pub case_dissection: Option<Population>,
    /// The seeds stage's files: each case's families by slug (absent when the case had fewer
    /// than two learned runs or the stage has not run), and the grid's barriers.
    pub families: BTreeMap<String, Families>,
    pub barriers: Option<Barriers>,
}

/// A population summary the dissection stage wrote, if it has.
fn read_population(dir: &Path) -> Result<Option<Population>> {
    read_json(&dir.join("population.json"))
}

/// A file a stage wrote, if it has; one that does not read back is an error naming the file,
/// never a default.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::bad(
            &path,
            format!(
                "does not read back ({e}); delete it and run `shapelab study` again to rewrite it"
            ),
        )
    })
}

/// One case study of the configuration.
pub struct CaseData {
    pub case: Case,
    /// Its run, when the study has one of its architecture.
    pub picked: Option<Picked>,
    /// The analyses of its learned seeds recorded so far, by seed index (the picked run's
    /// first): the population each case statistic is computed over.
    pub population: Vec<Analysis>,
}

/// The run a case study opens up.
pub struct Picked {
    pub row: RunRow,
    /// False when no seed learned and this is the best run.
    pub learned: bool,
    pub dataset: DatasetRow,
    /// The full architecture on the dataset's images.
    pub arch: tinycnn::Arch,
    /// Its analysis, once the study's case stage recorded it.
    pub analysis: Option<Analysis>,
}

impl ReportData {
    /// Dataset label to the preset (or file) it came from.
    pub fn sources(&self) -> BTreeMap<String, String> {
        self.datasets
            .iter()
            .filter_map(|(l, d)| Some((l.clone(), d.as_ref()?.source.clone())))
            .collect()
    }

    /// Every case analysis recorded so far, each learned seed of each case, by case slug.
    pub fn case_analyses(&self) -> Vec<(String, Analysis)> {
        self.cases
            .iter()
            .flat_map(|c| c.population.iter().map(|a| (c.case.slug(), a.clone())))
            .collect()
    }
}

/// Reads the study in `dir` (its `study.toml` and files) and `store` without changing
/// anything.
pub fn gather(dir: &Path, store: &Store) -> Result<ReportData> {
    let text = std::fs::read_to_string(dir.join("study.toml"))
        .map_err(|e| Error::io(&dir.join("study.toml"), e))?;
    // Relative dataset paths in a custom study are relative to the file it was run from,
    // which the store records; the copy in DIR is the fallback (embedded studies, a moved
    // source).
    let source = store
        .experiments()?
        .into_iter()
        .find(|(_, _, t)| *t == text)
        .map(|(_, p, _)| PathBuf::from(p))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| dir.join("study.toml"));
    let study = Study::parse(&text, &source)?;
    let runs = plan_runs(store, &study.plan)?;
    if runs.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no runs of study {}; run `shapelab study` first",
            store.url(),
            study.plan.name
        )));
    }
    let mut datasets = Vec::new();
    for d in &study.plan.datasets {
        let row = match runs.iter().find(|r| r.dataset == d.label) {
            Some(r) => Some(dataset_of(store, r)?),
            None => None,
        };
        datasets.push((d.label.clone(), row));
    }
    let mut histories = BTreeMap::new();
    for r in &runs {
        histories.insert(r.key.clone(), store.history(&r.key)?);
    }
    let stuck = crate::experiments::stuck::report(store, &runs)?;
    let mut diagnoses = BTreeMap::new();
    for r in &runs {
        if let Some(text) = &r.diagnosis {
            let d: Diagnosis = serde_json::from_str(text).map_err(|e| {
                store.fault(format!(
                    "has a diagnosis of run {} that does not read back ({e}); the store is damaged",
                    r.key
                ))
            })?;
            diagnoses.insert(r.key.clone(), d);
        }
    }
    let case_runs = plan_runs(store, &study.case_plan())?;
    let cases = study
        .table
        .cases
        .iter()
        .map(|case| case_data(store, &study, &case_runs, case))
        .collect::<Result<_>>()?;
    let mut first_steps = BTreeMap::new();
    for r in &runs {
        if let Some(f) = store.first_steps(&r.key)? {
            first_steps.insert(r.key.clone(), f);
        }
    }
    Ok(ReportData {
        dir: dir.to_path_buf(),
        store: store.url().without_password(),
        text,
        runs,
        case_runs,
        datasets,
        histories,
        stuck,
        diagnoses,
        continuations: store.continuations()?,
        first_steps,
        cases,
        dissection: read_population(&crate::study::config::dissection_dirs(dir).0)?,
        case_dissection: read_population(&crate::study::config::dissection_dirs(dir).1)?,
        families: read_families(dir, &study)?,
        barriers: read_json(
            &crate::study::config::seeds_dirs(dir)
                .1
                .join("barriers.json"),
        )?,
        study,
    })
}

/// The stored description of the dataset run `r` was trained on.
fn dataset_of(store: &Store, r: &RunRow) -> Result<DatasetRow> {
    store.dataset(&r.dataset_hash)?.ok_or_else(|| {
        store.fault(format!(
            "has run {} but not its dataset; the store is damaged",
            r.key
        ))
    })
}

/// A case study's run, dataset, full architecture and recorded analysis.
fn case_data(store: &Store, study: &Study, runs: &[RunRow], case: &Case) -> Result<CaseData> {
    let Some((row, learned)) = pick_case(runs, case, &study.table.case_condition) else {
        return Ok(CaseData {
            case: case.clone(),
            picked: None,
            population: Vec::new(),
        });
    };
    let mut population = Vec::new();
    for r in crate::study::config::case_population(runs, case, &study.table.case_condition) {
        if let Some(a) = store.run_analysis(&r.key, &case.dataset)? {
            population.push(a);
        }
    }
    let dataset = dataset_of(store, &row)?;
    let arch = tinycnn::Arch::from_label(
        &case.arch,
        dataset.height,
        dataset.width,
        dataset.class_names.len(),
    )?;
    let analysis = store.run_analysis(&row.key, &case.dataset)?;
    Ok(CaseData {
        case: case.clone(),
        population,
        picked: Some(Picked {
            row,
            learned,
            dataset,
            arch,
            analysis,
        }),
    })
}

/// The families the seeds stage wrote for each case, by case slug.
fn read_families(dir: &Path, study: &Study) -> Result<BTreeMap<String, Families>> {
    let cases = crate::study::config::seeds_dirs(dir).0;
    let mut out = BTreeMap::new();
    for case in &study.table.cases {
        if let Some(f) = read_json(&cases.join(case.slug()).join("families.json"))? {
            out.insert(case.slug(), f);
        }
    }
    Ok(out)
}
