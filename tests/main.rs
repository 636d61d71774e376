//! The whole-program tests, as one test binary: one link, one run that reports every failure
//! (cargo stops at the first failing binary), one copy of the fixtures in `support/`. Each
//! module is one feature; the ones that drive the emulator need `--features emulator`
//! (`cargo test --all-features`), so that a plain `cargo test` still builds and runs the rest.

mod support;

#[cfg(feature = "emulator")]
mod agent_keys;
#[cfg(all(feature = "emulator", target_os = "linux"))]
mod broker;
mod cli;
#[cfg(feature = "emulator")]
mod clients;
mod concurrency;
// scripts/demo.sh is a bash script, and its test makes executables with Unix modes.
#[cfg(all(feature = "emulator", unix))]
mod demo;
mod docs;
#[cfg(feature = "emulator")]
mod e2e;
#[cfg(feature = "emulator")]
mod emulator;
mod fuzz_regressions;
mod get;
#[cfg(unix)]
mod git_discovery;
mod hostile;
#[cfg(unix)]
mod install;
mod layers;
#[cfg(feature = "emulator")]
mod least_privilege;
mod mistakes;
#[cfg(target_os = "linux")]
mod operation;
mod properties;
mod repository;
#[cfg(unix)]
mod setup;
#[cfg(feature = "emulator")]
mod sign_command;
mod ssh_agent;
mod wheel;
