mod checkpoint;
mod models;
mod regularizer;
mod train;
