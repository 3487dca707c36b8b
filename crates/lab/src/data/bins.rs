//! Equal-width bins over a latent factor's observed range: the one definition behind every
//! per-factor table (accuracy by factor bin, a filter's response by factor bin, the factor
//! histograms of a study's datasets), so their bins always agree.

/// `n` equal-width bins over `[lo, hi]`; the top edge belongs to the last bin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bins {
    pub lo: f32,
    pub hi: f32,
    pub n: usize,
}

impl Bins {
    /// Bins over the range of `values`; `None` when they do not vary (or `n` is 0), since a
    /// constant factor has nothing to bin.
    pub fn over(values: impl IntoIterator<Item = f32>, n: usize) -> Option<Bins> {
        let (lo, hi) = values
            .into_iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        (lo < hi && n > 0).then_some(Bins { lo, hi, n })
    }

    /// The bin of `v` (values outside the range go to the nearest end bin).
    pub fn of(&self, v: f32) -> usize {
        let t = (v - self.lo) / (self.hi - self.lo) * self.n as f32;
        (t.max(0.0) as usize).min(self.n - 1)
    }

    /// The lower and upper edge of bin `b`.
    pub fn edges(&self, b: usize) -> (f32, f32) {
        let w = self.hi - self.lo;
        (
            self.lo + w * b as f32 / self.n as f32,
            self.lo + w * (b + 1) as f32 / self.n as f32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_range() {
        let b = Bins::over([0.3, 0.9, 0.5], 3).unwrap();
        assert_eq!((b.of(0.3), b.of(0.49), b.of(0.51), b.of(0.9)), (0, 0, 1, 2));
        assert_eq!(b.of(5.0), 2);
        assert_eq!(b.of(-5.0), 0);
        let (lo, hi) = b.edges(1);
        assert!((lo - 0.5).abs() < 1e-6 && (hi - 0.7).abs() < 1e-6);
        assert_eq!(Bins::over([0.4, 0.4], 3), None);
        assert_eq!(Bins::over([0.1, 0.4], 0), None);
    }
}
