//! Dataset specifications: which factors vary, how, and how many images.
//!
//! A spec is written in TOML (or chosen as a preset) and resolved into a [`DatasetSpec`], which
//! is validated completely before any image is drawn: every range is ordered, every value lies
//! in its domain, and every figure the spec can produce fits the image (checked exactly, not by
//! sampling; see [`DatasetSpec::validate`]). The canonical JSON of a resolved spec, with the
//! generator version, is hashed into the dataset's identity.
//!
//! ```toml
//! name = "big-and-turned"      # optional label, not part of the identity
//! image_size = 28              # 8..=256
//! seed = 7
//! train = 6000                 # validation defaults to half of train
//! val = 3000
//!
//! [factors]                    # every factor: a number, {min, max} (uniform) or a list
//! size = { min = 0.3, max = 0.9 }
//! rotation = [0, 30, 330]
//! outline = [false, true]
//!
//! [class.rectangle]            # per-class overrides of [factors]
//! aspect = 2.0
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::factors::{Class, Factors};
use crate::figure::{critical_angles, rotation_matrix, unrotated_shape};

/// Bumped whenever the same spec would draw different bytes (geometry, rasteriser, sampling).
pub const GENERATOR_VERSION: &str = "shapes/1";

/// Smallest and largest image side.
pub const IMAGE_SIZE_RANGE: (u32, u32) = (8, 256);

/// Most images one dataset may hold (train + val), to fail early instead of exhausting memory.
pub const MAX_IMAGES: usize = 20_000_000;

/// How one factor is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// Always this value.
    Fixed(f64),
    /// Uniform on `[min, max]`.
    Uniform { min: f64, max: f64 },
    /// Uniformly one of these values.
    Choice(Vec<f64>),
}

impl Dist {
    /// Draws a value from a uniform `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> f64 {
        match self {
            Dist::Fixed(v) => *v,
            Dist::Uniform { min, max } => min + u * (max - min),
            Dist::Choice(values) => {
                values[((u * values.len() as f64) as usize).min(values.len() - 1)]
            }
        }
    }

    /// Smallest and largest value the distribution can give.
    pub fn bounds(&self) -> (f64, f64) {
        match self {
            Dist::Fixed(v) => (*v, *v),
            Dist::Uniform { min, max } => (*min, *max),
            Dist::Choice(v) => v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(*x), hi.max(*x))
                }),
        }
    }

    /// The values that bound a quantity monotone or convex in this factor: the ends of a
    /// range, or every listed value.
    fn extreme_values(&self) -> Vec<f64> {
        match self {
            Dist::Fixed(v) => vec![*v],
            Dist::Uniform { min, max } => vec![*min, *max],
            Dist::Choice(v) => v.clone(),
        }
    }

    /// True when more than one value is possible.
    pub fn varies(&self) -> bool {
        let (lo, hi) = self.bounds();
        lo != hi
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Fixed(v) => write!(f, "{v}"),
            Dist::Uniform { min, max } => write!(f, "uniform {min}..{max}"),
            Dist::Choice(v) => {
                let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                write!(f, "one of [{}]", items.join(", "))
            }
        }
    }
}

impl Serialize for Dist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Dist::Fixed(v) => s.serialize_f64(*v),
            Dist::Uniform { min, max } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("min", min)?;
                m.serialize_entry("max", max)?;
                m.end()
            }
            Dist::Choice(v) => v.serialize(s),
        }
    }
}

