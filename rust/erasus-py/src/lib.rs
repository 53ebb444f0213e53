//! PyO3 glue for erasus-core, built as `erasus._core`.
//!
//! This crate only converts inputs, releases the GIL (through [`pool::detach`]) and maps errors
//! (through [`errors::PyCoreError`]); every algorithm lives in `erasus-core`.

mod convert;
mod errors;
mod geometry;
mod pool;
mod submodular;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(pool::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pool::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pool::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::kcenter, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::herding, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::seeding_draws, m)?)?;
    m.add_function(wrap_pyfunction!(submodular::facility_location, m)?)?;
    m.add_function(wrap_pyfunction!(submodular::submodular, m)?)?;
    m.add_function(wrap_pyfunction!(submodular::knn_graph, m)?)?;
    Ok(())
}
