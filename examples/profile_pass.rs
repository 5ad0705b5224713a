#[path = "../benches/suite/mod.rs"]
mod suite;
use ferroconv::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    // A suite row's name, or a shape `n,c_in,h,w,c_out,kh,kw,stride,pad,dilation,groups`.
    let row = if a[1].contains(',') {
        let v: Vec<usize> = a[1].split(',').map(|s| s.parse().expect("integer field")).collect();
        let geom = Conv2dSpec::new(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
            .stride(v[7], v[7])
            .padding(Padding::symmetric(v[8]))
            .dilation(v[9], v[9])
            .groups(v[10])
            .build()
            .unwrap();
        suite::Row {
            name: a[1].clone(),
            geom,
        }
    } else {
        suite::rows().into_iter().find(|r| r.name == a[1]).unwrap()
    };
    // ALGO=gemm, ALGO=winograd or ALGO=winograd4 forces an algorithm (default: Auto).
    let algo = match std::env::var("ALGO").as_deref() {
        Ok("gemm") => Algorithm::Gemm,
        Ok("winograd") => Algorithm::Winograd,
        Ok("winograd4") => Algorithm::Winograd4x4,
        _ => Algorithm::Auto,
    };
    let g = row.geom.with_algorithm(algo).unwrap();
    let x = suite::data(g.input_len(), 1);
    let w = suite::data(g.weight_len(), 2);
    let dy = suite::data(g.output_len(), 3);
    // BIAS=1 adds a bias to the forward pass (as bench_report does).
    let b = suite::data(g.bias_len(), 4);
    let bias = std::env::var_os("BIAS").map(|_| &b[..]);
    let mut y = vec![0f32; g.output_len()];
    let mut dx = vec![0f32; g.input_len()];
    let mut dw = vec![0f32; g.weight_len()];
    let threads: usize = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // OUTSIDE=1 enters the pool once per call from this (non-pool) thread, as
    // bench_report and a caller's training loop do; by default all calls run
    // inside one `install`.
    let outside = std::env::var_os("OUTSIDE").is_some();
    let mut body = || {
        let mut ws = pool.install(|| Workspace::for_geometry(&g));
        let reps: usize = std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let t = std::time::Instant::now();
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let r = std::time::Instant::now();
            let mut call = || match a[2].as_str() {
                "forward" => conv2d_into(&g, &x, &w, bias, &mut y, &mut ws).unwrap(),
                "input_grad" => conv2d_input_grad_into(&g, &dy, &w, &mut dx, &mut ws).unwrap(),
                _ => conv2d_weight_grad_into(&g, &x, &dy, &mut dw, &mut ws).unwrap(),
            };
            if outside {
                pool.install(call)
            } else {
                call()
            }
            best = best.min(r.elapsed().as_secs_f64() * 1e3);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        // The mean over all calls, then the fastest call (on a shared machine
        // a neighbour only ever slows a call down).
        eprintln!(
            "{} {}: {:.2} ms, {:.1} GFLOP/s, best {:.1} GFLOP/s",
            a[1],
            a[2],
            ms,
            g.flops() as f64 / ms / 1e6,
            g.flops() as f64 / best / 1e6
        );
    };
    if outside { body() } else { pool.install(body) }
}
