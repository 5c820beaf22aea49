mod augment;
mod batcher;
mod cifar_format;
mod common;
mod fetch;
mod real_data;
mod synthetic;
