//! Reusable scratch memory for the optimized passes.

use crate::element::Element;
use crate::geometry::Conv2dGeometry;
use crate::kernels;

/// Scratch memory the optimized passes reuse between calls: per-thread column
/// tiles, packed operand panels and padded input slabs, the packed weights,
/// the implicit paths' tap tables, and the weight gradient's partial sums.
///
/// A workspace grows to what a call needs and then stays that size, so once it
/// has seen a geometry (or was made with [`Workspace::for_geometry`]), further
/// calls on that geometry and thread count allocate nothing in ferroconv. One
/// workspace serves any number of geometries; it sizes for the largest.
#[derive(Debug, Clone, Default)]
pub struct Workspace<T> {
    pub(crate) scratch: Vec<T>,
    pub(crate) partials: Vec<T>,
    pub(crate) packed: Vec<T>,
    pub(crate) index: Vec<u32>,
}

impl<T: Element> Workspace<T> {
    /// An empty workspace; the first call sizes it.
    pub fn new() -> Self {
        Workspace {
            scratch: Vec::new(),
            partials: Vec::new(),
            packed: Vec::new(),
            index: Vec::new(),
        }
    }

    /// A workspace already sized for all passes of `geom` on the current rayon
    /// pool (call it inside `pool.install` to size for that pool).
    pub fn for_geometry(geom: &Conv2dGeometry) -> Self {
        let mut ws = Self::new();
        ws.reserve(geom);
        ws
    }

    /// Grows the workspace to what every pass of `geom` needs on the current
    /// rayon pool.
    pub fn reserve(&mut self, geom: &Conv2dGeometry) {
        let (scratch, partials, packed, index) = kernels::workspace_len::<T>(geom);
        self.scratch_mut(scratch);
        self.partials_mut(partials);
        self.packed_mut(packed);
        if self.index.len() < index {
            self.index.resize(index, 0);
        }
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        (self.scratch.len() + self.partials.len() + self.packed.len()) * std::mem::size_of::<T>()
            + self.index.len() * std::mem::size_of::<u32>()
    }

    pub(crate) fn scratch_mut(&mut self, len: usize) -> &mut [T] {
        if self.scratch.len() < len {
            self.scratch.resize(len, T::ZERO);
        }
        &mut self.scratch[..len]
    }

    pub(crate) fn packed_mut(&mut self, len: usize) -> &mut [T] {
        if self.packed.len() < len {
            self.packed.resize(len, T::ZERO);
        }
        &mut self.packed[..len]
    }

    pub(crate) fn partials_mut(&mut self, len: usize) -> &mut [T] {
        if self.partials.len() < len {
            self.partials.resize(len, T::ZERO);
        }
        &mut self.partials[..len]
    }
}

impl<T: Element> Workspace<T> {
    /// Grows `scratch`, `partials` and `packed` to these lengths and returns
    /// them (the paths generic over the element type).
    pub(crate) fn parts_mut(
        &mut self,
        scratch: usize,
        partials: usize,
        packed: usize,
    ) -> (&mut [T], &mut [T], &mut [T]) {
        self.scratch_mut(scratch);
        self.partials_mut(partials);
        self.packed_mut(packed);
        (
            &mut self.scratch[..scratch],
            &mut self.partials[..partials],
            &mut self.packed[..packed],
        )
    }
}

/// A workspace's buffers viewed as f32, sized for one call of an f32-only
/// path (see [`Workspace::f32_parts`]).
pub(crate) struct F32Parts<'a> {
    pub(crate) scratch: &'a mut [f32],
    pub(crate) partials: &'a mut [f32],
    pub(crate) packed: &'a mut [f32],
    pub(crate) index: &'a mut [u32],
}

impl<T: Element> Workspace<T> {
    /// Grows the buffers to these lengths and returns them as f32. The
    /// f32-only paths are chosen only when `T` is f32, so this never fails
    /// there.
    pub(crate) fn f32_parts(&mut self, scratch: usize, partials: usize, packed: usize, index: usize) -> F32Parts<'_> {
        self.scratch_mut(scratch);
        self.partials_mut(partials);
        self.packed_mut(packed);
        if self.index.len() < index {
            self.index.resize(index, 0);
        }
        match (
            T::as_f32_mut(&mut self.scratch[..scratch]),
            T::as_f32_mut(&mut self.partials[..partials]),
            T::as_f32_mut(&mut self.packed[..packed]),
        ) {
            (Some(scratch), Some(partials), Some(packed)) => F32Parts {
                scratch,
                partials,
                packed,
                index: &mut self.index[..index],
            },
            _ => unreachable!("an f32-only path chosen for another element type"),
        }
    }
}
