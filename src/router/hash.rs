//! PostgreSQL-compatible hash placement (being written).
