mod augment;
mod batcher;
mod cifar_format;
mod common;
mod fashion;
mod fetch;
mod real_data;
mod synthetic;
