//! A half-precision shadow of the rows, for passes that only need to know which rows *could* be nearest.
//!
//! Herding reads all of X once per step and is bound by memory bandwidth (numpy's GEMV greedy runs at
//! ~80% of this machine's cache-resident read peak), so it can only get faster by reading fewer bytes. The
//! shadow holds each row rounded to IEEE f16 (half the bytes) and, per row, the exact rounding error
//! `e_i = ||x_i - h_i||_2`. By the triangle inequality `| ||x_i - r|| - ||h_i - r|| | <= e_i`, so a pass over
//! the shadow brackets every row's true distance; only the rows whose bracket reaches below the smallest upper
//! end are then scored exactly, with the same f32 kernel as before. The answer is therefore the exact one,
//! bit for bit and ties included (the filter is the "compressed scan, exact re-rank" of product quantization,
//! Jégou, Douze & Schmid, TPAMI 2011, with a guaranteed instead of a heuristic re-rank set).
//!
//! AVX-512F only (it has the f16 <-> f32 conversions at full width); elsewhere [`HalfRows::new`] returns
//! `None` and callers keep their exact pass. Rows with a value outside the f16 range also disable it.

#[cfg(target_arch = "x86_64")]
use crate::distance::Isa;
use crate::distance::CHUNK_ROWS;
use std::sync::atomic::{AtomicU32, Ordering};

/// Relative slack on the brackets, far above the f32 rounding of a `d`-term sum of squares (~`d / 16 * eps`
/// per lane, plus the fold), so rounding can never drop the exact arg-min from the re-rank set.
pub(crate) fn slack(d: usize) -> f32 {
    1e-3 + 8.0 * d as f32 * f32::EPSILON
}

/// Rows rounded to f16, each padded with zeros to a multiple of 16 values, plus each row's rounding error.
pub struct HalfRows {
    data: Vec<u16>,
    stride: usize,
    err: Vec<f32>,
    d: usize,
}

impl HalfRows {
    /// The shadow of the `n` rows of `x` (row-major, `d` columns), or `None` where the CPU lacks AVX-512F
    /// or a value does not fit in f16.
    pub fn new(x: &[f32], d: usize) -> Option<HalfRows> {
        #[cfg(target_arch = "x86_64")]
        if d > 0 && Isa::cached() == Isa::Avx512 {
            // SAFETY: AVX-512F is present (checked just above).
            return unsafe { simd::build(x, d) };
        }
        let _ = (x, d);
        None
    }

    /// The target padded the way the rows are (zeros past `d`), as the bracket pass expects it.
    /// The f16 rows (`stride` values each, zero-padded), as raw bits.
    pub(crate) fn rows(&self) -> &[u16] {
        &self.data
    }

    /// Values per shadow row: `d` rounded up to a multiple of 16.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Per row, an upper bound on `||x_i - h_i||_2`.
    pub(crate) fn err(&self) -> &[f32] {
        &self.err
    }

    pub fn pad(&self, target: &[f32]) -> Vec<f32> {
        let mut t = vec![0.0f32; self.stride];
        t[..self.d].copy_from_slice(&target[..self.d]);
        t
    }

