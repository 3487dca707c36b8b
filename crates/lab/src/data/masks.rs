//! Concept masks beside a dataset or a panel ([`shapes::concepts`]): generated from the
//! generator's geometry, written into the `.npz` as `masks_<split>` arrays of shape
//! `(N, H, W)` and dtype uint16, whose bit `c` is concept `c` of `concept_names`
//! (`(masks >> c) & 1` in numpy), read back, and drawn as a sheet for `inspect`.
//!
//! Must not compute anything about networks: dissection reads these masks, it does not live
//! here.

use shapes::concepts::CONCEPT_NAMES;
use shapes::{DatasetSpec, Split as Part};

use crate::draw::{Canvas, FAINT, FRAME, INK, PAPER};
use crate::error::{Error, Result};
use crate::files::npz::{NpzFile, NpzWriter};

/// The concept masks of every image of some named parts (`train`, `val`, `test`, or `panel`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConceptMasks {
    pub concept_names: Vec<String>,
    pub height: usize,
    pub width: usize,
    /// By part name, `[n, h * w]` mask words.
    pub parts: Vec<(String, Vec<u16>)>,
}

impl ConceptMasks {
    fn new(side: usize, parts: Vec<(String, Vec<u16>)>) -> ConceptMasks {
        ConceptMasks {
            concept_names: CONCEPT_NAMES.iter().map(|s| s.to_string()).collect(),
            height: side,
            width: side,
            parts,
        }
    }

    /// The masks of every split a spec draws (the test split only when it has one).
    pub fn of_spec(spec: &DatasetSpec) -> ConceptMasks {
        let mut parts = vec![Part::Train, Part::Val];
        if spec.test > 0 {
            parts.push(Part::Test);
        }
        ConceptMasks::new(
            spec.image_size as usize,
            parts
                .into_iter()
                .flat_map(|p| ConceptMasks::of_spec_part(spec, p).parts)
                .collect(),
        )
    }

    /// The masks of split `part` of `d`, drawn again from its generator spec; `None` for data
    /// without one (a dataset from elsewhere: its masks are unknown).
    pub fn of_dataset(
        d: &crate::data::dataset::Dataset,
        part: Part,
    ) -> Result<Option<ConceptMasks>> {
        let Some(meta) = d.meta.as_ref() else {
            return Ok(None);
        };
        let spec = DatasetSpec::from_canonical_json(&meta.spec.to_string())?;
        Ok(Some(ConceptMasks::of_spec_part(&spec, part)))
    }

    /// The masks of one split a spec draws.
    pub fn of_spec_part(spec: &DatasetSpec, part: Part) -> ConceptMasks {
        ConceptMasks::new(
            spec.image_size as usize,
            vec![(
                part.name().to_string(),
                shapes::generate::generate_masks(spec, part),
            )],
        )
    }

    /// The masks of a panel's images, as the part `panel`.
    pub fn of_panel(panel: &shapes::panel::Panel, side: u32) -> ConceptMasks {
        ConceptMasks::new(side as usize, vec![("panel".into(), panel.masks(side))])
    }

    /// The masks stored in the `.npz` at `path`, if it holds any, for parts of the given image
    /// counts and side.
    pub fn of_file(
        path: &std::path::Path,
        expected: &[(&str, usize)],
        side: (usize, usize),
    ) -> Result<Option<ConceptMasks>> {
        if !path.is_file() {
            return Ok(None);
        }
        ConceptMasks::read(&NpzFile::open(path)?, expected, side)
    }

