//! Socle's integration tests: one binary (linking is the slow part of a Rust test
//! build) that boots real servers on port 0 and talks HTTP to them. Tests that depend
//! on the store run once per backend (`on_both_stores!`): SQLite in a temporary
//! directory, PostgreSQL in a fresh randomly named database, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod catalogue;
mod citizen;
mod cli;
mod gateway;
mod habilitations;
pub mod http;
mod identity;
mod journal;
mod lifecycle;
mod partners;
mod reliability;
mod security;
mod store;
mod subjects;
