//! Row distance kernels shared by the geometric selectors (k-center, herding, k-means).
//!
//! Every kernel accumulates into 16 independent lanes and then folds them with a fixed tree, so the
//! float result is one well-defined function of the inputs: the same bits whether LLVM emits SSE2,
//! AVX2 or AVX-512 for it (Rust never contracts `a * b + c` into an FMA), whatever thread runs it.
//! That is what lets a pruned loop and a naive loop agree bit for bit.

use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

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
///
/// Runs the widest explicit SIMD variant the CPU has (LLVM's auto-vectorizer turned the 16-lane
/// loop into scalar and 128-bit pieces, 4x slower than bandwidth); every variant computes the bits
/// of [`sq_euclidean_scalar`].
#[inline(always)]
pub fn sq_euclidean(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    match Isa::cached() {
        // SAFETY: `Isa::cached` reports AVX-512F / AVX2 only after checking the CPU has them.
        Isa::Avx512 => return unsafe { simd::sq_euclidean_avx512(a, b) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { simd::sq_euclidean_avx2(a, b) },
        Isa::Generic => {}
    }
    sq_euclidean_scalar(a, b)
}

/// Inner product `sum_j a_j b_j` with the same fixed summation order as [`sq_euclidean`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    match Isa::cached() {
        // SAFETY: `Isa::cached` reports AVX-512F / AVX2 only after checking the CPU has them.
        Isa::Avx512 => return unsafe { simd::dot_avx512(a, b) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { simd::dot_avx2(a, b) },
        Isa::Generic => {}
    }
    dot_scalar(a, b)
}

/// [`sq_euclidean`] of four rows against one vector: the same four values, bit for bit, with the
/// four 16-lane folds done together (on AVX-512 the fold, not the arithmetic, was half of a 64-wide
/// row's cost).
#[inline(always)]
pub fn sq_euclidean_x4(rows: [&[f32]; 4], b: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if Isa::cached() == Isa::Avx512 {
        // SAFETY: `Isa::cached` reports AVX-512F only after checking the CPU has it.
        return unsafe { simd::sq_euclidean_x4_avx512(rows, b) };
    }
    rows.map(|r| sq_euclidean(r, b))
}

