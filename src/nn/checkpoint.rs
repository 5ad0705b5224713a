//! Checkpoints in the safetensors format, with PyTorch's names and layouts.
//!
//! Every parameter is stored under its full name (`0.weight`, `3.bias`) with
//! its PyTorch shape (OIHW for convolution weights, `[out, in]` for linear
//! weights), little-endian `F32` (or `F64` for an f64 model), so
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the
//! equivalent `nn.Sequential`, and files saved from PyTorch load here.
//!
//! Loading is all-or-nothing, like PyTorch's `strict=True`: a missing,
//! unexpected, mis-shaped or mis-typed tensor, or a truncated or corrupt file,
//! returns [`ConvError::Checkpoint`] and leaves the model untouched.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::Layer;
use crate::nn::param::full_name;

fn err(reason: impl Into<String>) -> ConvError {
    ConvError::Checkpoint { reason: reason.into() }
}

fn dtype_of<T: Element>() -> Dtype {
    if std::mem::size_of::<T>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

fn to_bytes<T: Element>(v: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(v));
    for &x in v {
        if std::mem::size_of::<T>() == 4 {
            out.extend_from_slice(&(x.to_f64() as f32).to_le_bytes());
        } else {
            out.extend_from_slice(&x.to_f64().to_le_bytes());
        }
    }
    out
}

fn from_bytes<T: Element>(b: &[u8]) -> Vec<T> {
    if std::mem::size_of::<T>() == 4 {
        b.chunks_exact(4)
            .map(|c| T::from_f64(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64))
            .collect()
    } else {
        b.chunks_exact(8)
            .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect()
    }
}

/// Serializes every parameter of `model` to safetensors bytes.
pub fn to_safetensors<T: Element>(model: &mut dyn Layer<T>) -> Result<Vec<u8>, ConvError> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    model.visit_params("", &mut |pre, name, p| {
        tensors.push((full_name(pre, name), p.shape.clone(), to_bytes(&p.value)));
    });
    let views = tensors
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(dtype_of::<T>(), s.clone(), b).map_err(|e| err(e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>, ConvError>>()?;
    safetensors::tensor::serialize(views, None).map_err(|e| err(e.to_string()))
}

/// Loads parameters from safetensors bytes; all-or-nothing (see the module docs).
pub fn from_safetensors<T: Element>(model: &mut dyn Layer<T>, bytes: &[u8]) -> Result<(), ConvError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("corrupt or truncated file: {e}")))?;
    let mut wanted: Vec<(String, Vec<usize>)> = Vec::new();
    model.visit_params("", &mut |pre, name, p| {
        wanted.push((full_name(pre, name), p.shape.clone()))
    });
    let mut staged: Vec<Vec<T>> = Vec::with_capacity(wanted.len());
    for (name, shape) in &wanted {
        let t = st.tensor(name).map_err(|_| err(format!("missing tensor {name}")))?;
        if t.dtype() != dtype_of::<T>() {
            return Err(err(format!(
                "tensor {name} has dtype {:?}, the model needs {:?}",
                t.dtype(),
                dtype_of::<T>()
            )));
        }
        if t.shape() != shape.as_slice() {
            return Err(err(format!(
                "tensor {name} has shape {:?}, the model needs {shape:?}",
                t.shape()
            )));
        }
        staged.push(from_bytes(t.data()));
    }
    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !wanted.iter().any(|(w, _)| w == n))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(err(format!("unexpected tensors {extra:?}")));
    }
    let mut i = 0;
    model.visit_params("", &mut |_, _, p| {
        p.value.copy_from_slice(&staged[i]);
        i += 1;
    });
    Ok(())
}

/// Writes every parameter of `model` to a safetensors file.
pub fn save_safetensors<T: Element>(model: &mut dyn Layer<T>, path: impl AsRef<Path>) -> Result<(), ConvError> {
    let bytes = to_safetensors(model)?;
    std::fs::write(path.as_ref(), bytes).map_err(|e| err(format!("writing {}: {e}", path.as_ref().display())))
}

/// Reads a safetensors file into `model`; all-or-nothing (see the module docs).
pub fn load_safetensors<T: Element>(model: &mut dyn Layer<T>, path: impl AsRef<Path>) -> Result<(), ConvError> {
    let bytes = std::fs::read(path.as_ref()).map_err(|e| err(format!("reading {}: {e}", path.as_ref().display())))?;
    from_safetensors(model, &bytes)
}
