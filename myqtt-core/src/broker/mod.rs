//! The listener's broker logic: who gets which message, sessions, retained
//! and will messages, and the [`hooks`] a program uses to decide.

pub mod hooks;
