//! Versions.

use std::ffi::c_char;

use super::boundary;

/// The library's ABI version, `major << 16 | minor`: compare it with `STOPPER_ABI_VERSION`
/// from the header to check that header and library match (same major: compatible).
#[no_mangle]
pub extern "C" fn stopper_abi_version() -> u32 {
    boundary!({ crate::abi_version() })
}

/// The library's version, "major.minor.patch" (static string, never NULL).
#[no_mangle]
pub extern "C" fn stopper_version() -> *const c_char {
    boundary!({ concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char })
}
