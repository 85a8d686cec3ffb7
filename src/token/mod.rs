//! Layer 1: the token. The stop flag, its waits, callbacks, children, wake-ups, and the
//! attachment slots through which the extensions (layer 2) hang their state and their step of
//! the stop on a stopper. Nothing here knows which extensions exist.

pub(crate) mod attach;
pub(crate) mod callbacks;
pub(crate) mod future;
pub(crate) mod guard;
pub(crate) mod inner;
pub(crate) mod stop;
pub(crate) mod stopper;
