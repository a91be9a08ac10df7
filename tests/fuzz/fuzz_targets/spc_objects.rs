//! The `objects` parameter of an Azure SecretProviderClass (YAML `array:` of per-object YAML
//! documents), as `params::parse_objects` reads it.
//!
//! Beyond "no panic": every accepted object list satisfies the parser's promises (Key Vault names,
//! clean versions, file names the writer accepts, no two objects writing the same file or a file
//! where another needs a directory), and serializing the parsed objects back to YAML and parsing
//! again gives the same objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::params::parse_objects;
use secrets_store_fuzz::{check_objects, objects_yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let objects = match parse_objects(text) {
        Ok(objects) => objects,
        Err(error) => {
            assert!(!error.message.is_empty());
            return;
        }
    };
    check_objects(&objects);
    let yaml = objects_yaml(&objects);
    match parse_objects(&yaml) {
        Ok(again) => assert_eq!(again, objects, "round trip through\n{yaml}"),
        Err(e) => panic!("serialized objects are refused: {e}\n{yaml}"),
    }
});
