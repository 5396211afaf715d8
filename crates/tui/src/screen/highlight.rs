//! Syntax highlighting of fenced code with syntect's bundled Sublime grammars. Scopes map onto a
//! few roles (keyword, string, number, comment, function, type, diff +/-) with the TUI's own
//! colours, so no theme is loaded and the colours degrade with the terminal (palette.rs).
//!
//! The grammars load once, off the UI thread (`warm`). Results are cached by language and text,
//! so re-wrapping at another width, a search over the transcript or a redraw never parses again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::rc::Rc;
use std::sync::OnceLock;

use ratatui::style::{Color, Modifier, Style};
use syntect::parsing::{ParseState, Scope, ScopeStack, SyntaxReference, SyntaxSet};
use syntect::util::LinesWithEndings;

use super::wrap::Seg;

/// One code line as styled runs.
pub type Lines = Rc<Vec<Vec<Seg>>>;

static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();

fn syntaxes() -> &'static SyntaxSet {
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Loads the grammars on a background thread, so the first code block doesn't wait for them.
pub fn warm() {
    if SYNTAXES.get().is_none() {
        std::thread::spawn(|| {
            syntaxes();
        });
    }
}

/// Colours of the roles. Truecolor values; palette.rs maps them to 256 or 16 colours.
pub mod colors {
    use ratatui::style::Color;
    pub const KEYWORD: Color = Color::Rgb(198, 120, 221);
    pub const STRING: Color = Color::Rgb(152, 195, 121);
    pub const NUMBER: Color = Color::Rgb(209, 154, 102);
    pub const FUNCTION: Color = Color::Rgb(97, 175, 239);
    pub const TYPE: Color = Color::Rgb(229, 192, 123);
    pub const INSERTED: Color = Color::Rgb(152, 195, 121);
    pub const DELETED: Color = Color::Rgb(224, 108, 117);
}

/// Scope prefixes and their style, most specific first (the innermost scope with a role wins).
fn roles() -> &'static [(Scope, Style)] {
    static ROLES: OnceLock<Vec<(Scope, Style)>> = OnceLock::new();
    ROLES.get_or_init(|| {
        let fg = |c: Color| Style::default().fg(c);
        let comment = Style::default().add_modifier(Modifier::DIM | Modifier::ITALIC);
        let table: [(&str, Style); 25] = [
            ("comment", comment),
            ("punctuation.definition.comment", comment),
            ("string", fg(colors::STRING)),
            ("constant.character", fg(colors::STRING)),
            ("constant.numeric", fg(colors::NUMBER)),
            ("constant.language", fg(colors::NUMBER)),
            ("constant.other", fg(colors::NUMBER)),
            // Operators are keyword.operator in most grammars; coloured they are noise.
            ("keyword.operator", Style::default()),
            ("keyword", fg(colors::KEYWORD)),
            ("storage.type", fg(colors::KEYWORD)),
            ("storage.modifier", fg(colors::KEYWORD)),
            ("variable.language", fg(colors::KEYWORD)),
            ("entity.name.tag", fg(colors::KEYWORD)),
            ("entity.name.function", fg(colors::FUNCTION)),
            ("support.function", fg(colors::FUNCTION)),
            ("variable.function", fg(colors::FUNCTION)),
            ("entity.other.attribute-name", fg(colors::FUNCTION)),
            ("entity.name", fg(colors::TYPE)),
            ("support.type", fg(colors::TYPE)),
            ("support.class", fg(colors::TYPE)),
            ("entity.other.inherited-class", fg(colors::TYPE)),
            ("markup.inserted", fg(colors::INSERTED)),
            ("markup.deleted", fg(colors::DELETED)),
            (
                "markup.heading",
                fg(colors::KEYWORD).add_modifier(Modifier::BOLD),
            ),
            ("meta.diff.range", fg(colors::FUNCTION)),
        ];
        table
            .iter()
            .filter_map(|(s, st)| Scope::new(s).ok().map(|s| (s, *st)))
            .collect()
    })
}

fn style_of(stack: &ScopeStack) -> Style {
    for scope in stack.as_slice().iter().rev() {
        if let Some((_, st)) = roles().iter().find(|(p, _)| p.is_prefix_of(*scope)) {
            return *st;
        }
    }
    Style::default()
}

