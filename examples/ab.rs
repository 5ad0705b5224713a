// Per-call A/B: ab ROW PASS ALGO_A ALGO_B [pairs]; THREADS env.
#[path = "../benches/suite/mod.rs"]
mod suite;
use ferroconv::*;
fn algo(s: &str) -> Algorithm {
    match s {
        "gemm" => Algorithm::Gemm,
        "winograd" => Algorithm::Winograd,
        "winograd4" => Algorithm::Winograd4x4,
        _ => Algorithm::Auto,
    }
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let row = suite::rows().into_iter().find(|r| r.name == a[1]).unwrap();
    let pass = a[2].clone();
    let ga = row.geom.with_algorithm(algo(&a[3])).unwrap();
    let gb = row.geom.with_algorithm(algo(&a[4])).unwrap();
    let pairs: usize = a.get(5).and_then(|v| v.parse().ok()).unwrap_or(100);
    let x = suite::data(ga.input_len(), 1);
    let w = suite::data(ga.weight_len(), 2);
    let dy = suite::data(ga.output_len(), 3);
    let mut y = vec![0f32; ga.output_len()];
    let mut dx = vec![0f32; ga.input_len()];
    let mut dw = vec![0f32; ga.weight_len()];
    let threads: usize = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut wa = Workspace::for_geometry(&ga);
        let mut wb = Workspace::for_geometry(&gb);
        let mut run = |g: &Conv2dGeometry, ws: &mut Workspace<f32>| {
            let t = std::time::Instant::now();
            match pass.as_str() {
                "forward" => conv2d_into(g, &x, &w, None, &mut y, ws).unwrap(),
                "input_grad" => conv2d_input_grad_into(g, &dy, &w, &mut dx, ws).unwrap(),
                _ => conv2d_weight_grad_into(g, &x, &dy, &mut dw, ws).unwrap(),
            }
            t.elapsed().as_secs_f64()
        };
        for _ in 0..3 {
            run(&ga, &mut wa);
            run(&gb, &mut wb);
        }
        let (mut ta, mut tb, mut r) = (vec![], vec![], vec![]);
        for i in 0..pairs {
            let (x1, x2) = if i % 2 == 0 {
                let p = run(&ga, &mut wa);
                (p, run(&gb, &mut wb))
            } else {
                let q = run(&gb, &mut wb);
                (run(&ga, &mut wa), q)
            };
            ta.push(x1);
            tb.push(x2);
            r.push(x1 / x2);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let f = ga.flops() as f64 / 1e9;
        let (ma, mb, mr) = (med(&mut ta), med(&mut tb), med(&mut r));
        println!(
            "{} {} {}T: {} {:.1} GFLOP/s, {} {:.1}; time ratio A/B {:.3} (B speedup x{:.3})",
            a[1],
            pass,
            threads,
            a[3],
            f / ma,
            a[4],
            f / mb,
            mr,
            mr
        );
    });
}
