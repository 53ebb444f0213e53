//! One way out of the GIL: every binding calls [`detach`], which releases the GIL once and runs
//! the work inside erasus' own rayon pool.
//!
//! The pool is ours rather than rayon's global one so that it can be rebuilt after `fork()`:
//! a forked child (torch DataLoader workers) inherits the pool's bookkeeping but not its threads,
//! and would deadlock on first use. `erasus/__init__.py` registers `_after_fork_in_child` with
//! `os.register_at_fork`, as tokenizers does.

use crate::errors::PyCoreError;
use erasus_core::CoreError;
use pyo3::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

struct PoolState {
    pool: Option<Arc<ThreadPool>>,
    /// 0 = rayon's default (ERASUS_NUM_THREADS, then RAYON_NUM_THREADS, then the number of CPUs).
    requested: usize,
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    pool: None,
    requested: 0,
});

fn default_threads() -> usize {
    std::env::var("ERASUS_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(0)
}

fn current_pool() -> Result<Arc<ThreadPool>, CoreError> {
    let mut state = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = &state.pool {
        return Ok(pool.clone());
    }
    let threads = if state.requested > 0 {
        state.requested
    } else {
        default_threads()
    };
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("erasus-{i}"))
        .build()
        .map_err(|e| CoreError::InvalidArgument(format!("could not start the erasus thread pool: {e}")))?;
    let pool = Arc::new(pool);
    state.pool = Some(pool.clone());
    Ok(pool)
}

/// Releases the GIL once and runs `work` inside the erasus pool. `work` must not touch Python.
pub fn detach<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, CoreError> + Send,
{
    let pool = current_pool().map_err(PyCoreError)?;
    py.detach(move || pool.install(work)).map_err(|e| PyCoreError(e).into())
}

/// Number of worker threads erasus uses.
#[pyfunction]
pub fn get_num_threads() -> PyResult<usize> {
    Ok(current_pool().map_err(PyCoreError)?.current_num_threads())
}

/// Sets the number of worker threads (0 = default). Results do not depend on it.
#[pyfunction]
pub fn set_num_threads(n: usize) {
    let mut state = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    state.requested = n;
    state.pool = None;
}

/// Called in a forked child: forget the parent's pool (its threads do not exist here).
#[pyfunction]
pub fn _after_fork_in_child() {
    let mut state = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The parent's pool cannot be shut down from here (its threads are gone); leak it instead of
    // running its destructor, which would wait for them.
    if let Some(old) = state.pool.take() {
        std::mem::forget(old);
    }
}
