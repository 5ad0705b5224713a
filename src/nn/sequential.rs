//! `Sequential`: layers in a row, with PyTorch-style parameter names and
//! opt-in checks for the first non-finite value.

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::{Layer, Pass, check_dy};
use crate::nn::param::{Param, full_name};
use crate::nn::tensor::Tensor;

/// Where the first NaN or infinity of a step appeared.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The layer's name in the model (`"3"` or a user-given name).
    pub layer: String,
    /// The layer's type (`"Conv2d"`).
    pub kind: &'static str,
    /// The pass that produced it.
    pub pass: Pass,
    /// For [`Pass::ParamGrad`], the parameter (`"weight"`).
    pub param: Option<&'static str>,
    /// Index of the first non-finite element in that tensor.
    pub index: usize,
    /// Its value (NaN, inf or -inf).
    pub value: f64,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first non-finite value ({}) in the {} of layer {} ({})",
            self.value, self.pass, self.layer, self.kind
        )?;
        if let Some(p) = self.param {
            write!(f, ", parameter {}", full_name(&self.layer, p))?;
        }
        write!(f, ", element {}", self.index)
    }
}

fn first_non_finite<T: Element>(v: &[T]) -> Option<(usize, f64)> {
    v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i].to_f64()))
}

/// Layers applied in order. Parameters are named like PyTorch's
/// `nn.Sequential`: `"{layer}.{param}"` with the layer's index
/// (`0.weight`, `3.bias`) or the name given to [`Sequential::push_named`].
///
/// The model owns the activations and their gradients, so after the first
/// step a training step allocates nothing here.
pub struct Sequential<T> {
    layers: Vec<(String, Box<dyn Layer<T>>)>,
    acts: Vec<Tensor<T>>,
    grads: Vec<Tensor<T>>,
    check_finite: bool,
    non_finite: Option<NonFinite>,
}

impl<T: Element> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> Sequential<T> {
    /// An empty model.
    pub fn new() -> Self {
        Sequential {
            layers: Vec::new(),
            acts: Vec::new(),
            grads: Vec::new(),
            check_finite: false,
            non_finite: None,
        }
    }

    /// Appends a layer named by its index.
    pub fn push(self, layer: impl Layer<T> + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.push_named(name, layer)
    }

