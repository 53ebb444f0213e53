//! Greedy maximization of set functions under a cardinality constraint, and the submodular functions
//! of the `submodular` selector.
//!
//! Optimizers (all pick exactly `k` elements, ties broken by the smaller index):
//! - `naive`: re-evaluates every marginal gain `f(j | S)` each step (Nemhauser, Wolsey & Fisher 1978;
//!   `1 − 1/e` for monotone submodular `f`).
//! - `lazy`: Minoux (1978) accelerated greedy. Stale gains are upper bounds by submodularity, so an
//!   element whose refreshed gain still beats every other bound is the naive argmax. Gains are
//!   accumulated in f64 with monotone (round-to-nearest) operations in a fixed order, so a refreshed
//!   gain is never larger than its stale bound and `lazy` selects exactly what `naive` selects.
//!   Refused for functions that are not submodular (`disparity_sum`).
//! - `stochastic`: Mirzasoleiman et al. 2015, "Lazier than lazy greedy": each step evaluates only a
//!   seeded random sample of `⌈(n/k)·ln(1/ε)⌉` unselected elements; `1 − 1/e − ε` in expectation.
//!
//! Non-monotone functions (`graph_cut` with λ > ½, `log_determinant`) can have negative gains; the
//! greedy still takes the argmax each step so that exactly `k` elements come back (the gains record
//! the negative steps).
//!
//! Functions (Iyer & Bilmes; Kaushal et al. 2021 "PRISM" / submodlib; Lin & Bilmes 2011), on a dense
//! similarity kernel `s` (see [`crate::facility::Similarity`]) or on non-negative features:
//! - `facility_location`: `f(S) = Σ_{i∈V} max(0, max_{j∈S} s_ij)`.
//! - `graph_cut` (λ): `f(S) = Σ_{i∈V} Σ_{j∈S} s_ij − λ Σ_{i∈S} Σ_{j∈S} s_ij`; submodular for s ≥ 0,
//!   monotone for λ ≤ ½.
//! - `saturated_coverage` (α; Lin & Bilmes 2011): `f(S) = Σ_{i∈V} min(Σ_{j∈S} s_ij, α Σ_{j∈V} s_ij)`.
//! - `feature_based` (Wei, Iyer & Bilmes 2014): `f(S) = Σ_u φ(Σ_{j∈S} x_ju)` with `φ` = sqrt or
//!   log(1 + ·) over non-negative features.
//! - `log_determinant` (Kulesza & Taskar 2012; greedy MAP by incremental Cholesky, Chen et al. 2018):
//!   `f(S) = log det(s_SS + r·I)`, regularizer r > 0.
//! - `sum_redundancy` (Schreiber et al. 2020, apricot): `f(S) = c·|S| − Σ_{i<j∈S} s_ij` with
//!   `c = (n − 1)·max s`, which keeps it monotone (every gain ≥ 0) and submodular for s ≥ 0.
//! - `disparity_sum` (Dasgupta et al. 2013; submodlib): `f(S) = Σ_{i<j∈S} d_ij` with the distance
//!   paired to the similarity; supermodular, so only `naive` and `stochastic` apply.
//! - `mixture`: `Σ_t w_t f_t` with weights `w_t ≥ 0`.

use crate::error::{CoreError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A set function with incremental state: `gain(j) = f(S ∪ {j}) − f(S)` for the current `S`, and
/// `commit(j)` adds `j` to `S`. Every function here has `f(∅) = 0`, so `f(S)` is the sum of the gains.
pub trait SetFunction: Sync {
    /// Size of the ground set (candidates are `0..ground_size()`).
    fn ground_size(&self) -> usize;
    /// Marginal gain of `j ∉ S`. Must be deterministic and, for submodular functions, never larger
    /// than any earlier value for the same `j`.
    fn gain(&self, j: usize) -> f64;
    /// Adds `j` to the current set.
    fn commit(&mut self, j: usize);
    /// Whether stale gains are valid upper bounds (diminishing returns), which `lazy` relies on.
    fn is_submodular(&self) -> bool;
}

/// Greedy optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Naive,
    Lazy,
    /// Stochastic greedy with its ε (the sample size per step is `⌈(n/k)·ln(1/ε)⌉`).
    Stochastic {
        epsilon: f64,
    },
}

