//! Links libgdn: $GDN_LIB_DIR if set, else `pkg-config --libs gdn`, else the system paths.
//! With the `bindgen` feature, regenerates the bindings from ../../../include/gdn.h (or
//! $GDN_INCLUDE_DIR/gdn.h); $GDN_SYS_BINDINGS_OUT also receives a copy (for the CI check that the
//! committed src/bindings.rs matches the header).
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GDN_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Ok(dir) = env::var("GDN_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
    } else if let Ok(out) = Command::new("pkg-config").args(["--libs-only-L", "gdn"]).output() {
        if out.status.success() {
            for flag in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={}", dir);
                }
            }
        }
    }
    println!("cargo:rustc-link-lib=dylib=gdn");
    #[cfg(feature = "bindgen")]
    generate();
}

#[cfg(feature = "bindgen")]
fn generate() {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap();
    let include = env::var("GDN_INCLUDE_DIR").unwrap_or_else(|_| format!("{}/../../../include", manifest));
    let header = format!("{}/gdn.h", include);
    println!("cargo:rerun-if-changed={}", header);
    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_function("gdn_.*")
        .allowlist_type("gdn_.*")
        .allowlist_var("GDN_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(true)
        .size_t_is_usize(true)
        .generate()
        .expect("bindgen failed on gdn.h");
    let out = format!("{}/bindings.rs", env::var("OUT_DIR").unwrap());
    bindings.write_to_file(&out).expect("write bindings");
    println!("cargo:rerun-if-env-changed=GDN_SYS_BINDINGS_OUT");
    if let Ok(copy) = env::var("GDN_SYS_BINDINGS_OUT") {
        // Rerun when the copy is gone (a fresh install prefix), even if the header is unchanged.
        println!("cargo:rerun-if-changed={}", copy);
        std::fs::copy(&out, copy).expect("copy bindings");
    }
}
