//! Exact k-nearest-neighbour graphs and blocked distance passes that never materialize `n × n`.
//!
//! Squared Euclidean distances come from `‖x‖² + ‖y‖² − 2·x·y`: a tile of `ROW_BLOCK` rows against
//! `COL_BLOCK` columns is one cache-blocked f32 GEMM (`matrixmultiply::sgemm`), and each row's top-K
//! is updated straight from the tile while it is still in cache. For the kNN graph only tiles on or
//! above the block diagonal are computed, and each is offered to both endpoints (row and column), which
//! halves the GEMM work. Row blocks run in parallel with rayon; the tiling is fixed, so every distance
//! is bit-identical for any number of threads, and each top-K keeps the k smallest (distance, index)
//! pairs under a total order, so the graph is too. Ties are broken by the smaller index.

use crate::error::{CoreError, Result};
use crate::matrix::{check_k, MatrixView};
use rayon::prelude::*;
use std::sync::Mutex;

/// Rows per parallel work item (and per GEMM tile).
pub(crate) const ROW_BLOCK: usize = 128;
/// Columns per GEMM tile: 128 × 1024 f32 = 512 KiB, which stays in L2 while top-K reads it.
pub(crate) const COL_BLOCK: usize = 1024;

/// A `k`-nearest-neighbour graph in CSR-like layout: row `i`'s neighbours are
/// `indices[i*k..(i+1)*k]`, sorted by (distance, index).
///
/// Each point counts as its own neighbour (distance exactly 0), because facility location needs the
/// self-similarity `s_ii`. When a point has `k` or more exact duplicates with smaller indices, those
/// duplicates (also at distance 0) may take all `k` slots; their similarity equals the self term.
#[derive(Clone, Debug, PartialEq)]
pub struct KnnGraph {
    pub n: usize,
    pub k: usize,
    /// `n * k` neighbour ids.
    pub indices: Vec<u32>,
    /// `n * k` Euclidean distances (not squared), non-decreasing within a row.
    pub distances: Vec<f32>,
}

impl KnnGraph {
    pub fn neighbors(&self, i: usize) -> (&[u32], &[f32]) {
        (
            &self.indices[i * self.k..(i + 1) * self.k],
            &self.distances[i * self.k..(i + 1) * self.k],
        )
    }
}

/// Squared row norms, accumulated in f64 so that they do not depend on `d`'s rounding order.
pub(crate) fn row_sq_norms(x: MatrixView<'_>) -> Vec<f32> {
    (0..x.n())
        .into_par_iter()
        .map(|i| x.row(i).iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32)
        .collect()
}

/// `out[r * nb + c] = a_r · b_c` for `a` = `ma` rows and `b` = `nb` rows, both `(·, d)` row-major.
pub(crate) fn dot_tile(a: &[f32], ma: usize, b: &[f32], nb: usize, d: usize, out: &mut [f32]) {
    debug_assert!(a.len() >= ma * d && b.len() >= nb * d && out.len() >= ma * nb);
    if ma == 0 || nb == 0 {
        return;
    }
    // SAFETY: the slices hold at least ma*d, nb*d and ma*nb elements (asserted by the callers'
    // construction), the strides describe exactly those row-major layouts, and `out` does not alias.
    unsafe {
        matrixmultiply::sgemm(
            ma,
            d,
            nb,
            1.0,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            nb as isize,
            1,
        );
    }
}

/// Turns a dot-product tile into squared distances in place, clamped at 0, with exact zeros on the
/// diagonal (global rows `r0..`, columns `c0..`).
pub(crate) fn dots_to_sq_dists(tile: &mut [f32], ma: usize, nb: usize, r0: usize, c0: usize, na: &[f32], nbn: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2 (checked just above).
            return unsafe { dots_to_sq_dists_avx2(tile, ma, nb, r0, c0, na, nbn) };
        }
    }
    dots_to_sq_dists_lanes(tile, ma, nb, r0, c0, na, nbn)
}