impl Optimizer {
    pub const NAMES: [&'static str; 3] = ["naive", "lazy", "stochastic"];

    /// Parses an optimizer name; `epsilon` is used by `stochastic` and must lie in (0, 1).
    pub fn parse(name: &str, epsilon: f64) -> Result<Self> {
        match name {
            "naive" => Ok(Optimizer::Naive),
            "lazy" => Ok(Optimizer::Lazy),
            "stochastic" => {
                if !(epsilon > 0.0 && epsilon < 1.0) {
                    return Err(CoreError::InvalidArgument(format!(
                        "epsilon must be in (0, 1) for the stochastic optimizer, got {epsilon}"
                    )));
                }
                Ok(Optimizer::Stochastic { epsilon })
            }
            other => Err(CoreError::InvalidArgument(format!(
                "unknown optimizer {other:?}; expected one of {:?}",
                Optimizer::NAMES
            ))),
        }
    }
}

/// Selected elements in order with the marginal gain of each step.
#[derive(Clone, Debug, PartialEq)]
pub struct GreedyResult {
    pub order: Vec<usize>,
    pub gains: Vec<f64>,
}

impl GreedyResult {
    /// `f(S)`: every function here has `f(∅) = 0`.
    pub fn objective(&self) -> f64 {
        self.gains.iter().sum()
    }
}

/// Larger gain wins; equal gains go to the smaller index. A total order, so any reduction tree
/// gives the same answer.
#[inline]
fn better(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
    match a.0.total_cmp(&b.0) {
        Ordering::Greater => a,
        Ordering::Less => b,
        Ordering::Equal => {
            if a.1 <= b.1 {
                a
            } else {
                b
            }
        }
    }
}

/// NaN would break the total order the optimizers rely on; a NaN gain means "cannot be added".
#[inline]
fn sanitize(g: f64) -> f64 {
    if g.is_nan() {
        f64::NEG_INFINITY
    } else {
        g
    }
}

/// Runs `optimizer` on `f` for exactly `k` steps.
pub fn maximize<F: SetFunction>(f: &mut F, k: usize, optimizer: Optimizer, seed: u64) -> Result<GreedyResult> {
    let n = f.ground_size();
    crate::matrix::check_k(k, n)?;
    match optimizer {
        Optimizer::Naive => Ok(naive(f, k)),
        Optimizer::Lazy => {
            if !f.is_submodular() {
                return Err(CoreError::InvalidArgument(
                    "the lazy optimizer needs a submodular function (stale gains must be upper bounds); this \
                     function is not submodular for these options, use optimizer='naive' or 'stochastic'"
                        .into(),
                ));
            }
            Ok(lazy(f, k))
        }
        Optimizer::Stochastic { epsilon } => Ok(stochastic(f, k, epsilon, seed)),
    }
}

fn naive<F: SetFunction>(f: &mut F, k: usize) -> GreedyResult {
    let n = f.ground_size();
    let mut selected = vec![false; n];
    let mut order = Vec::with_capacity(k);
    let mut gains = Vec::with_capacity(k);
    for _ in 0..k {
        let fr: &F = f;
        let (g, j) = (0..n)
            .into_par_iter()
            .filter(|&j| !selected[j])
            .map(|j| (sanitize(fr.gain(j)), j))
            .reduce(|| (f64::NEG_INFINITY, usize::MAX), better);
        let j = if j == usize::MAX {
            first_unselected(&selected)
        } else {
            j
        };
        selected[j] = true;
        f.commit(j);
        order.push(j);
        gains.push(g);
    }
    GreedyResult { order, gains }
}

fn first_unselected(selected: &[bool]) -> usize {
    selected.iter().position(|s| !s).unwrap_or(0)
}

/// Heap entry: an upper bound on `j`'s gain, computed when `|S| == step`.
#[derive(Clone, Copy)]
struct Bound {
    gain: f64,
    j: usize,
    step: usize,
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain.total_cmp(&other.gain).then_with(|| other.j.cmp(&self.j))
    }
}

fn lazy<F: SetFunction>(f: &mut F, k: usize) -> GreedyResult {
    let n = f.ground_size();
    let fr: &F = f;
    let first: Vec<Bound> = (0..n)
        .into_par_iter()
        .map(|j| Bound {
            gain: sanitize(fr.gain(j)),
            j,
            step: 0,
        })
        .collect();
    let mut heap = BinaryHeap::from(first);
    let mut order = Vec::with_capacity(k);
    let mut gains = Vec::with_capacity(k);
    while order.len() < k {
        let Some(top) = heap.pop() else { break };
        let step = order.len();
        if top.step == step {
            // Fresh, and at least every other entry's bound (ties already ordered by index).
            f.commit(top.j);
            order.push(top.j);
            gains.push(top.gain);
            continue;
        }
        let refreshed = Bound {
            gain: sanitize(f.gain(top.j)),
            j: top.j,
            step,
        };
        match heap.peek() {
            Some(next) if refreshed < *next => heap.push(refreshed),
            _ => {
                f.commit(top.j);
                order.push(top.j);
                gains.push(refreshed.gain);
            }
        }
    }
    GreedyResult { order, gains }
}

fn stochastic<F: SetFunction>(f: &mut F, k: usize, epsilon: f64, seed: u64) -> GreedyResult {
    let n = f.ground_size();
    let sample = (((n as f64) / (k as f64)) * (1.0 / epsilon).ln()).ceil().max(1.0) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut order = Vec::with_capacity(k);
    let mut gains = Vec::with_capacity(k);
    for _ in 0..k {
        let r = remaining.len();
        let s = sample.min(r);
        // Partial Fisher-Yates: the first `s` slots become a uniform sample without replacement.
        for t in 0..s {
            let u = rng.random_range(t..r);
            remaining.swap(t, u);
        }
        let fr: &F = f;
        // Positions break ties through the element index they hold, so the winner is deterministic.
        let (g, _, pos) = remaining[..s]
            .par_iter()
            .enumerate()
            .map(|(p, &j)| (sanitize(fr.gain(j)), j, p))
            .reduce(
                || (f64::NEG_INFINITY, usize::MAX, 0),
                |a, b| if better((a.0, a.1), (b.0, b.1)).1 == a.1 { a } else { b },
            );
        let j = remaining.swap_remove(pos);
        f.commit(j);
        order.push(j);
        gains.push(g);
    }
    GreedyResult { order, gains }
}

// ---------------------------------------------------------------------------------------------
// Functions on a dense kernel
// ---------------------------------------------------------------------------------------------

/// A dense `n × n` kernel stored row-major; row `j` holds `s(j, ·)`.
pub struct Kernel {
    pub n: usize,
    pub data: Vec<f32>,
}

