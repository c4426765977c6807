//! Fuzz target: see `zarr_fuse::fuzz::json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zarr_fuse::fuzz::json(data));
