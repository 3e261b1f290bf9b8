//! Shared helpers for the integration tests. Each test file that needs them says `mod support;`;
//! not every file uses every helper.
#![allow(dead_code, unused_macros, unreachable_pub)]
// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod lab;
pub mod lab2;
pub mod netns;
pub mod paths_lab;
