#![no_main]
//! `lsbackup::fuzzing::yaml_inventory` (see docs/fuzzing.md).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lsbackup::fuzzing::yaml_inventory(data);
});
