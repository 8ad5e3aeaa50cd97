//! Compiles proto/feige/**/*.proto with protox (pure Rust, no system protoc) and prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=feige");
    let files = ["feige/v1/push.proto"];
    let descriptors = protox::compile(files, ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
