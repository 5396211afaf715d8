//! A server-sent-events decoder (the WHATWG `text/event-stream` rules tether needs:
//! `event` and `data` fields, multi-line data, comments, `\n`/`\r\n`/`\r` line ends).
//! Incremental and allocation-light: bytes are appended once and lines are read in
//! place, so a body of N events costs O(N), whatever the network's chunking.

use std::str::Utf8Error;

/// A line (or an event still being received) longer than this is refused.
pub const MAX_PENDING: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("the event stream is not valid UTF-8: {0}")]
    Utf8(#[from] Utf8Error),
    #[error("the event stream has a line longer than {} MiB", MAX_PENDING / (1024 * 1024))]
    TooLong,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
    event: String,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if self.pos > 0 {
            // Drop what was read, once per chunk rather than once per line.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + chunk.len() > MAX_PENDING {
            return Err(SseError::TooLong);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete event in the bytes pushed so far, if any.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                return Ok(None);
            };
            let mut end = nl + 1;
            if rest[nl] == b'\r' {
                match rest.get(nl + 1) {
                    // A `\r` at the end may be the first half of `\r\n`: wait for more.
                    None => return Ok(None),
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                }
            }
            let line = std::str::from_utf8(&rest[..nl])?;
            if line.is_empty() {
                self.pos += end;
                let event = std::mem::take(&mut self.event);
                if std::mem::take(&mut self.has_data) {
                    let data = std::mem::take(&mut self.data);
                    return Ok(Some(SseEvent { event, data }));
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "" => {} // a comment (`: keep-alive`)
                "event" => {
                    self.event.clear();
                    self.event.push_str(value);
                }
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {} // id, retry and unknown fields: not used by model APIs
            }
            self.pos += end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c)?;
            while let Some(e) = d.next_event()? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_fields_and_line_ends() {
        let body = b"event: a\ndata: {\"x\":1}\n\n: ping\n\ndata: one\r\ndata:two\r\n\r\nevent: b\rdata: c\r\rdata: d\n\n";
        assert_eq!(
            decode(&[body]).unwrap(),
            vec![
                ev("a", "{\"x\":1}"),
                ev("", "one\ntwo"),
                ev("b", "c"),
                ev("", "d")
            ]
        );
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let body = "event: message_start\ndata: {\"t\":\"é✓\"}\n\ndata: [DONE]\r\n\r\n".as_bytes();
        let whole = decode(&[body]).unwrap();
        for size in 1..body.len() {
            let chunks: Vec<&[u8]> = body.chunks(size).collect();
            assert_eq!(decode(&chunks).unwrap(), whole, "chunks of {size}");
        }
        assert_eq!(whole[1], ev("", "[DONE]"));
    }

    #[test]
    fn unfinished_events_are_not_dispatched_and_bad_bytes_are_errors() {
        assert_eq!(decode(&[b"data: half"]).unwrap(), vec![]);
        assert_eq!(
            decode(&[b"event: x\n\n"]).unwrap(),
            vec![],
            "no data, no event"
        );
        assert!(matches!(
            decode(&[b"data: \xff\xfe\n\n"]),
            Err(SseError::Utf8(_))
        ));
        let mut d = SseDecoder::default();
        assert_eq!(d.push(&vec![b'a'; MAX_PENDING + 1]), Err(SseError::TooLong));
    }
}