impl Kernel {
    #[inline]
    pub fn row(&self, j: usize) -> &[f32] {
        &self.data[j * self.n..(j + 1) * self.n]
    }

    fn min_value(&self) -> f32 {
        self.data
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(f32::INFINITY, |m, &v| m.min(v)))
            .reduce(|| f32::INFINITY, f32::min)
    }

    fn max_value(&self) -> f32 {
        self.data
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)))
            .reduce(|| f32::NEG_INFINITY, f32::max)
    }

    /// `acc[i] += s(j, i)` for every `i`: the running `Σ_{k∈S} s(k, i)` of graph cut, sum redundancy and
    /// disparity sum when `j` joins `S`.
    fn accumulate_row(&self, j: usize, acc: &mut [f64]) {
        acc.par_iter_mut()
            .zip(self.row(j).par_iter())
            .for_each(|(a, &s)| *a += s as f64);
    }

    /// `Σ_i s(j, i)` for every row, in f64.
    fn row_sums(&self) -> Vec<f64> {
        (0..self.n).into_par_iter().map(|j| sum_f64(self.row(j))).collect()
    }
}

/// Sum in f64 over 4 fixed lanes (vectorizable, deterministic, monotone in every term).
#[inline]
pub(crate) fn sum_f64(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for t in 0..4 {
            acc[t] += c[t] as f64;
        }
    }
    let mut tail = 0.0f64;
    for &x in rest {
        tail += x as f64;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `Σ_i max(0, row_i − cur_i)`: 16 f32 lanes (vectorized), flushed into an f64 total every 256 terms.
/// The expression tree is fixed and every step is a monotone rounding, so the result is deterministic
/// and never grows when `cur` grows (what `lazy` relies on).
pub(crate) fn coverage_gain(row: &[f32], cur: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2 (checked just above).
            return unsafe { coverage_gain_avx2(row, cur) };
        }
    }
    coverage_gain_lanes(row, cur)
}

/// The same code compiled for AVX2: no FMA is involved, so the result is bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn coverage_gain_avx2(row: &[f32], cur: &[f32]) -> f64 {
    coverage_gain_lanes(row, cur)
}

#[inline(always)]
fn coverage_gain_lanes(row: &[f32], cur: &[f32]) -> f64 {
    const LANES: usize = 16;
    const BLOCK: usize = 256;
    let mut total = 0.0f64;
    for (rb, cb) in row.chunks(BLOCK).zip(cur.chunks(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let rc = rb.chunks_exact(LANES);
        let cc = cb.chunks_exact(LANES);
        let (rr, cr) = (rc.remainder(), cc.remainder());
        for (r, c) in rc.zip(cc) {
            for t in 0..LANES {
                acc[t] += (r[t] - c[t]).max(0.0);
            }
        }
        let mut tail = 0.0f32;
        for (&r, &c) in rr.iter().zip(cr) {
            tail += (r - c).max(0.0);
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// Facility location on a dense kernel: `cur_i = max(0, max_{j∈S} s_ij)`.
pub struct DenseFacility<'a> {
    kernel: &'a Kernel,
    cur: Vec<f32>,
}

impl<'a> DenseFacility<'a> {
    pub fn new(kernel: &'a Kernel) -> Self {
        Self {
            kernel,
            cur: vec![0.0; kernel.n],
        }
    }
}

impl SetFunction for DenseFacility<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        coverage_gain(self.kernel.row(j), &self.cur)
    }
    fn commit(&mut self, j: usize) {
        let row = self.kernel.row(j);
        self.cur.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            for (t, v) in chunk.iter_mut().enumerate() {
                *v = v.max(row[c * 4096 + t]);
            }
        });
    }
    fn is_submodular(&self) -> bool {
        true
    }
}

/// Graph cut: gain `g_j = Σ_i s_ji − λ(2 Σ_{i∈S} s_ji + s_jj)`.
pub struct GraphCut<'a> {
    kernel: &'a Kernel,
    lambda: f64,
    totals: Vec<f64>,
    inside: Vec<f64>,
    nonneg: bool,
}

impl<'a> GraphCut<'a> {
    pub fn new(kernel: &'a Kernel, lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(CoreError::InvalidArgument(format!(
                "graph_cut lambda must be finite and >= 0, got {lambda}"
            )));
        }
        Ok(Self {
            kernel,
            lambda,
            totals: kernel.row_sums(),
            inside: vec![0.0; kernel.n],
            nonneg: kernel.min_value() >= 0.0,
        })
    }
}

impl SetFunction for GraphCut<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        self.totals[j] - self.lambda * (2.0 * self.inside[j] + self.kernel.row(j)[j] as f64)
    }
    fn commit(&mut self, j: usize) {
        self.kernel.accumulate_row(j, &mut self.inside);
    }
    fn is_submodular(&self) -> bool {
        self.nonneg
    }
}

/// Saturated coverage: `f(S) = Σ_i min(C_i(S), α C_i(V))`, `C_i(S) = Σ_{j∈S} s_ij`.
pub struct SaturatedCoverage<'a> {
    kernel: &'a Kernel,
    cap: Vec<f32>,
    covered: Vec<f32>,
    nonneg: bool,
}

impl<'a> SaturatedCoverage<'a> {
    pub fn new(kernel: &'a Kernel, alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(CoreError::InvalidArgument(format!(
                "saturated_coverage alpha must be in (0, 1], got {alpha}"
            )));
        }
        let cap = kernel.row_sums().into_iter().map(|t| (alpha * t) as f32).collect();
        Ok(Self {
            kernel,
            cap,
            covered: vec![0.0; kernel.n],
            nonneg: kernel.min_value() >= 0.0,
        })
    }
}

