//! Image panels in memory and in their `.npz` file.
//!
//! | array | dtype | shape |
//! |---|---|---|
//! | `x_panel` | uint8 | (N, H, W) |
//! | `y_panel` | uint8 | (N,) |
//! | `factors_panel` | float32 | (N, K) |
//! | `factor_names`, `class_names` | unicode | (K,), (C,) |
//! | `panel_groups`, `panel_captions` | unicode | (N,) e.g. `triangle 30`, `triangle 30 (32)` |
//! | `spec` | unicode | () JSON: format `shapelab-panel`, panel name, generator version |

use std::path::Path;

use serde::{Deserialize, Serialize};
use shapes::{FACTOR_NAMES, GENERATOR_VERSION};

use crate::error::{Error, Result};
use crate::files::fsio::write_file_atomic;
use crate::files::npz::{NpzFile, NpzWriter};

pub const PANEL_FORMAT: &str = "shapelab-panel";

/// The `spec` JSON of a panel file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PanelMeta {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub format: String,
    pub name: String,
    pub generator: String,
    pub shapelab_version: String,
}

/// A panel of images with their groups and captions.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelData {
    pub meta: PanelMeta,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub factor_names: Vec<String>,
    /// `[n, h, w]`.
    pub images: Vec<u8>,
    /// `[n]`.
    pub labels: Vec<u8>,
    /// `[n, k]`.
    pub factors: Vec<f32>,
    pub groups: Vec<String>,
    pub captions: Vec<String>,
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

impl PanelData {
    /// Draws a named panel at `side` pixels.
    pub fn from_panel(panel: &shapes::panel::Panel, side: u32) -> PanelData {
        PanelData {
            meta: PanelMeta {
                schema: crate::files::schema::Schema::CURRENT,
                format: PANEL_FORMAT.into(),
                name: panel.name.into(),
                generator: GENERATOR_VERSION.into(),
                shapelab_version: crate::VERSION.into(),
            },
            height: side as usize,
            width: side as usize,
            class_names: shapes::Class::ALL
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            factor_names: FACTOR_NAMES.iter().map(|s| s.to_string()).collect(),
            images: panel.render(side),
            labels: panel
                .items
                .iter()
                .map(|i| i.factors.class.label())
                .collect(),
            factors: panel
                .items
                .iter()
                .flat_map(|i| i.factors.to_row())
                .collect(),
            groups: panel.items.iter().map(|i| i.group.clone()).collect(),
            captions: panel.items.iter().map(|i| i.label.clone()).collect(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Writes the `.npz` atomically.
    pub fn write_npz(&self, path: &Path, force: bool) -> Result<()> {
        self.write_npz_with(path, force, None)
    }

    /// Writes the panel atomically, with its concept masks (part `panel`) when given.
    pub fn write_npz_with(
        &self,
        path: &Path,
        force: bool,
        masks: Option<&crate::data::masks::ConceptMasks>,
    ) -> Result<()> {
        let (n, h, w, k) = (
            self.len() as u64,
            self.height as u64,
            self.width as u64,
            self.factor_names.len() as u64,
        );
        write_file_atomic(path, force, |out| {
            let mut z = NpzWriter::new(out);
            z.add_u8("x_panel", &[n, h, w], &self.images)?;
            z.add_u8("y_panel", &[n], &self.labels)?;
            z.add_f32("factors_panel", &[n, k], &self.factors)?;
            z.add_strings("factor_names", &[k], &strs(&self.factor_names))?;
            z.add_strings(
                "class_names",
                &[self.class_names.len() as u64],
                &strs(&self.class_names),
            )?;
            z.add_strings("panel_groups", &[n], &strs(&self.groups))?;
            z.add_strings("panel_captions", &[n], &strs(&self.captions))?;
            let json = serde_json::to_string(&self.meta).expect("meta serialises");
            z.add_strings("spec", &[], &[&json])?;
            if let Some(m) = masks {
                m.add_to(&mut z)?;
            }
            z.finish()?;
            Ok(())
        })
    }

    /// Reads and validates a panel file.
    pub fn read_npz(path: &Path) -> Result<PanelData> {
        let f = NpzFile::open(path)?;
        Self::read_from(&f)
    }

    pub(crate) fn read_from(f: &NpzFile) -> Result<PanelData> {
        let bad = |r: String| Error::bad(f.path(), r);
        let json = f.strings("spec")?.into_iter().next().ok_or_else(|| {
            bad("array `spec` is empty; it should hold the panel's metadata".into())
        })?;
        let meta: PanelMeta = serde_json::from_str(&json)
            .map_err(|e| bad(format!("array `spec` is not panel metadata: {e}")))?;
        if meta.format != PANEL_FORMAT {
            return Err(bad(format!(
                "`spec` says format {:?}, expected {PANEL_FORMAT:?}",
                meta.format
            )));
        }
        let (xs, images) = f.u8("x_panel")?;
        if xs.len() != 3 {
            return Err(bad(format!(
                "array `x_panel` has shape {xs:?}, expected (N, H, W)"
            )));
        }
        let n = xs[0] as usize;
        if n == 0 {
            return Err(bad("holds no images; a panel needs at least one".into()));
        }
        crate::data::dataset::check_side(f.path(), xs[2] as usize, xs[1] as usize)?;
        let (_, labels) = f.u8("y_panel")?;
        let (fs, factors) = f.floats("factors_panel")?;
        let factor_names = f.strings("factor_names")?;
        let class_names = f.strings("class_names")?;
        let groups = f.strings("panel_groups")?;
        let captions = f.strings("panel_captions")?;
        if labels.len() != n
            || groups.len() != n
            || captions.len() != n
            || fs != [n as u64, factor_names.len() as u64]
        {
            return Err(bad(format!(
                "panel arrays disagree on the image count ({n} images)"
            )));
        }
        if let Some(l) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(bad(format!(
                "y_panel holds label {l} but there are {} classes",
                class_names.len()
            )));
        }
        Ok(PanelData {
            meta,
            height: xs[1] as usize,
            width: xs[2] as usize,
            class_names,
            factor_names,
            images,
            labels,
            factors,
            groups,
            captions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_round_trip() {
        let p = PanelData::from_panel(&shapes::panel::find("thesis-rotation").unwrap(), 28);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.npz");
        p.write_npz(&path, false).unwrap();
        assert_eq!(PanelData::read_npz(&path).unwrap(), p);
    }
}
