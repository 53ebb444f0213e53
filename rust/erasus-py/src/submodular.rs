//! Bindings of facility location / CRAIG, the submodular functions, GreeDi and the exact kNN graph.
//!
//! Each takes a C-contiguous float32 `(n, d)` array (borrowed without a copy), releases the GIL
//! once through [`pool::detach`] (the finiteness check runs there, in parallel) and returns
//! `(indices int64, weights float32, gains float64, objective float)`.

use crate::convert::{features, to_python, SelectionArrays};
use crate::errors::PyCoreError;
use crate::pool;
use erasus_core::facility::{facility_location as core_facility, FacilityOptions, Similarity};
use erasus_core::knn::knn_graph as core_knn;
use erasus_core::submodular::{
    submodular as core_submodular, Concave, FunctionParams, FunctionSpec, Optimizer, SubmodularOptions,
};
use erasus_core::{CoreError, MatrixView};
use numpy::{IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray2};
use pyo3::prelude::*;

/// `(neighbour ids (n, K), distances (n, K))`.
type KnnArrays<'py> = (Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>);

/// Facility location / CRAIG (Mirzasoleiman et al. 2020): `f(S) = Σ_i max(0, max_{j∈S} s_ij)`.
#[pyfunction]
#[pyo3(signature = (x, k, *, similarity = "craig", gamma = None, neighbors = None, optimizer = "lazy",
    epsilon = 0.01, seed = 0, max_dense_bytes = 4294967296, partitions = 1,
    shuffle_partitions = false))]
#[allow(clippy::too_many_arguments)]
pub fn facility_location<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    k: usize,
    similarity: &str,
    gamma: Option<f64>,
    neighbors: Option<usize>,
    optimizer: &str,
    epsilon: f64,
    seed: u64,
    max_dense_bytes: u64,
    partitions: usize,
    shuffle_partitions: bool,
) -> PyResult<SelectionArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let opts = FacilityOptions {
        similarity: Similarity::parse(similarity, gamma, d).map_err(PyCoreError)?,
        neighbors,
        optimizer: Optimizer::parse(optimizer, epsilon).map_err(PyCoreError)?,
        seed,
        max_dense_bytes,
        partitions,
        shuffle_partitions,
    };
    let sel = pool::detach(py, || core_facility(MatrixView::new_finite(data, n, d)?, k, &opts))?;
    Ok(to_python(py, sel))
}

/// Greedy maximization of a submodular function or a weighted mixture of them.
#[pyfunction]
#[pyo3(signature = (x, k, *, function = "facility_location", mixture = None, similarity = "rbf", gamma = None,
    lambda_ = 0.5, alpha = 0.1, concave = "sqrt", reg = 1.0, optimizer = "lazy", epsilon = 0.01, seed = 0,
    max_dense_bytes = 4294967296, neighbors = None, partitions = 1,
    shuffle_partitions = false))]
#[allow(clippy::too_many_arguments)]
pub fn submodular<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    k: usize,
    function: &str,
    mixture: Option<Vec<(String, f64)>>,
    similarity: &str,
    gamma: Option<f64>,
    lambda_: f64,
    alpha: f64,
    concave: &str,
    reg: f64,
    optimizer: &str,
    epsilon: f64,
    seed: u64,
    max_dense_bytes: u64,
    neighbors: Option<usize>,
    partitions: usize,
    shuffle_partitions: bool,
) -> PyResult<SelectionArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let params = FunctionParams {
        lambda: lambda_,
        alpha,
        concave: Concave::parse(concave).map_err(PyCoreError)?,
        reg,
    };
    let components = match (function, mixture) {
        ("mixture", Some(parts)) => parts
            .iter()
            .map(|(name, w)| Ok((FunctionSpec::parse(name, params)?, *w)))
            .collect::<Result<Vec<_>, CoreError>>()
            .map_err(PyCoreError)?,
        ("mixture", None) => {
            return Err(PyCoreError(CoreError::InvalidArgument(
                "function='mixture' needs mixture=[(function_name, weight), ...]".into(),
            ))
            .into())
        }
        (name, None) => vec![(FunctionSpec::parse(name, params).map_err(PyCoreError)?, 1.0)],
        (name, Some(_)) => {
            return Err(PyCoreError(CoreError::InvalidArgument(format!(
                "mixture= is only used with function='mixture', got function={name:?}"
            )))
            .into())
        }
    };
    let opts = SubmodularOptions {
        components,
        similarity: Similarity::parse(similarity, gamma, d).map_err(PyCoreError)?,
        optimizer: Optimizer::parse(optimizer, epsilon).map_err(PyCoreError)?,
        seed,
        max_dense_bytes,
        neighbors,
        partitions,
        shuffle_partitions,
    };
    let sel = pool::detach(py, || core_submodular(MatrixView::new_finite(data, n, d)?, k, &opts))?;
    Ok(to_python(py, sel))
}

/// Exact k-nearest-neighbour graph (self included): `(indices uint32 (n, k), distances float32 (n, k))`.
#[pyfunction]
#[pyo3(signature = (x, k))]
pub fn knn_graph<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f32>, k: usize) -> PyResult<KnnArrays<'py>> {
    let (data, n, d) = features(&x)?;
    let g = pool::detach(py, || core_knn(MatrixView::new_finite(data, n, d)?, k))?;
    let (rows, cols) = (g.n, g.k);
    Ok((
        g.indices.into_pyarray(py).reshape([rows, cols])?,
        g.distances.into_pyarray(py).reshape([rows, cols])?,
    ))
}