impl SetFunction for SaturatedCoverage<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        // min(C+s, cap) − min(C, cap) = clamp(min(s, cap − C), 0): monotone in C for s ≥ 0.
        let row = self.kernel.row(j);
        let mut acc = [0.0f64; 4];
        for (i, &s) in row.iter().enumerate() {
            let room = self.cap[i] - self.covered[i];
            acc[i % 4] += s.min(room).max(0.0) as f64;
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }
    fn commit(&mut self, j: usize) {
        let row = self.kernel.row(j);
        self.covered
            .par_iter_mut()
            .zip(row.par_iter())
            .for_each(|(c, &s)| *c += s);
    }
    fn is_submodular(&self) -> bool {
        self.nonneg
    }
}

/// Sum redundancy: `f(S) = c·|S| − Σ_{i<j∈S} s_ij`, `c = (n − 1)·max s`.
pub struct SumRedundancy<'a> {
    kernel: &'a Kernel,
    c: f64,
    inside: Vec<f64>,
    nonneg: bool,
}

impl<'a> SumRedundancy<'a> {
    pub fn new(kernel: &'a Kernel) -> Self {
        let c = (kernel.n as f64 - 1.0) * (kernel.max_value() as f64).max(0.0);
        Self {
            kernel,
            c,
            inside: vec![0.0; kernel.n],
            nonneg: kernel.min_value() >= 0.0,
        }
    }
}

impl SetFunction for SumRedundancy<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        self.c - self.inside[j]
    }
    fn commit(&mut self, j: usize) {
        self.kernel.accumulate_row(j, &mut self.inside);
    }
    fn is_submodular(&self) -> bool {
        self.nonneg
    }
}

/// Disparity sum: `f(S) = Σ_{i<j∈S} d_ij` with `d_ij = top − s_ij` (`top` = the kernel's self
/// similarity scale). Supermodular.
pub struct DisparitySum<'a> {
    kernel: &'a Kernel,
    top: f64,
    inside: Vec<f64>,
    size: usize,
}

impl<'a> DisparitySum<'a> {
    /// `top` turns similarities into distances: 1 for cosine / rbf, `D_max` for craig (so `d = D`).
    pub fn new(kernel: &'a Kernel, top: f64) -> Self {
        Self {
            kernel,
            top,
            inside: vec![0.0; kernel.n],
            size: 0,
        }
    }
}

impl SetFunction for DisparitySum<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        self.top * self.size as f64 - self.inside[j]
    }
    fn commit(&mut self, j: usize) {
        self.kernel.accumulate_row(j, &mut self.inside);
        self.size += 1;
    }
    fn is_submodular(&self) -> bool {
        false
    }
}

/// Log-determinant with incremental Cholesky (Chen, Zhang & Zhou 2018): `d_j² = s_jj + r − ‖c_j‖²`
/// is the Schur complement of `j` given `S`, and `gain(j) = ln d_j²`.
pub struct LogDeterminant<'a> {
    kernel: &'a Kernel,
    reg: f64,
    /// `n × |S|` Cholesky rows, row-major with stride `k_max`.
    chol: Vec<f64>,
    k_max: usize,
    d2: Vec<f64>,
    size: usize,
    psd: bool,
}

impl<'a> LogDeterminant<'a> {
    /// `psd`: whether the kernel is positive semidefinite (rbf, cosine), which makes the function
    /// submodular.
    pub fn new(kernel: &'a Kernel, reg: f64, k_max: usize, psd: bool) -> Result<Self> {
        if !(reg.is_finite() && reg > 0.0) {
            return Err(CoreError::InvalidArgument(format!(
                "log_determinant regularizer must be > 0, got {reg}"
            )));
        }
        let n = kernel.n;
        let d2 = (0..n).map(|j| kernel.row(j)[j] as f64 + reg).collect();
        Ok(Self {
            kernel,
            reg,
            chol: vec![0.0; n * k_max],
            k_max,
            d2,
            size: 0,
            psd,
        })
    }
}

impl SetFunction for LogDeterminant<'_> {
    fn ground_size(&self) -> usize {
        self.kernel.n
    }
    fn gain(&self, j: usize) -> f64 {
        let v = self.d2[j];
        if v > 0.0 {
            v.ln()
        } else {
            f64::NEG_INFINITY
        }
    }
    fn commit(&mut self, j: usize) {
        let t = self.size;
        if t >= self.k_max {
            return;
        }
        let dj = self.d2[j].max(f64::MIN_POSITIVE).sqrt();
        let km = self.k_max;
        let cj: Vec<f64> = self.chol[j * km..j * km + t].to_vec();
        let row = self.kernel.row(j);
        let reg = self.reg;
        self.chol
            .par_chunks_mut(km)
            .zip(self.d2.par_iter_mut())
            .enumerate()
            .for_each(|(i, (ci, d2))| {
                let mut dot = 0.0f64;
                for u in 0..t {
                    dot += cj[u] * ci[u];
                }
                let lij = row[i] as f64 + if i == j { reg } else { 0.0 };
                let e = (lij - dot) / dj;
                ci[t] = e;
                *d2 -= e * e;
            });
        self.size += 1;
    }
    fn is_submodular(&self) -> bool {
        self.psd
    }
}

/// Feature-based: `f(S) = Σ_u φ(m_u(S))`, `m_u(S) = Σ_{j∈S} x_ju`, `x ≥ 0`.
pub struct FeatureBased<'a> {
    x: &'a [f32],
    d: usize,
    n: usize,
    concave: Concave,
    m: Vec<f64>,
}

