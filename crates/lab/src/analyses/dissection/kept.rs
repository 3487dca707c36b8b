//! One pass over a split's images that keeps, of every filter's upsampled activation maps,
//! only what dissection reads: the pixels that can lie at or above its top quantile, each
//! with its concept word and class, and the images on which its strongest unit is strongest.
//!
//! Why not keep the maps: they take `n x F x H x W` floats per layer (150 MB per layer of a
//! 16-16 on 3,000 images), written once and read twice per network, and a dissection runs six
//! networks (the model and its chance level's initialisations). The pixels above a quantile
//! `q` are `q` of that, and the IoUs are counted from them alone. Once the bound has risen,
//! most maps have no unit that reaches it and are not even upsampled: a bilinear value never
//! exceeds the largest unit it interpolates.
//!
//! Exactness: each filter's maps are read as one stream, image by image, whatever the
//! number of threads (a block's forward pass is split by images, its scan by filters). The
//! stream keeps every value at or above its running bound, the `kmax`-th largest value it has
//! seen (positive values only: a silent pixel is in no mask). That bound never exceeds the
//! final `kmax`-th largest value, so the pixels kept hold the top `k` for every `k <= kmax`;
//! and a stream that never raised its bound kept every positive value. Thresholds and counts
//! are therefore those of the full maps (the tests compare with a full sort).
//!
//! Values in, counts out; must not decide labels.

use rayon::prelude::*;
use tinycnn::{Model, Scaling};

use super::in_mask;
use super::upsample::Upsampler;

/// A pixel that may lie in a filter's mask. `repr(C)`, 8 bytes: [`super::scan512`] writes
/// pixels as pairs of 32-bit lanes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub(super) struct Pixel {
    value: f32,
    /// The concept word of the pixel (bit `c`: concept `c`).
    word: u16,
    /// Its image's class; `u8::MAX` for none.
    class: u8,
}

const _: () = assert!(std::mem::size_of::<Pixel>() == 8);

/// Values compared at a time in [`peak`] and [`Kept::add`]'s scan.
const LANES: usize = 16;

/// The largest and the smallest of `values`, in [`LANES`] independent lanes so that the loop
/// vectorises (`f32::max` would not), for the widest vectors the CPU has.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn extremes(values: &[f32]) -> (f32, f32) {
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut lo = [f32::INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
            lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
        }
    }
    let rest = chunks.remainder();
    (
        rest.iter()
            .chain(&hi)
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
        rest.iter().chain(&lo).fold(f32::INFINITY, |m, &v| m.min(v)),
    )
}

/// [`extremes`], in AVX-512 where the engine runs it.
fn extremes_of(values: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if tinycnn::isa::isa() == tinycnn::isa::Isa::Avx512 {
        // SAFETY: `isa()` is AVX-512 only where the CPU runs it.
        return unsafe { super::scan512::extremes(values) };
    }
    extremes(values)
}

/// The largest of `values`.
#[cfg(test)]
fn peak(values: &[f32]) -> f32 {
    extremes(values).0
}

/// The positions of the values at or above `lo`, into `out` (at least as long as `values`);
/// returns how many. [`LANES`] at a time, skipping the groups with none (most of them once
/// the bound has risen), and without branches inside a group.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn at_least(values: &[f32], lo: f32, out: &mut [u16]) -> usize {
    assert!(out.len() >= values.len());
    let mut n = 0;
    for (g, vs) in values.chunks(LANES).enumerate() {
        let mut hit = false;
        for &v in vs {
            hit |= v >= lo;
        }
        if hit {
            for (j, &v) in vs.iter().enumerate() {
                out[n] = (g * LANES + j) as u16;
                n += (v >= lo) as usize;
            }
        }
    }
    n
}

/// Pixels counted by concept: how many, and how many of them carry each concept bit.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tally {
    pixels: u64,
    concept: [u64; 16],
}

impl Tally {
    /// `n` pixels of concept word `word`.
    fn add_n(&mut self, word: u16, n: u64) {
        self.pixels += n;
        let mut bits = word;
        while bits != 0 {
            self.concept[bits.trailing_zeros() as usize] += n;
            bits &= bits - 1;
        }
    }
}

