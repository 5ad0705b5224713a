//! A small layer API for training CNNs: layers, losses, initialization,
//! optimizers, gradient clipping and checking, divergence diagnostics and
//! safetensors checkpoints.
//!
//! ```
//! use ferroconv::nn::*;
//! use rand::SeedableRng;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let mut model = Sequential::<f32>::new()
//!     .push(Conv2dBuilder::new(1, 4, 3, 3).build(&mut rng)?)
//!     .push(ReLU)
//!     .push(MaxPool2d::new(2)?)
//!     .push(Flatten)
//!     .push(Linear::new(4 * 3 * 3, 10, &mut rng)?);
//! assert_eq!(model.param_names(), ["0.weight", "0.bias", "4.weight", "4.bias"]);
//! let x = Tensor::from_vec(&[2, 1, 8, 8], vec![0.5; 128])?;
//! let mut opt = Sgd::new(0.01)?.momentum(0.9)?;
//! let mut dlogits = Tensor::empty();
//! let logits = model.forward(&x)?;
//! let loss = softmax_cross_entropy(logits, &[3, 7], &mut dlogits)?;
//! model.zero_grad();
//! model.backward(&x, &dlogits)?;
//! opt.step(&mut model);
//! assert!(loss.is_finite());
//! # Ok::<(), ferroconv::ConvError>(())
//! ```

mod activation;
mod checkpoint;
mod conv2d;
mod diagnostics;
mod gradcheck;
mod init;
mod layer;
mod linear;
mod loss;
mod models;
mod optim;
mod param;
mod pool;
mod sequential;
mod tensor;

pub use activation::{Flatten, ReLU};
pub use checkpoint::{from_safetensors, load_safetensors, save_safetensors, to_safetensors};
pub use conv2d::{Conv2d, Conv2dBuilder};
pub use diagnostics::{MAX_GRAD_NORM, MAX_UPDATE_RATIO, Monitor, ParamStat, StepReport};
pub use gradcheck::{GradCheck, TensorCheck, gradcheck};
pub use init::Init;
pub use layer::{Layer, Pass};
pub use linear::Linear;
pub use loss::{argmax_rows, mse_loss, softmax_cross_entropy};
pub use models::lenet;
pub use optim::{Adam, Optimizer, Sgd, clip_grad_norm, clip_grad_value};
pub use param::{Param, full_name};
pub use pool::{AvgPool2d, MaxPool2d};
pub use sequential::{NonFinite, Sequential};
pub use tensor::Tensor;
