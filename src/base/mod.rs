//! Layer 0: what every layer above stands on. System calls, locks and the fork gate, the
//! fallibly allocated counted box, the ordered slab, status codes, signal dispositions. Nothing
//! here knows what a stopper is.

pub(crate) mod fork;
pub(crate) mod rc;
pub(crate) mod signal;
pub(crate) mod slab;
pub(crate) mod status;
pub(crate) mod sync;
pub(crate) mod sys;