    /// Appends a layer with a chosen name (`"conv1"`).
    pub fn push_named(mut self, name: impl Into<String>, layer: impl Layer<T> + 'static) -> Self {
        self.layers.push((name.into(), Box::new(layer)));
        self.acts.push(Tensor::empty());
        self.grads.push(Tensor::empty());
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True without layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Turns the non-finite checks on or off (off by default: they cost one
    /// pass over every activation and gradient).
    pub fn set_check_finite(&mut self, on: bool) {
        self.check_finite = on;
    }

    /// With the checks on: where the first NaN or infinity appeared since the
    /// last forward pass began, if anywhere.
    pub fn non_finite(&self) -> Option<&NonFinite> {
        self.non_finite.as_ref()
    }

    /// A multi-line description: one line per layer with its name.
    pub fn summary(&self) -> String {
        self.layers
            .iter()
            .map(|(n, l)| format!("({n}): {}", l.describe()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Full names of all parameters, in visiting order.
    pub fn param_names(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        self.visit_params("", &mut |p, n, _| v.push(full_name(p, n)));
        v
    }

    /// Total number of trainable scalars.
    pub fn num_params(&mut self) -> usize {
        let mut c = 0;
        self.visit_params("", &mut |_, _, p| c += p.len());
        c
    }

    /// Sets every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        self.visit_params("", &mut |_, _, p| p.zero_grad());
    }

    /// Runs the model; returns its output (owned by the model, valid until
    /// the next call).
    pub fn forward(&mut self, x: &Tensor<T>) -> Result<&Tensor<T>, ConvError> {
        if self.layers.is_empty() {
            return Err(ConvError::InvalidConfig {
                what: "Sequential has no layers".into(),
            });
        }
        self.non_finite = None;
        for i in 0..self.layers.len() {
            let (done, rest) = self.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            let (name, layer) = &mut self.layers[i];
            layer.forward(input, &mut rest[0]).map_err(|e| rename(e, name))?;
            if self.check_finite
                && self.non_finite.is_none()
                && let Some((index, value)) = first_non_finite(rest[0].data())
            {
                self.non_finite = Some(NonFinite {
                    layer: name.clone(),
                    kind: layer.kind(),
                    pass: Pass::Forward,
                    param: None,
                    index,
                    value,
                });
            }
        }
        Ok(&self.acts[self.layers.len() - 1])
    }

    /// The output of the last [`forward`](Self::forward).
    pub fn output(&self) -> Option<&Tensor<T>> {
        self.acts.last()
    }

    /// Backward pass after `forward(x)`: adds every parameter's gradient,
    /// given `dy`, the loss gradient with respect to the output. The gradient
    /// with respect to `x` is not computed (see
    /// [`backward_with_input_grad`](Self::backward_with_input_grad)).
    pub fn backward(&mut self, x: &Tensor<T>, dy: &Tensor<T>) -> Result<(), ConvError> {
        self.backward_impl(x, dy, None)
    }

    /// Like [`backward`](Self::backward), also writing the gradient with
    /// respect to the input into `dx`.
    pub fn backward_with_input_grad(
        &mut self,
        x: &Tensor<T>,
        dy: &Tensor<T>,
        dx: &mut Tensor<T>,
    ) -> Result<(), ConvError> {
        self.backward_impl(x, dy, Some(dx))
    }

    fn backward_impl(
        &mut self,
        x: &Tensor<T>,
        dy: &Tensor<T>,
        mut dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        let last = self
            .layers
            .len()
            .checked_sub(1)
            .ok_or_else(|| ConvError::InvalidConfig {
                what: "Sequential has no layers".into(),
            })?;
        check_dy("Sequential output", &self.acts[last], dy)?;
        for i in (0..=last).rev() {
            let input = if i == 0 { x } else { &self.acts[i - 1] };
            let (lo, hi) = self.grads.split_at_mut(i);
            let dyi = if i == last { dy } else { &hi[0] };
            let dxi: Option<&mut Tensor<T>> = if i == 0 { dx.as_deref_mut() } else { lo.last_mut() };
            let checking = self.check_finite && self.non_finite.is_none();
            let (name, layer) = &mut self.layers[i];
            let has_dx = dxi.is_some();
            layer
                .backward(input, &self.acts[i], dyi, dxi)
                .map_err(|e| rename(e, name))?;
            if checking {
                let dxv = if i == 0 {
                    dx.as_deref().map(|t| t.data())
                } else {
                    Some(lo[i - 1].data())
                };
                if has_dx && let Some((index, value)) = dxv.and_then(first_non_finite) {
                    self.non_finite = Some(NonFinite {
                        layer: name.clone(),
                        kind: layer.kind(),
                        pass: Pass::InputGrad,
                        param: None,
                        index,
                        value,
                    });
                    continue;
                }
                let kind = layer.kind();
                let mut found = None;
                layer.visit_params("", &mut |_, pname, p| {
                    if found.is_none()
                        && let Some((index, value)) = first_non_finite(&p.grad)
                    {
                        found = Some((param_static(pname), index, value));
                    }
                });
                if let Some((param, index, value)) = found {
                    self.non_finite = Some(NonFinite {
                        layer: name.clone(),
                        kind,
                        pass: Pass::ParamGrad,
                        param: Some(param),
                        index,
                        value,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Parameter names are `"weight"` or `"bias"` for the layers here; others
/// are reported as `"param"`.
fn param_static(name: &str) -> &'static str {
    match name {
        "weight" => "weight",
        "bias" => "bias",
        _ => "param",
    }
}

/// Prefixes a layer's shape error with its name in the model.
fn rename(e: ConvError, name: &str) -> ConvError {
    match e {
        ConvError::InputShape {
            layer,
            expected,
            actual,
        } => ConvError::InputShape {
            layer: format!("layer {name} ({layer})"),
            expected,
            actual,
        },
        other => other,
    }
}

impl<T: Element> Layer<T> for Sequential<T> {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn describe(&self) -> String {
        format!("Sequential(\n{}\n)", self.summary())
    }

    fn forward(&mut self, x: &Tensor<T>, y: &mut Tensor<T>) -> Result<(), ConvError> {
        let out = Sequential::forward(self, x)?;
        y.assign(out);
        Ok(())
    }

    fn backward(
        &mut self,
        x: &Tensor<T>,
        _y: &Tensor<T>,
        dy: &Tensor<T>,
        dx: Option<&mut Tensor<T>>,
    ) -> Result<(), ConvError> {
        self.backward_impl(x, dy, dx)
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &str, &mut Param<T>)) {
        for (name, layer) in &mut self.layers {
            if prefix.is_empty() {
                layer.visit_params(name, f);
            } else {
                layer.visit_params(&full_name(prefix, name), f);
            }
        }
    }

    fn set_train(&mut self, train: bool) {
        for (_, l) in &mut self.layers {
            l.set_train(train);
        }
    }
}
