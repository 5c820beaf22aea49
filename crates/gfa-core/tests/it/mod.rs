mod models;
