//! k-means: k-means++ seeding (Arthur & Vassilvitskii, "k-means++: The Advantages of Careful
//! Seeding", SODA 2007) followed by Lloyd iterations (Lloyd 1982) on the inertia
//! `sum_i min_j ||x_i - c_j||^2`, then each centroid is replaced by a real row so the coreset is a
//! subset of the data.
//!
//! Seeding: the first seed is uniform, each next one is drawn with probability proportional to
//! `D(x)^2`, the squared distance to the nearest seed so far (ChaCha8 RNG, seeded). Lloyd stops when
//! the relative inertia change `(prev - cur) / prev <= tol` or after `max_iter` updates; an empty
//! cluster keeps its previous centroid. Centroids are summed in f64, cluster by cluster in row order,
//! so the result does not depend on the number of threads.

use crate::distance::{
    argmin_pair, multiversion, nearest_row, reduce_row_chunks, sq_euclidean, Isa, CHUNK_ROWS, PARALLEL_MIN_ELEMENTS,
};
use crate::error::{CoreError, Result};
use crate::matrix::{check_k, MatrixView};
use crate::selection::Selection;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Options of [`kmeans`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KMeansOptions {
    pub seed: u64,
    /// Maximum number of Lloyd updates (0 = k-means++ seeding only).
    pub max_iter: usize,
    /// Stop when the relative decrease of the inertia falls to `tol` or below.
    pub tol: f64,
}

impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions {
            seed: 0,
            max_iter: 100,
            tol: 1e-4,
        }
    }
}

#[inline(always)]
fn min_update_impl(rows: &[f32], d: usize, center: &[f32], min_dist: &mut [f32]) {
    for (row, m) in rows.chunks_exact(d).zip(min_dist.iter_mut()) {
        *m = m.min(sq_euclidean(row, center));
    }
}

multiversion! {
    fn min_update(rows: &[f32], d: usize, center: &[f32], min_dist: &mut [f32]) -> ()
        => min_update_impl
}

/// Nearest centroid of every row of a chunk (ties: smaller centroid); returns the chunk's inertia.
#[inline(always)]
fn assign_impl(rows: &[f32], d: usize, centroids: &[f32], labels: &mut [u32]) -> f64 {
    let mut inertia = 0.0f64;
    for (row, label) in rows.chunks_exact(d).zip(labels.iter_mut()) {
        let mut best = (f32::INFINITY, 0usize);
        for (j, c) in centroids.chunks_exact(d).enumerate() {
            let q = sq_euclidean(row, c);
            if q < best.0 {
                best = (q, j);
            }
        }
        *label = best.1 as u32;
        inertia += best.0 as f64;
    }
    inertia
}

multiversion! {
    fn assign_chunk(rows: &[f32], d: usize, centroids: &[f32], labels: &mut [u32]) -> f64 => assign_impl
}

