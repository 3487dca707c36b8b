//! The analyses of a run kept in the store, typed: one kind and one parameter record per
//! artefact, whichever command computed it.
//!
//! `shapelab analyze --store` and the study's case stage record the same
//! [`Report`](crate::analyses::analysis::Report) under kind `analysis` keyed by the data it was
//! measured on; `shapelab prune --store` records its table under kind `prune`. Stores written
//! before this unification also hold `study-case` rows (keyed by the case); they are read as
//! the `analysis` of the case's dataset and never written again.
//!
//! Must not compute analyses; it only writes and reads their records.

use serde::{Deserialize, Serialize};

use crate::analyses::analysis::Report;
use crate::analyses::dissection::Dissection;
use crate::analyses::pruning::PruneJson;
use crate::error::Result;
use crate::experiments::first_steps::FirstSteps;
use crate::experiments::store::{AnalysisKind, Store};

/// What an `analysis` record is keyed by: the name of the data it was measured on.
#[derive(Serialize)]
struct AnalysisParams<'a> {
    data: &'a str,
}

/// What a `prune` record is keyed by. Fields in alphabetical order: the stored text is the
/// one earlier shapelab versions wrote.
#[derive(Serialize)]
pub struct PruneParams<'a> {
    pub data: &'a str,
    pub on: &'a str,
    pub stop: &'a str,
    pub ties: &'a str,
}

/// What a `dissection` record is keyed by (alphabetical order).
#[derive(Serialize)]
struct DissectionParams<'a> {
    data: &'a str,
    quantile: f64,
    split: &'a str,
}

/// The key of a legacy `study-case` record: `{"case": {"dataset": ..., "arch": ...}}`.
#[derive(Deserialize)]
struct LegacyCase {
    case: LegacyCaseKey,
}

#[derive(Deserialize)]
struct LegacyCaseKey {
    dataset: String,
}

impl Store {
    /// Records the analysis of run `key` on `data` (replacing an earlier one on the same data).
    pub fn put_run_analysis(&self, key: &str, data: &str, report: &Report) -> Result<()> {
        let params = serde_json::to_string(&AnalysisParams { data }).expect("json");
        let json = serde_json::to_string(report).expect("json");
        self.put_analysis(key, AnalysisKind::Analysis, &params, &json)
    }

    /// The analysis of run `key` on `data`, if recorded; a record that does not read back is
    /// an error naming the run, never a default.
    pub fn run_analysis(&self, key: &str, data: &str) -> Result<Option<Report>> {
        let want = serde_json::to_string(&AnalysisParams { data }).expect("json");
        let mut legacy = None;
        for (kind, params, result) in self.analyses(key)? {
            let matches = match kind {
                AnalysisKind::Analysis => params == want,
                AnalysisKind::StudyCase => serde_json::from_str::<LegacyCase>(&params)
                    .is_ok_and(|p| p.case.dataset == data),
                AnalysisKind::Prune | AnalysisKind::FirstSteps | AnalysisKind::Dissection => false,
            };
            if !matches {
                continue;
            }
            let report: Report = serde_json::from_str(&result).map_err(|e| {
                self.fault(format!("the analysis of run {key} does not read back ({e}); run the analysis again to replace it"),
                )
            })?;
            if kind == AnalysisKind::Analysis {
                return Ok(Some(report));
            }
            legacy = Some(report);
        }
        Ok(legacy)
    }

    /// Records the replayed first updates of run `key`.
    pub fn put_first_steps(&self, key: &str, f: &FirstSteps) -> Result<()> {
        let params = format!(
            r#"{{"steps":{},"probe":{}}}"#,
            f.relative_update.len(),
            f.probe
        );
        let json = serde_json::to_string(f).expect("json");
        self.put_analysis(key, AnalysisKind::FirstSteps, &params, &json)
    }

    /// The replayed first updates of run `key`, if recorded (the longest replay); one that does
    /// not read back is an error naming the run.
    pub fn first_steps(&self, key: &str) -> Result<Option<FirstSteps>> {
        let mut best: Option<FirstSteps> = None;
        for (kind, _, result) in self.analyses(key)? {
            if kind != AnalysisKind::FirstSteps {
                continue;
            }
            let f: FirstSteps = serde_json::from_str(&result).map_err(|e| {
                self.fault(format!(
                    "the first steps of run {key} do not read back ({e}); the store is damaged"
                ))
            })?;
            if best
                .as_ref()
                .is_none_or(|b| f.relative_update.len() > b.relative_update.len())
            {
                best = Some(f);
            }
        }
        Ok(best)
    }

    /// Records the dissection of run `key` (replacing one on the same data, split and
    /// quantile).
    pub fn put_dissection(&self, key: &str, d: &Dissection) -> Result<()> {
        let params = DissectionParams {
            data: &d.data,
            quantile: d.settings.quantile,
            split: d.split.name(),
        };
        let params = serde_json::to_string(&params).expect("json");
        let json = serde_json::to_string(d).expect("json");
        self.put_analysis(key, AnalysisKind::Dissection, &params, &json)
    }

    /// Every dissection of run `key`; one that does not read back is an error naming the run.
    pub fn dissections(&self, key: &str) -> Result<Vec<Dissection>> {
        let mut out = Vec::new();
        for (kind, _, result) in self.analyses(key)? {
            if kind != AnalysisKind::Dissection {
                continue;
            }
            out.push(serde_json::from_str(&result).map_err(|e| {
                self.fault(format!("the dissection of run {key} does not read back ({e}); run `shapelab dissect` again to replace it"),
                )
            })?);
        }
        Ok(out)
    }

