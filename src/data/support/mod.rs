//! What the data layer needs that is not a resource kind: the final backup of the
//! transactions table that a production `down` makes. The emulator's differences are in
//! [`crate::aws::emulator`].

pub mod final_backup;
