//! Greedy k-center (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
//! Approach", ICLR 2018; the greedy is Gonzalez 1985): repeatedly add
//! `u = argmax_{i not in S} min_{j in S} d(x_i, x_j)`, a 2-approximation of the minimax facility
//! location `min_S max_i min_{j in S} d(x_i, x_j)`.
//!
//! Semantics (as DeepCore / Sener & Savarese): `initial` points are already selected; they are not
//! counted in `k` and not returned. Without `initial`, one point drawn with a ChaCha8 RNG seeded by
//! `seed` starts the greedy and *is* the first of the `k` returned picks.
//!
//! Memory beyond the caller's matrix: 8 bytes per sample (nearest-center distance f32 + nearest-center
//! position u32), plus 4 bytes per sample for the row norms under the cosine metric, plus O(k).
//!
//! Pruning (exact, Elkan-style): every point keeps its nearest center `a_i` and `d(x_i, a_i)`. For a
//! metric, `d(x_i, c) >= d(c, a_i) - d(x_i, a_i)`, so a new center `c` can only move `x_i` when
//! `d(c, a_i) < 2 d(x_i, a_i)`. The center-to-center distances are computed once per step (O(k d)),
//! and the test is widened by a bound on the f32 rounding error, so a skipped point is one whose
//! *computed* distance could not have won either: the output is bit-identical to [`kcenter_naive`].
//! Cosine distance `1 - cos` is not a metric, but `sqrt(1 - cos)` is (half the chord length between
//! the unit vectors), which gives the test `s(c, a_i) < 4 s(x_i, a_i)` on cosine distances.

use crate::distance::{
    argmax_pair, cosine_distance, multiversion, sq_euclidean, Isa, CHUNK_ROWS, PARALLEL_MIN_ELEMENTS,
};
use crate::error::{CoreError, Result};
use crate::matrix::{check_k, MatrixView};
use crate::selection::Selection;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Distance used by the greedy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metric {
    /// `||a - b||_2` (the greedy runs on squared distances; reported values are square-rooted).
    #[default]
    Euclidean,
    /// `1 - <a, b> / (|a| |b|)`; a zero row is at distance 1 from everything.
    Cosine,
}

impl Metric {
    /// Parses `"euclidean"` or `"cosine"`.
    pub fn parse(name: &str) -> Result<Metric> {
        match name {
            "euclidean" => Ok(Metric::Euclidean),
            "cosine" => Ok(Metric::Cosine),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown metric {other:?}; expected \"euclidean\" or \"cosine\""
            ))),
        }
    }
}

/// Options of [`kcenter`] / [`kcenter_naive`].
#[derive(Clone, Debug, Default)]
pub struct KCenterOptions<'a> {
    pub metric: Metric,
    /// Already-selected rows (not counted in `k`, not returned); `None` = one seeded random start.
    pub initial: Option<&'a [usize]>,
    /// Seed of the random start (unused when `initial` is given).
    pub seed: u64,
}

/// Validated start: the deduplicated initial rows, or the seeded random first pick.
struct Start {
    initial: Vec<usize>,
    random_first: Option<usize>,
}

fn start(x: &MatrixView<'_>, k: usize, opts: &KCenterOptions<'_>) -> Result<Start> {
    let n = x.n();
    check_k(k, n)?;
    // Centre positions are stored as u32 (4 bytes per sample instead of 8).
    if k.saturating_add(opts.initial.map_or(0, |r| r.len())) > u32::MAX as usize {
        return Err(CoreError::InvalidArgument(format!(
            "k-center supports at most {} centres (k plus initial), got k = {k}",
            u32::MAX
        )));
    }
    match opts.initial {
        None => {
            let first = ChaCha8Rng::seed_from_u64(opts.seed).random_range(0..n);
            Ok(Start {
                initial: Vec::new(),
                random_first: Some(first),
            })
        }
        Some([]) => Err(CoreError::InvalidArgument(
            "initial is empty; pass None to start from a seeded random point, or at least one row index".into(),
        )),
        Some(rows) => {
            let mut seen = vec![false; n];
            let mut initial = Vec::with_capacity(rows.len());
            for &i in rows {
                if i >= n {
                    return Err(CoreError::InvalidArgument(format!(
                        "initial index {i} is out of range for n = {n} samples; expected 0 <= index < {n}"
                    )));
                }
                if !seen[i] {
                    seen[i] = true;
                    initial.push(i);
                }
            }
            if k > n - initial.len() {
                return Err(CoreError::InvalidArgument(format!(
                    "k = {k} new centers requested but only {} of n = {n} samples are not in initial; \
                     expected k <= {}",
                    n - initial.len(),
                    n - initial.len()
                )));
            }
            Ok(Start {
                initial,
                random_first: None,
            })
        }
    }
}

