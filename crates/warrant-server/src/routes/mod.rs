//! Thin handlers: parse, call the engine, shape the answer.

pub mod agents;
pub mod humans;
pub mod token;
pub mod wellknown;
