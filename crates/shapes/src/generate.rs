//! Drawing whole splits in parallel, reproducibly.
//!
//! Each image's randomness comes from its own ChaCha8 stream keyed by `(seed, split, index)`,
//! and the class of each index from a balanced sequence shuffled by a stream keyed by
//! `(seed, split)`. No draw depends on another image or on scheduling, so the bytes are the
//! same whatever the thread count or the order in which rayon runs the chunks.
//!
//! Within an image the ten factors draw one uniform each, in [`crate::FACTOR_NAMES`] order,
//! whether they vary or not; changing one factor's distribution leaves the others unchanged.
//! Pixel noise draws come after.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::factors::{Class, Factors, NUM_FACTORS};
use crate::figure::Figure;
use crate::raster::{rasterize, Scratch};
use crate::spec::DatasetSpec;

/// The parts of a dataset: training, validation (early stopping and every choice an analysis
/// makes) and the held-out test split (what is reported; it made no choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// `train`, `val` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split's own streams: the test split was added later, on tags of its own, so the
    /// training and validation images of a spec are the same bytes with or without it.
    fn image_stream(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Val => 2,
            Split::Test => 5,
        }
    }

    fn class_stream(self) -> u64 {
        match self {
            Split::Train => 3,
            Split::Val => 4,
            Split::Test => 6,
        }
    }
}

/// A generated split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitData {
    /// `[n, side, side]` row-major, white figures on black.
    pub images: Vec<u8>,
    /// `[n]` class labels.
    pub labels: Vec<u8>,
    /// `[n, NUM_FACTORS]` factor rows ([`Factors::to_row`]).
    pub factors: Vec<f32>,
}

/// A stream of the seed's generator: streams never overlap, so the 48-bit index and the tag
/// identify independent randomness.
fn stream(seed: u64, tag: u64, index: u64) -> ChaCha8Rng {
    debug_assert!(index < 1 << 48);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((tag << 48) | index);
    rng
}

/// A uniform in `[0, 1)` with 53 random bits.
fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Balanced labels for a split, shuffled: each class appears `n/3` times, and the first
/// `n mod 3` classes (in label order) once more.
pub fn class_sequence(spec: &DatasetSpec, split: Split) -> Vec<u8> {
    let n = match split {
        Split::Train => spec.train,
        Split::Val => spec.val,
        Split::Test => spec.test,
    };
    let mut labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let mut rng = stream(spec.seed, split.class_stream(), 0);
    // Fisher-Yates with Lemire-free modulo: the bias of u64 % n for n < 2^25 is below 2^-39.
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        labels.swap(i, j);
    }
    labels
}

/// Per-thread buffers.
#[derive(Default)]
pub struct Canvas {
    coverage: Vec<f32>,
    scratch: Scratch,
}

