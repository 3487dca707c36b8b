//! Logistic regression by iteratively reweighted least squares (Newton's method on the
//! log-likelihood; McCullagh and Nelder, "Generalized Linear Models", section 4.4), with Wald
//! 95% intervals from the inverse Fisher information.
//!
//! Written by hand because the models here have at most a handful of terms: a dense solve of
//! a p x p system is a few lines, where a linear-algebra crate would be a large dependency.
//! Complete or quasi-complete separation (a term that predicts the outcome perfectly) makes
//! the maximum-likelihood estimate infinite; it is detected and reported as `None`, never as a
//! huge number. Pure arithmetic; must not know runs or stores.

/// A fitted model: coefficients and their standard errors, in the order of the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub coef: Vec<f64>,
    pub se: Vec<f64>,
    pub iterations: usize,
}

const Z95: f64 = 1.959_963_984_540_054;

impl Fit {
    /// The Wald 95% interval of coefficient `j`.
    pub fn interval(&self, j: usize) -> (f64, f64) {
        (
            self.coef[j] - Z95 * self.se[j],
            self.coef[j] + Z95 * self.se[j],
        )
    }
}

/// Fits `P(y) = 1 / (1 + exp(-x . b))`. `x` holds one row per observation (include a column of
/// ones for an intercept). `None` when the outcome does not vary, the columns are collinear,
/// or the data are separated (the estimate runs off to infinity).
pub fn fit(x: &[Vec<f64>], y: &[bool]) -> Option<Fit> {
    let p = x.first()?.len();
    if y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
        return None;
    }
    let mut b = vec![0.0; p];
    for it in 1..=100 {
        // Score g = X'(y - mu) and information H = X' W X, W = mu (1 - mu).
        let mut g = vec![0.0; p];
        let mut h = vec![vec![0.0; p]; p];
        for (row, &yi) in x.iter().zip(y) {
            let eta: f64 = row.iter().zip(&b).map(|(a, c)| a * c).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            let w = mu * (1.0 - mu);
            for j in 0..p {
                g[j] += row[j] * (f64::from(u8::from(yi)) - mu);
                for k in 0..p {
                    h[j][k] += w * row[j] * row[k];
                }
            }
        }
        let step = solve(&h, &g)?;
        for (bj, s) in b.iter_mut().zip(&step) {
            *bj += s;
        }
        // Separation: the likelihood keeps rising as coefficients grow without bound.
        if b.iter().any(|v| !v.is_finite() || v.abs() > 30.0) {
            return None;
        }
        if step.iter().all(|s| s.abs() < 1e-10) {
            let inv = invert(&h)?;
            let se = (0..p).map(|j| inv[j][j].sqrt()).collect();
            return Some(Fit {
                coef: b,
                se,
                iterations: it,
            });
        }
    }
    None
}

/// Solves `a v = r` by Gaussian elimination with partial pivoting; `None` when `a` is
/// singular.
fn solve(a: &[Vec<f64>], r: &[f64]) -> Option<Vec<f64>> {
    let p = r.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .zip(r)
        .map(|(row, &v)| row.iter().copied().chain([v]).collect())
        .collect();
    let scale = a.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    for c in 0..p {
        let piv = (c..p).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))?;
        if m[piv][c].abs() <= 1e-12 * scale.max(1e-300) {
            return None;
        }
        m.swap(c, piv);
        let pivot_row = m[c].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != c {
                let f = row[c] / pivot_row[c];
                for (v, pv) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *v -= f * pv;
                }
            }
        }
    }
    Some((0..p).map(|i| m[i][p] / m[i][i]).collect())
}

/// The inverse of `a`, column by column.
fn invert(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let p = a.len();
    let cols: Vec<Vec<f64>> = (0..p)
        .map(|j| {
            solve(
                a,
                &(0..p)
                    .map(|i| f64::from(u8::from(i == j)))
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Option<_>>()?;
    Some(
        (0..p)
            .map(|i| (0..p).map(|j| cols[j][i]).collect())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` successes and `b` failures at x = 1, `c` and `d` at x = 0.
    fn table(a: usize, b: usize, c: usize, d: usize) -> (Vec<Vec<f64>>, Vec<bool>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (n, xi, yi) in [
            (a, 1.0, true),
            (b, 1.0, false),
            (c, 0.0, true),
            (d, 0.0, false),
        ] {
            for _ in 0..n {
                x.push(vec![1.0, xi]);
                y.push(yi);
            }
        }
        (x, y)
    }

    #[test]
    fn a_two_by_two_table_gives_the_log_odds_ratio_exactly() {
        // The closed form: slope = ln((a/b) / (c/d)), se = sqrt(1/a + 1/b + 1/c + 1/d),
        // intercept = ln(c/d).
        let (a, b, c, d): (f64, f64, f64, f64) = (30.0, 10.0, 12.0, 28.0);
        let (x, y) = table(30, 10, 12, 28);
        let f = fit(&x, &y).unwrap();
        assert!((f.coef[1] - ((a / b) / (c / d)).ln()).abs() < 1e-9, "{f:?}");
        assert!((f.se[1] - (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt()).abs() < 1e-9);
        assert!((f.coef[0] - (c / d).ln()).abs() < 1e-9);
        assert!((f.se[0] - (1.0 / c + 1.0 / d).sqrt()).abs() < 1e-9);
        let (lo, hi) = f.interval(1);
        assert!(lo > 0.0 && hi > lo);
    }

    #[test]
    fn separation_no_variation_and_collinearity_are_refused() {
        // x = 1 always succeeds, x = 0 always fails: the slope is infinite.
        let (x, y) = table(10, 0, 0, 10);
        assert_eq!(fit(&x, &y), None);
        // Quasi-complete: x = 1 always succeeds.
        let (x, y) = table(10, 0, 5, 5);
        assert_eq!(fit(&x, &y), None);
        let (x, y) = table(10, 0, 10, 0);
        assert_eq!(fit(&x, &y), None, "the outcome never varies");
        let x: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![1.0, i as f64, 2.0 * i as f64])
            .collect();
        let y: Vec<bool> = (0..10).map(|i| i % 3 == 0).collect();
        assert_eq!(fit(&x, &y), None, "collinear columns");
    }
}
