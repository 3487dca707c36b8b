//! Datasets in memory and in their `.npz` file (docs/datasets.md, Files).
//!
//! The file layout, which numpy, Keras and PyTorch users open unchanged:
//!
//! | array | dtype | shape |
//! |---|---|---|
//! | `x_train`, `x_val`, `x_test` | uint8 | (N, H, W), white figures on black |
//! | `y_train`, `y_val`, `y_test` | uint8 | (N,) class labels |
//! | `factors_train`, `factors_val`, `factors_test` | float32 | (N, K) latent factors |
//! | `factor_names` | unicode | (K,) |
//! | `class_names` | unicode | (C,) in label order |
//! | `spec` | unicode | () JSON: format, generator version, hash, name and the spec |
//!
//! The test split is held out: training stops on validation and every choice an analysis makes
//! uses validation, while what is reported is measured on test. Files written before it existed
//! (and datasets from elsewhere) may have no `x_test`; commands then measure on validation and
//! say so. A dataset from elsewhere may omit the factors, `factor_names`, `class_names` and `spec`;
//! labels may be any integer dtype. Everything read is validated: shapes agree, labels are in
//! range, images are uint8.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shapes::{DatasetSpec, Split as Part, SplitData, FACTOR_NAMES, GENERATOR_VERSION, NUM_FACTORS};

use crate::error::{Error, Result};
use crate::files::fsio::write_file_atomic;
use crate::files::npz::{NpzFile, NpzWriter};

/// The format tag of a dataset's `spec` JSON.
pub const DATASET_FORMAT: &str = "shapelab-dataset";

/// One split.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Split {
    /// `[n, h, w]`.
    pub images: Vec<u8>,
    /// `[n]`.
    pub labels: Vec<u8>,
    /// `[n, k]` with `k` the dataset's factor count (0 if unknown).
    pub factors: Vec<f32>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl From<SplitData> for Split {
    fn from(d: SplitData) -> Split {
        Split {
            images: d.images,
            labels: d.labels,
            factors: d.factors,
        }
    }
}

/// What a shapelab-made dataset records about itself (the `spec` array).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub format: String,
    pub generator: String,
    pub shapelab_version: String,
    /// The preset or spec name, a label outside the identity.
    pub name: Option<String>,
    /// SHA-256 of the generator version and the canonical spec.
    pub hash: String,
    /// The canonical spec.
    pub spec: serde_json::Value,
}

impl DatasetMeta {
    /// The metadata of a freshly generated dataset.
    pub fn new(spec: &DatasetSpec, name: Option<String>) -> DatasetMeta {
        DatasetMeta {
            schema: crate::files::schema::Schema::CURRENT,
            format: DATASET_FORMAT.into(),
            generator: GENERATOR_VERSION.into(),
            shapelab_version: crate::VERSION.into(),
            name,
            hash: spec.hash(),
            spec: serde_json::from_str(&spec.canonical_json()).expect("canonical JSON parses"),
        }
    }

    /// The first 12 hex digits of the hash, for display.
    pub fn short_hash(&self) -> &str {
        crate::text::prefix(&self.hash, 12)
    }
}

/// A dataset: images, labels and factors of its splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub factor_names: Vec<String>,
    pub train: Split,
    pub val: Split,
    /// The held-out test split; `None` for files made before it existed or without one.
    pub test: Option<Split>,
    /// Present for datasets shapelab generated.
    pub meta: Option<DatasetMeta>,
    /// Files of an ImageFolder tree that were not read (not PNG images), relative to its root;
    /// empty for every other source.
    pub skipped: Vec<PathBuf>,
}

