//! Facility location / CRAIG: maximize `f(S) = Σ_{i∈V} max(0, max_{j∈S} s_ij)` (Mirzasoleiman,
//! Bilmes & Leskovec 2020, "Coresets for Data-efficient Training of Machine Learning Models").
//!
//! Similarities:
//! - `craig` (default): `s_ij = D_max − D_ij`, `D` the Euclidean distance, so maximizing `f` minimizes
//!   CRAIG's `Σ_i min_{j∈S} D_ij`. Dense mode takes `D_max` over all pairs; kNN mode over the kNN
//!   distances (the largest distance it stores), so `s ≥ 0` on every kept edge.
//! - `cosine`: `s_ij = x_i·x_j / (‖x_i‖‖x_j‖)` (0 for an all-zero row); the `max(0, ·)` is the usual
//!   phantom element of similarity 0, so negative similarities never count.
//! - `rbf`: `s_ij = exp(−γ D_ij²)` (γ defaults to `1/d`).
//!
//! Modes: dense (`n × n` f32 kernel, refused with [`CoreError::MemoryBudget`] above
//! `max_dense_bytes`), or sparse kNN (`neighbors = K`): only each point's `K` nearest neighbours
//! (itself included) can cover it, so `f(S) = Σ_i max(0, max_{j∈S∩N_K(i)} s_ij)`; memory `O(nK)`.
//! Weights: each point is assigned to its most similar selected element over all of `S` (ties → the
//! earlier pick), and a weight is the size of that cluster; weights sum to `n`.

use crate::error::{CoreError, Result};
use crate::knn::{dot_tile, for_each_sq_dist_block, knn_graph, row_sq_norms, ROW_BLOCK};
use crate::matrix::{check_k, MatrixView};
use crate::selection::Selection;
use crate::submodular::{maximize, DenseFacility, GreedyResult, Kernel, Optimizer, SetFunction};
use rayon::prelude::*;

/// Default dense-kernel budget: 4 GiB.
pub const DEFAULT_MAX_DENSE_BYTES: u64 = 4 << 30;

/// Similarity used by facility location and the kernel-based submodular functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Similarity {
    Craig,
    Cosine,
    Rbf { gamma: f64 },
}

impl Similarity {
    pub const NAMES: [&'static str; 3] = ["craig", "cosine", "rbf"];

    /// Parses a similarity name; `gamma` (rbf only) defaults to `1/d` and must be > 0.
    pub fn parse(name: &str, gamma: Option<f64>, d: usize) -> Result<Self> {
        match name {
            "craig" => Ok(Similarity::Craig),
            "cosine" => Ok(Similarity::Cosine),
            "rbf" => {
                let gamma = gamma.unwrap_or(1.0 / d as f64);
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(CoreError::InvalidArgument(format!(
                        "rbf gamma must be finite and > 0, got {gamma}"
                    )));
                }
                Ok(Similarity::Rbf { gamma })
            }
            other => Err(CoreError::InvalidArgument(format!(
                "unknown similarity {other:?}; expected one of {:?}",
                Similarity::NAMES
            ))),
        }
    }
}

/// Refuses an `n × n` f32 allocation above `budget` bytes, naming the size and the sparse mode.
pub fn check_dense_budget(n: usize, budget: u64) -> Result<()> {
    let needed = (n as u64).saturating_mul(n as u64).saturating_mul(4);
    if needed > budget {
        return Err(CoreError::memory_budget(
            format!("the dense {n} x {n} float32 similarity matrix"),
            needed,
            budget,
            "use the sparse mode with neighbors=K (e.g. neighbors=50), or raise max_dense_bytes",
        ));
    }
    Ok(())
}

