//! window (being written)
