//! End-to-end tests of the loader on checkpoints written by real PyTorch
//! (`fixtures/generate.py`). One binary; one module per theme.

mod bad_input;
mod derive;
mod formats;
mod report;
mod seed;
