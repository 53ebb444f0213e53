//! Greedy k-center (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
//! Approach", ICLR 2018; the greedy is Gonzalez 1985): repeatedly add
//! `u = argmax_{i not in S} min_{j in S} d(x_i, x_j)`, a 2-approximation of the minimax facility
//! location `min_S max_i min_{j in S} d(x_i, x_j)`.
//!
//! Semantics (as DeepCore / Sener & Savarese): `initial` points are already selected; they are not
//! counted in `k` and not returned. Without `initial`, one point drawn with a ChaCha8 RNG seeded by
//! `seed` starts the greedy and *is* the first of the `k` returned picks.
//!
//! Two phases, both exact (the output is bit-identical to [`kcenter_naive`], ties included: every
//! point's nearest-center distance is the same computed f32 value, and the arg-max prefers the
//! smaller row, as the textbook loop does):
//!
//! 1. **Flat** (while pruning skips less than half the points, e.g. all along on isotropic data): one
//!    fused pass per step over X in row order (distance, min, arg-max), parallel over fixed row
//!    chunks. Each point keeps its nearest center `a_i` and `d(x_i, a_i)`; for a metric
//!    `d(x_i, c) >= d(c, a_i) - d(x_i, a_i)`, so a new center `c` can only move `x_i` when
//!    `d(c, a_i) < 2 d(x_i, a_i)` (Elkan-style), tested on the center-to-center distances (`O(k d)`
//!    per step) widened by a bound on the f32 rounding error. On AVX-512 (Euclidean) the pass is
//!    branch-free, sixteen rows at a time: a 16-row distance kernel with a transposed fold (the bits of
//!    [`sq_euclidean`]), then min, center update and a per-lane arg-max as vector blends; the skip
//!    test only counts (on a sample) when to switch phases, since skipping single rows cost more in
//!    mispredicted branches than the 64 floats it saved. From `SHADOW_AFTER` (32) flat steps on it reads
//!    an **f16 shadow** of X instead ([`crate::half_rows`], half the bytes): `||x - c|| >= ||h - c|| -
//!    e_x` rules out every row the new center cannot take, and only the rest (the rows it does take,
//!    and near-ties) are scored exactly in f32, so the state stays bit-identical.
//! 2. **Grouped** (from the step where that test skips at least half the points): the points are
//!    kept in groups by nearest center, each group's rows and distances stored together, with an
//!    upper bound `r_j` on its radius. A new center `c` skips a whole group without touching its
//!    points when `d(c, a_j) >= 2 r_j`; most groups are skipped without even computing `d(c, a_j)`,
//!    from `d(c, a_j) >= d(c, p_j) - d(a_j, p_j)` with `p_j` the nearest of the first `sqrt(k)` centers
//!    (the pivots, whose distances to `c` are computed once per step), and all the groups of a pivot
//!    at once when `d(c, p)` clears the largest `d(a_j, p) + 2 r_j` among them, so a step costs
//!    `O(sqrt k)` plus the groups near `c`, not `O(k)`. The distances to the members of the groups
//!    that remain are computed in one batched pass (sixteen gathered rows at a time, prefetched). The
//!    farthest point of each group sits in a max-tournament over the groups, so the arg-max costs
//!    `O(log k)` per changed group instead of a pass over all points. The tests run in f64 on proven
//!    bounds of the computed distances (`Bounds`), so a skipped group is one in which no computed
//!    distance could have won.
//!
//! This follows the pruning idea of Elkan ("Using the Triangle Inequality to Accelerate k-Means",
//! ICML 2003) applied to Gonzalez' greedy; it is erasus' own code, there is no reference
//! implementation of this variant to follow.
//!
//! Memory beyond the caller's matrix: 8 bytes per sample (nearest-center distance f32 + center id
//! u32 in the flat phase, row id u32 in the grouped one; both for the one step that switches, and a
//! group's vectors may hold up to twice their length), plus 4 bytes per sample for the row norms
//! under the cosine metric, plus O(k): O(n). The one exception is the f16 shadow of a long flat phase
//! (`2 d + 4` bytes per sample, half of X, freed at the switch to groups): it halves the bytes of the
//! bandwidth-bound pass (isotropic 50k x 64, k = 5k: 0.53 s -> 0.38 s on 2 cores) and is built only
//! on AVX-512 CPUs when at least `SHADOW_AFTER` (32) flat steps remain.
//! Cosine distance `1 - cos` is not a metric, but `sqrt(1 - cos)` is (half the chord length between
//! the unit vectors; a zero row, at distance 1 from everything, keeps the triangle inequality), which
//! gives the flat test `s(c, a_i) < 4 s(x_i, a_i)` on cosine distances and the grouped tests on
//! `sqrt` of them.

use crate::distance::{
    argmax_pair, cosine_distance, multiversion, sq_euclidean, sq_euclidean_x4, Isa, CHUNK_ROWS, PARALLEL_MIN_ELEMENTS,
};
use crate::error::{CoreError, Result};
use crate::half_rows::HalfRows;
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

/// Everything one flat greedy step reads, shared by the chunks.
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
    /// The f16 shadow of X and the center padded to its stride, once the flat phase has run long
    /// enough for it to pay (`SHADOW_AFTER` (32)).
    half: Option<(&'a HalfRows, &'a [f32])>,
}

/// Flat steps after which the f16 shadow of X is built (it costs about one step and half of X's
/// memory; the clustered cases switch to groups before this).
const SHADOW_AFTER: usize = 32;

/// Marks a selected row in `min_dist`: never updated, never picked, always skipped.
const SELECTED: f32 = f32::NEG_INFINITY;

