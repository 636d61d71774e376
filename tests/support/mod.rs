//! Shared fixtures for the whole-program tests; each test crate uses a part of them.
#![allow(dead_code)]

pub mod cli;
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
#[cfg(feature = "emulator")]
pub mod tunnel;
#[cfg(feature = "emulator")]
pub mod world;
