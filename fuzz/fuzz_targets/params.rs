//! Fuzz target: see `rustfpm::fuzzing::params` for what it runs and checks.
#![no_main]

use rustfpm_fuzz as _;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustfpm::fuzzing::params(data));