/// Farthest unselected point of a chunk and the number of its points the per-point test skipped.
#[inline(always)]
fn step_chunk_impl(step: &Step<'_>, start: usize, min_dist: &mut [f32], assign: &mut [u32]) -> ((f32, usize), usize) {
    let d = step.d;
    let c_row = &step.data[step.center * d..(step.center + 1) * d];
    let c_norm = step.norms.get(step.center).copied().unwrap_or(0.0);
    let prune = step.pruning.enabled && !step.center_dist.is_empty();
    let mut best = (SELECTED, usize::MAX);
    let mut skipped = 0usize;
    let row = |i: usize| &step.data[i * d..(i + 1) * d];
    let mut offer = |off: usize, m: &mut f32, a: &mut u32, q: Option<f32>| {
        if *m == SELECTED {
            return;
        }
        let i = start + off;
        if prune && step.pruning.skips(step.center_dist[*a as usize], *m) {
            skipped += 1;
        } else {
            let q = q.unwrap_or_else(|| {
                let x_norm = step.norms.get(i).copied().unwrap_or(0.0);
                distance(step.metric, row(i), c_row, x_norm, c_norm)
            });
            if q < *m {
                *m = q;
                *a = step.position;
            }
        }
        if *m > best.0 || best.1 == usize::MAX {
            best = (*m, i);
        }
    };
    let n = min_dist.len();
    let mut off = 0;
    // Euclidean rows four at a time (a shared fold); a skipped or selected row wastes its slot,
    // which is rare in this phase (it ends once half the points are skipped).
    if step.metric == Metric::Euclidean {
        while off + 4 <= n {
            let i = start + off;
            let q = sq_euclidean_x4([row(i), row(i + 1), row(i + 2), row(i + 3)], c_row);
            for r in 0..4 {
                offer(off + r, &mut min_dist[off + r], &mut assign[off + r], Some(q[r]));
            }
            off += 4;
        }
    }
    for o in off..n {
        offer(o, &mut min_dist[o], &mut assign[o], None);
    }
    (best, skipped)
}

multiversion! {
    fn step_chunk(step: &Step<'_>, start: usize, min_dist: &mut [f32], assign: &mut [u32]) -> ((f32, usize), usize)
        => step_chunk_impl
}

/// The flat step on AVX-512F for the Euclidean metric, 16 rows at a time and branch-free: one
/// 16-row distance kernel ([`crate::distance::simd::sq_euclidean_x16_avx512`], the bits of
/// [`sq_euclidean`]), then the min, the center update and a per-lane arg-max as vector blends.
/// Every row's distance is computed (a per-row skip is an unpredictable branch, which cost more
/// than the 64 floats it saved); the skip test still runs, on every fourth block, only to count
/// how many points it would skip (the switch to the grouped phase). Same state and same farthest
/// point as [`step_chunk_impl`]: a skipped row is one whose distance cannot win, so updating it with
/// `q < m` changes nothing. Returns the farthest point and `(skipped, tested)` of the sample.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn step_chunk_euclidean_avx512(
    step: &Step<'_>,
    start: usize,
    min_dist: &mut [f32],
    assign: &mut [u32],
) -> ((f32, usize), (usize, usize)) {
    use std::arch::x86_64::*;
    let d = step.d;
    let n = min_dist.len();
    let blocks = n / 16;
    let c_row = &step.data[step.center * d..(step.center + 1) * d];
    let rows = &step.data[start * d..(start + n) * d];
    let prune = step.pruning.enabled && !step.center_dist.is_empty();
    let (mut skipped, mut tested) = (0usize, 0usize);
    let mut best = (SELECTED, usize::MAX);
    // SAFETY: every pointer below stays inside `rows`, `min_dist`, `assign` (16-row blocks of the
    // chunk) or `center_dist` (gather indices are positions of earlier centers, `< center_dist.len()`,
    // which the caller keeps below 2^31); the CPU has AVX-512F (target feature).
    unsafe {
        let pos = _mm512_set1_epi32(step.position as i32);
        let factor = _mm512_set1_ps(step.pruning.factor);
        let slack = _mm512_set1_ps(step.pruning.slack);
        let selected = _mm512_set1_ps(SELECTED);
        let mut best_v = selected;
        let mut best_i = _mm512_set1_epi32(-1);
        let mut idx = _mm512_add_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(start as i32),
        );
        let sixteen = _mm512_set1_epi32(16);
        let (base, cp) = (rows.as_ptr(), c_row.as_ptr());
        let (pm, pa) = (min_dist.as_mut_ptr(), assign.as_mut_ptr());
        let one_plus = _mm512_set1_ps(1.0 + crate::half_rows::slack(d));
        let tiny = _mm512_set1_ps(1e-15);
        for b in 0..blocks {
            let off = b * 16;
            // distances first, then the state (fewer vectors live across the 16-row kernel)
            let shadow = step.half.map(|(half, padded)| {
                let stride = half.stride();
                let sh = half.rows().as_ptr().add((start + off) * stride);
                crate::half_rows::simd::sq_dist_half_x16(sh, padded.as_ptr(), stride)
            });
            let exact = if shadow.is_none() {
                let block = base.add(off * d);
                crate::distance::simd::sq_euclidean_x16_avx512(|r| block.add(r * d), cp, d)
            } else {
                _mm512_setzero_ps()
            };
            let mut m = _mm512_loadu_ps(pm.add(off));
            let mut a = _mm512_loadu_si512(pa.add(off).cast());
            // the skip test on the state before this step (it only decides when to switch phases)
            if prune && b % 4 == 0 {
                let cd = _mm512_i32gather_ps::<4>(a, step.center_dist.as_ptr());
                let live = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(m, selected);
                let skip = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(cd, _mm512_add_ps(_mm512_mul_ps(factor, m), slack)) & live;
                skipped += skip.count_ones() as usize;
                tested += live.count_ones() as usize;
            }
            let closer = if let (Some(qh), Some((half, _))) = (shadow, step.half) {
                // Shadow pass: ||x - c|| >= ||h - c|| - e_x, so a row whose shadow distance clears
                // (sqrt(m) + e_x)(1 + slack) cannot get closer; only the others (the few rows the
                // new center actually takes, and near-ties) are scored exactly, with the f32 kernel.
                let e = _mm512_loadu_ps(half.err().as_ptr().add(start + off));
                let thr = _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_sqrt_ps(m), e), one_plus), tiny);
                let live = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(m, selected);
                let maybe = live & !_mm512_cmp_ps_mask::<_CMP_GE_OQ>(qh, _mm512_mul_ps(thr, thr));
                let mut closer: __mmask16 = 0;
                if maybe != 0 {
                    let (mut ms, mut qs) = ([0.0f32; 16], [0.0f32; 16]);
                    _mm512_storeu_ps(ms.as_mut_ptr(), m);
                    for r in 0..16 {
                        if maybe >> r & 1 == 1 {
                            let i = off + r;
                            qs[r] = sq_euclidean(&rows[i * d..(i + 1) * d], c_row);
                            if qs[r] < ms[r] {
                                closer |= 1 << r;
                            }
                        }
                    }
                    m = _mm512_mask_blend_ps(closer, m, _mm512_loadu_ps(qs.as_ptr()));
                }
                closer
            } else {
                let closer = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(exact, m);
                m = _mm512_mask_blend_ps(closer, m, exact);
                closer
            };
            _mm512_storeu_ps(pm.add(off), m);
            a = _mm512_mask_blend_epi32(closer, a, pos);
            _mm512_storeu_si512(pa.add(off).cast(), a);
            // strict >: the earlier row of a lane keeps a tie; a selected row (-inf) never wins
            let far = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, best_v);
            best_v = _mm512_mask_blend_ps(far, best_v, m);
            best_i = _mm512_mask_blend_epi32(far, best_i, idx);
            idx = _mm512_add_epi32(idx, sixteen);
        }
        let (mut vals, mut ids) = ([0.0f32; 16], [0u32; 16]);
        _mm512_storeu_ps(vals.as_mut_ptr(), best_v);
        _mm512_storeu_si512(ids.as_mut_ptr().cast(), best_i);
        for (v, i) in vals.into_iter().zip(ids) {
            if i != u32::MAX {
                best = argmax_pair(best, (v, i as usize));
            }
        }
    }
    // the last n % 16 rows, one at a time (the same bits, the same order)
    let tail = blocks * 16;
    if tail < n {
        let (far, _) = step_chunk_impl(step, start + tail, &mut min_dist[tail..], &mut assign[tail..]);
        best = argmax_pair(best, far);
    }
    (best, (skipped, tested))
}

