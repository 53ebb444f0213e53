//! Conversions shared by every binding: numpy matrices in (borrowed, never copied), selections out.

use crate::errors::PyCoreError;
use erasus_core::{CoreError, Selection};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// `(indices int64, weights float32, gains float64, objective)` as handed to Python.
pub type SelectionArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f64>>,
    f64,
);

/// The matrix's buffer and shape; refuses anything that is not C-contiguous.
pub fn features<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> Result<(&'a [f32], usize, usize), PyCoreError> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    // `as_slice` also accepts Fortran order, which would be read transposed: insist on C order.
    let data = x.as_slice().ok().filter(|_| x.is_c_contiguous()).ok_or_else(|| {
        CoreError::Shape(format!(
            "features must be a C-contiguous float32 array of shape (n, d); got a non-contiguous ({n}, {d}) array \
             (convert it with numpy.ascontiguousarray, or pass it through erasus.select)"
        ))
    })?;
    Ok((data, n, d))
}

pub fn to_python(py: Python<'_>, sel: Selection) -> SelectionArrays<'_> {
    let indices: Vec<i64> = sel.indices.iter().map(|&i| i as i64).collect();
    (
        indices.into_pyarray(py),
        sel.weights.into_pyarray(py),
        sel.gains.into_pyarray(py),
        sel.objective,
    )
}