    /// The masks of one part, `[n, h * w]`.
    pub fn part(&self, name: &str) -> Option<&[u16]> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.as_slice())
    }

    /// Adds `masks_<part>` and `concept_names` to an archive being written.
    pub fn add_to<W: std::io::Write + std::io::Seek>(
        &self,
        z: &mut NpzWriter<W>,
    ) -> std::io::Result<()> {
        let px = (self.height * self.width) as u64;
        for (name, m) in &self.parts {
            let n = m.len() as u64 / px.max(1);
            z.add_u16(
                &format!("masks_{name}"),
                &[n, self.height as u64, self.width as u64],
                m,
            )?;
        }
        let names: Vec<&str> = self.concept_names.iter().map(String::as_str).collect();
        z.add_strings("concept_names", &[names.len() as u64], &names)
    }

    /// The masks an archive holds, `None` when it has none; `expected` gives each part's image
    /// count and side, which the masks must match.
    pub fn read(
        f: &NpzFile,
        expected: &[(&str, usize)],
        side: (usize, usize),
    ) -> Result<Option<ConceptMasks>> {
        if !f.has("concept_names") {
            return Ok(None);
        }
        let bad = |r: String| Error::bad(f.path(), r);
        let concept_names = f.strings("concept_names")?;
        if concept_names.is_empty() || concept_names.len() > 16 {
            return Err(bad(format!(
                "has {} concept_names; masks hold 1 to 16 concepts as the bits of a uint16",
                concept_names.len()
            )));
        }
        let mut parts = Vec::new();
        for &(name, n) in expected {
            let key = format!("masks_{name}");
            if !f.has(&key) {
                return Err(bad(format!(
                    "has concept_names but no {key}; write the masks of every split or none"
                )));
            }
            let (shape, v) = f.ints(&key)?;
            if shape != [n as u64, side.0 as u64, side.1 as u64] {
                return Err(bad(format!(
                    "array `{key}` has shape {shape:?}, expected ({n}, {}, {}) to match its images",
                    side.0, side.1
                )));
            }
            let limit = 1i64 << concept_names.len();
            if let Some(w) = v.iter().find(|&&w| !(0..limit).contains(&w)) {
                return Err(bad(format!(
                    "array `{key}` holds {w}, which sets a bit past its {} concepts",
                    concept_names.len()
                )));
            }
            parts.push((name.to_string(), v.into_iter().map(|w| w as u16).collect()));
        }
        Ok(Some(ConceptMasks {
            concept_names,
            height: side.0,
            width: side.1,
            parts,
        }))
    }

    /// A sheet of the first `rows` images of `part` (`images`: `[n, h, w]`): each image beside
    /// its masks, one column per concept.
    pub fn sheet(&self, part: &str, images: &[u8], rows: usize, title: &str) -> Canvas {
        let (h, w) = (self.height, self.width);
        let px = h * w;
        let masks = self.part(part).unwrap_or(&[]);
        let n = rows
            .min(images.len() / px.max(1))
            .min(masks.len() / px.max(1));
        let scale = (56 / h.max(w)).max(1);
        let (cw, ch) = (w * scale + 6, h * scale + 6);
        let cols = 1 + self.concept_names.len();
        let width = (24 + cols * cw).max(24 + Canvas::text_width(title, 1));
        // Column names read upwards above their column, below the title.
        let longest = self
            .concept_names
            .iter()
            .map(|n| Canvas::text_width(n, 1))
            .max()
            .unwrap_or(0);
        let top = 28 + longest + 6;
        let mut c = Canvas::new(width, top + n * ch + 12, PAPER);
        c.text(12, 10, title, 1, INK);
        c.text(12, top - 12, "image", 1, FAINT);
        for (j, name) in self.concept_names.iter().enumerate() {
            c.text_up(12 + (j + 1) * cw + cw / 2 - 4, top - 4, name, FAINT);
        }
        for i in 0..n {
            let y = top + i * ch;
            c.gray(12, y, &images[i * px..(i + 1) * px], w, h, scale);
            for j in 0..self.concept_names.len() {
                let bits: Vec<u8> = masks[i * px..(i + 1) * px]
                    .iter()
                    .map(|&m| if m >> j & 1 == 1 { 255 } else { 0 })
                    .collect();
                let x = 12 + (j + 1) * cw;
                c.gray(x, y, &bits, w, h, scale);
                c.frame(x, y, w * scale, h * scale, FRAME);
            }
        }
        c
    }
}

/// Writes masks alone into an `.npz` (beside an ImageFolder tree), atomically, replacing it.
pub fn write_npz(m: &ConceptMasks, path: &std::path::Path) -> Result<()> {
    crate::files::fsio::write_file_atomic(path, true, |out| {
        let mut z = NpzWriter::new(out);
        m.add_to(&mut z)?;
        z.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DatasetSpec {
        shapes::SpecFile::from_toml(
            "train = 9\nval = 6\ntest = 3\n[factors]\nsize = { min = 0.4, max = 0.8 }",
        )
        .unwrap()
        .resolve()
        .unwrap()
    }

    #[test]
    fn masks_round_trip_through_an_npz_and_bad_ones_are_refused() {
        let m = ConceptMasks::of_spec(&spec());
        assert_eq!(m.parts.len(), 3);
        assert_eq!(m.part("test").unwrap().len(), 3 * 28 * 28);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npz");
        let write = |m: &ConceptMasks| {
            crate::files::fsio::write_file_atomic(&p, true, |out| {
                let mut z = NpzWriter::new(out);
                m.add_to(&mut z)?;
                z.finish()?;
                Ok(())
            })
            .unwrap()
        };
        write(&m);
        let f = NpzFile::open(&p).unwrap();
        let expected = [("train", 9), ("val", 6), ("test", 3)];
        let back = ConceptMasks::read(&f, &expected, (28, 28))
            .unwrap()
            .unwrap();
        assert_eq!(back, m);
        // A count that does not match the images, and a missing split, are errors.
        let e = ConceptMasks::read(&f, &[("train", 10)], (28, 28))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected (10, 28, 28)"), "{e}");
        let e = ConceptMasks::read(&f, &[("panel", 3)], (28, 28))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no masks_panel"), "{e}");
        // A word with a bit past the named concepts is refused.
        let mut wide = m.clone();
        wide.concept_names.truncate(3);
        write(&wide);
        let f = NpzFile::open(&p).unwrap();
        let e = ConceptMasks::read(&f, &expected, (28, 28))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sets a bit past its 3 concepts"), "{e}");
    }

    #[test]
    fn the_sheet_shows_each_concept_of_each_image() {
        let s = spec();
        let m = ConceptMasks::of_spec(&s);
        let images = shapes::generate_split(&s, Part::Train, &|_| {}).images;
        let c = m.sheet("train", &images, 4, "masks");
        assert!(c.width > 12 * 30 && c.height > 4 * 30);
    }
}
