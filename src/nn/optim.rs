//! Optimizers and gradient clipping, with PyTorch's update rules.

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::Layer;
use crate::nn::param::Param;

/// Something that updates a model's parameters from their gradients.
pub trait Optimizer<T: Element> {
    /// One update of every parameter of `model` from its current gradient.
    fn step(&mut self, model: &mut dyn Layer<T>);
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Changes the learning rate (schedules).
    fn set_lr(&mut self, lr: f64);
    /// Sets every gradient of `model` to zero.
    fn zero_grad(&self, model: &mut dyn Layer<T>) {
        model.visit_params("", &mut |_, _, p| p.zero_grad());
    }
}

/// Per-parameter state vectors, matched to parameters by visiting order and
/// created on the first step (the only allocation).
#[derive(Debug, Clone, Default)]
struct State<T> {
    bufs: Vec<Vec<T>>,
}

impl<T: Element> State<T> {
    fn get(&mut self, i: usize, len: usize) -> (&mut Vec<T>, bool) {
        if self.bufs.len() <= i {
            self.bufs.resize_with(i + 1, Vec::new);
        }
        let fresh = self.bufs[i].len() != len;
        if fresh {
            self.bufs[i] = vec![T::ZERO; len];
        }
        (&mut self.bufs[i], fresh)
    }
}

fn check_hyper(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConvError> {
    if v.is_finite() && v >= lo && v < hi {
        Ok(())
    } else {
        Err(ConvError::InvalidConfig {
            what: format!("{name} = {v} must be in [{lo}, {hi})"),
        })
    }
}

/// Stochastic gradient descent (PyTorch's `torch.optim.SGD`, dampening 0):
/// `g = grad + weight_decay * p`; with momentum `buf = momentum * buf + g`
/// (`buf = g` on the first step) and `g = buf`, or `g = g + momentum * buf`
/// with Nesterov; then `p -= lr * g`.
#[derive(Debug, Clone)]
pub struct Sgd<T> {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    state: State<T>,
}

impl<T: Element> Sgd<T> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Result<Self, ConvError> {
        check_hyper("lr", lr, 0.0, f64::INFINITY)?;
        Ok(Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            state: State { bufs: Vec::new() },
        })
    }
    /// Sets the momentum (0 to < 1).
    pub fn momentum(mut self, m: f64) -> Result<Self, ConvError> {
        check_hyper("momentum", m, 0.0, 1.0)?;
        self.momentum = m;
        Ok(self)
    }
    /// Uses Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    /// Sets the L2 weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Result<Self, ConvError> {
        check_hyper("weight_decay", wd, 0.0, f64::INFINITY)?;
        self.weight_decay = wd;
        Ok(self)
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn step(&mut self, model: &mut dyn Layer<T>) {
        let (lr, mom, nest, wd) = (
            T::from_f64(self.lr),
            T::from_f64(self.momentum),
            self.nesterov,
            T::from_f64(self.weight_decay),
        );
        let use_mom = self.momentum != 0.0;
        let mut i = 0;
        let state = &mut self.state;
        model.visit_params("", &mut |_, _, p: &mut Param<T>| {
            if use_mom {
                let (buf, fresh) = state.get(i, p.len());
                for ((v, &g), b) in p.value.iter_mut().zip(&p.grad).zip(buf.iter_mut()) {
                    let g = g + wd * *v;
                    *b = if fresh { g } else { mom * *b + g };
                    let u = if nest { g + mom * *b } else { *b };
                    *v -= lr * u;
                }
            } else {
                for (v, &g) in p.value.iter_mut().zip(&p.grad) {
                    let g = g + wd * *v;
                    *v -= lr * g;
                }
            }
            i += 1;
        });
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW`):
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
/// Adam adds `weight_decay * p` to `g`; AdamW instead multiplies `p` by
/// `1 - lr * weight_decay` before the update (decoupled decay).
#[derive(Debug, Clone)]
pub struct Adam<T> {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    t: i32,
    m: State<T>,
    v: State<T>,
}

impl<T: Element> Adam<T> {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8, no decay).
    pub fn new(lr: f64) -> Result<Self, ConvError> {
        check_hyper("lr", lr, 0.0, f64::INFINITY)?;
        Ok(Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
            m: State { bufs: Vec::new() },
            v: State { bufs: Vec::new() },
        })
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(lr: f64) -> Result<Self, ConvError> {
        let mut a = Self::new(lr)?;
        a.weight_decay = 0.01;
        a.decoupled = true;
        Ok(a)
    }
    /// Sets the betas.
    pub fn betas(mut self, b1: f64, b2: f64) -> Result<Self, ConvError> {
        check_hyper("beta1", b1, 0.0, 1.0)?;
        check_hyper("beta2", b2, 0.0, 1.0)?;
        self.betas = (b1, b2);
        Ok(self)
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f64) -> Result<Self, ConvError> {
        check_hyper("eps", eps, 0.0, f64::INFINITY)?;
        self.eps = eps;
        Ok(self)
    }
    /// Sets the weight decay (L2 for Adam, decoupled for AdamW).
    pub fn weight_decay(mut self, wd: f64) -> Result<Self, ConvError> {
        check_hyper("weight_decay", wd, 0.0, f64::INFINITY)?;
        self.weight_decay = wd;
        Ok(self)
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn step(&mut self, model: &mut dyn Layer<T>) {
        self.t += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        let (lr, eps, wd, decoupled) = (self.lr, self.eps, self.weight_decay, self.decoupled);
        let mut i = 0;
        let (ms, vs) = (&mut self.m, &mut self.v);
        model.visit_params("", &mut |_, _, p: &mut Param<T>| {
            let (m, _) = ms.get(i, p.len());
            let (v, _) = vs.get(i, p.len());
            for (((pv, &g), mi), vi) in p.value.iter_mut().zip(&p.grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                let mut x = pv.to_f64();
                let mut g = g.to_f64();
                if decoupled {
                    x *= 1.0 - lr * wd;
                } else {
                    g += wd * x;
                }
                let mn = b1 * mi.to_f64() + (1.0 - b1) * g;
                let vn = b2 * vi.to_f64() + (1.0 - b2) * g * g;
                *mi = T::from_f64(mn);
                *vi = T::from_f64(vn);
                x -= lr * (mn / bc1) / ((vn / bc2).sqrt() + eps);
                *pv = T::from_f64(x);
            }
            i += 1;
        });
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when
/// below 1). Returns the norm before clipping; a non-finite norm is returned
/// as is and nothing is scaled, so the caller can skip the step.
pub fn clip_grad_norm<T: Element>(model: &mut dyn Layer<T>, max_norm: f64) -> f64 {
    let mut sq = 0.0f64;
    model.visit_params("", &mut |_, _, p| {
        sq += p.grad.iter().map(|g| g.to_f64() * g.to_f64()).sum::<f64>();
    });
    let norm = sq.sqrt();
    if norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let c = T::from_f64(coef);
            model.visit_params("", &mut |_, _, p| p.grad.iter_mut().for_each(|g| *g *= c));
        }
    }
    norm
}

/// Clamps every gradient element to `[-clip, clip]` (PyTorch's
/// `clip_grad_value_`). NaN stays NaN.
pub fn clip_grad_value<T: Element>(model: &mut dyn Layer<T>, clip: f64) {
    let (lo, hi) = (T::from_f64(-clip), T::from_f64(clip));
    model.visit_params("", &mut |_, _, p| {
        for g in &mut p.grad {
            if *g > hi {
                *g = hi;
            } else if *g < lo {
                *g = lo;
            }
        }
    });
}