/// The concave `φ` of [`FeatureBased`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Concave {
    Sqrt,
    Log,
}

impl Concave {
    pub const NAMES: [&'static str; 2] = ["sqrt", "log"];

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "sqrt" => Ok(Concave::Sqrt),
            "log" => Ok(Concave::Log),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown concave function {other:?}; expected one of {:?}",
                Concave::NAMES
            ))),
        }
    }

    /// `φ(m + a) − φ(m)` written so that every floating-point step is monotone in `m`.
    #[inline]
    fn increment(self, m: f64, a: f64) -> f64 {
        match self {
            Concave::Sqrt => {
                let den = (m + a).sqrt() + m.sqrt();
                if den > 0.0 {
                    a / den
                } else {
                    0.0
                }
            }
            Concave::Log => (a / (1.0 + m)).ln_1p(),
        }
    }
}

impl<'a> FeatureBased<'a> {
    pub fn new(x: crate::MatrixView<'a>, concave: Concave) -> Result<Self> {
        if let Some(p) = x.data().iter().position(|&v| v < 0.0) {
            return Err(CoreError::InvalidArgument(format!(
                "feature_based needs non-negative features (a modular score per feature); row {}, column {} is {}",
                p / x.d(),
                p % x.d(),
                x.data()[p]
            )));
        }
        Ok(Self {
            x: x.data(),
            d: x.d(),
            n: x.n(),
            concave,
            m: vec![0.0; x.d()],
        })
    }
}

impl SetFunction for FeatureBased<'_> {
    fn ground_size(&self) -> usize {
        self.n
    }
    fn gain(&self, j: usize) -> f64 {
        let row = &self.x[j * self.d..(j + 1) * self.d];
        row.iter()
            .zip(&self.m)
            .map(|(&a, &m)| self.concave.increment(m, a as f64))
            .sum()
    }
    fn commit(&mut self, j: usize) {
        let row = &self.x[j * self.d..(j + 1) * self.d];
        for (m, &a) in self.m.iter_mut().zip(row) {
            *m += a as f64;
        }
    }
    fn is_submodular(&self) -> bool {
        true
    }
}

/// Weighted sum of functions over the same ground set.
pub struct Mixture<'a> {
    parts: Vec<(f64, Box<dyn SetFunction + Send + 'a>)>,
}

impl<'a> Mixture<'a> {
    pub fn new(parts: Vec<(f64, Box<dyn SetFunction + Send + 'a>)>) -> Result<Self> {
        if parts.is_empty() {
            return Err(CoreError::InvalidArgument(
                "mixture needs at least one (function, weight) component".into(),
            ));
        }
        let n = parts[0].1.ground_size();
        for (w, f) in &parts {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(CoreError::InvalidArgument(format!(
                    "mixture weights must be finite and >= 0, got {w}"
                )));
            }
            if f.ground_size() != n {
                return Err(CoreError::Shape("mixture components must share one ground set".into()));
            }
        }
        Ok(Self { parts })
    }
}

impl SetFunction for Mixture<'_> {
    fn ground_size(&self) -> usize {
        self.parts[0].1.ground_size()
    }
    fn gain(&self, j: usize) -> f64 {
        self.parts.iter().map(|(w, f)| w * f.gain(j)).sum()
    }
    fn commit(&mut self, j: usize) {
        for (_, f) in self.parts.iter_mut() {
            f.commit(j);
        }
    }
    fn is_submodular(&self) -> bool {
        self.parts.iter().all(|(w, f)| *w == 0.0 || f.is_submodular())
    }
}

impl<T: SetFunction + ?Sized + Send> SetFunction for Box<T> {
    fn ground_size(&self) -> usize {
        (**self).ground_size()
    }
    fn gain(&self, j: usize) -> f64 {
        (**self).gain(j)
    }
    fn commit(&mut self, j: usize) {
        (**self).commit(j)
    }
    fn is_submodular(&self) -> bool {
        (**self).is_submodular()
    }
}

// ---------------------------------------------------------------------------------------------
// The `submodular` selector
// ---------------------------------------------------------------------------------------------

/// One function of the `submodular` selector with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FunctionSpec {
    FacilityLocation,
    GraphCut { lambda: f64 },
    SaturatedCoverage { alpha: f64 },
    FeatureBased { concave: Concave },
    LogDeterminant { reg: f64 },
    SumRedundancy,
    DisparitySum,
}

/// Parameters shared by the functions (each reads its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FunctionParams {
    pub lambda: f64,
    pub alpha: f64,
    pub concave: Concave,
    pub reg: f64,
}

impl Default for FunctionParams {
    fn default() -> Self {
        Self {
            lambda: 0.5,
            alpha: 0.1,
            concave: Concave::Sqrt,
            reg: 1.0,
        }
    }
}

impl FunctionSpec {
    /// Every name the `function=` option accepts (`mixture` combines the others).
    pub const NAMES: [&'static str; 8] = [
        "facility_location",
        "graph_cut",
        "saturated_coverage",
        "feature_based",
        "log_determinant",
        "sum_redundancy",
        "disparity_sum",
        "mixture",
    ];

