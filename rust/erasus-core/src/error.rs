//! The one error type of the core. Every fallible entry point returns `Result<_, CoreError>`;
//! the PyO3 glue maps it onto the `erasus.ErasusError` hierarchy in exactly one place.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A shape does not fit: wrong length, empty input, zero-width rows.
    #[error("{0}")]
    Shape(String),
    /// An option or argument outside its allowed range (k <= 0, k > n, unknown index, bad gamma ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// NaN or infinity in the input features.
    #[error("features contain a non-finite value ({value}) at row {row}, column {col}; clean or impute them before selection")]
    NonFinite { row: usize, col: usize, value: f32 },
    /// An allocation the algorithm would need is larger than the configured budget.
    #[error(
        "{what} needs {needed_bytes} bytes ({needed_gib:.2} GiB), more than the {budget_bytes}-byte budget; {hint}"
    )]
    MemoryBudget {
        what: String,
        needed_bytes: u64,
        needed_gib: f64,
        budget_bytes: u64,
        hint: String,
    },
}

impl CoreError {
    pub fn memory_budget(
        what: impl Into<String>,
        needed_bytes: u64,
        budget_bytes: u64,
        hint: impl Into<String>,
    ) -> Self {
        CoreError::MemoryBudget {
            what: what.into(),
            needed_bytes,
            needed_gib: needed_bytes as f64 / (1u64 << 30) as f64,
            budget_bytes,
            hint: hint.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
