//! A server-sent-events decoder (the WHATWG `text/event-stream` rules tether needs:
//! `event` and `data` fields, multi-line data, comments, `\n`/`\r\n`/`\r` line ends).
//! Incremental and allocation-light: bytes are appended once and lines are read in
//! place, so a body of N events costs O(N), whatever the network's chunking.

use std::borrow::Cow;
use std::ops::Range;
use std::str::Utf8Error;

/// A line (or an event still being received) longer than this is refused.
pub const MAX_PENDING: usize = 16 * 1024 * 1024;

/// One dispatched event, borrowed from the decoder's buffer where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, empty when absent.
    pub event: &'a str,
    /// The `data:` lines joined by `\n`.
    pub data: Cow<'a, str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("the event stream is not valid UTF-8: {0}")]
    Utf8(#[from] Utf8Error),
    #[error("the event stream has a line longer than {} MiB", MAX_PENDING / (1024 * 1024))]
    TooLong,
}

/// The `data` of the event being received: usually one line, kept as a range of the buffer.
#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    Line(Range<usize>),
    Lines(String),
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
    /// Where the event being received starts in `buf` (its first field line).
    event_start: Option<usize>,
    event: Range<usize>,
    data: Data,
}

impl SseDecoder {
    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        // Drop what was read, once per chunk rather than once per line, keeping the lines
        // of an event still being received (its ranges move with them).
        let cut = self.event_start.unwrap_or(self.pos);
        if cut > 0 {
            self.buf.drain(..cut);
            self.pos -= cut;
            self.event_start = self.event_start.map(|s| s - cut);
            self.event = self.event.start.saturating_sub(cut)..self.event.end.saturating_sub(cut);
            if let Data::Line(r) = &mut self.data {
                *r = r.start - cut..r.end - cut;
            }
        }
        if self.buf.len() + chunk.len() > MAX_PENDING {
            return Err(SseError::TooLong);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete event in the bytes pushed so far, if any.
    pub fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        loop {
            let start = self.pos;
            let rest = &self.buf[start..];
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
            self.pos += end;
            let line = start..start + nl;
            if line.is_empty() {
                self.event_start = None;
                let event = std::mem::take(&mut self.event);
                let data = match std::mem::take(&mut self.data) {
                    Data::None => continue,
                    Data::Line(r) => Cow::Borrowed(std::str::from_utf8(&self.buf[r])?),
                    Data::Lines(s) => Cow::Owned(s),
                };
                let event = std::str::from_utf8(&self.buf[event])?;
                return Ok(Some(SseEvent { event, data }));
            }
            let bytes = &self.buf[line.clone()];
            let (field, value) = match bytes.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let skip = usize::from(bytes.get(colon + 1) == Some(&b' '));
                    (&bytes[..colon], line.start + colon + 1 + skip..line.end)
                }
                None => (bytes, line.end..line.end),
            };
            if matches!(field, b"event" | b"data") && self.event_start.is_none() {
                self.event_start = Some(line.start);
            }
            match field {
                b"event" => self.event = value,
                b"data" => {
                    self.data = match std::mem::take(&mut self.data) {
                        Data::None => Data::Line(value),
                        Data::Line(first) => {
                            let mut s = std::str::from_utf8(&self.buf[first])?.to_string();
                            s.push('\n');
                            s.push_str(std::str::from_utf8(&self.buf[value])?);
                            Data::Lines(s)
                        }
                        Data::Lines(mut s) => {
                            s.push('\n');
                            s.push_str(std::str::from_utf8(&self.buf[value])?);
                            Data::Lines(s)
                        }
                    }
                }
                // Comments (`: keep-alive`), id, retry and unknown fields: unused by model APIs.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<Vec<(String, String)>, SseError> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c)?;
            while let Some(e) = d.next_event()? {
                out.push((e.event.to_string(), e.data.into_owned()));
            }
        }
        Ok(out)
    }

    fn ev(event: &str, data: &str) -> (String, String) {
        (event.to_string(), data.to_string())
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
        let body = "event: message_start\ndata: {\"t\":\"é✓\"}\ndata: x\n\n: c\ndata: [DONE]\r\n\r\nevent: e\ndata: y\n\n"
            .as_bytes();
        let whole = decode(&[body]).unwrap();
        for size in 1..body.len() {
            let chunks: Vec<&[u8]> = body.chunks(size).collect();
            assert_eq!(decode(&chunks).unwrap(), whole, "chunks of {size}");
        }
        assert_eq!(
            whole,
            vec![
                ev("message_start", "{\"t\":\"é✓\"}\nx"),
                ev("", "[DONE]"),
                ev("e", "y")
            ]
        );
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