/// A number or a boolean (for `outline`), as written in a spec.
struct Scalar(f64);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(if v { 1.0 } else { 0.0 }))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dist;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a list of numbers, or { min = .., max = .. }")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Dist, E> {
                Ok(Dist::Fixed(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Dist, E> {
                Ok(Dist::Fixed(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Dist, E> {
                Ok(Dist::Fixed(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Dist, E> {
                Ok(Dist::Fixed(if v { 1.0 } else { 0.0 }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dist, A::Error> {
                let mut values = Vec::new();
                while let Some(Scalar(v)) = seq.next_element()? {
                    values.push(v);
                }
                Ok(Dist::Choice(values))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dist, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "min" => min = Some(map.next_value::<Scalar>()?.0),
                        "max" => max = Some(map.next_value::<Scalar>()?.0),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a range, expected `min` and `max`"
                            )))
                        }
                    }
                }
                match (min, max) {
                    (Some(min), Some(max)) => Ok(Dist::Uniform { min, max }),
                    _ => Err(de::Error::custom("a range needs both `min` and `max`")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Optional factor distributions as written in `[factors]` or `[class.NAME]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FactorTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shear: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_x: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_y: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outline: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stroke: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intensity: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<Dist>,
}

/// A spec file as written by a user: everything optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub name: Option<String>,
    pub image_size: Option<u32>,
    pub seed: Option<u64>,
    pub train: Option<usize>,
    pub val: Option<usize>,
    pub test: Option<usize>,
    #[serde(default)]
    pub factors: FactorTable,
    #[serde(default)]
    pub class: BTreeMap<String, FactorTable>,
}

/// The resolved distributions of every factor for one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FactorDists {
    pub size: Dist,
    pub rotation: Dist,
    pub aspect: Dist,
    pub shear: Dist,
    pub offset_x: Dist,
    pub offset_y: Dist,
    pub outline: Dist,
    pub stroke: Dist,
    pub intensity: Dist,
    pub noise: Dist,
}

impl Default for FactorDists {
    /// A centred, filled, undeformed figure of size 0.7 at full intensity, without noise.
    fn default() -> Self {
        FactorDists {
            size: Dist::Fixed(0.7),
            rotation: Dist::Fixed(0.0),
            aspect: Dist::Fixed(1.0),
            shear: Dist::Fixed(0.0),
            offset_x: Dist::Fixed(0.0),
            offset_y: Dist::Fixed(0.0),
            outline: Dist::Fixed(0.0),
            stroke: Dist::Fixed(0.1),
            intensity: Dist::Fixed(1.0),
            noise: Dist::Fixed(0.0),
        }
    }
}

impl FactorDists {
    fn overlay(&mut self, t: &FactorTable) {
        let pairs: [(&mut Dist, &Option<Dist>); 10] = [
            (&mut self.size, &t.size),
            (&mut self.rotation, &t.rotation),
            (&mut self.aspect, &t.aspect),
            (&mut self.shear, &t.shear),
            (&mut self.offset_x, &t.offset_x),
            (&mut self.offset_y, &t.offset_y),
            (&mut self.outline, &t.outline),
            (&mut self.stroke, &t.stroke),
            (&mut self.intensity, &t.intensity),
            (&mut self.noise, &t.noise),
        ];
        for (dst, src) in pairs {
            if let Some(d) = src {
                *dst = d.clone();
            }
        }
    }

    /// `(name, dist)` for every factor except the class, in [`crate::FACTOR_NAMES`] order.
    pub fn named(&self) -> [(&'static str, &Dist); 10] {
        [
            ("size", &self.size),
            ("rotation", &self.rotation),
            ("aspect", &self.aspect),
            ("shear", &self.shear),
            ("offset_x", &self.offset_x),
            ("offset_y", &self.offset_y),
            ("outline", &self.outline),
            ("stroke", &self.stroke),
            ("intensity", &self.intensity),
            ("noise", &self.noise),
        ]
    }

    /// Draws one image's factors from ten uniforms in `[0, 1)`, one per factor, so that
    /// changing one factor's distribution leaves the others' draws unchanged.
    pub fn sample(&self, class: Class, u: [f64; 10]) -> Factors {
        Factors {
            class,
            size: self.size.sample(u[0]),
            rotation: self.rotation.sample(u[1]),
            aspect: self.aspect.sample(u[2]),
            shear: self.shear.sample(u[3]),
            offset_x: self.offset_x.sample(u[4]),
            offset_y: self.offset_y.sample(u[5]),
            outline: self.outline.sample(u[6]) != 0.0,
            stroke: self.stroke.sample(u[7]),
            intensity: self.intensity.sample(u[8]),
            noise: self.noise.sample(u[9]),
        }
    }
}

/// A complete, validated description of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetSpec {
    /// Side of the square images in pixels.
    pub image_size: u32,
    /// Seed of every random draw.
    pub seed: u64,
    /// Training images (classes balanced to within one image).
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Held-out test images. Zero (a spec written before the test split existed) is left out
    /// of the canonical JSON, so such a spec keeps its hash and its bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub test: usize,
    /// Factor distributions per class, keyed by class name, in label order.
    #[serde(serialize_with = "serialize_classes")]
    pub classes: [FactorDists; 3],
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn serialize_classes<S: Serializer>(c: &[FactorDists; 3], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(3))?;
    for (class, dists) in Class::ALL.iter().zip(c) {
        m.serialize_entry(class.name(), dists)?;
    }
    m.end()
}

/// Why a spec was refused. Every message names the value and how to fix it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SpecError {
    #[error("{0}")]
    Parse(String),
    #[error("unknown class `{0}` in [class.{0}]; the classes are ellipse, rectangle and triangle")]
    UnknownClass(String),
    #[error("image size {0} is out of range; use a side from 8 to 256 pixels")]
    ImageSize(u32),
    #[error("{split} count {count} is out of range; use at least 1 image for train and val, 0 or more for test, and at most {max} in all")]
    Count {
        split: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{factor}{where_}: min {min} is greater than max {max}; swap them")]
    RangeOrder {
        factor: &'static str,
        where_: String,
        min: f64,
        max: f64,
    },
    #[error("{factor}{where_}: the list of values is empty; give at least one value")]
    EmptyList {
        factor: &'static str,
        where_: String,
    },
    #[error("{factor}{where_}: {value} is out of range; use {domain}")]
    Domain {
        factor: &'static str,
        where_: String,
        value: f64,
        domain: &'static str,
    },
    #[error("outline{where_}: a range of outline values makes no sense; use false, true or [false, true]")]
    OutlineRange { where_: String },
    #[error(
        "{class} does not fit the {side}x{side} image: at size {size}, rotation {rotation}, \
         aspect {aspect}, shear {shear} and offset ({offset_x}, {offset_y}) it reaches \
         {overflow:.2} px outside; lower the size to at most {max_size:.3} or narrow the offsets"
    )]
    DoesNotFit {
        class: Class,
        side: u32,
        size: f64,
        rotation: f64,
        aspect: f64,
        shear: f64,
        offset_x: f64,
        offset_y: f64,
        overflow: f64,
        max_size: f64,
    },
}

fn domain_of(factor: &str) -> (&'static str, fn(f64) -> bool) {
    match factor {
        "size" => ("a size above 0", |v| v > 0.0),
        "rotation" => ("any finite angle in degrees", |_| true),
        "aspect" => ("an aspect ratio from 0.1 to 10", |v| {
            (0.1..=10.0).contains(&v)
        }),
        "shear" => ("a shear from -2 to 2", |v| (-2.0..=2.0).contains(&v)),
        "offset_x" | "offset_y" => (
            "an offset from -1 to 1 (fractions of half the image)",
            |v| (-1.0..=1.0).contains(&v),
        ),
        "outline" => ("0/false (filled) or 1/true (outline)", |v| {
            v == 0.0 || v == 1.0
        }),
        "stroke" => (
            "a stroke width above 0 and at most 1 (fraction of half the image)",
            |v| v > 0.0 && v <= 1.0,
        ),
        "intensity" => ("an intensity above 0 and at most 1", |v| {
            v > 0.0 && v <= 1.0
        }),
        "noise" => ("a noise sigma from 0 to 1", |v| (0.0..=1.0).contains(&v)),
        _ => unreachable!("unknown factor {factor}"),
    }
}

/// One line for a TOML error: the message with its line number, without the source excerpt.
fn toml_error(src: &str, e: &toml::de::Error) -> SpecError {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            // A byte offset from the parser: `get` never panics inside a character.
            let before = src.get(..span.start).unwrap_or(src);
            let line = before.matches('\n').count() + 1;
            SpecError::Parse(format!("line {line}: {msg}"))
        }
        None => SpecError::Parse(msg),
    }
}

/// The validation count when only the training count is given: half of it (the thesis's
/// ratio), at least one image.
pub fn default_val(train: usize) -> usize {
    (train / 2).max(1)
}

impl SpecFile {
    /// Overrides the image counts as `generate --train/--val/--test` and an experiment's
    /// `train`/`val`/`test` do: a training count given alone brings the validation and test
    /// counts to their default ([`default_val`]); a count given replaces it.
    pub fn override_counts(
        &mut self,
        train: Option<usize>,
        val: Option<usize>,
        test: Option<usize>,
    ) {
        if let Some(t) = train {
            self.train = Some(t);
            self.val = Some(default_val(t));
            self.test = Some(default_val(t));
        }
        if val.is_some() {
            self.val = val;
        }
        if test.is_some() {
            self.test = test;
        }
    }

    /// Parses a TOML spec.
    pub fn from_toml(src: &str) -> Result<SpecFile, SpecError> {
        toml::from_str(src).map_err(|e| toml_error(src, &e))
    }

    /// Resolves defaults (28 px, seed 0, 6000/3000 images, [`FactorDists::default`]) and the
    /// per-class overrides, then validates.
    pub fn resolve(&self) -> Result<DatasetSpec, SpecError> {
        let mut classes: [FactorDists; 3] = Default::default();
        for c in classes.iter_mut() {
            c.overlay(&self.factors);
        }
        for (name, table) in &self.class {
            let class =
                Class::from_name(name).ok_or_else(|| SpecError::UnknownClass(name.clone()))?;
            classes[class as usize].overlay(table);
        }
        let train = self.train.unwrap_or(match self.val {
            Some(v) => 2 * v,
            None => 6000,
        });
        let val = self.val.unwrap_or(default_val(train));
        let test = self.test.unwrap_or(val);
        let spec = DatasetSpec {
            image_size: self.image_size.unwrap_or(28),
            seed: self.seed.unwrap_or(0),
            train,
            val,
            test,
            classes,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl DatasetSpec {
    /// Checks every rule a spec must obey; see [`SpecError`] for the list.
    ///
    /// The fit check is exact: the extent of a figure is largest at the largest size, at an end
    /// of the aspect and shear ranges (it is convex or monotone in each), at an extreme offset,
    /// and at an end of the rotation range or one of the figure's critical angles
    /// ([`crate::figure`]), so checking those candidates covers every image the spec can draw.
    pub fn validate(&self) -> Result<(), SpecError> {
        let (lo, hi) = IMAGE_SIZE_RANGE;
        if !(lo..=hi).contains(&self.image_size) {
            return Err(SpecError::ImageSize(self.image_size));
        }
        let total = self
            .train
            .saturating_add(self.val)
            .saturating_add(self.test);
        // A test split may be empty (the format before it existed); the others may not.
        for (split, count, least) in [
            ("train", self.train, 1),
            ("val", self.val, 1),
            ("test", self.test, 0),
        ] {
            if count < least || total > MAX_IMAGES {
                return Err(SpecError::Count {
                    split,
                    count,
                    max: MAX_IMAGES,
                });
            }
        }
        for (class, dists) in Class::ALL.iter().zip(&self.classes) {
            let where_ = if self.classes.iter().all(|d| d == dists) {
                String::new()
            } else {
                format!(" (class {class})")
            };
            for (factor, dist) in dists.named() {
                validate_dist(factor, dist, &where_)?;
            }
            self.check_fit(*class, dists)?;
        }
        Ok(())
    }

    fn check_fit(&self, class: Class, d: &FactorDists) -> Result<(), SpecError> {
        let side = self.image_size as f64;
        let half = side / 2.0;
        let size = d.size.bounds().1;
        let (ox_min, ox_max) = d.offset_x.bounds();
        let (oy_min, oy_max) = d.offset_y.bounds();
        let mut rotations = Vec::new();
        let mut worst: Option<(f64, [f64; 3])> = None; // (overflow, [rotation, aspect, shear])
        let mut max_size = f64::INFINITY;
        for aspect in d.aspect.extreme_values() {
            for shear in d.shear.extreme_values() {
                let mut f = Factors::new(class, size);
                (f.aspect, f.shear) = (aspect, shear);
                let shape = unrotated_shape(&f, self.image_size);
                rotations.clear();
                rotations.extend(d.rotation.extreme_values());
                if let Dist::Uniform { min, max } = d.rotation {
                    let mut crit = Vec::new();
                    critical_angles(&shape, &mut crit);
                    rotations.extend(crit.into_iter().filter(|&t| in_angle_range(t, min, max)));
                }
                for &rot in &rotations {
                    let [l, r, dn, up] = shape.transformed(rotation_matrix(rot)).extents();
                    // Space available from the centroid in each direction at the worst offset.
                    let room = [
                        (half + ox_min * half, l),
                        (half - ox_max * half, r),
                        (half + oy_min * half, dn),
                        (half - oy_max * half, up),
                    ];
                    for (avail, ext) in room {
                        if ext > 0.0 {
                            max_size = max_size.min(size * avail.max(0.0) / ext);
                        }
                        let over = ext - avail;
                        if over > 1e-9 * side && worst.is_none_or(|w| over > w.0) {
                            worst = Some((over, [rot, aspect, shear]));
                        }
                    }
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((overflow, [rotation, aspect, shear])) => Err(SpecError::DoesNotFit {
                class,
                side: self.image_size,
                size,
                rotation,
                aspect,
                shear,
                offset_x: if ox_max.abs() > ox_min.abs() {
                    ox_max
                } else {
                    ox_min
                },
                offset_y: if oy_max.abs() > oy_min.abs() {
                    oy_max
                } else {
                    oy_min
                },
                overflow,
                max_size: (max_size * 1e3).floor() / 1e3,
            }),
        }
    }

    /// The canonical JSON that, with [`GENERATOR_VERSION`], defines the dataset's identity.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }

    /// Content hash (SHA-256, hex) of the generator version and the canonical spec.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"shapelab dataset\n");
        h.update(GENERATOR_VERSION.as_bytes());
        h.update(b"\n");
        h.update(self.canonical_json().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Which factors vary in this spec (for any class), in [`crate::FACTOR_NAMES`] order.
    pub fn varying_factors(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for i in 0..10 {
            if self.classes.iter().any(|d| d.named()[i].1.varies()) {
                out.push(self.classes[0].named()[i].0);
            }
        }
        out
    }

    /// Parses the canonical JSON written by [`DatasetSpec::canonical_json`] back.
    pub fn from_canonical_json(json: &str) -> Result<DatasetSpec, SpecError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Canon {
            image_size: u32,
            seed: u64,
            train: usize,
            val: usize,
            /// Absent in the canonical form of a spec without a test split.
            #[serde(default)]
            test: usize,
            classes: BTreeMap<String, FactorTable>,
        }
        let c: Canon = serde_json::from_str(json).map_err(|e| SpecError::Parse(e.to_string()))?;
        SpecFile {
            name: None,
            image_size: Some(c.image_size),
            seed: Some(c.seed),
            train: Some(c.train),
            val: Some(c.val),
            test: Some(c.test),
            factors: FactorTable::default(),
            class: c.classes,
        }
        .resolve()
    }
}

fn in_angle_range(t: f64, min: f64, max: f64) -> bool {
    if max - min >= 360.0 {
        return true;
    }
    let k = ((min - t) / 360.0).ceil();
    t + 360.0 * k <= max
}

fn validate_dist(factor: &'static str, dist: &Dist, where_: &str) -> Result<(), SpecError> {
    let (domain, ok) = domain_of(factor);
    let check = |value: f64| {
        if value.is_finite() && ok(value) {
            Ok(())
        } else {
            Err(SpecError::Domain {
                factor,
                where_: where_.to_string(),
                value,
                domain,
            })
        }
    };
    match dist {
        Dist::Fixed(v) => check(*v),
        Dist::Uniform { min, max } => {
            if factor == "outline" {
                return Err(SpecError::OutlineRange {
                    where_: where_.to_string(),
                });
            }
            check(*min)?;
            check(*max)?;
            if min > max {
                return Err(SpecError::RangeOrder {
                    factor,
                    where_: where_.to_string(),
                    min: *min,
                    max: *max,
                });
            }
            Ok(())
        }
        Dist::Choice(values) => {
            if values.is_empty() {
                return Err(SpecError::EmptyList {
                    factor,
                    where_: where_.to_string(),
                });
            }
            values.iter().try_for_each(|v| check(*v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<DatasetSpec, SpecError> {
        SpecFile::from_toml(src)?.resolve()
    }

    #[test]
    fn defaults_are_two_to_one() {
        let s = parse("").unwrap();
        assert_eq!((s.image_size, s.seed, s.train, s.val), (28, 0, 6000, 3000));
        let s = parse("train = 900").unwrap();
        assert_eq!(s.val, 450);
        let s = parse("val = 100").unwrap();
        assert_eq!(s.train, 200);
        assert_eq!(
            s.test, 100,
            "the test split defaults to the validation size"
        );
    }

    #[test]
    fn a_spec_without_a_test_split_keeps_its_canonical_form() {
        let with = parse("train = 30\nval = 12\ntest = 12").unwrap();
        let without = parse("train = 30\nval = 12\ntest = 0").unwrap();
        assert!(with.canonical_json().contains("\"test\":12"));
        assert!(!without.canonical_json().contains("test"));
        assert_ne!(with.hash(), without.hash());
        for s in [with, without] {
            let back = DatasetSpec::from_canonical_json(&s.canonical_json()).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.hash(), s.hash());
        }
        let e = parse("train = 30\nval = 0").unwrap_err().to_string();
        assert!(e.starts_with("val count 0 is out of range"), "{e}");
        let e = parse(&format!("train = 3\nval = 3\ntest = {MAX_IMAGES}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn factor_forms_parse() {
        let s = parse(
            r#"
            [factors]
            size = { min = 0.3, max = 0.9 }
            rotation = [0, 30, 330]
            outline = [false, true]
            aspect = 1
            [class.rectangle]
            aspect = 1.5
            "#,
        )
        .unwrap();
        let e = &s.classes[0];
        assert_eq!(e.size, Dist::Uniform { min: 0.3, max: 0.9 });
        assert_eq!(e.rotation, Dist::Choice(vec![0.0, 30.0, 330.0]));
        assert_eq!(e.outline, Dist::Choice(vec![0.0, 1.0]));
        assert_eq!(e.aspect, Dist::Fixed(1.0));
        assert_eq!(s.classes[1].aspect, Dist::Fixed(1.5));
        assert_eq!(s.classes[2].aspect, Dist::Fixed(1.0));
    }

    #[test]
    fn unknown_factor_is_named_with_line() {
        let e = parse("[factors]\nsise = 0.5\n").unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("sise") && e.contains("size"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        let cases = [
            ("[factors]\nsize = { min = 0.9, max = 0.3 }", "swap them"),
            ("image_size = 4", "from 8 to 256"),
            ("train = 0", "at least 1"),
            ("[factors]\naspect = 0", "0.1 to 10"),
            ("[factors]\nrotation = []", "empty"),
            ("[factors]\noutline = { min = 0, max = 1 }", "outline"),
            ("[class.circle]\nsize = 0.5", "unknown class `circle`"),
            ("[factors]\nsize = { min = 0.3 }", "both `min` and `max`"),
            ("[factors]\nsize = \"big\"", "a number"),
            ("[factors]\nsize = 1.2", "at most 1.000"),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{src:?} gave {e:?}, expected it to mention {want:?}"
            );
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn fit_check_is_exact_for_rotated_squares() {
        // A square of circumradius R needs R along the diagonal: size 1 fits any rotation...
        assert!(parse("[factors]\nsize = 1.0\nrotation = { min = 0, max = 360 }").is_ok());
        // ...and 1.001 does not, even though no listed end angle is diagonal.
        let e = parse("[factors]\nsize = 1.001\nrotation = { min = 10, max = 80 }").unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::DoesNotFit {
                    class: Class::Ellipse,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("[class.ellipse]\nsize=0.5\n[factors]\nsize = 1.2\nrotation = { min = 10, max = 80 }\n[class.triangle]\nsize=0.5")
            .unwrap_err();
        match e {
            SpecError::DoesNotFit {
                class,
                rotation,
                max_size,
                ..
            } => {
                assert_eq!(class, Class::Rectangle);
                assert!((rotation - 45.0).abs() < 1e-9, "worst angle {rotation}");
                assert!((max_size - 1.0).abs() < 1e-3, "{max_size}");
            }
            other => panic!("{other}"),
        }
        // Offsets eat into the room: size 0.5 fits at offset 0.5 but not at 0.6.
        assert!(parse("[factors]\nsize = 0.5\noffset_x = { min = -0.5, max = 0.5 }").is_ok());
        assert!(parse("[factors]\nsize = 0.5\noffset_y = 0.6").is_err());
    }

    #[test]
    fn angle_ranges_wrap() {
        assert!(in_angle_range(350.0, -20.0, 20.0));
        assert!(in_angle_range(10.0, 350.0, 370.0));
        assert!(!in_angle_range(180.0, -20.0, 20.0));
        assert!(in_angle_range(123.0, 0.0, 360.0));
    }

    #[test]
    fn hash_depends_on_content_only() {
        let a = SpecFile::from_toml("name = \"a\"\nseed = 1")
            .unwrap()
            .resolve()
            .unwrap();
        let b = SpecFile::from_toml("name = \"b\"\nseed = 1")
            .unwrap()
            .resolve()
            .unwrap();
        let c = SpecFile::from_toml("seed = 2").unwrap().resolve().unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn canonical_json_round_trips() {
        let s = parse("seed = 3\n[factors]\nsize = { min = 0.3, max = 0.9 }\nrotation = [0, 90]\n[class.triangle]\nnoise = 0.1").unwrap();
        let back = DatasetSpec::from_canonical_json(&s.canonical_json()).unwrap();
        assert_eq!(s, back);
        assert_eq!(s.hash(), back.hash());
    }
}