impl Dataset {
    /// Generates a dataset from a validated spec. `progress` receives image counts.
    pub fn generate(
        spec: &DatasetSpec,
        name: Option<String>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Dataset {
        let side = spec.image_size as usize;
        Dataset {
            height: side,
            width: side,
            class_names: shapes::Class::ALL
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            factor_names: FACTOR_NAMES.iter().map(|s| s.to_string()).collect(),
            train: shapes::generate_split(spec, Part::Train, progress).into(),
            val: shapes::generate_split(spec, Part::Val, progress).into(),
            test: (spec.test > 0)
                .then(|| shapes::generate_split(spec, Part::Test, progress).into()),
            meta: Some(DatasetMeta::new(spec, name)),
            skipped: Vec::new(),
        }
    }

    /// The split by name; `None` only for a test split the dataset does not have.
    pub fn try_split(&self, part: Part) -> Option<&Split> {
        match part {
            Part::Train => Some(&self.train),
            Part::Val => Some(&self.val),
            Part::Test => self.test.as_ref(),
        }
    }

    /// The split by name.
    ///
    /// # Panics
    /// For [`Part::Test`] when the dataset has none: callers pick the split with
    /// [`Dataset::held_out`] or check [`Dataset::try_split`] first.
    pub fn split(&self, part: Part) -> &Split {
        self.try_split(part)
            .expect("the test split exists where it is asked for")
    }

    /// The split results are reported on: test when the dataset has one, else validation
    /// (older files), which the report then names.
    pub fn held_out(&self) -> Part {
        if self.test.is_some() {
            Part::Test
        } else {
            Part::Val
        }
    }

    /// Each split present by name with its image count, in file order.
    pub fn part_sizes(&self) -> Vec<(&'static str, usize)> {
        self.parts()
            .iter()
            .map(|(p, s)| (p.name(), s.len()))
            .collect()
    }

    /// The splits present, in file order.
    pub fn parts(&self) -> Vec<(Part, &Split)> {
        let mut v = vec![(Part::Train, &self.train), (Part::Val, &self.val)];
        if let Some(t) = &self.test {
            v.push((Part::Test, t));
        }
        v
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Writes the `.npz` atomically.
    pub fn write_npz(&self, path: &Path, force: bool) -> Result<()> {
        self.write_npz_with(path, force, None)
    }

    /// Writes the `.npz` atomically, with the concept masks of every split when given.
    pub fn write_npz_with(
        &self,
        path: &Path,
        force: bool,
        masks: Option<&crate::data::masks::ConceptMasks>,
    ) -> Result<()> {
        let (h, w) = (self.height as u64, self.width as u64);
        let k = self.factor_names.len() as u64;
        write_file_atomic(path, force, |out| {
            let mut z = NpzWriter::new(out);
            for (part, s) in self.parts() {
                let name = part.name();
                let n = s.len() as u64;
                z.add_u8(&format!("x_{name}"), &[n, h, w], &s.images)?;
                z.add_u8(&format!("y_{name}"), &[n], &s.labels)?;
                if k > 0 {
                    z.add_f32(&format!("factors_{name}"), &[n, k], &s.factors)?;
                }
            }
            let names: Vec<&str> = self.factor_names.iter().map(String::as_str).collect();
            if k > 0 {
                z.add_strings("factor_names", &[k], &names)?;
            }
            let classes: Vec<&str> = self.class_names.iter().map(String::as_str).collect();
            z.add_strings("class_names", &[classes.len() as u64], &classes)?;
            if let Some(meta) = &self.meta {
                let json = serde_json::to_string(meta).expect("meta serialises");
                z.add_strings("spec", &[], &[&json])?;
            }
            if let Some(m) = masks {
                m.add_to(&mut z)?;
            }
            z.finish()?;
            Ok(())
        })
    }

    /// Checks what every reader must hold, whatever the format: at least one image in each
    /// split (analyses and outcomes are measured on the validation split), and a side length
    /// in the range `generate` accepts.
    pub fn validate(&self, source: &Path) -> Result<()> {
        for (part, split) in self.parts() {
            let name = part.name();
            if split.is_empty() {
                return Err(Error::bad(
                    source,
                    format!("the {name} split holds no images; a dataset needs at least one image in each split"),
                ));
            }
        }
        check_side(source, self.width, self.height)
    }

    /// One line naming the files an ImageFolder read skipped, if any.
    pub fn skipped_note(&self, source: &str) -> Option<String> {
        let first = self.skipped.first()?;
        Some(format!(
            "{source}: skipped {} that {} (first: {}); shapelab reads 8-bit grayscale PNGs",
            if self.skipped.len() == 1 {
                "1 file".to_string()
            } else {
                format!("{} files", self.skipped.len())
            },
            if self.skipped.len() == 1 {
                "is not a .png image"
            } else {
                "are not .png images"
            },
            first.display()
        ))
    }

    /// Reads and validates an `.npz` dataset (shapelab's or a compatible one).
    pub fn read_npz(path: &Path) -> Result<Dataset> {
        let f = NpzFile::open(path)?;
        read_from(&f)
    }
}

/// Refuses images outside the side lengths `generate` accepts (`shapes::spec::IMAGE_SIZE_RANGE`),
/// so every command takes the same sizes whatever made the file.
pub fn check_side(source: &Path, width: usize, height: usize) -> Result<()> {
    let (lo, hi) = shapes::spec::IMAGE_SIZE_RANGE;
    let ok = |v: usize| (lo as usize..=hi as usize).contains(&v);
    if !ok(width) || !ok(height) {
        return Err(Error::bad(
            source,
            format!("images are {width}x{height}; shapelab takes {lo} to {hi} pixels a side (resize them)"),
        ));
    }
    Ok(())
}

/// The labels `[n]` (checked to fit in u8) and the factors `[n, k]` (checked against
/// `factor_names`) of split `part` of a dataset npz holding `n` images in it.
fn labels_and_factors(
    f: &NpzFile,
    part: &str,
    n: u64,
    factor_names: &[String],
) -> Result<(Vec<u8>, Vec<f32>)> {
    let bad = |reason: String| Error::bad(f.path(), reason);
    let (ys, labels) = f.ints(&format!("y_{part}"))?;
    if ys != [n] {
        return Err(bad(format!(
            "array `y_{part}` has shape {ys:?}, expected ({n},) to match x_{part}"
        )));
    }
    if let Some(bad_label) = labels.iter().find(|&&l| !(0..=255).contains(&l)) {
        return Err(bad(format!(
            "y_{part} holds label {bad_label}; labels must be 0..=255"
        )));
    }
    let labels: Vec<u8> = labels.into_iter().map(|l| l as u8).collect();
    let factors = if f.has(&format!("factors_{part}")) {
        let (fs, v) = f.floats(&format!("factors_{part}"))?;
        let k = factor_names.len() as u64;
        if fs != [n, k] {
            return Err(bad(format!(
                "array `factors_{part}` has shape {fs:?}, expected ({n}, {k}) for {k} factor_names"
            )));
        }
        v
    } else if factor_names.is_empty() {
        Vec::new()
    } else {
        return Err(bad(format!("has factor_names but no factors_{part}")));
    };
    Ok((labels, factors))
}

pub(crate) fn read_from(f: &NpzFile) -> Result<Dataset> {
    let bad = |reason: String| Error::bad(f.path(), reason);
    if !f.has("x_train") && f.has("x_panel") {
        return Err(bad(
            "is an image panel, not a dataset; pass a dataset made by `shapelab generate --preset`"
                .into(),
        ));
    }
    let meta = if f.has("spec") {
        let json = f.strings("spec")?.into_iter().next().ok_or_else(|| {
            bad("array `spec` is empty; it should hold the dataset's metadata".into())
        })?;
        let meta: DatasetMeta = serde_json::from_str(&json).map_err(|e| {
            bad(format!(
                "array `spec` is not shapelab dataset metadata: {e}"
            ))
        })?;
        if meta.format != DATASET_FORMAT {
            return Err(bad(format!(
                "`spec` says format {:?}, expected {DATASET_FORMAT:?}",
                meta.format
            )));
        }
        Some(meta)
    } else {
        None
    };
    let factor_names = if f.has("factor_names") {
        f.strings("factor_names")?
    } else {
        Vec::new()
    };
    let mut hw = None;
    let mut max_label = 0;
    let mut splits = Vec::new();
    let has_test = f.has("x_test");
    for part in ["train", "val", "test"] {
        if part == "test" && !has_test {
            break;
        }
        let (xs, images) = f.u8(&format!("x_{part}"))?;
        if xs.len() != 3 || xs[1] == 0 || xs[2] == 0 {
            return Err(bad(format!(
                "array `x_{part}` has shape {xs:?}, expected (N, H, W) grayscale images"
            )));
        }
        match hw {
            None => hw = Some((xs[1], xs[2])),
            Some(prev) if prev != (xs[1], xs[2]) => {
                return Err(bad(format!(
                "x_train images are {}x{} but x_{part} images are {}x{}; every split needs one size",
                prev.0, prev.1, xs[1], xs[2]
            )))
            }
            _ => {}
        }
        let (labels, factors) = labels_and_factors(f, part, xs[0], &factor_names)?;
        max_label = labels.iter().map(|&l| l as i64).fold(max_label, i64::max);
        splits.push(Split {
            images,
            labels,
            factors,
        });
    }
    let class_names = if f.has("class_names") {
        let names = f.strings("class_names")?;
        if (max_label as usize) >= names.len() {
            return Err(bad(format!(
                "labels go up to {max_label} but class_names lists {} classes ({})",
                names.len(),
                names.join(", ")
            )));
        }
        names
    } else if max_label <= 2 {
        shapes::Class::ALL
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    } else {
        (0..=max_label).map(|i| format!("class{i}")).collect()
    };
    let (h, w) = hw.expect("both splits read");
    let test = if has_test { splits.pop() } else { None };
    let val = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    if let Some(m) = &meta {
        let promised = m.spec.get("test").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let found = test.as_ref().map_or(0, Split::len);
        if promised != found {
            return Err(bad(format!(
                "its spec promises {promised} test images but the file holds {found}; the file is damaged or was edited, so generate it again"
            )));
        }
        if factor_names.len() != NUM_FACTORS && !factor_names.is_empty() {
            return Err(bad(format!(
                "has {} factor names; shapelab {} writes {NUM_FACTORS}",
                factor_names.len(),
                m.generator
            )));
        }
    }
    let d = Dataset {
        height: h as usize,
        width: w as usize,
        class_names,
        factor_names,
        train,
        val,
        test,
        meta,
        skipped: Vec::new(),
    };
    d.validate(f.path())?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Dataset {
        let spec = shapes::SpecFile::from_toml(
            "train = 30\nval = 12\nseed = 5\n[factors]\nsize = { min = 0.3, max = 0.9 }",
        )
        .unwrap()
        .resolve()
        .unwrap();
        Dataset::generate(&spec, Some("t".into()), &|_| {})
    }

    #[test]
    fn npz_round_trip() {
        let d = small();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npz");
        d.write_npz(&p, false).unwrap();
        let back = Dataset::read_npz(&p).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.meta.unwrap().hash.len(), 64);
    }

    #[test]
    fn files_without_a_test_split_read_and_measure_on_validation() {
        let d = small();
        assert_eq!(d.test.as_ref().map(Split::len), Some(12));
        assert_eq!(d.held_out(), Part::Test);
        let dir = tempfile::tempdir().unwrap();
        // A file from before the test split: no x_test, a spec without `test`.
        let spec = shapes::SpecFile::from_toml("train = 30\nval = 12\ntest = 0\nseed = 5")
            .unwrap()
            .resolve()
            .unwrap();
        let old = Dataset::generate(&spec, None, &|_| {});
        assert!(old.test.is_none());
        let p = dir.path().join("old.npz");
        old.write_npz(&p, false).unwrap();
        let back = Dataset::read_npz(&p).unwrap();
        assert_eq!((back.test.is_none(), back.held_out()), (true, Part::Val));
        assert_eq!(back.try_split(Part::Test), None);
        // A file whose spec promises a test split it does not hold is damaged.
        let mut cut = small();
        cut.test = None;
        let q = dir.path().join("cut.npz");
        cut.write_npz(&q, false).unwrap();
        let e = Dataset::read_npz(&q).unwrap_err().to_string();
        assert!(
            e.contains("promises 12 test images but the file holds 0"),
            "{e}"
        );
    }

    #[test]
    fn same_spec_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.npz"), dir.path().join("b.npz"));
        small().write_npz(&a, false).unwrap();
        small().write_npz(&b, false).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn label_out_of_range_is_refused() {
        let mut d = small();
        d.val.labels[0] = 3;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npz");
        d.write_npz(&p, false).unwrap();
        let e = Dataset::read_npz(&p).unwrap_err().to_string();
        assert!(e.contains("labels go up to 3"), "{e}");
    }
}
