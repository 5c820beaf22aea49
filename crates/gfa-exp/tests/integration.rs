//! Integration tests of gfa-exp: grid expansion, the `gfa` binary, the results store and runner,
//! and the report.
mod it;
