//! Route handlers, one module per audience or concern. Handlers stay thin: parse the
//! request, call the domain or store, map the result.

pub mod admin;
pub mod agent;
pub mod catalogue;
pub mod citizen;
pub mod contests;
pub mod docs;
pub mod gateway;
pub mod habilitations;
pub mod health;
pub mod journal;
pub mod oidc;
pub mod partners;
pub mod reports;