/// The seeded random stream shared by k-means++ seeding and k-center's random start: the first row
/// `random_range(0..n)` of `ChaCha8Rng::seed_from_u64(seed)`, then `count` uniforms in `[0, 1)`, in
/// the order [`kmeans`] draws them (one per seed after the first). Exposed so that the torch twin of
/// the selectors (`erasus.selectors._torch`) reproduces the Rust picks.
pub fn seeding_draws(seed: u64, n: usize, count: usize) -> Result<(usize, Vec<f64>)> {
    if n == 0 {
        return Err(CoreError::InvalidArgument(
            "seeding_draws needs n >= 1 rows, got 0".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first = rng.random_range(0..n);
    Ok((first, (0..count).map(|_| rng.random::<f64>()).collect()))
}

/// k-means++ seeds (row indices).
fn seed_rows(x: &MatrixView<'_>, k: usize, seed: u64, isa: Isa) -> Vec<usize> {
    let (n, d) = (x.n(), x.d());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seeds = Vec::with_capacity(k);
    let mut chosen = vec![false; n];
    let mut min_dist = vec![f32::INFINITY; n];
    let mut next = rng.random_range(0..n);
    loop {
        seeds.push(next);
        chosen[next] = true;
        if seeds.len() == k {
            return seeds;
        }
        let center = x.row(next);
        let update = |(rows, m): (&[f32], &mut [f32])| min_update(isa, rows, d, center, m);
        if x.data().len() >= PARALLEL_MIN_ELEMENTS {
            x.data()
                .par_chunks(CHUNK_ROWS * d)
                .zip(min_dist.par_chunks_mut(CHUNK_ROWS))
                .for_each(update);
        } else {
            x.data()
                .chunks(CHUNK_ROWS * d)
                .zip(min_dist.chunks_mut(CHUNK_ROWS))
                .for_each(update);
        }
        let chunk_sums: Vec<f64> = min_dist
            .par_chunks(CHUNK_ROWS)
            .map(|c| c.iter().map(|&v| v as f64).sum::<f64>())
            .collect();
        let total: f64 = chunk_sums.iter().sum();
        next = if total > 0.0 {
            sample_proportional(&min_dist, &chunk_sums, rng.random::<f64>() * total)
        } else {
            // Every row coincides with a seed: the remaining seeds are the first unchosen rows.
            chosen.iter().position(|c| !c).unwrap_or(0)
        };
    }
}

/// First row whose cumulative weight exceeds `u` (the weights are `min_dist`, summed per chunk in
/// `chunk_sums`). Rounding can leave `u` past the last cumulative sum: then the last positive row.
fn sample_proportional(min_dist: &[f32], chunk_sums: &[f64], u: f64) -> usize {
    let mut acc = 0.0f64;
    for (c, &s) in chunk_sums.iter().enumerate() {
        if acc + s > u {
            let start = c * CHUNK_ROWS;
            for (off, &w) in min_dist[start..(start + CHUNK_ROWS).min(min_dist.len())]
                .iter()
                .enumerate()
            {
                acc += w as f64;
                if acc > u && w > 0.0 {
                    return start + off;
                }
            }
        } else {
            acc += s;
        }
    }
    min_dist.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Assigns every row to its nearest centroid; returns the inertia (f64, fixed summation order).
fn assign_all(x: &MatrixView<'_>, centroids: &[f32], labels: &mut [u32], isa: Isa) -> f64 {
    let d = x.d();
    let partial: Vec<f64> = x
        .data()
        .par_chunks(CHUNK_ROWS * d)
        .zip(labels.par_chunks_mut(CHUNK_ROWS))
        .map(|(rows, l)| assign_chunk(isa, rows, d, centroids, l))
        .collect();
    partial.iter().sum()
}

/// Moves each centroid to the mean of its rows (f64 sums in row order); returns cluster sizes.
fn update_centroids(x: &MatrixView<'_>, labels: &[u32], centroids: &mut [f32], k: usize) -> Vec<usize> {
    let d = x.d();
    let mut counts = vec![0usize; k];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    let mut offsets = vec![0usize; k + 1];
    for j in 0..k {
        offsets[j + 1] = offsets[j] + counts[j];
    }
    let mut fill = offsets.clone();
    let mut order = vec![0usize; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize]] = i;
        fill[l as usize] += 1;
    }
    centroids.par_chunks_mut(d).enumerate().for_each(|(j, c)| {
        let members = &order[offsets[j]..offsets[j + 1]];
        if members.is_empty() {
            return;
        }
        let mut acc = vec![0.0f64; d];
        for &i in members {
            acc.iter_mut().zip(x.row(i)).for_each(|(a, v)| *a += *v as f64);
        }
        let len = members.len() as f64;
        c.iter_mut().zip(&acc).for_each(|(c, a)| *c = (a / len) as f32);
    });
    counts
}

/// k-means coreset: for each final centroid (in centroid order) the nearest row not already taken
/// (ties: smaller row). `weights[j]` is the size of cluster `j` (they sum to n; an empty cluster has
/// weight 0), `objective` the final inertia `sum_i ||x_i - c(x_i)||^2` with respect to the centroids.
/// No gains are reported.
pub fn kmeans(x: MatrixView<'_>, k: usize, opts: &KMeansOptions) -> Result<Selection> {
    check_k(k, x.n())?;
    if k > u32::MAX as usize {
        return Err(CoreError::InvalidArgument(format!(
            "k-means supports at most {} clusters, got k = {k}",
            u32::MAX
        )));
    }
    if !(opts.tol.is_finite() && opts.tol >= 0.0) {
        return Err(CoreError::InvalidArgument(format!(
            "tol must be a finite number >= 0, got {}",
            opts.tol
        )));
    }
    let (n, d) = (x.n(), x.d());
    let isa = Isa::detect();
    let seeds = seed_rows(&x, k, opts.seed, isa);
    let mut centroids: Vec<f32> = seeds.iter().flat_map(|&i| x.row(i).iter().copied()).collect();
    let mut labels = vec![0u32; n];
    let mut inertia = assign_all(&x, &centroids, &mut labels, isa);
    for _ in 0..opts.max_iter {
        update_centroids(&x, &labels, &mut centroids, k);
        let previous = inertia;
        inertia = assign_all(&x, &centroids, &mut labels, isa);
        if previous - inertia <= opts.tol * previous {
            break;
        }
    }
    let mut sizes = vec![0f32; k];
    labels.iter().for_each(|&l| sizes[l as usize] += 1.0);
    let mut taken = vec![false; n];
    let mut indices = Vec::with_capacity(k);
    for c in centroids.chunks_exact(d) {
        let nearest = |start: usize, rows: &[f32], t: &[bool]| nearest_row(isa, rows, d, start, t, c);
        let (_, row) = reduce_row_chunks(x.data(), d, &taken, (f32::INFINITY, usize::MAX), nearest, argmin_pair);
        // k <= n, so an untaken row always exists.
        taken[row] = true;
        indices.push(row);
    }
    Ok(Selection {
        indices,
        weights: sizes,
        gains: Vec::new(),
        objective: inertia,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn blobs(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..4 * d).map(|_| rng.random_range(-20.0f32..20.0)).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % 4;
                (0..d)
                    .map(|j| centers[c * d + j] + rng.random_range(-1.0f32..1.0))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn inertia_f64(x: &MatrixView<'_>, centroids: &[Vec<f64>]) -> f64 {
        (0..x.n())
            .map(|i| {
                centroids
                    .iter()
                    .map(|c| {
                        x.row(i)
                            .iter()
                            .zip(c)
                            .map(|(a, b)| (*a as f64 - b).powi(2))
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .sum()
    }

    #[test]
    fn seeding_draws_reproduce_the_seeds() {
        let (n, d, k) = (300, 3, 6);
        let data = blobs(n, d, 9);
        let x = MatrixView::new(&data, n, d).unwrap();
        let seeds = seed_rows(&x, k, 42, Isa::detect());
        let (first, u) = seeding_draws(42, n, k - 1).unwrap();
        assert_eq!(first, seeds[0]);
        let mut min_dist = vec![f32::INFINITY; n];
        for (t, &s) in seeds[..k - 1].iter().enumerate() {
            for (i, m) in min_dist.iter_mut().enumerate() {
                *m = m.min(sq_euclidean(x.row(i), x.row(s)));
            }
            let chunk_sums: Vec<f64> = min_dist
                .chunks(CHUNK_ROWS)
                .map(|c| c.iter().map(|&v| v as f64).sum())
                .collect();
            let total: f64 = chunk_sums.iter().sum();
            assert_eq!(sample_proportional(&min_dist, &chunk_sums, u[t] * total), seeds[t + 1]);
        }
        assert!(seeding_draws(1, 0, 3).is_err());
    }

    #[test]
    fn finds_separated_blobs() {
        let (n, d) = (400, 3);
        let data = blobs(n, d, 1);
        let x = MatrixView::new(&data, n, d).unwrap();
        let sel = kmeans(x, 4, &KMeansOptions::default()).unwrap();
        let mut clusters: Vec<usize> = sel.indices.iter().map(|i| i % 4).collect();
        clusters.sort();
        assert_eq!(clusters, vec![0, 1, 2, 3]);
        assert_eq!(sel.weights, vec![100.0; 4]);
        // Final inertia = within-cluster scatter around the exact blob means.
        let means: Vec<Vec<f64>> = (0..4)
            .map(|c| {
                let rows: Vec<usize> = (0..n).filter(|i| i % 4 == c).collect();
                (0..d)
                    .map(|j| rows.iter().map(|&i| x.row(i)[j] as f64).sum::<f64>() / rows.len() as f64)
                    .collect()
            })
            .collect();
        let expected = inertia_f64(&x, &means);
        assert!(
            (sel.objective - expected).abs() <= 1e-4 * expected,
            "{} vs {expected}",
            sel.objective
        );
    }

    #[test]
    fn same_result_on_one_and_two_threads() {
        let data = blobs(60_000, 5, 3);
        let x = MatrixView::new(&data, 60_000, 5).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                kmeans(
                    x,
                    9,
                    &KMeansOptions {
                        seed: 5,
                        ..Default::default()
                    },
                )
                .unwrap()
            })
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn rejects_bad_options_and_handles_duplicates() {
        let data = [0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0];
        let x = MatrixView::new(&data, 3, 2).unwrap();
        let bad = KMeansOptions {
            tol: -1.0,
            ..Default::default()
        };
        assert!(kmeans(x, 2, &bad).is_err());
        assert!(kmeans(x, 4, &KMeansOptions::default()).is_err());
        let sel = kmeans(x, 3, &KMeansOptions::default()).unwrap();
        let mut idx = sel.indices.clone();
        idx.sort();
        assert_eq!(idx, vec![0, 1, 2]);
        assert_eq!(sel.weights.iter().sum::<f32>(), 3.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn weights_sum_to_n_and_indices_are_distinct(
            n in 1usize..200, d in 1usize..6, seed in 0u64..1000, max_iter in 0usize..20,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(-3i32..3) as f32).collect();
            let x = MatrixView::new(&data, n, d).unwrap();
            let k = 1 + (seed as usize) % n;
            let sel = kmeans(x, k, &KMeansOptions { seed, max_iter, tol: 1e-4 }).unwrap();
            prop_assert_eq!(sel.weights.iter().map(|w| *w as f64).sum::<f64>(), n as f64);
            let mut idx = sel.indices.clone();
            idx.sort();
            idx.dedup();
            prop_assert_eq!(idx.len(), k);
            prop_assert!(sel.objective >= 0.0);
        }
    }
}