/// The same arithmetic compiled for AVX2 (no FMA contraction in Rust, so bit-identical).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_to_sq_dists_avx2(tile: &mut [f32], ma: usize, nb: usize, r0: usize, c0: usize, na: &[f32], nbn: &[f32]) {
    dots_to_sq_dists_lanes(tile, ma, nb, r0, c0, na, nbn)
}

#[inline(always)]
fn dots_to_sq_dists_lanes(tile: &mut [f32], ma: usize, nb: usize, r0: usize, c0: usize, na: &[f32], nbn: &[f32]) {
    for r in 0..ma {
        let row = &mut tile[r * nb..(r + 1) * nb];
        let nr = na[r];
        for (v, &nc) in row.iter_mut().zip(nbn) {
            let d2 = nr + nc - 2.0 * *v;
            *v = if d2 > 0.0 { d2 } else { 0.0 };
        }
        let gi = r0 + r;
        if gi >= c0 && gi < c0 + nb {
            row[gi - c0] = 0.0;
        }
    }
}

/// Per-row buffer of the `k` best (distance², index) pairs seen so far.
///
/// Candidates at or below the current bound are appended to an unsorted buffer of `2k`; when it is
/// full, a selection (`select_nth_unstable`) keeps its `k` smallest and lowers the bound to the
/// largest of them. That is `O(1)` amortized per accepted candidate, where the sorted insertion it
/// replaces shifted up to `k` entries per candidate (40% of the 50k-row graph's time). The kept set
/// is the `k` smallest pairs under the lexicographic (distance, index) order, a total order, so the
/// result does not depend on the order in which candidates arrive.
struct TopK {
    k: usize,
    buf: Vec<(f32, u32)>,
    /// The k-th smallest distance kept at the last compaction (`inf` before the first one): a
    /// candidate above it cannot enter.
    bound: f32,
}

#[inline]
fn pair_order(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            buf: Vec::with_capacity(2 * k),
            bound: f32::INFINITY,
        }
    }

    #[inline]
    fn push(&mut self, d: f32, j: u32) {
        if d > self.bound {
            return;
        }
        self.buf.push((d, j));
        if self.buf.len() == 2 * self.k {
            self.compact();
        }
    }

    #[cold]
    fn compact(&mut self) {
        let k = self.k;
        self.buf.select_nth_unstable_by(k - 1, pair_order);
        self.buf.truncate(k);
        self.bound = self.buf[k - 1].0;
    }

    /// Distances above this cannot enter (equal ones can, with a smaller index).
    #[inline]
    fn bound(&self) -> f32 {
        self.bound
    }

    /// The `k` best pairs sorted by (distance, index), padded with `(inf, u32::MAX)` when fewer came.
    fn finish(mut self) -> Vec<(f32, u32)> {
        self.buf.sort_unstable_by(pair_order);
        self.buf.truncate(self.k);
        self.buf.resize(self.k, (f32::INFINITY, u32::MAX));
        self.buf
    }
}

/// Offers one row of a distance tile to its top-K, skipping 16-wide chunks whose minimum cannot
/// enter (almost all of them once the buffer is full).
fn scan_row(heap: &mut TopK, dists: &[f32], c0: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2 (checked just above).
            return unsafe { scan_row_avx2(heap, dists, c0) };
        }
    }
    scan_row_chunks(heap, dists, c0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_row_avx2(heap: &mut TopK, dists: &[f32], c0: usize) {
    scan_row_chunks(heap, dists, c0)
}

#[inline(always)]
fn scan_row_chunks(heap: &mut TopK, dists: &[f32], c0: usize) {
    const CHUNK: usize = 16;
    for (b, chunk) in dists.chunks(CHUNK).enumerate() {
        // compare-select (not f32::min, whose NaN rules block vectorization); distances are never NaN
        let m = chunk.iter().fold(f32::INFINITY, |a, &v| if v < a { v } else { a });
        if m <= heap.bound() {
            for (c, &dist) in chunk.iter().enumerate() {
                heap.push(dist, (c0 + b * CHUNK + c) as u32);
            }
        }
    }
}

/// Offers the columns `c..c + heaps.len()` of a distance tile (rows `r0..r0 + rows`) to those
/// columns' own top-K buffers, a tile row at a time: contiguous loads compared 16 at a time with the
/// columns' current bounds, so only the candidates that can enter reach a buffer (walking each
/// column down the tile, a strided read per candidate, was a third of the graph's time).
fn scan_columns(heaps: &mut [TopK], t: &[f32], rows: usize, cols: usize, c: usize, r0: usize, bounds: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2 (checked just above).
            return unsafe { scan_columns_avx2(heaps, t, rows, cols, c, r0, bounds) };
        }
    }
    scan_columns_lanes(heaps, t, rows, cols, c, r0, bounds)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_columns_avx2(
    heaps: &mut [TopK],
    t: &[f32],
    rows: usize,
    cols: usize,
    c: usize,
    r0: usize,
    bounds: &mut [f32],
) {
    scan_columns_lanes(heaps, t, rows, cols, c, r0, bounds)
}