/// Dense kernel `s(j, i)` and the similarity scale used for distances (`D_max` for craig, else 1).
pub fn dense_kernel(x: MatrixView<'_>, sim: Similarity, budget: u64) -> Result<(Kernel, f32)> {
    let (n, d) = (x.n(), x.d());
    check_dense_budget(n, budget)?;
    let norms = row_sq_norms(x);
    let mut data = vec![0.0f32; n * n];
    let top = data
        .par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .map(|(b, out)| {
            let r0 = b * ROW_BLOCK;
            let rows = out.len() / n;
            dot_tile(&x.data()[r0 * d..(r0 + rows) * d], rows, x.data(), n, d, out);
            let mut top = 0.0f32;
            for r in 0..rows {
                let i = r0 + r;
                let row = &mut out[r * n..(r + 1) * n];
                let ni = norms[i];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = match sim {
                        Similarity::Cosine => {
                            let den = (ni * norms[j]).sqrt();
                            if den > 0.0 {
                                *v / den
                            } else {
                                0.0
                            }
                        }
                        Similarity::Craig => {
                            let dist = (ni + norms[j] - 2.0 * *v).max(0.0).sqrt();
                            top = top.max(dist);
                            dist
                        }
                        Similarity::Rbf { gamma } => (-(gamma as f32) * (ni + norms[j] - 2.0 * *v).max(0.0)).exp(),
                    };
                }
                row[i] = match sim {
                    Similarity::Cosine => {
                        if ni > 0.0 {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Similarity::Craig => 0.0,
                    Similarity::Rbf { .. } => 1.0,
                };
            }
            top
        })
        .reduce(|| 0.0f32, f32::max);
    if sim == Similarity::Craig {
        data.par_iter_mut().for_each(|v| *v = top - *v);
        Ok((Kernel { n, data }, top))
    } else {
        Ok((Kernel { n, data }, 1.0))
    }
}

/// Facility location on a kNN graph: candidate `j` covers the points that have `j` among their `K`
/// nearest neighbours (reverse adjacency, ordered by point index).
pub struct SparseFacility {
    n: usize,
    offsets: Vec<usize>,
    points: Vec<u32>,
    sims: Vec<f32>,
    cur: Vec<f32>,
}

impl SparseFacility {
    /// Builds the kNN graph (blocked GEMM + fused top-K) and the similarity of each kept edge.
    /// Returns the function and the similarity scale (`D_max` over kNN distances for craig, else 1).
    pub fn build(x: MatrixView<'_>, neighbors: usize, sim: Similarity) -> Result<(Self, f32)> {
        let n = x.n();
        let normalized;
        let (graph, zero_rows) = if sim == Similarity::Cosine {
            // Euclidean neighbours of unit vectors are cosine neighbours: ‖a − b‖² = 2 − 2 cos.
            let (buf, zero) = normalize_rows(x);
            normalized = buf;
            (knn_graph(MatrixView::new(&normalized, n, x.d())?, neighbors)?, zero)
        } else {
            (knn_graph(x, neighbors)?, Vec::new())
        };
        let k = graph.k;
        let top = match sim {
            Similarity::Craig => graph.distances.par_iter().cloned().reduce(|| 0.0f32, f32::max),
            _ => 1.0,
        };
        let edge_sim = |i: usize, j: usize, dist: f32| -> f32 {
            match sim {
                Similarity::Craig => top - dist,
                Similarity::Rbf { gamma } => (-(gamma as f32) * dist * dist).exp(),
                Similarity::Cosine => {
                    if zero_rows[i] || zero_rows[j] {
                        0.0
                    } else {
                        1.0 - 0.5 * dist * dist
                    }
                }
            }
        };
        let mut counts = vec![0usize; n + 1];
        for &j in &graph.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..n {
            counts[j + 1] += counts[j];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut points = vec![0u32; n * k];
        let mut sims = vec![0.0f32; n * k];
        for i in 0..n {
            let (ids, ds) = graph.neighbors(i);
            for (&j, &dist) in ids.iter().zip(ds) {
                let p = fill[j as usize];
                points[p] = i as u32;
                sims[p] = edge_sim(i, j as usize, dist);
                fill[j as usize] += 1;
            }
        }
        Ok((
            Self {
                n,
                offsets,
                points,
                sims,
                cur: vec![0.0; n],
            },
            top,
        ))
    }
}

impl SetFunction for SparseFacility {
    fn ground_size(&self) -> usize {
        self.n
    }
    fn gain(&self, j: usize) -> f64 {
        let (a, b) = (self.offsets[j], self.offsets[j + 1]);
        let mut g = 0.0f64;
        for (&i, &s) in self.points[a..b].iter().zip(&self.sims[a..b]) {
            g += (s - self.cur[i as usize]).max(0.0) as f64;
        }
        g
    }
    fn commit(&mut self, j: usize) {
        let (a, b) = (self.offsets[j], self.offsets[j + 1]);
        for (&i, &s) in self.points[a..b].iter().zip(&self.sims[a..b]) {
            let c = &mut self.cur[i as usize];
            *c = c.max(s);
        }
    }
    fn is_submodular(&self) -> bool {
        true
    }
}

/// Unit-norm copy of `x` and which rows were all zero (left as zeros).
fn normalize_rows(x: MatrixView<'_>) -> (Vec<f32>, Vec<bool>) {
    let d = x.d();
    let norms = row_sq_norms(x);
    let mut out = x.data().to_vec();
    out.par_chunks_mut(d).zip(norms.par_iter()).for_each(|(row, &nn)| {
        if nn > 0.0 {
            let inv = 1.0 / nn.sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    });
    (out, norms.iter().map(|&v| v == 0.0).collect())
}

/// All-pairs facility-location value of `selected` over every row of `x`, streamed (never `n × k`):
/// weights (cluster sizes, ties → earlier pick), the marginal gain of each pick in order, and `f(S)`.
pub struct FullEvaluation {
    pub weights: Vec<f32>,
    pub gains: Vec<f64>,
    pub objective: f64,
}

/// Evaluates `selected` on the whole data set with similarity `sim` (`top` = `D_max` for craig).
pub fn evaluate_full(x: MatrixView<'_>, selected: &[usize], sim: Similarity, top: f32) -> Result<FullEvaluation> {
    let (n, d, k) = (x.n(), x.d(), selected.len());
    let normalized;
    let (xv, zero) = if sim == Similarity::Cosine {
        let (buf, zero) = normalize_rows(x);
        normalized = buf;
        (MatrixView::new(&normalized, n, d)?, zero)
    } else {
        (x, vec![false; n])
    };
    let mut ysel = Vec::with_capacity(k * d);
    for &j in selected {
        ysel.extend_from_slice(xv.row(j));
    }
    let y = MatrixView::new(&ysel, k, d)?;
    // A pick's distance to itself must be exactly 0; the GEMM expansion leaves rounding noise there.
    let mut pick_of = vec![u32::MAX; n];
    for (t, &j) in selected.iter().enumerate() {
        if pick_of[j] == u32::MAX {
            pick_of[j] = t as u32;
        }
    }
    let to_sim = |i: usize, t: usize, d2: f32| -> f32 {
        match sim {
            Similarity::Craig => top - d2.sqrt(),
            Similarity::Rbf { gamma } => (-(gamma as f32) * d2).exp(),
            Similarity::Cosine => {
                if zero[i] || zero[selected[t]] {
                    0.0
                } else {
                    1.0 - 0.5 * d2
                }
            }
        }
    };
    // Per row block: the best squared distance and its pick position for each row, and per-pick gains.
    struct Block {
        best: Vec<(f32, u32)>,
        cur: Vec<f32>,
        gains: Vec<f64>,
    }
    let blocks = for_each_sq_dist_block(
        xv,
        y,
        || Block {
            best: Vec::new(),
            cur: Vec::new(),
            gains: vec![0.0; k],
        },
        |b, r0, rows, c0, cols, tile| {
            if b.best.is_empty() {
                b.best = vec![(f32::INFINITY, u32::MAX); rows];
                b.cur = vec![0.0; rows];
            }
            for c in 0..cols {
                let t = c0 + c;
                let mut g = 0.0f64;
                for r in 0..rows {
                    let d2 = if pick_of[r0 + r] == t as u32 {
                        0.0
                    } else {
                        tile[r * cols + c]
                    };
                    if d2 < b.best[r].0 {
                        b.best[r] = (d2, t as u32);
                    }
                    let s = to_sim(r0 + r, t, d2);
                    if s > b.cur[r] {
                        g += (s - b.cur[r]) as f64;
                        b.cur[r] = s;
                    }
                }
                b.gains[t] += g;
            }
        },
    );
    let mut weights = vec![0.0f32; k];
    let mut gains = vec![0.0f64; k];
    for b in &blocks {
        for &(_, t) in &b.best {
            weights[t as usize] += 1.0;
        }
        for (g, v) in gains.iter_mut().zip(&b.gains) {
            *g += v;
        }
    }
    let objective = gains.iter().sum();
    Ok(FullEvaluation {
        weights,
        gains,
        objective,
    })
}

/// Options of [`facility_location`].
#[derive(Clone, Debug, PartialEq)]
pub struct FacilityOptions {
    pub similarity: Similarity,
    /// `Some(K)`: sparse kNN mode; `None`: dense.
    pub neighbors: Option<usize>,
    pub optimizer: Optimizer,
    pub seed: u64,
    pub max_dense_bytes: u64,
    /// GreeDi shards (1 = plain greedy).
    pub partitions: usize,
    /// GreeDi: seeded random shards instead of contiguous ones.
    pub shuffle_partitions: bool,
}

impl Default for FacilityOptions {
    fn default() -> Self {
        Self {
            similarity: Similarity::Craig,
            neighbors: None,
            optimizer: Optimizer::Lazy,
            seed: 0,
            max_dense_bytes: DEFAULT_MAX_DENSE_BYTES,
            partitions: 1,
            shuffle_partitions: false,
        }
    }
}

/// Facility-location selection of `k` rows (see the module docs); GreeDi when `partitions > 1`.
pub fn facility_location(x: MatrixView<'_>, k: usize, opts: &FacilityOptions) -> Result<Selection> {
    check_k(k, x.n())?;
    if opts.partitions == 0 {
        return Err(CoreError::InvalidArgument("partitions must be >= 1, got 0".into()));
    }
    if opts.partitions > 1 {
        return crate::greedi::greedi_facility(x, k, opts);
    }
    facility_single(x, k, opts)
}

/// One greedy run on all rows (no sharding).
pub(crate) fn facility_single(x: MatrixView<'_>, k: usize, opts: &FacilityOptions) -> Result<Selection> {
    match opts.neighbors {
        None => {
            let (kernel, _) = dense_kernel(x, opts.similarity, opts.max_dense_bytes)?;
            let mut f = DenseFacility::new(&kernel);
            let res = maximize(&mut f, k, opts.optimizer, opts.seed)?;
            let weights = dense_weights(&kernel, &res.order);
            Ok(to_selection(res, weights))
        }
        Some(kn) => {
            let (mut f, top) = SparseFacility::build(x, kn, opts.similarity)?;
            let res = maximize(&mut f, k, opts.optimizer, opts.seed)?;
            drop(f);
            let full = evaluate_full(x, &res.order, opts.similarity, top)?;
            Ok(to_selection(res, full.weights))
        }
    }
}

fn to_selection(res: GreedyResult, weights: Vec<f32>) -> Selection {
    let objective = res.objective();
    Selection {
        indices: res.order,
        weights,
        gains: res.gains,
        objective,
    }
}

/// Cluster sizes from the dense kernel: each point goes to its most similar pick (ties → earlier).
pub(crate) fn dense_weights(kernel: &Kernel, order: &[usize]) -> Vec<f32> {
    let n = kernel.n;
    let chunk = 4096;
    let assign: Vec<u32> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .flat_map_iter(|c| {
            let lo = c * chunk;
            let hi = (lo + chunk).min(n);
            let mut best = vec![f32::NEG_INFINITY; hi - lo];
            let mut arg = vec![0u32; hi - lo];
            for (t, &j) in order.iter().enumerate() {
                let row = &kernel.row(j)[lo..hi];
                for (p, &s) in row.iter().enumerate() {
                    if s > best[p] {
                        best[p] = s;
                        arg[p] = t as u32;
                    }
                }
            }
            arg.into_iter()
        })
        .collect();
    let mut weights = vec![0.0f32; order.len()];
    for t in assign {
        weights[t as usize] += 1.0;
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn brute_objective(x: &[f32], n: usize, d: usize, sel: &[usize], sim: Similarity) -> f64 {
        let dist = |i: usize, j: usize| -> f64 {
            (0..d)
                .map(|t| (x[i * d + t] as f64 - x[j * d + t] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let dmax = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| dist(i, j))
            .fold(0.0, f64::max);
        let s = |i: usize, j: usize| -> f64 {
            match sim {
                Similarity::Craig => dmax - dist(i, j),
                Similarity::Rbf { gamma } => (-gamma * dist(i, j).powi(2)).exp(),
                Similarity::Cosine => {
                    let dot: f64 = (0..d).map(|t| x[i * d + t] as f64 * x[j * d + t] as f64).sum();
                    let ni: f64 = (0..d).map(|t| (x[i * d + t] as f64).powi(2)).sum::<f64>().sqrt();
                    let nj: f64 = (0..d).map(|t| (x[j * d + t] as f64).powi(2)).sum::<f64>().sqrt();
                    dot / (ni * nj)
                }
            }
        };
        (0..n).map(|i| sel.iter().map(|&j| s(i, j)).fold(0.0, f64::max)).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn lazy_equals_naive_dense_and_sparse(n in 2usize..80, d in 1usize..6, k in 1usize..20, seed in 0u64..500, kn in 1usize..10, simi in 0usize..3) {
            let k = k.min(n);
            let x = data(n, d, seed);
            let sim = [Similarity::Craig, Similarity::Cosine, Similarity::Rbf { gamma: 0.7 }][simi];
            let xv = MatrixView::new(&x, n, d).unwrap();
            for neighbors in [None, Some(kn.min(n))] {
                let base = FacilityOptions { similarity: sim, neighbors, ..Default::default() };
                let lazy = facility_location(xv, k, &FacilityOptions { optimizer: Optimizer::Lazy, ..base.clone() }).unwrap();
                let naive = facility_location(xv, k, &FacilityOptions { optimizer: Optimizer::Naive, ..base.clone() }).unwrap();
                prop_assert_eq!(&lazy.indices, &naive.indices);
                prop_assert_eq!(&lazy.gains, &naive.gains);
                prop_assert_eq!(lazy.weights.iter().sum::<f32>(), n as f32);
                // exact greedy on a monotone submodular function: gains never increase
                for w in naive.gains.windows(2) {
                    prop_assert!(w[1] <= w[0]);
                }
            }
        }

        #[test]
        fn dense_objective_matches_brute_force(n in 2usize..40, d in 2usize..5, k in 1usize..10, seed in 0u64..500, simi in 0usize..3) {
            let k = k.min(n);
            let x = data(n, d, seed);
            let sim = [Similarity::Craig, Similarity::Cosine, Similarity::Rbf { gamma: 0.7 }][simi];
            let sel = facility_location(MatrixView::new(&x, n, d).unwrap(), k, &FacilityOptions { similarity: sim, ..Default::default() }).unwrap();
            let want = brute_objective(&x, n, d, &sel.indices, sim);
            prop_assert!((sel.objective - want).abs() <= 1e-4 * want.abs().max(1.0), "{} vs {}", sel.objective, want);
            let full = evaluate_full(MatrixView::new(&x, n, d).unwrap(), &sel.indices, sim, dense_kernel(MatrixView::new(&x, n, d).unwrap(), sim, u64::MAX).unwrap().1).unwrap();
            prop_assert!((full.objective - want).abs() <= 1e-4 * want.abs().max(1.0));
            // continuous data (d >= 2): no exact similarity ties, so both assignments agree
            prop_assert_eq!(&full.weights, &sel.weights);
        }
    }

    #[test]
    fn stochastic_is_close_to_lazy() {
        let (n, d, k) = (2000, 8, 50);
        let x = data(n, d, 7);
        let xv = MatrixView::new(&x, n, d).unwrap();
        let lazy = facility_location(xv, k, &FacilityOptions::default()).unwrap();
        let sto = facility_location(
            xv,
            k,
            &FacilityOptions {
                optimizer: Optimizer::Stochastic { epsilon: 0.01 },
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            sto.objective >= 0.97 * lazy.objective,
            "{} vs {}",
            sto.objective,
            lazy.objective
        );
        assert_eq!(sto.indices.len(), k);
        let again = facility_location(
            xv,
            k,
            &FacilityOptions {
                optimizer: Optimizer::Stochastic { epsilon: 0.01 },
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(sto, again);
    }

    #[test]
    fn objective_grows_with_k() {
        let (n, d) = (300, 4);
        let x = data(n, d, 11);
        let xv = MatrixView::new(&x, n, d).unwrap();
        let a = facility_location(xv, 10, &FacilityOptions::default()).unwrap();
        let b = facility_location(xv, 20, &FacilityOptions::default()).unwrap();
        assert_eq!(&b.indices[..10], &a.indices[..]);
        assert!(b.objective >= a.objective);
    }

    #[test]
    fn dense_refuses_over_budget_with_bytes() {
        let x = data(100, 2, 1);
        let opts = FacilityOptions {
            max_dense_bytes: 1000,
            ..Default::default()
        };
        let err = facility_location(MatrixView::new(&x, 100, 2).unwrap(), 5, &opts).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::MemoryBudget {
                    needed_bytes: 40000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("40000") && err.to_string().contains("neighbors"));
    }

    #[test]
    fn identical_on_one_and_two_threads() {
        let (n, d) = (3000, 6);
        let x = data(n, d, 5);
        let run = |threads: usize, neighbors: Option<usize>| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                facility_location(
                    MatrixView::new(&x, n, d).unwrap(),
                    40,
                    &FacilityOptions {
                        neighbors,
                        ..Default::default()
                    },
                )
                .unwrap()
            })
        };
        assert_eq!(run(1, None), run(2, None));
        assert_eq!(run(1, Some(10)), run(2, Some(10)));
    }
}
