//! Criterion benches of the geometric selectors against the textbook k-center loop, on a Gaussian
//! mixture (where triangle-inequality pruning skips most rows) and isotropic Gaussian data (where it
//! cannot). n in {1e4, 1e5}, d in {64, 512}; set ERASUS_BENCH_LARGE=1 to add n = 1e6, d = 64.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use erasus_core::herding::{herding, herding_naive};
use erasus_core::kcenter::{kcenter, kcenter_naive, KCenterOptions};
use erasus_core::kmeans::{kmeans, KMeansOptions};
use erasus_core::MatrixView;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// 50 well-separated Gaussian clusters (the data k-center pruning is built for) or one isotropic Gaussian.
fn data(n: usize, d: usize, clustered: bool) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centers: Vec<f32> = (0..50 * d).map(|_| 10.0 * normal(&mut rng)).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..50usize);
        for j in 0..d {
            let offset = if clustered { centers[c * d + j] } else { 0.0 };
            out.push(offset + normal(&mut rng));
        }
    }
    out
}

fn shapes() -> Vec<(usize, usize)> {
    let mut s = vec![(10_000, 64), (10_000, 512), (100_000, 64), (100_000, 512)];
    if std::env::var_os("ERASUS_BENCH_LARGE").is_some() {
        s.push((1_000_000, 64));
    }
    s
}

fn bench_kcenter(c: &mut Criterion) {
    let mut group = c.benchmark_group("kcenter_k100");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let k = 100;
    for (n, d) in shapes() {
        for clustered in [true, false] {
            let x = data(n, d, clustered);
            let view = MatrixView::new(&x, n, d).unwrap();
            let opts = KCenterOptions {
                initial: Some(&[0]),
                ..Default::default()
            };
            let label = format!("{}/n{n}/d{d}", if clustered { "mixture" } else { "isotropic" });
            group.bench_function(BenchmarkId::new("pruned", &label), |b| {
                b.iter(|| kcenter(view, k, &opts).unwrap())
            });
            // The serial textbook loop is the reference; skip it where one run takes minutes.
            if n * d <= 100_000 * 64 {
                group.bench_function(BenchmarkId::new("naive", &label), |b| {
                    b.iter(|| kcenter_naive(view, k, &opts).unwrap())
                });
            }
        }
    }
    group.finish();
}

fn bench_herding_kmeans(c: &mut Criterion) {
    let mut group = c.benchmark_group("herding_kmeans_k50");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (n, d) in shapes().into_iter().filter(|&(n, _)| n <= 100_000) {
        let x = data(n, d, true);
        let view = MatrixView::new(&x, n, d).unwrap();
        let label = format!("mixture/n{n}/d{d}");
        group.bench_function(BenchmarkId::new("herding", &label), |b| {
            b.iter(|| herding(view, 50).unwrap())
        });
        group.bench_function(BenchmarkId::new("herding_naive", &label), |b| {
            b.iter(|| herding_naive(view, 50).unwrap())
        });
        let opts = KMeansOptions {
            max_iter: 10,
            ..Default::default()
        };
        group.bench_function(BenchmarkId::new("kmeans_10iter", &label), |b| {
            b.iter(|| kmeans(view, 50, &opts).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_kcenter, bench_herding_kmeans);
criterion_main!(benches);
