#![no_main]
//! `lsbackup::fuzzing::component_spec` (see docs/fuzzing.md).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lsbackup::fuzzing::component_spec(data);
});
