//! Thin handlers: parse, call the engine, shape the answer.

pub mod agents;
pub mod audit;
pub mod authzen;
pub mod decisions;
pub mod govern;
pub mod guard;
pub mod humans;
pub mod keys;
pub mod oauth;
pub mod peps;
pub mod policies;
pub mod revocations;
pub mod ssf;
pub mod token;
pub mod transmitter;
pub mod warrants;
pub mod wellknown;
