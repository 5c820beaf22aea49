//! Integration tests (one binary; modules under `tests/it/`).
mod it;