/// Pixels of one exact value, counted rather than kept. A figure's flat interior gives every
/// interior pixel of every image the same activation, and when that value is at or above the
/// threshold (a blur's strongest response is the interior) the mask holds all of them: kept
/// one by one, they would be most of a pass's work.
#[derive(Clone, Debug, PartialEq)]
struct Flat {
    value: f32,
    /// Per class (by index), and for images without one.
    classes: Vec<Tally>,
    none: Tally,
}

impl Flat {
    fn add(&mut self, word: u16, class: u8) {
        self.add_n(word, class, 1);
    }

    /// `n` pixels of concept word `word` in images of class `class`.
    fn add_n(&mut self, word: u16, class: u8, n: u64) {
        if class == u8::MAX {
            return self.none.add_n(word, n);
        }
        let c = class as usize;
        if self.classes.len() <= c {
            self.classes.resize(c + 1, Tally::default());
        }
        self.classes[c].add_n(word, n);
    }

    fn pixels(&self) -> u64 {
        self.none.pixels + self.classes.iter().map(|t| t.pixels).sum::<u64>()
    }
}

/// Flats a filter counts at most.
const MAX_FLATS: usize = 8;

/// What one filter keeps of its maps over a split.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    pixels: Vec<Pixel>,
    flats: Vec<Flat>,
    /// Pixels are kept when [`in_mask`] at this bound.
    bound: f32,
    /// Compact the pixels once there are more than this.
    cap: usize,
    /// A value kept this many times is counted as a flat.
    often: u64,
    /// Whether the bound was ever raised (by this thread's pixels or a merged one's); if not,
    /// the pixels are every positive one.
    raised: bool,
    /// The highest peaks `(value, image)` of the maps before upsampling, highest first, ties
    /// to the lower image.
    pub peaks: Vec<(f32, usize)>,
}

/// How much to keep: the largest `k` asked for, and how many peak images.
#[derive(Clone, Copy, Debug)]
pub struct Keep {
    pub kmax: usize,
    pub shown: usize,
}

impl Kept {
    fn new(keep: Keep) -> Kept {
        Kept {
            cap: 2 * keep.kmax.max(1024),
            often: (keep.kmax as u64 / 8).max(256),
            ..Kept::default()
        }
    }

    /// Pixels kept, one by one and counted in flats.
    fn len(&self) -> u64 {
        self.pixels.len() as u64 + self.flats.iter().map(Flat::pixels).sum::<u64>()
    }

    /// Adds one image's map `map [h, w]`, upsampled by `up` (into `buf [px]`) when any unit
    /// reaches the bound; `words [px]` are its concept words.
    fn add(
        &mut self,
        map: &[f32],
        (up, buf, hits): (&mut Upsampler, &mut [f32], &mut [u16]),
        words: &[u16],
        (class, image): (u8, usize),
        keep: Keep,
    ) {
        let (top, bottom) = extremes_of(map);
        if keep.shown > 0 {
            self.add_peak((top, image), keep.shown);
        }
        // `in_mask(v, bound)` as one comparison: `v > 0` is `v >= ` the least positive float.
        let lo = if self.bound > 0.0 {
            self.bound
        } else {
            f32::from_bits(1)
        };
        // A bilinear value never exceeds the largest unit it interpolates, but for rounding:
        // two-stage interpolation errs by a few units in the last place of the largest
        // magnitude, far less than this slack.
        let slack = if up.is_identity() {
            0.0
        } else {
            1e-6 * top.abs().max(bottom.abs())
        };
        if top + slack < lo || top.is_nan() {
            return; // no unit reaches the bound, so no pixel between units does
        }
        let values = if up.is_identity() {
            map
        } else {
            up.run(map, buf);
            &*buf
        };
        let found = self.scan(values, words, (lo, class), hits);
        // A flat's pixels come in long runs of one word (a figure's interior): counted a run
        // at a time, `(flat, word, pixels)`.
        let mut run: Option<(usize, u16, u64)> = None;
        for &p in &hits[..found] {
            let (value, word) = (values[p as usize], words[p as usize]);
            if let Some((f, w, n)) = &mut run {
                if *w == word && self.flats[*f].value == value {
                    *n += 1;
                    continue;
                }
                self.flats[*f].add_n(*w, class, *n);
                run = None;
            }
            match self.flats.iter().position(|f| f.value == value) {
                Some(f) => run = Some((f, word, 1)),
                None => self.pixels.push(Pixel { value, word, class }),
            }
        }
        if let Some((f, w, n)) = run {
            self.flats[f].add_n(w, class, n);
        }
        if self.pixels.len() > self.cap {
            self.compact(keep.kmax);
        }
    }

