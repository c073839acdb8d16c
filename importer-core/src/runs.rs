//! runs (being written)
