//! accounts (being written)