    /// The positions of `values [px]` at or above `lo` into `hits`, returning how many; under
    /// AVX-512, those that equal no flat's value are pushed as pixels here (with their word
    /// from `words [px]` and `class`), and only the others are returned.
    fn scan(
        &mut self,
        values: &[f32],
        words: &[u16],
        (lo, class): (f32, u8),
        hits: &mut [u16],
    ) -> usize {
        #[cfg(target_arch = "x86_64")]
        if tinycnn::isa::isa() == tinycnn::isa::Isa::Avx512 {
            let mut flats = [0.0f32; MAX_FLATS];
            for (f, flat) in flats.iter_mut().zip(&self.flats) {
                *f = flat.value;
            }
            let flats = &flats[..self.flats.len()];
            // SAFETY: `isa()` is AVX-512 only where the CPU runs it.
            return unsafe {
                super::scan512::scan(values, words, (lo, flats), class, (&mut self.pixels, hits))
            };
        }
        at_least(values, lo, hits)
    }

    /// Raises the bound to a value with at least `kmax` pixels at or above it, drops the
    /// pixels below, and counts frequent values as flats. Any such bound keeps the pass exact
    /// (see the module docs). The bound is the `kmax`-th largest value itself: a histogram
    /// finds its bucket, and a selection among that bucket's values (a small share of the
    /// pixels) finds the value, where a selection over all the 8-byte pixels would cost
    /// several times more. When a flat lies in that bucket, the bucket's lower edge.
    fn compact(&mut self, kmax: usize) {
        if self.len() > kmax as u64 {
            // Positive floats order as their bits do; the top 12 bits are the bucket (an
            // eighth of an octave wide).
            let mut counts = vec![0u64; 1 << (32 - BUCKET_SHIFT)];
            for p in &self.pixels {
                counts[bucket(p.value)] += 1;
            }
            for f in &self.flats {
                counts[bucket(f.value)] += f.pixels();
            }
            let (mut above, mut at) = (0u64, counts.len() - 1);
            while above + counts[at] < kmax as u64 {
                above += counts[at];
                at -= 1;
            }
            let mut edge = f32::from_bits((at as u32) << BUCKET_SHIFT);
            if !self.flats.iter().any(|f| bucket(f.value) == at) {
                // The r-th largest value within the bucket is the kmax-th largest of all.
                let r = (kmax as u64 - above) as usize;
                let mut inside: Vec<f32> = self
                    .pixels
                    .iter()
                    .map(|p| p.value)
                    .filter(|&v| bucket(v) == at)
                    .collect();
                let i = inside.len() - r;
                edge = *inside.select_nth_unstable_by(i, f32::total_cmp).1;
            }
            if edge > self.bound {
                self.bound = edge;
                self.raised = true;
                self.pixels.retain(|p| p.value >= edge);
                self.flats.retain(|f| f.value >= edge);
            }
            if self.pixels.len() > kmax + kmax / 2 {
                // The bucket at the bound holds many pixels: look for values worth a flat.
                self.promote(&counts);
            }
        }
        // Values that are neither frequent enough for a flat nor below the bound can keep
        // far more than kmax: never compact in a loop.
        self.cap = self.cap.max(2 * self.pixels.len());
    }

    /// Counts as flats the values that occur at least `often` times (looked for only in the
    /// histogram buckets `counts` that hold that many).
    fn promote(&mut self, counts: &[u64]) {
        let often = self.often;
        let heavy: Vec<usize> = (0..counts.len()).filter(|&b| counts[b] >= often).collect();
        if heavy.is_empty() || self.flats.len() >= MAX_FLATS {
            return;
        }
        let mut values: Vec<f32> = self
            .pixels
            .iter()
            .map(|p| p.value)
            .filter(|&v| heavy.binary_search(&bucket(v)).is_ok())
            .collect();
        values.sort_unstable_by(f32::total_cmp);
        let mut frequent = Vec::new();
        for run in values.chunk_by(|a, b| a == b) {
            if run.len() as u64 >= often && self.flats.len() + frequent.len() < MAX_FLATS {
                frequent.push(run[0]);
            }
        }
        if frequent.is_empty() {
            return;
        }
        let start = self.flats.len();
        self.flats.extend(frequent.iter().map(|&value| Flat {
            value,
            classes: Vec::new(),
            none: Tally::default(),
        }));
        let flats = &mut self.flats[start..];
        self.pixels
            .retain(|p| match flats.iter_mut().find(|f| f.value == p.value) {
                Some(f) => {
                    f.add(p.word, p.class);
                    false
                }
                None => true,
            });
    }

