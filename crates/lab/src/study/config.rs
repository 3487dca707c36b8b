//! A study's configuration: an experiment file with a `[study]` table naming the case
//! studies (see `studies/default.toml`, the embedded default), and what both the stages and
//! the report derive from it: the study's runs in the store, its data files, the run each
//! case uses.
//!
//! Imports nothing from the stages or the report, which both build on it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::experiments::experiment::Plan;
use crate::experiments::store::{RunFilter, RunRow, Store};

/// The embedded studies.
pub const DEFAULT: &str = include_str!("../../../../studies/default.toml");
pub const THESIS: &str = include_str!("../../../../studies/thesis.toml");

/// One case study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub dataset: String,
    pub arch: tinycnn::ArchLabel,
}

impl Case {
    /// The directory name under `cases/`.
    pub fn slug(&self) -> String {
        format!("{}-{}", self.dataset, self.arch)
    }
}

/// The `[study]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyTable {
    pub cases: Vec<Case>,
    #[serde(default)]
    pub case_condition: String,
    #[serde(default)]
    pub continue_epochs: usize,
    /// What stuck runs are continued with (default: their own settings only).
    #[serde(default = "own_settings")]
    pub rescues: Vec<crate::experiments::rescue::Rescue>,
    /// Learned seeds analysed per case study (the first is the one shown in full; the others
    /// are measured so each case statistic covers a population, not one seed). Default 1.
    #[serde(default = "one")]
    pub case_seeds: usize,
    /// At most this many stuck runs per condition and rescue, picked by run seed (a fixed
    /// pseudo-random sample); all when absent.
    #[serde(default)]
    pub rescue_runs: Option<usize>,
}

fn one() -> usize {
    1
}

fn own_settings() -> Vec<crate::experiments::rescue::Rescue> {
    vec![crate::experiments::rescue::Rescue::Same]
}

#[derive(Deserialize)]
struct Outer {
    study: Option<StudyTable>,
}

/// A parsed study: the experiment plan and its study table.
pub struct Study {
    pub plan: Plan,
    pub table: StudyTable,
}

impl Study {
    /// Parses a study file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Study> {
        let plan = Plan::parse(text, path)?;
        let outer: Outer = toml::from_str(text)
            .map_err(|e| Error::Usage(format!("{}: {}", path.display(), e.message().trim())))?;
        let table = outer.study.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no [study] table; add one with the case studies (see studies/default.toml)",
                path.display()
            ))
        })?;
        for c in &table.cases {
            if !plan.datasets.iter().any(|d| d.label == c.dataset) {
                return Err(Error::Usage(format!(
                    "{}: case {} names dataset {}, which the study does not have",
                    path.display(),
                    c.arch,
                    c.dataset
                )));
            }
            if !plan.runs.iter().any(|r| r.arch == c.arch) {
                return Err(Error::Usage(format!(
                    "{}: case architecture {} is not in [grid]",
                    path.display(),
                    c.arch
                )));
            }
        }
        Ok(Study { plan, table })
    }
}

impl Study {
    /// The case nets: every seed of each case's cell under the case condition, trained again
    /// from the same initial weights (same seed) for the full number of epochs, without
    /// stopping at the first perfect validation score, as the thesis trained the networks it
    /// opened. An experiment of its own (`NAME-cases`), so the sweep's statistics never see
    /// them.
    pub fn case_plan(&self) -> Plan {
        let name = format!("{}-cases", self.plan.name);
        let mut plan = self.plan.clone();
        plan.runs = self
            .plan
            .runs
            .iter()
            .filter(|r| {
                self.table.cases.iter().any(|c| {
                    self.plan.datasets[r.dataset].label == c.dataset
                        && r.arch == c.arch
                        && in_condition(&r.condition, &self.table.case_condition)
                })
            })
            .map(|r| {
                let mut r = r.clone();
                r.key = format!("{name}{}", &r.key[self.plan.name.len()..]);
                r.settings.early_stop = false;
                r
            })
            .collect();
        plan.text = format!(
            "{}\n# case nets: the cells of [study] cases under {:?}, early_stop = false\n",
            self.plan.text, self.table.case_condition
        );
        plan.name = name;
        plan
    }
}

/// True when a run's condition (`name` or `name,axis=value`) is `condition`, or any when it is
/// empty.
fn in_condition(run: &str, condition: &str) -> bool {
    condition.is_empty() || run == condition || run.starts_with(&format!("{condition},"))
}

/// The runs of the study's plan found in the store (a store may hold other experiments).
pub fn plan_runs(store: &Store, plan: &Plan) -> Result<Vec<RunRow>> {
    let keys: std::collections::HashSet<&str> = plan.runs.iter().map(|r| r.key.as_str()).collect();
    let mut runs = store.runs(&RunFilter {
        experiment: Some(plan.name.clone()),
        ..Default::default()
    })?;
    runs.retain(|r| keys.contains(r.key.as_str()));
    Ok(runs)
}

