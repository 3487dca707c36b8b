//! The latent factors of one image and the three figure classes.
//!
//! Every image shapelab draws is fully described by one [`Factors`] value; the dataset files
//! store it as a row of [`FACTOR_NAMES`] so that any analysis can relate what a network does
//! to what was drawn. This module only defines the vocabulary; it draws nothing.
//!
//! Units (the same for every figure, see [`crate::figure`] for the geometry):
//! - lengths (`size`, `offset_x`, `offset_y`, `stroke`) are fractions of half the image side;
//! - `rotation` is in degrees, counter-clockwise as seen on screen, about the centroid;
//! - `offset_y` is positive upwards, as on screen;
//! - `intensity` and `noise` are fractions of full scale (255).

use std::fmt;

/// The figure classes, in label order (0 ellipse, 1 rectangle, 2 triangle; docs/datasets.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Ellipse = 0,
    Rectangle = 1,
    Triangle = 2,
}

impl Class {
    /// All classes in label order.
    pub const ALL: [Class; 3] = [Class::Ellipse, Class::Rectangle, Class::Triangle];

    /// The class name used in files and output (`ellipse`, `rectangle`, `triangle`).
    pub fn name(self) -> &'static str {
        match self {
            Class::Ellipse => "ellipse",
            Class::Rectangle => "rectangle",
            Class::Triangle => "triangle",
        }
    }

    /// The integer label (0, 1, 2).
    pub fn label(self) -> u8 {
        self as u8
    }

    /// Parses a class name as written by [`Class::name`].
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The class of an integer label.
    pub fn from_label(label: u8) -> Option<Class> {
        Class::ALL.get(label as usize).copied()
    }

    /// The smallest rotation in degrees that maps the undeformed figure onto itself.
    ///
    /// The circle is symmetric under any rotation (0 is returned), the square under 90 degrees
    /// (180 once its aspect is not 1), the equilateral triangle under 120 degrees (none once
    /// deformed). The angle recorded in a dataset is always the one drawn, never reduced by
    /// this symmetry.
    pub fn symmetry_degrees(self) -> f64 {
        match self {
            Class::Ellipse => 0.0,
            Class::Rectangle => 90.0,
            Class::Triangle => 120.0,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names of the factor columns, in the order of [`Factors::to_row`].
pub const FACTOR_NAMES: [&str; 11] = [
    "class",
    "size",
    "rotation",
    "aspect",
    "shear",
    "offset_x",
    "offset_y",
    "outline",
    "stroke",
    "intensity",
    "noise",
];

/// Number of factor columns.
pub const NUM_FACTORS: usize = FACTOR_NAMES.len();

/// Everything that decides one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factors {
    pub class: Class,
    /// Radius of the circle about the centroid that circumscribes the undeformed figure, as a
    /// fraction of half the image side.
    pub size: f64,
    /// Degrees, counter-clockwise on screen, about the centroid.
    pub rotation: f64,
    /// Width over height of the deformation (x scaled by sqrt(aspect), y by 1/sqrt(aspect)).
    pub aspect: f64,
    /// Horizontal shear applied before the aspect and the rotation (x += shear * y).
    pub shear: f64,
    /// Centroid offset from the image centre, fraction of half the image side, right positive.
    pub offset_x: f64,
    /// Centroid offset from the image centre, fraction of half the image side, up positive.
    pub offset_y: f64,
    /// Draw only the outline (a band of width `stroke` inside the contour) instead of filling.
    pub outline: bool,
    /// Outline width, fraction of half the image side; ignored when filled.
    pub stroke: f64,
    /// Foreground level, fraction of 255.
    pub intensity: f64,
    /// Standard deviation of additive Gaussian pixel noise, fraction of 255.
    pub noise: f64,
}

impl Factors {
    /// A centred, filled, undeformed figure of the given class and size, at full intensity.
    pub fn new(class: Class, size: f64) -> Factors {
        Factors {
            class,
            size,
            rotation: 0.0,
            aspect: 1.0,
            shear: 0.0,
            offset_x: 0.0,
            offset_y: 0.0,
            outline: false,
            stroke: 0.1,
            intensity: 1.0,
            noise: 0.0,
        }
    }

    /// The same factors rotated to `degrees`.
    pub fn rotated(self, degrees: f64) -> Factors {
        Factors {
            rotation: degrees,
            ..self
        }
    }

    /// The factor row stored in dataset files, ordered as [`FACTOR_NAMES`].
    pub fn to_row(&self) -> [f32; NUM_FACTORS] {
        [
            self.class.label() as f32,
            self.size as f32,
            self.rotation as f32,
            self.aspect as f32,
            self.shear as f32,
            self.offset_x as f32,
            self.offset_y as f32,
            if self.outline { 1.0 } else { 0.0 },
            self.stroke as f32,
            self.intensity as f32,
            self.noise as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip_in_label_order() {
        for (i, c) in Class::ALL.iter().enumerate() {
            assert_eq!(c.label() as usize, i);
            assert_eq!(Class::from_name(c.name()), Some(*c));
            assert_eq!(Class::from_label(i as u8), Some(*c));
        }
        assert_eq!(Class::from_name("circle"), None);
        assert_eq!(Class::from_label(3), None);
    }

    #[test]
    fn row_follows_factor_names() {
        let mut f = Factors::new(Class::Triangle, 0.5).rotated(30.0);
        f.outline = true;
        let row = f.to_row();
        let col = |name: &str| row[FACTOR_NAMES.iter().position(|n| *n == name).unwrap()];
        assert_eq!(col("class"), 2.0);
        assert_eq!(col("size"), 0.5);
        assert_eq!(col("rotation"), 30.0);
        assert_eq!(col("outline"), 1.0);
        assert_eq!(col("aspect"), 1.0);
    }
}