    /// Inserts a peak where sorting by value (highest first, in `total_cmp`'s order) and image
    /// would place it, keeping `shown`: images come in order, so a new peak goes after those
    /// of equal value.
    fn add_peak(&mut self, (top, image): (f32, usize), shown: usize) {
        debug_assert!(self.peaks.iter().all(|p| p.1 < image), "images in order");
        let at = self.peaks.partition_point(|p| p.0.total_cmp(&top).is_ge());
        if at < shown {
            self.peaks.insert(at, (top, image));
            self.peaks.truncate(shown);
        }
    }

    /// The thresholds at which the filter's top `k` pixels begin, for each `k` of `ks` (each
    /// at most the `kmax` kept; see the dissection's module docs), or 0 where fewer than `k`
    /// pixels are positive (the mask is then every positive pixel).
    pub fn thresholds(&self, ks: &[usize]) -> Vec<f32> {
        let mut values: Vec<f32> = self.pixels.iter().map(|p| p.value).collect();
        // Per flat: the kept values above it, and its own count with the pixels equal to it.
        let sizes: Vec<(u64, u64)> = self
            .flats
            .iter()
            .map(|f| {
                let above = values.iter().filter(|&&v| v > f.value).count() as u64
                    + (self.flats.iter())
                        .filter(|g| g.value > f.value)
                        .map(Flat::pixels)
                        .sum::<u64>();
                let equal = values.iter().filter(|&&v| v == f.value).count() as u64;
                (above, f.pixels() + equal)
            })
            .collect();
        ks.iter()
            .map(|&k| {
                let k = k as u64;
                if !self.raised && k > self.len() {
                    return 0.0; // fewer than k positive pixels
                }
                if let Some(j) =
                    (0..sizes.len()).find(|&j| sizes[j].0 < k && k <= sizes[j].0 + sizes[j].1)
                {
                    return self.flats[j].value;
                }
                // Among the pixels kept one by one, less the flats above the k-th.
                let skip: u64 = (0..sizes.len())
                    .filter(|&j| sizes[j].0 + sizes[j].1 < k)
                    .map(|j| self.flats[j].pixels())
                    .sum();
                let k = (k - skip) as usize;
                debug_assert!(k >= 1 && k <= values.len(), "k within what was kept");
                let at = values.len() - k;
                *values.select_nth_unstable_by(at, f32::total_cmp).1
            })
            .collect()
    }

    /// Counts of the filter's masks at the thresholds `ts` (the first the dissection's own):
    /// per threshold `|M|` and `|M & L_c|` for each of `concepts`, and at the first the same
    /// per class (of `classes`).
    pub fn overlaps(&self, ts: &[f32], concepts: usize, classes: usize) -> Overlaps {
        let mut o = Overlaps {
            mask_px: vec![0; ts.len()],
            inter: vec![vec![0; concepts]; ts.len()],
            class_mask_px: vec![0; classes],
            class_inter: vec![vec![0; concepts]; classes],
        };
        for p in &self.pixels {
            o.count_one(ts, p);
        }
        for f in &self.flats {
            o.count(ts, f.value, &f.none, usize::MAX);
            for (class, t) in f.classes.iter().enumerate() {
                o.count(ts, f.value, t, class);
            }
        }
        o
    }
}

/// The bits below a histogram bucket ([`Kept::compact`]).
const BUCKET_SHIFT: u32 = 20;

/// The histogram bucket of a positive float.
fn bucket(v: f32) -> usize {
    (v.to_bits() >> BUCKET_SHIFT) as usize
}

/// Counts of one filter's masks at several thresholds: `|M|` and `|M & L_c|` per threshold,
/// and for the first threshold the same per class.
#[derive(Clone, Debug, PartialEq)]
pub struct Overlaps {
    pub mask_px: Vec<u64>,
    pub inter: Vec<Vec<u64>>,
    pub class_mask_px: Vec<u64>,
    pub class_inter: Vec<Vec<u64>>,
}

