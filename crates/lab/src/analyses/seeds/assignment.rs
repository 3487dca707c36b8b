//! The one-to-one matching of two sets of filters that maximises the summed similarity: the
//! linear assignment problem, solved with the Hungarian method (Kuhn 1955, Munkres 1957) in
//! its O(r^2 c) shortest-augmenting-path form with row and column potentials.
//!
//! Why by hand: the maintained crates either take integer weights only (`pathfinding`'s
//! `kuhn_munkres` wants `Ord` costs, so correlations would be rounded and near ties broken
//! by the rounding) or are thin; the method is forty lines, and the tests check it against
//! brute force on every shape up to 7x7.
//!
//! Values in, a matching out; must not know models.

/// The assignment of each row of `w [rows][cols]` (`rows <= cols`) to a distinct column that
/// maximises the sum of the chosen weights: `out[i]` is row `i`'s column. Ties go to the
/// solver's first optimum, the same every time for the same input.
///
/// # Panics
/// When `rows > cols`, a row is ragged, or a weight is not finite (callers transpose, and
/// map undefined similarities to a number, first).
pub fn maximise(w: &[Vec<f64>]) -> Vec<usize> {
    let rows = w.len();
    if rows == 0 {
        return Vec::new();
    }
    let cols = w[0].len();
    assert!(rows <= cols, "assignment: {rows} rows into {cols} columns");
    assert!(
        w.iter()
            .all(|r| r.len() == cols && r.iter().all(|x| x.is_finite())),
        "assignment: ragged or non-finite weights"
    );
    // Minimise the cost -w. 1-based arrays, index 0 a virtual row/column (e-maxx's form).
    let cost = |i: usize, j: usize| -w[i - 1][j - 1];
    let (mut u, mut v) = (vec![0.0f64; rows + 1], vec![0.0f64; cols + 1]);
    let (mut owner, mut way) = (vec![0usize; cols + 1], vec![0usize; cols + 1]);
    for i in 1..=rows {
        owner[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; cols + 1];
        let mut used = vec![false; cols + 1];
        loop {
            used[j0] = true;
            let (i0, mut delta, mut j1) = (owner[j0], f64::INFINITY, 0);
            for j in 1..=cols {
                if !used[j] {
                    let cur = cost(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        // Augment along the path found.
        loop {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![0; rows];
    for j in 1..=cols {
        if owner[j] > 0 {
            out[owner[j] - 1] = j - 1;
        }
    }
    out
}

/// The summed weight of an assignment.
pub fn total(w: &[Vec<f64>], assignment: &[usize]) -> f64 {
    assignment.iter().enumerate().map(|(i, &j)| w[i][j]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{RngCore, SeedableRng};

    /// The best total over every injective assignment, by enumeration.
    fn brute_force(w: &[Vec<f64>]) -> f64 {
        fn go(w: &[Vec<f64>], i: usize, used: &mut Vec<bool>) -> f64 {
            if i == w.len() {
                return 0.0;
            }
            let mut best = f64::NEG_INFINITY;
            for j in 0..used.len() {
                if !used[j] {
                    used[j] = true;
                    best = best.max(w[i][j] + go(w, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(w, 0, &mut vec![false; w[0].len()])
    }

    /// Every shape up to 7x7 (rows at most columns), random weights and weights with many
    /// ties (a few distinct values): the solver's total equals brute force's, and its
    /// columns are distinct.
    #[test]
    fn equals_brute_force_up_to_7x7() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for cols in 1..=7 {
            for rows in 1..=cols {
                for trial in 0..20 {
                    let w: Vec<Vec<f64>> = (0..rows)
                        .map(|_| {
                            (0..cols)
                                .map(|_| {
                                    let r = rng.next_u32();
                                    if trial % 2 == 0 {
                                        r as f64 / u32::MAX as f64 * 2.0 - 1.0
                                    } else {
                                        (r % 3) as f64 // ties
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    let a = maximise(&w);
                    let mut seen = a.clone();
                    seen.sort_unstable();
                    seen.dedup();
                    assert_eq!(seen.len(), rows, "distinct columns for {w:?}");
                    let (got, want) = (total(&w, &a), brute_force(&w));
                    assert!((got - want).abs() < 1e-9, "{rows}x{cols}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn recovers_a_permutation() {
        let p = [3, 0, 4, 1, 2];
        let w: Vec<Vec<f64>> = (0..5)
            .map(|i| (0..5).map(|j| if j == p[i] { 1.0 } else { 0.3 }).collect())
            .collect();
        assert_eq!(maximise(&w), p);
        assert!(maximise(&[]).is_empty());
    }
}
