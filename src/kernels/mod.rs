//! The optimized kernels. Private: the public entry points in [`crate::conv`]
//! validate every length first, so these only `debug_assert!`.

pub(crate) mod direct;
pub(crate) mod forward;
pub(crate) mod im2col;
pub(crate) mod input_grad;
pub(crate) mod isa;
pub(crate) mod parallel;
pub(crate) mod weight_grad;

use crate::geometry::Conv2dGeometry;

/// `(scratch, partials)` elements every pass of `geom` needs on the current pool.
pub(crate) fn workspace_len<T>(geom: &Conv2dGeometry) -> (usize, usize) {
    if direct::eligible(geom) {
        return (0, 0);
    }
    let f = forward::plan::<T>(geom);
    let i = input_grad::plan::<T>(geom);
    let w = weight_grad::plan::<T>(geom);
    let scratch = [
        f.parts * f.scratch_len.max(1),
        i.parts * i.scratch_len.max(1),
        w.parts * w.scratch_len.max(1),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    (scratch, w.partials_len)
}