    pub fn parse(name: &str, p: FunctionParams) -> Result<Self> {
        Ok(match name {
            "facility_location" => FunctionSpec::FacilityLocation,
            "graph_cut" => FunctionSpec::GraphCut { lambda: p.lambda },
            "saturated_coverage" => FunctionSpec::SaturatedCoverage { alpha: p.alpha },
            "feature_based" => FunctionSpec::FeatureBased { concave: p.concave },
            "log_determinant" => FunctionSpec::LogDeterminant { reg: p.reg },
            "sum_redundancy" => FunctionSpec::SumRedundancy,
            "disparity_sum" => FunctionSpec::DisparitySum,
            "mixture" => {
                return Err(CoreError::InvalidArgument(
                    "'mixture' cannot be a mixture component; list the component functions instead".into(),
                ))
            }
            other => {
                return Err(CoreError::InvalidArgument(format!(
                    "unknown submodular function {other:?}; expected one of {:?}",
                    FunctionSpec::NAMES
                )))
            }
        })
    }

    fn needs_kernel(self) -> bool {
        !matches!(self, FunctionSpec::FeatureBased { .. })
    }
}

/// Options of [`submodular`].
#[derive(Clone, Debug, PartialEq)]
pub struct SubmodularOptions {
    /// `(function, weight)` components; one component with weight 1 is the plain function.
    pub components: Vec<(FunctionSpec, f64)>,
    pub similarity: crate::facility::Similarity,
    pub optimizer: Optimizer,
    pub seed: u64,
    pub max_dense_bytes: u64,
    /// Sparse kNN mode / GreeDi shards: facility location alone only.
    pub neighbors: Option<usize>,
    pub partitions: usize,
    pub shuffle_partitions: bool,
}

