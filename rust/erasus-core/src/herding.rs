//! Kernel herding with a linear kernel, i.e. greedy moment matching (Welling, "Herding Dynamical
//! Weights to Learn", ICML 2009; Chen, Welling & Smola, "Super-Samples from Kernel Herding", UAI 2010).
//!
//! Step `t` (0-based, `S` the `t` rows picked so far) adds
//! `argmin_{x not in S} || (sum_S + x) / (t + 1) - mean(X) ||`, which equals
//! `argmin_x || x - r_t ||` with the target `r_t = (t + 1) mean(X) - sum_S`. (DeepCore's herding takes
//! the arg-max here, which picks the worst point; this is the arg-min of the papers.)
//!
//! Each step is one parallel pass over X (it is bandwidth-bound). The mean and the running sum are
//! kept in f64; `r_t` is rounded to f32 and distances use the shared 16-lane f32 kernel. Ties go to
//! the smallest row index, and the result does not depend on the number of threads. Where the CPU has
//! AVX-512F the pass reads an f16 shadow of X instead (half the bytes) and scores exactly only the rows
//! that shadow cannot rule out ([`crate::half_rows`]): same picks, bit for bit, for n d / 2 floats of memory.

use crate::distance::{argmin_pair, nearest_row, reduce_row_chunks, Isa, CHUNK_ROWS};
use crate::error::Result;
use crate::half_rows::HalfRows;
use crate::matrix::{check_k, MatrixView};
use crate::selection::Selection;
use rayon::prelude::*;
use std::sync::atomic::AtomicU32;

/// Column means in f64, summed per fixed chunk and combined in chunk order (thread-count independent).
pub(crate) fn column_mean(x: &MatrixView<'_>) -> Vec<f64> {
    let d = x.d();
    let partial: Vec<Vec<f64>> = x
        .data()
        .par_chunks(CHUNK_ROWS * d)
        .map(|rows| {
            let mut acc = vec![0.0f64; d];
            for row in rows.chunks_exact(d) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += *v as f64);
            }
            acc
        })
        .collect();
    let mut mean = vec![0.0f64; d];
    for acc in &partial {
        mean.iter_mut().zip(acc).for_each(|(m, a)| *m += a);
    }
    let n = x.n() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    mean
}

/// Picks `k` rows by herding. `gains[t]` is the moment error `||mean(S_t) - mean(X)||_2` after step
/// `t`; `objective` is the final one. Weights are ones.
pub fn herding(x: MatrixView<'_>, k: usize) -> Result<Selection> {
    crate::distance::on_pool(move || herding_impl(x, k, false))
}

/// [`herding`] without the f16 pre-filter: every step scores every row exactly. The reference that
/// [`herding`] must equal bit for bit.
pub fn herding_naive(x: MatrixView<'_>, k: usize) -> Result<Selection> {
    herding_impl(x, k, true)
}

