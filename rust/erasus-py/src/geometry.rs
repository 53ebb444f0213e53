//! Bindings of the geometric selectors: k-center, herding and k-means.
//!
//! Each takes a C-contiguous float32 `(n, d)` array (numpy or memmap, borrowed without a copy),
//! releases the GIL once through [`pool::detach`] (where the finiteness check also runs, in
//! parallel) and returns `(indices int64, weights float32, gains float64, objective float)`.

use crate::convert::{features, to_python, SelectionArrays};
use crate::errors::PyCoreError;
use crate::pool;
use erasus_core::herding::herding as core_herding;
use erasus_core::kcenter::{kcenter as core_kcenter, KCenterOptions, Metric};
use erasus_core::kmeans::{kmeans as core_kmeans, seeding_draws as core_seeding_draws, KMeansOptions};
use erasus_core::{CoreError, MatrixView};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

/// Greedy k-center (Sener & Savarese 2018) with exact triangle-inequality pruning.
#[pyfunction]
#[pyo3(signature = (x, k, *, metric = "euclidean", initial = None, seed = 0))]
pub fn kcenter<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    k: usize,
    metric: &str,
    initial: Option<PyReadonlyArray1<'py, i64>>,
    seed: u64,
) -> PyResult<SelectionArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let metric = Metric::parse(metric).map_err(PyCoreError)?;
    let initial: Option<Vec<usize>> = match &initial {
        None => None,
        Some(rows) => Some(
            rows.as_array()
                .iter()
                .map(|&i| {
                    usize::try_from(i).map_err(|_| {
                        PyCoreError(CoreError::InvalidArgument(format!(
                            "initial index {i} is negative; expected 0 <= index < {n}"
                        )))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let sel = pool::detach(py, || {
        let view = MatrixView::new_finite(data, n, d)?;
        core_kcenter(
            view,
            k,
            &KCenterOptions {
                metric,
                initial: initial.as_deref(),
                seed,
            },
        )
    })?;
    Ok(to_python(py, sel))
}

/// Kernel herding / moment matching (Welling 2009; Chen, Welling & Smola 2010).
#[pyfunction]
#[pyo3(signature = (x, k))]
pub fn herding<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f32>, k: usize) -> PyResult<SelectionArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let sel = pool::detach(py, || core_herding(MatrixView::new_finite(data, n, d)?, k))?;
    Ok(to_python(py, sel))
}

/// k-means++ seeding + Lloyd iterations; returns the real row nearest each centroid.
#[pyfunction]
#[pyo3(signature = (x, k, *, seed = 0, max_iter = 100, tol = 1e-4))]
pub fn kmeans<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    k: usize,
    seed: u64,
    max_iter: usize,
    tol: f64,
) -> PyResult<SelectionArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let sel = pool::detach(py, || {
        core_kmeans(
            MatrixView::new_finite(data, n, d)?,
            k,
            &KMeansOptions { seed, max_iter, tol },
        )
    })?;
    Ok(to_python(py, sel))
}

/// The seeded random stream of k-means++ and of k-center's random start: `(first row, uniforms)`.
#[pyfunction]
#[pyo3(signature = (seed, n, count))]
pub fn seeding_draws(py: Python<'_>, seed: u64, n: usize, count: usize) -> PyResult<(usize, Bound<'_, PyArray1<f64>>)> {
    let (first, u) = core_seeding_draws(seed, n, count).map_err(PyCoreError)?;
    Ok((first, u.into_pyarray(py)))
}
