//! gfa-exp: experiment grids, runs, CSV records, tables and figures.
