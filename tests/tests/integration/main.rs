//! End-to-end tests of the loader on checkpoints written by real PyTorch
//! (`fixtures/generate.py`). One binary; one module per theme.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::large_enum_variant)]

mod backends;
mod bad_input;
mod derive;
mod every_layer;
mod finetune;
mod formats;
mod hints;
mod hostile;
mod layers;
mod models;
mod packed;
mod policies;
mod porting;
mod preprocess;
mod quantize;
mod records;
mod remote;
mod report;
mod repos;
mod seed;
mod sentence;
mod sharded;
mod sources;
mod storage;
mod timm;
