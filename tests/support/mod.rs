//! Shared fixtures for the whole-program tests; each test module uses a part of them.
#![allow(dead_code)]

use std::fmt::Display;

pub mod cli;
pub mod dist;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod fuzz_checks;
#[cfg(feature = "emulator")]
pub mod git;
pub mod gits;
pub mod home;
pub mod jwt;
pub mod kms;
pub mod signers;
pub mod sources;
pub mod ssh_agent;
#[cfg(feature = "emulator")]
pub mod tunnel;
#[cfg(feature = "emulator")]
pub mod world;

/// Fails the test because `program`, which it drives for real, could not be run (`error`), with
/// the command that installs it: a missing dependency is a failure, never a silent pass.
pub fn missing(program: &str, error: impl Display) -> ! {
    panic!(
        "{program} could not be run ({error}); this test needs it: run \
         scripts/install-test-deps.sh (as root) to install the programs the tests drive"
    )
}
