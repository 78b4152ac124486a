//! What the data layer needs that is not a resource kind: the final backup of the
//! transactions table that a production `down` makes, and the emulator workarounds.

pub mod emulator;
pub mod final_backup;