/// The definition of [`sq_euclidean`]'s bits: lane `j` of 16 sums the terms `j, j + 16, ...` in
/// order, then the lanes fold pairwise (`j += j + 8`, `j += j + 4`, `j += j + 2`, `j += j + 1`).
#[inline(always)]
pub fn sq_euclidean_scalar(a: &[f32], b: &[f32]) -> f32 {
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

/// The definition of [`dot`]'s bits (same lanes and fold as [`sq_euclidean_scalar`]).
#[inline(always)]
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
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

/// Explicit AVX2 / AVX-512 versions of the 16-lane kernels. Same lanes, same fold, multiply and add
/// kept separate (no FMA), masked tails loading zeros (`acc + 0 * 0 == acc`: an accumulator is never
/// -0, it starts at +0): bit-identical to the scalar definitions.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn fold8(v: __m256) -> f32 {
        let v4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
        let v1 = _mm_add_ss(v2, _mm_shuffle_ps::<1>(v2, v2));
        _mm_cvtss_f32(v1)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fold16(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        fold8(_mm256_add_ps(lo, hi))
    }

    /// Lanes `0..len` of `p` (`len < 8`), zeros above.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_partial8(p: *const f32, len: usize) -> __m256 {
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), idx);
        _mm256_maskload_ps(p, mask)
    }

    macro_rules! avx2_kernel {
        ($name:ident, $term:expr) => {
            /// # Safety
            /// The CPU must support AVX2; `a` and `b` have the same length.
            #[inline]
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut i = 0;
                // SAFETY (all loads): offsets stay below n = min(a.len(), b.len()); partial loads are masked.
                while i + 16 <= n {
                    let (x0, y0) = (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                    let (x1, y1) = (_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
                    lo = _mm256_add_ps(lo, $term(x0, y0));
                    hi = _mm256_add_ps(hi, $term(x1, y1));
                    i += 16;
                }
                let rem = n - i;
                if rem > 0 {
                    if rem >= 8 {
                        let (x0, y0) = (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                        lo = _mm256_add_ps(lo, $term(x0, y0));
                        let (x1, y1) = (
                            load_partial8(pa.add(i + 8), rem - 8),
                            load_partial8(pb.add(i + 8), rem - 8),
                        );
                        hi = _mm256_add_ps(hi, $term(x1, y1));
                    } else {
                        let (x0, y0) = (load_partial8(pa.add(i), rem), load_partial8(pb.add(i), rem));
                        lo = _mm256_add_ps(lo, $term(x0, y0));
                    }
                }
                fold8(_mm256_add_ps(lo, hi))
            }
        };
    }

    macro_rules! avx512_kernel {
        ($name:ident, $term:expr) => {
            /// # Safety
            /// The CPU must support AVX-512F; `a` and `b` have the same length.
            #[inline]
            #[target_feature(enable = "avx512f")]
            pub unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = _mm512_setzero_ps();
                let mut i = 0;
                // SAFETY (all loads): offsets stay below n = min(a.len(), b.len()); the tail load is masked.
                while i + 16 <= n {
                    acc = _mm512_add_ps(acc, $term(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))));
                    i += 16;
                }
                if i < n {
                    let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                    let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                    let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                    acc = _mm512_add_ps(acc, $term(x, y));
                }
                fold16(acc)
            }
        };
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn sq8(x: __m256, y: __m256) -> __m256 {
        let t = _mm256_sub_ps(x, y);
        _mm256_mul_ps(t, t)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul8(x: __m256, y: __m256) -> __m256 {
        _mm256_mul_ps(x, y)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sq16(x: __m512, y: __m512) -> __m512 {
        let t = _mm512_sub_ps(x, y);
        _mm512_mul_ps(t, t)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mul16(x: __m512, y: __m512) -> __m512 {
        _mm512_mul_ps(x, y)
    }

    /// Four rows' 16-lane folds at once, each row's adds in the order of [`fold16`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fold16_x4(a: [__m512; 4]) -> [f32; 4] {
        // lanes j + (j + 8): rows (0, 1) and (2, 3) share a register, 8 lanes each
        let t01 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a[0], a[1]),
            _mm512_shuffle_f32x4::<0xEE>(a[0], a[1]),
        );
        let t23 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a[2], a[3]),
            _mm512_shuffle_f32x4::<0xEE>(a[2], a[3]),
        );
        // lanes j + (j + 4): one 128-bit block per row
        let u = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(t01, t23),
            _mm512_shuffle_f32x4::<0xDD>(t01, t23),
        );
        // j + (j + 2), then j + (j + 1), inside each block
        let v = _mm512_add_ps(u, _mm512_permute_ps::<0xEE>(u));
        let w = _mm512_add_ps(v, _mm512_permute_ps::<0x01>(v));
        let mut out = [0.0f32; 16];
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), w) };
        [out[0], out[4], out[8], out[12]]
    }

    /// # Safety
    /// The CPU must support AVX-512F; every row has `b`'s length.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_euclidean_x4_avx512(rows: [&[f32]; 4], b: &[f32]) -> [f32; 4] {
        let n = rows.iter().fold(b.len(), |m, r| m.min(r.len()));
        let p = rows.map(|r| r.as_ptr());
        let pb = b.as_ptr();
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): offsets stay below n, the shortest length; the tail loads are masked.
        while i + 16 <= n {
            let y = _mm512_loadu_ps(pb.add(i));
            for (a, &pr) in acc.iter_mut().zip(&p) {
                *a = _mm512_add_ps(*a, sq16(_mm512_loadu_ps(pr.add(i)), y));
            }
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
            for (a, &pr) in acc.iter_mut().zip(&p) {
                *a = _mm512_add_ps(*a, sq16(_mm512_maskz_loadu_ps(mask, pr.add(i)), y));
            }
        }
        fold16_x4(acc)
    }

    /// Sixteen rows' 16-lane folds at once, returned in row order (lane `r` = row `r`), each row's
    /// adds in the order of [`fold16`]: the lanes are paired across rows with shuffles so one add
    /// does the same fold step for 2, 4, 8 and then 16 rows (15 adds and 30 shuffles for 16 rows,
    /// against 64 of each for 16 separate folds).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn fold16_x16(a: &[__m512; 16]) -> __m512 {
        // j + (j + 8): rows (2p, 2p + 1) share v[p], 8 lanes each
        let mut v = [_mm512_setzero_ps(); 8];
        for (p, out) in v.iter_mut().enumerate() {
            let (x, y) = (a[2 * p], a[2 * p + 1]);
            *out = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(x, y), _mm512_shuffle_f32x4::<0xEE>(x, y));
        }
        // j + (j + 4): rows 4q..4q + 3, one 128-bit block each
        let mut w = [_mm512_setzero_ps(); 4];
        for (q, out) in w.iter_mut().enumerate() {
            let (x, y) = (v[2 * q], v[2 * q + 1]);
            *out = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(x, y), _mm512_shuffle_f32x4::<0xDD>(x, y));
        }
        // j + (j + 2): block L of y[s] holds rows 8s + L (lanes 0, 1) and 8s + 4 + L (lanes 2, 3)
        let y0 = _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(w[0], w[1]),
            _mm512_shuffle_ps::<0xEE>(w[0], w[1]),
        );
        let y1 = _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(w[2], w[3]),
            _mm512_shuffle_ps::<0xEE>(w[2], w[3]),
        );
        // j + (j + 1): element 4L + m holds row 4m + L
        let z = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(y0, y1), _mm512_shuffle_ps::<0xDD>(y0, y1));
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_ps(order, z)
    }

    /// [`sq_euclidean_avx512`] of sixteen rows against `b` (length `d`), lane `r` for `row(r)`: the
    /// same bits as sixteen calls, at a fraction of the cost (the per-row horizontal fold was as
    /// expensive as the arithmetic of a 64-float row).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `b` and every `row(r)` point at `d` readable floats.
    // not inlined: its 16 accumulators need most of the 32 vector registers, and the caller's loop
    // state spilled inside the kernel's loop otherwise (2-3x slower)
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_euclidean_x16_avx512<F: Fn(usize) -> *const f32>(row: F, b: *const f32, d: usize) -> __m512 {
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut i = 0;
        // SAFETY (all loads): offsets stay below d; the tail loads are masked.
        while i + 16 <= d {
            let y = _mm512_loadu_ps(b.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_add_ps(*a, sq16(_mm512_loadu_ps(row(r).add(i)), y));
            }
            i += 16;
        }
        if i < d {
            let mask: __mmask16 = (1u32 << (d - i)) as u16 - 1;
            let y = _mm512_maskz_loadu_ps(mask, b.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_add_ps(*a, sq16(_mm512_maskz_loadu_ps(mask, row(r).add(i)), y));
            }
        }
        fold16_x16(&acc)
    }

    avx2_kernel!(sq_euclidean_avx2, sq8);
    avx2_kernel!(dot_avx2, mul8);
    avx512_kernel!(sq_euclidean_avx512, sq16);
    avx512_kernel!(dot_avx512, mul16);
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

