mod checkpoint;
mod methods;
mod models;
mod regularizer;
mod train;
