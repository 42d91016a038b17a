//! frontend (under construction).
