//! NDJSON framing: one JSON object per `\n`-terminated line, UTF-8, at most 16 MiB.
//!
//! [`FrameDecoder`] is a pure byte accumulator: the transport pushes whatever it read and pulls
//! complete lines out. It never holds more than one over-long frame's worth of bytes.

use serde::Serialize;

use crate::error::{ErrorBody, ErrorCode};

/// Largest frame either side accepts, newline excluded.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Serialises a frame as one line (with the trailing `\n`).
pub fn encode_frame<T: Serialize>(frame: &T) -> Result<Vec<u8>, ErrorBody> {
    let mut buf = serde_json::to_vec(frame)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("cannot encode frame: {e}")))?;
    if buf.len() > MAX_FRAME_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {} bytes exceeds the {} byte limit",
                buf.len(),
                MAX_FRAME_BYTES
            ),
        ));
    }
    buf.push(b'\n');
    Ok(buf)
}

#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for a newline.
    scanned: usize,
    max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            scanned: 0,
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame as a UTF-8 string (without the newline), `Ok(None)` if more bytes
    /// are needed, or an error for an over-long or non-UTF-8 frame. After an error the stream is
    /// not resynchronised: the caller closes the connection.
    pub fn next_frame(&mut self) -> Result<Option<String>, ErrorBody> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let end = self.scanned + pos;
                if end > self.max {
                    return Err(too_large(end, self.max));
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scanned = 0;
                String::from_utf8(line).map(Some).map_err(|e| {
                    ErrorBody::new(
                        ErrorCode::InvalidUtf8,
                        format!(
                            "frame is not valid UTF-8 (bad byte at offset {})",
                            e.utf8_error().valid_up_to()
                        ),
                    )
                })
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max {
                    return Err(too_large(self.buf.len(), self.max));
                }
                Ok(None)
            }
        }
    }
}

fn too_large(len: usize, max: usize) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::FrameTooLarge,
        format!("frame exceeds the {max} byte limit (at least {len} bytes without a newline)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_pushes() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(d.next_frame().unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(b":2}\r\n");
        assert_eq!(d.next_frame().unwrap().as_deref(), Some("{\"b\":2}"));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn over_long_frame_is_refused_without_waiting_for_newline() {
        let mut d = FrameDecoder::new(8);
        d.push(b"123456789");
        let e = d.next_frame().unwrap_err();
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
        let mut d = FrameDecoder::new(8);
        d.push(b"123456789\n");
        assert_eq!(d.next_frame().unwrap_err().code, ErrorCode::FrameTooLarge);
        let mut d = FrameDecoder::new(8);
        d.push(b"12345678\n");
        assert_eq!(d.next_frame().unwrap().as_deref(), Some("12345678"));
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"a\":\"\xff\"}\n");
        assert_eq!(d.next_frame().unwrap_err().code, ErrorCode::InvalidUtf8);
    }

    #[test]
    fn encode_appends_exactly_one_newline() {
        let v = serde_json::json!({"x": "a\nb"});
        let bytes = encode_frame(&v).unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(*bytes.last().unwrap(), b'\n');
    }
}
