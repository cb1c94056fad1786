//! Feeds arbitrary bytes to the decoder at every protocol level, whole and
//! split in two reads. It must never panic; whatever decodes must encode
//! back to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use myqtt_core::codec::{Decoder, ProtocolVersion, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let version = match selector % 4 {
        0 => None, // server side before CONNECT
        1 => Some(ProtocolVersion::V31),
        2 => Some(ProtocolVersion::V311),
        _ => Some(ProtocolVersion::V5),
    };
    let split = usize::from(selector / 4) % (input.len() + 1);
    let mut decoder = Decoder::new(64 * 1024);
    if let Some(v) = version {
        decoder.set_version(v);
    }
    let mut buf = BytesMut::from(&input[..split]);
    let mut rest = &input[split..];
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                let v = decoder.version().unwrap_or(ProtocolVersion::V311);
                let mut out = BytesMut::new();
                if encode(&packet, v, &mut out).is_ok() {
                    let mut again = Decoder::new(u32::MAX);
                    again.set_version(v);
                    let decoded = again.decode(&mut out).expect("re-encoded packet decodes");
                    assert_eq!(decoded.as_ref(), Some(&packet));
                }
            }
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