impl Overlaps {
    /// Adds one pixel to every mask that holds it.
    fn count_one(&mut self, ts: &[f32], p: &Pixel) {
        let (concepts, class) = (self.inter.first().map_or(0, Vec::len), p.class as usize);
        for (q, &t) in ts.iter().enumerate() {
            if !in_mask(p.value, t) {
                continue;
            }
            self.mask_px[q] += 1;
            let by_class = q == 0 && class < self.class_mask_px.len();
            if by_class {
                self.class_mask_px[class] += 1;
            }
            let mut bits = p.word;
            while bits != 0 {
                let c = bits.trailing_zeros() as usize;
                if c < concepts {
                    self.inter[q][c] += 1;
                    if by_class {
                        self.class_inter[class][c] += 1;
                    }
                }
                bits &= bits - 1;
            }
        }
    }

    /// Adds `tally`, pixels of value `value` from images of class `class` (out of range: no
    /// class), to every mask that holds them.
    fn count(&mut self, ts: &[f32], value: f32, tally: &Tally, class: usize) {
        let concepts = self.inter.first().map_or(0, Vec::len);
        for (q, &t) in ts.iter().enumerate() {
            if !in_mask(value, t) {
                continue;
            }
            self.mask_px[q] += tally.pixels;
            for (c, n) in tally.concept.iter().take(concepts).enumerate() {
                self.inter[q][c] += n;
            }
            if q == 0 && class < self.class_mask_px.len() {
                self.class_mask_px[class] += tally.pixels;
                for (c, n) in tally.concept.iter().take(concepts).enumerate() {
                    self.class_inter[class][c] += n;
                }
            }
        }
    }
}

/// Images whose maps a [`keep_top`] block holds (2 MB for a 16-16 on 28x28, so that a block
/// stays in the caches between its forward pass and its scan).
const BLOCK: usize = 32;

/// Runs `model` over `images [n, side, side]` and keeps, per conv layer and filter, what
/// [`Kept`] describes: `[layer][filter]`. `masks [n, px]` are the images' concept words,
/// `labels [n]` their classes (empty: none).
///
/// A block of [`BLOCK`] images at a time: its forward pass split over the threads by images,
/// then its maps scanned split by filters, so that each filter sees every image in order as
/// one stream. One stream per filter keeps `kmax` pixels where a stream per thread would keep
/// `kmax` in each, and its bound rises with all the images seen; the result does not depend
/// on the number of threads.
pub fn keep_top(
    model: &Model,
    images: &[u8],
    (masks, labels): (&[u16], &[u8]),
    scaling: Scaling,
    keep: Keep,
) -> Vec<Vec<Kept>> {
    keep_top_from(model, images, (masks, labels), scaling, keep, 0)
}

/// [`keep_top`] for the filters of layers `from..` (0-based) only; the earlier layers' lists
/// are empty. The forward pass is the same: a layer's maps do not depend on which filters are
/// followed.
pub fn keep_top_from(
    model: &Model,
    images: &[u8],
    (masks, labels): (&[u16], &[u8]),
    scaling: Scaling,
    keep: Keep,
    from: usize,
) -> Vec<Vec<Kept>> {
    let chunk = tinycnn::train::PostMaps::CHUNK;
    let arch = &model.arch;
    let (side, px) = (arch.height, arch.height * arch.width);
    let n = images.len() / px;
    let shapes = arch.layers();
    // One workspace per chunk of a block, so that the block's maps stay where the forward
    // pass wrote them: chunk `c`'s maps are `[layer][C, b, H, W]` in workspace `c`.
    let mut workspaces: Vec<tinycnn::train::PostMaps> = (0..BLOCK.div_ceil(chunk))
        .map(|_| tinycnn::train::PostMaps::new(arch))
        .collect();
    // Per filter: its layer and index, what it keeps, its upsampler and scratch buffers.
    let mut filters: Vec<Stream> = shapes
        .iter()
        .enumerate()
        .skip(from)
        .flat_map(|(l, s)| {
            (0..s.cout).map(move |f| Stream {
                layer: l,
                filter: f,
                kept: Kept::new(keep),
                up: Upsampler::new(s.h, s.w, side),
                buf: vec![0.0; px],
                hits: vec![0; px],
            })
        })
        .collect();
    for first in (0..n).step_by(BLOCK) {
        let last = (first + BLOCK).min(n);
        let blocks = images[first * px..last * px].par_chunks(chunk * px);
        let used = blocks.len();
        workspaces[..used]
            .par_iter_mut()
            .zip(blocks)
            .for_each(|(maps, imgs)| {
                maps.run(model, imgs, scaling);
            });
        let workspaces = &workspaces[..used];
        filters.par_iter_mut().for_each(|st| {
            let hw = shapes[st.layer].hw();
            for i in first..last {
                let (c, j) = ((i - first) / chunk, (i - first) % chunk);
                let m = chunk.min(last - first - c * chunk);
                let post = &workspaces[c].last()[st.layer];
                let class = labels.get(i).copied().unwrap_or(u8::MAX);
                st.kept.add(
                    &post[(st.filter * m + j) * hw..][..hw],
                    (&mut st.up, &mut st.buf, &mut st.hits),
                    &masks[i * px..(i + 1) * px],
                    (class, i),
                    keep,
                );
            }
        });
    }
    let mut out: Vec<Vec<Kept>> = shapes.iter().map(|_| Vec::new()).collect();
    for st in filters {
        out[st.layer].push(st.kept);
    }
    out
}