/// Where the dissection stage writes the summary of the sweep's learned runs, and of the
/// case nets'.
pub fn dissection_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let d = dir.join("dissection");
    (d.join("sweep"), d.join("cases"))
}

/// Where the seeds stage writes: each case's families (`seeds/cases/SLUG`), and the barriers
/// over the sweep's grid (`seeds/grid`).
pub fn seeds_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let d = dir.join("seeds");
    (d.join("cases"), d.join("grid"))
}

/// Files of the datasets stage for a dataset label.
pub fn data_file(dir: &Path, label: &str, suffix: &str) -> PathBuf {
    dir.join("data").join(format!("{label}{suffix}"))
}

/// The run a case study uses: the first learned seed under the case condition, else the
/// best run. Returns the run and whether it learned.
/// The learned runs of a case under `condition`, by seed index: its population.
pub fn case_population<'a>(runs: &'a [RunRow], case: &Case, condition: &str) -> Vec<&'a RunRow> {
    case_cell(runs, case, condition)
        .into_iter()
        .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Learned)
        .collect()
}

/// Every run of a case's cell under `condition`, whatever its outcome, in seed order.
pub fn case_cell<'a>(runs: &'a [RunRow], case: &Case, condition: &str) -> Vec<&'a RunRow> {
    let mut v: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.dataset == case.dataset && r.arch == case.arch)
        .filter(|r| in_condition(&r.condition, condition))
        .collect();
    v.sort_by_key(|r| r.seed_index);
    v
}

pub fn pick_case(runs: &[RunRow], case: &Case, condition: &str) -> Option<(RunRow, bool)> {
    let mut cands: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.dataset == case.dataset && r.arch == case.arch)
        .filter(|r| in_condition(&r.condition, condition))
        .collect();
    cands.sort_by_key(|r| r.seed_index);
    if let Some(r) = cands
        .iter()
        .find(|r| r.outcome == crate::experiments::outcome::Outcome::Learned)
    {
        return Some(((*r).clone(), true));
    }
    cands
        .into_iter()
        .max_by(|a, b| {
            a.val_acc
                .total_cmp(&b.val_acc)
                .then(b.seed_index.cmp(&a.seed_index))
        })
        .map(|r| (r.clone(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arch: &str, condition: &str, seed_index: usize, outcome: &str, val_acc: f64) -> RunRow {
        RunRow::example(arch, condition, seed_index, outcome, val_acc)
    }

    #[test]
    fn the_case_is_the_first_learned_seed_under_its_condition() {
        let case = Case {
            dataset: "size".into(),
            arch: "16-4".parse().unwrap(),
        };
        let runs = vec![
            row("16-4", "stuck", 1, "learned", 1.0),
            row("16-4", "modern", 3, "learned", 1.0),
            row("16-4", "modern", 1, "stuck", 0.333),
            row("16-4", "modern,batch=16", 2, "learned", 1.0),
            row("8-4", "modern", 1, "learned", 1.0),
        ];
        let (r, learned) = pick_case(&runs, &case, "modern").unwrap();
        assert!(learned);
        assert_eq!((r.condition.as_str(), r.seed_index), ("modern,batch=16", 2));
        // Without a learned run: the best one, and the caller is told.
        let none: Vec<RunRow> = vec![
            row("16-4", "modern", 1, "stuck", 0.333),
            row("16-4", "modern", 2, "partial", 0.7),
        ];
        let (r, learned) = pick_case(&none, &case, "modern").unwrap();
        assert!(!learned);
        assert_eq!(r.seed_index, 2);
        assert!(pick_case(
            &none,
            &Case {
                dataset: "size".into(),
                arch: "2-2".parse().unwrap()
            },
            "modern"
        )
        .is_none());
        // An empty condition means any.
        assert_eq!(pick_case(&runs, &case, "").unwrap().0.condition, "stuck");
    }

    #[test]
    fn embedded_studies_parse_and_bad_ones_say_why() {
        for (text, runs) in [(DEFAULT, 600), (THESIS, 900)] {
            let s = Study::parse(text, Path::new("x.toml")).unwrap();
            assert_eq!(s.plan.runs.len(), runs);
            assert_eq!(s.table.cases.len(), 5);
            assert_eq!(s.table.rescues.len(), 5);
        }
        let no_table = DEFAULT.split("\n[study]\n").next().unwrap();
        let e = Study::parse(no_table, Path::new("x.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no [study] table"), "{e}");
        let bad = DEFAULT.replace(
            "{ dataset = \"size\", arch = \"16-4\" }",
            "{ dataset = \"sizes\", arch = \"16-4\" }",
        );
        let e = Study::parse(&bad, Path::new("x.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("names dataset sizes"), "{e}");
        let bad = DEFAULT.replace(
            "{ dataset = \"size\", arch = \"16-4\" }",
            "{ dataset = \"size\", arch = \"32-4\" }",
        );
        let e = Study::parse(&bad, Path::new("x.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("32-4 is not in [grid]"), "{e}");
    }
}