#[inline(always)]
fn scan_columns_lanes(
    heaps: &mut [TopK],
    t: &[f32],
    rows: usize,
    cols: usize,
    c: usize,
    r0: usize,
    bounds: &mut [f32],
) {
    let w = heaps.len();
    let bounds = &mut bounds[..w];
    for (b, h) in bounds.iter_mut().zip(heaps.iter()) {
        *b = h.bound();
    }
    for r in 0..rows {
        let row = &t[r * cols + c..r * cols + c + w];
        for (ch, vals) in row.chunks(16).enumerate() {
            let mut hits = 0u32;
            for (i, (v, b)) in vals.iter().zip(&bounds[ch * 16..]).enumerate() {
                hits |= u32::from(v <= b) << i;
            }
            while hits != 0 {
                let i = ch * 16 + hits.trailing_zeros() as usize;
                hits &= hits - 1;
                heaps[i].push(row[i], (r0 + r) as u32);
                bounds[i] = heaps[i].bound();
            }
        }
    }
}

/// Calls `visit(r0, rows, c0, cols, sq_dist_tile)` for every (row block, column tile) pair, row blocks
/// in parallel; the visitor of one row block sees its column tiles in increasing order.
fn for_each_row_block<S, F>(
    x: MatrixView<'_>,
    y: MatrixView<'_>,
    ny: &[f32],
    nx: &[f32],
    init: impl Fn() -> S + Sync,
    visit: F,
) -> Vec<S>
where
    S: Send,
    F: Fn(&mut S, usize, usize, usize, usize, &[f32]) + Sync,
{
    let (n, m, d) = (x.n(), y.n(), x.d());
    let blocks = n.div_ceil(ROW_BLOCK);
    (0..blocks)
        .into_par_iter()
        .map(|b| {
            let r0 = b * ROW_BLOCK;
            let rows = ROW_BLOCK.min(n - r0);
            let a = &x.data()[r0 * d..(r0 + rows) * d];
            let mut tile = vec![0.0f32; rows * COL_BLOCK.min(m)];
            let mut state = init();
            let mut c0 = 0;
            while c0 < m {
                let cols = COL_BLOCK.min(m - c0);
                let t = &mut tile[..rows * cols];
                dot_tile(a, rows, &y.data()[c0 * d..(c0 + cols) * d], cols, d, t);
                let same = std::ptr::eq(x.data().as_ptr(), y.data().as_ptr());
                let (dr0, dc0) = if same { (r0, c0) } else { (usize::MAX / 2, 0) };
                dots_to_sq_dists(t, rows, cols, dr0, dc0, &nx[r0..r0 + rows], &ny[c0..c0 + cols]);
                visit(&mut state, r0, rows, c0, cols, t);
                c0 += cols;
            }
            state
        })
        .collect()
}

