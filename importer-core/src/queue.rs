//! queue (being written)
