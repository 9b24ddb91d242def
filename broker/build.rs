fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from a crates.io package, so codegen works offline on a fresh machine.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/fanout.proto");
    println!("cargo:rerun-if-changed=proto/nodes.proto");
    println!("cargo:rerun-if-changed=proto/archive.proto");
    // `bytes` fields as `Bytes`: a forwarded frame is shared, never copied.
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/fanout.proto", "proto/nodes.proto", "proto/archive.proto"], &["proto"])?;
    Ok(())
}
