//! Integration tests of gfa-data (one test binary; the modules live in `tests/it/`).
mod it;