/// Error model of a computed internal distance `q` against the exact one `Q`:
/// `(1 - rel) Q - abs <= q <= (1 + rel) Q + abs`, and `D = sqrt(Q)` satisfies the triangle inequality
/// (Euclidean distance; for cosine, `sqrt(1 - cos)`, half the chord, with a zero row at 1 from
/// everything, which keeps the inequality). The group tests run on these bounds in f64, so a group is
/// skipped only when no computed distance of its members could have won (exactness, see module docs).
#[derive(Clone, Copy)]
struct Bounds {
    rel: f64,
    abs: f64,
}

impl Bounds {
    fn new(metric: Metric, d: usize) -> Bounds {
        let (d, eps) = (d as f64, f32::EPSILON as f64);
        match metric {
            // The same bounds as [`Pruning::new`]: relative (d + 8) eps, underflow 16 d MIN_POSITIVE.
            Metric::Euclidean => Bounds {
                rel: (d + 8.0) * eps,
                abs: 16.0 * d * f32::MIN_POSITIVE as f64,
            },
            Metric::Cosine => Bounds {
                rel: 0.0,
                abs: 6.0 * (2.0 * d + 16.0) * eps,
            },
        }
    }

    /// An upper bound on `D` given the computed `q`.
    #[inline]
    fn upper(&self, q: f32) -> f64 {
        ((q as f64 + self.abs) / (1.0 - self.rel)).sqrt()
    }

    /// A lower bound on `D` given the computed `q`.
    #[inline]
    fn lower(&self, q: f32) -> f64 {
        ((q as f64 - self.abs).max(0.0) / (1.0 + self.rel)).sqrt()
    }
}

/// True when `lo` (a lower bound on `D(c, a)`) proves `D(c, x) >= D(x, a)` for every `x` with
/// `D(x, a) <= radius`: `lo >= 2 radius`, with room for the f64 rounding of the bounds themselves.
#[inline]
fn far_enough(lo: f64, radius: f64) -> bool {
    lo >= 2.0 * radius * (1.0 + 1e-12) + 1e-300
}

/// One group: the unselected points whose nearest center is this group's center, stored together
/// (row ids and their nearest-center distances), and its farthest point.
#[derive(Default)]
struct Group {
    rows: Vec<u32>,
    dist: Vec<f32>,
}

impl Group {
    /// Farthest member `(distance, row)`, ties to the smaller row; `(SELECTED, MAX)` when empty.
    fn farthest(&self) -> (f32, usize) {
        self.rows
            .iter()
            .zip(&self.dist)
            .fold((SELECTED, usize::MAX), |best, (&i, &m)| {
                argmax_pair(best, (m, i as usize))
            })
    }
}