    /// Exact nearest non-excluded row among rows `start..start + excluded.len()` to `target`: the same
    /// `(squared distance, row)` as [`crate::distance::nearest_row`], tie to the smaller row, `(inf, usize::MAX)`
    /// when every row is excluded. `rows` are those rows of X (f32), `padded` is [`HalfRows::pad`] of `target`.
    ///
    /// `shared` is the smallest bracket upper end found so far by any chunk of the same pass (f32 bits;
    /// every chunk lowers it): a row whose lower end is above another chunk's upper end cannot be the
    /// nearest either, so fewer rows are scored exactly. The answer does not depend on it (the exact
    /// nearest row, and every row tied with it, always stays in the re-rank set).
    pub fn nearest_row(
        &self,
        rows: &[f32],
        start: usize,
        excluded: &[bool],
        target: &[f32],
        padded: &[f32],
        shared: &AtomicU32,
    ) -> (f32, usize) {
        let m = excluded.len();
        let mut stack = [f32::INFINITY; CHUNK_ROWS];
        let mut heap = Vec::new();
        let low: &mut [f32] = if m <= CHUNK_ROWS {
            &mut stack[..m]
        } else {
            heap.resize(m, f32::INFINITY);
            &mut heap
        };
        let mut bound = f32::INFINITY;
        let s = slack(self.d);
        #[cfg(target_arch = "x86_64")]
        {
            let shadow = &self.data[start * self.stride..(start + m) * self.stride];
            // SAFETY: a HalfRows exists only where AVX-512F was detected (`new`).
            unsafe {
                simd::brackets(
                    shadow,
                    self.stride,
                    &self.err[start..start + m],
                    excluded,
                    padded,
                    s,
                    low,
                    &mut bound,
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = padded;
        // upper ends are >= 0, so their f32 bits order like their values
        let seen = f32::from_bits(shared.fetch_min(bound.to_bits(), Ordering::Relaxed));
        let limit = bound.min(seen) * (1.0 + s);
        let d = self.d;
        let mut best = (f32::INFINITY, usize::MAX);
        let mut offer = |i: usize| {
            if excluded[i] {
                return;
            }
            let q = crate::distance::sq_euclidean(&rows[i * d..(i + 1) * d], target);
            if q < best.0 || best.1 == usize::MAX {
                best = (q, start + i);
            }
        };
        // `!(lo > limit)` keeps NaN brackets (never expected on finite data) in the exact re-rank
        for (b, block) in low.chunks(16).enumerate() {
            let mut hits = 0u32;
            for (r, lo) in block.iter().enumerate() {
                hits |= u32::from(lo.partial_cmp(&limit) != Some(std::cmp::Ordering::Greater)) << r;
            }
            while hits != 0 {
                let r = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                offer(b * 16 + r);
            }
        }
        best
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::HalfRows;
    use std::arch::x86_64::*;

    const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn build(x: &[f32], d: usize) -> Option<HalfRows> {
        let n = x.len() / d;
        let stride = d.div_ceil(16) * 16;
        let mut data = vec![0u16; n * stride];
        let mut err = vec![0.0f32; n];
        let mut buf = vec![0.0f32; stride];
        let mut back = [0.0f32; 16];
        for i in 0..n {
            buf[..d].copy_from_slice(&x[i * d..(i + 1) * d]);
            let mut e2 = 0.0f64;
            for c in (0..stride).step_by(16) {
                // SAFETY: `c + 16 <= stride` for `buf` and for row `i` of `data`; `back` holds 16 values.
                let h = _mm512_cvtps_ph::<ROUND>(_mm512_loadu_ps(buf.as_ptr().add(c)));
                _mm256_storeu_si256(data.as_mut_ptr().add(i * stride + c) as *mut __m256i, h);
                _mm512_storeu_ps(back.as_mut_ptr(), _mm512_cvtph_ps(h));
                for (v, b) in buf[c..c + 16].iter().zip(&back) {
                    if !b.is_finite() {
                        return None;
                    }
                    e2 += (*v as f64 - *b as f64).powi(2);
                }
            }
            // rounded up so the f32 error still bounds the f64 one
            err[i] = (e2.sqrt() as f32) * (1.0 + 2.0 * f32::EPSILON);
        }
        Some(HalfRows { data, stride, err, d })
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sq_dist_half(row: *const u16, t: *const f32, stride: usize) -> f32 {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut c = 0;
        // SAFETY (loads): `row` and `t` hold `stride` values, a multiple of 16.
        while c + 32 <= stride {
            let h0 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(c) as *const __m256i));
            let h1 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(c + 16) as *const __m256i));
            let d0 = _mm512_sub_ps(h0, _mm512_loadu_ps(t.add(c)));
            let d1 = _mm512_sub_ps(h1, _mm512_loadu_ps(t.add(c + 16)));
            a0 = _mm512_fmadd_ps(d0, d0, a0);
            a1 = _mm512_fmadd_ps(d1, d1, a1);
            c += 32;
        }
        if c < stride {
            let h0 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(c) as *const __m256i));
            let d0 = _mm512_sub_ps(h0, _mm512_loadu_ps(t.add(c)));
            a0 = _mm512_fmadd_ps(d0, d0, a0);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }

