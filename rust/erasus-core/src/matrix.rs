//! A borrowed, row-major `(n, d)` float32 matrix: the one input type of every selector.

use crate::error::{CoreError, Result};
use rayon::prelude::*;

/// Row-major `(n, d)` view over a caller-owned `&[f32]` (a numpy buffer, a memmap, a `Vec`).
#[derive(Clone, Copy, Debug)]
pub struct MatrixView<'a> {
    data: &'a [f32],
    n: usize,
    d: usize,
}

impl<'a> MatrixView<'a> {
    /// Wraps `data` as `(n, d)`; refuses empty shapes and length mismatches.
    pub fn new(data: &'a [f32], n: usize, d: usize) -> Result<Self> {
        if n == 0 {
            return Err(CoreError::Shape(
                "features are empty: got 0 rows, expected at least 1".into(),
            ));
        }
        if d == 0 {
            return Err(CoreError::Shape(format!(
                "features have 0 columns (shape ({n}, 0)); expected d >= 1"
            )));
        }
        let expected = n
            .checked_mul(d)
            .ok_or_else(|| CoreError::Shape(format!("shape ({n}, {d}) overflows usize")))?;
        if data.len() != expected {
            return Err(CoreError::Shape(format!(
                "buffer holds {} values but shape ({n}, {d}) needs {expected}",
                data.len()
            )));
        }
        Ok(Self { data, n, d })
    }

    /// Like [`MatrixView::new`], and also refuses NaN/inf (reporting the first offending cell).
    pub fn new_finite(data: &'a [f32], n: usize, d: usize) -> Result<Self> {
        let view = Self::new(data, n, d)?;
        view.check_finite()?;
        Ok(view)
    }

    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    #[inline]
    pub fn d(&self) -> usize {
        self.d
    }

    #[inline]
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    #[inline]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// First non-finite cell in row-major order, found in parallel but reported deterministically.
    pub fn check_finite(&self) -> Result<()> {
        let d = self.d;
        let bad = self
            .data
            .par_chunks(d * 1024)
            .enumerate()
            .filter_map(|(c, chunk)| chunk.iter().position(|v| !v.is_finite()).map(|p| c * d * 1024 + p))
            .min();
        match bad {
            None => Ok(()),
            Some(flat) => Err(CoreError::NonFinite {
                row: flat / d,
                col: flat % d,
                value: self.data[flat],
            }),
        }
    }
}

/// Checks `1 <= k <= n` with a message that names both numbers.
pub fn check_k(k: usize, n: usize) -> Result<()> {
    if k == 0 {
        return Err(CoreError::InvalidArgument("k must be >= 1, got 0".into()));
    }
    if k > n {
        return Err(CoreError::InvalidArgument(format!(
            "k = {k} exceeds the number of samples n = {n}; expected 1 <= k <= n"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        assert!(MatrixView::new(&[], 0, 3).is_err());
        assert!(MatrixView::new(&[1.0; 6], 2, 0).is_err());
        assert!(MatrixView::new(&[1.0; 5], 2, 3).is_err());
        assert!(MatrixView::new(&[1.0; 6], 2, 3).is_ok());
    }

    #[test]
    fn reports_first_non_finite_cell() {
        let mut v = vec![0.0f32; 4000 * 3];
        v[3 * 2500 + 1] = f32::NAN;
        v[3 * 3000 + 2] = f32::INFINITY;
        let err = MatrixView::new_finite(&v, 4000, 3).unwrap_err();
        assert!(matches!(err, CoreError::NonFinite { row: 2500, col: 1, .. }), "{err:?}");
    }

    #[test]
    fn k_bounds() {
        assert!(check_k(0, 3).is_err());
        assert!(check_k(4, 3).is_err());
        assert!(check_k(3, 3).is_ok());
    }
}
