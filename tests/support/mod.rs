//! Shared fixtures for the whole-program tests; each test crate uses a part of them.
#![allow(dead_code)]

pub mod cli;
pub mod home;
pub mod jwt;