/// One filter's pass in [`keep_top`].
struct Stream {
    layer: usize,
    filter: usize,
    kept: Kept,
    up: Upsampler,
    buf: Vec<f32>,
    hits: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros, negatives, and positives with ties: at the top (100 and 20), and a value
    /// that 30% of the pixels share (3, as a flat interior gives) across the 20% quantile,
    /// over values below it.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| match rng.next_u32() % 40 {
                0..=9 => 0.0,
                10..=13 => -((rng.next_u32() % 100) as f32),
                14 => 100.0,
                15..=16 => 20.0,
                17..=28 => 3.0,
                _ => (rng.next_u32() % 2_000) as f32 * 1e-3,
            })
            .collect()
    }

    /// The AVX-512 scan keeps the pixels the portable scan keeps, in the same order, and
    /// returns the positions of the values that equal a flat; its extremes are the portable
    /// ones, bit for bit. Over lengths with and without a partial last vector, bounds that
    /// keep nothing, some and everything positive, and with up to `MAX_FLATS` flats.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_scan_keeps_what_the_portable_scan_keeps() {
        if !(std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl"))
        {
            return;
        }
        let bits = |v: (f32, f32)| (v.0.to_bits(), v.1.to_bits());
        // A lane's NaN after its largest value, and signed zeros in either order.
        for (first, then) in [(7.0, f32::NAN), (-0.0, 0.0), (0.0, -0.0)] {
            let v: Vec<f32> = (0..48).map(|j| if j < 16 { first } else { then }).collect();
            // SAFETY: checked above.
            let wide = unsafe { super::super::scan512::extremes(&v) };
            assert_eq!(bits(wide), bits(extremes(&v)), "{first} then {then}");
        }
        for (i, n) in [784usize, 196, 37, 16, 1, 0].into_iter().enumerate() {
            let mut values = self::values(n, 10 + i as u64);
            if n > 5 {
                values[3] = f32::NAN;
                values[4] = -0.0;
            }
            let words: Vec<u16> = (0..n).map(|j| (j * 37 % 1000) as u16).collect();
            // SAFETY: checked above.
            let wide = unsafe { super::super::scan512::extremes(&values) };
            assert_eq!(bits(wide), bits(extremes(&values)), "n {n}");
            for lo in [f32::from_bits(1), 0.5, 3.0, 20.0, 1000.0] {
                for flats in [
                    &[][..],
                    &[3.0][..],
                    &[20.0, 3.0, 100.0, 0.7, 1.5, 2.0, 9.0, 0.001][..],
                ] {
                    let (mut hits, mut want_hits) = (vec![0u16; n], vec![0u16; n]);
                    let mut want = Vec::new();
                    let found = at_least(&values, lo, &mut want_hits);
                    let mut want_flat = Vec::new();
                    for &p in &want_hits[..found] {
                        let (value, word) = (values[p as usize], words[p as usize]);
                        match flats.contains(&value) {
                            true => want_flat.push(p),
                            false => want.push(Pixel {
                                value,
                                word,
                                class: 2,
                            }),
                        }
                    }
                    let before = Pixel {
                        value: -1.0,
                        word: 9,
                        class: 9,
                    };
                    let mut got = vec![before];
                    // SAFETY: checked above.
                    let nf = unsafe {
                        super::super::scan512::scan(
                            &values,
                            &words,
                            (lo, flats),
                            2,
                            (&mut got, &mut hits),
                        )
                    };
                    let at = format!("n {n}, lo {lo}, {} flats", flats.len());
                    assert_eq!(got[0], before, "{at}");
                    assert_eq!(&got[1..], &want[..], "{at}");
                    assert_eq!(&hits[..nf], &want_flat[..], "{at}");
                }
            }
        }
    }

    /// Thresholds and mask sizes equal those of a full sort, for maps at the image's size
    /// and upsampled, whether the pixels are compacted often or seldom, and at every quantile
    /// up to the largest kept, asked one at a time or all at once.
    #[test]
    fn kept_pixels_give_the_thresholds_of_a_full_sort() {
        let n = 301;
        for (h, side) in [(7, 7), (7, 14)] {
            let (hw, px) = (h * h, side * side);
            let maps = values(n * hw, 4);
            let mut all = vec![0.0f32; n * px];
            for i in 0..n {
                super::super::upsample::upsample(
                    &maps[i * hw..(i + 1) * hw],
                    h,
                    h,
                    side,
                    &mut all[i * px..(i + 1) * px],
                );
            }
            let words: Vec<u16> = (0..n * px).map(|i| (i % 7) as u16).collect();
            let total = n * px;
            // More than the positive pixels at 0.9 (a threshold of 0), fewer below; and
            // without 0.9, so that the bound rises.
            for (qs, cap) in [
                (&[0.9, 0.001, 0.005, 0.05, 0.2][..], 256),
                (&[0.9, 0.001, 0.005, 0.05, 0.2][..], 4096),
                (&[0.2, 0.001, 0.005, 0.05, 0.02][..], 256),
                (&[0.2, 0.001, 0.005, 0.05, 0.02][..], 700),
                (&[0.2, 0.001, 0.005, 0.05, 0.02][..], 100_000),
            ] {
                let ks: Vec<usize> = qs.iter().map(|&q| super::super::k_of(q, total)).collect();
                let keep = Keep {
                    kmax: ks[0],
                    shown: 3,
                };
                let mut k = Kept::new(keep);
                (k.cap, k.often) = (cap, 32); // compact as often as asked, count ties as flats
                let mut up = Upsampler::new(h, h, side);
                let (mut buf, mut hits) = (vec![0.0; px], vec![0; px]);
                for i in 0..n {
                    let words = &words[i * px..(i + 1) * px];
                    let map = &maps[i * hw..(i + 1) * hw];
                    k.add(map, (&mut up, &mut buf, &mut hits), words, (0, i), keep);
                }
                if qs[0] < 0.5 && cap == 256 && h == side {
                    assert!(k.raised && !k.flats.is_empty(), "ties are counted as flats");
                }
                let mut sorted = all.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let want: Vec<f32> = ks.iter().map(|&k| sorted[k - 1].max(0.0)).collect();
                assert_eq!(want[0] == 0.0, qs[0] > 0.5, "both cases are tested");
                let at = format!("{h}->{side}, cap {cap}");
                for (j, &kq) in ks.iter().enumerate() {
                    let t = k.thresholds(&[kq])[0];
                    assert_eq!(t, want[j], "k {kq}, {at}");
                }
                let ts = k.thresholds(&ks);
                assert_eq!(ts, want, "{at}");
                let o = k.overlaps(&ts, 7, 1);
                for (j, &t) in ts.iter().enumerate() {
                    let on = all.iter().filter(|&&v| in_mask(v, t)).count() as u64;
                    assert_eq!(o.mask_px[j], on, "k {}, {at}", ks[j]);
                    let on_3 = all
                        .iter()
                        .zip(&words)
                        .filter(|&(&v, &w)| in_mask(v, t) && w & 8 != 0)
                        .count() as u64;
                    assert_eq!(o.inter[j][3], on_3, "k {}, {at}", ks[j]);
                }
                // The peaks: the three images whose largest unit is largest, ties to the
                // lower index.
                let mut peaks: Vec<(f32, usize)> = (0..n)
                    .map(|i| (peak(&maps[i * hw..(i + 1) * hw]), i))
                    .collect();
                peaks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                assert_eq!(k.peaks, peaks[..3].to_vec(), "{at}");
            }
        }
    }
}
