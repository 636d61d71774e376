//! Shared fixtures for the whole-program tests; each test module uses a part of them.
#![allow(dead_code)]

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
pub mod signers;
pub mod ssh_agent;
#[cfg(feature = "emulator")]
pub mod tunnel;
#[cfg(feature = "emulator")]
pub mod world;
