//! Colour depth: what the terminal can show (truecolor, 256, 16, or no colour at all under
//! NO_COLOR), and the frame's colours mapped down to it once per draw. Views stay depth-agnostic:
//! the UI chrome uses the 16 named colours (they follow the user's terminal theme), code uses
//! truecolor roles (highlight.rs) that this maps to the nearest 256-colour index, or by hue to a
//! named colour.

use ratatui::buffer::Buffer;
use ratatui::style::Color;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// NO_COLOR (or TERM=dumb): text, bold, dim and reverse only.
    None,
    Ansi16,
    Ansi256,
    TrueColor,
}

/// The depth from the environment (`var` reads a variable): NO_COLOR wins, then COLORTERM
/// (`truecolor`/`24bit`), then TERM (`*-direct`, `*256color*`); anything else gets 16 colours,
/// which every terminal has (tmux and SSH included: TERM says what the inner terminal is).
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Depth {
    if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return Depth::None;
    }
    let colorterm = var("COLORTERM").unwrap_or_default().to_ascii_lowercase();
    if colorterm == "truecolor" || colorterm == "24bit" {
        return Depth::TrueColor;
    }
    let term = var("TERM").unwrap_or_default().to_ascii_lowercase();
    if term == "dumb" {
        Depth::None
    } else if term.ends_with("-direct") || term.contains("truecolor") || term.contains("24bit") {
        Depth::TrueColor
    } else if term.contains("256color") {
        Depth::Ansi256
    } else {
        Depth::Ansi16
    }
}

/// Every cell's colours mapped down to `depth`.
pub fn apply(buf: &mut Buffer, depth: Depth) {
    if depth == Depth::TrueColor {
        return;
    }
    for cell in buf.content.iter_mut() {
        cell.fg = map(cell.fg, depth);
        cell.bg = map(cell.bg, depth);
        cell.underline_color = map(cell.underline_color, depth);
    }
}

/// One colour at `depth`.
pub fn map(c: Color, depth: Depth) -> Color {
    match (depth, c) {
        (Depth::TrueColor, c) => c,
        (Depth::None, _) => Color::Reset,
        (Depth::Ansi256, Color::Rgb(r, g, b)) => Color::Indexed(rgb_to_256(r, g, b)),
        (Depth::Ansi256, c) => c,
        (Depth::Ansi16, Color::Rgb(r, g, b)) => rgb_to_16(r, g, b),
        (Depth::Ansi16, Color::Indexed(i)) => {
            let (r, g, b) = index_to_rgb(i);
            rgb_to_16(r, g, b)
        }
        (Depth::Ansi16, c) => c,
    }
}

const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn dist(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).pow(2) as u32;
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The nearest xterm-256 colour: the 6×6×6 cube or the grey ramp, whichever is closer.
pub fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    let q = |v: u8| -> usize {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            usize::from((v - 35) / 40)
        }
    };
    let (qr, qg, qb) = (q(r), q(g), q(b));
    let cube = (CUBE[qr], CUBE[qg], CUBE[qb]);
    let cube_idx = 16 + 36 * qr + 6 * qg + qb;
    let avg = ((u16::from(r) + u16::from(g) + u16::from(b)) / 3) as u8;
    let grey_idx = if avg > 238 {
        23
    } else {
        avg.saturating_sub(3) / 10
    };
    let grey = 8 + 10 * grey_idx;
    if dist((grey, grey, grey), (r, g, b)) < dist(cube, (r, g, b)) {
        232 + grey_idx
    } else {
        cube_idx as u8
    }
}