    /// Records the pruning table of run `key`.
    pub fn put_pruning(&self, key: &str, params: &PruneParams, table: &PruneJson) -> Result<()> {
        let params = serde_json::to_string(params).expect("json");
        let json = serde_json::to_string(table).expect("json");
        self.put_analysis(key, AnalysisKind::Prune, &params, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::store::tests::{dataset, row};

    fn store_with_run(dir: &std::path::Path) -> Store {
        let mut s = Store::open(&dir.join("s.db")).unwrap();
        dataset(&s);
        assert!(s.insert_run(&row("e/d/2-2/seed1"), &[]).unwrap());
        s
    }

    #[test]
    fn an_analysis_is_recorded_once_per_data_and_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_run(dir.path());
        let key = "e/d/2-2/seed1";
        assert_eq!(s.run_analysis(key, "size").unwrap(), None);
        let mut r = Report::example();
        s.put_run_analysis(key, "size", &r).unwrap();
        r.failures.accuracy = 0.5;
        s.put_run_analysis(key, "size", &r).unwrap();
        s.put_run_analysis(key, "other", &Report::example())
            .unwrap();
        assert_eq!(s.run_analysis(key, "size").unwrap(), Some(r));
        let rows = s.analyses(key).unwrap();
        assert_eq!(rows.len(), 2, "one record per kind and data");
        assert_eq!(rows[1].0, AnalysisKind::Analysis);
        assert_eq!(rows[1].1, r#"{"data":"size"}"#);
    }

    #[test]
    fn a_dissection_is_recorded_per_split_and_quantile_and_read_back_typed() {
        use crate::analyses::dissection::{Dissection, Settings};
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_run(dir.path());
        let key = "e/d/2-2/seed1";
        let mut d = Dissection {
            schema: crate::files::schema::Schema::CURRENT,
            model: "m".into(),
            arch: "2-2".into(),
            data: "size".into(),
            split: shapes::Split::Val,
            images: 10,
            settings: Settings::default(),
            concepts: vec!["interior".into()],
            accuracy: 1.0,
            layers: vec![],
        };
        s.put_dissection(key, &d).unwrap();
        s.put_dissection(key, &d).unwrap();
        d.split = shapes::Split::Test;
        s.put_dissection(key, &d).unwrap();
        let back = s.dissections(key).unwrap();
        assert_eq!(back.len(), 2, "one record per data, split and quantile");
        assert!(back.contains(&d));
        // A record that does not read back is an error naming the run.
        s.put_analysis(key, AnalysisKind::Dissection, "{}", "{\"model\": 1}")
            .unwrap();
        let e = s.dissections(key).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("does not read back"), "{e}");
    }

    /// What a store gives back is what was put, bit for bit: a resumed study summarises the
    /// records it reads as a fresh one summarises what it computed. (`serde_json`'s default
    /// float parser is off by one unit in the last place on about one value in ten, these
    /// among them; the workspace turns on its exact one.)
    #[test]
    fn recorded_numbers_read_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_run(dir.path());
        let key = "e/d/2-2/seed1";
        let mut r = Report::example();
        for (i, v) in [127.61238947612067, 492.97794992670316, 202.30135498804106]
            .into_iter()
            .enumerate()
        {
            r.failures.accuracy = v;
            s.put_run_analysis(key, "size", &r).unwrap();
            let back = s.run_analysis(key, "size").unwrap().unwrap();
            assert_eq!(back.failures.accuracy.to_bits(), v.to_bits(), "value {i}");
        }
    }

    #[test]
    fn legacy_study_case_records_read_as_the_analysis_of_their_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_run(dir.path());
        let key = "e/d/2-2/seed1";
        let json = serde_json::to_string(&Report::example()).unwrap();
        // As a study before the one-pipeline change stored it.
        let params = r#"{"case":{"arch":"2-2","dataset":"size"}}"#;
        s.put_analysis(key, AnalysisKind::StudyCase, params, &json)
            .unwrap();
        assert_eq!(
            s.run_analysis(key, "size").unwrap(),
            Some(Report::example())
        );
        assert_eq!(s.run_analysis(key, "rotation").unwrap(), None);
        // A current record wins over the legacy one.
        let mut newer = Report::example();
        newer.data = "newer".into();
        s.put_run_analysis(key, "size", &newer).unwrap();
        assert_eq!(s.run_analysis(key, "size").unwrap(), Some(newer));
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_run(dir.path());
        let key = "e/d/2-2/seed1";
        let mut v = serde_json::to_value(Report::example()).unwrap();
        v.as_object_mut().unwrap().remove("similarity");
        s.put_analysis(
            key,
            AnalysisKind::Analysis,
            r#"{"data":"size"}"#,
            &v.to_string(),
        )
        .unwrap();
        let e = s.run_analysis(key, "size").unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("similarity"), "{e}");
    }

    #[test]
    fn prune_params_keep_the_text_earlier_versions_wrote() {
        let p = PruneParams {
            data: "size",
            on: "val",
            stop: "one-per-layer",
            ties: "batch",
        };
        let old = serde_json::json!({"on": "val", "ties": "batch", "stop": "one-per-layer", "data": "size"});
        assert_eq!(serde_json::to_string(&p).unwrap(), old.to_string());
    }
}