/// Common fence names the bundled grammars know under another name.
fn alias(lang: &str) -> &str {
    match lang {
        "ts" | "typescript" | "tsx" | "jsx" | "mjs" | "cjs" => "js",
        "jsonc" | "json5" => "json",
        "shell" | "console" | "zsh" | "shell-session" | "dockerfile" | "Dockerfile" => "bash",
        "py3" | "python3" => "py",
        "c++" => "cpp",
        "golang" => "go",
        "yml" => "yaml",
        "patch" => "diff",
        other => other,
    }
}

fn syntax_for<'a>(ss: &'a SyntaxSet, lang: &str, code: &str) -> Option<&'a SyntaxReference> {
    let lang = lang.trim();
    if lang.is_empty() {
        // No fence language: a shebang or similar first line may still tell.
        return ss.find_syntax_by_first_line(code.lines().next()?);
    }
    let lang = alias(lang);
    ss.find_syntax_by_token(lang)
        .or_else(|| ss.find_syntax_by_token(&lang.to_ascii_lowercase()))
}

/// Blocks kept highlighted; the least recently used goes first.
const CACHE_MAX: usize = 256;

#[derive(Default)]
struct Cache {
    blocks: HashMap<(String, u64), (Lines, u64)>,
    clock: u64,
    /// The last block parsed, with the parser state after each of its complete lines: a block
    /// that is still streaming in resumes from where it was instead of starting over per frame.
    last: Option<Resume>,
}

struct Resume {
    lang: String,
    /// Complete lines (with their `\n`), their runs, and the state after each.
    src: Vec<String>,
    out: Vec<Vec<Seg>>,
    states: Vec<(ParseState, ScopeStack)>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// `code` split into lines of styled runs (plain when the language is unknown).
pub fn highlight(code: &str, lang: &str) -> Lines {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(code);
    let key = (lang.to_string(), hash);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.clock += 1;
        let now = c.clock;
        if let Some((lines, used)) = c.blocks.get_mut(&key) {
            *used = now;
            return lines.clone();
        }
        let last = c.last.take().filter(|r| r.lang == lang);
        let (lines, resume) = parse(code, lang, last);
        let lines = Rc::new(lines);
        c.last = resume;
        if c.blocks.len() >= CACHE_MAX
            && let Some(oldest) = c
                .blocks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            c.blocks.remove(&oldest);
        }
        c.blocks.insert(key, (lines.clone(), now));
        lines
    })
}

fn plain_line(line: &str) -> Vec<Seg> {
    vec![(line.trim_end_matches('\n').to_string(), Style::default())]
}

/// Parses `code` (resuming after the complete lines it shares with `last`); returns its lines
/// and what the next call may resume from.
fn parse(code: &str, lang: &str, last: Option<Resume>) -> (Vec<Vec<Seg>>, Option<Resume>) {
    let ss = syntaxes();
    let Some(syntax) = syntax_for(ss, lang, code) else {
        return (code.split('\n').map(plain_line).collect(), None);
    };
    let src_lines: Vec<&str> = LinesWithEndings::from(code).collect();
    let mut r = last.unwrap_or_else(|| Resume {
        lang: lang.to_string(),
        src: Vec::new(),
        out: Vec::new(),
        states: Vec::new(),
    });
    let same = r
        .src
        .iter()
        .zip(&src_lines)
        .take_while(|(a, b)| a.as_str() == **b)
        .count();
    r.src.truncate(same);
    r.out.truncate(same);
    r.states.truncate(same);
    let (mut state, mut stack) = r
        .states
        .last()
        .cloned()
        .unwrap_or_else(|| (ParseState::new(syntax), ScopeStack::new()));
    let mut out = r.out.clone();
    let mut failed = false;
    for line in &src_lines[same..] {
        if failed {
            // A grammar error: the rest stays plain rather than wrong.
            out.push(plain_line(line));
            continue;
        }
        match parse_line(line, &mut state, &mut stack, ss) {
            Some(segs) => out.push(segs),
            None => {
                failed = true;
                out.push(plain_line(line));
                continue;
            }
        }
        // Only a complete line is a safe place to resume from.
        if line.ends_with('\n') {
            r.src.push(line.to_string());
            r.out.push(out.last().cloned().unwrap_or_default());
            r.states.push((state.clone(), stack.clone()));
        }
    }
    if code.is_empty() || code.ends_with('\n') {
        out.push(vec![(String::new(), Style::default())]);
    }
    (out, (!failed).then_some(r))
}