fn herding_impl(x: MatrixView<'_>, k: usize, naive: bool) -> Result<Selection> {
    check_k(k, x.n())?;
    let d = x.d();
    let isa = Isa::detect();
    let mean = column_mean(&x);
    let mut sum = vec![0.0f64; d];
    let mut target = vec![0.0f32; d];
    let mut selected = vec![false; x.n()];
    let mut indices = Vec::with_capacity(k);
    let mut gains = Vec::with_capacity(k);
    // Building the shadow costs about one pass; it pays from a few steps on.
    let shadow = if k >= 4 && !naive {
        HalfRows::new(x.data(), d)
    } else {
        None
    };
    for t in 0..k {
        let scale = (t + 1) as f64;
        target
            .iter_mut()
            .zip(mean.iter().zip(&sum))
            .for_each(|(r, (m, s))| *r = (scale * m - s) as f32);
        let (_, pick) = match &shadow {
            Some(h) => {
                let padded = h.pad(&target);
                let shared = AtomicU32::new(f32::INFINITY.to_bits());
                let nearest = |start: usize, rows: &[f32], excluded: &[bool]| {
                    h.nearest_row(rows, start, excluded, &target, &padded, &shared)
                };
                reduce_row_chunks(
                    x.data(),
                    d,
                    &selected,
                    (f32::INFINITY, usize::MAX),
                    nearest,
                    argmin_pair,
                )
            }
            None => {
                let nearest =
                    |start: usize, rows: &[f32], excluded: &[bool]| nearest_row(isa, rows, d, start, excluded, &target);
                reduce_row_chunks(
                    x.data(),
                    d,
                    &selected,
                    (f32::INFINITY, usize::MAX),
                    nearest,
                    argmin_pair,
                )
            }
        };
        // check_k guarantees an unselected row at every step, so `pick` is a real row.
        selected[pick] = true;
        indices.push(pick);
        sum.iter_mut().zip(x.row(pick)).for_each(|(s, v)| *s += *v as f64);
        let err = sum
            .iter()
            .zip(&mean)
            .map(|(s, m)| (s / scale - m).powi(2))
            .sum::<f64>()
            .sqrt();
        gains.push(err);
    }
    let objective = gains.last().copied().unwrap_or(f64::NAN);
    Ok(Selection {
        weights: vec![1.0; k],
        indices,
        gains,
        objective,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn mat(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * d)
            .map(|_| rng.random_range(-1.0f32..1.0) + if rng.random_bool(0.1) { 3.0 } else { 0.0 })
            .collect()
    }

    fn moment_error(x: &MatrixView<'_>, rows: &[usize]) -> f64 {
        let d = x.d();
        let mut diff = vec![0.0f64; d];
        for i in 0..x.n() {
            diff.iter_mut()
                .zip(x.row(i))
                .for_each(|(a, v)| *a -= *v as f64 / x.n() as f64);
        }
        for &i in rows {
            diff.iter_mut()
                .zip(x.row(i))
                .for_each(|(a, v)| *a += *v as f64 / rows.len() as f64);
        }
        diff.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// Each pick minimizes the float64 moment error among the unselected rows (up to f32 rounding).
    #[test]
    fn each_step_is_the_float64_argmin() {
        let (n, d) = (300, 6);
        let data = mat(n, d, 9);
        let x = MatrixView::new(&data, n, d).unwrap();
        let sel = herding(x, 40).unwrap();
        for t in 0..40 {
            let prefix = &sel.indices[..t];
            let best = (0..n)
                .filter(|i| !prefix.contains(i))
                .map(|i| moment_error(&x, &[prefix, &[i]].concat()))
                .fold(f64::INFINITY, f64::min);
            let got = moment_error(&x, &sel.indices[..=t]);
            assert!(got <= best + 1e-5, "step {t}: {got} vs {best}");
            assert!((sel.gains[t] - got).abs() < 1e-9);
        }
    }

    #[test]
    fn same_result_on_one_and_two_threads() {
        // Large enough for the parallel path (n d >= PARALLEL_MIN_ELEMENTS).
        let data = mat(40_000, 7, 2);
        let x = MatrixView::new(&data, 40_000, 7).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| herding(x, 30).unwrap())
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn k_equal_n_takes_every_row_once() {
        let data = mat(20, 3, 4);
        let x = MatrixView::new(&data, 20, 3).unwrap();
        let sel = herding(x, 20).unwrap();
        let mut idx = sel.indices.clone();
        idx.sort();
        assert_eq!(idx, (0..20).collect::<Vec<_>>());
        assert!(sel.objective < 1e-6);
        assert!(herding(x, 21).is_err() && herding(x, 0).is_err());
    }

    /// Mixture rows: `clusters` centres with spread `scale`, unit noise, rounded to `grid` (0 = no rounding) so
    /// that exact duplicates and distance ties occur.
    fn mixture(n: usize, d: usize, clusters: usize, scale: f32, grid: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..clusters * d).map(|_| rng.random_range(-scale..scale)).collect();
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let c = rng.random_range(0..clusters);
            for j in 0..d {
                let v = centres[c * d + j] + rng.random_range(-1.0f32..1.0);
                out.push(if grid > 0.0 { (v / grid).round() * grid } else { v });
            }
        }
        out
    }

    #[test]
    fn f16_prefilter_equals_the_exact_pass_on_large_and_tied_data() {
        // Parallel chunks, d not a multiple of 16, and a coarse grid that makes duplicates and exact ties.
        for (n, d, grid, seed) in [
            (9000, 37, 0.0, 1),
            (6000, 96, 0.5, 2),
            (5000, 5, 1.0, 3),
            (3000, 130, 0.0, 4),
        ] {
            let data = mixture(n, d, 23, 12.0, grid, seed);
            let x = MatrixView::new(&data, n, d).unwrap();
            assert_eq!(
                herding(x, 300).unwrap(),
                herding_naive(x, 300).unwrap(),
                "n {n} d {d} grid {grid}"
            );
        }
    }

    #[test]
    fn values_beyond_f16_range_fall_back_to_the_exact_pass() {
        let mut data = mixture(2000, 8, 5, 3.0, 0.0, 5);
        data[77] = 1.0e6;
        let x = MatrixView::new(&data, 2000, 8).unwrap();
        assert!(HalfRows::new(&data, 8).is_none());
        assert_eq!(herding(x, 50).unwrap(), herding_naive(x, 50).unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn f16_prefilter_equals_the_exact_pass(seed in 0u64..10_000, n in 4usize..400, d in 1usize..40,
                                                grid in prop::sample::select(vec![0.0f32, 0.25, 1.0])) {
            let data = mixture(n, d, 1 + (seed % 7) as usize, 8.0, grid, seed);
            let x = MatrixView::new(&data, n, d).unwrap();
            let k = 1 + (seed as usize % n);
            prop_assert_eq!(herding(x, k).unwrap(), herding_naive(x, k).unwrap());
        }

        /// Herding matches the mean better than the average random subset of the same size.
        #[test]
        fn beats_random_subsets_on_average(seed in 0u64..10_000, n in 40usize..150, d in 1usize..8) {
            let data = mat(n, d, seed);
            let x = MatrixView::new(&data, n, d).unwrap();
            let k = n / 5;
            let sel = herding(x, k).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xabc);
            let trials = 30;
            let mut random_err = 0.0;
            for _ in 0..trials {
                let mut perm: Vec<usize> = (0..n).collect();
                for i in 0..k {
                    let j = rng.random_range(i..n);
                    perm.swap(i, j);
                }
                random_err += moment_error(&x, &perm[..k]) / trials as f64;
            }
            prop_assert!(sel.objective < random_err, "{} >= {}", sel.objective, random_err);
        }
    }
}
