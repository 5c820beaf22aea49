mod checkpoint;
mod regularizer;
mod train;