    /// Per row, the lower end of its distance bracket (`inf` if excluded); `bound` ends as the smallest upper end.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `shadow` holds `low.len()` rows of `stride` values, `padded` `stride` values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn brackets(
        shadow: &[u16],
        stride: usize,
        err: &[f32],
        excluded: &[bool],
        padded: &[f32],
        s: f32,
        low: &mut [f32],
        bound: &mut f32,
    ) {
        let mut upper = f32::INFINITY;
        let blocks = low.len() / 16;
        let (lo_s, hi_s) = (_mm512_set1_ps(1.0 - s), _mm512_set1_ps(1.0 + s));
        let inf = _mm512_set1_ps(f32::INFINITY);
        let mut upper_v = inf;
        // sixteen rows at a time (one kernel call, no per-row horizontal sum); the same brackets
        for b in 0..blocks {
            let off = b * 16;
            // SAFETY: rows off..off + 16 of `shadow`, `err`, `excluded` and `low` exist.
            let a = _mm512_sqrt_ps(sq_dist_half_x16(
                shadow.as_ptr().add(off * stride),
                padded.as_ptr(),
                stride,
            ));
            let e = _mm512_loadu_ps(err.as_ptr().add(off));
            let flags = _mm512_cvtepu8_epi32(_mm_loadu_si128(excluded.as_ptr().add(off).cast()));
            let keep = _mm512_cmpeq_epi32_mask(flags, _mm512_setzero_si512());
            let lo = _mm512_sub_ps(_mm512_mul_ps(a, lo_s), e);
            _mm512_storeu_ps(low.as_mut_ptr().add(off), _mm512_mask_blend_ps(keep, inf, lo));
            let hi = _mm512_add_ps(_mm512_mul_ps(a, hi_s), e);
            upper_v = _mm512_min_ps(upper_v, _mm512_mask_blend_ps(keep, inf, hi));
        }
        upper = upper.min(_mm512_reduce_min_ps(upper_v));
        for i in blocks * 16..low.len() {
            if excluded[i] {
                continue;
            }
            // SAFETY: row `i` of `shadow` and `padded` hold `stride` values.
            let a = sq_dist_half(shadow.as_ptr().add(i * stride), padded.as_ptr(), stride).sqrt();
            low[i] = a * (1.0 - s) - err[i];
            upper = upper.min(a * (1.0 + s) + err[i]);
        }
        *bound = upper;
    }

    /// Squared distances of sixteen consecutive shadow rows (starting at `rows`, `stride` values
    /// apart) to `t` (`stride` floats, zero-padded), lane `r` for row `r`. A bound, not an exact value:
    /// products are fused and the fold order is the cheapest one; callers widen it by [`super::slack`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `rows` points at `16 * stride` readable values, `t` at `stride`.
    // not inlined: its 16 accumulators need most of the 32 vector registers, and the caller's loop
    // state spilled inside the kernel's loop otherwise (2-3x slower)
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_dist_half_x16(rows: *const u16, t: *const f32, stride: usize) -> __m512 {
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut c = 0;
        while c < stride {
            let y = _mm512_loadu_ps(t.add(c));
            for (r, a) in acc.iter_mut().enumerate() {
                let h = _mm512_cvtph_ps(_mm256_loadu_si256(rows.add(r * stride + c) as *const __m256i));
                let diff = _mm512_sub_ps(h, y);
                *a = _mm512_fmadd_ps(diff, diff, *a);
            }
            c += 16;
        }
        crate::distance::simd::fold16_x16(&acc)
    }
}
