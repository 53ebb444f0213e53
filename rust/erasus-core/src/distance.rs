//! Row distance kernels shared by the geometric selectors (k-center, herding, k-means).
//!
//! Every kernel accumulates into 16 independent lanes and then folds them with a fixed tree, so the
//! float result is one well-defined function of the inputs: the same bits whether LLVM emits SSE2,
//! AVX2 or AVX-512 for it (Rust never contracts `a * b + c` into an FMA), whatever thread runs it.
//! That is what lets a pruned loop and a naive loop agree bit for bit.

use rayon::prelude::*;

/// Width of the accumulator; 16 f32 = one AVX-512 register or two AVX2 registers.
const LANES: usize = 16;

#[inline(always)]
fn fold(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Squared Euclidean distance `sum_j (a_j - b_j)^2`, computed on the differences (no
/// `|a|^2 + |b|^2 - 2ab` expansion, which cancels catastrophically for near points).
#[inline(always)]
pub fn sq_euclidean(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..LANES {
            let t = x[j] - y[j];
            acc[j] += t * t;
        }
    }
    for (j, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let t = x - y;
        acc[j] += t * t;
    }
    fold(acc)
}

/// Inner product `sum_j a_j b_j` with the same fixed summation order as [`sq_euclidean`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    for (j, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[j] += x * y;
    }
    fold(acc)
}

/// Cosine distance `1 - <a, b> / (|a| |b|)` from precomputed norms, clamped at 0 against rounding.
/// A zero row has no direction: its distance to every row (itself included) is defined as 1.
#[inline(always)]
pub fn cosine_distance(a: &[f32], b: &[f32], norm_a: f32, norm_b: f32) -> f32 {
    if norm_a == 0.0 || norm_b == 0.0 {
        return 1.0;
    }
    (1.0 - dot(a, b) / (norm_a * norm_b)).max(0.0)
}

/// Instruction set picked once per call; all variants compute identical bits (see module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Generic,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest vector unit this CPU has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Generic
    }
}

/// Compiles a hot `#[inline(always)]` loop body three times (generic, AVX2, AVX-512) and emits a
/// function `name(isa, args...)` that runs the variant `isa` names. Wheels stay portable (no
/// `target-cpu=native`) and still use the vector width the machine has.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $imp:path) => {
        $(#[$meta])*
        $vis fn $name(isa: $crate::distance::Isa, $($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                match isa {
                    // SAFETY: `Isa::detect` returned these variants only after checking the CPU has the feature.
                    $crate::distance::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::distance::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::distance::Isa::Generic => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            $imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Best `(value, index)` of two candidates for an arg-max: larger value, then smaller index.
/// Associative and commutative, so a parallel reduction gives the same answer for any split.
#[inline]
pub fn argmax_pair(a: (f32, usize), b: (f32, usize)) -> (f32, usize) {
    if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
        b
    } else {
        a
    }
}

/// Best `(value, index)` for an arg-min: smaller value, then smaller index.
#[inline]
pub fn argmin_pair(a: (f32, usize), b: (f32, usize)) -> (f32, usize) {
    if b.0 < a.0 || (b.0 == a.0 && b.1 < a.1) {
        b
    } else {
        a
    }
}

/// Rows per parallel task. Fixed (not derived from the thread count) so the work split, and with
/// it every reduction, is the same on any pool.
pub const CHUNK_ROWS: usize = 2048;

/// A pass over fewer matrix elements than this runs its chunks on the calling thread: waking the
/// pool costs more than it saves (the per-step passes of a greedy run thousands of times). The
/// chunks, and so the result, are the same either way.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// Maps `f` over `rows` in chunks of [`CHUNK_ROWS`] rows (each with its chunk of `per_row`) and
/// reduces the results with `reduce`, which must be associative and commutative (arg-min/max with
/// index ties), so the answer is the same in parallel or serially, on any pool.
pub fn reduce_row_chunks<T, P, F, R>(rows: &[f32], d: usize, per_row: &[P], identity: T, f: F, reduce: R) -> T
where
    T: Send + Sync + Copy,
    P: Sync,
    F: Fn(usize, &[f32], &[P]) -> T + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    let work = |(c, (r, p)): (usize, (&[f32], &[P]))| f(c * CHUNK_ROWS, r, p);
    if rows.len() >= PARALLEL_MIN_ELEMENTS {
        rows.par_chunks(CHUNK_ROWS * d)
            .zip(per_row.par_chunks(CHUNK_ROWS))
            .enumerate()
            .map(work)
            .reduce(|| identity, reduce)
    } else {
        rows.chunks(CHUNK_ROWS * d)
            .zip(per_row.chunks(CHUNK_ROWS))
            .enumerate()
            .map(work)
            .fold(identity, reduce)
    }
}

#[inline(always)]
fn nearest_row_impl(rows: &[f32], d: usize, start: usize, excluded: &[bool], target: &[f32]) -> (f32, usize) {
    let mut best = (f32::INFINITY, usize::MAX);
    for (i, (row, &skip)) in rows.chunks_exact(d).zip(excluded).enumerate() {
        if skip {
            continue;
        }
        let q = sq_euclidean(row, target);
        if q < best.0 || best.1 == usize::MAX {
            best = (q, start + i);
        }
    }
    best
}

multiversion! {
    /// Nearest non-excluded row of a chunk (first row `start`) to `target`: `(squared distance, row)`,
    /// `(inf, usize::MAX)` when every row is excluded. Ties go to the smaller row.
    pub fn nearest_row(rows: &[f32], d: usize, start: usize, excluded: &[bool], target: &[f32]) -> (f32, usize)
        => nearest_row_impl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
    }

    #[test]
    fn kernels_match_float64() {
        for d in [1usize, 5, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..d).map(|j| (j as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..d).map(|j| (j as f32 * 0.11).cos()).collect();
            let q = sq_euclidean(&a, &b) as f64;
            assert!((q - naive_sq(&a, &b)).abs() <= 1e-5 * (1.0 + q), "d={d}");
            let p: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - p).abs() <= 1e-5 * (1.0 + p.abs()), "d={d}");
        }
    }

    #[test]
    fn cosine_of_zero_row_is_one() {
        assert_eq!(cosine_distance(&[0.0, 0.0], &[1.0, 2.0], 0.0, 5f32.sqrt()), 1.0);
        assert_eq!(cosine_distance(&[1.0, 0.0], &[2.0, 0.0], 1.0, 2.0), 0.0);
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let d = 37;
        let rows: Vec<f32> = (0..50 * d).map(|j| ((j * 7919) % 1000) as f32 / 333.0 - 1.5).collect();
        let target: Vec<f32> = (0..d).map(|j| j as f32 / 50.0).collect();
        let excluded: Vec<bool> = (0..50).map(|i| i % 7 == 3).collect();
        let reference = nearest_row(Isa::Generic, &rows, d, 10, &excluded, &target);
        assert_eq!(nearest_row(Isa::detect(), &rows, d, 10, &excluded, &target), reference);
        assert!(reference.1 >= 10 && reference.1 < 60);
    }
}
