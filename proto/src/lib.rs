//! Feige's wire types, generated from `proto/feige/v1/*.proto` (package `feige.v1`).

/// Package `feige.v1`: the push protocol of `/v1/ws`.
#[allow(clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/feige.v1.rs"));
}
