//! A buffered message as bytes: a CRC32 of what follows, the receive time (read without
//! decoding the rest, for the age of the oldest), then the message's fields, each length-
//! prefixed. The layout is the bridge's own because the message is: it has no serde shape, and
//! a flat layout costs one pass and one copy of the payload each way. A value whose checksum
//! does not match is reported as damaged, never decoded.

use bytes::{Buf, BufMut, Bytes};
use uuid::Uuid;

use crate::message::{Destination, Message, Origin, Partition, Properties, Publisher, System};

/// The layout's version, first after the header; a value of another version is damaged.
const VERSION: u8 = 1;
/// The checksum and the receive time.
const HEADER: usize = 4 + 8;

/// Why a stored value cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("its checksum does not match (a torn or corrupted write)")]
    Checksum,
    #[error("it ends early or holds a field that cannot be read: {0}")]
    Layout(&'static str),
    #[error("it comes from a system this build does not know: {0}")]
    System(String),
}

/// `msg` as stored.
#[cfg(test)]
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 64 + msg.topic.len() + msg.payload.len());
    encode_into(&mut out, msg);
    out
}

/// `msg` as stored, appended to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, msg: &Message) {
    let start = buf.len();
    let p = &msg.properties;
    let out = buf;
    out.put_u32_le(0);
    out.put_u64_le(msg.timestamp_ms);
    out.put_u8(VERSION);
    out.put_slice(msg.id.as_bytes());
    out.put_u8(msg.qos | (msg.retain as u8) << 2 | (msg.dup as u8) << 3);
    out.put_u16_le(msg.packet_id);
    text(out, &msg.topic);
    bytes(out, &msg.payload);
    option(out, p.payload_format_indicator, |o, v| o.put_u8(v));
    option(out, p.message_expiry_interval, |o, v| o.put_u32_le(v));
    option(out, p.content_type.as_deref(), text);
    option(out, p.response_topic.as_deref(), text);
    option(out, p.correlation_data.as_deref(), bytes);
    out.put_u32_le(p.user_properties.len() as u32);
    for (name, value) in &p.user_properties {
        text(out, name);
        text(out, value);
    }
    let publisher = &msg.publisher;
    for field in [&publisher.client_id, &publisher.username, &publisher.host] {
        option(out, field.as_deref(), text);
    }
    option(out, msg.origin.as_deref(), |o, origin| {
        text(o, origin.system.name);
        text(o, &origin.partition.topic);
        text(o, &origin.partition.broker);
        o.put_i32_le(origin.partition.id);
        o.put_i64_le(origin.offset);
        option(o, origin.key.as_deref(), text);
        option(o, origin.tag.as_deref(), text);
    });
    option(out, msg.destination.as_deref(), |o, d| {
        for field in [&d.topic, &d.key, &d.tag] {
            option(o, field.as_deref(), text);
        }
    });
    let sum = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&sum.to_le_bytes());
}

/// When the stored message was received, read from its header alone.
pub fn timestamp(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(4..HEADER)?.try_into().ok()?))
}

