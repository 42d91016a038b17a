//! backend (under construction).
