//! The one place where core errors become Python exceptions of the `erasus.errors` hierarchy.

use erasus_core::CoreError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Newtype so the orphan rule lets us implement `From<_> for PyErr`.
pub struct PyCoreError(pub CoreError);

impl From<CoreError> for PyCoreError {
    fn from(e: CoreError) -> Self {
        PyCoreError(e)
    }
}

static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NON_FINITE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MEMORY_BUDGET: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn raise(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str, msg: String) -> PyErr {
    match cell.import(py, "erasus.errors", name) {
        Ok(cls) => match cls.call1((msg,)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        // erasus.errors is part of the same wheel; failing to import it is a broken install.
        Err(e) => PyRuntimeError::new_err(format!("{msg} (and erasus.errors could not be imported: {e})")),
    }
}

impl From<PyCoreError> for PyErr {
    fn from(err: PyCoreError) -> PyErr {
        let msg = err.0.to_string();
        Python::attach(|py| match err.0 {
            CoreError::Shape(_) | CoreError::InvalidArgument(_) => raise(py, &INVALID_INPUT, "InvalidInputError", msg),
            CoreError::NonFinite { .. } => raise(py, &NON_FINITE, "NonFiniteError", msg),
            CoreError::MemoryBudget { .. } => raise(py, &MEMORY_BUDGET, "MemoryBudgetError", msg),
        })
    }
}
