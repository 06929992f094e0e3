//! The `blobpin` binary: hands its arguments to the library and exits with its status.
fn main() {
    std::process::exit(blobpin::run(std::env::args_os().collect()));
}
