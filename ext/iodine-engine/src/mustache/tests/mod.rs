//! Tests: the official spec files, compile errors, the file-system loader and iodine extras.

mod files;
mod json;
mod spec;
mod units;