/// RGB of an xterm-256 index (the first 16 as xterm's defaults).
fn index_to_rgb(i: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (205, 0, 0),
        (0, 205, 0),
        (205, 205, 0),
        (0, 0, 238),
        (205, 0, 205),
        (0, 205, 205),
        (229, 229, 229),
        (127, 127, 127),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (92, 92, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ];
    match i {
        0..16 => BASE[usize::from(i)],
        16..232 => {
            let i = usize::from(i - 16);
            (CUBE[i / 36], CUBE[(i / 6) % 6], CUBE[i % 6])
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
    }
}

/// A named colour by hue (nearest-RGB picks grey for most soft colours): greys by lightness,
/// the rest by hue sector, the light variants only for very light colours.
pub fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    let (rf, gf, bf) = (f32::from(r), f32::from(g), f32::from(b));
    let max = rf.max(gf).max(bf);
    let min = rf.min(gf).min(bf);
    let light = (max + min) / 2.0 / 255.0;
    let chroma = (max - min) / 255.0;
    if chroma < 0.15 {
        return match light {
            l if l < 0.2 => Color::Black,
            l if l < 0.55 => Color::DarkGray,
            l if l < 0.85 => Color::Gray,
            _ => Color::White,
        };
    }
    let hue = if max == rf {
        60.0 * ((gf - bf) / (max - min)).rem_euclid(6.0)
    } else if max == gf {
        60.0 * ((bf - rf) / (max - min) + 2.0)
    } else {
        60.0 * ((rf - gf) / (max - min) + 4.0)
    };
    let bright = light > 0.75;
    let pick = |normal: Color, lightc: Color| if bright { lightc } else { normal };
    match hue {
        h if !(20.0..340.0).contains(&h) => pick(Color::Red, Color::LightRed),
        h if h < 70.0 => pick(Color::Yellow, Color::LightYellow),
        h if h < 165.0 => pick(Color::Green, Color::LightGreen),
        h if h < 195.0 => pick(Color::Cyan, Color::LightCyan),
        h if h < 260.0 => pick(Color::Blue, Color::LightBlue),
        _ => pick(Color::Magenta, Color::LightMagenta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screen::highlight::colors;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn depth_follows_no_color_then_colorterm_then_term() {
        assert_eq!(detect(env(&[])), Depth::Ansi16);
        assert_eq!(detect(env(&[("TERM", "xterm")])), Depth::Ansi16);
        assert_eq!(detect(env(&[("TERM", "screen")])), Depth::Ansi16);
        assert_eq!(detect(env(&[("TERM", "xterm-256color")])), Depth::Ansi256);
        assert_eq!(detect(env(&[("TERM", "tmux-256color")])), Depth::Ansi256);
        assert_eq!(detect(env(&[("TERM", "xterm-direct")])), Depth::TrueColor);
        assert_eq!(
            detect(env(&[
                ("TERM", "tmux-256color"),
                ("COLORTERM", "truecolor")
            ])),
            Depth::TrueColor
        );
        assert_eq!(
            detect(env(&[("TERM", "xterm"), ("COLORTERM", "24bit")])),
            Depth::TrueColor
        );
        // NO_COLOR wins over everything; an empty NO_COLOR is not set (no-color.org).
        assert_eq!(
            detect(env(&[("NO_COLOR", "1"), ("COLORTERM", "truecolor")])),
            Depth::None
        );
        assert_eq!(
            detect(env(&[("NO_COLOR", ""), ("TERM", "xterm-256color")])),
            Depth::Ansi256
        );
        assert_eq!(detect(env(&[("TERM", "dumb")])), Depth::None);
    }

    #[test]
    fn rgb_maps_to_the_nearest_256_colour() {
        assert_eq!(rgb_to_256(0, 0, 0), 16);
        assert_eq!(rgb_to_256(255, 255, 255), 231);
        assert_eq!(rgb_to_256(255, 0, 0), 196);
        assert_eq!(rgb_to_256(95, 135, 175), 16 + 36 + 6 * 2 + 3);
        // Near-greys land on the grey ramp.
        assert_eq!(rgb_to_256(128, 128, 128), 244);
        assert_eq!(rgb_to_256(30, 30, 30), 234);
        for i in 16..=255u8 {
            let (r, g, b) = index_to_rgb(i);
            let back = rgb_to_256(r, g, b);
            assert_eq!(index_to_rgb(back), (r, g, b), "index {i}");
        }
    }

    #[test]
    fn the_code_roles_keep_their_hue_in_16_colours() {
        let c16 = |c| map(c, Depth::Ansi16);
        assert_eq!(c16(colors::KEYWORD), Color::Magenta);
        assert_eq!(c16(colors::STRING), Color::Green);
        assert_eq!(c16(colors::NUMBER), Color::Yellow);
        assert_eq!(c16(colors::FUNCTION), Color::Blue);
        assert_eq!(c16(colors::TYPE), Color::Yellow);
        assert_eq!(c16(colors::DELETED), Color::Red);
        assert_eq!(c16(Color::Rgb(40, 40, 40)), Color::Black);
        assert_eq!(c16(Color::Rgb(250, 250, 250)), Color::White);
        assert_eq!(c16(Color::Indexed(196)), Color::Red);
        assert_eq!(c16(Color::Indexed(4)), Color::Blue);
        // Named colours pass through untouched at every depth but none.
        for d in [Depth::Ansi16, Depth::Ansi256, Depth::TrueColor] {
            assert_eq!(map(Color::Cyan, d), Color::Cyan);
        }
        assert_eq!(map(Color::Cyan, Depth::None), Color::Reset);
        assert_eq!(
            map(colors::KEYWORD, Depth::Ansi256),
            Color::Indexed(rgb_to_256(198, 120, 221))
        );
    }
}
