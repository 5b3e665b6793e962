#![no_main]
//! `lsbackup::fuzzing::ini_inventory` (see docs/fuzzing.md).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lsbackup::fuzzing::ini_inventory(data);
});
