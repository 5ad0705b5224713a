//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong when describing or running a convolution.
///
/// Every variant names the offending values, so the message alone tells the
/// user what to fix. No public function of this crate panics on user input;
/// it returns one of these instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvError {
    /// A size that must be at least 1 is 0 (`what` names it: `"batch"`,
    /// `"c_in"`, `"kernel height"`, ...).
    ZeroSize {
        /// Which size is zero.
        what: &'static str,
    },
    /// A stride component is 0.
    ZeroStride {
        /// Vertical stride.
        sh: usize,
        /// Horizontal stride.
        sw: usize,
    },
    /// A dilation component is 0.
    ZeroDilation {
        /// Vertical dilation.
        dh: usize,
        /// Horizontal dilation.
        dw: usize,
    },
    /// `groups` does not divide `c_in` or `c_out`.
    GroupsDoNotDivide {
        /// Number of groups.
        groups: usize,
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
    },
    /// The dilated kernel `(k - 1) * d + 1` is larger than the padded input
    /// along `axis` (`"height"` or `"width"`), so there is no output pixel.
    KernelTooLarge {
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// Dilated kernel extent along that axis.
        dilated_kernel: usize,
        /// Input extent plus both paddings along that axis.
        padded_input: usize,
    },
    /// A size computation (`what` names it) does not fit in `usize`, or an
    /// element count is too large to address with `isize` strides.
    Overflow {
        /// Which quantity overflowed.
        what: &'static str,
    },
    /// A slice handed to a function has the wrong length for the geometry.
    LengthMismatch {
        /// Which argument (`"input"`, `"weight"`, `"bias"`, `"output"`, ...).
        what: &'static str,
        /// Length the geometry requires.
        expected: usize,
        /// Length that was passed.
        actual: usize,
    },
    /// An [`Algorithm`](crate::Algorithm) was required that cannot run this
    /// geometry (`reason` says which property rules it out).
    UnsupportedAlgorithm {
        /// The algorithm that was asked for.
        algorithm: crate::Algorithm,
        /// Why it cannot run the geometry.
        reason: &'static str,
    },
    /// A layer got an input (or output gradient) of the wrong shape.
    InputShape {
        /// The layer (its name in a model, or its kind).
        layer: String,
        /// What it expects.
        expected: String,
        /// The shape it got.
        actual: Vec<usize>,
    },
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        /// Position of the label in the batch.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes (logits per sample).
        classes: usize,
    },
    /// A layer, loss or optimizer setting is invalid (`what` says which and why).
    InvalidConfig {
        /// The offending setting and its value.
        what: String,
    },
    /// A data file could not be read or parsed.
    Data {
        /// What went wrong, with the file name.
        reason: String,
    },
    /// A checkpoint could not be read, written or applied; the model is untouched.
    Checkpoint {
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvError::ZeroSize { what } => write!(f, "{what} must be at least 1, got 0"),
            ConvError::ZeroStride { sh, sw } => {
                write!(f, "stride must be at least 1 in both axes, got ({sh}, {sw})")
            }
            ConvError::ZeroDilation { dh, dw } => {
                write!(f, "dilation must be at least 1 in both axes, got ({dh}, {dw})")
            }
            ConvError::GroupsDoNotDivide { groups, c_in, c_out } => write!(
                f,
                "groups = {groups} must divide both c_in = {c_in} and c_out = {c_out}"
            ),
            ConvError::KernelTooLarge {
                axis,
                dilated_kernel,
                padded_input,
            } => write!(
                f,
                "dilated kernel {axis} {dilated_kernel} is larger than the padded input {axis} {padded_input}"
            ),
            ConvError::Overflow { what } => write!(f, "{what} overflows the address space"),
            ConvError::LengthMismatch { what, expected, actual } => {
                write!(f, "{what} has {actual} elements but the geometry needs {expected}")
            }
            ConvError::UnsupportedAlgorithm { algorithm, reason } => {
                write!(f, "algorithm {algorithm:?} cannot run this convolution: {reason}")
            }
            ConvError::InputShape {
                layer,
                expected,
                actual,
            } => write!(f, "{layer} expects {expected}, got shape {actual:?}"),
            ConvError::LabelOutOfRange { index, label, classes } => write!(
                f,
                "label {label} at batch position {index} is out of range for {classes} classes"
            ),
            ConvError::InvalidConfig { what } => write!(f, "invalid setting: {what}"),
            ConvError::Data { reason } => write!(f, "data: {reason}"),
            ConvError::Checkpoint { reason } => write!(f, "checkpoint: {reason}"),
        }
    }
}

impl std::error::Error for ConvError {}

/// Returns `Err(LengthMismatch)` unless `actual == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), ConvError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ConvError::LengthMismatch { what, expected, actual })
    }
}
