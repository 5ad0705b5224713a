//! Loss functions: each returns the loss and writes its gradient.

use crate::element::Element;
use crate::error::ConvError;
use crate::nn::layer::shape_error;
use crate::nn::tensor::Tensor;

/// Softmax cross-entropy, mean over the batch (PyTorch's `F.cross_entropy`
/// with integer targets).
///
/// With `m = max_j z[i][j]` and `lse_i = m + ln(sum_j exp(z[i][j] - m))`
/// (stable: no `exp` overflows),
/// `loss = (1/n) * sum over i of (lse_i - z[i][label_i])` and
/// `dlogits[i][j] = (softmax(z_i)[j] - [j == label_i]) / n`.
pub fn softmax_cross_entropy<T: Element>(
    logits: &Tensor<T>,
    labels: &[usize],
    dlogits: &mut Tensor<T>,
) -> Result<T, ConvError> {
    let &[n, classes] = logits.shape() else {
        return Err(shape_error(
            "softmax_cross_entropy",
            "logits [n, classes]".into(),
            logits.shape(),
        ));
    };
    if labels.len() != n {
        return Err(ConvError::LengthMismatch {
            what: "labels",
            expected: n,
            actual: labels.len(),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(ConvError::LabelOutOfRange { index, label, classes });
    }
    dlogits.resize(&[n, classes]);
    let inv_n = 1.0 / n as f64;
    let mut total = 0.0f64;
    for ((z, d), &label) in logits
        .data()
        .chunks_exact(classes)
        .zip(dlogits.data_mut().chunks_exact_mut(classes))
        .zip(labels)
    {
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v.to_f64()));
        let sum: f64 = z.iter().map(|&v| (v.to_f64() - m).exp()).sum();
        let lse = m + sum.ln();
        total += lse - z[label].to_f64();
        for (j, (dj, &zj)) in d.iter_mut().zip(z).enumerate() {
            let p = (zj.to_f64() - lse).exp();
            let t = if j == label { 1.0 } else { 0.0 };
            *dj = T::from_f64((p - t) * inv_n);
        }
    }
    Ok(T::from_f64(total * inv_n))
}

/// Mean squared error over all elements (PyTorch's `F.mse_loss`):
/// `loss = (1/N) * sum (p - t)^2`, `dpred = 2 (p - t) / N`.
pub fn mse_loss<T: Element>(pred: &Tensor<T>, target: &Tensor<T>, dpred: &mut Tensor<T>) -> Result<T, ConvError> {
    if pred.shape() != target.shape() {
        return Err(shape_error(
            "mse_loss",
            format!("a target of shape {:?}", pred.shape()),
            target.shape(),
        ));
    }
    if pred.is_empty() {
        return Err(shape_error("mse_loss", "a non-empty prediction".into(), pred.shape()));
    }
    dpred.resize(pred.shape());
    let inv = 1.0 / pred.len() as f64;
    let mut total = 0.0f64;
    for ((d, &p), &t) in dpred.data_mut().iter_mut().zip(pred.data()).zip(target.data()) {
        let e = p.to_f64() - t.to_f64();
        total += e * e;
        *d = T::from_f64(2.0 * e * inv);
    }
    Ok(T::from_f64(total * inv))
}

/// Index of the largest logit of each row (the predicted class).
pub fn argmax_rows<T: Element>(logits: &Tensor<T>) -> Vec<usize> {
    let classes = logits.shape().last().copied().unwrap_or(1).max(1);
    logits
        .data()
        .chunks_exact(classes)
        .map(|r| {
            let mut best = 0;
            for (j, v) in r.iter().enumerate() {
                if *v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}
