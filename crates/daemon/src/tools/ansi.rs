//! Streaming removal of terminal escape sequences from command output.
//!
//! The `strip-ansi-escapes` crate drops tabs and carriage returns and buffers
//! by line, which is wrong for live tool output, so this is a small stateful
//! stripper that works on arbitrary chunk boundaries:
//! - CSI (`ESC [ … final`), OSC (`ESC ] … BEL|ESC \`), DCS/SOS/PM/APC
//!   strings and two-byte `ESC x` sequences are removed;
//! - `\n` and `\t` are kept; `\r\n` becomes `\n` and a lone `\r` (progress
//!   bars) becomes `\n`;
//! - other C0 control bytes and DEL are removed;
//! - everything else (including UTF-8) passes through unchanged.
//!
//! [`Utf8Chunker`] then turns the byte stream into `String` chunks without
//! splitting a multi-byte character across chunks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    EscIntermediate,
    Csi,
    /// OSC string: ends at BEL or ST (`ESC \`).
    Osc,
    /// DCS, SOS, PM or APC string: ends at ST.
    Str,
    /// Saw ESC inside an OSC/DCS string: `\` ends it, anything else starts a
    /// new escape sequence.
    StrEsc,
}

/// A stateful escape-sequence stripper; feed it chunks in order.
#[derive(Debug)]
pub struct AnsiStripper {
    state: State,
    pending_cr: bool,
}

impl Default for AnsiStripper {
    fn default() -> Self {
        Self::new()
    }
}

impl AnsiStripper {
    pub fn new() -> Self {
        Self {
            state: State::Ground,
            pending_cr: false,
        }
    }

    /// Strips `input`, appending the visible bytes to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Ends the stream: a trailing lone `\r` becomes `\n`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.push(b'\n');
            self.pending_cr = false;
        }
        self.state = State::Ground;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Esc => match b {
                b'[' => self.state = State::Csi,
                b']' => self.state = State::Osc,
                b'P' | b'X' | b'^' | b'_' => self.state = State::Str,
                0x1b => {}
                0x20..=0x2f => self.state = State::EscIntermediate,
                0x00..=0x1f => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => self.state = State::Ground,
            },
            State::EscIntermediate => match b {
                0x20..=0x2f => {}
                0x1b => self.state = State::Esc,
                0x00..=0x1f => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => self.state = State::Ground,
            },
            State::Csi => match b {
                0x20..=0x3f => {}
                0x40..=0x7e => self.state = State::Ground,
                0x1b => self.state = State::Esc,
                // A terminal executes C0 controls inside CSI; keep newlines.
                0x00..=0x1f => self.ground(b, out),
                _ => self.state = State::Ground,
            },
            State::Osc => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::StrEsc,
                // Never swallow following lines because of a broken sequence.
                b'\n' => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => {}
            },
            State::Str => match b {
                0x1b => self.state = State::StrEsc,
                b'\n' => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => {}
            },
            State::StrEsc => {
                if b == b'\\' {
                    self.state = State::Ground;
                } else {
                    self.state = State::Esc;
                    self.byte(b, out);
                }
            }
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            if b == b'\n' {
                out.push(b'\n');
                return;
            }
            out.push(b'\n');
        }
        match b {
            0x1b => self.state = State::Esc,
            b'\r' => self.pending_cr = true,
            b'\n' | b'\t' => out.push(b),
            0x00..=0x1f | 0x7f => {}
            _ => out.push(b),
        }
    }
}

/// Turns a byte stream into UTF-8 `String` chunks, holding back an
/// incomplete trailing character until the next push; invalid bytes become
/// U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Chunker {
    carry: Vec<u8>,
}

impl Utf8Chunker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        // Incomplete character at the end: keep it.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }

    /// Ends the stream; an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        out
    }
}

/// Strips a complete byte string in one go.
pub fn strip(input: &[u8]) -> String {
    let mut stripper = AnsiStripper::new();
    let mut out = Vec::new();
    stripper.push(input, &mut out);
    stripper.finish(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_common_sequences_and_keeps_tabs() {
        assert_eq!(
            strip(b"\x1b[31mred\x1b[0m plain\ttab\n"),
            "red plain\ttab\n"
        );
        assert_eq!(strip(b"\x1b[1;32;48;5;200mX\x1b[K\x1b[?25l"), "X");
        assert_eq!(strip(b"\x1b]0;window title\x07after"), "after");
        assert_eq!(strip(b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(strip(b"\x1bPsome dcs\x1b\\ok"), "ok");
        assert_eq!(strip(b"\x1b(Bascii\x1b=\x1b>"), "ascii");
        assert_eq!(strip(b"bell\x07 back\x08space\x00"), "bell backspace");
        assert_eq!(strip("héllo → 世界\n".as_bytes()), "héllo → 世界\n");
    }

    #[test]
    fn carriage_returns() {
        assert_eq!(strip(b"a\r\nb\r\n"), "a\nb\n");
        assert_eq!(strip(b"10%\r20%\r"), "10%\n20%\n");
    }

    #[test]
    fn broken_osc_does_not_swallow_following_lines() {
        assert_eq!(strip(b"\x1b]0;unterminated\nnext line\n"), "\nnext line\n");
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = "\x1b[38;5;196mcolour\x1b[0m\r\n\x1b]0;t\x07tab\there é\r".as_bytes();
        let whole = strip(input);
        let mut s = AnsiStripper::new();
        let mut out = Vec::new();
        for b in input {
            s.push(std::slice::from_ref(b), &mut out);
        }
        s.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), whole);
        assert_eq!(whole, "colour\ntab\there é\n");
    }

    #[test]
    fn utf8_chunker_never_splits_characters() {
        let text = "a→b世c";
        let bytes = text.as_bytes();
        let mut chunker = Utf8Chunker::new();
        let mut got = String::new();
        for b in bytes {
            let piece = chunker.push(std::slice::from_ref(b));
            assert!(!piece.contains(char::REPLACEMENT_CHARACTER));
            got.push_str(&piece);
        }
        got.push_str(&chunker.finish());
        assert_eq!(got, text);

        let mut chunker = Utf8Chunker::new();
        assert_eq!(chunker.push(b"x\xffy"), "x\u{fffd}y");
        assert_eq!(chunker.push(b"\xe2\x86"), "");
        assert_eq!(chunker.finish(), "\u{fffd}");
    }
}
