//! Why did my network end up all NaN? Per-step reports of where the first
//! non-finite value appeared, gradient norms and update-to-weight ratios.
//!
//! Usage, around the optimizer step (opt-in; nothing runs when unused):
//! ```text
//! model.set_check_finite(true);
//! let logits = model.forward(&x)?; ... model.backward(&x, &dlogits)?;
//! monitor.before_step(&mut model);     // gradient norms, snapshot of the weights
//! opt.step(&mut model);
//! let report = monitor.after_step(&mut model, step, loss, model.non_finite().cloned());
//! if !report.healthy() { eprintln!("{report}"); }
//! ```
//!
//! The diagnosis rules, in order (first match wins):
//! 1. a non-finite loss, activation or gradient: where it first appeared;
//! 2. an update-to-weight ratio `|lr * update| / |w|` above
//!    [`MAX_UPDATE_RATIO`] (healthy training sits near 1e-3): the learning
//!    rate is too high;
//! 3. a gradient norm above [`MAX_GRAD_NORM`]: exploding gradients, clip them
//!    ([`clip_grad_norm`](crate::nn::clip_grad_norm)) or lower the learning rate.

use crate::element::Element;
use crate::nn::layer::Layer;
use crate::nn::param::full_name;
use crate::nn::sequential::NonFinite;

/// Update-to-weight ratio above which the learning rate is called too high.
pub const MAX_UPDATE_RATIO: f64 = 0.1;

/// Gradient norm above which gradients are called exploding.
pub const MAX_GRAD_NORM: f64 = 1e3;

/// Norms of one parameter in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamStat {
    /// Full name (`"1.weight"`).
    pub name: String,
    /// L2 norm of the weights before the step.
    pub value_norm: f64,
    /// L2 norm of the gradient.
    pub grad_norm: f64,
    /// L2 norm of the change the step made.
    pub update_norm: f64,
}

impl ParamStat {
    /// `update_norm / value_norm` (infinite for an all-zero weight that moved).
    pub fn update_ratio(&self) -> f64 {
        if self.value_norm > 0.0 {
            self.update_norm / self.value_norm
        } else if self.update_norm > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// What happened in one training step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Step number (as given).
    pub step: usize,
    /// The loss.
    pub loss: f64,
    /// Where the first non-finite value appeared, if anywhere.
    pub non_finite: Option<NonFinite>,
    /// Per-parameter norms, in visiting order.
    pub params: Vec<ParamStat>,
}

impl StepReport {
    /// True when no rule of the module documentation fires.
    pub fn healthy(&self) -> bool {
        self.diagnosis().is_none()
    }

    /// The parameter with the largest update-to-weight ratio.
    pub fn worst_update(&self) -> Option<&ParamStat> {
        self.params
            .iter()
            .max_by(|a, b| a.update_ratio().total_cmp(&b.update_ratio()))
    }

    /// The parameter with the largest gradient norm (non-finite counts as largest).
    pub fn worst_grad(&self) -> Option<&ParamStat> {
        self.params.iter().max_by(|a, b| {
            let f = |x: f64| if x.is_finite() { x } else { f64::INFINITY };
            f(a.grad_norm).total_cmp(&f(b.grad_norm))
        })
    }

    /// The one-line diagnosis, or `None` when the step looks healthy.
    pub fn diagnosis(&self) -> Option<String> {
        if let Some(nf) = &self.non_finite {
            return Some(format!(
                "{nf}; check the learning rate, the initialization and the input data, or clip gradients"
            ));
        }
        if !self.loss.is_finite() {
            return Some(format!(
                "the loss is {}; the learning rate is probably too high",
                self.loss
            ));
        }
        if let Some(p) = self.worst_update()
            && p.update_ratio() > MAX_UPDATE_RATIO
        {
            return Some(format!(
                "{} gradient norm {:.1e}, update/weight {:.2}; the learning rate is too high",
                p.name,
                p.grad_norm,
                p.update_ratio()
            ));
        }
        if let Some(p) = self.worst_grad()
            && (p.grad_norm.is_nan() || p.grad_norm > MAX_GRAD_NORM)
        {
            return Some(format!(
                "{} gradient norm {:.1e}: exploding gradients; clip the gradient norm or lower the learning rate",
                p.name, p.grad_norm
            ));
        }
        None
    }
}

impl std::fmt::Display for StepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.diagnosis() {
            Some(d) => writeln!(f, "step {}: {d}", self.step)?,
            None => writeln!(f, "step {}: healthy (loss {:.4})", self.step, self.loss)?,
        }
        for p in &self.params {
            writeln!(
                f,
                "  {:<12} |w| {:.3e}  |grad| {:.3e}  |update| {:.3e}  update/weight {:.2e}",
                p.name,
                p.value_norm,
                p.grad_norm,
                p.update_norm,
                p.update_ratio()
            )?;
        }
        Ok(())
    }
}

fn norm<T: Element>(v: &[T]) -> f64 {
    v.iter().map(|x| x.to_f64() * x.to_f64()).sum::<f64>().sqrt()
}

/// Measures what an optimizer step does to each parameter. It keeps a copy
/// of the weights between [`before_step`](Monitor::before_step) and
/// [`after_step`](Monitor::after_step), in buffers reused across steps.
#[derive(Debug, Default)]
pub struct Monitor<T> {
    snapshot: Vec<Vec<T>>,
    stats: Vec<ParamStat>,
}

impl<T: Element> Monitor<T> {
    /// A monitor with no buffers yet.
    pub fn new() -> Self {
        Monitor {
            snapshot: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// Call after backward, before the optimizer step.
    pub fn before_step(&mut self, model: &mut dyn Layer<T>) {
        let (snap, stats) = (&mut self.snapshot, &mut self.stats);
        let mut i = 0;
        model.visit_params("", &mut |pre, name, p| {
            if snap.len() <= i {
                snap.push(Vec::new());
                stats.push(ParamStat {
                    name: full_name(pre, name),
                    value_norm: 0.0,
                    grad_norm: 0.0,
                    update_norm: 0.0,
                });
            }
            snap[i].clear();
            snap[i].extend_from_slice(&p.value);
            stats[i].value_norm = norm(&p.value);
            stats[i].grad_norm = norm(&p.grad);
            i += 1;
        });
        snap.truncate(i);
        stats.truncate(i);
    }

    /// Call after the optimizer step; returns the step's report.
    pub fn after_step(
        &mut self,
        model: &mut dyn Layer<T>,
        step: usize,
        loss: f64,
        non_finite: Option<NonFinite>,
    ) -> StepReport {
        let (snap, stats) = (&self.snapshot, &mut self.stats);
        let mut i = 0;
        model.visit_params("", &mut |_, _, p| {
            if let Some(old) = snap.get(i) {
                stats[i].update_norm = p
                    .value
                    .iter()
                    .zip(old)
                    .map(|(a, b)| (a.to_f64() - b.to_f64()).powi(2))
                    .sum::<f64>()
                    .sqrt();
            }
            i += 1;
        });
        StepReport {
            step,
            loss,
            non_finite,
            params: self.stats.clone(),
        }
    }
}