/// Exact `k`-nearest-neighbour graph of the rows of `x` (self included, see [`KnnGraph`]).
///
/// Memory: the output (`8·n·k` bytes) plus one `ROW_BLOCK × COL_BLOCK` tile per thread; never `n²`.
pub fn knn_graph(x: MatrixView<'_>, k: usize) -> Result<KnnGraph> {
    let n = x.n();
    check_k(k, n).map_err(|_| CoreError::InvalidArgument(format!("neighbors must be in 1..={n} (n), got {k}")))?;
    if n > u32::MAX as usize {
        return Err(CoreError::Shape(format!(
            "kNN graph supports at most {} rows, got {n}",
            u32::MAX
        )));
    }
    let d = x.d();
    let norms = row_sq_norms(x);
    let blocks = n.div_ceil(ROW_BLOCK);
    let heaps: Vec<Mutex<Vec<TopK>>> = (0..blocks)
        .map(|b| Mutex::new((0..ROW_BLOCK.min(n - b * ROW_BLOCK)).map(|_| TopK::new(k)).collect()))
        .collect();
    let lock = |b: usize| heaps[b].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Each distance tile is computed once, for row block b against the columns from b's first row on,
    // and offered to both endpoints: half the GEMM work of the all-pairs pass. The buffers keep the
    // k smallest (distance, index) pairs under a total order, so arrival order does not matter.
    (0..blocks).into_par_iter().for_each(|b| {
        let r0 = b * ROW_BLOCK;
        let rows = ROW_BLOCK.min(n - r0);
        let a = &x.data()[r0 * d..(r0 + rows) * d];
        let mut tile = vec![0.0f32; rows * COL_BLOCK];
        let mut bounds = vec![0.0f32; ROW_BLOCK];
        let mut c0 = r0;
        while c0 < n {
            let cols = COL_BLOCK.min(n - c0);
            let t = &mut tile[..rows * cols];
            dot_tile(a, rows, &x.data()[c0 * d..(c0 + cols) * d], cols, d, t);
            dots_to_sq_dists(t, rows, cols, r0, c0, &norms[r0..r0 + rows], &norms[c0..c0 + cols]);
            for (r, heap) in lock(b).iter_mut().enumerate() {
                scan_row(heap, &t[r * cols..(r + 1) * cols], c0);
            }
            // Columns past block b: their own blocks start later, so they see these pairs only here.
            let first = (r0 + rows).max(c0) - c0;
            if first < cols {
                let mut c = first;
                while c < cols {
                    let jb = (c0 + c) / ROW_BLOCK;
                    let end = ((jb + 1) * ROW_BLOCK).min(c0 + cols) - c0;
                    let mut target = lock(jb);
                    let heaps = &mut target[c0 + c - jb * ROW_BLOCK..c0 + end - jb * ROW_BLOCK];
                    scan_columns(heaps, t, rows, cols, c, r0, &mut bounds);
                    c = end;
                }
            }
            c0 += cols;
        }
    });
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for block in heaps {
        for heap in block.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            for (dist, j) in heap.finish() {
                indices.push(j);
                distances.push(dist.sqrt());
            }
        }
    }
    Ok(KnnGraph {
        n,
        k,
        indices,
        distances,
    })
}

/// Largest pairwise Euclidean distance in `x`, by a blocked pass (`O(n²d)` time, `O(n)` memory).
pub fn max_pairwise_distance(x: MatrixView<'_>) -> f32 {
    let norms = row_sq_norms(x);
    let per_block = for_each_row_block(
        x,
        x,
        &norms,
        &norms,
        || 0.0f32,
        |best, _, _, _, _, tile| {
            *best = tile.iter().fold(*best, |m, &v| if v > m { v } else { m });
        },
    );
    per_block.into_iter().fold(0.0f32, f32::max).sqrt()
}

