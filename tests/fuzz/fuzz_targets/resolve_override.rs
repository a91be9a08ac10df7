//! An operator's resolve override (`--resolve HOST:PORT=ADDRESS[:PORT]`), as
//! `secrets_store_runtime::ResolveOverride::from_str` reads it.
//!
//! Beyond "no panic": an accepted override names a non-empty, lower-case host without a trailing
//! dot, brackets or `=`; an address given without a port takes the override's port; writing the
//! override back out in the same syntax parses to the same override. A refusal quotes the entry.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use secrets_store_runtime::ResolveOverride;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match ResolveOverride::from_str(entry) {
        Ok(parsed) => parsed,
        Err(error) => {
            assert!(error.to_string().contains(&format!("{entry:?}")));
            return;
        }
    };
    let host = &parsed.host;
    assert!(!host.is_empty());
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "host {host:?}"
    );
    assert!(
        !host.ends_with('.') && !host.contains(['=', '[', ']']),
        "host {host:?}"
    );
    let (_, to) = entry.split_once('=').expect("accepted entries have '='");
    if std::net::SocketAddr::from_str(to).is_err() {
        assert_eq!(parsed.addr.port(), parsed.port);
    }
    let host_text = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let written = format!("{host_text}:{}={}", parsed.port, parsed.addr);
    match ResolveOverride::from_str(&written) {
        Ok(again) => assert_eq!(again, parsed, "round trip through {written:?}"),
        Err(e) => panic!("{written:?} (from {entry:?}) is refused: {e}"),
    }
});
