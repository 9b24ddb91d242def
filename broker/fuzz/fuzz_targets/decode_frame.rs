//! Feeds arbitrary bytes to the hpfeeds decoder, in arbitrary chunks, as a
//! connection would: it must never panic, and every frame it returns must
//! re-encode to exactly the bytes it consumed.
#![no_main]

use hpfriends_broker::protocol::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hpfriends_broker::protocol::frame::check_decoder_on(data, &Limits { max_publish_body: 4096 });
});
