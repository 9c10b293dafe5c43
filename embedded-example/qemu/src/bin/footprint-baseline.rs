//! The footprint table's zero: the Cortex-M runtime, a panic handler and a
//! loop that cannot be optimised away. `footprint-core` minus this is what
//! resilis-core and its codec cost.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;

#[entry]
fn main() -> ! {
    let mut n = 0u32;
    loop {
        n = black_box(n).wrapping_add(1);
    }
}
