//! One readable table of ferroconv's speed on the public suite.
//!
//! `cargo run --release --example bench_report [-- --seconds S] [--only a,b] [--threads 1,2] [--no-naive]
//! [--csv FILE] [--torch TORCH_CSV] [--svg FILE] [--results FILE]`
//!
//! `--torch` takes the CSV printed by `shared/compare/torch_suite.py` (run it right
//! before or after) and adds a ferroconv / PyTorch table; `--svg` draws the bar chart.
//! `--results` times nothing: it reads ferroconv's figures from CSV files this
//! report wrote with `--csv` (concatenated), and prints the side-by-side table
//! and the chart from them; `scripts/side_by_side.sh` uses it to time the two
//! libraries row by row, interleaved.
//!
//! Per suite row and pass, at 1 thread and at all threads (each in its own
//! rayon pool): the median time of the optimized pass, its GFLOP/s, its speedup
//! over the naive reference (timed once per cell on big rows), and the ratio to
//! matrixmultiply's sgemm GFLOP/s on the GEMM shape the pass lowers to
//! (one image and group). The passes at each thread count and the sgemm are
//! timed round-robin in turns of a few back-to-back calls (the first two of
//! each turn untimed, so every pool is timed awake, as in a training loop and in
//! PyTorch's timing loop), so all see the same machine state. With `--back-to-back`
//! each of them is timed instead as `shared/compare/torch_suite.py` times PyTorch:
//! two warm-up calls, then calls back to back for the budget (at least 5, at
//! most 200), the median; `scripts/side_by_side.sh` uses it, so that both libraries
//! are timed with their caches in the same state. sgemm runs single-threaded, so the ratio is
//! given at 1 thread and the last column shows the thread scaling instead. It also
//! reports the peak extra heap of one forward call per row (a counting global
//! allocator: scratch, matrixmultiply's packing buffers, everything).

#[path = "../benches/suite/mod.rs"]
mod suite;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ferroconv::{Workspace, conv2d_input_grad_into, conv2d_into, conv2d_weight_grad_into, reference};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only
// keeps counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Median seconds of `f`, after one warm-up call, over at least `min_runs`
/// calls or `budget` seconds, whichever is more (at most 200 calls).
fn median(mut f: impl FnMut(), min_runs: usize, budget: f64) -> f64 {
    f();
    let start = Instant::now();
    let mut ts = Vec::new();
    while ts.len() < min_runs || (start.elapsed().as_secs_f64() < budget && ts.len() < 200) {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    ts[ts.len() / 2]
}

/// Calls of one closure per turn of [`round_robin_medians`], of which the
/// first [`UNTIMED_PER_TURN`] are not timed. Rayon's idle workers sleep soon
/// after a call, and on this VM a pool whose workers (and vCPU) must be woken
/// measured up to 2x slower on 2 threads than back-to-back calls, while the
/// pool of the previous turn still spun (cifar_3x3 forward 46 against 98
/// GFLOP/s, infer_b1_3x3 68 against 82 with one untimed call per turn). A
/// training loop, like PyTorch's timing loop, calls into a pool that is
/// already awake. Sleeping between turns instead made it worse (2 threads
/// no faster than 1).
const CALLS_PER_TURN: usize = 5;

/// Calls at the start of each turn that are not timed.
const UNTIMED_PER_TURN: usize = 2;

/// Medians of several timed closures run round-robin in turns (f0 x5, f1 x5,
/// f2 x5, f0 x5, ...; see [`CALLS_PER_TURN`]), so that a slow phase of a
/// shared machine hits all alike: their ratios are what counts. At least 5
/// turns, then until `budget` seconds or 200 turns.
fn round_robin_medians(fs: &mut [&mut dyn FnMut()], budget: f64) -> Vec<f64> {
    fs.iter_mut().for_each(|f| f());
    let start = Instant::now();
    let mut ts = vec![Vec::new(); fs.len()];
    let mut turns = 0;
    while turns < 5 || (start.elapsed().as_secs_f64() < budget && turns < 200) {
        for (f, t) in fs.iter_mut().zip(&mut ts) {
            for _ in 0..UNTIMED_PER_TURN {
                f();
            }
            for _ in UNTIMED_PER_TURN..CALLS_PER_TURN {
                let t0 = Instant::now();
                f();
                t.push(t0.elapsed().as_secs_f64());
            }
        }
        turns += 1;
    }
    ts.into_iter()
        .map(|mut v| {
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() / 2]
        })
        .collect()
}

