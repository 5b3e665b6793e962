#![no_main]
//! `lsbackup::fuzzing::manifest` (see docs/fuzzing.md).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lsbackup::fuzzing::manifest(data);
});
