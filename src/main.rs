fn main() {
    std::process::exit(zarr_fuse::cli::main());
}