/// One line's runs, or None when the grammar fails on it.
fn parse_line(
    line: &str,
    state: &mut ParseState,
    stack: &mut ScopeStack,
    ss: &SyntaxSet,
) -> Option<Vec<Seg>> {
    let ops = state.parse_line(line, ss).ok()?;
    let mut segs: Vec<Seg> = Vec::new();
    let push = |segs: &mut Vec<Seg>, text: &str, st: Style| {
        let text = text.trim_end_matches('\n');
        if text.is_empty() {
            return;
        }
        match segs.last_mut() {
            Some(last) if last.1 == st => last.0.push_str(text),
            _ => segs.push((text.to_string(), st)),
        }
    };
    let mut pos = 0;
    for (at, op) in ops {
        let at = at.min(line.len());
        if at > pos && line.is_char_boundary(at) {
            push(&mut segs, &line[pos..at], style_of(stack));
            pos = at;
        }
        stack.apply(&op).ok()?;
    }
    push(&mut segs, &line[pos..], style_of(stack));
    if segs.is_empty() {
        segs.push((String::new(), Style::default()));
    }
    Some(segs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn style_of_text(lines: &[Vec<Seg>], needle: &str) -> Style {
        lines
            .iter()
            .flatten()
            .find(|(t, _)| t.contains(needle))
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("{needle} not found in {lines:?}"))
    }

    #[test]
    fn rust_keywords_strings_numbers_and_comments_get_their_roles() {
        let code = "fn main() {\n    let s = \"hi\"; // greet\n    let n = 42;\n}";
        let lines = highlight(code, "rust");
        assert_eq!(lines.len(), 4);
        let text: Vec<String> = lines
            .iter()
            .map(|l| l.iter().map(|(t, _)| t.as_str()).collect())
            .collect();
        assert_eq!(text, code.split('\n').collect::<Vec<_>>());
        assert_eq!(style_of_text(&lines, "fn").fg, Some(colors::KEYWORD));
        assert_eq!(style_of_text(&lines, "main").fg, Some(colors::FUNCTION));
        assert_eq!(style_of_text(&lines, "hi").fg, Some(colors::STRING));
        assert_eq!(style_of_text(&lines, "42").fg, Some(colors::NUMBER));
        assert!(
            style_of_text(&lines, "greet")
                .add_modifier
                .contains(Modifier::DIM)
        );
    }

    #[test]
    fn fence_aliases_and_shebangs_find_a_grammar_and_unknown_stays_plain() {
        let ts = highlight("const x = 'a';", "ts");
        assert_eq!(style_of_text(&ts, "const").fg, Some(colors::KEYWORD));
        let sh = highlight("#!/bin/sh\necho \"x\"", "");
        assert_eq!(style_of_text(&sh, "\"x\"").fg, Some(colors::STRING));
        let diff = highlight("-old\n+new", "diff");
        assert_eq!(style_of_text(&diff, "old").fg, Some(colors::DELETED));
        assert_eq!(style_of_text(&diff, "new").fg, Some(colors::INSERTED));
        let unknown = highlight("fn x", "no-such-language");
        assert_eq!(*unknown, vec![vec![("fn x".to_string(), Style::default())]]);
    }

    #[test]
    fn a_growing_block_resumes_and_matches_a_fresh_parse() {
        let full = "/* a comment\n   still */ let x = \"s\";\nfn f() {}\n";
        let mut grown = String::new();
        for ch in full.chars() {
            grown.push(ch);
            let resumed = highlight(&grown, "rust");
            let (fresh, _) = parse(&grown, "rust", None);
            assert_eq!(*resumed, fresh, "after {grown:?}");
        }
        // An edit in an earlier line (a retried answer) re-parses from there.
        let edited = full.replace("a comment", "edited");
        let (fresh, _) = parse(&edited, "rust", None);
        assert_eq!(*highlight(&edited, "rust"), fresh);
    }

    #[test]
    fn the_same_block_is_parsed_once() {
        let a = highlight("let cached = 1;", "rust");
        let b = highlight("let cached = 1;", "rust");
        assert!(Rc::ptr_eq(&a, &b));
        let other_lang = highlight("let cached = 1;", "js");
        assert!(!Rc::ptr_eq(&a, &other_lang));
    }
}
