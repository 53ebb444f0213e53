//! GreeDi: two-round distributed greedy (Mirzasoleiman, Karbasi, Sarkar & Krause 2013,
//! "Distributed Submodular Maximization: Identifying Representative Elements in Massive Data").
//!
//! Round 1 splits the rows into `m` shards (contiguous, or a seeded random partition) and runs the
//! greedy on each shard independently (in parallel); round 2 runs the greedy again on the union of
//! the shard picks. The answer is the better, on the full objective, of the merged solution and the
//! best shard solution of size `k` (ties go to the merged one). This is the building block for
//! multi-machine selection: each shard only needs its own rows.

use crate::error::{CoreError, Result};
use crate::facility::{evaluate_full, facility_single, FacilityOptions, Similarity};
use crate::knn::max_pairwise_distance;
use crate::matrix::{check_k, MatrixView};
use crate::selection::Selection;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Row ids of each of `m` shards of `0..n`: contiguous ranges, or a seeded random partition.
pub fn partition(n: usize, m: usize, shuffle: bool, seed: u64) -> Result<Vec<Vec<usize>>> {
    if m == 0 || m > n {
        return Err(CoreError::InvalidArgument(format!(
            "partitions must be in 1..={n} (n), got {m}"
        )));
    }
    let mut ids: Vec<usize> = (0..n).collect();
    if shuffle {
        ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    Ok((0..m).map(|p| ids[p * n / m..(p + 1) * n / m].to_vec()).collect())
}

/// Generic GreeDi over a solver and a full-objective evaluator.
///
/// `solve(rows, k)` returns up to `k` elements of `rows` (global ids) in pick order; `evaluate(S)`
/// scores a candidate on the full data. Returns the chosen solution and its score.
pub fn greedi<S, E>(shards: &[Vec<usize>], k: usize, solve: S, evaluate: E) -> Result<(Vec<usize>, f64)>
where
    S: Fn(&[usize], usize) -> Result<Vec<usize>> + Sync,
    E: Fn(&[usize]) -> Result<f64> + Sync,
{
    let picks: Vec<Vec<usize>> = shards
        .par_iter()
        .map(|rows| solve(rows, k.min(rows.len())))
        .collect::<Result<Vec<_>>>()?;
    let union: Vec<usize> = picks.iter().flatten().copied().collect();
    let merged = solve(&union, k.min(union.len()))?;
    if merged.len() != k {
        return Err(CoreError::InvalidArgument(format!(
            "GreeDi merged only {} elements for k = {k}",
            merged.len()
        )));
    }
    let mut best = (evaluate(&merged)?, merged);
    for p in picks.into_iter().filter(|p| p.len() == k) {
        let v = evaluate(&p)?;
        if v > best.0 {
            best = (v, p);
        }
    }
    Ok((best.1, best.0))
}

/// Copies `rows` of `x` into a contiguous matrix.
fn gather(x: MatrixView<'_>, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * x.d());
    for &r in rows {
        out.extend_from_slice(x.row(r));
    }
    out
}

/// GreeDi for facility location: each shard and the union run [`crate::facility::facility_location`]
/// (dense or kNN, as configured) on their own rows; candidates are scored with the all-pairs
/// facility-location objective on every row (streamed, never `n × k`; for `craig` the global `D_max`
/// comes from an `O(n²d)` blocked pass). The returned gains and weights are those of the full objective.
pub fn greedi_facility(x: MatrixView<'_>, k: usize, opts: &FacilityOptions) -> Result<Selection> {
    let n = x.n();
    check_k(k, n)?;
    let shards = partition(n, opts.partitions, opts.shuffle_partitions, opts.seed)?;
    let local = FacilityOptions {
        partitions: 1,
        ..opts.clone()
    };
    let solve = |rows: &[usize], kk: usize| -> Result<Vec<usize>> {
        let sub = gather(x, rows);
        let view = MatrixView::new(&sub, rows.len(), x.d())?;
        let mut o = local.clone();
        if let Some(kn) = o.neighbors {
            o.neighbors = Some(kn.min(rows.len()));
        }
        let sel = facility_single(view, kk, &o)?;
        Ok(sel.indices.into_iter().map(|j| rows[j]).collect())
    };
    let top = if opts.similarity == Similarity::Craig {
        max_pairwise_distance(x)
    } else {
        1.0
    };
    let evaluate = |s: &[usize]| -> Result<f64> { Ok(evaluate_full(x, s, opts.similarity, top)?.objective) };
    let (chosen, _) = greedi(&shards, k, solve, evaluate)?;
    let full = evaluate_full(x, &chosen, opts.similarity, top)?;
    Ok(Selection {
        indices: chosen,
        weights: full.weights,
        gains: full.gains,
        objective: full.objective,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submodular::Optimizer;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn partitions_cover_every_row_once() {
        for shuffle in [false, true] {
            let p = partition(103, 4, shuffle, 9).unwrap();
            let mut all: Vec<usize> = p.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..103).collect::<Vec<_>>());
        }
        assert!(partition(3, 4, false, 0).is_err());
    }

    #[test]
    fn greedi_is_close_to_centralized_and_never_worse_than_its_shards() {
        let (n, d, k) = (1200, 5, 30);
        let x = data(n, d, 3);
        let xv = MatrixView::new(&x, n, d).unwrap();
        let central = crate::facility::facility_location(xv, k, &FacilityOptions::default()).unwrap();
        for shuffle in [false, true] {
            let opts = FacilityOptions {
                partitions: 4,
                shuffle_partitions: shuffle,
                ..Default::default()
            };
            let g = greedi_facility(xv, k, &opts).unwrap();
            assert_eq!(g.indices.len(), k);
            assert_eq!(g.weights.iter().sum::<f32>(), n as f32);
            assert!((g.gains.iter().sum::<f64>() - g.objective).abs() < 1e-6 * g.objective);
            // GreeDi's guarantee is a constant factor; on this data it is within a few percent
            assert!(
                g.objective >= 0.95 * central.objective,
                "{} vs {}",
                g.objective,
                central.objective
            );
            // it must be at least as good as every shard solution on the full objective
            let top = max_pairwise_distance(xv);
            for rows in partition(n, 4, shuffle, 0).unwrap() {
                let sub = gather(xv, &rows);
                let s = facility_single(
                    MatrixView::new(&sub, rows.len(), d).unwrap(),
                    k,
                    &FacilityOptions::default(),
                )
                .unwrap();
                let ids: Vec<usize> = s.indices.iter().map(|&j| rows[j]).collect();
                let v = evaluate_full(xv, &ids, Similarity::Craig, top).unwrap().objective;
                assert!(g.objective >= v - 1e-9 * v.abs());
            }
        }
    }

    #[test]
    fn greedi_with_knn_shards_and_threads_is_deterministic() {
        let (n, d, k) = (900, 4, 20);
        let x = data(n, d, 8);
        let opts = FacilityOptions {
            partitions: 3,
            neighbors: Some(15),
            optimizer: Optimizer::Lazy,
            ..Default::default()
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| greedi_facility(MatrixView::new(&x, n, d).unwrap(), k, &opts).unwrap())
        };
        assert_eq!(run(1), run(2));
    }
}