/// Row norms for the cosine metric (O(n) floats), computed with the kernel's summation order.
fn row_norms(x: &MatrixView<'_>) -> Vec<f32> {
    x.data()
        .par_chunks(x.d())
        .map(|row| crate::distance::dot(row, row).sqrt())
        .collect()
}

#[inline(always)]
fn distance(metric: Metric, a: &[f32], b: &[f32], norm_a: f32, norm_b: f32) -> f32 {
    match metric {
        Metric::Euclidean => sq_euclidean(a, b),
        Metric::Cosine => cosine_distance(a, b, norm_a, norm_b),
    }
}

/// Converts the internal distance (squared Euclidean, or cosine distance) to the reported one.
fn reported(metric: Metric, q: f32) -> f64 {
    match metric {
        Metric::Euclidean => (q as f64).sqrt(),
        Metric::Cosine => q as f64,
    }
}

/// Skip test `d(c, a) >= bound(d(x, a))`, widened by a rounding-error bound so it is safe on the
/// computed f32 values (see the module docs and [`Pruning::new`]).
#[derive(Clone, Copy)]
struct Pruning {
    enabled: bool,
    /// Euclidean: multiplier on the squared distance (4 (1 + 4 delta)); cosine: 4.
    factor: f32,
    /// Absolute slack (underflow for Euclidean, rounding of `1 - cos` for cosine).
    slack: f32,
}

impl Pruning {
    /// `delta` bounds the relative error of a computed squared distance (fl of d differences, d
    /// squares, a 16-lane sum: well under (d + 8) eps); for cosine `eps_abs` bounds the absolute error
    /// of `1 - <a,b>/(|a||b|)` (dot, two norms, a division: under (2d + 16) eps). Pruning is off when
    /// values are so large that squares could overflow, or rows so small that their norms underflow;
    /// the output does not change, only the speed.
    fn new(x: &MatrixView<'_>, metric: Metric, norms: &[f32]) -> Pruning {
        let d = x.d() as f32;
        let eps = f32::EPSILON;
        let (enabled, factor, slack) = match metric {
            Metric::Euclidean => {
                let max_abs = x.data().par_iter().map(|v| v.abs()).reduce(|| 0.0f32, f32::max);
                let delta = (d + 8.0) * eps;
                (max_abs <= 1e15, 4.0 * (1.0 + 4.0 * delta), 16.0 * d * f32::MIN_POSITIVE)
            }
            Metric::Cosine => {
                let ok = norms.par_iter().all(|&r| r == 0.0 || (1e-15..=1e15).contains(&r));
                (ok, 4.0, 6.0 * (2.0 * d + 16.0) * eps)
            }
        };
        Pruning { enabled, factor, slack }
    }

    /// True when a center at (computed) distance `d_ca` from `x`'s nearest center cannot bring `x`
    /// (at computed distance `d_xa` from it) strictly closer.
    #[inline(always)]
    fn skips(&self, d_ca: f32, d_xa: f32) -> bool {
        d_ca >= self.factor * d_xa + self.slack
    }
}

/// Everything one greedy step reads, shared by the chunks.
struct Step<'a> {
    data: &'a [f32],
    d: usize,
    metric: Metric,
    norms: &'a [f32],
    center: usize,
    /// Position of `center` in the center list (what `assign` stores).
    position: u32,
    /// `d(center, centers[j])` for every earlier center `j`; empty on the first step.
    center_dist: &'a [f32],
    pruning: Pruning,
}

/// Marks a selected row in `min_dist`: never updated, never picked, always skipped.
const SELECTED: f32 = f32::NEG_INFINITY;

