//! Facility location and submodular greedy: lazy vs naive in the same run, the kNN graph build, and
//! (with ERASUS_BENCH_LARGE=1) kNN facility location at n = 100k.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use erasus_core::facility::{facility_location, FacilityOptions};
use erasus_core::knn::knn_graph;
use erasus_core::submodular::{submodular, FunctionSpec, Optimizer, SubmodularOptions};
use erasus_core::MatrixView;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gaussian_mixture(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centers: Vec<f32> = (0..32 * d).map(|_| rng.random_range(-5.0f32..5.0)).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..32usize);
        for j in 0..d {
            out.push(centers[c * d + j] + rng.random_range(-1.0f32..1.0));
        }
    }
    out
}

fn bench_facility(c: &mut Criterion) {
    let mut g = c.benchmark_group("facility_location_dense");
    g.sample_size(10);
    let (n, d, k) = (4000, 64, 200);
    let x = gaussian_mixture(n, d, 0);
    let xv = MatrixView::new(&x, n, d).expect("shape");
    for (name, optimizer) in [("lazy", Optimizer::Lazy), ("naive", Optimizer::Naive)] {
        let opts = FacilityOptions {
            optimizer,
            ..Default::default()
        };
        g.bench_with_input(BenchmarkId::new(name, format!("n{n}_d{d}_k{k}")), &opts, |b, o| {
            b.iter(|| facility_location(xv, k, o).expect("selection"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("knn");
    g.sample_size(10);
    for &(n, d) in &[(10_000usize, 64usize), (10_000, 512)] {
        let x = gaussian_mixture(n, d, 1);
        let xv = MatrixView::new(&x, n, d).expect("shape");
        g.bench_function(BenchmarkId::new("graph_k50", format!("n{n}_d{d}")), |b| {
            b.iter(|| knn_graph(xv, 50).expect("graph"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("facility_location_knn");
    g.sample_size(10);
    let sizes: &[usize] = if std::env::var("ERASUS_BENCH_LARGE").is_ok() {
        &[10_000, 100_000]
    } else {
        &[10_000]
    };
    for &n in sizes {
        let x = gaussian_mixture(n, 64, 2);
        let xv = MatrixView::new(&x, n, 64).expect("shape");
        let opts = FacilityOptions {
            neighbors: Some(50),
            ..Default::default()
        };
        g.bench_function(BenchmarkId::new("lazy_k50", format!("n{n}_d64_k{}", n / 10)), |b| {
            b.iter(|| facility_location(xv, n / 10, &opts).expect("selection"))
        });
    }
    g.finish();
}

fn bench_submodular(c: &mut Criterion) {
    let mut g = c.benchmark_group("submodular");
    g.sample_size(10);
    let (n, d, k) = (3000, 64, 100);
    let x = gaussian_mixture(n, d, 3);
    let xv = MatrixView::new(&x, n, d).expect("shape");
    for (fname, spec) in [
        ("graph_cut", FunctionSpec::GraphCut { lambda: 0.5 }),
        ("saturated_coverage", FunctionSpec::SaturatedCoverage { alpha: 0.1 }),
        ("log_determinant", FunctionSpec::LogDeterminant { reg: 1.0 }),
    ] {
        for (oname, optimizer) in [("lazy", Optimizer::Lazy), ("naive", Optimizer::Naive)] {
            let opts = SubmodularOptions {
                components: vec![(spec, 1.0)],
                similarity: erasus_core::facility::Similarity::Rbf { gamma: 1.0 / d as f64 },
                optimizer,
                seed: 0,
                max_dense_bytes: 4 << 30,
                neighbors: None,
                partitions: 1,
                shuffle_partitions: false,
            };
            g.bench_function(
                BenchmarkId::new(format!("{fname}_{oname}"), format!("n{n}_d{d}_k{k}")),
                |b| b.iter(|| submodular(xv, k, &opts).expect("selection")),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_facility, bench_submodular);
criterion_main!(benches);
