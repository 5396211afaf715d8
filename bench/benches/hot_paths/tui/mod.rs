//! The client crate's markdown layout, code highlighting and word wrap (see main.rs).

#[path = "../../../../crates/tui/src/tui/highlight.rs"]
pub mod highlight;
#[path = "../../../../crates/tui/src/tui/markdown.rs"]
pub mod markdown;
#[path = "../../../../crates/tui/src/tui/wrap.rs"]
pub mod wrap;