/// Bitwise equality of two tournament nodes (distances compared by their bits).
#[inline]
fn same(a: (f32, usize, usize), b: (f32, usize, usize)) -> bool {
    a.0.to_bits() == b.0.to_bits() && a.1 == b.1 && a.2 == b.2
}

/// Max-tournament over the groups' farthest points: the root is the global farthest point
/// (larger distance, then smaller row, exactly the naive arg-max), an update costs `O(log k)`.
struct Tournament {
    size: usize,
    /// `(distance, row, group)`, leaves at `size..2 size`.
    nodes: Vec<(f32, usize, usize)>,
}

impl Tournament {
    fn new(capacity: usize) -> Tournament {
        let size = capacity.max(1).next_power_of_two();
        Tournament {
            size,
            nodes: vec![(SELECTED, usize::MAX, usize::MAX); 2 * size],
        }
    }

    fn set(&mut self, group: usize, far: (f32, usize)) {
        let mut p = self.size + group;
        let leaf = (far.0, far.1, group);
        if same(self.nodes[p], leaf) {
            return;
        }
        self.nodes[p] = leaf;
        while p > 1 {
            p /= 2;
            let (a, b) = (self.nodes[2 * p], self.nodes[2 * p + 1]);
            let winner = if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) { b } else { a };
            // an unchanged node leaves every node above it unchanged
            if same(self.nodes[p], winner) {
                return;
            }
            self.nodes[p] = winner;
        }
    }

    fn root(&self) -> (f32, usize, usize) {
        self.nodes[1]
    }
}

/// Flat state: every point's nearest-center distance and center, one fused pass per step.
struct Flat {
    min_dist: Vec<f32>,
    assign: Vec<u32>,
    center_dist: Vec<f32>,
}

/// Grouped state (see module docs): the groups, per-group bounds for the skip tests, the tournament.
struct Grouped {
    groups: Vec<Group>,
    /// Upper bound on the radius `max_x D(x, a_j)` of group `j` (`-1` when it is empty).
    radius: Vec<f64>,
    /// Pivot of group `j`'s center and an upper bound on `D(a_j, pivot)`.
    pivot: Vec<u32>,
    pivot_gap: Vec<f64>,
    /// The groups of each pivot, and an upper bound on `reach(j)` over them (see [`reach`]): when
    /// `D(c, p) >= reach` for pivot `p`, none of its groups can lose a point to `c`, and the step
    /// skips them all with one comparison instead of one per group.
    by_pivot: Vec<Vec<u32>>,
    pivot_reach: Vec<f64>,
    tree: Tournament,
    /// Scratch of one step (kept to avoid allocating every step): groups to test on `D(c, a_j)`,
    /// their centers' rows and distances, the groups to scan, their rows and distances to `c`.
    candidates: Vec<u32>,
    candidate_rows: Vec<u32>,
    candidate_q: Vec<f32>,
    scan: Vec<u32>,
    rows: Vec<u32>,
    q: Vec<f32>,
}

/// A lower bound on `D(c, p)` at or above which group `j` (pivot `p`, center `a_j`) keeps all its
/// points: `D(c, a_j) >= D(c, p) - D(a_j, p) >= 2 r_j` ([`far_enough`] with its margins), widened by
/// a relative `1e-12` so that `lo >= reach` implies the per-group test in f64 arithmetic as well.
#[inline]
fn reach(gap: f64, radius: f64) -> f64 {
    (gap + (2.0 * radius * (1.0 + 1e-12) + 1e-300)) * (1.0 + 1e-12)
}

