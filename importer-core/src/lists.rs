//! lists (being written)
