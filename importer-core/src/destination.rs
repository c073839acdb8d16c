//! destination (being written)
