//! What the compute layer's kinds share and that is not a kind itself: the function
//! packages, the reserved-concurrency pre-flight check, and, re-exported, the engine's [`Shown`]. The emulator's differences are in
//! [`crate::aws::emulator`].

pub mod concurrency;
pub mod package;

pub use crate::engine::shown::{Shown, drifted, number};
