//! Named dataset specs: the thesis's datasets and the variations its future work asked for.
//!
//! The thesis (THESIS.md, Data) drew circles, squares and triangles (its text says "círculos"
//! and "cuadrados"), so the presets keep `aspect = 1`: the `ellipse` class is a circle and the
//! `rectangle` a square unless a spec deforms them. Sizes follow the thesis's radius fractions;
//! counts follow its scale (about 6,000/3,000 for size, 12,000/6,000 for rotation).

use crate::spec::{DatasetSpec, Dist, FactorTable, SpecError, SpecFile};

/// A named spec.
#[derive(Clone, Debug)]
pub struct Preset {
    /// Canonical name.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// One line for `--help` and listings.
    pub description: &'static str,
}

/// Every preset, in the order listings show them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "thesis-1.2",
        aliases: &[],
        description: "thesis dataset 1.2: centred figures, size 0.1-0.9 (the smallest are unrecognisable)",
    },
    Preset {
        name: "thesis-1.3",
        aliases: &["size"],
        description: "thesis dataset 1.3: centred figures, size 0.3-0.9 (case studies 1 and 2)",
    },
    Preset {
        name: "thesis-2.1",
        aliases: &["rotation"],
        description: "thesis dataset 2.1: size 0.7, random rotation about the centroid (case studies 3 and 4)",
    },
    Preset {
        name: "deform",
        aliases: &[],
        description: "size 0.6, aspect ratio 0.5-2 and shear -0.5..0.5 (future work: deformation)",
    },
    Preset {
        name: "position",
        aliases: &[],
        description: "size 0.3-0.5, centroid offset -0.5..0.5 in x and y",
    },
    Preset {
        name: "size-rotation",
        aliases: &[],
        description: "size 0.3-0.9 and any rotation at once (future work: two variations)",
    },
    Preset {
        name: "outline",
        aliases: &[],
        description: "size 0.4-0.9, filled or outlined (stroke 0.15) at random",
    },
    Preset {
        name: "noise",
        aliases: &[],
        description: "size 0.3-0.9, intensity 0.5-1 and Gaussian pixel noise sigma 0-0.3",
    },
];

fn uniform(min: f64, max: f64) -> Option<Dist> {
    Some(Dist::Uniform { min, max })
}

/// Finds a preset by name or alias.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name == name || p.aliases.contains(&name))
}

impl Preset {
    /// The preset as a spec file (so command-line overrides apply before validation).
    pub fn spec_file(&self) -> SpecFile {
        let mut f = FactorTable::default();
        let (train, val) = match self.name {
            "thesis-1.2" => {
                f.size = uniform(0.1, 0.9);
                (6000, 3000)
            }
            "thesis-1.3" => {
                f.size = uniform(0.3, 0.9);
                (6000, 3000)
            }
            "thesis-2.1" => {
                f.size = Some(Dist::Fixed(0.7));
                f.rotation = uniform(0.0, 360.0);
                (12000, 6000)
            }
            "deform" => {
                f.size = Some(Dist::Fixed(0.6));
                f.aspect = uniform(0.5, 2.0);
                f.shear = uniform(-0.5, 0.5);
                (6000, 3000)
            }
            "position" => {
                f.size = uniform(0.3, 0.5);
                f.offset_x = uniform(-0.5, 0.5);
                f.offset_y = uniform(-0.5, 0.5);
                (6000, 3000)
            }
            "size-rotation" => {
                f.size = uniform(0.3, 0.9);
                f.rotation = uniform(0.0, 360.0);
                (12000, 6000)
            }
            "outline" => {
                f.size = uniform(0.4, 0.9);
                f.outline = Some(Dist::Choice(vec![0.0, 1.0]));
                f.stroke = Some(Dist::Fixed(0.15));
                (6000, 3000)
            }
            "noise" => {
                f.size = uniform(0.3, 0.9);
                f.intensity = uniform(0.5, 1.0);
                f.noise = uniform(0.0, 0.3);
                (6000, 3000)
            }
            other => unreachable!("preset {other} has no spec"),
        };
        SpecFile {
            name: Some(self.name.to_string()),
            train: Some(train),
            val: Some(val),
            test: Some(val),
            factors: f,
            ..SpecFile::default()
        }
    }

    /// The resolved spec.
    pub fn spec(&self) -> Result<DatasetSpec, SpecError> {
        self.spec_file().resolve()
    }
}

/// The names a user may type, for error messages.
pub fn names() -> Vec<&'static str> {
    PRESETS
        .iter()
        .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for p in PRESETS {
            let s = p.spec().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(s.train, 2 * s.val, "{} keeps 2:1", p.name);
        }
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(find("size").unwrap().name, "thesis-1.3");
        assert_eq!(find("rotation").unwrap().name, "thesis-2.1");
        assert!(find("thesis-9").is_none());
    }

    #[test]
    fn thesis_scale() {
        let s = find("thesis-2.1").unwrap().spec().unwrap();
        assert_eq!((s.train, s.val), (12000, 6000));
        assert_eq!(s.varying_factors(), vec!["rotation"]);
        let s = find("size-rotation").unwrap().spec().unwrap();
        assert_eq!(s.varying_factors(), vec!["size", "rotation"]);
    }
}