/// A closure running matrixmultiply's sgemm on fresh `m x k` and `k x n`
/// row-major operands.
fn sgemm_call(m: usize, k: usize, n: usize) -> impl FnMut() {
    let a = suite::data(m * k, 7);
    let b = suite::data(k * n, 8);
    let mut c = vec![0f32; m * n];
    move || unsafe {
        // SAFETY: a is m x k, b is k x n, c is m x n, all row-major and distinct.
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// Printed for `--help`, and for an unknown option (then with exit code 2).
const USAGE: &str = "\
usage: bench_report [options]
  --seconds S      timing budget per cell (default 0.5)
  --threads LIST   thread counts, e.g. 1,2,16 (default 1 and all cores)
  --only ROWS      comma-separated suite rows (default all)
  --no-naive       skip the naive reference timings
  --back-to-back   time each cell in its own loop of back-to-back calls, as
                   torch_suite.py times PyTorch (default: round-robin turns)
  --csv PATH       write the measured cells as CSV
  --torch PATH     add PyTorch's figures (torch_suite.py CSV) side by side
  --svg PATH       draw the bar chart (with --torch)
  --results PATH   print the tables from an earlier --csv instead of timing";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    const VALUED: [&str; 7] = [
        "--seconds",
        "--threads",
        "--only",
        "--csv",
        "--torch",
        "--svg",
        "--results",
    ];
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if VALUED.contains(&a.as_str()) {
            rest.next();
        } else if a != "--no-naive" && a != "--back-to-back" {
            eprintln!("unknown option {a}\n{USAGE}");
            std::process::exit(2);
        }
    }
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let budget: f64 = opt("--seconds").map_or(0.5, |s| s.parse().expect("--seconds takes a number"));
    let only: Vec<String> = opt("--only").map_or(Vec::new(), |s| s.split(',').map(String::from).collect());
    let naive = !args.iter().any(|a| a == "--no-naive");
    let back_to_back = args.iter().any(|a| a == "--back-to-back");
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_counts: Vec<usize> = opt("--threads").map_or(if all > 1 { vec![1, all] } else { vec![1] }, |s| {
        s.split(',')
            .map(|t| t.parse().expect("--threads takes a list"))
            .collect()
    });
    let torch = opt("--torch").map(|p| read_torch(&p));
    if let Some(path) = opt("--results") {
        let results = read_results(&path);
        let mut threads: Vec<usize> = results.iter().map(|r| r.2).collect();
        threads.sort_unstable();
        threads.dedup();
        if let Some(torch) = &torch {
            side_by_side(&results, torch, &threads);
        }
        if let Some(path) = opt("--svg") {
            bar_chart(&path, &results, torch.as_deref(), &threads).expect("write --svg file");
            println!("bar chart written to {path}");
        }
        return;
    }
    let mut results: Vec<(String, &str, usize, f64)> = Vec::new();
    let mut csv =
        String::from("shape,pass,threads,median_ms,gflops,naive_ms,speedup_vs_naive,sgemm_gflops,ratio_to_sgemm\n");

    println!(
        "ferroconv bench report: f32, {} cores available, threads {:?}, {:.1} s per cell",
        all, thread_counts, budget
    );
    println!();
    let tcols: Vec<String> = thread_counts
        .iter()
        .map(|t| format!("{t}T ms | {t}T GFLOP/s"))
        .collect();
    println!(
        "| shape | pass | {} | naive ms | speedup 1T | sgemm GFLOP/s (1T) | 1T / sgemm | {}T / 1T |",
        tcols.join(" | "),
        thread_counts.last().unwrap()
    );
    println!("|{}", "---|".repeat(8 + 2 * thread_counts.len()));
    let mut peaks = Vec::new();
    for row in suite::rows() {
        if !only.is_empty() && !only.contains(&row.name) {
            continue;
        }
        let g = row.geom;
        let x = suite::data(g.input_len(), 1);
        let w = suite::data(g.weight_len(), 2);
        let b = suite::data(g.bias_len(), 4);
        let dy = suite::data(g.output_len(), 3);
        let mut y = vec![0f32; g.output_len()];
        let mut dx = vec![0f32; g.input_len()];
        let mut dw = vec![0f32; g.weight_len()];
        let gflop = g.flops() as f64 / 1e9;

        // Peak extra heap of one forward call, starting from an empty workspace.
        {
            let base = CURRENT.load(Ordering::SeqCst);
            PEAK.store(base, Ordering::SeqCst);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let before = CURRENT.load(Ordering::SeqCst);
            PEAK.store(before, Ordering::SeqCst);
            pool.install(|| conv2d_into(&g, &x, &w, Some(&b), &mut y, &mut Workspace::new()).unwrap());
            peaks.push((row.name.clone(), PEAK.load(Ordering::SeqCst) - before));
        }

        for pass in suite::PASSES {
            let mut cells = Vec::new();
            let mut secs = Vec::new();
            let (m, k, n) = suite::gemm_shape(&g, pass);
            let mut gemm = sgemm_call(m, k, n);
            let pools: Vec<rayon::ThreadPool> = thread_counts
                .iter()
                .map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap())
                .collect();
            let mut wss: Vec<Workspace<f32>> = pools
                .iter()
                .map(|p| p.install(|| Workspace::for_geometry(&g)))
                .collect();
            let mut runners: Vec<Box<dyn FnMut()>> = pools
                .iter()
                .zip(wss.iter_mut())
                .map(|(pool, ws)| {
                    let (g, x, w, b, dy) = (&g, &x, &w, &b, &dy);
                    let mut y = vec![0f32; g.output_len()];
                    let mut dx = vec![0f32; g.input_len()];
                    let mut dw = vec![0f32; g.weight_len()];
                    Box::new(move || {
                        pool.install(|| match pass {
                            "forward" => conv2d_into(g, x, w, Some(b), &mut y, ws).unwrap(),
                            "input_grad" => conv2d_input_grad_into(g, dy, w, &mut dx, ws).unwrap(),
                            _ => conv2d_weight_grad_into(g, x, dy, &mut dw, ws).unwrap(),
                        })
                    }) as Box<dyn FnMut()>
                })
                .collect();
            let mut fs: Vec<&mut dyn FnMut()> = runners.iter_mut().map(|r| &mut **r as &mut dyn FnMut()).collect();
            fs.push(&mut gemm);
            let mut med = if back_to_back {
                // `median` makes one warm-up call; torch_suite.py makes two.
                fs.iter_mut()
                    .map(|f| {
                        f();
                        median(f, 5, budget)
                    })
                    .collect()
            } else {
                round_robin_medians(&mut fs, budget)
            };
            let gemm_s = med.pop().expect("sgemm median");
            drop(fs);
            drop(runners);
            for &s in &med {
                secs.push(s);
                cells.push(format!("{:.3} | {:.1}", s * 1e3, gflop / s));
            }
            let naive_s = naive.then(|| {
                let runs = if g.flops() <= suite::NAIVE_MAX_FLOPS { 3 } else { 1 };
                match pass {
                    "forward" => median(
                        || reference::conv2d_forward(&g, &x, &w, Some(&b), &mut y).unwrap(),
                        runs,
                        0.0,
                    ),
                    "input_grad" => median(
                        || reference::conv2d_input_grad(&g, &dy, &w, &mut dx).unwrap(),
                        runs,
                        0.0,
                    ),
                    _ => median(
                        || reference::conv2d_weight_grad(&g, &x, &dy, &mut dw).unwrap(),
                        runs,
                        0.0,
                    ),
                }
            });
            let gemm_gflops = 2.0 * (m * k * n) as f64 / gemm_s / 1e9;
            let ratio = (gflop / secs[0]) / gemm_gflops;
            let scaling = secs[0] / secs[secs.len() - 1];
            println!(
                "| {} | {} | {} | {} | {} | {:.1} ({}x{}x{}) | {:.2} | {:.2} |",
                row.name,
                pass,
                cells.join(" | "),
                naive_s.map_or("-".into(), |s| format!("{:.1}", s * 1e3)),
                naive_s.map_or("-".into(), |s| format!("{:.1}x", s / secs[0])),
                gemm_gflops,
                m,
                k,
                n,
                ratio,
                scaling
            );
            for (i, &t) in thread_counts.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{},{},{:.4},{:.2},{},{},{:.2},{:.3}\n",
                    row.name,
                    pass,
                    t,
                    secs[i] * 1e3,
                    gflop / secs[i],
                    naive_s.map_or(String::new(), |s| format!("{:.3}", s * 1e3)),
                    naive_s.map_or(String::new(), |s| format!("{:.2}", s / secs[i])),
                    gemm_gflops,
                    (gflop / secs[i]) / gemm_gflops
                ));
                results.push((row.name.clone(), pass, t, gflop / secs[i]));
            }
        }
    }
    println!();
    println!("Peak extra heap of one forward call at 1 thread (all allocations, incl. matrixmultiply's packing):");
    for (name, bytes) in peaks {
        println!("  {name}: {:.2} MiB", bytes as f64 / (1024.0 * 1024.0));
    }
    if let Some(path) = opt("--csv") {
        std::fs::write(&path, csv).expect("write --csv file");
        println!("CSV written to {path}");
    }
    if let Some(torch) = &torch {
        side_by_side(&results, torch, &thread_counts);
    }
    if let Some(path) = opt("--svg") {
        bar_chart(&path, &results, torch.as_deref(), &thread_counts).expect("write --svg file");
        println!("bar chart written to {path}");
    }
}