#[inline(always)]
fn step_chunk_impl(step: &Step<'_>, start: usize, min_dist: &mut [f32], assign: &mut [u32]) -> (f32, usize) {
    let d = step.d;
    let c_row = &step.data[step.center * d..(step.center + 1) * d];
    let c_norm = step.norms.get(step.center).copied().unwrap_or(0.0);
    let prune = step.pruning.enabled && !step.center_dist.is_empty();
    let mut best = (SELECTED, usize::MAX);
    for (off, (m, a)) in min_dist.iter_mut().zip(assign.iter_mut()).enumerate() {
        if *m == SELECTED {
            continue;
        }
        let i = start + off;
        if !(prune && step.pruning.skips(step.center_dist[*a as usize], *m)) {
            let x_norm = step.norms.get(i).copied().unwrap_or(0.0);
            let q = distance(step.metric, &step.data[i * d..(i + 1) * d], c_row, x_norm, c_norm);
            if q < *m {
                *m = q;
                *a = step.position;
            }
        }
        if *m > best.0 || best.1 == usize::MAX {
            best = (*m, i);
        }
    }
    best
}

multiversion! {
    fn step_chunk(step: &Step<'_>, start: usize, min_dist: &mut [f32], assign: &mut [u32]) -> (f32, usize)
        => step_chunk_impl
}

/// Greedy state of the pruned, parallel k-center.
struct Greedy<'a> {
    x: MatrixView<'a>,
    metric: Metric,
    norms: Vec<f32>,
    pruning: Pruning,
    isa: Isa,
    min_dist: Vec<f32>,
    assign: Vec<u32>,
    centers: Vec<usize>,
    center_dist: Vec<f32>,
}

