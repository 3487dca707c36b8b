//! Geometry checks of the rasterised figures against their analytic description: area,
//! centroid and rotational symmetry, on random figures.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shapes::figure::{Figure, Shape};
use shapes::{render, Class, Factors};

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Random figures that fit a `side` image, filled or outlined, any deformation.
fn random_figures(seed: u64, count: usize, side: u32, outline: bool) -> Vec<Factors> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let class = Class::ALL[(rng.next_u64() % 3) as usize];
        let mut f = Factors::new(class, 0.25 + 0.75 * unit(&mut rng));
        f.rotation = 360.0 * unit(&mut rng);
        f.aspect = 0.5 + 1.5 * unit(&mut rng);
        f.shear = -0.6 + 1.2 * unit(&mut rng);
        f.offset_x = -0.4 + 0.8 * unit(&mut rng);
        f.offset_y = -0.4 + 0.8 * unit(&mut rng);
        f.outline = outline;
        f.stroke = 0.1 + 0.1 * unit(&mut rng);
        let b = Figure::new(&f, side).bbox();
        if b[0] >= 0.0 && b[2] >= 0.0 && b[1] <= side as f64 && b[3] <= side as f64 {
            out.push(f);
        }
    }
    out
}

fn analytic_area(fig: &Figure) -> f64 {
    let area = |s: &Shape| match s {
        Shape::Polygon(p) => p.signed_area().abs(),
        Shape::Ellipse(e) => {
            let [[a, b], [_, d]] = e.s;
            std::f64::consts::PI * (a * d - b * b).sqrt()
        }
    };
    area(&fig.outer) - fig.inner.as_ref().map_or(0.0, area)
}

fn drawn_area(img: &[u8]) -> f64 {
    img.iter().map(|&p| p as f64 / 255.0).sum()
}

#[test]
fn filled_area_is_within_two_percent_of_analytic() {
    for side in [28, 64] {
        let mut worst = 0.0f64;
        for f in random_figures(1, 300, side, false) {
            let fig = Figure::new(&f, side);
            let (want, got) = (analytic_area(&fig), drawn_area(&render(&f, side)));
            let err = (got - want).abs() / want;
            worst = worst.max(err);
            assert!(err < 0.02, "{f:?}: drawn {got:.3} px^2, analytic {want:.3}");
        }
        assert!(
            worst < 0.01,
            "worst relative area error at {side}px: {worst}"
        );
    }
}

#[test]
fn polygon_outline_area_is_within_two_percent() {
    for f in random_figures(2, 200, 28, true) {
        if f.class == Class::Ellipse {
            continue; // an ellipse's shrunk ellipse is not its exact parallel curve
        }
        let fig = Figure::new(&f, 28);
        let (want, got) = (analytic_area(&fig), drawn_area(&render(&f, 28)));
        assert!((got - want).abs() / want < 0.02, "{f:?}: {got} vs {want}");
    }
}

#[test]
fn centroid_lands_on_the_requested_offset() {
    for f in random_figures(3, 300, 28, false) {
        let img = render(&f, 28);
        let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
        for (i, &p) in img.iter().enumerate() {
            let w = p as f64;
            m += w;
            mx += w * ((i % 28) as f64 + 0.5);
            my += w * ((i / 28) as f64 + 0.5);
        }
        let want = [14.0 + 14.0 * f.offset_x, 14.0 - 14.0 * f.offset_y];
        let got = [mx / m, my / m];
        let err = ((got[0] - want[0]).powi(2) + (got[1] - want[1]).powi(2)).sqrt();
        assert!(err < 0.05, "{f:?}: centroid {got:?}, requested {want:?}");
    }
}

#[test]
fn symmetry_rotations_give_the_same_image_up_to_antialiasing() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..100 {
        let class = Class::ALL[(rng.next_u64() % 3) as usize];
        let f = Factors::new(class, 0.3 + 0.6 * unit(&mut rng)).rotated(360.0 * unit(&mut rng));
        let step = match class {
            Class::Ellipse => 360.0 * unit(&mut rng),
            c => c.symmetry_degrees(),
        };
        let a = render(&f, 28);
        let b = render(&f.rotated(f.rotation + step), 28);
        let max = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        let mean = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.abs_diff(*y) as f64)
            .sum::<f64>()
            / 784.0;
        // A symmetry maps the vertex set onto itself, so only rounding may differ.
        assert!(
            max <= 1,
            "{class} turned by {step}: max pixel difference {max}"
        );
        assert!(
            mean < 0.5,
            "{class} turned by {step}: mean difference {mean}"
        );
    }
    // A deformed rectangle keeps only its 180-degree symmetry.
    let mut f = Factors::new(Class::Rectangle, 0.6).rotated(17.0);
    f.aspect = 2.0;
    let a = render(&f, 28);
    assert!(a
        .iter()
        .zip(render(&f.rotated(197.0), 28))
        .all(|(x, y)| x.abs_diff(y) <= 1));
    assert!(a
        .iter()
        .zip(render(&f.rotated(107.0), 28))
        .any(|(x, y)| x.abs_diff(y) > 100));
}
