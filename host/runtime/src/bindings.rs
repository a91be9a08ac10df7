//! Host bindings for the `secrets-store:provider` world. WASI and `wasi:http` come from
//! wasmtime-wasi(-http); only our own interfaces are generated here.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "secrets-store:provider/provider",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
    },
    require_store_data_send: true,
});

pub use self::secrets_store::provider::types as wit;