impl<'a> Greedy<'a> {
    fn new(x: MatrixView<'a>, metric: Metric, capacity: usize) -> Greedy<'a> {
        let norms = if metric == Metric::Cosine {
            row_norms(&x)
        } else {
            Vec::new()
        };
        let pruning = Pruning::new(&x, metric, &norms);
        Greedy {
            x,
            metric,
            norms,
            pruning,
            isa: Isa::detect(),
            min_dist: vec![f32::INFINITY; x.n()],
            assign: vec![0; x.n()],
            centers: Vec::with_capacity(capacity),
            center_dist: Vec::with_capacity(capacity),
        }
    }

    /// Adds `c` as a center, updates every point's nearest center, and returns the farthest
    /// unselected point `(internal distance, row)` — `(SELECTED, usize::MAX)` if none is left.
    fn add(&mut self, c: usize) -> (f32, usize) {
        let d = self.x.d();
        let data = self.x.data();
        let (metric, norms) = (self.metric, &self.norms);
        let c_norm = norms.get(c).copied().unwrap_or(0.0);
        let c_row = self.x.row(c);
        self.center_dist.clear();
        if self.pruning.enabled {
            self.centers
                .par_iter()
                .map(|&j| {
                    distance(
                        metric,
                        c_row,
                        &data[j * d..(j + 1) * d],
                        c_norm,
                        norms.get(j).copied().unwrap_or(0.0),
                    )
                })
                .collect_into_vec(&mut self.center_dist);
        }
        let position = self.centers.len() as u32;
        self.centers.push(c);
        self.min_dist[c] = SELECTED;
        let step = Step {
            data,
            d,
            metric,
            norms,
            center: c,
            position,
            center_dist: &self.center_dist,
            pruning: self.pruning,
        };
        let isa = self.isa;
        let work = |(ci, (m, a)): (usize, (&mut [f32], &mut [u32]))| step_chunk(isa, &step, ci * CHUNK_ROWS, m, a);
        if data.len() >= PARALLEL_MIN_ELEMENTS {
            self.min_dist
                .par_chunks_mut(CHUNK_ROWS)
                .zip(self.assign.par_chunks_mut(CHUNK_ROWS))
                .enumerate()
                .map(work)
                .reduce(|| (SELECTED, usize::MAX), argmax_pair)
        } else {
            self.min_dist
                .chunks_mut(CHUNK_ROWS)
                .zip(self.assign.chunks_mut(CHUNK_ROWS))
                .enumerate()
                .map(work)
                .fold((SELECTED, usize::MAX), argmax_pair)
        }
    }
}

/// Runs the greedy from a validated start; `add` adds a center and returns the farthest point.
fn run_greedy(k: usize, begin: Start, metric: Metric, mut add: impl FnMut(usize) -> (f32, usize)) -> Selection {
    let mut indices = Vec::with_capacity(k);
    let mut gains = Vec::with_capacity(k);
    let mut far = (SELECTED, usize::MAX);
    for &c in &begin.initial {
        far = add(c);
    }
    if let Some(first) = begin.random_first {
        indices.push(first);
        gains.push(f64::INFINITY);
        far = add(first);
    }
    while indices.len() < k {
        // `start` checked that k unselected rows exist, so `far` names one.
        gains.push(reported(metric, far.0));
        indices.push(far.1);
        far = add(far.1);
    }
    let objective = if far.1 == usize::MAX {
        0.0
    } else {
        reported(metric, far.0)
    };
    Selection {
        weights: vec![1.0; indices.len()],
        indices,
        gains,
        objective,
    }
}

/// Greedy k-center with exact triangle-inequality pruning, parallel over rows.
///
/// Returns the `k` new centers in pick order; `gains[t]` is the covering radius just before pick `t`
/// (infinite for a random first pick), non-increasing; `objective` is the final covering radius
/// `max_i min_{c in S} d(x_i, c)` over the rows not selected (0 when none is left). The result is
/// identical to [`kcenter_naive`] and independent of the number of threads (ties go to the
/// smallest row index).
pub fn kcenter(x: MatrixView<'_>, k: usize, opts: &KCenterOptions<'_>) -> Result<Selection> {
    let begin = start(&x, k, opts)?;
    let mut greedy = Greedy::new(x, opts.metric, k + begin.initial.len());
    Ok(run_greedy(k, begin, opts.metric, |c| greedy.add(c)))
}

/// The textbook greedy: one serial pass over every row per step, no pruning. The reference that
/// [`kcenter`] must reproduce exactly.
pub fn kcenter_naive(x: MatrixView<'_>, k: usize, opts: &KCenterOptions<'_>) -> Result<Selection> {
    let begin = start(&x, k, opts)?;
    let metric = opts.metric;
    let norms = if metric == Metric::Cosine {
        row_norms(&x)
    } else {
        Vec::new()
    };
    let norm = |i: usize| norms.get(i).copied().unwrap_or(0.0);
    let mut min_dist = vec![f32::INFINITY; x.n()];
    let mut selected = vec![false; x.n()];
    let add = |c: usize| {
        selected[c] = true;
        let mut far = (SELECTED, usize::MAX);
        for i in 0..x.n() {
            if selected[i] {
                continue;
            }
            min_dist[i] = min_dist[i].min(distance(metric, x.row(i), x.row(c), norm(i), norm(c)));
            if far.1 == usize::MAX || min_dist[i] > far.0 {
                far = (min_dist[i], i);
            }
        }
        far
    };
    Ok(run_greedy(k, begin, metric, add))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn mat(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Tight clusters: the case pruning is made for.
    fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..8 * d).map(|_| rng.random_range(-10.0f32..10.0)).collect();
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let c = rng.random_range(0..8usize);
            for j in 0..d {
                out.push(centers[c * d + j] + rng.random_range(-0.1f32..0.1));
            }
        }
        out
    }

    fn radius(x: &MatrixView<'_>, centers: &[usize]) -> f64 {
        (0..x.n())
            .map(|i| {
                centers
                    .iter()
                    .map(|&c| {
                        x.row(i)
                            .iter()
                            .zip(x.row(c))
                            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max)
    }

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![Vec::new()];
        }
        (0..n)
            .flat_map(|first| {
                subsets(n - first - 1, k - 1).into_iter().map(move |rest| {
                    std::iter::once(first)
                        .chain(rest.into_iter().map(|r| r + first + 1))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    }

    #[test]
    fn two_approximation_against_brute_force() {
        for seed in 0..20 {
            let (n, d, k) = (9, 2, 3);
            let data = mat(n, d, seed);
            let x = MatrixView::new(&data, n, d).unwrap();
            let sel = kcenter(
                x,
                k,
                &KCenterOptions {
                    seed,
                    ..Default::default()
                },
            )
            .unwrap();
            let optimal = subsets(n, k)
                .iter()
                .map(|s| radius(&x, s))
                .fold(f64::INFINITY, f64::min);
            let got = radius(&x, &sel.indices);
            assert!(got <= 2.0 * optimal + 1e-6, "seed {seed}: {got} > 2 * {optimal}");
            assert!((sel.objective - got).abs() <= 1e-5 * (1.0 + got));
        }
    }

    #[test]
    fn initial_points_are_not_returned_or_counted() {
        let data = mat(40, 3, 1);
        let x = MatrixView::new(&data, 40, 3).unwrap();
        let init = [5usize, 7, 5];
        let sel = kcenter(
            x,
            4,
            &KCenterOptions {
                initial: Some(&init),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(sel.indices.len(), 4);
        assert!(sel.indices.iter().all(|i| *i != 5 && *i != 7));
        let mut all = sel.indices.clone();
        all.extend([5, 7]);
        assert!((sel.objective - radius(&x, &all)).abs() < 1e-5);
        assert!(sel.gains[0].is_finite());
    }

    #[test]
    fn rejects_bad_arguments() {
        let data = mat(5, 2, 0);
        let x = MatrixView::new(&data, 5, 2).unwrap();
        let o = |init: Option<&'static [usize]>| KCenterOptions {
            initial: init,
            ..Default::default()
        };
        assert!(kcenter(x, 0, &o(None)).is_err());
        assert!(kcenter(x, 6, &o(None)).is_err());
        assert!(kcenter(x, 1, &o(Some(&[5]))).is_err());
        assert!(kcenter(x, 1, &o(Some(&[]))).is_err());
        assert!(kcenter(x, 4, &o(Some(&[1, 2]))).is_err());
        assert!(Metric::parse("manhattan").is_err());
    }

    #[test]
    fn duplicates_and_full_selection() {
        let data = [1.0f32, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0];
        let x = MatrixView::new(&data, 4, 2).unwrap();
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let opts = KCenterOptions {
                metric,
                initial: Some(&[0]),
                seed: 0,
            };
            let sel = kcenter(x, 3, &opts).unwrap();
            assert_eq!(sel, kcenter_naive(x, 3, &opts).unwrap());
            let mut got = sel.indices.clone();
            got.sort();
            assert_eq!(got, vec![1, 2, 3]);
            assert_eq!(sel.objective, 0.0);
        }
    }

    #[test]
    fn pruning_skips_work_on_clusters_and_stays_exact() {
        let (n, d) = (3000, 8);
        let data = clustered(n, d, 3);
        let x = MatrixView::new(&data, n, d).unwrap();
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let opts = KCenterOptions {
                metric,
                seed: 11,
                initial: None,
            };
            assert_eq!(kcenter(x, 60, &opts).unwrap(), kcenter_naive(x, 60, &opts).unwrap());
        }
        assert!(Pruning::new(&x, Metric::Euclidean, &[]).enabled);
    }

    #[test]
    fn same_result_on_one_and_two_threads() {
        // Large enough for the parallel path (n d >= PARALLEL_MIN_ELEMENTS).
        let (n, d) = (60_000, 5);
        let data = clustered(n, d, 4);
        let x = MatrixView::new(&data, n, d).unwrap();
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let opts = KCenterOptions {
                metric,
                ..Default::default()
            };
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| kcenter(x, 40, &opts).unwrap())
            };
            let one = run(1);
            assert_eq!(one, run(2));
            assert_eq!(one, kcenter_naive(x, 40, &opts).unwrap());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn pruned_equals_naive(
            n in 2usize..120,
            d in 1usize..20,
            seed in 0u64..1000,
            cosine in any::<bool>(),
            grid in any::<bool>(),
            n_init in 0usize..3,
        ) {
            let mut data = mat(n, d, seed);
            if grid {
                // Coarse values make exact distance ties, which must break the same way.
                data.iter_mut().for_each(|v| *v = (*v * 2.0).round());
            }
            let x = MatrixView::new(&data, n, d).unwrap();
            let init: Vec<usize> = (0..n_init.min(n - 1)).map(|j| (j * 7 + seed as usize) % n).collect();
            let mut unique = init.clone();
            unique.sort();
            unique.dedup();
            let k = 1 + (seed as usize) % (n - unique.len());
            let opts = KCenterOptions {
                metric: if cosine { Metric::Cosine } else { Metric::Euclidean },
                initial: if init.is_empty() { None } else { Some(&init) },
                seed,
            };
            let fast = kcenter(x, k, &opts).unwrap();
            let slow = kcenter_naive(x, k, &opts).unwrap();
            prop_assert_eq!(&fast, &slow);
            let mut idx = fast.indices.clone();
            idx.sort();
            idx.dedup();
            prop_assert_eq!(idx.len(), k);
            prop_assert!(fast.indices.iter().all(|i| !unique.contains(i)));
            prop_assert!(fast.gains.windows(2).all(|w| w[1] <= w[0]));
            prop_assert!(fast.objective <= *fast.gains.last().unwrap());
        }
    }
}
