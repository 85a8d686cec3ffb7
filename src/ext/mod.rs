//! Layer 2: the extensions, each built on the token (layer 1) and never the other way round.

pub(crate) mod chan;
pub(crate) mod deadline;
pub(crate) mod descriptor;
pub(crate) mod fdwait;
pub(crate) mod process;
pub mod service;
pub(crate) mod shared;
pub(crate) mod workers;