/// Greedy state of the exact, pruned k-center.
struct Greedy<'a> {
    x: MatrixView<'a>,
    metric: Metric,
    norms: Vec<f32>,
    pruning: Pruning,
    bounds: Bounds,
    isa: Isa,
    centers: Vec<usize>,
    /// The first `pivots` centers are the pivots of the grouped phase.
    pivots: usize,
    flat: Option<Flat>,
    grouped: Option<Grouped>,
    /// Scratch for one step: the pivots' rows, their distances to the new center and lower bounds.
    pivot_rows: Vec<u32>,
    pivot_lower: Vec<f64>,
    pivot_q: Vec<f32>,
    /// Centers the run will add (k plus initial rows).
    capacity: usize,
    /// The f16 shadow of the flat phase (built once, after `SHADOW_AFTER` (32) steps) and the
    /// current center padded to its stride.
    shadow: Option<HalfRows>,
    shadow_tried: bool,
    padded: Vec<f32>,
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
            bounds: Bounds::new(metric, x.d()),
            isa: Isa::detect(),
            centers: Vec::with_capacity(capacity),
            pivots: ((capacity as f64).sqrt().ceil() as usize).clamp(1, 256),
            flat: Some(Flat {
                min_dist: vec![f32::INFINITY; x.n()],
                assign: vec![0; x.n()],
                center_dist: Vec::with_capacity(capacity),
            }),
            grouped: None,
            pivot_rows: Vec::new(),
            pivot_lower: Vec::new(),
            pivot_q: Vec::new(),
            capacity,
            shadow: None,
            shadow_tried: false,
            padded: Vec::new(),
        }
    }

    #[inline]
    fn dist(&self, i: usize, j: usize) -> f32 {
        let norm = |r: usize| self.norms.get(r).copied().unwrap_or(0.0);
        distance(self.metric, self.x.row(i), self.x.row(j), norm(i), norm(j))
    }

    /// Adds `c` as a center, updates every point's nearest center, and returns the farthest
    /// unselected point `(internal distance, row)` — `(SELECTED, usize::MAX)` if none is left.
    fn add(&mut self, c: usize) -> (f32, usize) {
        if self.grouped.is_some() {
            return self.add_grouped(c);
        }
        let (far, skipped, unselected) = self.add_flat(c);
        // Switch once the per-point test skips most points: from then on whole groups are skipped
        // without touching their points, and the farthest point comes from the tournament.
        if self.pruning.enabled && 2 * skipped >= unselected && unselected > 0 {
            self.switch_to_groups();
        }
        far
    }

    fn add_flat(&mut self, c: usize) -> ((f32, usize), usize, usize) {
        let d = self.x.d();
        let data = self.x.data();
        #[cfg(target_arch = "x86_64")]
        let vector = self.isa == Isa::Avx512
            && self.metric == Metric::Euclidean
            && self.x.n() < i32::MAX as usize
            && self.centers.len() < i32::MAX as usize;
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        // A long flat phase (no pruning, e.g. isotropic data) reads all of X every step: from
        // SHADOW_AFTER steps on, read the f16 shadow instead and score exactly only the rows it
        // cannot rule out (half the bytes; same state bit for bit).
        if vector
            && !self.shadow_tried
            && self.centers.len() >= SHADOW_AFTER
            && self.capacity.saturating_sub(self.centers.len()) >= SHADOW_AFTER
        {
            self.shadow_tried = true;
            self.shadow = HalfRows::new(data, d);
        }
        if let Some(h) = &self.shadow {
            self.padded = h.pad(self.x.row(c));
        }
        let half = self.shadow.as_ref().map(|h| (h, &self.padded[..]));
        let (metric, norms) = (self.metric, &self.norms);
        let c_norm = norms.get(c).copied().unwrap_or(0.0);
        let c_row = self.x.row(c);
        let Some(flat) = self.flat.as_mut() else {
            return ((SELECTED, usize::MAX), 0, 0);
        };
        flat.center_dist.clear();
        // The vector kernel computes every distance anyway and only counts what the skip test would
        // skip (to decide when to switch phases): from 256 centers on it counts every 8th step.
        if self.pruning.enabled && (!vector || self.centers.len() < 256 || self.centers.len().is_multiple_of(8)) {
            let center_dist = |&j: &usize| {
                distance(
                    metric,
                    c_row,
                    &data[j * d..(j + 1) * d],
                    c_norm,
                    norms.get(j).copied().unwrap_or(0.0),
                )
            };
            if self.centers.len() * d >= PARALLEL_MIN_ELEMENTS {
                self.centers
                    .par_iter()
                    .map(center_dist)
                    .collect_into_vec(&mut flat.center_dist);
            } else {
                flat.center_dist.extend(self.centers.iter().map(center_dist));
            }
        }
        let position = self.centers.len() as u32;
        self.centers.push(c);
        flat.min_dist[c] = SELECTED;
        let step = Step {
            data,
            d,
            metric,
            norms,
            center: c,
            position,
            center_dist: &flat.center_dist,
            pruning: self.pruning,
            half,
        };
        let isa = self.isa;
        let unselected = self.x.n() - self.centers.len();
        // `(farthest, (skipped, tested))`: the vector kernel tests a sample of the rows, the scalar
        // one every unselected row.
        let work = |(ci, (m, a)): (usize, (&mut [f32], &mut [u32]))| {
            #[cfg(target_arch = "x86_64")]
            if vector {
                // SAFETY: `vector` is set only when the CPU has AVX-512F.
                return unsafe { step_chunk_euclidean_avx512(&step, ci * CHUNK_ROWS, m, a) };
            }
            let (far, skipped) = step_chunk(isa, &step, ci * CHUNK_ROWS, m, a);
            (far, (skipped, 0))
        };
        type Part = ((f32, usize), (usize, usize));
        let merge = |a: Part, b: Part| (argmax_pair(a.0, b.0), (a.1 .0 + b.1 .0, a.1 .1 + b.1 .1));
        let identity: Part = ((SELECTED, usize::MAX), (0, 0));
        let (far, (skipped, tested)) = if data.len() >= PARALLEL_MIN_ELEMENTS {
            flat.min_dist
                .par_chunks_mut(CHUNK_ROWS)
                .zip(flat.assign.par_chunks_mut(CHUNK_ROWS))
                .enumerate()
                .map(work)
                .reduce(|| identity, merge)
        } else {
            flat.min_dist
                .chunks_mut(CHUNK_ROWS)
                .zip(flat.assign.chunks_mut(CHUNK_ROWS))
                .enumerate()
                .map(work)
                .fold(identity, merge)
        };
        if vector {
            (far, skipped, tested)
        } else {
            (far, skipped, unselected)
        }
    }

    /// Moves from the flat arrays to groups (rows in increasing order inside each group).
    fn switch_to_groups(&mut self) {
        let Some(flat) = self.flat.take() else {
            return;
        };
        self.shadow = None;
        let k = self.centers.len();
        let mut counts = vec![0usize; k];
        for (&m, &a) in flat.min_dist.iter().zip(&flat.assign) {
            if m != SELECTED {
                counts[a as usize] += 1;
            }
        }
        let mut groups: Vec<Group> = counts
            .iter()
            .map(|&c| Group {
                rows: Vec::with_capacity(c),
                dist: Vec::with_capacity(c),
            })
            .collect();
        for (i, (&m, &a)) in flat.min_dist.iter().zip(&flat.assign).enumerate() {
            if m != SELECTED {
                groups[a as usize].rows.push(i as u32);
                groups[a as usize].dist.push(m);
            }
        }
        drop(flat);
        let capacity = self.centers.capacity().max(k + 1);
        let mut grouped = Grouped {
            groups: Vec::with_capacity(capacity),
            radius: Vec::with_capacity(capacity),
            pivot: Vec::with_capacity(capacity),
            pivot_gap: Vec::with_capacity(capacity),
            by_pivot: Vec::with_capacity(self.pivots),
            pivot_reach: Vec::with_capacity(self.pivots),
            tree: Tournament::new(capacity),
            candidates: Vec::new(),
            candidate_rows: Vec::new(),
            candidate_q: Vec::new(),
            scan: Vec::new(),
            rows: Vec::new(),
            q: Vec::new(),
        };
        for (j, group) in groups.into_iter().enumerate() {
            let far = group.farthest();
            let (p, q) = self.nearest_pivot(self.centers[j], j);
            grouped.push_group(j, group, far, self.radius_bound(far.0), p, self.bounds.upper(q));
        }
        self.grouped = Some(grouped);
    }

    fn radius_bound(&self, far: f32) -> f64 {
        if far == SELECTED {
            -1.0
        } else {
            self.bounds.upper(far)
        }
    }

    /// The pivot of the center at `position` (row `c`): itself if it is one of the first `pivots`
    /// centers, else the nearest pivot; returns `(pivot, computed distance to it)`.
    fn nearest_pivot(&self, c: usize, position: usize) -> (usize, f32) {
        if position < self.pivots {
            return (position, self.dist(c, c));
        }
        (0..self.pivots)
            .map(|p| (p, self.dist(c, self.centers[p])))
            .fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
    }

    fn add_grouped(&mut self, c: usize) -> (f32, usize) {
        let position = self.centers.len();
        let Some(mut g) = self.grouped.take() else {
            return (SELECTED, usize::MAX);
        };
        let bounds = self.bounds;
        // D(c, pivot) for the pivot tests (one batched pass over the pivots' rows), and c's own pivot.
        let n_piv = self.pivots.min(position);
        let (mut pivot_rows, mut pivot_q) = (std::mem::take(&mut self.pivot_rows), std::mem::take(&mut self.pivot_q));
        pivot_rows.clear();
        pivot_rows.extend(self.centers[..n_piv].iter().map(|&r| r as u32));
        self.distances(c, &pivot_rows, &mut pivot_q);
        (self.pivot_rows, self.pivot_q) = (pivot_rows, pivot_q);
        self.pivot_lower.clear();
        self.pivot_lower.extend(self.pivot_q.iter().map(|&q| bounds.lower(q)));
        let (own_pivot, own_q) = if position < self.pivots {
            (position, self.dist(c, c))
        } else {
            self.pivot_q
                .iter()
                .enumerate()
                .fold((0, f32::INFINITY), |a, (p, &q)| if q < a.1 { (p, q) } else { a })
        };
        let home = if g.tree.root().1 == c {
            g.tree.root().2
        } else {
            // Only a center not chosen by the greedy (an `initial` row) needs a search.
            g.groups
                .iter()
                .position(|grp| grp.rows.contains(&(c as u32)))
                .unwrap_or(usize::MAX)
        };
        // Which groups can lose points to c: a whole pivot's groups at once, then each group's
        // pivot test (no distance computed), then the distance D(c, a_j) against its radius.
        g.candidates.clear();
        g.scan.clear();
        if home < g.groups.len() && g.radius[home] >= 0.0 {
            g.scan.push(home as u32);
        }
        let pruning = self.pruning.enabled;
        for p in 0..g.by_pivot.len() {
            let lo = self.pivot_lower.get(p).copied().unwrap_or(f64::NEG_INFINITY);
            if pruning && lo >= g.pivot_reach[p] {
                continue;
            }
            // Tighten the pivot's reach on the way (radii only shrink) and drop emptied groups.
            let mut reach_p = f64::NEG_INFINITY;
            let Grouped {
                by_pivot,
                radius,
                pivot_gap,
                candidates,
                ..
            } = &mut g;
            by_pivot[p].retain(|&j| {
                let j = j as usize;
                if radius[j] < 0.0 {
                    return false;
                }
                reach_p = reach_p.max(reach(pivot_gap[j], radius[j]));
                if j != home && !(pruning && far_enough(lo - pivot_gap[j], radius[j])) {
                    candidates.push(j as u32);
                }
                true
            });
            g.pivot_reach[p] = reach_p;
        }
        g.candidate_rows.clear();
        g.candidate_rows
            .extend(g.candidates.iter().map(|&j| self.centers[j as usize] as u32));
        self.distances(c, &g.candidate_rows, &mut g.candidate_q);
        for (&j, &q) in g.candidates.iter().zip(&g.candidate_q) {
            if !(pruning && far_enough(bounds.lower(q), g.radius[j as usize])) {
                g.scan.push(j);
            }
        }
        // Distances from c to every member of the groups to scan, in one batched pass.
        g.rows.clear();
        for &j in &g.scan {
            g.rows.extend_from_slice(&g.groups[j as usize].rows);
        }
        self.distances(c, &g.rows, &mut g.q);
        // Each scanned group keeps the members c does not beat (in order) and gives the others to c.
        let mut new_group = Group::default();
        let mut offset = 0;
        for t in 0..g.scan.len() {
            let j = g.scan[t] as usize;
            let group = &mut g.groups[j];
            let len = group.rows.len();
            let q = &g.q[offset..offset + len];
            offset += len;
            let mut far = (SELECTED, usize::MAX);
            let mut kept = 0;
            for (s, &qs) in q.iter().enumerate() {
                let (i, m) = (group.rows[s], group.dist[s]);
                if i as usize == c {
                    continue;
                }
                if qs < m {
                    new_group.rows.push(i);
                    new_group.dist.push(qs);
                } else {
                    group.rows[kept] = i;
                    group.dist[kept] = m;
                    kept += 1;
                    far = argmax_pair(far, (m, i as usize));
                }
            }
            group.rows.truncate(kept);
            group.dist.truncate(kept);
            g.radius[j] = self.radius_bound(far.0);
            g.tree.set(j, far);
        }
        let far = new_group.farthest();
        g.push_group(
            position,
            new_group,
            far,
            self.radius_bound(far.0),
            own_pivot,
            bounds.upper(own_q),
        );
        self.centers.push(c);
        let root = g.tree.root();
        self.grouped = Some(g);
        (root.0, root.1)
    }

    /// Internal distances from row `c` to each row of `rows`, into `out` (resized to `rows.len()`).
    /// Euclidean on AVX-512: sixteen rows at a time with the next sixteen prefetched (the rows of a
    /// group are scattered over X); large batches split over the pool in fixed pieces.
    fn distances(&self, c: usize, rows: &[u32], out: &mut Vec<f32>) {
        out.clear();
        out.resize(rows.len(), 0.0);
        let (data, d, metric, norms, isa) = (self.x.data(), self.x.d(), self.metric, &self.norms[..], self.isa);
        let c_row = self.x.row(c);
        let c_norm = norms.get(c).copied().unwrap_or(0.0);
        let work = |(rows, out): (&[u32], &mut [f32])| {
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 && metric == Metric::Euclidean {
                // SAFETY: the CPU has AVX-512F; every row id is a row of `data`.
                unsafe { sq_rows_avx512(data, d, c_row, rows, out) };
                return;
            }
            row_distances(isa, data, d, metric, norms, c_row, c_norm, rows, out);
        };
        const PIECE: usize = 1024;
        if rows.len() * d >= PARALLEL_MIN_ELEMENTS {
            rows.par_chunks(PIECE).zip(out.par_chunks_mut(PIECE)).for_each(work);
        } else {
            work((rows, &mut out[..]));
        }
    }
}