static CACHED_ISA: AtomicU8 = AtomicU8::new(0);

impl Isa {
    /// [`Isa::detect`], cached: what the distance kernels dispatch on (one relaxed load per call).
    #[inline(always)]
    pub fn cached() -> Isa {
        match CACHED_ISA.load(Ordering::Relaxed) {
            1 => Isa::Generic,
            #[cfg(target_arch = "x86_64")]
            2 => Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            3 => Isa::Avx512,
            _ => {
                let isa = Isa::detect();
                let code = match isa {
                    Isa::Generic => 1,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => 2,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => 3,
                };
                CACHED_ISA.store(code, Ordering::Relaxed);
                isa
            }
        }
    }

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

/// Runs `work` on a worker of the current rayon pool (directly if already on one). A greedy makes
/// one parallel pass per step; called from outside the pool, each pass is injected into it and the
/// caller sleeps until it ends, two context switches per step (~50 us, as much as a 20k-row pass).
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
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
    let mut offer = |i: usize, q: f32| {
        if !excluded[i] && (q < best.0 || best.1 == usize::MAX) {
            best = (q, start + i);
        }
    };
    let n = excluded.len().min(rows.len() / d);
    let mut i = 0;
    while i + 4 <= n {
        let row = |r: usize| &rows[(i + r) * d..(i + r + 1) * d];
        let q = sq_euclidean_x4([row(0), row(1), row(2), row(3)], target);
        (0..4).for_each(|r| offer(i + r, q[r]));
        i += 4;
    }
    for j in i..n {
        offer(j, sq_euclidean(&rows[j * d..(j + 1) * d], target));
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

    /// The explicit SIMD kernels against the scalar definition, bit for bit, on every tail length
    /// and on values that round differently under any other summation order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_kernels_reproduce_the_scalar_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        for d in 1..=100usize {
            for trial in 0..20 {
                let scale = [1e-30f32, 1e-3, 1.0, 1e3, 1e18][trial % 5];
                let a: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect();
                let b: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect();
                let (sq, dt) = (sq_euclidean_scalar(&a, &b).to_bits(), dot_scalar(&a, &b).to_bits());
                let rows: Vec<Vec<f32>> = (0..4)
                    .map(|r| a.iter().map(|v| v * (r as f32 + 0.5)).collect())
                    .collect();
                let got = sq_euclidean_x4([&rows[0], &rows[1], &rows[2], &rows[3]], &b);
                for (r, row) in rows.iter().enumerate() {
                    assert_eq!(
                        got[r].to_bits(),
                        sq_euclidean_scalar(row, &b).to_bits(),
                        "x4 row {r} d={d}"
                    );
                }
                if avx2 {
                    // SAFETY: the CPU has AVX2 (checked above).
                    unsafe {
                        assert_eq!(simd::sq_euclidean_avx2(&a, &b).to_bits(), sq, "avx2 sq d={d}");
                        assert_eq!(simd::dot_avx2(&a, &b).to_bits(), dt, "avx2 dot d={d}");
                    }
                }
                if avx512 {
                    let rows16: Vec<Vec<f32>> = (0..16)
                        .map(|r| {
                            a.iter()
                                .map(|v| v * (r as f32 * 0.37 + 0.5) - r as f32 * scale)
                                .collect()
                        })
                        .collect();
                    let mut got16 = [0.0f32; 16];
                    // SAFETY: the CPU has AVX-512F; every row and `b` hold d floats.
                    unsafe {
                        let q = simd::sq_euclidean_x16_avx512(|r| rows16[r].as_ptr(), b.as_ptr(), d);
                        std::arch::x86_64::_mm512_storeu_ps(got16.as_mut_ptr(), q);
                    }
                    for (r, row) in rows16.iter().enumerate() {
                        assert_eq!(
                            got16[r].to_bits(),
                            sq_euclidean_scalar(row, &b).to_bits(),
                            "x16 row {r} d={d}"
                        );
                    }
                    // SAFETY: the CPU has AVX-512F (checked above).
                    unsafe {
                        assert_eq!(simd::sq_euclidean_avx512(&a, &b).to_bits(), sq, "avx512 sq d={d}");
                        assert_eq!(simd::dot_avx512(&a, &b).to_bits(), dt, "avx512 dot d={d}");
                    }
                }
            }
        }
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
