//! Link scripts for the firmware: cortex-m-rt's (with the memory.x that
//! embassy-stm32's `memory-x` feature writes for the STM32F767ZI) and defmt's.
//! Only for Cortex-M targets, so host tools can still check the workspace.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if !std::env::var("TARGET")
        .unwrap_or_default()
        .starts_with("thumb")
    {
        return;
    }
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
