//! Fuzz the journal's frame reader and segment scanner: no input may panic, hang or allocate
//! without bound; whatever `check` accepts must decode or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shake::journal::frame::{self, Check, FRAME_HEADER_LEN};
use shake::journal::segment;

fuzz_target!(|data: &[u8]| {
    if let Ok(Check::Complete(h)) = frame::check(data) {
        let payload = &data[FRAME_HEADER_LEN..h.frame_len() as usize];
        let _ = frame::decode_records(&h, payload);
    }
    // The same bytes as a whole segment, strict and tolerant.
    let p = std::path::Path::new("fuzz.seg");
    if let Ok(scan) = segment::scan(data, p, true, true) {
        for f in &scan.frames {
            let start = f.offset as usize + FRAME_HEADER_LEN;
            let _ = frame::decode_records(&f.header, &data[start..start + f.header.stored_len as usize]);
        }
    }
    let _ = segment::scan(data, p, false, false);
});