/// `(shape, pass, threads, GFLOP/s)` from CSV files written by `--csv`
/// (header lines anywhere are skipped), in file order.
fn read_results(path: &str) -> Vec<(String, &'static str, usize, f64)> {
    let text = std::fs::read_to_string(path).expect("read --results file");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("shape"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let pass = suite::PASSES.iter().find(|p| Some(**p) == f.get(1).copied())?;
            Some((
                f.first()?.to_string(),
                *pass,
                f.get(2)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// `(shape, pass, threads) -> GFLOP/s` from `shared/compare/torch_suite.py`'s CSV.
type TorchRows = Vec<(String, String, usize, f64)>;

fn read_torch(path: &str) -> TorchRows {
    let text = std::fs::read_to_string(path).expect("read --torch file");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("shape"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

fn torch_gflops(torch: &[(String, String, usize, f64)], shape: &str, pass: &str, t: usize) -> Option<f64> {
    torch
        .iter()
        .find(|(s, p, th, _)| s == shape && p == pass && *th == t)
        .map(|r| r.3)
}

/// The table of docs/benchmarks.md: ferroconv and PyTorch GFLOP/s and their ratio.
fn side_by_side(results: &[(String, &str, usize, f64)], torch: &[(String, String, usize, f64)], threads: &[usize]) {
    println!();
    let head: Vec<String> = threads
        .iter()
        .map(|t| format!("ferroconv {t}T | PyTorch {t}T | ratio {t}T"))
        .collect();
    println!("| shape | pass | {} |", head.join(" | "));
    println!("|{}", "---|".repeat(2 + 3 * threads.len()));
    let (mut wins, mut cells) = (0, 0);
    for (shape, pass, _, g) in results.iter().filter(|r| r.2 == threads[0]) {
        let mut cols = Vec::new();
        for &th in threads {
            let ours = results
                .iter()
                .find(|r| &r.0 == shape && r.1 == *pass && r.2 == th)
                .map_or(*g, |r| r.3);
            match torch_gflops(torch, shape, pass, th) {
                Some(pt) => {
                    cells += 1;
                    wins += (ours >= pt) as usize;
                    cols.push(format!("{ours:.1} | {pt:.1} | {:.2}", ours / pt));
                }
                None => cols.push(format!("{ours:.1} | - | -")),
            }
        }
        println!("| {shape} | {pass} | {} |", cols.join(" | "));
    }
    println!("\nferroconv >= PyTorch in {wins} of {cells} cells.");
}

/// Grouped horizontal bars of GFLOP/s per suite row and pass, one bar per
/// thread count (and PyTorch's, when given), as SVG.
fn bar_chart(
    path: &str,
    results: &[(String, &str, usize, f64)],
    torch: Option<&[(String, String, usize, f64)]>,
    threads: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let cells: Vec<(&str, &str)> = results
        .iter()
        .filter(|r| r.2 == threads[0])
        .map(|r| (r.0.as_str(), r.1))
        .collect();
    let mut series: Vec<(String, Vec<f64>)> = threads
        .iter()
        .map(|&t| {
            let v = cells
                .iter()
                .map(|(s, p)| {
                    results
                        .iter()
                        .find(|r| r.0 == *s && r.1 == *p && r.2 == t)
                        .map_or(0.0, |r| r.3)
                })
                .collect();
            (format!("ferroconv {t}T"), v)
        })
        .collect();
    if let Some(torch) = torch {
        for &t in threads {
            let v = cells
                .iter()
                .map(|(s, p)| torch_gflops(torch, s, p, t).unwrap_or(0.0))
                .collect();
            series.push((format!("PyTorch {t}T"), v));
        }
    }
    let vmax = series.iter().flat_map(|s| s.1.iter().copied()).fold(1.0, f64::max) * 1.1;
    let height = (cells.len() * 12 * series.len() + 120) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    // Cell 0 at the top: its bars sit in y = (n - 1) .. n.
    let ncell = cells.len();
    let labels: Vec<String> = cells.iter().map(|(s, p)| format!("{s} {p}")).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "GFLOP/s per suite row and pass (f32, higher is better)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..vmax, 0f64..ncell as f64)?;
    chart
        .configure_mesh()
        .y_labels(ncell * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - y.floor() - 0.5).abs() < 1e-3 && i < ncell {
                labels[ncell - 1 - i].clone()
            } else {
                String::new()
            }
        })
        .x_desc("GFLOP/s")
        .disable_y_mesh()
        .draw()?;
    let colors = [BLUE, CYAN, RED, MAGENTA, GREEN, BLACK];
    let n = series.len() as f64;
    for (k, (name, vals)) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
        chart
            .draw_series(vals.iter().enumerate().map(|(i, &v)| {
                let y1 = (ncell - i) as f64 - 0.1 - 0.8 * k as f64 / n;
                Rectangle::new([(0.0, y1 - 0.8 / n), (v, y1)], color.filled())
            }))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
