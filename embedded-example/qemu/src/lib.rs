//! The harness for resilis-core's tests on a Cortex-M (run under QEMU): a
//! list of named test functions, each of which panics on failure. The panic
//! handler (panic-semihosting, `exit`) reports the failure and ends QEMU with
//! a non-zero status, so `cargo test` fails as it would on the host.
#![no_std]

use cortex_m_semihosting::{debug, hprint, hprintln};

/// A named test: passes by returning, fails by panicking.
pub type Test = (&'static str, fn());

/// Runs `tests` in order, prints one line each and a closing
/// `suite: N passed, 0 failed`, then ends QEMU with success.
pub fn run(suite: &str, tests: &[Test]) -> ! {
    for (name, test) in tests {
        // A failure panics inside `test()`: the panic message follows this.
        hprint!("test {}::{} ... ", suite, name);
        test();
        hprintln!("ok");
    }
    hprintln!("{}: {} passed, 0 failed", suite, tests.len());
    debug::exit(debug::EXIT_SUCCESS);
    // Only reached when not under a semihosting debugger.
    #[allow(clippy::empty_loop)]
    loop {}
}
