//! tick (being written)
