//! Generates the `wsfleet.v1` client and server from `proto/` with a protoc that ships as a
//! crate, so a fresh machine needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/wsfleet/v1/fleet.proto"], &["proto"])?;
    Ok(())
}