/// Draws one image into `out` (`[side * side]`), adding pixel noise from `rng`.
pub fn render_into(
    f: &Factors,
    side: u32,
    rng: &mut impl RngCore,
    canvas: &mut Canvas,
    out: &mut [u8],
) {
    let n = (side * side) as usize;
    canvas.coverage.clear();
    canvas.coverage.resize(n, 0.0);
    rasterize(
        &Figure::new(f, side),
        side as usize,
        &mut canvas.coverage,
        &mut canvas.scratch,
    );
    if f.noise > 0.0 {
        // Box-Muller with libm's ln/sin/cos, for the same bytes on every platform.
        let mut i = 0;
        while i < n {
            let u1 = 1.0 - unit(rng); // (0, 1]
            let u2 = unit(rng);
            let r = libm::sqrt(-2.0 * libm::log(u1)) * f.noise;
            let t = std::f64::consts::TAU * u2;
            canvas.coverage[i] += (r * libm::cos(t)) as f32;
            if i + 1 < n {
                canvas.coverage[i + 1] += (r * libm::sin(t)) as f32;
            }
            i += 2;
        }
    }
    for (o, &c) in out.iter_mut().zip(&canvas.coverage) {
        *o = (c * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8;
    }
}

/// Draws one image without noise (panels, tests).
///
/// # Shapes
/// Returns `[side * side]`.
pub fn render(f: &Factors, side: u32) -> Vec<u8> {
    let mut out = vec![0; (side * side) as usize];
    let mut rng = stream(0, 0, 0);
    render_into(f, side, &mut rng, &mut Canvas::default(), &mut out);
    out
}

/// Draws one image's factors for `class` from its stream (ten uniforms, one per factor).
pub fn sample_factors(spec: &DatasetSpec, class: Class, rng: &mut impl RngCore) -> Factors {
    let mut u = [0.0; 10];
    for x in u.iter_mut() {
        *x = unit(rng);
    }
    spec.classes[class as usize].sample(class, u)
}

/// Images per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 128;

/// Generates a whole split. `progress` is called with the number of images finished by each
/// task, from worker threads.
pub fn generate_split(
    spec: &DatasetSpec,
    split: Split,
    progress: &(dyn Fn(usize) + Sync),
) -> SplitData {
    let side = spec.image_size;
    let px = (side * side) as usize;
    let labels = class_sequence(spec, split);
    let n = labels.len();
    let mut images = vec![0u8; n * px];
    let mut factors = vec![0f32; n * NUM_FACTORS];
    images
        .par_chunks_mut(CHUNK * px)
        .zip(factors.par_chunks_mut(CHUNK * NUM_FACTORS))
        .enumerate()
        .for_each_init(Canvas::default, |canvas, (chunk, (imgs, facs))| {
            let start = chunk * CHUNK;
            let count = imgs.len() / px;
            for k in 0..count {
                let index = start + k;
                let class = Class::from_label(labels[index]).expect("labels are 0..3");
                let mut rng = stream(spec.seed, split.image_stream(), index as u64);
                let f = sample_factors(spec, class, &mut rng);
                render_into(&f, side, &mut rng, canvas, &mut imgs[k * px..(k + 1) * px]);
                facs[k * NUM_FACTORS..(k + 1) * NUM_FACTORS].copy_from_slice(&f.to_row());
            }
            progress(count);
        });
    SplitData {
        images,
        labels,
        factors,
    }
}

/// The concept masks ([`crate::concepts`]) of every image of a split, from the same factor
/// draws as [`generate_split`] (the same streams, the same f64 geometry), without drawing the
/// images.
///
/// Returns `[n, side * side]` mask words (bit `c` is concept `c`).
pub fn generate_masks(spec: &DatasetSpec, split: Split) -> Vec<u16> {
    let side = spec.image_size;
    let px = (side * side) as usize;
    let labels = class_sequence(spec, split);
    let mut out = vec![0u16; labels.len() * px];
    out.par_chunks_mut(px).enumerate().for_each(|(index, m)| {
        let class = Class::from_label(labels[index]).expect("labels are 0..3");
        let mut rng = stream(spec.seed, split.image_stream(), index as u64);
        let f = sample_factors(spec, class, &mut rng);
        crate::concepts::masks(&Figure::new(&f, side), side as usize, m);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SpecFile;

    fn spec(src: &str) -> DatasetSpec {
        SpecFile::from_toml(src).unwrap().resolve().unwrap()
    }

    #[test]
    fn classes_are_balanced_and_shuffled() {
        let s = spec("train = 301\nval = 30");
        let labels = class_sequence(&s, Split::Train);
        let counts: Vec<usize> = (0..3)
            .map(|c| labels.iter().filter(|&&l| l == c).count())
            .collect();
        assert_eq!(counts, vec![101, 100, 100]);
        assert_ne!(&labels[..6], &[0, 1, 2, 0, 1, 2], "shuffled");
        assert_ne!(
            labels[..30],
            class_sequence(&s, Split::Val)[..],
            "splits differ"
        );
    }

    #[test]
    fn the_test_split_is_its_own_draw_and_leaves_the_others_unchanged() {
        let varied = "[factors]\nsize = { min = 0.3, max = 0.9 }";
        let with = spec(&format!("train = 30\nval = 12\ntest = 15\n{varied}"));
        let without = spec(&format!("train = 30\nval = 12\ntest = 0\n{varied}"));
        for part in [Split::Train, Split::Val] {
            assert_eq!(
                generate_split(&with, part, &|_| {}),
                generate_split(&without, part, &|_| {})
            );
        }
        let t = generate_split(&with, Split::Test, &|_| {});
        assert_eq!(t.labels.len(), 15);
        assert_eq!(
            generate_split(&without, Split::Test, &|_| {}).labels.len(),
            0
        );
        let v = generate_split(&with, Split::Val, &|_| {});
        let px = 28 * 28;
        for i in 0..12 {
            assert_ne!(
                t.images[i * px..(i + 1) * px],
                v.images[i * px..(i + 1) * px]
            );
        }
    }

    #[test]
    fn masks_follow_the_images_they_describe() {
        // Noise-free figures: a pixel whose centre is well inside is bright, one well outside
        // dark; the interior mask and the image agree except within the outline band.
        let s = spec(
            "train = 40\nval = 3\ntest = 5\n[factors]\nsize = { min = 0.3, max = 0.9 }\nrotation = { min = 0, max = 360 }",
        );
        for part in [Split::Train, Split::Test] {
            let d = generate_split(&s, part, &|_| {});
            let m = generate_masks(&s, part);
            assert_eq!(m.len(), d.images.len());
            for (&px, &w) in d.images.iter().zip(&m) {
                let (interior, band) = (w & 1 == 1, w & 2 == 2);
                if !band {
                    assert_eq!(px >= 128, interior, "pixel {px} mask {w:#b}");
                }
            }
        }
    }

    #[test]
    fn factor_ranges_are_honoured() {
        let s = spec(
            "train = 600\nval = 3\n[factors]\nsize = { min = 0.3, max = 0.5 }\nrotation = [0, 30]\n\
             offset_x = { min = -0.2, max = 0.1 }",
        );
        let d = generate_split(&s, Split::Train, &|_| {});
        for row in d.factors.chunks(NUM_FACTORS) {
            assert!((0.3..=0.5).contains(&row[1]), "size {}", row[1]);
            assert!(row[2] == 0.0 || row[2] == 30.0);
            assert!((-0.2..=0.1).contains(&row[5]));
        }
        // Both listed rotations occur, and the range is used, not just its ends.
        let rots: Vec<f32> = d.factors.chunks(NUM_FACTORS).map(|r| r[2]).collect();
        assert!(rots.contains(&0.0) && rots.contains(&30.0));
        let sizes: Vec<f32> = d.factors.chunks(NUM_FACTORS).map(|r| r[1]).collect();
        assert!(sizes.iter().any(|&x| x < 0.32) && sizes.iter().any(|&x| x > 0.48));
        for (row, label) in d.factors.chunks(NUM_FACTORS).zip(&d.labels) {
            assert_eq!(row[0], *label as f32);
        }
    }

    #[test]
    fn changing_one_factor_keeps_the_others() {
        let a = generate_split(
            &spec("train = 30\nval=3\n[factors]\nsize = { min = 0.3, max = 0.9 }"),
            Split::Train,
            &|_| {},
        );
        let b = generate_split(
            &spec("train = 30\nval=3\n[factors]\nsize = { min = 0.3, max = 0.9 }\nrotation = { min = 0, max = 90 }"),
            Split::Train,
            &|_| {},
        );
        for (ra, rb) in a
            .factors
            .chunks(NUM_FACTORS)
            .zip(b.factors.chunks(NUM_FACTORS))
        {
            assert_eq!(ra[1], rb[1]);
        }
    }

    #[test]
    fn same_bytes_at_one_and_two_threads() {
        let s = spec("train = 700\nval = 5\n[factors]\nsize = { min = 0.2, max = 0.6 }\nrotation = { min = 0, max = 360 }\nnoise = { min = 0, max = 0.2 }\noffset_x = { min = -0.3, max = 0.3 }");
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| generate_split(&s, Split::Train, &|_| {}))
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(2), run(3));
    }

    #[test]
    fn noise_changes_background() {
        let mut f = Factors::new(Class::Ellipse, 0.5);
        let clean = render(&f, 28);
        assert_eq!(clean[0], 0);
        f.noise = 0.2;
        let mut rng = stream(1, 1, 1);
        let mut out = vec![0; 784];
        render_into(&f, 28, &mut rng, &mut Canvas::default(), &mut out);
        assert!(
            out.iter().take(28).any(|&p| p > 0),
            "noise reaches the background"
        );
        // Mean noise over the background is half-rectified: about sigma / sqrt(2 pi) * 255.
        let bg: Vec<f64> = out
            .iter()
            .zip(&clean)
            .filter(|(_, &c)| c == 0)
            .map(|(&o, _)| o as f64)
            .collect();
        let mean = bg.iter().sum::<f64>() / bg.len() as f64;
        let want = 0.2 / (2.0 * std::f64::consts::PI).sqrt() * 255.0;
        assert!((mean - want).abs() < 0.15 * want, "{mean} vs {want}");
    }
}