/// Greedy selection of `k` rows maximizing the configured function or mixture.
///
/// Weights are cluster sizes for facility location alone (as in [`crate::facility`]), ones otherwise.
pub fn submodular(x: crate::MatrixView<'_>, k: usize, opts: &SubmodularOptions) -> Result<crate::Selection> {
    use crate::facility::{dense_kernel, facility_location, FacilityOptions, Similarity};
    let n = x.n();
    crate::matrix::check_k(k, n)?;
    if let [(FunctionSpec::FacilityLocation, w)] = opts.components[..] {
        if w > 0.0 && w.is_finite() {
            let fo = FacilityOptions {
                similarity: opts.similarity,
                neighbors: opts.neighbors,
                optimizer: opts.optimizer,
                seed: opts.seed,
                max_dense_bytes: opts.max_dense_bytes,
                partitions: opts.partitions,
                shuffle_partitions: opts.shuffle_partitions,
            };
            let mut sel = facility_location(x, k, &fo)?;
            sel.gains.iter_mut().for_each(|g| *g *= w);
            sel.objective *= w;
            return Ok(sel);
        }
    }
    if opts.neighbors.is_some() || opts.partitions > 1 {
        return Err(CoreError::InvalidArgument(
            "neighbors= (sparse kNN) and partitions= (GreeDi) are supported for function='facility_location' alone"
                .into(),
        ));
    }
    let kernel = if opts.components.iter().any(|(f, _)| f.needs_kernel()) {
        Some(dense_kernel(x, opts.similarity, opts.max_dense_bytes)?)
    } else {
        None
    };
    let psd = matches!(opts.similarity, Similarity::Cosine | Similarity::Rbf { .. });
    let mut parts: Vec<(f64, Box<dyn SetFunction + Send + '_>)> = Vec::with_capacity(opts.components.len());
    for &(spec, w) in &opts.components {
        let f: Box<dyn SetFunction + Send + '_> = match (spec, &kernel) {
            (FunctionSpec::FeatureBased { concave }, _) => Box::new(FeatureBased::new(x, concave)?),
            (_, None) => return Err(CoreError::InvalidArgument("internal: kernel missing".into())),
            (FunctionSpec::FacilityLocation, Some((kern, _))) => Box::new(DenseFacility::new(kern)),
            (FunctionSpec::GraphCut { lambda }, Some((kern, _))) => Box::new(GraphCut::new(kern, lambda)?),
            (FunctionSpec::SaturatedCoverage { alpha }, Some((kern, _))) => {
                Box::new(SaturatedCoverage::new(kern, alpha)?)
            }
            (FunctionSpec::SumRedundancy, Some((kern, _))) => Box::new(SumRedundancy::new(kern)),
            (FunctionSpec::DisparitySum, Some((kern, top))) => Box::new(DisparitySum::new(kern, *top as f64)),
            (FunctionSpec::LogDeterminant { reg }, Some((kern, _))) => {
                let needed = (n as u64).saturating_mul(k as u64).saturating_mul(8);
                if needed > opts.max_dense_bytes {
                    return Err(CoreError::memory_budget(
                        format!("log_determinant's incremental Cholesky factor ({n} x {k} float64)"),
                        needed,
                        opts.max_dense_bytes,
                        "select fewer elements, or raise max_dense_bytes",
                    ));
                }
                Box::new(LogDeterminant::new(kern, reg, k, psd)?)
            }
        };
        parts.push((w, f));
    }
    let mut f = Mixture::new(parts)?;
    let res = maximize(&mut f, k, opts.optimizer, opts.seed)?;
    let objective = res.objective();
    Ok(crate::Selection {
        weights: vec![1.0; k],
        indices: res.order,
        gains: res.gains,
        objective,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::{Similarity, DEFAULT_MAX_DENSE_BYTES};
    use crate::MatrixView;
    use proptest::prelude::*;

    fn data(n: usize, d: usize, seed: u64, nonneg: bool) -> Vec<f32> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * d)
            .map(|_| {
                if nonneg {
                    rng.random_range(0.0f32..1.0)
                } else {
                    rng.random_range(-1.0f32..1.0)
                }
            })
            .collect()
    }

    /// f64 rbf kernel and the brute-force value of each function.
    fn brute(x: &[f32], n: usize, d: usize, gamma: f64, spec: FunctionSpec, s_set: &[usize]) -> f64 {
        let k = |i: usize, j: usize| -> f64 {
            let d2: f64 = (0..d)
                .map(|t| (x[i * d + t] as f64 - x[j * d + t] as f64).powi(2))
                .sum();
            (-gamma * d2).exp()
        };
        match spec {
            FunctionSpec::FacilityLocation => (0..n).map(|i| s_set.iter().map(|&j| k(i, j)).fold(0.0, f64::max)).sum(),
            FunctionSpec::GraphCut { lambda } => {
                let a: f64 = (0..n)
                    .flat_map(|i| s_set.iter().map(move |&j| (i, j)))
                    .map(|(i, j)| k(i, j))
                    .sum();
                let b: f64 = s_set
                    .iter()
                    .flat_map(|&i| s_set.iter().map(move |&j| (i, j)))
                    .map(|(i, j)| k(i, j))
                    .sum();
                a - lambda * b
            }
            FunctionSpec::SaturatedCoverage { alpha } => (0..n)
                .map(|i| {
                    let c: f64 = s_set.iter().map(|&j| k(i, j)).sum();
                    let t: f64 = (0..n).map(|j| k(i, j)).sum();
                    c.min(alpha * t)
                })
                .sum(),
            FunctionSpec::FeatureBased { concave } => (0..d)
                .map(|u| {
                    let m: f64 = s_set.iter().map(|&j| x[j * d + u] as f64).sum();
                    match concave {
                        Concave::Sqrt => m.sqrt(),
                        Concave::Log => m.ln_1p(),
                    }
                })
                .sum(),
            FunctionSpec::LogDeterminant { reg } => {
                // log det by Cholesky in f64
                let m = s_set.len();
                let mut a: Vec<f64> = (0..m * m)
                    .map(|p| k(s_set[p / m], s_set[p % m]) + if p / m == p % m { reg } else { 0.0 })
                    .collect();
                let mut logdet = 0.0;
                for c in 0..m {
                    let mut v = a[c * m + c];
                    for t in 0..c {
                        v -= a[c * m + t] * a[c * m + t];
                    }
                    let l = v.sqrt();
                    logdet += 2.0 * l.ln();
                    a[c * m + c] = l;
                    for r in c + 1..m {
                        let mut w = a[r * m + c];
                        for t in 0..c {
                            w -= a[r * m + t] * a[c * m + t];
                        }
                        a[r * m + c] = w / l;
                    }
                }
                logdet
            }
            FunctionSpec::SumRedundancy => {
                let smax = (0..n)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .map(|(i, j)| k(i, j))
                    .fold(0.0, f64::max);
                let pairs: f64 = s_set
                    .iter()
                    .enumerate()
                    .flat_map(|(a, &i)| s_set[a + 1..].iter().map(move |&j| (i, j)))
                    .map(|(i, j)| k(i, j))
                    .sum();
                (n as f64 - 1.0) * smax * s_set.len() as f64 - pairs
            }
            FunctionSpec::DisparitySum => s_set
                .iter()
                .enumerate()
                .flat_map(|(a, &i)| s_set[a + 1..].iter().map(move |&j| (i, j)))
                .map(|(i, j)| 1.0 - k(i, j))
                .sum(),
        }
    }

    fn specs() -> Vec<FunctionSpec> {
        vec![
            FunctionSpec::FacilityLocation,
            FunctionSpec::GraphCut { lambda: 0.4 },
            FunctionSpec::GraphCut { lambda: 0.9 },
            FunctionSpec::SaturatedCoverage { alpha: 0.2 },
            FunctionSpec::FeatureBased { concave: Concave::Sqrt },
            FunctionSpec::FeatureBased { concave: Concave::Log },
            FunctionSpec::LogDeterminant { reg: 0.5 },
            FunctionSpec::SumRedundancy,
            FunctionSpec::DisparitySum,
        ]
    }

    fn opts(components: Vec<(FunctionSpec, f64)>, optimizer: Optimizer, gamma: f64) -> SubmodularOptions {
        SubmodularOptions {
            components,
            similarity: Similarity::Rbf { gamma },
            optimizer,
            seed: 0,
            max_dense_bytes: DEFAULT_MAX_DENSE_BYTES,
            neighbors: None,
            partitions: 1,
            shuffle_partitions: false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn objectives_match_brute_force_and_lazy_equals_naive(n in 3usize..40, d in 1usize..5, k in 1usize..8, seed in 0u64..300) {
            let k = k.min(n);
            let x = data(n, d, seed, true);
            let xv = MatrixView::new(&x, n, d).unwrap();
            let gamma = 1.3;
            for spec in specs() {
                let naive = submodular(xv, k, &opts(vec![(spec, 1.0)], Optimizer::Naive, gamma)).unwrap();
                let want = brute(&x, n, d, gamma, spec, &naive.indices);
                prop_assert!((naive.objective - want).abs() <= 1e-4 * want.abs().max(1.0), "{:?}: {} vs {}", spec, naive.objective, want);
                // the objective is the running sum of the gains: every prefix must match f(prefix)
                let mut acc = 0.0;
                for t in 0..k {
                    acc += naive.gains[t];
                    let w = brute(&x, n, d, gamma, spec, &naive.indices[..=t]);
                    prop_assert!((acc - w).abs() <= 1e-4 * w.abs().max(1.0), "{:?} prefix {}", spec, t);
                }
                if spec == FunctionSpec::DisparitySum {
                    prop_assert!(submodular(xv, k, &opts(vec![(spec, 1.0)], Optimizer::Lazy, gamma)).is_err());
                    continue;
                }
                let lazy = submodular(xv, k, &opts(vec![(spec, 1.0)], Optimizer::Lazy, gamma)).unwrap();
                prop_assert_eq!(&lazy.indices, &naive.indices, "{:?}", spec);
                // exact greedy on a submodular function: gains never increase
                for w in naive.gains.windows(2) {
                    prop_assert!(w[1] <= w[0] + 1e-12, "{:?}", spec);
                }
            }
            // a mixture of submodular parts is submodular: lazy == naive, and the value is the weighted sum
            let mix = vec![(FunctionSpec::FacilityLocation, 1.0), (FunctionSpec::LogDeterminant { reg: 1.0 }, 0.5), (FunctionSpec::FeatureBased { concave: Concave::Sqrt }, 2.0)];
            let a = submodular(xv, k, &opts(mix.clone(), Optimizer::Naive, gamma)).unwrap();
            let b = submodular(xv, k, &opts(mix.clone(), Optimizer::Lazy, gamma)).unwrap();
            prop_assert_eq!(&a.indices, &b.indices);
            let want: f64 = mix.iter().map(|&(f, w)| w * brute(&x, n, d, gamma, f, &a.indices)).sum();
            prop_assert!((a.objective - want).abs() <= 1e-4 * want.abs().max(1.0));
        }
    }

    #[test]
    fn monotone_functions_have_non_decreasing_objectives() {
        let (n, d) = (120, 3);
        let x = data(n, d, 4, true);
        let xv = MatrixView::new(&x, n, d).unwrap();
        for spec in [
            FunctionSpec::FacilityLocation,
            FunctionSpec::GraphCut { lambda: 0.5 },
            FunctionSpec::SaturatedCoverage { alpha: 0.1 },
            FunctionSpec::FeatureBased { concave: Concave::Log },
            FunctionSpec::SumRedundancy,
        ] {
            let sel = submodular(xv, 30, &opts(vec![(spec, 1.0)], Optimizer::Lazy, 2.0)).unwrap();
            assert!(sel.gains.iter().all(|&g| g >= 0.0), "{spec:?}: {:?}", sel.gains);
        }
    }

    #[test]
    fn stochastic_is_within_a_few_percent_of_lazy() {
        let (n, d, k) = (1500, 4, 40);
        let x = data(n, d, 9, true);
        let xv = MatrixView::new(&x, n, d).unwrap();
        for spec in [
            FunctionSpec::FacilityLocation,
            FunctionSpec::SaturatedCoverage { alpha: 0.1 },
            FunctionSpec::FeatureBased { concave: Concave::Sqrt },
        ] {
            let lazy = submodular(xv, k, &opts(vec![(spec, 1.0)], Optimizer::Lazy, 2.0)).unwrap();
            let sto = submodular(
                xv,
                k,
                &opts(vec![(spec, 1.0)], Optimizer::Stochastic { epsilon: 0.01 }, 2.0),
            )
            .unwrap();
            assert!(
                sto.objective >= 0.97 * lazy.objective,
                "{spec:?}: {} vs {}",
                sto.objective,
                lazy.objective
            );
        }
    }

    #[test]
    fn bad_options_are_refused() {
        let x = data(10, 2, 1, false);
        let xv = MatrixView::new(&x, 10, 2).unwrap();
        assert!(Optimizer::parse("greedy", 0.01)
            .unwrap_err()
            .to_string()
            .contains("lazy"));
        assert!(Optimizer::parse("stochastic", 0.0).is_err());
        assert!(FunctionSpec::parse("cut", FunctionParams::default())
            .unwrap_err()
            .to_string()
            .contains("graph_cut"));
        // negative features for feature_based
        let fb = opts(
            vec![(FunctionSpec::FeatureBased { concave: Concave::Sqrt }, 1.0)],
            Optimizer::Naive,
            1.0,
        );
        assert!(submodular(xv, 3, &fb).is_err());
        // graph cut on a kernel with negative similarities is not submodular: lazy refused, naive runs
        let mut gc = opts(
            vec![(FunctionSpec::GraphCut { lambda: 0.5 }, 1.0)],
            Optimizer::Lazy,
            1.0,
        );
        gc.similarity = Similarity::Cosine;
        assert!(submodular(xv, 3, &gc).is_err());
        gc.optimizer = Optimizer::Naive;
        assert_eq!(submodular(xv, 3, &gc).unwrap().indices.len(), 3);
    }

    #[test]
    fn identical_on_one_and_two_threads() {
        let (n, d) = (800, 5);
        let x = data(n, d, 2, true);
        let mix = vec![
            (FunctionSpec::GraphCut { lambda: 0.3 }, 1.0),
            (FunctionSpec::LogDeterminant { reg: 1.0 }, 1.0),
        ];
        let run = |threads: usize, optimizer| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                submodular(
                    MatrixView::new(&x, n, d).unwrap(),
                    25,
                    &opts(mix.clone(), optimizer, 0.5),
                )
                .unwrap()
            })
        };
        for o in [
            Optimizer::Naive,
            Optimizer::Lazy,
            Optimizer::Stochastic { epsilon: 0.05 },
        ] {
            assert_eq!(run(1, o), run(2, o));
        }
    }
}