impl Grouped {
    /// Appends group `j` (its members, farthest member, radius bound, pivot and pivot gap).
    fn push_group(&mut self, j: usize, group: Group, far: (f32, usize), radius: f64, pivot: usize, gap: f64) {
        debug_assert_eq!(j, self.groups.len());
        self.radius.push(radius);
        self.pivot.push(pivot as u32);
        self.pivot_gap.push(gap);
        while self.by_pivot.len() <= pivot {
            self.by_pivot.push(Vec::new());
            self.pivot_reach.push(f64::NEG_INFINITY);
        }
        if radius >= 0.0 {
            self.by_pivot[pivot].push(j as u32);
            self.pivot_reach[pivot] = self.pivot_reach[pivot].max(reach(gap, radius));
        }
        self.tree.set(j, far);
        self.groups.push(group);
    }
}

/// Asks for every cache line of `row` (a hint; no effect off x86-64).
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: prefetching is a hint that never faults, and SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// [`Greedy::distances`] on AVX-512F for the Euclidean metric: the bits of [`sq_euclidean`].
///
/// # Safety
/// The CPU must support AVX-512F; every `rows[t]` is a row of `data` (`d` floats each), `c_row` has
/// `d` floats and `out` as many entries as `rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sq_rows_avx512(data: &[f32], d: usize, c_row: &[f32], rows: &[u32], out: &mut [f32]) {
    let blocks = rows.len() / 16;
    let row = |i: u32| &data[i as usize * d..(i as usize + 1) * d];
    for b in 0..blocks {
        let block = &rows[b * 16..b * 16 + 16];
        if let Some(next) = rows.get((b + 1) * 16..(b + 2) * 16) {
            next.iter().for_each(|&i| prefetch_row(row(i)));
        }
        // SAFETY: each pointer is the start of a d-float row of `data`; `out` has room for the block.
        unsafe {
            let q = crate::distance::simd::sq_euclidean_x16_avx512(|t| row(block[t]).as_ptr(), c_row.as_ptr(), d);
            std::arch::x86_64::_mm512_storeu_ps(out.as_mut_ptr().add(b * 16), q);
        }
    }
    for t in blocks * 16..rows.len() {
        out[t] = sq_euclidean(row(rows[t]), c_row);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_distances_impl(
    data: &[f32],
    d: usize,
    metric: Metric,
    norms: &[f32],
    c_row: &[f32],
    c_norm: f32,
    rows: &[u32],
    out: &mut [f32],
) {
    let ahead = 4usize;
    for (t, (&i, o)) in rows.iter().zip(out.iter_mut()).enumerate() {
        if let Some(&next) = rows.get(t + ahead) {
            prefetch_row(&data[next as usize * d..(next as usize + 1) * d]);
        }
        let i = i as usize;
        let x_norm = norms.get(i).copied().unwrap_or(0.0);
        *o = distance(metric, &data[i * d..(i + 1) * d], c_row, x_norm, c_norm);
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn row_distances(
        data: &[f32],
        d: usize,
        metric: Metric,
        norms: &[f32],
        c_row: &[f32],
        c_norm: f32,
        rows: &[u32],
        out: &mut [f32],
    ) -> () => row_distances_impl
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
    let metric = opts.metric;
    Ok(crate::distance::on_pool(move || {
        let mut greedy = Greedy::new(x, metric, k + begin.initial.len());
        run_greedy(k, begin, metric, |c| greedy.add(c))
    }))
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

    /// Tight clusters of `spread` around `clusters` centres, optionally on a coarse grid (exact ties).
    fn blobs(n: usize, d: usize, clusters: usize, spread: f32, grid: bool, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<f32> = (0..clusters * d).map(|_| rng.random_range(-20.0f32..20.0)).collect();
        (0..n)
            .flat_map(|_| {
                let c = rng.random_range(0..clusters);
                (0..d)
                    .map(|j| {
                        let noise = if spread > 0.0 {
                            rng.random_range(-spread..spread)
                        } else {
                            0.0
                        };
                        let v = centers[c * d + j] + noise;
                        if grid {
                            (v * 4.0).round() / 4.0
                        } else {
                            v
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn grouped_phase_runs_and_stays_exact() {
        let (n, d) = (4000, 6);
        for (seed, grid) in [(1u64, false), (2, true)] {
            let data = blobs(n, d, 12, 0.5, grid, seed);
            let x = MatrixView::new(&data, n, d).unwrap();
            let init: Vec<usize> = (0..40).map(|j| (j * 97 + 3) % n).collect();
            for metric in [Metric::Euclidean, Metric::Cosine] {
                for initial in [None, Some(&init[..])] {
                    let opts = KCenterOptions { metric, initial, seed };
                    assert_eq!(kcenter(x, 300, &opts).unwrap(), kcenter_naive(x, 300, &opts).unwrap());
                }
            }
            // The grouped phase (whole groups skipped, tournament arg-max) is what ran.
            let mut greedy = Greedy::new(x, Metric::Euclidean, 301);
            let begin = start(&x, 300, &KCenterOptions::default()).unwrap();
            run_greedy(300, begin, Metric::Euclidean, |c| greedy.add(c));
            assert!(greedy.grouped.is_some() && greedy.flat.is_none());
        }
    }

    /// Uniform data stays in the flat phase long enough for the f16 shadow pass to run (from
    /// SHADOW_AFTER steps on, on AVX-512 machines), with rows not a multiple of 16 and widths with and without a tail.
    #[test]
    fn flat_phase_with_shadow_equals_naive() {
        for (n, d) in [(1_000usize, 64usize), (777, 17), (530, 100), (300, 5)] {
            let data = mat(n, d, n as u64);
            let x = MatrixView::new(&data, n, d).unwrap();
            let init = [3usize, 3, 40];
            for initial in [None, Some(&init[..])] {
                let opts = KCenterOptions {
                    initial,
                    seed: 9,
                    ..Default::default()
                };
                assert_eq!(
                    kcenter(x, 150, &opts).unwrap(),
                    kcenter_naive(x, 150, &opts).unwrap(),
                    "n={n} d={d}"
                );
            }
            let mut greedy = Greedy::new(x, Metric::Euclidean, 151);
            let begin = start(&x, 150, &KCenterOptions::default()).unwrap();
            run_greedy(150, begin, Metric::Euclidean, |c| greedy.add(c));
            if Isa::detect() == Isa::Avx512 && d >= 16 {
                assert!(greedy.shadow_tried, "the shadow pass did not run (n={n} d={d})");
            }
        }
    }

    /// Wide rows in the grouped phase (the 16-row gathered distance kernel and its tail).
    #[test]
    fn grouped_phase_with_wide_rows_equals_naive() {
        for (n, d) in [(3_001usize, 40usize), (2_000, 16), (1_500, 77)] {
            let data = blobs(n, d, 9, 0.3, false, d as u64);
            let x = MatrixView::new(&data, n, d).unwrap();
            let opts = KCenterOptions {
                seed: 2,
                ..Default::default()
            };
            assert_eq!(
                kcenter(x, 400, &opts).unwrap(),
                kcenter_naive(x, 400, &opts).unwrap(),
                "n={n} d={d}"
            );
            let mut greedy = Greedy::new(x, Metric::Euclidean, 401);
            let begin = start(&x, 400, &opts).unwrap();
            run_greedy(400, begin, Metric::Euclidean, |c| greedy.add(c));
            assert!(greedy.grouped.is_some(), "clustered data should switch to groups");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The grouped phase against the textbook loop on clustered data, with exact ties (grid),
        /// duplicates (spread 0), zero rows (cosine), and `initial` rows.
        #[test]
        fn grouped_equals_naive(
            n in 20usize..500,
            d in 1usize..10,
            clusters in 1usize..12,
            spread in prop::sample::select(vec![0.0f32, 0.01, 0.5, 3.0]),
            seed in 0u64..1000,
            cosine in any::<bool>(),
            grid in any::<bool>(),
            n_init in 0usize..30,
        ) {
            let mut data = blobs(n, d, clusters, spread, grid, seed);
            if cosine && seed % 3 == 0 {
                data[..d].iter_mut().for_each(|v| *v = 0.0);
            }
            let x = MatrixView::new(&data, n, d).unwrap();
            let init: Vec<usize> = (0..n_init.min(n / 2)).map(|j| (j * 31 + seed as usize) % n).collect();
            let mut unique = init.clone();
            unique.sort();
            unique.dedup();
            let k = 1 + (seed as usize * 7) % (n - unique.len());
            let opts = KCenterOptions {
                metric: if cosine { Metric::Cosine } else { Metric::Euclidean },
                initial: if init.is_empty() { None } else { Some(&init) },
                seed,
            };
            prop_assert_eq!(kcenter(x, k, &opts).unwrap(), kcenter_naive(x, k, &opts).unwrap());
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
