//! Generates include/stopper.h with cbindgen, adds the SONAME, and fails the build when the
//! checked-in header differs from what the sources generate (set STOPPER_UPDATE_HEADER=1, or
//! run `make header`, to rewrite it).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let major: u32 = env::var("CARGO_PKG_VERSION_MAJOR")
        .unwrap()
        .parse()
        .unwrap();
    let minor: u32 = env::var("CARGO_PKG_VERSION_MINOR")
        .unwrap()
        .parse()
        .unwrap();
    let patch: u32 = env::var("CARGO_PKG_VERSION_PATCH")
        .unwrap()
        .parse()
        .unwrap();
    let version = env::var("CARGO_PKG_VERSION").unwrap();

    // The shared library's SONAME carries the major version.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libstopper.so.{major}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/stopper.h");
    println!("cargo:rerun-if-env-changed=STOPPER_UPDATE_HEADER");

    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        r#"
/** Version of this header: major, minor, patch, and as a string. */
#define STOPPER_VERSION_MAJOR {major}
#define STOPPER_VERSION_MINOR {minor}
#define STOPPER_VERSION_PATCH {patch}
#define STOPPER_VERSION_STRING "{version}"
/** The ABI version of this header, `major << 16 | minor`; compare with stopper_abi_version(). */
#define STOPPER_ABI_VERSION ((uint32_t)(((uint32_t)STOPPER_VERSION_MAJOR << 16) | (uint32_t)STOPPER_VERSION_MINOR))

/**
 * Reads a stop flag returned by stopper_flag() with an acquire load: nonzero once stopped.
 * Inlined, so a hot loop pays what C++'s stop_token::stop_requested() pays, not a call into
 * the shared library. The flag is valid while the caller holds a reference to its stopper.
 */
static inline bool stopper_flag_is_set(const uint8_t *flag) {{
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0;
}}
"#
    ));

    let generated = match cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
    {
        Ok(b) => {
            let mut out = Vec::new();
            b.write(&mut out);
            out
        }
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    };
    let path = root.join("include").join("stopper.h");
    let current = fs::read(&path).unwrap_or_default();
    if current == generated {
        return;
    }
    if env::var_os("STOPPER_UPDATE_HEADER").is_some_and(|v| v == "1") {
        fs::create_dir_all(path.parent().unwrap()).expect("create include/");
        fs::write(&path, &generated).expect("write include/stopper.h");
        println!("cargo:warning=include/stopper.h regenerated: commit it");
    } else {
        let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("stopper.h");
        fs::write(&out, &generated).expect("write generated header");
        panic!(
            "include/stopper.h is not what the sources generate (fresh copy: {}).\n\
             Run `make header` (STOPPER_UPDATE_HEADER=1 cargo build) and commit the result.",
            out.display()
        );
    }
}
