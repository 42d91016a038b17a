//! protocol (under construction).
