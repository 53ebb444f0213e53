//! The result every selector returns.

/// Indices in selection order, per-element weights, per-step marginal gains and the final objective.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Selected row indices, in the order the algorithm picked them.
    pub indices: Vec<usize>,
    /// One weight per selected element: cluster sizes (summing to n) for facility location / k-means,
    /// ones otherwise.
    pub weights: Vec<f32>,
    /// Marginal gain of each step where the algorithm defines one (empty otherwise).
    pub gains: Vec<f64>,
    /// Objective of the final set (covering radius, moment error, f(S) ...), or NaN when undefined.
    pub objective: f64,
}
