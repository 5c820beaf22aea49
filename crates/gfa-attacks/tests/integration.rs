//! Integration tests.
mod it;