/// The message `value` holds; `systems` names the systems messages may have been read from.
pub fn decode(
    value: &[u8],
    systems: &dyn Fn(&str) -> Option<&'static System>,
) -> Result<Message, Damage> {
    if value.len() < HEADER + 1 {
        return Err(Damage::Layout("shorter than its header"));
    }
    let sum = u32::from_le_bytes(value[..4].try_into().expect("four bytes"));
    if crc32fast::hash(&value[4..]) != sum {
        return Err(Damage::Checksum);
    }
    let mut r = Reader(&value[4..]);
    let timestamp_ms = r.u64()?;
    if r.u8()? != VERSION {
        return Err(Damage::Layout("an unknown version"));
    }
    let id = Uuid::from_bytes(r.take(16)?.try_into().expect("sixteen bytes"));
    let flags = r.u8()?;
    let packet_id = r.u16()?;
    let topic = r.text()?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let properties = Properties {
        payload_format_indicator: r.option(Reader::u8)?,
        message_expiry_interval: r.option(Reader::u32)?,
        content_type: r.option(Reader::text)?,
        response_topic: r.option(Reader::text)?,
        correlation_data: r.option(|r| r.bytes().map(Bytes::copy_from_slice))?,
        user_properties: {
            let n = r.u32()? as usize;
            let mut pairs = Vec::with_capacity(n.min(r.0.len() / 8));
            for _ in 0..n {
                pairs.push((r.text()?, r.text()?));
            }
            pairs
        },
    };
    let publisher = Publisher {
        client_id: r.option(Reader::text)?,
        username: r.option(Reader::text)?,
        host: r.option(Reader::text)?,
    };
    let origin = r.option(|r| {
        let name = r.text()?;
        let system = systems(&name).ok_or(Damage::System(name))?;
        Ok(Box::new(Origin {
            system,
            partition: Partition {
                topic: r.text()?,
                broker: r.text()?,
                id: r.i32()?,
            },
            offset: r.i64()?,
            key: r.option(Reader::text)?,
            tag: r.option(Reader::text)?,
        }))
    })?;
    let destination = r.option(|r| {
        Ok(Box::new(Destination {
            topic: r.option(Reader::text)?,
            key: r.option(Reader::text)?,
            tag: r.option(Reader::text)?,
        }))
    })?;
    if !r.0.is_empty() {
        return Err(Damage::Layout("bytes after its last field"));
    }
    Ok(Message {
        id,
        topic,
        payload,
        qos: flags & 3,
        retain: flags & 4 != 0,
        dup: flags & 8 != 0,
        packet_id,
        properties,
        timestamp_ms,
        publisher,
        origin,
        destination,
    })
}

fn text(out: &mut Vec<u8>, s: &str) {
    bytes(out, s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

fn option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.put_u8(0),
        Some(v) => {
            out.put_u8(1);
            put(out, v);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        if self.0.len() < n {
            return Err(Damage::Layout("a field runs past its end"));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, Damage> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Damage> {
        Ok(self.take(2)?.get_u16_le())
    }

    fn u32(&mut self) -> Result<u32, Damage> {
        Ok(self.take(4)?.get_u32_le())
    }

    fn i32(&mut self) -> Result<i32, Damage> {
        Ok(self.take(4)?.get_i32_le())
    }

    fn u64(&mut self) -> Result<u64, Damage> {
        Ok(self.take(8)?.get_u64_le())
    }

    fn i64(&mut self) -> Result<i64, Damage> {
        Ok(self.take(8)?.get_i64_le())
    }

    fn bytes(&mut self) -> Result<&'a [u8], Damage> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, Damage> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| Damage::Layout("text that is not UTF-8"))
    }

    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Damage>,
    ) -> Result<Option<T>, Damage> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(Damage::Layout(
                "an optional field marked neither absent nor present",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    fn systems(name: &str) -> Option<&'static System> {
        crate::connectors::system(name)
    }

    #[test]
    fn a_message_comes_back_as_it_went_in() {
        let mut msg = sample("a/b");
        msg.properties.correlation_data = Some(Bytes::from_static(b"\x00\xff"));
        msg.payload = Bytes::from_static(b"\x00\x01binary\xff");
        msg.retain = true;
        assert_eq!(decode(&encode(&msg), &systems).unwrap(), msg);

        let mut record = Message::record(
            Origin {
                system: &crate::connectors::kafka::KAFKA,
                partition: Partition {
                    topic: "t".into(),
                    broker: String::new(),
                    id: 3,
                },
                offset: 42,
                key: Some("k".into()),
                tag: None,
            },
            vec![("h".into(), "v".into())],
            Bytes::from_static(b"{}"),
        );
        record.destination = Some(Box::new(Destination {
            topic: Some("out".into()),
            ..Default::default()
        }));
        let value = encode(&record);
        assert_eq!(timestamp(&value), Some(record.timestamp_ms));
        assert_eq!(decode(&value, &systems).unwrap(), record);
    }

    #[test]
    fn a_flipped_bit_or_a_torn_value_is_damage_not_a_panic() {
        let value = encode(&sample("a/b"));
        for at in 0..value.len() {
            let mut bad = value.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(decode(&bad, &systems), Err(Damage::Checksum)),
                "byte {at}"
            );
        }
        for len in 0..value.len() {
            assert!(decode(&value[..len], &systems).is_err(), "cut at {len}");
        }
    }
}