/// Squared distances from every row of `x` to every row of `y`, visited tile by tile (rows of `x` in
/// parallel blocks). Used to assign points to selected elements without an `n × k` matrix.
pub(crate) fn for_each_sq_dist_block<S, F>(
    x: MatrixView<'_>,
    y: MatrixView<'_>,
    init: impl Fn() -> S + Sync,
    visit: F,
) -> Vec<S>
where
    S: Send,
    F: Fn(&mut S, usize, usize, usize, usize, &[f32]) + Sync,
{
    let nx = row_sq_norms(x);
    let ny = row_sq_norms(y);
    for_each_row_block(x, y, &ny, &nx, init, visit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(x: &[f32], n: usize, d: usize) -> Vec<Vec<(f64, u32)>> {
        (0..n)
            .map(|i| {
                let mut all: Vec<(f64, u32)> = (0..n)
                    .map(|j| {
                        let s: f64 = (0..d)
                            .map(|t| (x[i * d + t] as f64 - x[j * d + t] as f64).powi(2))
                            .sum();
                        (s.sqrt(), j as u32)
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all
            })
            .collect()
    }

    /// The graph against sorted brute-force distances: each slot's distance within 1e-3, and its id the brute-force
    /// one unless another point lies within rounding of that distance.
    fn check_against_brute(x: &[f32], n: usize, d: usize, k: usize) -> std::result::Result<(), String> {
        let g = knn_graph(MatrixView::new(x, n, d).unwrap(), k).unwrap();
        for (i, want) in brute(x, n, d).iter().enumerate() {
            let (ids, ds) = g.neighbors(i);
            for t in 0..k {
                if (ds[t] as f64 - want[t].0).abs() >= 1e-3 {
                    return Err(format!("row {i} slot {t}: {} vs {}", ds[t], want[t].0));
                }
                if ids[t] != want[t].1 {
                    let bd = want.iter().find(|p| p.1 == ids[t]).map(|p| p.0);
                    if !bd.is_some_and(|v| (v - want[t].0).abs() < 1e-3) {
                        return Err(format!(
                            "row {i} slot {t}: id {} is not within rounding of {}",
                            ids[t], want[t].1
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn matches_brute_force(n in 1usize..300, d in 1usize..12, k in 1usize..12, seed in 0u64..1000) {
            let k = k.min(n);
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            check_against_brute(&x, n, d, k).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn matches_brute_force_across_several_column_tiles() {
        use rand::{Rng, SeedableRng};
        let (n, d, k) = (2300, 3, 6);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        check_against_brute(&x, n, d, k).unwrap();
    }

    #[test]
    fn self_is_first_and_ties_prefer_smaller_index() {
        // points on a line: 0, 1, 2 (twice), 3; row of index 2 has a tie with index 3 at distance 0
        let x = vec![0.0f32, 1.0, 2.0, 2.0, 3.0];
        let g = knn_graph(MatrixView::new(&x, 5, 1).unwrap(), 3).unwrap();
        assert_eq!(g.neighbors(0).0, &[0, 1, 2]);
        assert_eq!(g.neighbors(3).0, &[2, 3, 1]);
        assert_eq!(g.neighbors(4).0, &[4, 2, 3]);
        assert_eq!(g.neighbors(0).1[0], 0.0);
    }

    #[test]
    fn thread_count_does_not_change_the_graph() {
        let (n, d) = (1500, 7);
        let x: Vec<f32> = (0..n * d).map(|t| ((t * 7919) % 1013) as f32 * 0.37).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| knn_graph(MatrixView::new(&x, n, d).unwrap(), 9).unwrap())
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn max_distance_matches_brute_force() {
        let (n, d) = (300, 3);
        let x: Vec<f32> = (0..n * d).map(|t| ((t * 31) % 101) as f32 / 7.0).collect();
        let mut best = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..d)
                    .map(|t| (x[i * d + t] as f64 - x[j * d + t] as f64).powi(2))
                    .sum();
                best = best.max(s.sqrt());
            }
        }
        let got = max_pairwise_distance(MatrixView::new(&x, n, d).unwrap()) as f64;
        assert!((got - best).abs() < 1e-3 * best.max(1.0), "{got} vs {best}");
    }

    #[test]
    fn rejects_bad_k() {
        let x = vec![0.0f32; 6];
        assert!(knn_graph(MatrixView::new(&x, 3, 2).unwrap(), 0).is_err());
        assert!(knn_graph(MatrixView::new(&x, 3, 2).unwrap(), 4).is_err());
    }
}
