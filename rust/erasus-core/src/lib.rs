//! erasus-core: coreset selection for machine unlearning, in plain Rust.
//!
//! Every selector takes a borrowed row-major `(n, d)` float32 [`MatrixView`] and returns a
//! [`Selection`]. Work is parallel with rayon (inside whatever pool the caller installs) and the
//! result never depends on the number of threads: reductions break ties by the smaller index.

pub mod distance;
pub mod error;
pub mod facility;
pub mod greedi;
pub mod half_rows;
pub mod herding;
pub mod kcenter;
pub mod kmeans;
pub mod knn;
pub mod matrix;
pub mod selection;
pub mod submodular;

pub use error::{CoreError, Result};
pub use matrix::{check_k, MatrixView};
pub use selection::Selection;
